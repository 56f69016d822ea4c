//go:build integration

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// scheduleJSON is what `starter schedule describe --output json` prints, in part.
type scheduleJSON struct {
	ID              string      `json:"id"`
	Playbook        string      `json:"playbook"`
	Input           string      `json:"input"`
	State           string      `json:"state"`
	Note            string      `json:"note"`
	Spec            string      `json:"spec"`
	Overlap         string      `json:"overlap"`
	Actions         int         `json:"actions"`
	NextActionTimes []time.Time `json:"nextActionTimes"`
	RecentActions   []struct {
		WorkflowID string `json:"workflowId"`
		Status     string `json:"status"`
	} `json:"recentActions"`
}

// TestSchedule drives `starter schedule` end to end: bad input creates nothing; a
// schedule every 5s fires a run that reads the playbook in the worker's playbook
// directory and completes; describe and list show it; pause stops the firings,
// trigger runs it anyway, unpause resumes them, delete removes the schedule.
func TestSchedule(t *testing.T) {
	c := newCluster(t, 1)
	// Scheduled runs load their playbook on the worker: the test's directory is the
	// playbook directory of the worker and of the starter.
	w := c.start("worker-pb", "worker", "--address", c.addr, "--state-dir", filepath.Join(c.dir, "state"), "--playbook-dir", c.dir)
	logOnFailure(c, w)
	out := t.TempDir()
	pb := c.playbook("e2e-sched", fmt.Sprintf(`    - name: stamp
      kind: run
      hosts: all
      command: [sh, -c, 'echo fired >> %s/fired']
`, out))
	sched := func(args ...string) (string, int) {
		t.Helper()
		return c.starter(append([]string{"schedule"}, append(args, "--playbook-dir", c.dir)...)...)
	}
	describe := func(id string) scheduleJSON {
		t.Helper()
		text, code := sched("describe", id, "--output", "json")
		if code != 0 {
			t.Fatalf("describe %s: exit %d\n%s", id, code, text)
		}
		var v scheduleJSON
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			t.Fatalf("describe %s: %v\n%s", id, err, text)
		}
		return v
	}

	// Step 1. Bad input: exit 2, and no schedule.
	bad := c.playbook("e2e-sched-bad", "    - name: x\n      kind: teleport\n      hosts: all\n")
	text, code := sched("create", bad, "--every", "5s")
	if code != 2 || !regexp.MustCompile(`e2e-sched-bad\.yaml:\d+:\d+: spec\.steps\[0\]\.kind`).MatchString(text) {
		t.Fatalf("invalid playbook: exit %d, want 2 and file:line:column: field\n%s", code, text)
	}
	outside := filepath.Join(t.TempDir(), "e2e-sched.yaml")
	if err := os.WriteFile(outside, []byte(readFile(t, pb)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"create", bad, "--every", "5s", "--id", "e2e-sched-bad"}, // the ID is free; the playbook is not valid
		{"create", pb},                    // no --cron or --every
		{"create", pb, "--every", "soon"}, // not a duration
		{"create", pb, "--every", "5s", "--overlap", "queue"},
		{"create", pb, "--cron", "61 * * * *"}, // refused by the server
		{"create", outside, "--every", "5s"},   // not in the playbook directory
	} {
		if text, code := sched(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", args, code, text)
		}
	}
	if text, code := sched("describe", "e2e-sched-bad"); code != 2 || !strings.Contains(text, "no schedule e2e-sched-bad") {
		t.Fatalf("describe after refused creates: exit %d\n%s", code, text)
	}
	if text, code := sched("describe", "e2e-sched"); code != 2 {
		t.Fatalf("a refused create left schedule e2e-sched: exit %d\n%s", code, text)
	}

	// Step 2. Create: every 5s, overlap skip by default; it fires and the run completes.
	created := time.Now()
	text, code = sched("create", pb, "--every", "5s", "--catchup-window", "1m")
	t.Logf("create:\n%s", text)
	if code != 0 || !strings.Contains(text, "created schedule e2e-sched: playbook e2e-sched, every 5s, overlap skip") ||
		!strings.Contains(text, "e2e-sched.yaml in the worker's playbook directory") {
		t.Fatalf("create: exit %d\n%s", code, text)
	}
	if text, code := sched("create", pb, "--every", "1h"); code != 3 || !strings.Contains(text, "already exists") {
		t.Fatalf("second create under the same ID: exit %d, want 3\n%s", code, text)
	}
	var v scheduleJSON
	waitFor(t, 90*time.Second, "the schedule to fire", func() bool {
		v = describe("e2e-sched")
		return len(v.RecentActions) > 0
	})
	first := v.RecentActions[0].WorkflowID
	t.Logf("first firing %s after create: %s", time.Since(created).Round(time.Millisecond), first)
	if !strings.HasPrefix(first, "playbook/e2e-sched-") {
		t.Fatalf("scheduled workflow ID %q, want playbook/e2e-sched-<time>", first)
	}
	if err := c.waitRun(first, 2*time.Minute); err != nil {
		t.Fatalf("scheduled run %s: %v", first, err)
	}
	if !strings.HasPrefix(readFile(t, filepath.Join(out, "fired")), "fired\n") {
		t.Fatalf("the scheduled run did not run its step")
	}
	v = describe("e2e-sched")
	if v.State != "active" || v.Overlap != "skip" || v.Playbook != "e2e-sched" || v.Spec != "every 5s" ||
		len(v.NextActionTimes) == 0 || v.RecentActions[0].Status != "completed" {
		t.Fatalf("describe: %+v", v)
	}
	text, code = sched("describe", "e2e-sched")
	if code != 0 || !strings.Contains(text, first) || !strings.Contains(text, "next firings:") {
		t.Fatalf("describe (text): exit %d\n%s", code, text)
	}
	t.Logf("describe:\n%s", text)
	text, code = c.starter("list")
	if code != 0 || !regexp.MustCompile(regexp.QuoteMeta(first)+`\s+completed\s+completed\s+loopback`).MatchString(text) {
		t.Fatalf("starter list does not show the scheduled run completed: exit %d\n%s", code, text)
	}
	text, code = c.starter("list", "--query", `TemporalScheduledById = "e2e-sched"`)
	if code != 0 || !strings.Contains(text, first) {
		t.Fatalf("starter list --query TemporalScheduledById: exit %d\n%s", code, text)
	}
	waitFor(t, 30*time.Second, "schedule list to show the schedule", func() bool {
		text, code := sched("list")
		return code == 0 && regexp.MustCompile(`e2e-sched\s+e2e-sched\s+active\s+every 5s`).MatchString(text)
	})

	// Step 3. Pause: no firing for two intervals.
	if text, code := sched("pause", "e2e-sched", "--note", "e2e pause"); code != 0 {
		t.Fatalf("pause: exit %d\n%s", code, text)
	}
	// A firing the server took just before the pause may still be open: let it end.
	v = describe("e2e-sched")
	for _, a := range v.RecentActions {
		if err := c.waitRun(a.WorkflowID, 2*time.Minute); err != nil {
			t.Fatalf("scheduled run %s: %v", a.WorkflowID, err)
		}
	}
	if v.State != "paused" || v.Note != "e2e pause" {
		t.Fatalf("after pause: state %q, note %q", v.State, v.Note)
	}
	paused := v.Actions
	for end := time.Now().Add(11 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if n := describe("e2e-sched").Actions; n != paused {
			t.Fatalf("a paused schedule fired: %d actions, %d at the pause", n, paused)
		}
	}

	// Step 4. Trigger runs it now, paused or not, and names the run.
	text, code = sched("trigger", "e2e-sched")
	m := regexp.MustCompile(`started (playbook/e2e-sched-\S+)`).FindStringSubmatch(text)
	if code != 0 || m == nil {
		t.Fatalf("trigger: exit %d\n%s", code, text)
	}
	if err := c.waitRun(m[1], 2*time.Minute); err != nil {
		t.Fatalf("triggered run %s: %v", m[1], err)
	}
	if v := describe("e2e-sched"); v.Actions != paused+1 || v.State != "paused" {
		t.Fatalf("after trigger: %d actions (want %d), state %s", v.Actions, paused+1, v.State)
	}

	// Step 5. Unpause: it fires again on its own.
	if text, code := sched("unpause", "e2e-sched"); code != 0 || !strings.Contains(text, "unpaused") {
		t.Fatalf("unpause: exit %d\n%s", code, text)
	}
	waitFor(t, 30*time.Second, "a firing after unpause", func() bool { return describe("e2e-sched").Actions > paused+1 })

	// Step 6. Delete: the schedule is gone; its runs are not.
	if text, code := sched("delete", "e2e-sched"); code != 0 {
		t.Fatalf("delete: exit %d\n%s", code, text)
	}
	if text, code := sched("describe", "e2e-sched"); code != 2 {
		t.Fatalf("describe after delete: exit %d\n%s", code, text)
	}
	for _, args := range [][]string{{"trigger", "e2e-sched"}, {"pause", "e2e-sched"}, {"delete", "e2e-sched"}} {
		if text, code := sched(args...); code != 2 {
			t.Errorf("%v after delete: exit %d, want 2\n%s", args, code, text)
		}
	}
	waitFor(t, 30*time.Second, "schedule list to drop the schedule", func() bool {
		text, code := sched("list", "--output", "json")
		return code == 0 && !strings.Contains(text, `"id":"e2e-sched"`)
	})
	if err := c.waitRun(first, 10*time.Second); err != nil {
		t.Fatalf("the first run after delete: %v", err)
	}
}

