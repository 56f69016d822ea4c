//go:build lab

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clusterflow/clusterflow/workflows"
)

// TestLabClusterPlaybook runs playbooks/cluster.yaml, the README's first command, as
// a user would (starter run, real worker process, embedded Temporal server) on 3
// fresh lab nodes: SSH keys, Docker, a 3-server Consul cluster, a swarm with an
// overlay network, an image built on the cluster and a replicated web service. It reads the result back through the
// engines' and Consul's APIs, runs the playbook again (nothing may change), and scans
// every event of every run's history for the join tokens and the gossip key.
func TestLabClusterPlaybook(t *testing.T) {
	c := newCluster(t, 0)
	inv := c.labUp(3, false)
	c.startWorker()
	state := filepath.Dir(inv)

	pb := c.clusterPlaybook(state, "cluster")

	start := time.Now()
	out, code := c.starter("run", pb)
	first := time.Since(start)
	t.Logf("first run: %s\n%s", first.Round(time.Millisecond), out)
	if code != 0 {
		t.Fatalf("cluster: exit %d", code)
	}
	c.record(workflows.WorkflowID("cluster"), "RunPlaybook-cluster-lab")

	// Swarm: 3 nodes ready, master the one manager; the service runs 3 replicas.
	nodes := nodeSh(t, "master", "docker node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}' | sort")
	t.Logf("docker node ls:\n%s", indent(nodes))
	if nodes != "master Ready Leader\nslave01 Ready \nslave02 Ready" && nodes != "master Ready Leader\nslave01 Ready\nslave02 Ready" {
		t.Errorf("swarm nodes:\n%s", nodes)
	}
	waitForWeb(t, time.Minute)
	// The image was built on master from playbooks/images/web and loaded into the
	// others; every node's task answers on its own port 8080 (host mode).
	for _, n := range []string{"master", "slave01", "slave02"} {
		if body := httpGet(t, "http://"+labAddr(t, n)+":8080/"); !strings.Contains(body, "version 1") {
			t.Errorf("web on %s: %q", n, body)
		}
	}
	// Consul: a leader, 3 voters, 3 alive members, as the agents' HTTP API says.
	peers := nodeSh(t, "slave02", "consul operator raft list-peers")
	members := nodeSh(t, "slave01", "consul members")
	t.Logf("consul operator raft list-peers:\n%s\nconsul members:\n%s", indent(peers), indent(members))
	if strings.Count(peers, "leader") != 1 || strings.Count(peers, "true") != 3 {
		t.Errorf("raft peers: want 1 leader and 3 voters")
	}
	if strings.Count(members, "alive") != 3 {
		t.Errorf("consul members: want 3 alive")
	}

	// Secrets never in history: join tokens and the gossip key.
	secrets := map[string]string{
		"worker join token":  nodeSh(t, "master", "docker swarm join-token -q worker"),
		"manager join token": nodeSh(t, "master", "docker swarm join-token -q manager"),
		"gossip key":         strings.TrimSpace(readFile(t, filepath.Join(state, "consul-gossip.key"))),
	}

	second := c.rerunUnchanged(pb)
	t.Logf("cluster of 3 nodes: first run %s, re-run %s", first.Round(time.Millisecond), second.Round(time.Millisecond))

	events := scanHistories(t, c, "playbook/cluster", secrets)
	t.Logf("scanned %d events of the runs' histories for %d secrets: none found", events, len(secrets))
}

// clusterPlaybook writes the shipped playbooks/cluster.yaml under the given name,
// pointed at this test's lab state directory, and returns its path.
func (c *cluster) clusterPlaybook(state, name string) string {
	c.t.Helper()
	text := readFile(c.t, filepath.Join("..", "..", "playbooks", "cluster.yaml"))
	text = strings.ReplaceAll(text, "../.clusterflow/lab/", state+"/")
	text = strings.Replace(text, "\n  name: cluster\n", "\n  name: "+name+"\n", 1)
	pb := filepath.Join(c.dir, name+".yaml")
	if err := os.WriteFile(pb, []byte(text), 0o644); err != nil {
		c.t.Fatal(err)
	}
	copyDir(c.t, filepath.Join("..", "..", "playbooks", "images"), filepath.Join(c.dir, "images"))
	return pb
}

// rerunUnchanged runs the playbook again and fails unless every host of every step
// reports unchanged. It returns how long the run took.
func (c *cluster) rerunUnchanged(pb string) time.Duration {
	t := c.t
	t.Helper()
	start := time.Now()
	out, code := c.starter("run", "--output", "json", pb)
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("re-run: exit %d\n%s", code, out)
	}
	var res struct{ Progress workflows.Progress }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	for _, s := range res.Progress.Steps {
		for _, h := range s.Hosts {
			if h.State != workflows.HostUnchanged {
				t.Errorf("re-run: step %s, host %s: %s (%s)", s.Name, h.Host, h.State, h.Message)
			}
		}
	}
	return took
}

// waitForWeb waits for the cluster playbook's web service to run its 3 replicas.
// docker prints "3/3 (max 1 per node)": the playbook sets maxReplicasPerNode.
func waitForWeb(t *testing.T, d time.Duration) {
	t.Helper()
	waitFor(t, d, "web to run 3 replicas", func() bool {
		out, _ := nodeShErr("master", "docker service ls --filter name=web --format '{{.Replicas}}'")
		return out == "3/3 (max 1 per node)"
	})
}
