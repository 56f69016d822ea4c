//go:build lab

package main

// Tests against a real lab: `go test -tags lab ./lab/...` (make test-lab).
//
// TestMain brings up a 3-node lab of its own, named cf-labtest-XXXX (a new name each
// run, so it never meets a lab it did not make), from the prebaked image (docker.io
// installed, engine not started) with its state in a temporary directory, runs the
// tests, then runs `lab down` twice and checks that nothing with its label is left.
// Other labs, the user's included, are not touched. With CLUSTERFLOW_LAB_REUSE=1 it
// tests the lab named by $CLUSTERFLOW_LAB (default clusterflow-lab) instead (running
// `lab up --prebaked`, which keeps running nodes as they are) with the state in
// $CLUSTERFLOW_STATE_DIR or the repository's .clusterflow, and leaves it up.
//
// Traffic goes only to the containers and networks the run made (NETWORK RULE), and to
// Debian's mirror when an image has to be built. The nodes' apt knows only the lab
// repository, whose package cache must come from `go run ./lab repo` beforehand
// (CLUSTERFLOW_LAB_NO_FETCH=1 here).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

var (
	testLab    *lab
	testSigner ssh.Signer
	testNodes  []node
	reuseLab   bool
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	ctx := context.Background()
	reuseLab = os.Getenv("CLUSTERFLOW_LAB_REUSE") == "1"
	if reuseLab {
		if os.Getenv("CLUSTERFLOW_STATE_DIR") == "" {
			abs, _ := filepath.Abs("../.clusterflow")
			os.Setenv("CLUSTERFLOW_STATE_DIR", abs)
		}
	} else {
		dir, err := os.MkdirTemp("", "clusterflow-lab-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		os.Setenv("CLUSTERFLOW_STATE_DIR", dir)
	}
	cli, err := connectDocker(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab tests need a Docker engine: %v\n", err)
		return 1
	}
	defer cli.Close()
	// The lab repository's package cache comes from `go run ./lab repo` (make test-lab
	// runs it): a test run downloads nothing.
	os.Setenv(envNoFetch, "1")
	start := time.Now()
	for try := 1; ; try++ {
		name := os.Getenv(envLabName)
		if !reuseLab {
			// A name of its own; every run() below acts on it through the environment.
			name = fmt.Sprintf("cf-labtest-%04x", rand.Uint32()&0xffff)
			os.Setenv(envLabName, name)
		} else if name == "" {
			name = defaultLabName
		}
		spec, err := newLabSpec(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		p, err := spec.statePaths()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		testLab = &lab{cli: cli, spec: spec, paths: p, out: os.Stdout}
		if !reuseLab {
			if left := leftovers(ctx, cli, name); left != "" {
				fmt.Fprintf(os.Stderr, "lab %s is already here (%s), yet this run just chose its name: another test run?\n", name, left)
				return 1
			}
		}
		err = run(ctx, []string{"up", "--prebaked"}, os.Stdout, os.Stderr)
		if err == nil {
			break
		}
		fmt.Fprintf(os.Stderr, "lab up: %v\n", err)
		if !reuseLab {
			_ = run(ctx, []string{"down"}, os.Stdout, os.Stderr)
		}
		// Another lab holds the subnet this name gives: try another name.
		if reuseLab || !errors.As(err, new(subnetInUseError)) || try == 5 {
			return 1
		}
	}
	fmt.Printf("lab %s up (prebaked, 3 nodes) took %s\n", testLab.spec.Name, time.Since(start).Round(100*time.Millisecond))
	testNodes, _ = testLab.spec.nodes(defaultNodes)
	p := testLab.paths
	data, err := os.ReadFile(p.Key)
	if err == nil {
		testSigner, err = ssh.ParsePrivateKey(data)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lab key: %v\n", err)
		return 1
	}

	code := m.Run()

	if reuseLab {
		return code
	}
	for i := 0; i < 2; i++ { // the second run proves down is idempotent
		if err := run(ctx, []string{"down"}, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "lab down (run %d): %v\n", i+1, err)
			return 1
		}
	}
	if left := leftovers(ctx, cli, testLab.spec.Name); left != "" {
		fmt.Fprintf(os.Stderr, "FAIL: lab down left %s\n", left)
		return 1
	}
	fmt.Printf("lab down: no container, volume or network of lab %s is left\n", testLab.spec.Name)
	return code
}

// leftovers describes the objects of the named lab that the engine still has, ""
// when none.
func leftovers(ctx context.Context, cli *client.Client, name string) string {
	var left []string
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: labFilter(name)})
	if err != nil {
		return err.Error()
	}
	for _, c := range cs {
		left = append(left, "container "+strings.Join(c.Names, ","))
	}
	vs, err := cli.VolumeList(ctx, volume.ListOptions{Filters: labFilter(name)})
	if err != nil {
		return err.Error()
	}
	for _, v := range vs.Volumes {
		left = append(left, "volume "+v.Name)
	}
	ns, err := cli.NetworkList(ctx, network.ListOptions{Filters: labFilter(name)})
	if err != nil {
		return err.Error()
	}
	for _, n := range ns {
		left = append(left, "network "+n.Name)
	}
	return strings.Join(left, ", ")
}

