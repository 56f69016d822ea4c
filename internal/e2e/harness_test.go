//go:build integration || lab || browser

// Package e2e runs clusterflow end to end as a user would: the real worker and starter
// binaries, the embedded Temporal server in a process of its own (persisted in SQLite),
// and real OpenSSH servers on loopback addresses. Worker processes are killed with
// SIGKILL to prove that runs survive them.
//
// Run with: go test -tags integration ./internal/e2e/ (loopback sshd hosts), and
// go test -tags lab ./internal/e2e/ (procedures on the Docker lab: Debian nodes with
// their own sshd and Docker engine). Set CLUSTERFLOW_RECORD_HISTORIES=DIR to write
// the runs' histories as replay fixtures.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	"github.com/clusterflow/clusterflow/playbooks"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "clusterflow-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// The worker's file policy: tests keep their playbooks, keys and lab state in
	// temporary directories, read the repository's playbooks and install offline
	// bundles from the lab's package cache, so every worker and starter of the suite
	// (they inherit this environment) may read and write under the temporary
	// directory and read the repository and the cache. The hostile-input suite
	// starts its workers with a narrow policy of its own.
	repo, _ := filepath.Abs(filepath.Join("..", ".."))
	cache := os.Getenv("CLUSTERFLOW_CACHE_DIR")
	if cache == "" {
		cache = "/var/cache/clusterflow"
	}
	os.Setenv("CLUSTERFLOW_ALLOW_PATHS", os.TempDir())
	os.Setenv("CLUSTERFLOW_ALLOW_READ", repo+","+cache)
	for _, name := range []string{"worker", "starter", "lab"} {
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

// newCluster starts an embedded Temporal server process (without its Web UI) and,
// when hosts > 0, an sshd serving that many loopback hosts. Workers are started by
// the test.
func newCluster(t *testing.T, hosts int) *cluster {
	t.Helper()
	return startCluster(t, hosts, 0)
}

// startCluster is newCluster with the Web UI on uiPort (0: no UI). It returns once
// the frontend accepts clients.
func startCluster(t *testing.T, hosts, uiPort int) *cluster {
	t.Helper()
	return startClusterWith(t, hosts, uiPort, nil)
}

// startClusterWith is startCluster with extra environment for the server process
// and extra `worker server` arguments.
func startClusterWith(t *testing.T, hosts, uiPort int, env []string, args ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, dir: t.TempDir(), logs: map[*exec.Cmd]*bytes.Buffer{}}
	if hosts > 0 {
		c.ssh = sshtest.New(t, hosts)
	}
	c.port = freePort(t)
	c.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))
	c.startEnv("server", env, "worker", append([]string{"server", "--grpc-port", strconv.Itoa(c.port), "--ui-port", strconv.Itoa(uiPort),
		"--state-dir", filepath.Join(c.dir, "state")}, args...)...)
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
	return c.startEnv(label, nil, bin, args...)
}

// startEnv is start with extra environment for this process only.
func (c *cluster) startEnv(label string, env []string, bin string, args ...string) *exec.Cmd {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, bin), args...)
	cmd.Env = append(append(os.Environ(), "CLUSTERFLOW_LOG_LEVEL=warn"), env...)
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

// history is a run's whole history.
func (c *cluster) history(t *testing.T, id string) *historypb.History {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var h historypb.History
	it := c.client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatalf("history of %s: %v", id, err)
		}
		h.Events = append(h.Events, e)
	}
	return &h
}

