//go:build lab

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

// TestInstallDockerLab runs the InstallDocker workflow on fresh lab nodes (Debian
// bookworm containers without systemd; the engine is started supervised by the
// node init):
//
//   - distro: three nodes in parallel; the worker is SIGKILLed while dpkg runs on
//     master and a new worker finishes the run. Every node then has an engine whose
//     version was read through the Docker API over SSH, and /var/log/dpkg.log shows
//     docker.io reaching "installed" exactly once per node: no package step ran
//     twice to completion. A second run reports every node unchanged.
//     Their packages come from the lab repository (the lab's NAME-repo), the nodes'
//     only apt source: no test reaches Debian's mirror.
//   - offline: a fourth node whose default route is cut and whose route to the lab
//     repository is prohibited (apt-get update fails there) installs from a .deb
//     bundle (the lab repository's package cache) sent from this machine over SFTP.
//
// Run: go test -tags lab -count=1 -run Docker -v ./internal/e2e/
func TestInstallDockerLab(t *testing.T) {
	c := newCluster(t, 0)
	start := time.Now()
	inv := c.labUp(4, false)
	t.Logf("lab of 4 fresh nodes up in %s", time.Since(start).Round(time.Millisecond))
	hosts := c.labHosts(inv, 4)
	w := c.startWorker()

	t.Run("distro", func(t *testing.T) {
		hosts := hosts[:3]
		w = installDistroSurvivingKill(t, c, w, hosts)
	})
	t.Run("offline", func(t *testing.T) {
		installOfflineWithoutRoute(t, c, hosts[3])
	})
}

