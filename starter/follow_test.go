package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/workflows"
)

// roundTrip passes err through the failure converter, as a run's error reaches the
// starter.
func roundTrip(err error) error {
	fc := temporal.GetDefaultFailureConverter()
	return fc.FailureToError(fc.ErrorToFailure(err))
}

// TestFailureDetailsBothShapes: the starter shows a failed run from its error's
// details whether they are a FailureSummary (runs since bounded-failure-details) or
// a whole Progress (runs from before).
func TestFailureDetailsBothShapes(t *testing.T) {
	summary := &workflows.FailureSummary{Playbook: "pb", Outcome: workflows.OutcomeFailed, Summary: "pb failed: 2 steps, 0 changed, 0 unchanged, 1 failed, 1 skipped",
		FailedStep: "check", StepCount: 2, FailedHosts: []workflows.HostState{{Host: "h1", State: workflows.HostFailed, Message: "exit 4: not ready"}}, MoreFailed: 3}
	old := &workflows.Progress{Playbook: "pb", Outcome: workflows.OutcomeFailed, Current: -1, Steps: []workflows.StepState{
		{Name: "check", Kind: "run", Status: workflows.StepFailed, Hosts: []workflows.HostState{{Host: "h1", State: workflows.HostFailed, Message: "exit 4: not ready"}}}}}

	for name, c := range map[string]struct {
		details any
		want    []string
	}{
		"summary":  {summary, []string{"pb failed: 2 steps", "h1, check: exit 4: not ready", "and 3 more failed hosts", "run failed: step"}},
		"progress": {old, []string{"pb failed: 1 steps", "check            h1         failed    exit 4: not ready", "run failed: step"}},
	} {
		t.Run(name, func(t *testing.T) {
			err := roundTrip(temporal.NewNonRetryableApplicationError(`step "check" failed`, workflows.ErrPlaybookFailed, nil, c.details))
			var out bytes.Buffer
			f := &follower{out: &out, seen: map[string]hostState{}}
			if got := f.finish(nil, err); !errors.Is(got, errReported) {
				t.Fatalf("finish: %v", got)
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
