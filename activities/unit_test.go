package activities

import (
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
)

func TestRegister(t *testing.T) {
	dir := t.TempDir()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	Register(env, sshtest.Pool(t, remote.PoolOptions{}, nil), dir, nil)

	// Registered by method name: LoadPlaybook is callable by its name.
	_, err := env.ExecuteActivity("LoadPlaybook", LoadPlaybookRequest{})
	if err == nil || !strings.Contains(err.Error(), "input names no playbook") {
		t.Fatalf("LoadPlaybook by name: %v", err)
	}
	// And the others exist under their names (an input error proves they ran).
	if _, err := env.ExecuteActivity("RunRemoteCommand", CommandRequest{}); err == nil || !strings.Contains(err.Error(), ErrInvalidInput) {
		t.Fatalf("RunRemoteCommand by name: %v", err)
	}
	_, err = env.ExecuteActivity("UploadFile", UploadRequest{Src: filepath.Join(dir, "x"), Dest: "/x"})
	if err == nil || !strings.Contains(err.Error(), ErrInvalidInput) {
		t.Fatalf("UploadFile by name: %v", err)
	}
}