// login opens a strict SSH connection to a node with the lab key.
func login(t *testing.T, n node) *ssh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := sshLogin(ctx, testLab.paths, testSigner, n.Address.String())
	if err != nil {
		t.Fatalf("ssh %s: %v", n.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// remote runs a shell command on a node over SSH and fails the test when it fails.
func remote(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	out, err := sshRun(c, cmd)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return strings.TrimSpace(out)
}

func TestStateFiles(t *testing.T) {
	inv, err := os.ReadFile(testLab.paths.Inventory)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(inv, renderInventory(testNodes)) && !reuseLab {
		t.Errorf("inventory.yaml:\n%s", inv)
	}
	kh, err := os.ReadFile(testLab.paths.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(kh), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) < len(testNodes) {
		t.Fatalf("known_hosts has %d host lines, want %d:\n%s", len(lines), len(testNodes), kh)
	}
	for i, n := range testNodes {
		if !strings.HasPrefix(lines[i], n.Address.String()+" ssh-ed25519 AAAA") {
			t.Errorf("known_hosts line %d: %q", i, lines[i])
		}
	}
	if fi, err := os.Stat(testLab.paths.Key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key %v mode %v", err, fi.Mode())
	}
}

func TestUpIsIdempotent(t *testing.T) {
	before := map[string][]byte{}
	for _, f := range []string{testLab.paths.Inventory, testLab.paths.KnownHosts, testLab.paths.Key} {
		before[f], _ = os.ReadFile(f)
	}
	nodesBefore, err := testLab.listNodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	start := time.Now()
	if err := run(context.Background(), []string{"up", "--prebaked"}, &out, &out); err != nil {
		t.Fatalf("second lab up: %v\n%s", err, out.String())
	}
	t.Logf("warm lab up took %s", time.Since(start).Round(10*time.Millisecond))
	if strings.Contains(out.String(), "created") || strings.Contains(out.String(), "building") {
		t.Errorf("second lab up changed something:\n%s", out.String())
	}
	for f, data := range before {
		now, _ := os.ReadFile(f)
		if !bytes.Equal(now, data) {
			t.Errorf("%s changed on the second lab up", f)
		}
	}
	nodesAfter, _ := testLab.listNodes(context.Background())
	if len(nodesAfter) != len(nodesBefore) {
		t.Fatalf("nodes %d before, %d after", len(nodesBefore), len(nodesAfter))
	}
	for i := range nodesAfter {
		if nodesAfter[i].id != nodesBefore[i].id {
			t.Errorf("node %s was recreated", nodesAfter[i].node.Name)
		}
	}
}

// TestSSHEachNode logs into every node with strict host key checking and checks what a
// node must be: its own host name and address, key-only root login, the forwarding
// settings the Docker socket forward needs, an SFTP subsystem, no password anywhere.
func TestSSHEachNode(t *testing.T) {
	for _, n := range testNodes {
		t.Run(n.Name, func(t *testing.T) {
			c := login(t, n)
			if got := remote(t, c, "hostname"); got != n.Name {
				t.Errorf("hostname %q", got)
			}
			if got := remote(t, c, "id -u"); got != "0" {
				t.Errorf("uid %q", got)
			}
			if got := remote(t, c, "ip -4 -o addr show eth0"); !strings.Contains(got, " "+n.Address.String()+"/24 ") {
				t.Errorf("eth0: %s", got)
			}
			eff := remote(t, c, "sshd -T")
			for _, want := range []string{
				"permitrootlogin without-password", "passwordauthentication no", "kbdinteractiveauthentication no",
				"allowstreamlocalforwarding yes", "allowtcpforwarding local", "permitopen any",
				"subsystem sftp /usr/lib/openssh/sftp-server",
			} {
				if !strings.Contains(eff, want+"\n") {
					t.Errorf("sshd -T lacks %q", want)
				}
			}
			if got := remote(t, c, "getent shadow root | cut -d: -f2"); !strings.HasPrefix(got, "!") {
				t.Errorf("root password not locked: %q", got)
			}
			// Hosts keys are each node's own: none came with the image.
			if got := remote(t, c, "ls /etc/ssh/ | grep ssh_host_ | sort | tr '\\n' ' '"); got != "ssh_host_ed25519_key ssh_host_ed25519_key.pub" {
				t.Errorf("host keys: %q", got)
			}
			sess, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			if err := sess.RequestSubsystem("sftp"); err != nil {
				t.Errorf("sftp subsystem: %v", err)
			}
			sess.Close()
		})
	}
	// Every node has its own host key.
	kh, _ := os.ReadFile(testLab.paths.KnownHosts)
	seen := map[string]bool{}
	for _, l := range strings.Split(string(kh), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			if seen[f[2]] {
				t.Errorf("two nodes share host key %s", f[2])
			}
			seen[f[2]] = true
		}
	}
}

// TestSSHRefusesWrongHostKeyAndPasswords: strict checking fails against a known_hosts
// that lists another key for the node, and the node offers no password login.
func TestSSHRefusesWrongHostKeyAndPasswords(t *testing.T) {
	n := testNodes[1]
	bad := filepath.Join(t.TempDir(), "known_hosts")
	// Record the lab key's public half as the host key: right type, wrong key.
	if err := os.WriteFile(bad, []byte(knownHostsLine(n.Address.String(), sshPort, testSigner.PublicKey())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := testLab.paths
	p.KnownHosts = bad
	_, err := sshLogin(ctx, p, testSigner, n.Address.String())
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) || len(keyErr.Want) == 0 {
		t.Errorf("login with a wrong known host key: %v, want a key mismatch", err)
	}

	check, err := knownhosts.New(testLab.paths.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ClientConfig{
		User: "root",
		Auth: []ssh.AuthMethod{ssh.Password("root"), ssh.KeyboardInteractive(
			func(string, string, []string, []bool) ([]string, error) { return nil, errors.New("no answers") })},
		HostKeyCallback: check, HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout: 5 * time.Second,
	}
	conn, err := ssh.Dial("tcp", net.JoinHostPort(n.Address.String(), "22"), cfg)
	if err == nil {
		conn.Close()
		t.Fatal("password login succeeded")
	}
	// The client tries a method only when the server offers it: "attempted methods
	// [none]" means neither password nor keyboard-interactive was on offer.
	if !strings.Contains(err.Error(), "unable to authenticate") || !strings.Contains(err.Error(), "attempted methods [none]") {
		t.Errorf("password login: %v, want no password method offered", err)
	}
}

func TestSystemSSHAndStatus(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"ssh", "slave01", "--", "hostname"}, &out, &errOut); err != nil {
		t.Fatalf("lab ssh: %v\n%s", err, errOut.String())
	}
	if got := strings.TrimSpace(out.String()); got != "slave01" {
		t.Errorf("lab ssh slave01 hostname = %q (stderr %q)", got, errOut.String())
	}
	err := run(context.Background(), []string{"ssh", "master", "exit", "3"}, &out, &errOut)
	var exit exitStatusError
	if !errors.As(err, &exit) || exit.code != 3 {
		t.Errorf("lab ssh master exit 3: %v", err)
	}
	if err := run(context.Background(), []string{"ssh", "slave07", "true"}, &out, &errOut); err == nil {
		t.Error("lab ssh to a node that does not exist succeeded")
	}

	out.Reset()
	if err := run(context.Background(), []string{"status"}, &out, &errOut); err != nil {
		t.Fatalf("lab status: %v", err)
	}
	t.Logf("lab status:\n%s", out.String())
	for _, n := range testNodes {
		re := n.Name + " +running +" + strings.ReplaceAll(n.Address.String(), ".", `\.`) + " +yes +(installed|running|absent)"
		if !strings.Contains(out.String(), n.Name) || !matches(re, out.String()) {
			t.Errorf("status has no line matching %q", re)
		}
	}
}

// TestNodeRunsDockerEngine starts the Docker engine of two nodes supervised by the node
// init (clusterflow-service), runs a container from an image made inside the node
// without any registry, checks the supervisor restarts a killed engine, talks to the
// engine through an SSH socket forward as clusterflow will, and forms a two-node swarm.
func TestNodeRunsDockerEngine(t *testing.T) {
	master, worker := testNodes[0], testNodes[1]
	for _, n := range []node{master, worker} {
		c := login(t, n)
		if _, err := sshRun(c, "command -v dockerd"); err != nil {
			t.Skipf("%s has no dockerd (a reused lab of plain nodes?): `lab down`, then run the tests", n.Name)
		}
		remote(t, c, "clusterflow-service start dockerd /usr/sbin/dockerd")
		remote(t, c, "for i in $(seq 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; tail -20 /var/log/clusterflow/dockerd.log; exit 1")
	}
	if reuseLab {
		t.Cleanup(func() {
			for _, n := range []node{worker, master} {
				c := login(t, n)
				_, _ = sshRun(c, "docker swarm leave --force; docker rm -f cf-hello; clusterflow-service stop dockerd")
			}
		})
	}

	c := login(t, master)
	// A tiny image with no registry: dash and the libraries it needs, imported.
	remote(t, c, `set -e
d=$(mktemp -d)
mkdir -p "$d/bin" "$d/etc"
cp /bin/dash "$d/bin/sh"
for l in $(ldd /bin/dash | grep -o '/[^ ]*'); do mkdir -p "$d$(dirname "$l")"; cp -L "$l" "$d$l"; done
tar -C "$d" -c . | docker import -c 'CMD ["/bin/sh"]' - cf-tiny:1 >/dev/null
rm -rf "$d"`)
	if got := remote(t, c, `docker run --rm cf-tiny:1 /bin/sh -c 'echo hello from $(cat /etc/hostname | cut -c1-4)...'`); !strings.HasPrefix(got, "hello from ") {
		t.Errorf("container output %q", got)
	}

	// The supervisor restarts an engine that dies.
	pid := remote(t, c, "clusterflow-service status dockerd | cut -d' ' -f3")
	remote(t, c, "kill -9 "+pid)
	remote(t, c, "for i in $(seq 120); do docker info >/dev/null 2>&1 && exit 0; sleep 0.5; done; exit 1")
	if again := remote(t, c, "clusterflow-service status dockerd | cut -d' ' -f3"); again == pid {
		t.Errorf("dockerd pid %s unchanged after kill -9", pid)
	}

	// The engine API through the SSH connection (direct-streamlocal), no TCP port.
	dc, err := client.NewClientWithOpts(
		client.WithHost("unix:///var/run/docker.sock"),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.DialContext(ctx, "unix", "/var/run/docker.sock")
		}),
		client.WithAPIVersionNegotiation(),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	info, err := dc.Info(ctx)
	if err != nil {
		t.Fatalf("engine API over SSH: %v", err)
	}
	if info.Name != master.Name {
		t.Errorf("engine over SSH is on %q", info.Name)
	}
	t.Logf("engine over SSH: %s, API %s", info.ServerVersion, dc.ClientVersion())

	// Swarm: init on master, join the worker, both nodes ready.
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive {
		if _, err := dc.SwarmInit(ctx, swarm.InitRequest{
			ListenAddr: "0.0.0.0:2377", AdvertiseAddr: master.Address.String(),
		}); err != nil {
			t.Fatalf("swarm init: %v", err)
		}
	}
	sw, err := dc.SwarmInspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wc := login(t, worker)
	remote(t, wc, fmt.Sprintf("docker info --format '{{.Swarm.LocalNodeState}}' | grep -qx active || docker swarm join --advertise-addr %s --token %s %s:2377",
		worker.Address, sw.JoinTokens.Worker, master.Address))
	deadline := time.Now().Add(60 * time.Second)
	for {
		nodes, err := dc.NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, sn := range nodes {
			if sn.Status.State == swarm.NodeStateReady {
				ready++
			}
		}
		if ready >= 2 {
			t.Logf("swarm: %d nodes ready", ready)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swarm: %d of 2 nodes ready after 60s", ready)
		}
		time.Sleep(time.Second)
	}
}

