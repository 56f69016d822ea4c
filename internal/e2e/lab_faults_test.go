//go:build lab

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/clusterflow/clusterflow/internal/codec"
	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

// Fault-suite settings (environment). The defaults are the short variant every
// `make test` runs; `make test-faults` runs the long one (20 kills over 5 trials).
const (
	envFaultTrials   = "CLUSTERFLOW_FAULT_TRIALS"   // fresh-lab bootstraps; default 1
	envFaultKills    = "CLUSTERFLOW_FAULT_KILLS"    // worker SIGKILLs over all trials; default 2
	envFaultRestarts = "CLUSTERFLOW_FAULT_RESTARTS" // server SIGKILL+restarts over all trials; default 1
	envFaultSeed     = "CLUSTERFLOW_FAULT_SEED"     // random seed; default: from the clock, printed
)

// faultTally is what the suite did and saw, printed at the end for docs/RELIABILITY.md.
type faultTally struct {
	trials, kills, restarts, partitions, rekeys, refusals, reruns, retried int
	killedIn                                                               map[string]int
	lost                                                                   []string
}

// TestLabFaults proves that a full lab bootstrap (playbooks/cluster.yaml: SSH keys in
// a mesh, Docker, a 3-server Consul cluster, a swarm with an overlay network and a
// replicated service; on prebaked nodes, so no package mirror is needed) survives
// faults, with the payload codec on:
//
//   - trials: each on a fresh 3-node lab, the worker SIGKILLed at random points
//     (seeded; the seed is printed) and the embedded Temporal server SIGKILLed and
//     started again on the same SQLite file mid-run. Every run must complete, the
//     cluster must be right (3 Ready swarm nodes with the node IDs they joined with,
//     3 Raft voters, 3/3 replicas) and nothing done twice (no duplicate or stray
//     authorized_keys or known_hosts line, one dockerd and one consul agent per node,
//     one service, one overlay network); a re-run changes nothing;
//   - a node cut from the lab network mid-step and put back: the step retries and
//     completes, and its guarded command ran once;
//   - a node that stays away: the step fails that host with a per-host error and
//     the run completes within the step's failure budget;
//   - two playbooks on the cluster at once: the second is refused, naming the first;
//   - a node whose host key changed: refused at once (one attempt), naming the key;
//   - every event of every run in the server, payloads decoded with the keyring,
//     holds no private key, join token or gossip key.
//
// Run: go test -tags lab -count=1 -run Faults -v ./internal/e2e/
// Long: CLUSTERFLOW_FAULT_TRIALS=5 CLUSTERFLOW_FAULT_KILLS=20 CLUSTERFLOW_FAULT_RESTARTS=5 (make test-faults)
func TestLabFaults(t *testing.T) {
	trials, kills, restarts := envInt(t, envFaultTrials, 1), envInt(t, envFaultKills, 2), envInt(t, envFaultRestarts, 1)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envFaultSeed); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", envFaultSeed, err)
		}
		seed = v
	}
	t.Logf("fault suite: %d trial(s), %d worker kill(s), %d server restart(s), seed %d (%s=%d to repeat)",
		trials, kills, restarts, seed, envFaultSeed, seed)
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	// The codec on for every process: the scan must decode to see anything.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keys := "faults-1 " + base64.StdEncoding.EncodeToString(key)
	t.Setenv(codec.KeysEnv, keys)
	t.Setenv("CLUSTERFLOW_CODEC_ADDRESS", net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))))

	begin := time.Now()
	c := newCluster(t, 0)
	cc := codecClient(t, c, keys)
	tally := &faultTally{killedIn: map[string]int{}}
	secrets := map[string]string{"codec key": base64.StdEncoding.EncodeToString(key)}
	w := c.startWorker()
	var inv string

	for trial := 1; trial <= trials; trial++ {
		k := kills / trials
		if trial <= kills%trials {
			k++
		}
		r := restarts / trials
		if trial <= restarts%trials {
			r++
		}
		t.Run(fmt.Sprintf("bootstrap %d of %d (%d kills, %d restarts)", trial, trials, k, r), func(t *testing.T) {
			inv, w = faultTrial(t, c, cc, w, rng, trial, k, r, tally, secrets)
		})
		if t.Failed() {
			break
		}
	}
	if inv == "" || t.Failed() {
		t.Fatalf("no healthy lab to go on with")
	}

	t.Run("partition mid-step", func(t *testing.T) { partitionMidStep(t, c, inv, tally) })
	t.Run("node stays away", func(t *testing.T) { nodeStaysAway(t, c, inv, tally) })
	t.Run("concurrent runs", func(t *testing.T) { concurrentRuns(t, c, inv, tally) })
	t.Run("host key changed", func(t *testing.T) { hostKeyChanged(t, c, inv, tally) })

	events := scanHistories(t, c, "", secrets)
	t.Logf("FAULT SUITE: seed %d; %d trials, %d worker kills (by step: %v), %d server restarts, %d partitions, %d host key change(s), "+
		"%d activity attempts retried, %d refused concurrent run(s), %d re-runs all unchanged; %d events scanned for %d secrets + %d patterns; lost: %v; took %s",
		seed, tally.trials, tally.kills, tally.killedIn, tally.restarts, tally.partitions, tally.rekeys, tally.retried, tally.refusals, tally.reruns,
		events, len(secrets), len(secretPatterns), lostOrNothing(tally.lost), time.Since(begin).Round(time.Second))
}

