//go:build integration

// Package e2e runs clusterflow end to end as a user would: the real worker and starter
// binaries, the embedded Temporal server in a process of its own (persisted in SQLite),
// and real OpenSSH servers on loopback addresses. Worker processes are killed with
// SIGKILL to prove that runs survive them.
//
// Run with: go test -tags integration ./internal/e2e/
// Set CLUSTERFLOW_RECORD_HISTORIES=DIR to write the runs' histories as replay fixtures.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/clusterflow/clusterflow/internal/sshtest"
	"github.com/clusterflow/clusterflow/workflows"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clusterflow-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, name := range []string{"worker", "starter"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), "github.com/clusterflow/clusterflow/"+name)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", name, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cluster is one test's world: sshd hosts, an embedded server process, workers.
type cluster struct {
	t        *testing.T
	dir      string
	ssh      *sshtest.Server
	port     int
	addr     string
	client   client.Client
	procs    []*exec.Cmd
	logs     map[*exec.Cmd]*bytes.Buffer
	workerNo int
}

func newCluster(t *testing.T, hosts int) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), logs: map[*exec.Cmd]*bytes.Buffer{}}
	c.ssh = sshtest.New(t, hosts)
	c.port = freePort(t)
	c.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
	c.start("server", "worker", "server", "--grpc-port", strconv.Itoa(c.port), "--ui-port", "0",
		"--state-dir", filepath.Join(c.dir, "state"))
	t.Cleanup(c.stopAll)
	var err error
	deadline := time.Now().Add(60 * time.Second)
	for {
		c.client, err = client.Dial(client.Options{HostPort: c.addr})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("embedded server did not come up: %v\n%s", err, c.logOf(c.procs[0]))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Cleanup(c.client.Close)
	return c
}

func (c *cluster) start(label, bin string, args ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Env = append(os.Environ(), "CLUSTERFLOW_LOG_LEVEL=warn")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", label, err)
	}
	c.procs = append(c.procs, cmd)
	c.logs[cmd] = &buf
	return cmd
}

func (c *cluster) startWorker() *exec.Cmd {
	c.workerNo++
	return c.start(fmt.Sprintf("worker%d", c.workerNo), "worker", "--address", c.addr, "--state-dir", filepath.Join(c.dir, "state"))
}

func (c *cluster) logOf(cmd *exec.Cmd) string { return c.logs[cmd].String() }

func (c *cluster) stopAll() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if p.ProcessState == nil {
			_ = p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = p.Process.Kill()
				<-done
			}
		}
	}
}

// starter runs the starter binary against this cluster and returns its output and exit code.
func (c *cluster) starter(args ...string) (string, int) {
	c.t.Helper()
	full := append(args, "--address", c.addr)
	cmd := exec.Command(filepath.Join(binDir, "starter"), full...)
	cmd.Env = append(os.Environ(), "CLUSTERFLOW_LOG_LEVEL=warn")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		c.t.Fatalf("starter %v: %v", args, err)
	}
	return string(out), 0
}

// playbook writes a playbook for this cluster's hosts with the given steps (YAML).
func (c *cluster) playbook(name, steps string) string {
	c.t.Helper()
	var hosts strings.Builder
	for i, h := range c.ssh.Hosts {
		fmt.Fprintf(&hosts, "      - {name: h%d, address: %s, groups: [all-hosts]}\n", i+1, h.Addr)
	}
	text := fmt.Sprintf(`apiVersion: clusterflow.io/v1
kind: Playbook
metadata:
  name: %s
  cluster: loopback
spec:
  vars: {greeting: hello}
  inventory:
    defaults:
      user: root
      port: %d
      identityFile: %s
      knownHostsFile: %s
    hosts:
%s  steps:
%s`, name, c.ssh.Hosts[0].Port, c.ssh.ClientKey, c.ssh.KnownHosts, hosts.String(), steps)
	path := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// waitRun waits for a run to close and returns its error.
func (c *cluster) waitRun(id string, limit time.Duration) error {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	return c.client.GetWorkflow(ctx, id, "").Get(ctx, nil)
}

// record writes the run's history as a replay fixture when asked to.
func (c *cluster) record(id, name string) {
	dir := os.Getenv("CLUSTERFLOW_RECORD_HISTORIES")
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var h historypb.History
	it := c.client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			c.t.Fatalf("history of %s: %v", id, err)
		}
		h.Events = append(h.Events, e)
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&h)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), b, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond until it holds or the limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

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
