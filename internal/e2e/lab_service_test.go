//go:build lab

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterflow/clusterflow/workflows"
)

// webImagesScript makes three images on a node from the node's own files (no
// registry in the lab), all of one rootfs: v1 and v2 sleep (they differ by a
// label), v3's command exits at once.
const webImagesScript = `set -e
tar -C / -ch usr/bin/sleep usr/bin/false lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2 >/tmp/web-rootfs.tar
for v in 1 2; do
  docker import -c "LABEL version=$v" -c 'CMD ["/usr/bin/sleep","infinity"]' /tmp/web-rootfs.tar clusterflow/web:v$v >/dev/null
done
docker import -c 'LABEL version=3' -c 'CMD ["/usr/bin/false"]' /tmp/web-rootfs.tar clusterflow/web:v3 >/dev/null
rm /tmp/web-rootfs.tar`

// TestServiceLab deploys and updates a swarm service with the playbook step kinds,
// as a user would (starter run, worker process, embedded Temporal server), on a
// 3-node swarm:
//
//   - deployService creates web (3 replicas of v1); the same playbook again is
//     unchanged;
//   - an update to v2 (parallelism 1, monitor 2s) shows its tasks per node in the
//     progress query; the worker is SIGKILLed while it watches, a new one watches
//     on, and the update ends completed with v2 running on every node;
//   - an update to v3, whose container exits at once, with failureAction rollback
//     and monitor 5s, ends rolled-back: the step fails with "rolled back: <the
//     engine's reason>" and v2 runs everywhere afterwards.
//
// Run: go test -tags lab -count=1 -run Service -v ./internal/e2e/
func TestServiceLab(t *testing.T) {
	c := newCluster(t, 0)
	inv := c.labUp(3, true)
	w := c.startWorker()
	nodes := []string{"master", "slave01", "slave02"}
	for _, n := range nodes {
		nodeSh(t, n, "true")
	}
	c.formSwarm(t, inv, w)
	for _, n := range nodes {
		nodeSh(t, n, webImagesScript)
	}

	web := func(name, version, extra string) string {
		return c.labPlaybook(name, inv, fmt.Sprintf(`    - name: web
      kind: deployService
      hosts: [master]
      timeout: 5m
      service: web
      image: clusterflow/web:%s
      replicas: 3
      env: {GREETING: hello}
      updateConfig:
        parallelism: 1
        delay: 1s
%s`, version, extra))
	}
	// run runs the starter (run PLAYBOOK, or status ID) with JSON output.
	run := func(t *testing.T, args ...string) (int, workflows.HostState, time.Duration) {
		t.Helper()
		begin := time.Now()
		out, code := c.starter(append(args, "--output", "json")...)
		took := time.Since(begin)
		var res struct{ Progress workflows.Progress }
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &res); err != nil {
			t.Fatalf("json output (exit %d): %v\n%s\nworker log:\n%s", code, err, out, c.logOf(w))
		}
		for _, s := range res.Progress.Steps {
			for _, h := range s.Hosts {
				t.Logf("  exit %d after %s: %-5s %-8s %-9s %s", code, took.Round(time.Millisecond), s.Name, h.Host, h.State, h.Message)
				return code, h, took
			}
		}
		t.Fatalf("no host outcome in the output:\n%s", out)
		return 0, workflows.HostState{}, 0
	}
	// running lists "node image" of web's tasks meant to run, sorted.
	running := func(t *testing.T) string {
		return nodeSh(t, "master", "docker service ps web --filter desired-state=running --format '{{.Node}} {{.Image}} {{.CurrentState}}' | awk '{print $1, $2, $3}' | sort")
	}
	wantEverywhere := func(t *testing.T, image string) {
		t.Helper()
		got := running(t)
		t.Logf("web tasks:\n%s", indent(got))
		want := ""
		for i, n := range nodes {
			if i > 0 {
				want += "\n"
			}
			want += n + " " + image + " Running"
		}
		if got != want {
			t.Errorf("web tasks:\n%s\nwant:\n%s", got, want)
		}
	}

	v1 := web("web-v1", "v1", "        monitor: 2s\n")
	t.Run("create", func(t *testing.T) {
		code, h, _ := run(t, "run", v1)
		if code != 0 || h.State != workflows.HostChanged || !strings.Contains(h.Message, "created; 3/3 running") {
			t.Fatalf("create: exit %d, %s: %s", code, h.State, h.Message)
		}
		wantEverywhere(t, "clusterflow/web:v1")
	})
	t.Run("again unchanged", func(t *testing.T) {
		code, h, _ := run(t, "run", v1)
		if code != 0 || h.State != workflows.HostUnchanged {
			t.Fatalf("re-run: exit %d, %s: %s", code, h.State, h.Message)
		}
	})
	t.Run("v1 to v2 completed", func(t *testing.T) {
		// Started detached, so the progress query can be read while the update runs
		// and the worker killed in the middle.
		id := workflows.WorkflowID("web-v2")
		child := id + "/1-deployService"
		begin := time.Now()
		if out, code := c.starter("run", "--detach", web("web-v2", "v2", "        monitor: 2s\n        failureAction: rollback\n")); code != 0 {
			t.Fatalf("start: exit %d\n%s", code, out)
		}
		var mid workflows.DeployServiceProgress
		waitFor(t, 2*time.Minute, "the progress query to show the update", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			v, err := c.client.QueryWorkflow(ctx, child, "", workflows.ProgressQuery)
			if err != nil || v.Get(&mid) != nil {
				return false
			}
			return mid.Status.UpdateState == "updating" && mid.Status.Running >= 1
		})
		b, _ := json.Marshal(mid.Status)
		t.Logf("progress query %s after the start: phase %s, %s, status %s", time.Since(begin).Round(time.Millisecond), mid.Phase, mid.Applied, b)
		// Kill the worker while it watches; a new one watches on (WatchService only reads).
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		w = c.startWorker()
		if err := c.waitRun(id, 5*time.Minute); err != nil {
			t.Fatalf("run: %v\nworker log:\n%s", err, c.logOf(w))
		}
		took := time.Since(begin)
		retried := retriedActivities(t, c, child)
		t.Logf("worker SIGKILLed while watching; retried after it: %v", retried)
		if !slices.ContainsFunc(retried, func(r string) bool { return strings.HasPrefix(r, "WatchService ") }) {
			t.Errorf("no WatchService attempt after the kill: %v", retried)
		}
		if applies := activityAttempts(t, c, child, "ApplyService"); applies != 1 {
			t.Errorf("ApplyService ran %d attempts, want 1", applies)
		}
		code, h, _ := run(t, "status", id)
		if code != 0 || h.State != workflows.HostChanged || !strings.Contains(h.Message, "updated: image") || !strings.Contains(h.Message, "update completed") {
			t.Fatalf("update: exit %d, %s: %s\nworker log:\n%s", code, h.State, h.Message, c.logOf(w))
		}
		t.Logf("v1 -> v2 took %s", took.Round(time.Millisecond))
		wantEverywhere(t, "clusterflow/web:v2")
		c.record(child, "DeployService-lab-kill-completed")
	})
	t.Run("v3 rolls back", func(t *testing.T) {
		code, h, took := run(t, "run", web("web-v3", "v3", "        monitor: 5s\n        failureAction: rollback\n"))
		if code == 0 || h.State != workflows.HostFailed || !strings.HasPrefix(h.Message, "rolled back: ") || !strings.Contains(h.Message, "task") {
			t.Fatalf("update to v3: exit %d, %s: %s\nworker log:\n%s", code, h.State, h.Message, c.logOf(w))
		}
		t.Logf("v2 -> v3 -> rolled back took %s", took.Round(time.Millisecond))
		id := workflows.WorkflowID("web-v3") + "/1-deployService"
		c.record(id, "DeployService-lab-rolled-back")
		if img := nodeSh(t, "master", "docker service inspect web --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}'"); img != "clusterflow/web:v2" {
			t.Errorf("web's spec image after the rollback: %s", img)
		}
		wantEverywhere(t, "clusterflow/web:v2")
	})
	t.Run("image from a tarball", func(t *testing.T) {
		// v4 exists nowhere but in a `docker save` tarball on the worker's side.
		nodeSh(t, "master", `set -e
docker tag clusterflow/web:v2 clusterflow/web:v4-base
docker image rm clusterflow/web:v4 >/dev/null 2>&1 || true
printf 'FROM clusterflow/web:v4-base\nLABEL version=4\n' | docker build -q -t clusterflow/web:v4 - >/dev/null
docker save -o /tmp/web-v4.tar clusterflow/web:v4
docker image rm clusterflow/web:v4 clusterflow/web:v4-base >/dev/null`)
		tarball := filepath.Join(c.dir, "web-v4.tar")
		docker(t, "cp", labContainer("master")+":/tmp/web-v4.tar", tarball)
		pb := c.labPlaybook("web-v4", inv, fmt.Sprintf(`    - name: web
      kind: updateService
      hosts: [master]
      service: web
      image: {name: clusterflow/web:v4, load: %s}
`, tarball))
		code, h, took := run(t, "run", pb)
		if code != 0 || h.State != workflows.HostChanged || !strings.HasPrefix(h.Message, "image loaded on 3 of 3 nodes; updated: image") {
			t.Fatalf("update to v4 from the tarball: exit %d, %s: %s\nworker log:\n%s", code, h.State, h.Message, c.logOf(w))
		}
		t.Logf("load + v2 -> v4 took %s", took.Round(time.Millisecond))
		c.record(workflows.WorkflowID("web-v4")+"/1-updateService", "DeployService-lab-image")
		wantEverywhere(t, "clusterflow/web:v4")
		code, h, _ = run(t, "run", pb)
		if code != 0 || h.State != workflows.HostUnchanged || !strings.HasPrefix(h.Message, "image loaded on 0 of 3 nodes; unchanged") {
			t.Fatalf("again: exit %d, %s: %s", code, h.State, h.Message)
		}
	})
}

// formSwarm starts the lab nodes' engines and forms a swarm of them with master as
// its only manager, with the playbook step kinds.
func (c *cluster) formSwarm(t *testing.T, inv string, w *exec.Cmd) {
	t.Helper()
	setup := c.labPlaybook("swarm-setup", inv, `    - name: docker engine
      kind: installDocker
      hosts: all
    - name: swarm
      kind: swarmInit
      hosts: all
      managers: [master]
      advertiseAddr: address
`)
	if out, code := c.starter("run", setup); code != 0 {
		t.Fatalf("setup: exit %d\n%s\nworker log:\n%s", code, out, c.logOf(w))
	}
}
