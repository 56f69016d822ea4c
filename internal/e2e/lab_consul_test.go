//go:build lab

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

// TestConsulBootstrapLab runs a consulBootstrap playbook as a user would (starter
// run, real worker process, embedded Temporal server) on 3 fresh lab nodes: the
// consul binary that `lab consul` built (put in the lab state by `lab up`, checked
// by its SHA256SUMS) goes to every node over SFTP, and the three servers form a
// cluster. The test then reads the cluster back through each agent's HTTP API over
// SSH (a leader, 3 Raft peers, 3 members alive), runs the playbook again (every node
// unchanged, no agent restarted), and scans both runs' histories, payloads decoded,
// for the gossip key: it must not be there.
//
// Run: go run ./lab consul && go test -tags lab -count=1 -run Consul -v ./internal/e2e/
func TestConsulBootstrapLab(t *testing.T) {
	c := newCluster(t, 0)
	begin := time.Now()
	inv := c.labUp(3, false)
	t.Logf("lab of 3 fresh nodes up in %s", time.Since(begin).Round(time.Millisecond))
	hosts := c.labHosts(inv, 3)
	labState := filepath.Dir(inv)
	bin, sums := filepath.Join(labState, "consul"), filepath.Join(labState, "consul.SHA256SUMS")
	for _, f := range []string{bin, sums} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("lab up did not put the consul binary in the lab state (%v): run `go run ./lab consul` first (make test-lab does)", err)
		}
	}
	w := c.startWorker()

	keyFile := filepath.Join(c.dir, "consul-gossip.key")
	pb := c.labPlaybook("consul", inv, fmt.Sprintf(`    - name: consul cluster
      kind: consulBootstrap
      hosts: all
      binary: %s
      sha256sums: %s
      gossipKeyFile: %s
`, bin, sums, keyFile))
	parentID := workflows.WorkflowID("consul")
	childID := parentID + "/1-" + playbooks.KindConsulBootstrap

	// First run: three servers form a cluster.
	start := time.Now()
	out, code := c.starter("run", pb)
	first := time.Since(start)
	t.Logf("first run: %s\n%s", first.Round(time.Millisecond), out)
	if code != 0 {
		t.Fatalf("consul playbook: exit %d\nworker log:\n%s", code, c.logOf(w))
	}
	c.record(childID, "ConsulBootstrap-lab")
	res := consulResultOf(t, c, childID)
	for _, o := range res.Hosts {
		t.Logf("  %-8s %-9s %s", o.Host, o.State, o.Message)
		if o.State != workflows.HostChanged {
			t.Errorf("first run, %s: %s, want changed", o.Host, o.State)
		}
	}
	t.Logf("cluster: leader %s, peers %v, members %v", res.Leader, res.Peers, res.Members)
	wantPeers := []string{labAddr(t, "master") + ":8300", labAddr(t, "slave01") + ":8300", labAddr(t, "slave02") + ":8300"}
	if !slices.Contains(wantPeers, res.Leader) || !slices.Equal(res.Peers, wantPeers) || len(res.Members) != 3 {
		t.Errorf("result: leader %q, peers %v, members %v", res.Leader, res.Peers, res.Members)
	}

	// The cluster as each agent's API tells it, read here, over SSH, by the test.
	pool := remote.NewPool(remote.PoolOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer pool.Close()
	leaders := map[string]bool{}
	for _, h := range hosts {
		api := consulAPI(t, pool, workflows.HostOf(h))
		var leader string
		var peers []string
		var members []struct {
			Name, Addr string
			Status     int
			Tags       map[string]string
		}
		api("/v1/status/leader", &leader)
		api("/v1/status/peers", &peers)
		api("/v1/agent/members", &members)
		slices.Sort(peers)
		leaders[leader] = true
		if !slices.Equal(peers, wantPeers) {
			t.Errorf("%s: Raft peers %v, want %v", h.Name, peers, wantPeers)
		}
		alive := 0
		for _, m := range members {
			if m.Status == 1 && m.Tags["role"] == "consul" {
				alive++
			}
		}
		if len(members) != 3 || alive != 3 {
			t.Errorf("%s: members %+v, want 3 servers alive", h.Name, members)
		}
		t.Logf("  %s's agent over SSH: leader %s, peers %v, %d of %d members alive servers", h.Name, leader, peers, alive, len(members))
		if mode := nodeSh(t, h.Name, "stat -c '%a %U %G' /etc/consul.d/clusterflow.json"); mode != "640 root root" {
			t.Errorf("%s: config file %s", h.Name, mode)
		}
	}
	if len(leaders) != 1 || leaders[""] {
		t.Errorf("agents disagree on the leader, or have none: %v", leaders)
	}
	pids := consulPIDs(t, hosts)

	key := strings.TrimSpace(readFile(t, keyFile))
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 32 {
		t.Fatalf("gossip key file: %d bytes, %v", len(raw), err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("gossip key file: %v %v", fi.Mode(), err)
	}
	if cfg := nodeSh(t, "master", "cat /etc/consul.d/clusterflow.json"); !strings.Contains(cfg, `"encrypt": "`+key+`"`) {
		t.Error("master's configuration does not hold the gossip key")
	}
	scanForKey(t, c, key, parentID, childID)

	// Second run: nothing to do, and no agent restarted.
	start = time.Now()
	out, code = c.starter("run", "--output", "json", pb)
	second := time.Since(start)
	if code != 0 {
		t.Fatalf("re-run: exit %d\n%s", code, out)
	}
	var again struct{ Progress workflows.Progress }
	if err := json.Unmarshal([]byte(out), &again); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	for _, h := range again.Progress.Steps[0].Hosts {
		t.Logf("  re-run %-8s %-9s %s", h.Host, h.State, h.Message)
		if h.State != workflows.HostUnchanged {
			t.Errorf("re-run, %s: %s (%s), want unchanged", h.Host, h.State, h.Message)
		}
	}
	if after := consulPIDs(t, hosts); !slices.Equal(after, pids) {
		t.Errorf("agents restarted by the re-run: pids %v, then %v", pids, after)
	}
	scanForKey(t, c, key, parentID, childID)
	for _, text := range []string{c.logOf(w), out} {
		if strings.Contains(text, key) {
			t.Error("the gossip key is in the worker's log or the starter's output")
		}
	}
	t.Logf("consul bootstrap of 3 servers: first run %s, re-run %s (%.0f%%)", first.Round(time.Millisecond),
		second.Round(time.Millisecond), 100*second.Seconds()/first.Seconds())
}

// consulResultOf is the result of a finished ConsulBootstrap run.
func consulResultOf(t *testing.T, c *cluster, id string) workflows.ConsulBootstrapResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res workflows.ConsulBootstrapResult
	if err := c.client.GetWorkflow(ctx, id, "").Get(ctx, &res); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return res
}

