//go:build lab

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/clusterflow/clusterflow/workflows"
)

// TestRollingUpgradeLab upgrades the Docker engine of a 3-node swarm with the
// rollingNodeUpgrade step kind, as a user would (starter run, worker processes,
// embedded Temporal server). The nodes run web (3 replicas) and agent (global).
// The "new versions" are Debian's docker.io rebuilt with a version suffix (+cf1,
// +cf2): the lab has no newer archive, and a real package upgrade is what counts.
//
//   - --dry-run prints the plan per node and changes nothing;
//   - 1 manager + 2 workers, maxUnavailable 50%, approval: three batches (master,
//     then one worker each), each waiting for `starter approve`; the services'
//     counts are recorded at every batch boundary and are full; a Raft backup is
//     left on master; every node runs the new engine binary, upgraded once; the
//     same playbook again changes nothing;
//   - 3 managers, one paused: upgrading the others is refused with the quorum
//     arithmetic and nothing is drained;
//   - 3 managers: the worker is SIGKILLed while a node's engine is being upgraded;
//     a new worker finishes the run; every node is upgraded exactly once;
//   - 3 managers: web goes from v1 to v2 (completed), and to a v3 that exits at once
//     (rolled back, v2 running everywhere), as TestServiceLab does with 1 manager.
//
// Run: go test -tags lab -count=1 -run RollingUpgrade -v ./internal/e2e/
func TestRollingUpgradeLab(t *testing.T) {
	c := newCluster(t, 0)
	inv := c.labUp(3, true)
	w := c.startWorker()
	nodes := []string{"master", "slave01", "slave02"}
	for _, n := range nodes {
		nodeSh(t, n, "true")
	}
	cf1, v1 := upgradeBundle(t, "+cf1")
	cf2, v2 := upgradeBundle(t, "+cf2")

	c.formSwarm(t, inv, w)
	for _, n := range nodes {
		nodeSh(t, n, sleepImageScript)
	}
	nodeSh(t, "master", `docker service create -q --detach --name web --replicas 3 clusterflow/sleep:1 >/dev/null
docker service create -q --detach --name agent --mode global clusterflow/sleep:1 >/dev/null`)
	waitFor(t, 2*time.Minute, "web 3/3 and agent 3/3", func() bool {
		out := nodeSh(t, "master", "docker service ls --format '{{.Name}} {{.Replicas}}' | sort")
		return out == "agent 3/3\nweb 3/3"
	})
	base := nodeSh(t, "master", "dpkg-query -W -f '${Version}' docker.io")
	t.Logf("docker.io installed: %s; upgrades to %s, then %s", base, v1, v2)

	upgrade := func(name, dir, version, hosts, extra string) string {
		return c.labPlaybook(name, inv, fmt.Sprintf(`    - name: engines
      kind: rollingNodeUpgrade
      hosts: %s
      timeout: 5m
      source: offline
      packages: %s
      version: %s
%s`, hosts, dir, version, extra))
	}
	versions := func(t *testing.T) string {
		var parts []string
		for _, n := range nodes {
			parts = append(parts, n+" "+nodeSh(t, n, "dpkg-query -W -f '${Version}' docker.io"))
		}
		return strings.Join(parts, ", ")
	}
	availability := func(t *testing.T) string {
		return nodeSh(t, "master", "docker node ls --format '{{.Hostname}} {{.Availability}} {{.ManagerStatus}}' | sort")
	}

	pb1 := upgrade("upgrade-cf1", cf1, v1, "all", "      maxUnavailable: 50%\n      approval: true\n")
	t.Run("dry run", func(t *testing.T) {
		before := availability(t)
		out, code := c.starter("run", "--dry-run", pb1)
		t.Logf("starter run --dry-run (exit %d):\n%s", code, indent(out))
		if code != 0 {
			t.Fatalf("dry run: exit %d", code)
		}
		for _, want := range []string{"3 batch(es)", "services now: agent 3/3 (global), web 3/3"} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run output lacks %q", want)
			}
		}
		rows := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 2 {
				rows[f[1]] = f[0] + " " + f[len(f)-1]
			}
		}
		for node, want := range map[string]string{"master": "1 upgrade", "slave01": "2 upgrade", "slave02": "3 upgrade"} {
			if rows[node] != want {
				t.Errorf("dry run plan of %s: %q, want %q", node, rows[node], want)
			}
		}
		if got := versions(t); strings.Contains(got, "cf") {
			t.Errorf("dry run changed a package: %s", got)
		}
		if after := availability(t); after != before {
			t.Errorf("dry run changed the nodes:\n%s\nwas:\n%s", after, before)
		}
	})

	t.Run("one manager with approval", func(t *testing.T) {
		id := workflows.WorkflowID("upgrade-cf1")
		child := id + "/1-rollingNodeUpgrade"
		begin := time.Now()
		if out, code := c.starter("run", "--detach", pb1); code != 0 {
			t.Fatalf("start: exit %d\n%s", code, out)
		}
		for batch := 2; batch <= 3; batch++ {
			var p workflows.RollingUpgradeProgress
			waitFor(t, 5*time.Minute, fmt.Sprintf("the run to wait for approval of batch %d", batch), func() bool {
				return queryInto(c, child, &p) == nil && p.Waiting == batch
			})
			last := p.Boundaries[len(p.Boundaries)-1]
			t.Logf("%s: waiting for approval of batch %d; after batch %d (%s): %s; nodes:\n%s", time.Since(begin).Round(time.Millisecond),
				batch, last.After, strings.Join(last.Nodes, ", "), strings.Join(last.Services, ", "), indent(availability(t)))
			out, code := c.starter("approve", "upgrade-cf1")
			if code != 0 {
				t.Fatalf("approve: exit %d\n%s", code, out)
			}
			t.Logf("starter approve: %s", strings.TrimSpace(out))
		}
		if err := c.waitRun(id, 10*time.Minute); err != nil {
			t.Fatalf("run: %v\nworker log:\n%s", err, c.logOf(w))
		}
		t.Logf("1-manager upgrade with 2 approvals took %s", time.Since(begin).Round(time.Millisecond))
		var res workflows.RollingUpgradeResult
		getResult(t, c, child, &res)
		checkUpgrade(t, &res, nodes, 4)
		if res.Backup == nil || res.Backup.Host != "master" || res.Backup.Live || res.Backup.Bytes == 0 {
			t.Errorf("backup: %+v", res.Backup)
		} else {
			ls := nodeSh(t, "master", fmt.Sprintf("stat -c '%%A %%s' %s; tar tzf %s | grep -c '^swarm/raft/'", res.Backup.Path, res.Backup.Path))
			t.Logf("Raft backup on master: %s (%s)", res.Backup.Path, strings.ReplaceAll(ls, "\n", ", raft entries "))
			if !strings.HasPrefix(ls, "-rw------- ") {
				t.Errorf("backup file mode: %s", ls)
			}
		}
		checkEngines(t, nodes, v1, 1)
		if got := availability(t); strings.Contains(got, "Drain") || strings.Contains(nodeSh(t, "master", "docker node ls -q | xargs docker node inspect --format '{{.Spec.Labels}}'"), "io.clusterflow.upgrade") {
			t.Errorf("nodes after the upgrade:\n%s", got)
		}
		c.record(child, "RollingNodeUpgrade-lab-approval")

		begin = time.Now()
		out, code := c.starter("run", pb1)
		if code != 0 || strings.Count(out, "unchanged") < 3 {
			t.Errorf("again: exit %d\n%s", code, out)
		}
		t.Logf("the same upgrade again: exit %d after %s", code, time.Since(begin).Round(time.Millisecond))
	})

	nodeSh(t, "master", "docker node promote slave01 slave02 >/dev/null")
	waitFor(t, 2*time.Minute, "3 reachable managers", func() bool {
		return strings.Count(availability(t), "Reachable")+strings.Count(availability(t), "Leader") == 3
	})

	t.Run("quorum refused", func(t *testing.T) {
		docker(t, "pause", labContainer("slave02"))
		defer func() {
			docker(t, "unpause", labContainer("slave02"))
			waitFor(t, 2*time.Minute, "slave02 reachable again", func() bool {
				return !strings.Contains(availability(t), "Unreachable")
			})
		}()
		waitFor(t, 2*time.Minute, "master to see slave02 unreachable", func() bool {
			return strings.Contains(nodeSh(t, "master", "docker node inspect slave02 --format '{{.ManagerStatus.Reachability}}'"), "unreachable")
		})
		before := availability(t)
		pb := upgrade("upgrade-quorum", cf2, v2, "[master, slave01]", "")
		begin := time.Now()
		out, code := c.starter("run", pb)
		t.Logf("upgrade of master and slave01 with slave02 paused: exit %d after %s\n%s", code, time.Since(begin).Round(time.Millisecond), indent(out))
		if code == 0 || !strings.Contains(out, "Raft needs a quorum of 2 of 3") {
			t.Errorf("not refused with the quorum arithmetic")
		}
		if after := availability(t); after != before {
			t.Errorf("the refused run changed the nodes:\n%s\nwas:\n%s", after, before)
		}
		if got := nodeSh(t, "master", "dpkg-query -W -f '${Version}' docker.io"); got != v1 {
			t.Errorf("master's docker.io after the refusal: %s", got)
		}
	})

	t.Run("three managers, worker killed", func(t *testing.T) {
		ids := nodeSh(t, "master", "docker node ls -q | sort")
		pb := upgrade("upgrade-cf2", cf2, v2, "all", "")
		id := workflows.WorkflowID("upgrade-cf2")
		child := id + "/1-rollingNodeUpgrade"
		begin := time.Now()
		if out, code := c.starter("run", "--detach", pb); code != 0 {
			t.Fatalf("start: exit %d\n%s", code, out)
		}
		// Kill while batch 2's engine packages are being installed: the package
		// activity is retried on the new worker, which finds them installed.
		var p workflows.RollingUpgradeProgress
		waitFor(t, 5*time.Minute, "batch 2's package installation", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d, err := c.client.DescribeWorkflowExecution(ctx, child+"/batch-2", "")
			if err != nil {
				return false
			}
			for _, a := range d.GetPendingActivities() {
				if a.GetActivityType().GetName() == "InstallDockerPackages" && a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
					return queryInto(c, child, &p) == nil
				}
			}
			return false
		})
		at := time.Since(begin)
		killed := time.Now()
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		var phases []string
		for _, h := range p.Hosts {
			phases = append(phases, fmt.Sprintf("%s %s/%s", h.Host, h.Phase, h.State))
		}
		t.Logf("worker SIGKILLed %s after the start, in batch %d of %d: %s", at.Round(time.Millisecond), p.Batch, p.Batches, strings.Join(phases, ", "))
		w = c.startWorker()
		if err := c.waitRun(id, 10*time.Minute); err != nil {
			t.Fatalf("run: %v\nworker log:\n%s", err, c.logOf(w))
		}
		t.Logf("3-manager upgrade with a worker kill took %s", time.Since(begin).Round(time.Millisecond))
		var res workflows.RollingUpgradeResult
		getResult(t, c, child, &res)
		checkUpgrade(t, &res, nil, 4)
		checkEngines(t, nodes, v2, 1)
		retried := retriedActivities(t, c, child+"/batch-2")
		t.Logf("batch 2 (InstallDocker) retried after the kill: %v", retried)
		if !slices.Contains(retried, "InstallDockerPackages (attempt 2)") {
			t.Errorf("the package installation was not retried after the kill: %v", retried)
		}
		for _, id := range []string{child + "/batch-2", child} {
			first := startedAfter(t, c, id, killed)
			if len(first) > 3 {
				first = first[:3]
			}
			t.Logf("first activities of %s after the kill: %s", id, strings.Join(first, "; "))
		}
		if after := nodeSh(t, "master", "docker node ls -q | sort"); after != ids {
			t.Errorf("node IDs changed:\n%s\nwas:\n%s", after, ids)
		}
		c.record(child, "RollingNodeUpgrade-lab-kill")
	})

	t.Run("three managers: service v1 to v2, v3 rolled back", func(t *testing.T) {
		serviceThreeManagers(t, c, inv, nodes)
	})
}

