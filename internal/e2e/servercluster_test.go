//go:build integration

package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"

	"github.com/clusterflow/clusterflow/internal/config"
	"github.com/clusterflow/clusterflow/internal/pgtest"
	"github.com/clusterflow/clusterflow/internal/sshtest"
	"github.com/clusterflow/clusterflow/workflows"
)

// clusterLabBootstrap is the hook for the lab part of TestServerCluster: one lab
// bootstrap playbook run on the same server cluster while the loopback playbooks
// run (and through the same kills). It needs Docker and the lab, which the
// integration suite does not use; a lab-tagged file may set it. It starts the run
// and returns a function that waits for it and checks it.
var clusterLabBootstrap func(t *testing.T, c *cluster) (wait func())

// serverProc is one `worker server` process of a cluster on PostgreSQL.
type serverProc struct {
	cmd   *exec.Cmd
	addr  string // frontend host:port
	uiURL string
}

// TestServerCluster runs clusterflow on a Temporal cluster of its own making:
// PostgreSQL from Debian's package, two `worker server` processes on it with mTLS
// (frontend and internode), three workers given both frontends, 20 playbooks at once
// on loopback sshd hosts. While the playbooks run, one server process and one worker
// are killed with SIGKILL. Every run must complete, no host command may run twice
// (per-host counter files), and the surviving server's Web UI must list the runs
// with their search attributes. Also: clients without a certificate, or with one
// from another CA, are refused; a server asking for another history shard count is
// refused; the database password shows in no log.
func TestServerCluster(t *testing.T) {
	pg := pgtest.New(t, pgtest.Options{NoFsync: true})
	c := &cluster{t: t, dir: t.TempDir(), logs: map[*exec.Cmd]*bytes.Buffer{}}
	t.Cleanup(c.stopAll)
	c.ssh = sshtest.New(t, 10)
	certs := newPKI(t, filepath.Join(c.dir, "pki"))
	dbURL := pg.URL("temporal") + "?max_conns=20"

	// Both servers start at once on the empty database: one sets the schema up,
	// the other waits for the schema lock and finds it done.
	servers := []*serverProc{
		c.startServer("server1", dbURL, pg.PasswordFile, certs, fmt.Sprint(clusterPortBase(t))),
		c.startServer("server2", dbURL, pg.PasswordFile, certs, "0"),
	}
	c.addr = servers[0].addr + "," + servers[1].addr
	// Workers and starters find their client certificate in the environment.
	t.Setenv("TEMPORAL_TLS_CERT", certs.clientCert)
	t.Setenv("TEMPORAL_TLS_KEY", certs.clientKey)
	t.Setenv("TEMPORAL_TLS_CA", certs.ca)
	t.Setenv("CLUSTERFLOW_METRICS_ADDRESS", "off")
	for _, s := range servers {
		s.waitUp(t, c)
	}
	c.client = dialCluster(t, c.addr)
	t.Cleanup(c.client.Close)

	t.Run("refusals", func(t *testing.T) {
		checkRefusals(t, c, servers[0].addr, certs, dbURL, pg.PasswordFile)
	})

	workers := []*exec.Cmd{c.startWorker(), c.startWorker(), c.startWorker()}
	for _, w := range workers {
		waitFor(t, 2*time.Minute, "a worker to poll", func() bool {
			return strings.Contains(c.logOf(w), "worker polling task queue")
		})
	}

	// 20 playbooks of three steps on two of the ten hosts each; every command
	// appends its step's name (and the time) to a counter file of its playbook and
	// host. Each step is guarded the way a playbook makes a command idempotent
	// (unless: a marker the command leaves): Temporal runs an activity at least
	// once, and a command that finishes just as its worker dies, or while the
	// history shard of its run moves off a dead server, finishes unrecorded and
	// runs again (seen here without the guard: once in 120 host-steps, 0.3 s after
	// the kills). Five hosts a playbook (100 at once) overload this 2-core machine:
	// heartbeats miss their 3 s timeout and steps retry regardless of the kills;
	// with two, a loaded machine still makes some retry, hence attempts: 10.
	out := t.TempDir()
	const runs, hostsPer = 20, 2
	var paths []string
	for i := range runs {
		name := fmt.Sprintf("cluster-%02d", i+1)
		var hosts []string
		for j := range hostsPer {
			hosts = append(hosts, fmt.Sprintf("h%d", (i+j)%len(c.ssh.Hosts)+1))
		}
		step := func(step, body string) string {
			return fmt.Sprintf(`    - name: %[1]s
      kind: run
      hosts: [%[2]s]
      timeout: 2m
      attempts: 10
      unless: [sh, -c, 'set -- $SSH_CONNECTION; test -e %[4]s/done-%[1]s-%[5]s-$3']
      command: [sh, -c, 'set -- $SSH_CONNECTION; %[3]s echo %[1]s $(date +%%T.%%N) >> %[4]s/counter-%[5]s-$3; touch %[4]s/done-%[1]s-%[5]s-$3']
`, step, strings.Join(hosts, ", "), body, out, name)
		}
		path := c.playbook(name,
			step("before", "")+
				step("long", fmt.Sprintf("touch %s/started-%s-$3; sleep 8;", out, name))+
				step("after", ""))
		// A cluster of its own each: runs on one cluster take turns.
		text := strings.Replace(readFile(t, path), "cluster: loopback", "cluster: "+name, 1)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	var lab func()
	if clusterLabBootstrap != nil {
		lab = clusterLabBootstrap(t, c)
	} else {
		t.Log("lab bootstrap part not run: clusterLabBootstrap is unset (it needs Docker and the lab)")
	}
	start := time.Now()
	startAll(t, c, paths)
	t.Logf("20 runs started in %s", time.Since(start).Round(time.Millisecond))

	started := func() int {
		m, _ := filepath.Glob(filepath.Join(out, "started-*"))
		return len(m)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for started() < runs*hostsPer/2 {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, p := range append([]*exec.Cmd{servers[0].cmd, servers[1].cmd}, workers...) {
				fmt.Fprintf(&b, "--- %s\n%s\n", strings.Join(p.Args[:2], " "), tail(c.logOf(p), 15))
			}
			t.Fatalf("the long step started on %d hosts in 3 min; want %d\n%s", started(), runs*hostsPer/2, b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range []*exec.Cmd{servers[1].cmd, workers[0]} {
		if err := p.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.Wait()
	}
	killedAt := time.Now()
	t.Logf("server2 and worker1 killed with SIGKILL, the long step started on %d of %d hosts", started(), runs*hostsPer)

	for i := range runs {
		id := workflows.WorkflowID(fmt.Sprintf("cluster-%02d", i+1))
		if err := c.waitRun(id, 5*time.Minute); err != nil {
			t.Fatalf("run %s: %v\nserver1: %s", id, err, tail(c.logOf(servers[0].cmd), 30))
		}
	}
	t.Logf("all runs completed %s after the kills, %s after the start", time.Since(killedAt).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if lab != nil {
		lab()
	}

	for i := range runs {
		name := fmt.Sprintf("cluster-%02d", i+1)
		for j := range hostsPer {
			h := c.ssh.Hosts[(i+j)%len(c.ssh.Hosts)]
			got := readFile(t, filepath.Join(out, "counter-"+name+"-"+h.Addr))
			var steps []string
			for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
				steps = append(steps, strings.Fields(line + " ")[0])
			}
			if strings.Join(steps, " ") != "before long after" {
				t.Errorf("%s on %s ran %q (the killed ones at %s); want each step exactly once", name, h.Addr, got, killedAt.Format("15:04:05.000"))
			}
		}
	}

	// The surviving server's Web UI lists them by their search attributes.
	listed := uiList(t, servers[0].uiURL, `ClusterflowOutcome = "completed"`)
	if len(listed) != runs {
		t.Errorf("the Web UI lists %d completed runs; want %d: %v", len(listed), runs, listed)
	}
	for _, r := range listed {
		if !strings.HasPrefix(r["ClusterflowPlaybook"], "cluster-") || r["ClusterflowCluster"] != r["ClusterflowPlaybook"] || r["ClusterflowStepKinds"] != "[run]" {
			t.Errorf("run listed without its search attributes: %v", r)
		}
	}
	if one := uiList(t, servers[0].uiURL, `ClusterflowPlaybook = "cluster-07"`); len(one) != 1 {
		t.Errorf("filtering the Web UI's list by ClusterflowPlaybook = \"cluster-07\" gives %d runs; want 1", len(one))
	}

	secret := pg.Password()
	for cmd, log := range c.logs {
		if strings.Contains(log.String(), secret) {
			t.Errorf("the database password shows in the log of %s", strings.Join(cmd.Args, " "))
		}
	}
}

// startServer starts one `worker server` of the cluster, with its Web UI.
func (c *cluster) startServer(label, dbURL, passwordFile string, certs *pki, clusterPorts string) *serverProc {
	c.t.Helper()
	grpcPort, uiPort := freePort(c.t), freePort(c.t)
	s := &serverProc{
		addr:  net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort)),
		uiURL: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(uiPort)),
	}
	s.cmd = c.start(label, "worker", "server", "--db", dbURL, "--db-password-file", passwordFile,
		"--grpc-port", strconv.Itoa(grpcPort), "--ui-port", strconv.Itoa(uiPort),
		"--cluster-ports", clusterPorts, "--history-shards", "8",
		"--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-ca", certs.ca,
		"--state-dir", filepath.Join(c.dir, label))
	return s
}

// waitUp waits until the server prints its Web UI line (printed once the
// namespace is ready) and its UI answers.
func (s *serverProc) waitUp(t *testing.T, c *cluster) {
	t.Helper()
	waitFor(t, 3*time.Minute, s.addr+" to come up", func() bool {
		if s.cmd.ProcessState != nil || strings.Contains(c.logOf(s.cmd), "worker: ") {
			t.Fatalf("server %s exited:\n%s", s.addr, c.logOf(s.cmd))
		}
		return strings.Contains(c.logOf(s.cmd), "Web UI: ")
	})
	resp, err := http.Get(s.uiURL + "/api/v1/settings")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// clusterPortBase is the first of 7 free consecutive ports below 32768.
func clusterPortBase(t *testing.T) int {
	t.Helper()
	for base := 21000 + os.Getpid()%5000; base < 32000; base += 7 {
		free := true
		for p := base; p < base+config.ClusterPortCount && free; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return base
		}
	}
	t.Fatal("no 7 free consecutive ports below 32768")
	return 0
}

// dialCluster is an SDK client built the way the worker and starter build theirs:
// from the configuration (the TLS files in the environment) with a list of
// frontends.
func dialCluster(t *testing.T, addr string) client.Client {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.AddFlags(fs)
	cfg, err := config.Load(fs, append(os.Environ(), "TEMPORAL_ADDRESS="+addr, "HOME="+t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cfg.ClientOptions(addr)
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = quietSDKLogger{}
	cl, err := client.Dial(opts)
	if err != nil {
		t.Fatalf("dialling the cluster at %s: %v", addr, err)
	}
	return cl
}

// startAll starts every playbook with `starter run --detach`, all at once.
func startAll(t *testing.T, c *cluster, paths []string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(paths))
	for i, p := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(filepath.Join(binDir, "starter"), "run", "--detach", p, "--address", c.addr)
			cmd.Env = append(os.Environ(), "CLUSTERFLOW_LOG_LEVEL=warn")
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("starter run %s: %w\n%s", filepath.Base(p), err, out)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// checkRefusals tries the first server with a client that has no certificate, with
// one signed by a CA the server does not trust, and without TLS at all, and a third
// server that asks for another history shard count. The refusals' messages are
// logged for the record.
func checkRefusals(t *testing.T, c *cluster, addr string, certs *pki, dbURL, passwordFile string) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"no client certificate", []string{"TEMPORAL_TLS_CERT=", "TEMPORAL_TLS_KEY=", "TEMPORAL_TLS=true"}},
		{"a certificate from another CA", []string{"TEMPORAL_TLS_CERT=" + certs.strangerCert, "TEMPORAL_TLS_KEY=" + certs.strangerKey}},
		{"no TLS", []string{"TEMPORAL_TLS_CERT=", "TEMPORAL_TLS_KEY=", "TEMPORAL_TLS_CA="}},
	} {
		cmd := exec.Command(filepath.Join(binDir, "starter"), "list", "--address", addr)
		cmd.Env = append(append(os.Environ(), "CLUSTERFLOW_LOG_LEVEL=error"), tc.env...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("%s: starter list: %v, want exit 3 (Temporal unreachable):\n%s", tc.name, err, out)
			continue
		}
		t.Logf("%s: refused: %s", tc.name, strings.TrimSpace(string(out)))
	}
	s := c.start("server3", "worker", "server", "--db", dbURL, "--db-password-file", passwordFile,
		"--grpc-port", strconv.Itoa(freePort(t)), "--ui-port", "0", "--history-shards", "16",
		"--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-ca", certs.ca,
		"--state-dir", filepath.Join(c.dir, "server3"))
	err := s.Wait()
	log := c.logOf(s)
	if err == nil || !strings.Contains(log, "created with 8 history shards") {
		t.Errorf("a server asking for 16 shards on an 8-shard database: %v\n%s", err, log)
	}
	t.Logf("another shard count: refused: %s", strings.TrimSpace(log))
}

