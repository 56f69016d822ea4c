//go:build integration

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/clusterflow/clusterflow/workflows"
)

// TestPlaybookOverSSH runs run and upload steps on 3 loopback hosts through the
// starter, then runs the same playbook again and sees nothing change.
func TestPlaybookOverSSH(t *testing.T) {
	c := newCluster(t, 3)
	c.startWorker()
	out := t.TempDir()
	tmpl := filepath.Join(c.dir, "motd.tmpl")
	if err := os.WriteFile(tmpl, []byte("{{.Vars.greeting}} from {{.Host.Name}} at {{.Host.Address}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pb := c.playbook("e2e-basic", fmt.Sprintf(`    - name: facts
      kind: run
      hosts: all-hosts
      command: [sh, -c, 'set -- $SSH_CONNECTION; uname -s > %[1]s/uname-$3']
    - name: motd
      kind: upload
      hosts: h1
      src: motd.tmpl
      template: true
      dest: %[1]s/motd
      mode: "0640"
    - name: marker
      kind: run
      hosts: [h1, h2]
      command: [touch, %[1]s/marker]
      creates: %[1]s/marker
`, out))
	// The loopback hosts share this machine's file system, so the upload goes to one
	// host only; per-host differences are shown by the facts step's file names.

	start := time.Now()
	stdout, code := c.starter("run", pb)
	t.Logf("first run took %s:\n%s", time.Since(start).Round(time.Millisecond), stdout)
	if code != 0 {
		t.Fatalf("starter run exit %d:\n%s", code, stdout)
	}
	for i, h := range c.ssh.Hosts {
		if got := strings.TrimSpace(readFile(t, filepath.Join(out, "uname-"+h.Addr))); got != "Linux" {
			t.Errorf("host %d: uname file %q", i+1, got)
		}
	}
	motd := readFile(t, filepath.Join(out, "motd"))
	if motd != "hello from h1 at "+c.ssh.Hosts[0].Addr+"\n" {
		t.Errorf("motd: %q", motd)
	}
	if !strings.Contains(stdout, "e2e-basic completed") {
		t.Errorf("no completion summary in output")
	}
	c.record(workflows.WorkflowID("e2e-basic"), "RunPlaybook-basic")

	// The second run: the marker step's guard holds on both hosts.
	start = time.Now()
	stdout, code = c.starter("run", "--output", "json", pb)
	t.Logf("second run took %s", time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("second run exit %d:\n%s", code, stdout)
	}
	if !strings.Contains(stdout, `"unchanged"`) {
		t.Errorf("second run reports nothing unchanged:\n%s", stdout)
	}
}

// TestWorkerKilledMidStep kills the worker with SIGKILL while a long step runs on
// every host, starts a new worker, and checks that the run finishes with no
// completed step executed twice (a counter file per host records every execution).
func TestWorkerKilledMidStep(t *testing.T) {
	c := newCluster(t, 3)
	w1 := c.startWorker()
	out := t.TempDir()
	// Each command appends its step name to a per-host counter file; the host is
	// told apart by the server address in SSH_CONNECTION.
	step := func(name, body string) string {
		return fmt.Sprintf(`    - name: %s
      kind: run
      hosts: all
      timeout: 2m
      command: [sh, -c, 'set -- $SSH_CONNECTION; %s echo %s >> %s/counter-$3']
`, name, body, name, out)
	}
	pb := c.playbook("e2e-kill",
		step("before", "")+
			step("long", fmt.Sprintf("touch %s/started-$3-$$; sleep 8;", out))+
			step("after", ""))

	stdout, code := c.starter("run", "--detach", pb)
	if code != 0 {
		t.Fatalf("start: exit %d\n%s", code, stdout)
	}
	id := workflows.WorkflowID("e2e-kill")

	// A second run of the same playbook while this one is open is refused.
	dup, dupCode := c.starter("run", "--detach", pb)
	if dupCode != 3 || !strings.Contains(dup, "already running") {
		t.Fatalf("duplicate run: exit %d, want 3 and 'already running':\n%s", dupCode, dup)
	}

	// Kill the worker once the long step has started on every host.
	started := func() int {
		m, _ := filepath.Glob(filepath.Join(out, "started-*"))
		return len(m)
	}
	waitFor(t, 60*time.Second, "the long step to start on 3 hosts", func() bool { return started() >= 3 })
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w1.Wait()
	killedAt := time.Now()
	t.Logf("worker 1 killed with SIGKILL mid-step")

	// The remote commands of the dead worker must be gone (their SSH connection
	// dropped), so the long step's interrupted attempts never append.
	waitFor(t, 15*time.Second, "the interrupted remote sleeps to end", func() bool {
		return exec.Command("pgrep", "-f", "started-.*sleep 8").Run() != nil
	})

	c.startWorker()
	if err := c.waitRun(id, 3*time.Minute); err != nil {
		t.Fatalf("run after worker restart: %v", err)
	}
	t.Logf("run finished %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	for _, h := range c.ssh.Hosts {
		got := readFile(t, filepath.Join(out, "counter-"+h.Addr))
		if got != "before\nlong\nafter\n" {
			t.Errorf("host %s executed steps %q; want each exactly once", h.Addr, got)
		}
	}
	if n := started(); n != 6 {
		t.Errorf("long step started %d times over 3 hosts; want 6 (3 killed, 3 retried)", n)
	}
	c.record(id, "RunPlaybook-worker-killed")
}

// TestStatusListCancel follows a run with status, finds it with list, and cancels it:
// the run ends cancelled and its remote command is gone.
func TestStatusListCancel(t *testing.T) {
	c := newCluster(t, 2)
	c.startWorker()
	out := t.TempDir()
	pb := c.playbook("e2e-cancel", fmt.Sprintf(`    - name: wait
      kind: run
      hosts: all
      command: [sh, -c, 'touch %s/waiting-$$; exec sleep 300']
`, out))
	if stdout, code := c.starter("run", "--detach", pb); code != 0 {
		t.Fatalf("start: exit %d\n%s", code, stdout)
	}
	waitFor(t, 60*time.Second, "the command to start on both hosts", func() bool {
		m, _ := filepath.Glob(filepath.Join(out, "waiting-*"))
		return len(m) == 2
	})

	status, code := c.starter("status", "e2e-cancel")
	if code != 0 || !strings.Contains(status, "running") || !strings.Contains(status, "h1") {
		t.Fatalf("status: exit %d\n%s", code, status)
	}
	list, code := c.starter("list")
	if code != 0 || !strings.Contains(list, "playbook/e2e-cancel") || !strings.Contains(list, "loopback") {
		t.Fatalf("list: exit %d\n%s", code, list)
	}

	stdout, code := c.starter("cancel", "e2e-cancel")
	if code != 0 || !strings.Contains(stdout, "ended") {
		t.Fatalf("cancel: exit %d\n%s", code, stdout)
	}
	desc, err := c.client.DescribeWorkflowExecution(context.Background(), workflows.WorkflowID("e2e-cancel"), "")
	if err != nil {
		t.Fatal(err)
	}
	if s := desc.GetWorkflowExecutionInfo().GetStatus(); s != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		t.Fatalf("run status %s after cancel", s)
	}
	// The workflow waited for its activities to acknowledge the cancellation, and
	// they stop their remote commands before they do.
	waitFor(t, 15*time.Second, "the remote sleeps to end", func() bool {
		return exec.Command("pgrep", "-f", "exec sleep 300").Run() != nil
	})
}

// TestNamedPlaybookInput starts RunPlaybook the way the Web UI does, with the one-line
// JSON input {"playbook": NAME} naming a file in the worker's playbook directory.
func TestNamedPlaybookInput(t *testing.T) {
	c := newCluster(t, 1)
	// The playbook is written into the test's directory, which is the worker's
	// playbook directory here.
	c.playbook("from-ui", "    - name: hi\n      kind: run\n      hosts: all\n      command: [\"true\"]\n")
	c.start("worker-ui", "worker", "--address", c.addr, "--playbook-dir", c.dir)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := c.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "playbook/from-ui", TaskQueue: workflows.TaskQueue,
	}, workflows.RunPlaybookName, map[string]string{"playbook": "from-ui.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	var p workflows.Progress
	if err := run.Get(ctx, &p); err != nil {
		t.Fatalf("run from a named playbook: %v", err)
	}
	if p.Outcome != workflows.OutcomeCompleted || p.Steps[0].Hosts[0].State != workflows.HostChanged {
		t.Fatalf("progress: %+v", p)
	}

	// A name that leads out of the playbook directory is refused, and nothing runs.
	bad, err := c.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "playbook/escape", TaskQueue: workflows.TaskQueue,
	}, workflows.RunPlaybookName, map[string]string{"playbook": "../etc/passwd"})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "outside the worker's playbook directory") {
		t.Fatalf("escaping name: %v", err)
	}
}

// TestPlaybookFails runs a playbook whose first step fails on every host: the run
// fails, the later step is skipped, and the starter names the step and the hosts.
// The run's failure carries a bounded summary, not the whole progress.
func TestPlaybookFails(t *testing.T) {
	c := newCluster(t, 3)
	c.startWorker()
	pb := c.playbook("e2e-fails", `    - name: check
      kind: run
      hosts: all
      command: [sh, -c, 'echo "this host is not ready" >&2; exit 4']
    - name: never
      kind: run
      hosts: all
      command: ["true"]
`)
	stdout, code := c.starter("run", pb)
	t.Logf("starter run:\n%s", stdout)
	if code == 0 {
		t.Fatalf("a failing playbook exited 0:\n%s", stdout)
	}
	for _, want := range []string{`run failed: step "check" failed on 3 of 3 hosts`, "exit 4: this host is not ready", "e2e-fails failed"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	c.record(workflows.WorkflowID("e2e-fails"), "RunPlaybook-failed")
}
