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

// TestLabBootstrapPlaybook runs playbooks/bootstrap.yaml as a user would (starter run,
// real worker process, embedded Temporal server) on 3 fresh lab nodes: SSH keys in a
// full mesh and Docker on every node, then the same playbook again, which must change
// nothing. It logs both wall times.
func TestLabBootstrapPlaybook(t *testing.T) {
	c := newCluster(t, 0)
	inv := c.labUp(3, false)
	c.startWorker()

	// The shipped playbook, pointed at this test's lab inventory and cluster key.
	text := readFile(t, filepath.Join("..", "..", "playbooks", "bootstrap.yaml"))
	text = strings.Replace(text, "include: [../.clusterflow/lab/inventory.yaml]", "include: ["+inv+"]", 1)
	text = strings.Replace(text, "clusterKey: ../.clusterflow/lab/cluster_ed25519", "clusterKey: "+filepath.Join(c.dir, "cluster_ed25519"), 1)
	pb := filepath.Join(c.dir, "bootstrap.yaml")
	if err := os.WriteFile(pb, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	out, code := c.starter("run", pb)
	first := time.Since(start)
	t.Logf("first run: %s\n%s", first.Round(time.Millisecond), out)
	if code != 0 {
		t.Fatalf("bootstrap: exit %d", code)
	}
	c.record(workflows.WorkflowID("bootstrap"), "RunPlaybook-bootstrap-lab")

	start = time.Now()
	out, code = c.starter("run", "--output", "json", pb)
	second := time.Since(start)
	if code != 0 {
		t.Fatalf("bootstrap re-run: exit %d\n%s", code, out)
	}
	var res struct{ Progress workflows.Progress }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	for _, s := range res.Progress.Steps[:2] { // keys and docker; the last step is a plain command
		for _, h := range s.Hosts {
			if h.State != workflows.HostUnchanged {
				t.Errorf("re-run: step %s, host %s: %s (%s)", s.Name, h.Host, h.State, h.Message)
			}
		}
	}
	for _, h := range res.Progress.Steps[2].Hosts {
		if !strings.HasPrefix(h.Message, "exit 0: 20.10") {
			t.Errorf("docker version on %s: %q", h.Host, h.Message)
		}
	}
	t.Logf("bootstrap of 3 nodes: first run %s, re-run %s (%.0f%%)", first.Round(time.Millisecond),
		second.Round(time.Millisecond), 100*second.Seconds()/first.Seconds())
}
