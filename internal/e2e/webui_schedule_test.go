//go:build browser

package e2e

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.temporal.io/api/workflowservice/v1"
)

// TestWebUISchedule creates a schedule with the CLI (every 5 s) and finds it in the
// embedded Web UI: listed on the Schedules page, and its page listing the runs it
// started. Screenshot: webui-schedule.png in CLUSTERFLOW_SCREENSHOT_DIR.
//
// Run with: go test -tags browser -count=1 -v ./internal/e2e/ -run WebUISchedule
func TestWebUISchedule(t *testing.T) {
	c, ui := newClusterWithUI(t, 1)
	pb := c.playbook("ui-sched", "    - name: hello\n      kind: run\n      hosts: all\n      command: [uname, -a]\n")
	c.start("worker-sched", "worker", "--address", c.addr, "--state-dir", filepath.Join(c.dir, "state"), "--playbook-dir", c.dir)
	out, code := c.starter("schedule", "create", pb, "--every", "5s", "--id", "ui-sched", "--playbook-dir", c.dir)
	if code != 0 {
		t.Fatalf("schedule create: exit %d\n%s", code, out)
	}
	defer c.starter("schedule", "delete", "ui-sched")

	// A run the schedule started has completed (checked with the SDK).
	var runID string
	waitFor(t, 90*time.Second, "a completed scheduled run", func() bool {
		resp, err := c.client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Query: `TemporalScheduledById = "ui-sched" AND ExecutionStatus = "Completed"`})
		if err != nil || len(resp.GetExecutions()) == 0 {
			return false
		}
		runID = resp.GetExecutions()[0].GetExecution().GetWorkflowId()
		return true
	})
	t.Logf("scheduled run %s completed", runID)

	ctx := browser(t)
	do(t, ctx, "open the Schedules page", chromedp.Navigate(ui+"/namespaces/default/schedules"))
	if err := waitText(ctx, 30*time.Second, "ui-sched"); err != nil {
		dump(t, ctx, "schedules")
		t.Fatalf("the Schedules page does not list ui-sched: %v\n%s", err, pageText(ctx))
	}
	do(t, ctx, "open the schedule's page", chromedp.Navigate(ui+"/namespaces/default/schedules/"+url.PathEscape("ui-sched")))
	if err := waitText(ctx, 30*time.Second, "playbook/ui-sched-"); err != nil {
		dump(t, ctx, "schedule")
		t.Fatalf("the schedule's page shows no run it started: %v\n%s", err, pageText(ctx))
	}
	text := pageText(ctx)
	if !strings.Contains(text, "RunPlaybook") {
		t.Errorf("the schedule's page does not name the workflow type:\n%s", text)
	}
	shots := os.Getenv("CLUSTERFLOW_SCREENSHOT_DIR")
	if shots == "" {
		shots = t.TempDir()
	}
	screenshot(t, ctx, filepath.Join(shots, "webui-schedule.png"))
}