func installDistroSurvivingKill(t *testing.T, c *cluster, w1 *exec.Cmd, hosts []playbooks.Host) *exec.Cmd {
	// Test setup, not part of the procedure: a user to add to the docker group, and on
	// master a daemon.json with a key of its own that the merge must keep.
	for _, h := range hosts {
		nodeSh(t, h.Name, "id ops >/dev/null 2>&1 || useradd -m ops")
	}
	nodeSh(t, "master", `mkdir -p /etc/docker && printf '{\n  "log-level": "warn"\n}\n' >/etc/docker/daemon.json`)

	in := workflows.InstallDockerInput{
		Hosts: workflows.HostsOf(hosts),
		Docker: playbooks.InstallDockerStep{
			Source:       playbooks.DockerFromDistro,
			DaemonConfig: map[string]any{"log-driver": "json-file", "log-opts": map[string]any{"max-size": "10m", "max-file": "3"}},
			Users:        []string{"ops"},
		},
		Parallel: 3,
	}
	id := "install-docker/lab-distro"
	begin := time.Now()
	run := startInstall(t, c, id, in)

	// SIGKILL the worker while dpkg unpacks or configures on master: apt runs
	// /usr/bin/dpkg with --status-fd (the [g] keeps this shell's own command line from
	// matching; dpkg --audit, run earlier by the activity, has no --status-fd).
	out, err := nodeShErr("master", `for i in $(seq 1200); do
  if pgrep -f 'bin/dpk[g] .*--status-fd' >/dev/null; then pgrep -af 'bin/dpk[g] .*--status-fd' | head -n 1; exit 0; fi
  ps -eo pid,args | grep -E 'ap[t]|dpk[g]' >>/tmp/cf-pslog
  sleep 0.05
done
exit 1`)
	if err != nil {
		t.Fatalf("dpkg never ran on master: %v\n%s\nprogress: %s\nmaster:\n%s\nworker log:\n%s", err, out,
			progressOf(c, id), indent(nodeSh(t, "master", "sort -u /tmp/cf-pslog | head -n 60; date; grep ' docker.io:' /var/log/dpkg.log")), c.logOf(w1))
	}
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w1.Wait()
	t.Logf("worker SIGKILLed %s after the start, while master ran: %s", time.Since(begin).Round(time.Millisecond), strings.TrimSpace(out))

	// The remote commands die with the worker's connections (see
	// activities/remote/wrapper.sh): what did the kill leave behind on each node?
	time.Sleep(3 * time.Second)
	for _, h := range hosts {
		state := nodeSh(t, h.Name, `echo "apt/dpkg processes: $(pgrep -c -f 'apt-ge[t]|bin/dpk[g] ' || :)"
echo "docker.io: $(dpkg-query -W -f '${Status} ${Version}' docker.io 2>/dev/null || echo not known to dpkg)"
echo "dpkg --audit: $(dpkg --audit 2>&1 | grep -c . || :) lines"`)
		t.Logf("%s right after the kill:\n%s", h.Name, indent(state))
	}

	w2 := c.startWorker()
	var res workflows.InstallDockerResult
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("InstallDocker: %v\nworker log:\n%s", err, c.logOf(w2))
	}
	first := time.Since(begin)
	t.Logf("first run (with the kill and the 30 s heartbeat timeout) took %s", first.Round(time.Millisecond))
	c.record(id, "InstallDocker-lab-kill")
	logResult(t, res)

	if len(res.Hosts) != 3 || len(res.Engines) != 3 {
		t.Fatalf("result %+v", res)
	}
	for _, o := range res.Hosts {
		if o.State != workflows.HostChanged {
			t.Errorf("%s: %s (%s), want changed", o.Host, o.State, o.Message)
		}
	}
	for _, e := range res.Engines {
		if !strings.HasPrefix(e.Version, "20.10.") || e.APIVersion == "" {
			t.Errorf("engine of %s: %+v", e.Host, e)
		}
	}

	// The killed attempt was retried by the new worker.
	retried := retriedActivities(t, c, id)
	t.Logf("activities that needed more than one attempt: %v", retried)
	if !slices.ContainsFunc(retried, func(s string) bool { return strings.HasPrefix(s, "InstallDockerPackages") }) {
		t.Errorf("no InstallDockerPackages attempt was retried, yet the worker died while dpkg ran")
	}

	// The proof that no package step ran twice to completion: dpkg logs a package
	// reaching "installed" once per configuration; a second install (or a second
	// configure) of docker.io would log a second line.
	for _, h := range hosts {
		if n := installedCount(t, h.Name); n != 1 {
			t.Errorf("%s: docker.io reached \"installed\" %d times in /var/log/dpkg.log, want 1:\n%s",
				h.Name, n, nodeSh(t, h.Name, "grep ' docker.io:' /var/log/dpkg.log"))
		}
		if audit := nodeSh(t, h.Name, "dpkg --audit"); audit != "" {
			t.Errorf("%s: dpkg --audit after the run:\n%s", h.Name, audit)
		}
		if groups := nodeSh(t, h.Name, "id -nG ops"); !slices.Contains(strings.Fields(groups), "docker") {
			t.Errorf("%s: ops is in %q", h.Name, groups)
		}
		if svc := nodeSh(t, h.Name, "clusterflow-service status dockerd"); !strings.HasPrefix(svc, "dockerd running") {
			t.Errorf("%s: engine not supervised: %q", h.Name, svc)
		}
	}
	// The packages came from the lab repository, the nodes' only apt source.
	for _, h := range hosts {
		aptUsesOnlyLabRepo(t, h.Name)
	}
	t.Logf("dpkg.log of master, docker.io lines:\n%s", indent(nodeSh(t, "master", "grep ' docker.io:' /var/log/dpkg.log")))
	daemon := nodeSh(t, "master", "cat /etc/docker/daemon.json")
	for _, want := range []string{`"log-level": "warn"`, `"log-driver": "json-file"`, `"max-size": "10m"`} {
		if !strings.Contains(daemon, want) {
			t.Errorf("master's daemon.json lacks %s:\n%s", want, daemon)
		}
	}
	// The running engine uses the merged configuration.
	if drv := nodeSh(t, "master", "docker info --format '{{.LoggingDriver}}'"); drv != "json-file" {
		t.Errorf("master's engine logs with %q", drv)
	}

	// The second run changes nothing and is much quicker.
	begin = time.Now()
	res = runInstall(t, c, id+"-again", in)
	second := time.Since(begin)
	t.Logf("second run took %s (%.0f%% of the first)", second.Round(time.Millisecond), 100*second.Seconds()/first.Seconds())
	logResult(t, res)
	for _, o := range res.Hosts {
		if o.State != workflows.HostUnchanged {
			t.Errorf("second run, %s: %s (%s), want unchanged", o.Host, o.State, o.Message)
		}
	}
	if len(res.Engines) != 3 {
		t.Errorf("second run engines %+v", res.Engines)
	}
	for _, h := range hosts {
		if n := installedCount(t, h.Name); n != 1 {
			t.Errorf("%s: docker.io installed %d times after the second run", h.Name, n)
		}
	}
	return w2
}

