//go:build integration

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

// TestClusterLease runs two different playbooks on the same cluster at once:
//
//   - through the starter, the second is refused before anything starts (exit 3,
//     naming the run that holds the cluster; no workflow for it exists);
//   - started directly (as the Web UI would, past the starter's check), RunPlaybook
//     refuses itself, non-retryable, before any activity: no command runs;
//   - once the first run ends, its lease is gone and the second runs.
func TestClusterLease(t *testing.T) {
	c := newCluster(t, 1)
	c.startWorker()
	out := t.TempDir()
	step := func(body string) string {
		return fmt.Sprintf("    - name: work\n      kind: run\n      hosts: all\n      command: [sh, -c, '%s']\n", body)
	}
	first := c.playbook("lease-first", step("touch "+out+"/first-started; sleep 6"))
	second := c.playbook("lease-second", step("touch "+out+"/second-ran"))

	if o, code := c.starter("run", "--detach", first); code != 0 {
		t.Fatalf("start first: exit %d\n%s", code, o)
	}
	firstID := workflows.WorkflowID("lease-first")
	waitFor(t, time.Minute, "the first run to start its command", func() bool {
		_, err := os.Stat(filepath.Join(out, "first-started"))
		return err == nil
	})

	// Step 1. Through the starter: refused, nothing started.
	o, code := c.starter("run", "--detach", second)
	t.Logf("second run while the first holds the cluster: exit %d\n%s", code, o)
	if code != 3 || !strings.Contains(o, "cluster loopback is in use by "+firstID+" (run ") {
		t.Fatalf("want exit 3 naming %s", firstID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var nf *serviceerror.NotFound
	if _, err := c.client.DescribeWorkflowExecution(ctx, workflows.WorkflowID("lease-second"), ""); !errors.As(err, &nf) {
		t.Fatalf("the refused run exists: %v", err)
	}

	// Step 2. Past the starter: the workflow refuses itself, at once.
	plan, err := playbooks.Load(second)
	if err != nil {
		t.Fatal(err)
	}
	run, err := c.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "playbook/lease-direct", TaskQueue: workflows.TaskQueue},
		workflows.RunPlaybook, workflows.RunPlaybookInput{Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	err = run.Get(ctx, nil)
	var app *temporal.ApplicationError
	if !errors.As(err, &app) || app.Type() != workflows.ErrClusterBusy || !app.NonRetryable() ||
		!strings.Contains(err.Error(), "cluster loopback is in use by another run") {
		t.Fatalf("direct start: want a non-retryable %s error, got %v", workflows.ErrClusterBusy, err)
	}
	t.Logf("started past the starter: %v", err)
	if n := activityAttempts(t, c, "playbook/lease-direct", "RunRemoteCommand"); n != 0 {
		t.Errorf("the refused run ran its command (%d attempts)", n)
	}
	if _, err := os.Stat(filepath.Join(out, "second-ran")); err == nil {
		t.Fatal("the refused playbook's command ran")
	}

	// Step 3. The first run ends and releases the cluster; the second runs.
	if err := c.waitRun(firstID, time.Minute); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if o, code := c.starter("run", second); code != 0 {
		t.Fatalf("second run after the first ended: exit %d\n%s", code, o)
	}
	c.record(firstID, "RunPlaybook-lease")
	c.record(workflows.ClusterLockID("loopback"), "ClusterLock-released")
}
