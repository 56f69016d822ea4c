//go:build lab

package e2e

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clusterflow/clusterflow/workflows"
)

// sleepImageScript makes a tiny image on a node from the node's own files (no
// registry in the lab): /usr/bin/sleep with the libc it needs.
const sleepImageScript = `docker image inspect clusterflow/sleep:1 >/dev/null 2>&1 ||
tar -C / -ch usr/bin/sleep lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2 |
docker import -c 'CMD ["/usr/bin/sleep","infinity"]' - clusterflow/sleep:1 >/dev/null`

// TestSwarmLab forms a swarm on 3 lab nodes with the playbook step kinds, as a user
// would (starter run, worker processes, embedded Temporal server):
//
//   - a host with two addresses and no advertiseAddr: init refused with a message
//     naming the candidates; with advertiseAddr "address" it forms;
//   - swarmInit with 3 managers, a label and an encrypted attachable overlay network:
//     the slaves join as workers and are then promoted; the worker is SIGKILLed once
//     both have joined, before the promotions end; a new worker finishes the run
//     with 3 managers and no node joined twice (3 nodes in the list, IDs unchanged);
//     no join token in any event of the run's histories;
//   - the same playbook again changes nothing;
//   - drain of a manager running replicas waits until they run elsewhere;
//   - with one manager paused, demoting another is refused with the quorum arithmetic.
//
// Run: go test -tags lab -count=1 -run Swarm -v ./internal/e2e/
func TestSwarmLab(t *testing.T) {
	c := newCluster(t, 0)
	inv := c.labUp(3, true)
	w := c.startWorker()
	for _, n := range []string{"master", "slave01", "slave02"} {
		nodeSh(t, n, "true")
	}

	engines := c.labPlaybook("engines", inv, `    - name: docker engine
      kind: installDocker
      hosts: all
`)
	if out, code := c.starter("run", engines); code != 0 {
		t.Fatalf("installDocker: exit %d\n%s", code, out)
	}

	t.Run("advertise address", func(t *testing.T) {
		// A second address, outside 10.211.0.0/16 where the labs live; nothing dials it.
		nodeSh(t, "master", "ip addr add 10.212.99.1/24 dev eth0")
		defer nodeSh(t, "master", "ip addr del 10.212.99.1/24 dev eth0")
		pb := c.labPlaybook("swarm-auto", inv, `    - name: swarm
      kind: swarmInit
      hosts: [master]
`)
		out, code := c.starter("run", pb)
		t.Logf("exit %d:\n%s", code, out)
		if code == 0 || !strings.Contains(out, "advertiseAddr") || !strings.Contains(out, "10.212.99.1") {
			t.Fatalf("want a refusal naming the candidate addresses and advertiseAddr, got exit %d", code)
		}
		if st := nodeSh(t, "master", "docker info --format '{{.Swarm.LocalNodeState}}'"); st != "inactive" {
			t.Fatalf("master's swarm state after the refusal: %s", st)
		}
	})

	formation := c.labPlaybook("swarm", inv, `    - name: swarm
      kind: swarmInit
      hosts: all
      managers: [master, slave01, slave02]
      advertiseAddr: address
      labels:
        slave01: {zone: a}
      networks:
        - {name: backend, attachable: true, encrypted: true}
`)

	t.Run("form with a kill between join and promote", func(t *testing.T) {
		// slave01 is left halfway through a join: a join to a manager address where
		// nothing answers (in the lab's own subnet) stays "pending".
		nodeSh(t, "slave01", `(docker swarm join --token SWMTKN-1-`+strings.Repeat("1", 50)+`-`+strings.Repeat("a", 25)+` `+labSubnetAddr(t, 99)+`:2377 >/dev/null 2>&1 &); sleep 2`)
		waitFor(t, 30*time.Second, "slave01 to be pending", func() bool {
			st, _ := nodeShErr("slave01", "docker info --format '{{.Swarm.LocalNodeState}}'")
			return st == "pending"
		})
		id := workflows.WorkflowID("swarm")
		begin := time.Now()
		out, code := c.starter("run", "--detach", formation)
		if code != 0 {
			t.Fatalf("start: exit %d\n%s", code, out)
		}
		// Both workers have joined (their own engines say so): kill the worker.
		joined := func() bool {
			for _, n := range []string{"slave01", "slave02"} {
				if st, _ := nodeShErr(n, "docker info --format '{{.Swarm.LocalNodeState}}'"); st != "active" {
					return false
				}
			}
			return true
		}
		for deadline := time.Now().Add(3 * time.Minute); !joined(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the slaves did not join within 3 min\nswarmInit: %s\nworker log:\n%s", progressOf(c, id+"/1-swarmInit"), c.logOf(w))
			}
		}
		joinedIDs := map[string]string{}
		for _, n := range []string{"slave01", "slave02"} {
			joinedIDs[n] = nodeSh(t, n, "docker info --format '{{.Swarm.NodeID}}'")
		}
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		managersAtKill := nodeSh(t, "master", "docker node ls --filter role=manager -q | wc -l")
		t.Logf("worker SIGKILLed %s after the start, both slaves joined, %s manager(s) at that moment",
			time.Since(begin).Round(time.Millisecond), managersAtKill)
		w = c.startWorker()
		if err := c.waitRun(id, 5*time.Minute); err != nil {
			t.Fatalf("run: %v\nprogress: %s\nworker log:\n%s", err, progressOf(c, id), c.logOf(w))
		}
		t.Logf("formation with the kill took %s", time.Since(begin).Round(time.Millisecond))
		c.record(id, "RunPlaybook-swarm-lab")
		c.record(id+"/1-swarmInit", "SwarmInit-lab-kill")

		nodes := nodeSh(t, "master", "docker node ls --format '{{.Hostname}} {{.ID}} {{.Status}} {{.ManagerStatus}}'")
		t.Logf("docker node ls on master:\n%s", indent(nodes))
		lines := strings.Split(nodes, "\n")
		if len(lines) != 3 {
			t.Fatalf("%d nodes in the swarm, want 3 (a node joined twice?)", len(lines))
		}
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) < 4 || f[2] != "Ready" || (f[3] != "Leader" && f[3] != "Reachable") {
				t.Errorf("node %q: want Ready and a reachable manager", l)
			}
			if want, ok := joinedIDs[f[0]]; ok && want != f[1] {
				t.Errorf("%s has node ID %s, joined as %s: it joined twice", f[0], f[1], want)
			}
		}
		var res struct{ Progress workflows.Progress }
		out, _ = c.starter("status", "swarm", "--output", "json")
		_ = json.Unmarshal([]byte(out), &res)
		for _, s := range res.Progress.Steps {
			for _, h := range s.Hosts {
				t.Logf("  %-8s %-9s %s", h.Host, h.State, h.Message)
				if h.Host == "slave01" && !strings.Contains(h.Message, "left a half-finished join (state pending") {
					t.Errorf("slave01's outcome does not report the repaired join: %s", h.Message)
				}
			}
		}
		if l := nodeSh(t, "master", "docker node inspect slave01 --format '{{.Spec.Labels.zone}}'"); l != "a" {
			t.Errorf("slave01 label zone = %q", l)
		}
		if n := nodeSh(t, "master", "docker network inspect backend --format '{{.Driver}} {{.Attachable}} {{index .Options \"encrypted\"}}|'"); n != "overlay true |" {
			t.Errorf("network backend: %q", n)
		}
		retried := retriedActivities(t, c, id+"/1-swarmInit")
		t.Logf("SwarmInit activities retried after the kill: %v", retried)

		tokens := map[string]string{
			"worker join token":  nodeSh(t, "master", "docker swarm join-token -q worker"),
			"manager join token": nodeSh(t, "master", "docker swarm join-token -q manager"),
		}
		n := scanHistories(t, c, "playbook/swarm", tokens)
		t.Logf("scanned %d events of the swarm runs for the join tokens: none found", n)
	})

	t.Run("re-run changes nothing", func(t *testing.T) {
		begin := time.Now()
		out, code := c.starter("run", "--output", "json", formation)
		if code != 0 {
			t.Fatalf("re-run: exit %d\n%s", code, out)
		}
		t.Logf("re-run took %s", time.Since(begin).Round(time.Millisecond))
		var res struct{ Progress workflows.Progress }
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("json output: %v\n%s", err, out)
		}
		for _, s := range res.Progress.Steps {
			for _, h := range s.Hosts {
				t.Logf("  %-14s %-8s %-9s %s", s.Name, h.Host, h.State, h.Message)
				if h.State != workflows.HostUnchanged {
					t.Errorf("re-run: step %s, host %s: %s", s.Name, h.Host, h.State)
				}
			}
		}
	})

	t.Run("drain waits", func(t *testing.T) {
		for _, n := range []string{"master", "slave01", "slave02"} {
			nodeSh(t, n, sleepImageScript)
		}
		nodeSh(t, "master", "docker service create -d --name web --replicas 3 --replicas-max-per-node 2 clusterflow/sleep:1 >/dev/null")
		waitFor(t, 2*time.Minute, "web to run 3 replicas", func() bool {
			out, _ := nodeShErr("master", "docker service ps web --filter desired-state=running --format '{{.CurrentState}}' | grep -c Running")
			return out == "3"
		})
		before := nodeSh(t, "master", "docker service ps web --filter desired-state=running --format '{{.Node}}' | sort | uniq -c")
		pb := c.labPlaybook("drain", inv, `    - name: drain slave01
      kind: drain
      hosts: [slave01]
      timeout: 3m
`)
		begin := time.Now()
		out, code := c.starter("run", pb)
		took := time.Since(begin)
		if code != 0 {
			t.Fatalf("drain: exit %d\n%s", code, out)
		}
		c.record(workflows.WorkflowID("drain")+"/1-drain", "SwarmNodes-lab-drain")
		// Right when the run ends, nothing runs on slave01 and web has its 3 replicas.
		after := nodeSh(t, "master", "docker service ps web --filter desired-state=running --format '{{.Node}} {{.CurrentState}}'")
		t.Logf("drain took %s; web before:\n%s\nafter:\n%s", took.Round(time.Millisecond), indent(before), indent(after))
		running := 0
		for _, l := range strings.Split(after, "\n") {
			if strings.Contains(l, "Running") {
				running++
			}
			if strings.HasPrefix(l, "slave01 ") {
				t.Errorf("a web task is still meant to run on slave01: %s", l)
			}
		}
		if running != 3 {
			t.Errorf("web runs %d replicas when the drain ends, want 3", running)
		}
		if a := nodeSh(t, "master", "docker node inspect slave01 --format '{{.Spec.Availability}}'"); a != "drain" {
			t.Errorf("slave01 availability %q", a)
		}
	})

	t.Run("quorum refusal", func(t *testing.T) {
		docker(t, "pause", labContainer("slave02"))
		defer docker(t, "unpause", labContainer("slave02"))
		waitFor(t, 2*time.Minute, "master to see slave02 unreachable", func() bool {
			out, _ := nodeShErr("master", "docker node inspect slave02 --format '{{.ManagerStatus.Reachability}}'")
			return out == "unreachable"
		})
		pb := c.labPlaybook("demote", inv, `    - name: demote slave01
      kind: demote
      hosts: [slave01]
      manager: master
`)
		out, code := c.starter("run", pb)
		t.Logf("exit %d:\n%s", code, out)
		if code == 0 {
			t.Fatal("demoting a second manager while one is down was not refused")
		}
		for _, want := range []string{"would leave 2 manager(s), 1 of them reachable", "slave02 unreachable", "quorum of 2 of 2"} {
			if !strings.Contains(out, want) {
				t.Errorf("the refusal does not say %q", want)
			}
		}
		if r := nodeSh(t, "master", "docker node inspect slave01 --format '{{.Spec.Role}}'"); r != "manager" {
			t.Errorf("slave01 is %s after the refusal", r)
		}
		// Refused once, not retried: the error is non-retryable.
		if n := activityAttempts(t, c, workflows.WorkflowID("demote")+"/1-demote", "UpdateNode"); n != 1 {
			t.Errorf("UpdateNode ran %d attempts, want 1", n)
		}
	})
}