func installOfflineWithoutRoute(t *testing.T, c *cluster, h playbooks.Host) {
	bundle := offlineBundle(t)
	node := h.Name

	// Cut the node off every package source: no default route, and the lab repository
	// (in the directly connected lab network, which SSH from this machine still uses)
	// behind a prohibit route.
	nodeSh(t, node, "ip route del default && ip route add prohibit "+labRepoAddress(t)+"/32")
	t.Logf("%s routes now: %s", node, strings.ReplaceAll(nodeSh(t, node, "ip route"), "\n", "; "))
	// A route lookup sends nothing; apt-get update is given 10 s.
	for _, addr := range []string{"192.0.2.1", labRepoAddress(t)} {
		if out, err := nodeShErr(node, "ip route get "+addr); err == nil {
			t.Fatalf("%s still has a route to %s: %s", node, addr, out)
		}
	}
	out, err := nodeShErr(node, "timeout 10 apt-get update -o Acquire::Retries=0 2>&1")
	why := grepLines(out, "Err:", "E:", "W:", "Could not", "Temporary failure", "unreachable")
	if err == nil && !strings.Contains(out, "Err:") {
		t.Fatalf("apt-get update still works on %s without a route to any package source:\n%s", node, out)
	}
	if why == "" {
		why = "nothing fetched within 10 s"
	}
	t.Logf("apt-get update on %s without a route fails as it should (%v):\n%s", node, err, indent(why))

	in := workflows.InstallDockerInput{
		Hosts: workflows.HostsOf([]playbooks.Host{h}),
		Docker: playbooks.InstallDockerStep{
			Source: playbooks.DockerFromOffline, Packages: bundle, Version: "20.10.24",
			DaemonConfig: map[string]any{"log-driver": "local"},
		},
	}
	begin := time.Now()
	res := runInstall(t, c, "install-docker/lab-offline", in)
	t.Logf("offline install took %s", time.Since(begin).Round(time.Millisecond))
	c.record("install-docker/lab-offline", "InstallDocker-lab-offline")
	logResult(t, res)
	if len(res.Hosts) != 1 || res.Hosts[0].State != workflows.HostChanged || len(res.Engines) != 1 ||
		!strings.HasPrefix(res.Engines[0].Version, "20.10.24") {
		t.Fatalf("offline result %+v", res)
	}
	if !strings.Contains(res.Hosts[0].Message, "(offline") {
		t.Errorf("message %q", res.Hosts[0].Message)
	}
	if n := installedCount(t, node); n != 1 {
		t.Errorf("%s: docker.io installed %d times", node, n)
	}
	if left := nodeSh(t, node, "ls -A /root/.cache/clusterflow 2>/dev/null || :"); left != "" {
		t.Errorf("staging left behind on %s: %s", node, left)
	}
	if got := nodeSh(t, node, "ip route show default"); got != "" {
		t.Errorf("%s has a default route again: %s", node, got)
	}

	begin = time.Now()
	res = runInstall(t, c, "install-docker/lab-offline-again", in)
	t.Logf("offline second run took %s", time.Since(begin).Round(time.Millisecond))
	if res.Hosts[0].State != workflows.HostUnchanged {
		t.Errorf("offline second run: %+v", res.Hosts[0])
	}
}

