package workflows

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/activities"
)

// recorder is a client.MetricsHandler that keeps counter totals and timer counts by
// name{label=value,...} with the labels this test cares about.
type recorder struct {
	mu     *sync.Mutex
	tags   map[string]string
	counts map[string]int64
}

func newRecorder() *recorder {
	return &recorder{mu: &sync.Mutex{}, tags: map[string]string{}, counts: map[string]int64{}}
}

func (r *recorder) key(name string) string {
	var ls []string
	for _, k := range slices.Sorted(maps.Keys(r.tags)) {
		if k == "kind" || k == "outcome" || k == "state" {
			ls = append(ls, k+"="+r.tags[k])
		}
	}
	return name + "{" + strings.Join(ls, ",") + "}"
}

func (r *recorder) add(name string, d int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[r.key(name)] += d
}

func (r *recorder) WithTags(tags map[string]string) client.MetricsHandler {
	n := &recorder{mu: r.mu, tags: maps.Clone(r.tags), counts: r.counts}
	maps.Copy(n.tags, tags)
	return n
}
func (r *recorder) Counter(name string) client.MetricsCounter {
	return counterFunc(func(d int64) { r.add(name, d) })
}
func (r *recorder) Gauge(string) client.MetricsGauge { return gaugeFunc(func(float64) {}) }
func (r *recorder) Timer(name string) client.MetricsTimer {
	return timerFunc(func(time.Duration) { r.add(name, 1) })
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

// TestRunPlaybookMetrics: a run whose first step fails on one host of three (no
// budget) counts the failed run, the failed step, the two steps skipped after it,
// and every host's state.
func TestRunPlaybookMetrics(t *testing.T) {
	rec := newRecorder()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	s.SetMetricsHandler(rec)
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	env.RegisterActivity(sshActs)
	env.RegisterActivity(fileActs)
	env.RegisterActivity(playbookActs)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.CommandRequest) (activities.CommandResult, error) {
			if req.Host.Name == "a" {
				return activities.CommandResult{}, temporal.NewNonRetryableApplicationError("boom", "Boom", nil)
			}
			return activities.CommandResult{}, nil
		})
	plan := testPlan("a", "b", "c")
	plan.Steps[0].Parallel = 1
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: plan})
	if env.GetWorkflowError() == nil {
		t.Fatal("the run must fail")
	}
	want := map[string]int64{
		"clusterflow_runs{outcome=failed}":                  1,
		"clusterflow_steps{kind=run,outcome=failed}":        1,
		"clusterflow_steps{kind=upload,outcome=skipped}":    1,
		"clusterflow_steps{kind=run,outcome=skipped}":       1,
		"clusterflow_host_steps{kind=run,state=failed}":     1,
		"clusterflow_host_steps{kind=run,state=skipped}":    5,
		"clusterflow_host_steps{kind=upload,state=skipped}": 3,
		"clusterflow_step_duration{kind=run}":               1,
	}
	got := map[string]int64{}
	for k, v := range rec.counts {
		if strings.HasPrefix(k, "clusterflow_") {
			got[k] = v
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("metrics\n got %v\nwant %v", got, want)
	}
}
