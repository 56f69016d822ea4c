package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"

	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

var runSeq atomic.Int64

// startPlaybook loads a playbook as the starter does and starts RunPlaybook with it
// under a fresh workflow ID.
func (e *env) startPlaybook(ctx context.Context, path string) (client.WorkflowRun, error) {
	return startRun(ctx, e.client, path)
}

// startRun is startPlaybook on the cluster c reaches.
func startRun(ctx context.Context, c client.Client, path string) (client.WorkflowRun, error) {
	plan, err := playbooks.Load(path)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("bench/%s/%d-%d", plan.Name, time.Now().Unix(), runSeq.Add(1))
	return c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: workflows.TaskQueue,
	}, workflows.RunPlaybook, workflows.RunPlaybookInput{Plan: plan})
}

// runPlaybook runs a playbook to its end and returns the wall time from the start
// request to the result, as a user of the starter sees it (without the starter's own
// process start). Any failed host is an error.
func (e *env) runPlaybook(ctx context.Context, path string) (time.Duration, client.WorkflowRun, error) {
	start := time.Now()
	run, err := e.startPlaybook(ctx, path)
	if err != nil {
		return 0, nil, err
	}
	var res workflows.Progress
	err = run.Get(ctx, &res)
	d := time.Since(start)
	if err != nil {
		return d, run, fmt.Errorf("run %s: %w", run.GetID(), err)
	}
	if res.Outcome != workflows.OutcomeCompleted {
		return d, run, fmt.Errorf("run %s: outcome %s", run.GetID(), res.Outcome)
	}
	for _, st := range res.Steps {
		for _, h := range st.Hosts {
			if h.State == workflows.HostFailed || h.State == workflows.HostSkipped {
				return d, run, fmt.Errorf("run %s: step %q host %s %s: %s", run.GetID(), st.Name, h.Host, h.State, h.Message)
			}
		}
	}
	return d, run, nil
}

// history returns a run's events.
func (e *env) history(ctx context.Context, id, runID string) ([]*historypb.HistoryEvent, error) {
	var events []*historypb.HistoryEvent
	it := e.client.GetWorkflowHistory(ctx, id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, err
		}
		events = append(events, ev)
	}
	return events, nil
}