// labRepoAddress is where the lab's apt repository (its container NAME-repo) answers,
// the only package source of the lab nodes: .10 of the lab's subnet (lab/repo.go).
func labRepoAddress(t *testing.T) string { return labSubnetAddr(t, 10) }

func labRepoURL(t *testing.T) string { return "http://" + labRepoAddress(t) + ":8080/" }

// offlineBundle returns a directory of the .deb files docker.io needs on a lab node,
// with a SHA256SUMS file: the lab repository's package cache for the node image, made
// at installation time by `go run ./lab repo` (make test-lab runs it). The test
// downloads nothing.
func offlineBundle(t *testing.T) string {
	t.Helper()
	image := strings.TrimSpace(docker(t, "image", "inspect", "--format", "{{.Id}}", "clusterflow-node:bookworm"))
	cache := os.Getenv("CLUSTERFLOW_CACHE_DIR")
	if cache == "" {
		cache = "/var/cache/clusterflow"
	}
	dir := filepath.Join(cache, "apt-repo", strings.TrimPrefix(image, "sha256:")[:12])
	b, err := os.ReadFile(filepath.Join(dir, "IMAGE"))
	if err != nil || strings.TrimSpace(string(b)) != image {
		t.Fatalf("no package cache for clusterflow-node:bookworm (%s) in %s: run `go run ./lab repo` first (make test-lab does)", image, dir)
	}
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatalf("package cache %s: %v: run `go run ./lab repo` again", dir, err)
	}
	t.Logf("offline bundle: the lab repository's cache %s, %d files", dir, strings.Count(string(sums), "\n"))
	return dir
}

// aptUsesOnlyLabRepo checks on a node that apt's sources name the lab repository and
// nothing else, and that apt-get update fetched from it alone.
func aptUsesOnlyLabRepo(t *testing.T, node string) {
	t.Helper()
	srcs := nodeSh(t, node, `cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -E '^[[:space:]]*(deb|URIs:)' || :`)
	if srcs != "URIs: "+labRepoURL(t) {
		t.Errorf("%s: apt sources are not just the lab repository:\n%s", node, indent(srcs))
	}
	out := nodeSh(t, node, "apt-get update -o Acquire::Retries=0 2>&1")
	fetched := grepLines(out, "Get:", "Hit:", "Ign:", "Err:")
	url := strings.TrimSuffix(labRepoURL(t), "/") + " ./ " // as apt names the repository
	if fetched == "" {
		t.Errorf("%s: apt-get update fetched nothing:\n%s", node, indent(out))
	}
	for _, l := range strings.Split(fetched, "\n") {
		if strings.HasPrefix(l, "Err:") || !strings.Contains(l, url) {
			t.Errorf("%s: apt-get update: %s", node, l)
		}
	}
	if policy := nodeSh(t, node, "apt-cache policy docker.io"); !strings.Contains(policy, url+"Packages") {
		t.Errorf("%s: docker.io does not come from the lab repository:\n%s", node, indent(policy))
	}
}

func fileSum(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// progressOf is the run's "progress" query answer, and its pending activities.
func progressOf(c *cluster, id string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	if v, err := c.client.QueryWorkflow(ctx, id, "", workflows.ProgressQuery); err != nil {
		fmt.Fprintf(&b, "query: %v", err)
	} else {
		var p workflows.InstallDockerProgress
		_ = v.Get(&p)
		fmt.Fprintf(&b, "%+v", p)
	}
	if d, err := c.client.DescribeWorkflowExecution(ctx, id, ""); err == nil {
		for _, a := range d.GetPendingActivities() {
			fmt.Fprintf(&b, "\n  pending %s attempt %d state %s last failure %v", a.GetActivityType().GetName(), a.GetAttempt(), a.GetState(), a.GetLastFailure().GetMessage())
		}
	}
	return b.String()
}

// startInstall starts an InstallDocker run under id.
func startInstall(t *testing.T, c *cluster, id string, in workflows.InstallDockerInput) client.WorkflowRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := c.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue},
		workflows.InstallDockerName, in)
	if err != nil {
		t.Fatalf("starting %s: %v", id, err)
	}
	return run
}

