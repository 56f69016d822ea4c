package workflows

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayHistories replays every recorded history in testdata/histories against
// the current workflow code. A change that would break runs already in flight fails
// here: guard it with workflow.GetVersion. Histories are recorded from real runs by
// the integration and lab tests (CLUSTERFLOW_RECORD_HISTORIES=$PWD/workflows/testdata/histories);
// each file is named after its workflow type: TYPE-scenario.json.
func TestReplayHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/histories/*.json")
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, f := range files {
		name := filepath.Base(f)
		covered[strings.SplitN(name, "-", 2)[0]] = true
		t.Run(name, func(t *testing.T) {
			r, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			h, err := client.HistoryFromJSON(r, client.HistoryJSONOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// Replay under the run's own workflow ID: RunPlaybook derives its child
			// workflows' IDs from it.
			id := h.GetEvents()[0].GetWorkflowExecutionStartedEventAttributes().GetWorkflowId()
			rp := worker.NewWorkflowReplayer()
			Register(rp)
			if err := rp.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: id, RunID: "replay"},
			}); err != nil {
				t.Fatalf("replaying %s: %v", f, err)
			}
		})
	}
	for _, wf := range registeredNames {
		if !covered[wf] {
			t.Errorf("no recorded history for workflow %s in testdata/histories", wf)
		}
	}
}