// matches reports whether some line of s matches the regular expression re.
func matches(re, s string) bool {
	for _, line := range strings.Split(s, "\n") {
		if ok, _ := regexp.MatchString(re, line); ok {
			return true
		}
	}
	return false
}

// TestNodesUseOnlyTheLabRepository checks that apt in every node knows the lab
// repository and nothing else: the sources name only it, apt-get update fetches only
// from it, and docker.io's candidate comes from it.
func TestNodesUseOnlyTheLabRepository(t *testing.T) {
	ctx := context.Background()
	for _, n := range testNodes {
		srcs, err := execOK(ctx, testLab.cli, n.Container(), "sh", "-c",
			`cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -E '^[[:space:]]*(deb|URIs:)' || :`)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(srcs); got != "URIs: "+testLab.spec.repoURL() {
			t.Errorf("%s: apt sources are not just the lab repository: %q", n.Name, got)
		}
		out, err := execOK(ctx, testLab.cli, n.Container(), "sh", "-c", "apt-get update -o Acquire::Retries=0 2>&1")
		if err != nil {
			t.Fatalf("%s: apt-get update: %v\n%s", n.Name, err, out)
		}
		// apt names the repository by its URL without the trailing slash.
		url := strings.TrimSuffix(testLab.spec.repoURL(), "/") + " ./ "
		fetched := 0
		for _, l := range strings.Split(out, "\n") {
			l = strings.TrimSpace(l)
			if !strings.HasPrefix(l, "Get:") && !strings.HasPrefix(l, "Hit:") && !strings.HasPrefix(l, "Ign:") && !strings.HasPrefix(l, "Err:") {
				continue
			}
			fetched++
			if strings.HasPrefix(l, "Err:") || !strings.Contains(l, url) {
				t.Errorf("%s: apt-get update: %s", n.Name, l)
			}
		}
		if fetched == 0 {
			t.Errorf("%s: apt-get update fetched nothing:\n%s", n.Name, out)
		}
		policy, err := execOK(ctx, testLab.cli, n.Container(), "apt-cache", "policy", "docker.io")
		if err != nil || !strings.Contains(policy, url+"Packages") {
			t.Errorf("%s: docker.io does not come from the lab repository (%v):\n%s", n.Name, err, policy)
		}
		if n.Index == 0 {
			t.Logf("apt-get update on %s:\n%s", n.Name, strings.TrimSpace(out))
		}
	}
}

// TestNodesResolveOnlyLabNames checks that a node resolves the lab's names and no
// other: the engine's embedded DNS forwards outside names to 127.0.0.1 in the node,
// where nothing answers, so no lookup leaves this machine (the lookup fails after the
// resolver's timeout, about 20 s).
func TestNodesResolveOnlyLabNames(t *testing.T) {
	ctx := context.Background()
	n := testNodes[0]
	out, err := execOK(ctx, testLab.cli, n.Container(), "getent", "hosts", "slave01")
	if err != nil || !strings.Contains(out, testLab.spec.nodeAt(1).Address.String()) {
		t.Errorf("%s: getent hosts slave01: %q, %v", n.Name, out, err)
	}
	start := time.Now()
	res, err := execIn(ctx, testLab.cli, n.Container(), nil, "getent", "hosts", "deb.debian.org")
	if err != nil || res.ExitCode == 0 {
		t.Errorf("%s: an outside name resolves: %+v, %v", n.Name, res, err)
	}
	t.Logf("%s: getent hosts deb.debian.org failed (exit %d) after %s", n.Name, res.ExitCode, time.Since(start).Round(time.Millisecond))
}