// runInstall runs InstallDocker to its end and returns the result.
func runInstall(t *testing.T, c *cluster, id string, in workflows.InstallDockerInput) workflows.InstallDockerResult {
	t.Helper()
	run := startInstall(t, c, id, in)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var res workflows.InstallDockerResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return res
}

func logResult(t *testing.T, res workflows.InstallDockerResult) {
	t.Helper()
	for _, o := range res.Hosts {
		t.Logf("  %-8s %-9s %s", o.Host, o.State, o.Message)
	}
	for _, e := range res.Engines {
		t.Logf("  engine of %s over SSH: version %s, API %s", e.Host, e.Version, e.APIVersion)
	}
}

// retriedActivities lists "ActivityType (attempt N)" for every activity of the run
// whose successful attempt was not its first.
func retriedActivities(t *testing.T, c *cluster, id string) []string {
	t.Helper()
	var out []string
	for _, a := range activityStarts(t, c, id) {
		if a.attempt > 1 {
			out = append(out, fmt.Sprintf("%s (attempt %d)", a.typ, a.attempt))
		}
	}
	return out
}

// childRuns is the workflow IDs of the child workflows run id started, in order.
func childRuns(t *testing.T, c *cluster, id string) []string {
	t.Helper()
	var out []string
	eachEvent(t, c, id, func(e *historypb.HistoryEvent) {
		if a := e.GetChildWorkflowExecutionStartedEventAttributes(); a != nil {
			out = append(out, a.GetWorkflowExecution().GetWorkflowId())
		}
	})
	return out
}

// activityStart is an activity's (last) start as its run's history records it.
type activityStart struct {
	typ, summary string
	attempt      int32
	at           time.Time
}

// activityStarts reads the activity starts of run id, in order.
func activityStarts(t *testing.T, c *cluster, id string) []activityStart {
	t.Helper()
	scheduled := map[int64]activityStart{}
	var out []activityStart
	eachEvent(t, c, id, func(e *historypb.HistoryEvent) {
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			st := activityStart{typ: a.GetActivityType().GetName()}
			if m := e.GetUserMetadata(); m != nil && m.GetSummary() != nil {
				_ = converter.GetDefaultDataConverter().FromPayload(m.GetSummary(), &st.summary)
			}
			scheduled[e.GetEventId()] = st
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
			st := scheduled[a.GetScheduledEventId()]
			st.attempt, st.at = a.GetAttempt(), e.GetEventTime().AsTime()
			out = append(out, st)
		}
	})
	return out
}

// installedCount counts the dpkg.log lines of docker.io reaching "installed".
func installedCount(t *testing.T, node string) int {
	t.Helper()
	out, _ := nodeShErr(node, "grep -c 'status installed docker.io:' /var/log/dpkg.log")
	var n int
	fmt.Sscanf(strings.TrimSpace(out), "%d", &n)
	return n
}

// nodeSh runs a shell script in a lab node through the engine (docker exec, not
// SSH: it checks on the procedure from the outside) and returns its trimmed output.
func nodeSh(t *testing.T, node, script string) string {
	t.Helper()
	out, err := nodeShErr(node, script)
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", node, script, err, out)
	}
	return out
}

func nodeShErr(node, script string) (string, error) {
	out, err := exec.Command("docker", "exec", labContainer(node), "sh", "-c", script).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// grepLines keeps the lines of s that start with one of the prefixes.
func grepLines(s string, prefixes ...string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(strings.TrimSpace(l), p) {
				keep = append(keep, l)
				break
			}
		}
	}
	return strings.Join(keep, "\n")
}
