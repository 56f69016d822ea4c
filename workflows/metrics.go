package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"
)

// Metrics that RunPlaybook emits through workflow.GetMetricsHandler, which drops
// them while a workflow task replays history: each is counted once per run however
// often the run is replayed. The Prometheus exporter adds _total to counters and
// _seconds to timers. Besides the labels below, the SDK adds namespace, task_queue
// and workflow_type. Labels carry kinds, outcomes and states only, never host
// names, commands or secrets.
const (
	// MetricRuns counts finished runs by outcome (completed, failed, cancelled).
	MetricRuns = "clusterflow_runs"
	// MetricSteps counts finished steps by kind and outcome (done, failed, skipped).
	MetricSteps = "clusterflow_steps"
	// MetricHostSteps counts per-host results of steps by kind and state (changed,
	// unchanged, failed, skipped).
	MetricHostSteps = "clusterflow_host_steps"
	// MetricStepDuration times steps that started on at least one host, by kind,
	// from the first host's start to the last host's finish.
	MetricStepDuration = "clusterflow_step_duration"
)

// recordStep counts step i's outcome and its hosts' states, and times it.
func (r *run) recordStep(ctx workflow.Context, i int) {
	st := &r.progress.Steps[i]
	h := workflow.GetMetricsHandler(ctx)
	h.WithTags(map[string]string{"kind": st.Kind, "outcome": st.Status}).Counter(MetricSteps).Inc(1)
	for _, hs := range st.Hosts {
		h.WithTags(map[string]string{"kind": st.Kind, "state": hs.State}).Counter(MetricHostSteps).Inc(1)
	}
	var start, end time.Time
	for _, hs := range st.Hosts {
		if hs.Started.IsZero() {
			continue
		}
		if start.IsZero() || hs.Started.Before(start) {
			start = hs.Started
		}
		if hs.Finished.After(end) {
			end = hs.Finished
		}
	}
	if start.IsZero() {
		return
	}
	if end.Before(start) {
		end = workflow.Now(ctx)
	}
	h.WithTags(map[string]string{"kind": st.Kind}).Timer(MetricStepDuration).Record(end.Sub(start))
}

// recordRun counts the run's outcome, and the steps that never ran (skipped after
// a failure or a cancellation) with their hosts.
func (r *run) recordRun(ctx workflow.Context, outcome string) {
	h := workflow.GetMetricsHandler(ctx)
	for i := range r.progress.Steps {
		if st := &r.progress.Steps[i]; st.Status == StepSkipped {
			h.WithTags(map[string]string{"kind": st.Kind, "outcome": st.Status}).Counter(MetricSteps).Inc(1)
			for _, hs := range st.Hosts {
				h.WithTags(map[string]string{"kind": st.Kind, "state": hs.State}).Counter(MetricHostSteps).Inc(1)
			}
		}
	}
	h.WithTags(map[string]string{"outcome": outcome}).Counter(MetricRuns).Inc(1)
}