func lostOrNothing(lost []string) string {
	if len(lost) == 0 {
		return "nothing"
	}
	return strings.Join(lost, "; ")
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a whole number", name, v)
	}
	return n
}

// codecClient is a client of c's server that reads the encrypted payloads.
func codecClient(t *testing.T, c *cluster, keys string) client.Client {
	t.Helper()
	k, err := codec.ParseKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	cdc := codec.New(k)
	cc, err := client.Dial(client.Options{HostPort: c.addr, DataConverter: cdc.DataConverter(), FailureConverter: cdc.FailureConverter()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Close)
	return cc
}

// faultTrial bootstraps a fresh lab with the shipped cluster playbook while killing
// the worker k times and the server r times at random points, then checks the
// cluster and that nothing happened twice. It returns the lab's inventory and the
// live worker.
func faultTrial(t *testing.T, c *cluster, cc client.Client, w *exec.Cmd, rng *mrand.Rand, trial, k, r int,
	tally *faultTally, secrets map[string]string) (string, *exec.Cmd) {
	inv := c.labUp(3, true)
	state := filepath.Dir(inv)
	name := fmt.Sprintf("faults-%d", trial)
	pb := c.clusterPlaybook(state, name)
	id := workflows.WorkflowID(name)
	start := time.Now()
	if out, code := c.starter("run", "--detach", pb); code != 0 {
		t.Fatalf("start: exit %d\n%s", code, out)
	}
	tally.trials++

	// The faults, in a random order: k worker kills and r server restarts. Each aims
	// at a step drawn at random (the draws sorted into run order, so they spread over
	// the whole bootstrap rather than pile up in its longest step) and strikes a
	// random 0 to 3 s after the run is in that step or a later one.
	plan, err := playbooks.Load(pb)
	if err != nil {
		t.Fatal(err)
	}
	steps := map[string]int{}
	for i, s := range plan.Steps {
		steps[s.Name] = i
	}
	faults := make([]bool, k+r) // true: a server restart
	for i := range r {
		faults[i] = true
	}
	rng.Shuffle(len(faults), func(i, j int) { faults[i], faults[j] = faults[j], faults[i] })
	targets := make([]int, len(faults))
	for i := range targets {
		targets[i] = rng.IntN(len(plan.Steps))
	}
	sort.Ints(targets)
	for i, restart := range faults {
		deadline := time.Now().Add(5 * time.Minute)
		for !closed(cc, id) {
			if at, ok := steps[currentStep(cc, id)]; ok && at >= targets[i] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the run did not reach step %d within 5 min", targets[i]+1)
			}
			time.Sleep(100 * time.Millisecond)
		}
		wait := time.Duration(rng.IntN(3000)) * time.Millisecond
		time.Sleep(wait)
		if closed(cc, id) {
			t.Logf("the run ended before the next fault; %d fault(s) left undone", len(faults)-i)
			break
		}
		step := currentStep(cc, id)
		if restart {
			killed := time.Now()
			srv := c.procs[0]
			if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = srv.Wait()
			down := time.Duration(rng.IntN(3000)) * time.Millisecond
			time.Sleep(down)
			c.procs[0] = c.start("server", "worker", "server", "--grpc-port", strconv.Itoa(c.port), "--ui-port", "0",
				"--state-dir", filepath.Join(c.dir, "state"))
			waitFor(t, time.Minute, "the server to answer again", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_, err := c.client.DescribeWorkflowExecution(ctx, id, "")
				return err == nil
			})
			tally.restarts++
			t.Logf("%s, aimed at step %d + %s: server SIGKILLed during step %q, down %s, answering again after %s",
				time.Since(start).Round(time.Millisecond), targets[i]+1, wait.Round(time.Millisecond), step, down.Round(time.Millisecond),
				time.Since(killed).Round(time.Millisecond))
			continue
		}
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		w = c.startWorker()
		tally.kills++
		tally.killedIn[step]++
		t.Logf("%s, aimed at step %d + %s: worker SIGKILLed during step %q; a new worker started",
			time.Since(start).Round(time.Millisecond), targets[i]+1, wait.Round(time.Millisecond), step)
	}
	if err := c.waitRun(id, 15*time.Minute); err != nil {
		tally.lost = append(tally.lost, fmt.Sprintf("trial %d: %v", trial, err))
		t.Fatalf("run: %v\nworker log:\n%s", err, c.logOf(w))
	}
	// The run and every child it started (one per procedure step: the playbook's
	// steps decide which, so they are read from the run's history, not listed here).
	var retried []string
	for _, run := range append([]string{id}, childRuns(t, c, id)...) {
		retried = append(retried, retriedActivities(t, c, run)...)
	}
	tally.retried += len(retried)
	t.Logf("run completed in %s with the faults; activities retried: %v", time.Since(start).Round(time.Millisecond), retried)

	checkBootstrapped(t, c, state, tally, trial)

	// A re-run changes nothing.
	c.rerunUnchanged(pb)
	tally.reruns++

	// What the scan at the end looks for: this lab's secrets.
	tag := fmt.Sprintf(" (trial %d)", trial)
	secrets["worker join token"+tag] = nodeSh(t, "master", "docker swarm join-token -q worker")
	secrets["manager join token"+tag] = nodeSh(t, "master", "docker swarm join-token -q manager")
	secrets["gossip key"+tag] = strings.TrimSpace(readFile(t, filepath.Join(state, "consul-gossip.key")))
	secrets["cluster key"] = privateKeyBody(t, readFile(t, filepath.Join(state, "cluster_ed25519")))
	secrets["lab key"] = privateKeyBody(t, readFile(t, filepath.Join(state, "id_ed25519")))
	for _, n := range []string{"master", "slave01", "slave02"} {
		secrets[n+" node key"+tag] = privateKeyBody(t, nodeSh(t, n, "cat /root/.ssh/id_ed25519"))
	}
	return inv, w
}