// TestScheduleSnapshotAndCron creates a schedule that stores the resolved plan (the
// playbook lies outside the playbook directory) and a paused cron schedule: the
// snapshot runs when triggered, and the cron schedule's next firing is Monday 06:00 UTC.
func TestScheduleSnapshotAndCron(t *testing.T) {
	c := newCluster(t, 1)
	logOnFailure(c, c.startWorker())
	pb := c.playbook("e2e-snap", "    - name: hi\n      kind: run\n      hosts: all\n      command: [\"true\"]\n")
	books := t.TempDir() // an empty playbook directory: the file is not in it

	text, code := c.starter("schedule", "create", pb, "--snapshot", "--paused", "--every", "1h", "--id", "snap", "--playbook-dir", books)
	if code != 0 || !strings.Contains(text, "plan e2e-snap as resolved from") || !strings.Contains(text, "paused") {
		t.Fatalf("create --snapshot: exit %d\n%s", code, text)
	}
	text, code = c.starter("schedule", "trigger", "snap")
	m := regexp.MustCompile(`started (playbook/e2e-snap-\S+)`).FindStringSubmatch(text)
	if code != 0 || m == nil {
		t.Fatalf("trigger: exit %d\n%s", code, text)
	}
	if err := c.waitRun(m[1], 2*time.Minute); err != nil {
		t.Fatalf("triggered snapshot run %s: %v", m[1], err)
	}

	text, code = c.starter("schedule", "create", pb, "--snapshot", "--paused", "--id", "weekly",
		"--cron", "0 6 * * MON", "--jitter", "1m", "--overlap", "buffer-one", "--playbook-dir", books)
	if code != 0 {
		t.Fatalf("create --cron: exit %d\n%s", code, text)
	}
	text, code = c.starter("schedule", "describe", "weekly", "--output", "json")
	var v scheduleJSON
	if code != 0 || json.Unmarshal([]byte(text), &v) != nil {
		t.Fatalf("describe weekly: exit %d\n%s", code, text)
	}
	if v.State != "paused" || v.Overlap != "buffer-one" || v.Spec != `cron "0 6 * * MON", jitter 1m` || len(v.NextActionTimes) == 0 {
		t.Fatalf("describe weekly: %+v", v)
	}
	// Jitter delays a firing by up to a minute.
	if next := v.NextActionTimes[0].UTC(); next.Weekday() != time.Monday || next.Hour() != 6 || next.Minute() > 1 {
		t.Fatalf("next firing %s, want a Monday at 06:00 UTC", next)
	}
	text, code = c.starter("schedule", "list")
	t.Logf("schedule list:\n%s", text)
}

// logOnFailure shows the worker's log when the test fails.
func logOnFailure(c *cluster, w *exec.Cmd) {
	c.t.Cleanup(func() {
		if c.t.Failed() {
			c.t.Logf("worker log:\n%s", c.logOf(w))
		}
	})
}
