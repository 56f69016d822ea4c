//go:build lab

package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterflow/clusterflow/workflows"
)

// TestCALab rotates a 3-manager lab swarm's root CA with the playbook step kinds,
// as a user would (starter run, worker processes, embedded Temporal server):
//
//   - checkCertificates reports every node's certificate (about 90 days left) and
//     the root's fingerprint; with minValidity above 90 days it fails naming them;
//   - rotateCA with slave02 paused (the swarm waits for it): the worker is SIGKILLed
//     once the swarm reports the rotation in progress, a new worker resumes the run,
//     slave02 comes back, the run ends with every node on the new root;
//   - a rotation started by hand (docker swarm ca --rotate --detach) is followed,
//     not started again.
//
// The roots are compared from the outside on every node: the sha256 of the DER of
// `docker info`'s Swarm.Cluster.TLSInfo.TrustRoot.
//
// Run: go test -tags lab -count=1 -run CA -timeout 20m -v ./internal/e2e/
func TestCALab(t *testing.T) {
	c := newCluster(t, 0)
	inv := c.labUp(3, true)
	w := c.startWorker()
	nodes := []string{"master", "slave01", "slave02"}
	for _, n := range nodes {
		nodeSh(t, n, "true")
	}

	swarmPB := c.labPlaybook("ca-swarm", inv, `    - name: docker engine
      kind: installDocker
      hosts: all
    - name: swarm
      kind: swarmInit
      hosts: all
      managers: [master, slave01, slave02]
      advertiseAddr: address
`)
	begin := time.Now()
	if out, code := c.starter("run", swarmPB); code != 0 {
		t.Fatalf("swarm: exit %d\n%s", code, out)
	}
	t.Logf("engines and a 3-manager swarm in %s", time.Since(begin).Round(time.Millisecond))
	before := rootsOnNodes(t, nodes)
	t.Logf("root before, on every node: %s", before)

	t.Run("check certificates", func(t *testing.T) {
		pb := c.labPlaybook("cert-check-lab", inv, `    - name: certificates
      kind: checkCertificates
      hosts: all
      minValidity: 720h
`)
		out, code := c.starter("run", "--output", "json", pb)
		if code != 0 {
			t.Fatalf("check: exit %d\n%s", code, out)
		}
		id := workflows.WorkflowID("cert-check-lab") + "/1-checkCertificates"
		c.record(id, "CheckCertificates-lab")
		var res workflows.CheckCertificatesResult
		getResult(t, c, id, &res)
		if res.Root != before {
			t.Errorf("report root %s, nodes say %s", res.Root, before)
		}
		for _, r := range res.Certificates {
			t.Logf("  %-8s node %.12s %-14s expires %s (%s left), trusts %.12s", r.Host, r.NodeID, r.Role, r.NotAfter.Format(time.RFC3339), r.Remaining, r.Root)
			if left := r.Remaining.Std(); left < 89*24*time.Hour || left > 91*24*time.Hour || r.Root != before || !r.CurrentRoot {
				t.Errorf("%s: %+v", r.Host, r)
			}
		}

		strict := c.labPlaybook("cert-check-strict", inv, `    - name: certificates
      kind: checkCertificates
      hosts: all
      minValidity: 2200h
`)
		out, code = c.starter("run", strict)
		t.Logf("minValidity 2200h: exit %d\n%s", code, grepLines(out, "master", "slave", "step", "certificates"))
		if code == 0 || !strings.Contains(out, "below minValidity 91d 16h") {
			t.Errorf("a check above the certificates' lifetime passed, or did not say why")
		}
	})

	rotatePB := c.labPlaybook("rotate-ca-lab", inv, `    - name: rotate
      kind: rotateCA
      hosts: all
      nodeCertExpiry: 2160h
      rotateWorkerToken: true
      timeout: 8m
`)
	id := workflows.WorkflowID("rotate-ca-lab")
	child := id + "/1-rotateCA"
	var after string

	t.Run("rotate with a kill mid-rotation", func(t *testing.T) {
		tokenBefore := nodeSh(t, "master", "docker swarm join-token -q worker")
		// slave02 paused: the swarm waits for it, which keeps the rotation open.
		docker(t, "pause", labContainer("slave02"))
		paused := true
		defer func() {
			if paused {
				docker(t, "unpause", labContainer("slave02"))
			}
		}()
		begin := time.Now()
		if out, code := c.starter("run", "--detach", rotatePB); code != 0 {
			t.Fatalf("start: exit %d\n%s", code, out)
		}
		waitFor(t, 2*time.Minute, "the swarm to report a rotation in progress", func() bool {
			out, _ := nodeShErr("master", "docker info --format '{{.Swarm.Cluster.RootRotationInProgress}}'")
			return out == "true"
		})
		started := time.Since(begin)
		var p workflows.RotateCAProgress
		waitFor(t, time.Minute, "the progress query to show the rotation", func() bool {
			return queryInto(c, child, &p) == nil && p.Phase == workflows.CAPhaseRotating
		})
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		killedAt := time.Since(begin)
		t.Logf("rotation in progress %s after the start; worker SIGKILLed at %s; progress then: %s; holding up: %v",
			started.Round(time.Millisecond), killedAt.Round(time.Millisecond), p.Counts, p.HoldingUp)
		if !p.InProgress || !strings.HasPrefix(p.Counts, "TLS certificates ") {
			t.Errorf("progress at the kill: %+v", p)
		}

		w = c.startWorker()
		restarted := time.Now()
		time.Sleep(2 * time.Second)
		docker(t, "unpause", labContainer("slave02"))
		paused = false
		if err := c.waitRun(id, 8*time.Minute); err != nil {
			t.Fatalf("run: %v\nprogress: %s\nworker log:\n%s", err, progressOf(c, child), c.logOf(w))
		}
		t.Logf("rotation done %s after the start, %s after the new worker started",
			time.Since(begin).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
		c.record(id, "RunPlaybook-rotate-ca-lab")
		c.record(child, "RotateCA-lab-kill")

		var res workflows.RotateCAResult
		getResult(t, c, child, &res)
		for _, n := range res.Notes {
			t.Logf("  note: %s", n)
		}
		after = rootsOnNodes(t, nodes)
		t.Logf("root after, on every node: %s (result: %s -> %s, %s)", after, res.OldRoot, res.NewRoot, res.Counts)
		if after == before || res.OldRoot != before || res.NewRoot != after || res.Attached {
			t.Errorf("before %s, after %s, result %+v", before, after, res)
		}
		for _, o := range res.Hosts {
			if o.State != workflows.HostChanged {
				t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
			}
		}
		if tok := nodeSh(t, "master", "docker swarm join-token -q worker"); tok == tokenBefore {
			t.Error("the worker join token did not change")
		}
		if exp := nodeSh(t, "master", "docker info --format '{{.Swarm.Cluster.Spec.CAConfig.NodeCertExpiry}}'"); exp != "2160h0m0s" {
			t.Errorf("NodeCertExpiry %s", exp)
		}
		t.Logf("activities retried after the kill: %v", retriedActivities(t, c, child))
	})

	t.Run("attach to a rotation started by hand", func(t *testing.T) {
		docker(t, "pause", labContainer("slave01"))
		paused := true
		defer func() {
			if paused {
				docker(t, "unpause", labContainer("slave01"))
			}
		}()
		nodeSh(t, "master", "docker swarm ca --rotate --detach >/dev/null")
		begin := time.Now()
		if out, code := c.starter("run", "--detach", rotatePB); code != 0 {
			t.Fatalf("start: exit %d\n%s", code, out)
		}
		var p workflows.RotateCAProgress
		waitFor(t, time.Minute, "the run to attach", func() bool {
			return queryInto(c, child, &p) == nil && p.Phase == workflows.CAPhaseRotating
		})
		t.Logf("attached: %t, %s, holding up %v", p.Attached, p.Counts, p.HoldingUp)
		docker(t, "unpause", labContainer("slave01"))
		paused = false
		if err := c.waitRun(id, 5*time.Minute); err != nil {
			t.Fatalf("run: %v\nprogress: %s", err, progressOf(c, child))
		}
		var res workflows.RotateCAResult
		getResult(t, c, child, &res)
		third := rootsOnNodes(t, nodes)
		t.Logf("followed the hand-started rotation in %s: %s -> %s", time.Since(begin).Round(time.Millisecond), res.OldRoot, third)
		if !res.Attached || !p.Attached || res.OldRoot != after || third == after || res.NewRoot != third {
			t.Errorf("result %+v, roots now %s", res, third)
		}
		if n := activityAttempts(t, c, child, "StartCARotation"); n != 0 {
			t.Errorf("StartCARotation ran while a rotation was in progress")
		}
		after = third
	})

	t.Run("a down node holds it up until removed", func(t *testing.T) {
		docker(t, "pause", labContainer("slave02"))
		defer docker(t, "unpause", labContainer("slave02"))
		waitFor(t, 2*time.Minute, "master to see slave02 down", func() bool {
			out, _ := nodeShErr("master", "docker node inspect slave02 --format '{{.Status.State}}'")
			return out == "down"
		})
		short := c.labPlaybook("rotate-ca-short", inv, `    - name: rotate
      kind: rotateCA
      hosts: [master, slave01]
      timeout: 1m
`)
		begin := time.Now()
		out, code := c.starter("run", short)
		t.Logf("rotation with slave02 down, timeout 1m: exit %d after %s\n%s", code, time.Since(begin).Round(time.Millisecond), indent(out))
		if code == 0 || !strings.Contains(out, "slave02 (down") || !strings.Contains(out, "removeNode") {
			t.Fatalf("want a failure naming slave02 down and suggesting removeNode")
		}
		remove := c.labPlaybook("remove-slave02", inv, `    - name: forget slave02
      kind: removeNode
      hosts: [slave02]
      manager: master
      force: true
`)
		if out, code := c.starter("run", remove); code != 0 {
			t.Fatalf("removeNode: exit %d\n%s", code, out)
		}
		begin = time.Now()
		if out, code := c.starter("run", short); code != 0 {
			t.Fatalf("re-run after removing slave02: exit %d\n%s", code, out)
		}
		var res workflows.RotateCAResult
		getResult(t, c, workflows.WorkflowID("rotate-ca-short")+"/1-rotateCA", &res)
		now := rootsOnNodes(t, []string{"master", "slave01"})
		t.Logf("after removeNode, the re-run (attached %t) ended the rotation in %s: %s -> %s", res.Attached, time.Since(begin).Round(time.Millisecond), res.OldRoot, now)
		// Once slave02 is removed the swarm may finish the held-up rotation on its own
		// before the re-run looks (then the re-run starts a rotation of its own:
		// Attached is false); either way the nodes must end on the run's new root.
		if now == after || res.NewRoot != now {
			t.Errorf("result %+v, root now %s", res, now)
		}
	})
}

// rootsOnNodes reads each node's trusted root from its engine's API (docker info)
// and returns the fingerprint they share; it fails the test when they differ.
func rootsOnNodes(t *testing.T, nodes []string) string {
	t.Helper()
	var first string
	for _, n := range nodes {
		out := nodeSh(t, n, "docker info --format '{{json .Swarm.Cluster.TLSInfo}}'")
		var info struct{ TrustRoot string }
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("%s: %v: %s", n, err, out)
		}
		b, _ := pem.Decode([]byte(info.TrustRoot))
		if b == nil {
			t.Fatalf("%s: no PEM in TrustRoot: %s", n, out)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		sum := sha256.Sum256(b.Bytes)
		fp := hex.EncodeToString(sum[:])
		if first == "" {
			first = fp
		} else if fp != first {
			t.Errorf("%s trusts root %s, %s trusts %s", n, fp, nodes[0], first)
		}
	}
	return first
}

// queryInto runs the progress query of a run into v.
func queryInto(c *cluster, id string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.client.QueryWorkflow(ctx, id, "", workflows.ProgressQuery)
	if err != nil {
		return err
	}
	return r.Get(v)
}

// getResult reads the result of a closed run into v.
func getResult(t *testing.T, c *cluster, id string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.client.GetWorkflow(ctx, id, "").Get(ctx, v); err != nil {
		t.Fatalf("result of %s: %v", id, err)
	}
}