// privateKeyBody is the first base64 line of a PEM/OpenSSH private key: what any
// copy of the key, however wrapped, contains.
func privateKeyBody(t *testing.T, pem string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(pem), "\n")
	if len(lines) < 3 || !strings.Contains(lines[0], "PRIVATE KEY") {
		t.Fatalf("not a private key: %.40q", pem)
	}
	return strings.TrimSpace(lines[1])
}

// closed reports whether the run has ended.
func closed(cc client.Client, id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := cc.DescribeWorkflowExecution(ctx, id, "")
	return err == nil && d.GetWorkflowExecutionInfo().GetCloseTime() != nil
}

// currentStep names the step the run is in, from its ClusterflowStep search
// attribute: the server answers that without a worker (a query would wait for one).
func currentStep(cc client.Client, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := cc.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return "unknown"
	}
	p, ok := d.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()[workflows.SAStep.GetName()]
	var step string
	if !ok || converter.GetDefaultDataConverter().FromPayload(p, &step) != nil || step == "" {
		return "between steps"
	}
	return step
}

// checkBootstrapped checks the lab after a bootstrap: the cluster is whole and no
// non-idempotent action happened twice.
func checkBootstrapped(t *testing.T, c *cluster, state string, tally *faultTally, trial int) {
	t.Helper()
	nodes := []string{"master", "slave01", "slave02"}
	lost := func(format string, args ...any) {
		msg := fmt.Sprintf("trial %d: ", trial) + fmt.Sprintf(format, args...)
		tally.lost = append(tally.lost, msg)
		t.Error(msg)
	}

	// Swarm: 3 Ready nodes, each listed with the ID its own engine has (a second join
	// would add an entry and change the ID); one manager.
	list := nodeSh(t, "master", "docker node ls --format '{{.Hostname}} {{.ID}} {{.Status}} {{.ManagerStatus}}' | sort")
	t.Logf("docker node ls:\n%s", indent(list))
	lines := strings.Split(list, "\n")
	if len(lines) != 3 {
		lost("%d swarm nodes, want 3:\n%s", len(lines), list)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 3 || f[2] != "Ready" {
			lost("swarm node %q is not Ready", l)
			continue
		}
		if own := nodeSh(t, f[0], "docker info --format '{{.Swarm.NodeID}}'"); own != f[1] {
			lost("%s is listed as %s but its engine says %s", f[0], f[1], own)
		}
	}
	if m := nodeSh(t, "master", "docker node ls --filter role=manager -q | wc -l"); m != "1" {
		lost("%s managers, want 1", m)
	}
	waitForWeb(t, 2*time.Minute)
	if n := nodeSh(t, "master", "docker service ls -q | wc -l"); n != "1" {
		lost("%s services, want 1", n)
	}
	if n := nodeSh(t, "master", "docker network ls --filter name=^backend$ -q | wc -l"); n != "1" {
		lost("%s networks named backend, want 1", n)
	}
	peers := nodeSh(t, "slave02", "consul operator raft list-peers")
	if strings.Count(peers, "leader") != 1 || strings.Count(peers, "true") != 3 {
		lost("raft peers: want 1 leader and 3 voters:\n%s", peers)
	}

	// Keys: every authorized_keys line is one of the keys the bootstrap means to
	// trust, none twice (a node key made twice would leave a stray one); known_hosts
	// has no line twice.
	allowed := map[string]string{
		keyField(readFile(t, filepath.Join(state, "id_ed25519.pub"))):      "lab key",
		keyField(readFile(t, filepath.Join(state, "cluster_ed25519.pub"))): "cluster key",
	}
	for _, n := range nodes {
		allowed[keyField(nodeSh(t, n, "cat /root/.ssh/id_ed25519.pub"))] = n + " node key"
	}
	for _, n := range nodes {
		own := keyField(nodeSh(t, n, "cat /root/.ssh/id_ed25519.pub")) // trusted by the others only
		seen := map[string]bool{}
		for _, l := range strings.Split(nodeSh(t, n, "grep -v '^#' /root/.ssh/authorized_keys | grep ."), "\n") {
			k := keyField(l)
			if _, ok := allowed[k]; !ok || k == own {
				lost("%s trusts a key the bootstrap did not mean: %.60s", n, l)
			}
			if seen[k] {
				lost("%s's authorized_keys lists a key twice: %.60s", n, l)
			}
			seen[k] = true
		}
		if len(seen) != len(allowed)-1 {
			lost("%s trusts %d keys, want %d", n, len(seen), len(allowed)-1)
		}
		if d := nodeSh(t, n, "sort /root/.ssh/known_hosts | uniq -d"); d != "" {
			lost("%s's known_hosts has lines twice:\n%s", n, d)
		}
		// One engine and one agent: a second start would leave two.
		if d := nodeSh(t, n, "pgrep -c -x dockerd || true"); d != "1" {
			lost("%s runs %s dockerd processes", n, d)
		}
		if d := nodeSh(t, n, "pgrep -c -x consul || true"); d != "1" {
			lost("%s runs %s consul agents", n, d)
		}
		if d := installedCount(t, n); d > 1 {
			lost("%s: docker.io reached installed %d times", n, d)
		}
	}
	if len(tally.lost) == 0 {
		t.Logf("cluster right: 3 Ready nodes with their own IDs, 1 manager, web 3/3, 1 network, 3 Raft voters; "+
			"authorized_keys %d keys each, none twice or stray; known_hosts no line twice; 1 dockerd, 1 consul per node", len(allowed)-1)
	}
}