// uiList lists the runs matching a visibility query through a Web UI's API, as
// the UI's workflow list does, with their clusterflow search attributes decoded.
func uiList(t *testing.T, uiURL, query string) []map[string]string {
	t.Helper()
	var resp struct {
		Executions []struct {
			Execution struct {
				WorkflowID string `json:"workflowId"`
			} `json:"execution"`
			SearchAttributes struct {
				IndexedFields map[string]struct {
					Data string `json:"data"`
				} `json:"indexedFields"`
			} `json:"searchAttributes"`
		} `json:"executions"`
	}
	getJSON(t, uiURL+"/api/v1/namespaces/default/workflows?query="+url.QueryEscape(query), &resp)
	var out []map[string]string
	for _, e := range resp.Executions {
		r := map[string]string{"id": e.Execution.WorkflowID}
		for k, v := range e.SearchAttributes.IndexedFields {
			raw, _ := base64.StdEncoding.DecodeString(v.Data)
			var s any
			_ = json.Unmarshal(raw, &s)
			r[k] = fmt.Sprint(s)
		}
		out = append(out, r)
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// quietSDKLogger drops the test client's SDK log lines (a dead frontend makes it
// warn about every call it retries elsewhere).
type quietSDKLogger struct{}

func (quietSDKLogger) Debug(string, ...any) {}
func (quietSDKLogger) Info(string, ...any)  {}
func (quietSDKLogger) Warn(string, ...any)  {}
func (quietSDKLogger) Error(string, ...any) {}
