package workflows

import (
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/worker"
)

// TestReplayHistories replays every recorded history in testdata/histories against
// the current workflow code. A change that would break runs already in flight fails
// here: guard it with workflow.GetVersion. Histories are recorded from real runs by
// the integration tests (CLUSTERFLOW_RECORD_HISTORIES=workflows/testdata/histories);
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
			r := worker.NewWorkflowReplayer()
			Register(r)
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replaying %s: %v", f, err)
			}
		})
	}
	for _, wf := range []string{RunPlaybookName, DistributeKeysName, InstallDockerName} {
		if !covered[wf] {
			t.Errorf("no recorded history for workflow %s in testdata/histories", wf)
		}
	}
}