// labLink cuts a node from the lab network or puts it back at its own address.
func labLink(t *testing.T, node string, up bool) {
	t.Helper()
	// The lab's network is named as the lab.
	ctr, network := labContainer(node), labName()
	if !up {
		docker(t, "network", "disconnect", network, ctr)
		return
	}
	docker(t, "network", "connect", "--ip", labAddr(t, node), network, ctr)
}

// partitionMidStep cuts slave01 off while its command runs, puts it back after 32 s:
// the host's attempt fails, a later one finds the command's result and completes.
func partitionMidStep(t *testing.T, c *cluster, inv string, tally *faultTally) {
	pb := c.labPlaybook("partition", inv, `    - name: slow step
      kind: run
      hosts: all
      attempts: 10
      timeout: 2m
      creates: /root/partition-done
      command: [sh, -c, 'touch /root/partition-started; sleep 6; echo done >> /root/partition-done']
`)
	id := workflows.WorkflowID("partition")
	begin := time.Now()
	if out, code := c.starter("run", "--detach", pb); code != 0 {
		t.Fatalf("start: exit %d\n%s", code, out)
	}
	waitFor(t, time.Minute, "the command to start on slave01", func() bool {
		_, err := nodeShErr("slave01", "test -e /root/partition-started")
		return err == nil
	})
	// Longer than the worker's SSH keepalive needs to declare the link dead (15 s
	// interval, 10 s to answer): a shorter cut is bridged by TCP, the command's
	// session resumes and nothing is retried.
	labLink(t, "slave01", false)
	cut := time.Now()
	time.Sleep(32 * time.Second)
	labLink(t, "slave01", true)
	tally.partitions++
	t.Logf("slave01 cut off for %s, %s into the step", time.Since(cut).Round(time.Millisecond), cut.Sub(begin).Round(time.Millisecond))
	if err := c.waitRun(id, 5*time.Minute); err != nil {
		t.Fatalf("run after the partition: %v", err)
	}
	n := activityAttempts(t, c, id, "RunRemoteCommand")
	t.Logf("completed %s after the start; RunRemoteCommand took up to %d attempts", time.Since(begin).Round(time.Millisecond), n)
	if n < 2 {
		t.Errorf("no retry after the partition (attempts %d)", n)
	}
	if got := nodeSh(t, "slave01", "cat /root/partition-done"); got != "done" {
		t.Errorf("slave01's guarded command ran %d times", strings.Count(got, "done"))
	}
	out, _ := c.starter("status", "partition")
	t.Logf("status:\n%s", indent(out))
}