// consulAPI returns a getter of h's Consul HTTP API (127.0.0.1:8500 on the node),
// reached through an SSH connection.
func consulAPI(t *testing.T, pool *remote.Pool, h remote.Host) func(path string, v any) {
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return pool.DialTCP(ctx, h, activities.ConsulHTTPAddr)
		},
	}}
	return func(path string, v any) {
		t.Helper()
		resp, err := hc.Get("http://" + activities.ConsulHTTPAddr + path)
		if err != nil {
			t.Fatalf("%s: GET %s: %v", h.Name, path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: GET %s: %s", h.Name, path, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s: GET %s: %v", h.Name, path, err)
		}
	}
}

// consulPIDs lists each node's agent process id, as the node supervisor reports it.
func consulPIDs(t *testing.T, hosts []playbooks.Host) []string {
	t.Helper()
	var pids []string
	for _, h := range hosts {
		st := nodeSh(t, h.Name, "clusterflow-service status consul")
		f := strings.Fields(st)
		if len(f) != 3 || f[1] != "running" {
			t.Fatalf("%s: %q", h.Name, st)
		}
		pids = append(pids, h.Name+":"+f[2])
	}
	return pids
}

// scanForKey reads every event of the runs' histories (the latest run of each ID)
// and fails if the gossip key appears anywhere: in the JSON text, or in any string
// of it decoded from base64 (payloads are base64 in history JSON). As a check that
// decoding works, the decoded text must show the key file's path.
func scanForKey(t *testing.T, c *cluster, key string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		h := c.history(t, id)
		b, err := protojson.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		var corpus strings.Builder
		corpus.Write(b)
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for _, x := range v {
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			case string:
				if d, err := base64.StdEncoding.DecodeString(v); err == nil {
					corpus.WriteString("\n")
					corpus.Write(d)
				}
			}
		}
		walk(doc)
		text := corpus.String()
		unpadded := strings.TrimRight(key, "=")
		if strings.Contains(text, unpadded) {
			t.Errorf("the gossip key is in the history of %s", id)
		}
		if !strings.Contains(text, "consul-gossip.key") {
			t.Errorf("history of %s: decoded payloads do not show the key file's path; is the scan blind?", id)
		}
		t.Logf("history of %s: %d events, %d bytes decoded and scanned: no gossip key", id, len(h.Events), corpus.Len())
	}
}