// checkUpgrade checks a finished upgrade: every host changed, the boundaries
// recorded (want of them) with every service's tasks all running, and (when order
// is given) the batches in that order.
func checkUpgrade(t *testing.T, res *workflows.RollingUpgradeResult, order []string, want int) {
	t.Helper()
	for _, h := range res.Hosts {
		t.Logf("  %-8s %-9s %s", h.Host, h.State, h.Message)
		if h.State != workflows.HostChanged {
			t.Errorf("%s: %s", h.Host, h.State)
		}
	}
	for _, p := range res.Plan {
		t.Logf("  plan: batch %d %-8s %-18s %s", p.Batch, p.Host, p.Role, p.Action)
	}
	if len(res.Boundaries) != want {
		t.Errorf("%d batch boundaries recorded, want %d", len(res.Boundaries), want)
	}
	for _, b := range res.Boundaries {
		t.Logf("  boundary after batch %d (%s) at %s: %s", b.After, strings.Join(b.Nodes, ", "), b.At.Format("15:04:05.000"), strings.Join(b.Services, ", "))
		if !b.Satisfied || len(b.Services) != 2 {
			t.Errorf("boundary after batch %d not satisfied: %v", b.After, b.Services)
		}
	}
	for i, n := range order {
		if i < len(res.Plan) && (res.Plan[i].Host != n || res.Plan[i].Batch != i+1) {
			t.Errorf("plan[%d] = %+v, want %s in batch %d", i, res.Plan[i], n, i+1)
		}
	}
}