// nodeStaysAway runs a step with a failure budget of 34% while slave02 is cut off:
// slave02 fails with a per-host error, the others complete, and so does the run.
func nodeStaysAway(t *testing.T, c *cluster, inv string, tally *faultTally) {
	pb := c.labPlaybook("away", inv, `    - name: reach every node
      kind: run
      hosts: all
      attempts: 2
      timeout: 30s
      maxFailPercent: 34
      command: ["true"]
`)
	labLink(t, "slave02", false)
	defer labLink(t, "slave02", true)
	tally.partitions++
	begin := time.Now()
	out, code := c.starter("run", "--output", "json", pb)
	took := time.Since(begin)
	if code != 0 {
		t.Fatalf("a run within its failure budget failed: exit %d\n%s", code, out)
	}
	var res struct{ Progress workflows.Progress }
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	for _, h := range res.Progress.Steps[0].Hosts {
		t.Logf("  %-8s %-9s %s", h.Host, h.State, h.Message)
		switch {
		case h.Host == "slave02" && (h.State != workflows.HostFailed || !strings.Contains(h.Message, "slave02")):
			t.Errorf("slave02: want failed with an error naming it, got %s: %s", h.State, h.Message)
		case h.Host != "slave02" && h.State != workflows.HostChanged:
			t.Errorf("%s: %s", h.Host, h.State)
		}
	}
	t.Logf("run completed in %s with slave02 away (failure budget 34%%: 1 of 3 hosts)", took.Round(time.Millisecond))
}