// record writes the run's history as a replay fixture when asked to.
func (c *cluster) record(id, name string) {
	dir := os.Getenv("CLUSTERFLOW_RECORD_HISTORIES")
	if dir == "" {
		return
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(c.history(c.t, id))
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

// e2eLab is the lab of this test process: one at a time, under a name of its own
// (cf-e2e-XXXXXX, new each run), so that the tests never meet a lab they did not
// create; the user's default lab and any other lab on the engine are left alone.
var e2eLab struct {
	name  string
	up    bool              // this process made it and has not taken it down
	addrs map[string]string // node name -> address, from its inventory
}

// labName is this process's lab name, chosen on first use.
func labName() string {
	if e2eLab.name == "" {
		newLabName()
	}
	return e2eLab.name
}

func newLabName() { e2eLab.name = fmt.Sprintf("cf-e2e-%06x", rand.Uint32()&0xffffff) }

// labContainer is the container of a node of this process's lab.
func labContainer(node string) string { return labName() + "-" + node }

// labAddr is a node's address on the lab network, from the last labUp's inventory.
func labAddr(t *testing.T, node string) string {
	t.Helper()
	a, ok := e2eLab.addrs[node]
	if !ok {
		t.Fatalf("lab %s has no node %s (nodes %v)", labName(), node, e2eLab.addrs)
	}
	return a
}

// labSubnetAddr is address .i of the lab's /24 (the repository is .10, master .11).
func labSubnetAddr(t *testing.T, i int) string {
	t.Helper()
	a := netip.MustParseAddr(labAddr(t, "master")).As4()
	a[3] = byte(i)
	return netip.AddrFrom4(a).String()
}

// labUp brings up a fresh lab of n nodes (this process's lab: an earlier test's is
// taken down first) with its state in the test's directory, and returns the path of
// the inventory it wrote. With prebaked, the nodes come with docker.io installed (not
// started). The lab is taken down when the test ends, unless CLUSTERFLOW_LAB_KEEP is
// set. When the subnet of the lab's name is taken (`lab up` exits 3: another lab),
// it tries another name.
func (c *cluster) labUp(n int, prebaked bool) string {
	c.t.Helper()
	state := filepath.Join(c.dir, "state")
	lab := func(name string, args ...string) (string, int) {
		cmd := exec.Command(filepath.Join(binDir, "lab"), args...)
		// NO_FETCH: the lab's package cache must already exist (`lab repo`, run by
		// make test-lab); a test run never downloads from Debian's mirror.
		cmd.Env = append(os.Environ(), "CLUSTERFLOW_STATE_DIR="+state, "CLUSTERFLOW_LAB_NO_FETCH=1", "CLUSTERFLOW_LAB="+name)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			c.t.Fatalf("lab %v: %v", args, err)
		}
		return string(out), 0
	}
	must := func(name string, args ...string) {
		if out, code := lab(name, args...); code != 0 {
			c.t.Fatalf("lab --name %s %v: exit %d\n%s", name, args, code, out)
		}
	}
	if e2eLab.up {
		must(labName(), "down")
		e2eLab.up = false
	}
	args := []string{"up", "--nodes", strconv.Itoa(n)}
	if prebaked {
		args = append(args, "--prebaked")
	}
	for try := 1; ; try++ {
		out, code := lab(labName(), args...)
		if code == 0 {
			break
		}
		if code != 3 || try == 5 {
			_, _ = lab(labName(), "down")
			c.t.Fatalf("lab --name %s %v: exit %d\n%s", labName(), args, code, out)
		}
		c.t.Logf("lab %s: its subnet is taken, trying another name:\n%s", labName(), strings.TrimSpace(out))
		newLabName()
	}
	e2eLab.up = true
	name := labName()
	c.t.Cleanup(func() {
		if os.Getenv("CLUSTERFLOW_LAB_KEEP") == "" && e2eLab.up && e2eLab.name == name {
			must(name, "down")
			e2eLab.up = false
		}
	})
	inv := filepath.Join(state, "labs", name, "inventory.yaml")
	e2eLab.addrs = map[string]string{}
	for _, m := range regexp.MustCompile(`\{name: ([a-z0-9]+), address: ([0-9.]+),`).FindAllStringSubmatch(readFile(c.t, inv), -1) {
		e2eLab.addrs[m[1]] = m[2]
	}
	if len(e2eLab.addrs) < n {
		c.t.Fatalf("lab %s: the inventory %s lists %d nodes, want %d", name, inv, len(e2eLab.addrs), n)
	}
	c.t.Logf("lab %s up: %d nodes, master at %s", name, len(e2eLab.addrs), e2eLab.addrs["master"])
	return inv
}

// labPlaybook writes a playbook that includes the lab inventory, with the given
// steps (YAML, indented for spec.steps), next to the test's other files.
func (c *cluster) labPlaybook(name, inventory, steps string) string {
	c.t.Helper()
	text := fmt.Sprintf(`apiVersion: clusterflow.io/v1
kind: Playbook
metadata:
  name: %s
  cluster: lab
spec:
  inventory:
    include: [%s]
  steps:
%s`, name, inventory, steps)
	path := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// newClusterWithUI is newCluster with the embedded Web UI on a free loopback port; it
// returns the UI's base URL once the UI answers HTTP.
func newClusterWithUI(t *testing.T, hosts int) (*cluster, string) {
	t.Helper()
	return newClusterWithUIEnv(t, hosts, nil)
}

// newClusterWithUIEnv is newClusterWithUI with extra environment and arguments for
// the server process (see startClusterWith).
func newClusterWithUIEnv(t *testing.T, hosts int, env []string, args ...string) (*cluster, string) {
	t.Helper()
	uiPort := freePort(t)
	uiURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(uiPort))
	c := startClusterWith(t, hosts, uiPort, env, args...)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(uiURL + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				break
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("embedded web UI did not come up at %s: %v\n%s", uiURL, err, c.logOf(c.procs[0]))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return c, uiURL
}

// labHosts resolves the lab inventory the way a playbook sees it (defaults applied,
// paths absolute) and checks it lists n hosts: the input procedure workflows take.
func (c *cluster) labHosts(inventory string, n int) []playbooks.Host {
	c.t.Helper()
	pb := c.labPlaybook("lab-hosts", inventory, "    - name: noop\n      kind: run\n      hosts: all\n      command: [\"true\"]\n")
	plan, err := playbooks.Load(pb)
	if err != nil {
		c.t.Fatal(err)
	}
	if len(plan.Hosts) != n {
		c.t.Fatalf("lab inventory has %d hosts, want %d", len(plan.Hosts), n)
	}
	return plan.Hosts
}

// activityAttempts returns the attempt number of the last started (or failed)
// attempt of the named activity in a run.
func activityAttempts(t *testing.T, c *cluster, id, activity string) int {
	t.Helper()
	types := map[int64]string{}
	n := 0
	eachEvent(t, c, id, func(e *historypb.HistoryEvent) {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			types[e.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil && types[a.GetScheduledEventId()] == activity {
			n = max(n, int(a.GetAttempt()))
		}
	})
	return n
}

// eachEvent gives each event of run id's history to fn, in order.
func eachEvent(t *testing.T, c *cluster, id string, fn func(*historypb.HistoryEvent)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	it := c.client.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		fn(e)
	}
}