// checkEngines checks that every node has version installed, was upgraded to it
// times times (dpkg's log), and runs the installed binary.
func checkEngines(t *testing.T, nodes []string, version string, times int) {
	t.Helper()
	for _, n := range nodes {
		out := nodeSh(t, n, fmt.Sprintf(`echo "$(dpkg-query -W -f '${Version}' docker.io)"
grep -c ' upgrade docker.io:[a-z0-9]* .* %s$' /var/log/dpkg.log || :
readlink /proc/$(cat /var/run/docker.pid)/exe`, strings.ReplaceAll(version, "+", "[+]")))
		f := strings.Split(out, "\n")
		t.Logf("  %s: docker.io %s, upgraded to it %s time(s), engine binary %s", n, f[0], f[1], f[2])
		if f[0] != version || f[1] != fmt.Sprint(times) || strings.Contains(f[2], "deleted") {
			t.Errorf("%s: %q", n, out)
		}
	}
}

// upgradeBundle returns a copy of the lab's offline docker.io bundle in which
// docker.io is rebuilt with its version plus suffix, and that version: a newer
// package of the same engine, which a lab without a newer archive can upgrade to.
// Cached beside the offline bundle.
func upgradeBundle(t *testing.T, suffix string) (string, string) {
	t.Helper()
	src := offlineBundle(t)
	debs, _ := filepath.Glob(filepath.Join(src, "docker.io_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("docker.io in %s: %v", src, debs)
	}
	fields := strings.Split(strings.TrimSuffix(filepath.Base(debs[0]), ".deb"), "_")
	version := strings.ReplaceAll(fields[1], "%3a", ":") + suffix
	dir := src + "-" + strings.TrimPrefix(suffix, "+")
	image, _ := os.ReadFile(filepath.Join(src, "IMAGE"))
	if have, err := os.ReadFile(filepath.Join(dir, "IMAGE")); err == nil && string(have) == string(image) {
		return dir, version
	}
	tmp := dir + fmt.Sprintf(".tmp-%d", os.Getpid())
	os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	script := fmt.Sprintf(`set -e
mkdir -p %[1]s
cp %[2]s/*.deb %[1]s/
rm %[1]s/docker.io_*.deb
dpkg-deb -R %[3]s %[4]s
sed -i 's/^Version: .*/Version: %[5]s/' %[4]s/DEBIAN/control
dpkg-deb --root-owner-group -Zgzip -b %[4]s %[1]s/docker.io_%[5]s_%[6]s.deb >/dev/null
rm -rf %[4]s
cd %[1]s && sha256sum *.deb >SHA256SUMS`, tmp, src, debs[0], tree, version, fields[2])
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("rebuilding docker.io as %s: %v\n%s", version, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, "IMAGE"), image, 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir, version
}

// serviceThreeManagers is the service part of the 3-manager variant: web (3
// replicas) created at v1, updated to v2 (completed), then to v3, whose command
// exits at once (rolled back, v2 running everywhere afterwards).
func serviceThreeManagers(t *testing.T, c *cluster, inv string, nodes []string) {
	for _, n := range nodes {
		nodeSh(t, n, webImagesScript)
	}
	nodeSh(t, "master", "docker service rm web >/dev/null")
	for _, step := range []struct {
		version, kind, monitor, want string
		ok                           bool
	}{
		{"v1", "deployService", "2s", "created; 3/3 running", true},
		{"v2", "updateService", "2s", "update completed", true},
		{"v3", "updateService", "5s", "rolled back: ", false},
	} {
		pb := c.labPlaybook("web3m-"+step.version, inv, fmt.Sprintf(`    - name: web
      kind: %s
      hosts: [master, slave01, slave02]
      timeout: 5m
      service: web
      image: clusterflow/web:%s
      replicas: 3
      updateConfig:
        parallelism: 1
        delay: 1s
        monitor: %s
        failureAction: rollback
`, step.kind, step.version, step.monitor))
		begin := time.Now()
		out, code := c.starter("run", pb)
		t.Logf("web %s with 3 managers: exit %d after %s", step.version, code, time.Since(begin).Round(time.Millisecond))
		if (code == 0) != step.ok || !strings.Contains(out, step.want) {
			t.Fatalf("web %s: exit %d, want %q in:\n%s", step.version, code, step.want, out)
		}
	}
	got := nodeSh(t, "master", "docker service ps web --filter desired-state=running --format '{{.Node}} {{.Image}} {{.CurrentState}}' | awk '{print $1, $2, $3}' | sort")
	t.Logf("web tasks after the rollback:\n%s", indent(got))
	if strings.Count(got, "clusterflow/web:v2 Running") != 3 {
		t.Errorf("web after the rollback:\n%s", got)
	}
}

// startedAfter lists the activities of run id started after since, in order, as
// "type: summary (attempt N) +elapsed".
func startedAfter(t *testing.T, c *cluster, id string, since time.Time) []string {
	t.Helper()
	var out []string
	for _, a := range activityStarts(t, c, id) {
		if a.at.After(since) {
			out = append(out, fmt.Sprintf("%s: %s (attempt %d) +%s", a.typ, a.summary, a.attempt, a.at.Sub(since).Round(100*time.Millisecond)))
		}
	}
	return out
}