// concurrentRuns starts a second playbook on the lab while one runs: refused.
func concurrentRuns(t *testing.T, c *cluster, inv string, tally *faultTally) {
	first := c.labPlaybook("busy", inv, "    - name: busy\n      kind: run\n      hosts: [master]\n      command: [sleep, \"5\"]\n")
	second := c.labPlaybook("meanwhile", inv, "    - name: hello\n      kind: run\n      hosts: all\n      command: [\"true\"]\n")
	if out, code := c.starter("run", "--detach", first); code != 0 {
		t.Fatalf("start: exit %d\n%s", code, out)
	}
	out, code := c.starter("run", second)
	t.Logf("second playbook while playbook/busy runs: exit %d: %s", code, strings.TrimSpace(out))
	if code != 3 || !strings.Contains(out, "cluster lab is in use by playbook/busy (run ") {
		t.Errorf("want exit 3 naming playbook/busy")
	} else {
		tally.refusals++
	}
	if err := c.waitRun(workflows.WorkflowID("busy"), time.Minute); err != nil {
		t.Fatal(err)
	}
}

// hostKeyChanged gives slave01 new host keys: the next run refuses it at once,
// naming the key it presented.
func hostKeyChanged(t *testing.T, c *cluster, inv string, tally *faultTally) {
	// Every sshd of the node goes, sessions too: the worker's pooled connection was
	// checked against the old key, and must dial again (the node's init restarts sshd).
	nodeSh(t, "slave01", "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && kill $(pgrep -x sshd)")
	fp := strings.Fields(nodeSh(t, "slave01", "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"))[1]
	waitFor(t, 30*time.Second, "sshd to serve the new key", func() bool {
		_, err := nodeShErr("slave01", "test -s /run/sshd.pid && kill -0 $(cat /run/sshd.pid)")
		return err == nil
	})
	tally.rekeys++
	pb := c.labPlaybook("rekeyed", inv, "    - name: hello\n      kind: run\n      hosts: all\n      command: [\"true\"]\n")
	out, code := c.starter("run", pb)
	t.Logf("exit %d:\n%s", code, out)
	if code == 0 || !strings.Contains(out, "host key mismatch") || !strings.Contains(out, fp) {
		t.Errorf("want a failed run naming the host key mismatch and %s", fp)
	}
	if n := activityAttempts(t, c, workflows.WorkflowID("rekeyed"), "RunRemoteCommand"); n != 1 {
		t.Errorf("RunRemoteCommand ran %d attempts, want 1 (non-retryable)", n)
	}
}
