package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
)

// These tests need no Docker engine; lab_test.go (build tag lab) runs a real lab.

// defaultSpec is the default lab, clusterflow-lab.
func defaultSpec(t *testing.T) labSpec {
	t.Helper()
	s, err := newLabSpec(defaultLabName)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLabNodes(t *testing.T) {
	spec := defaultSpec(t)
	nodes, err := spec.nodes(3)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, addr, group, container, volume string }{
		{"master", "10.211.73.11", "managers", "clusterflow-lab-master", "clusterflow-lab-master-docker"},
		{"slave01", "10.211.73.12", "workers", "clusterflow-lab-slave01", "clusterflow-lab-slave01-docker"},
		{"slave02", "10.211.73.13", "workers", "clusterflow-lab-slave02", "clusterflow-lab-slave02-docker"},
	}
	for i, w := range want {
		n := nodes[i]
		if n.Name != w.name || n.Address.String() != w.addr || n.Groups()[0] != w.group || n.Container() != w.container || n.Volume() != w.volume {
			t.Errorf("node %d = %+v %s %s %s, want %+v", i, n, n.Groups(), n.Container(), n.Volume(), w)
		}
	}
	last, err := spec.nodes(maxNodes)
	if err != nil {
		t.Fatal(err)
	}
	if n := last[maxNodes-1]; n.Name != "slave08" || n.Address.String() != "10.211.73.19" {
		t.Errorf("last node = %+v", n)
	}
	for _, bad := range []int{0, -1, maxNodes + 1} {
		if _, err := spec.nodes(bad); err == nil {
			t.Errorf("nodes(%d) accepted", bad)
		}
	}
}

func TestNodeByName(t *testing.T) {
	spec := defaultSpec(t)
	for _, name := range []string{"master", "slave01", "slave08"} {
		n, ok := spec.nodeByName(name)
		if !ok || n.Name != name {
			t.Errorf("nodeByName(%q) = %+v, %v", name, n, ok)
		}
	}
	for _, name := range []string{"", "slave00", "slave09", "slave1", "slave001", "worker", "Master"} {
		if n, ok := spec.nodeByName(name); ok {
			t.Errorf("nodeByName(%q) = %+v, want none", name, n)
		}
	}
}

func TestStatePaths(t *testing.T) {
	spec := defaultSpec(t)
	dir := t.TempDir()
	t.Setenv("CLUSTERFLOW_STATE_DIR", dir)
	p, err := spec.statePaths()
	if err != nil {
		t.Fatal(err)
	}
	if p.Dir != filepath.Join(dir, "lab") || p.Inventory != filepath.Join(dir, "lab", "inventory.yaml") ||
		p.KnownHosts != filepath.Join(dir, "lab", "known_hosts") || p.Key != filepath.Join(dir, "lab", "id_ed25519") {
		t.Errorf("statePaths() = %+v", p)
	}
	other, _ := newLabSpec("cf-other")
	if p, _ := other.statePaths(); p.Dir != filepath.Join(dir, "labs", "cf-other") || p.Inventory != filepath.Join(dir, "labs", "cf-other", "inventory.yaml") {
		t.Errorf("statePaths() of cf-other = %+v", p)
	}
	t.Setenv("CLUSTERFLOW_STATE_DIR", "")
	t.Chdir(dir)
	p, err = spec.statePaths()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, ".clusterflow", "lab"); p.Dir != want {
		t.Errorf("default state dir = %s, want %s", p.Dir, want)
	}
}

// TestLabSpecs checks what derives from a lab's name: the default lab's values as
// they always were, and for any other name a /24 of 10.211.0.0/16 that is never the
// default's, a bridge name short enough for Linux, and names that start with the
// lab's.
func TestLabSpecs(t *testing.T) {
	def := defaultSpec(t)
	if def.Subnet.String() != "10.211.73.0/24" || def.Bridge != "cf-lab0" || def.Network() != "clusterflow-lab" ||
		def.Gateway().String() != "10.211.73.1" || def.IPRange().String() != "10.211.73.128/25" ||
		def.RepoContainer() != "clusterflow-lab-repo" || def.RepoAddress().String() != "10.211.73.10" {
		t.Errorf("default lab = %+v, gateway %s, range %s, repo %s %s", def, def.Gateway(), def.IPRange(), def.RepoContainer(), def.RepoAddress())
	}
	all := netip.MustParsePrefix(labSubnets)
	seen := map[netip.Prefix]string{}
	for i := range 400 {
		name := fmt.Sprintf("cf-t%d", i)
		s, err := newLabSpec(name)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := newLabSpec(name)
		switch {
		case again != s:
			t.Errorf("%s: %+v, then %+v", name, s, again)
		case s.Subnet.Bits() != 24 || !all.Contains(s.Subnet.Addr()) || s.Subnet.Overlaps(def.Subnet):
			t.Errorf("%s: subnet %s", name, s.Subnet)
		case len(s.Bridge) > 15 || s.Bridge == def.Bridge || !strings.HasPrefix(s.Bridge, "cf-"):
			t.Errorf("%s: bridge %q", name, s.Bridge)
		case s.nodeAt(1).Container() != name+"-slave01" || s.nodeAt(1).Volume() != name+"-slave01-docker" || s.RepoContainer() != name+"-repo":
			t.Errorf("%s: names %s %s %s", name, s.nodeAt(1).Container(), s.nodeAt(1).Volume(), s.RepoContainer())
		case s.nodeAt(0).Address != s.hostAddr(firstHost) || !s.Subnet.Contains(s.RepoAddress()) || s.IPRange().Contains(s.nodeAt(maxNodes-1).Address):
			t.Errorf("%s: addresses master %s, repo %s, range %s", name, s.nodeAt(0).Address, s.RepoAddress(), s.IPRange())
		}
		seen[s.Subnet] = name
	}
	// 400 names over 255 subnets: the hash spreads them.
	if len(seen) < 150 {
		t.Errorf("400 names got only %d subnets", len(seen))
	}
	for _, bad := range []string{"", "Lab", "-x", "x-", "a_b", "a.b", "a b", strings.Repeat("a", 41), "1lab"} {
		if _, err := newLabSpec(bad); err == nil {
			t.Errorf("lab name %q accepted", bad)
		}
	}
	for _, good := range []string{"a", "cf-e2e-1a2b", strings.Repeat("a", 40)} {
		if _, err := newLabSpec(good); err != nil {
			t.Errorf("lab name %q: %v", good, err)
		}
	}
}

// TestLabNameFromFlagAndEnv: --name wins over $CLUSTERFLOW_LAB, which wins over the
// default; a bad name is refused before anything is touched.
func TestLabNameFromFlagAndEnv(t *testing.T) {
	resolve := func(args ...string) (string, error) {
		var got string
		root := newRootCommand(io.Discard, io.Discard)
		flags := &labFlags{}
		probe := &cobra.Command{Use: "probe", RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := flags.spec(cmd)
			got = s.Name
			return err
		}}
		probe.Flags().StringVar(&flags.name, "name", defaultLabName, "")
		root.AddCommand(probe)
		root.SetArgs(append([]string{"probe"}, args...))
		return got, root.Execute()
	}
	t.Setenv(envLabName, "")
	if got, err := resolve(); err != nil || got != defaultLabName {
		t.Errorf("no flag, no env: %q %v", got, err)
	}
	t.Setenv(envLabName, "cf-env")
	if got, err := resolve(); err != nil || got != "cf-env" {
		t.Errorf("env: %q %v", got, err)
	}
	if got, err := resolve("--name", "cf-flag"); err != nil || got != "cf-flag" {
		t.Errorf("flag over env: %q %v", got, err)
	}
	if _, err := resolve("--name", "Bad_Name"); err == nil || !strings.Contains(err.Error(), "lab name") {
		t.Errorf("bad name: %v", err)
	}
	t.Setenv(envLabName, "")
	if err := run(context.Background(), []string{"--name", "Bad", "status"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "lab name") {
		t.Errorf("lab --name Bad status: %v", err)
	}
}

// TestListLabs groups the engine's lab objects by the lab label.
func TestListLabs(t *testing.T) {
	cli := fakeLister{
		nets: []network.Summary{
			{Name: "clusterflow-lab", Labels: map[string]string{labelLab: "clusterflow-lab", labelState: "/x/.clusterflow/lab"},
				IPAM: network.IPAM{Config: []network.IPAMConfig{{Subnet: "10.211.73.0/24"}}}},
		},
		ctrs: []container.Summary{
			{Labels: map[string]string{labelLab: "clusterflow-lab", labelNode: "master"}, State: "running"},
			{Labels: map[string]string{labelLab: "clusterflow-lab", labelNode: "slave01"}, State: "exited"},
			{Labels: map[string]string{labelLab: "clusterflow-lab", labelRepo: "k"}, State: "running"},
			{Labels: map[string]string{labelLab: "cf-old", labelNode: "master"}, State: "exited"},
		},
	}
	labs, err := listLabs(context.Background(), cli)
	if err != nil {
		t.Fatal(err)
	}
	want := []labSummary{
		{Name: "cf-old", Subnet: "-", State: "-", Nodes: 1},
		{Name: "clusterflow-lab", Subnet: "10.211.73.0/24", State: "/x/.clusterflow/lab", Nodes: 2, Running: 1, Repos: 1},
	}
	if !reflect.DeepEqual(labs, want) {
		t.Errorf("listLabs = %+v, want %+v", labs, want)
	}
	var b bytes.Buffer
	printLabs(&b, labs)
	if !strings.Contains(b.String(), "clusterflow-lab  10.211.73.0/24  1/2 running  yes") {
		t.Errorf("lab list:\n%s", b.String())
	}
}

type fakeLister struct {
	nets []network.Summary
	ctrs []container.Summary
}

func (f fakeLister) NetworkList(context.Context, network.ListOptions) ([]network.Summary, error) {
	return f.nets, nil
}

func (f fakeLister) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return f.ctrs, nil
}

func TestRenderInventory(t *testing.T) {
	nodes, _ := defaultSpec(t).nodes(3)
	got := string(renderInventory(nodes))
	want := `apiVersion: clusterflow.io/v1
kind: Inventory
spec:
  defaults: {user: root, port: 22, identityFile: id_ed25519, knownHostsFile: known_hosts}
  hosts:
    - {name: master, address: 10.211.73.11, groups: [managers]}
    - {name: slave01, address: 10.211.73.12, groups: [workers]}
    - {name: slave02, address: 10.211.73.13, groups: [workers]}
`
	if !strings.HasSuffix(got, want) {
		t.Errorf("inventory:\n%s\nwant it to end with:\n%s", got, want)
	}
	for _, line := range strings.Split(strings.TrimSpace(strings.TrimSuffix(got, want)), "\n") {
		if !strings.HasPrefix(line, "#") {
			t.Errorf("line before the document is not a comment: %q", line)
		}
	}
}

func TestKeyPairAndKnownHosts(t *testing.T) {
	t.Setenv("CLUSTERFLOW_STATE_DIR", t.TempDir())
	p, err := defaultSpec(t).statePaths()
	if err != nil {
		t.Fatal(err)
	}
	signer, created, err := ensureKeyPair(p)
	if err != nil || !created {
		t.Fatalf("ensureKeyPair: created=%v err=%v", created, err)
	}
	fi, err := os.Stat(p.Key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode %v, want 0600", fi.Mode().Perm())
	}
	if fi, err := os.Stat(p.Dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("state dir mode %v (%v), want 0755", fi.Mode().Perm(), err)
	}
	if gi, err := os.ReadFile(filepath.Join(p.Dir, ".gitignore")); err != nil || !strings.Contains(string(gi), "\n*\n") {
		t.Errorf("state dir .gitignore %q (%v), want one that ignores everything", gi, err)
	}
	data, _ := os.ReadFile(p.Key)
	if !bytes.HasPrefix(data, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Errorf("key is not in OpenSSH format:\n%s", data)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := raw.(*ed25519.PrivateKey); !ok {
		t.Errorf("key type %T, want ed25519", raw)
	}
	again, created, err := ensureKeyPair(p)
	if err != nil || created {
		t.Fatalf("second ensureKeyPair: created=%v err=%v", created, err)
	}
	if !bytes.Equal(again.PublicKey().Marshal(), signer.PublicKey().Marshal()) {
		t.Error("second ensureKeyPair made a new key")
	}
	pub, _ := os.ReadFile(p.PubKey)
	if got := strings.TrimSpace(string(pub)); got != authorizedKeyLine(signer) || !strings.HasPrefix(got, "ssh-ed25519 AAAA") {
		t.Errorf("public key file %q", got)
	}

	line := knownHostsLine("10.211.73.11", 22, signer.PublicKey())
	if !regexp.MustCompile(`^10\.211\.73\.11 ssh-ed25519 AAAA[A-Za-z0-9+/=]+$`).MatchString(line) {
		t.Errorf("known_hosts line %q", line)
	}
	if got := knownHostsLine("10.211.73.11", 2222, signer.PublicKey()); !strings.HasPrefix(got, "[10.211.73.11]:2222 ") {
		t.Errorf("known_hosts line with port %q", got)
	}
}

func TestBasePackagesMatchDockerfile(t *testing.T) {
	data, err := buildFiles.ReadFile("node.Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var fromDockerfile []string
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "ARG NODE_PACKAGES="); ok {
			fromDockerfile = strings.Fields(strings.Trim(v, `"`))
		}
	}
	if !reflect.DeepEqual(fromDockerfile, basePackages) {
		t.Errorf("node.Dockerfile NODE_PACKAGES = %v, basePackages = %v: keep them equal", fromDockerfile, basePackages)
	}
}

func TestSSHDConfig(t *testing.T) {
	data, err := buildFiles.ReadFile("node/sshd_config")
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		cfg[strings.ToLower(f[0])] = strings.Join(f[1:], " ")
	}
	want := map[string]string{
		"permitrootlogin":              "prohibit-password",
		"passwordauthentication":       "no",
		"kbdinteractiveauthentication": "no",
		"allowstreamlocalforwarding":   "yes",
		"allowtcpforwarding":           "local",
		"subsystem":                    "sftp /usr/lib/openssh/sftp-server",
		"hostkey":                      "/etc/ssh/ssh_host_ed25519_key",
	}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("sshd_config %s = %q, want %q", k, cfg[k], v)
		}
	}
	// Any PermitOpen line blocks the Docker socket forward (LAB.md).
	if v, ok := cfg["permitopen"]; ok {
		t.Errorf("sshd_config has PermitOpen %s", v)
	}
}

func TestImageHashesAndContext(t *testing.T) {
	node1, err := nodeImageSpec.hash()
	if err != nil {
		t.Fatal(err)
	}
	node2, _ := nodeImageSpec.hash()
	prebaked, err := prebakedImageSpec.hash()
	if err != nil {
		t.Fatal(err)
	}
	if node1 != node2 || len(node1) != 64 || prebaked == node1 {
		t.Errorf("hashes: node %s / %s, prebaked %s", node1, node2, prebaked)
	}
	r, err := nodeImageSpec.contextTar()
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]int64{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[h.Name] = h.Mode
	}
	want := map[string]int64{
		"node.Dockerfile": 0o644, "node/sshd_config": 0o644,
		"node/init.sh": 0o755, "node/clusterflow-service": 0o755,
	}
	if !reflect.DeepEqual(modes, want) {
		t.Errorf("build context %v, want %v", modes, want)
	}
}

// TestComposeFileMatchesLab keeps docker-compose.yml in step with the lab command:
// names, subnet, addresses, labels and the node image's build-file hash.
func TestComposeFileMatchesLab(t *testing.T) {
	data, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Skipf("no docker-compose.yml next to lab/: %v", err)
	}
	compose := string(data)
	hash, err := nodeImageSpec.hash()
	if err != nil {
		t.Fatal(err)
	}
	def := defaultSpec(t)
	labName := def.Name
	must := []string{
		"io.clusterflow.lab.context-hash: " + hash,
		"name: " + def.Network(), "subnet: " + def.Subnet.String(), "ip_range: " + def.IPRange().String(),
		"gateway: " + def.Gateway().String(), "com.docker.network.bridge.name: " + def.Bridge,
		"image: " + nodeImage, "dockerfile: node.Dockerfile",
		"cap_drop: [SYS_RESOURCE]", "seccomp=unconfined", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "init: true",
	}
	nodes, _ := def.nodes(3)
	for _, n := range nodes {
		must = append(must,
			"container_name: "+n.Container(),
			"hostname: "+n.Name,
			"ipv4_address: "+n.Address.String(),
			"name: "+n.Volume(),
			"{"+labelLab+": "+labName+", "+labelNode+": "+n.Name+"}",
		)
	}
	for _, s := range must {
		if !strings.Contains(compose, s) {
			t.Errorf("docker-compose.yml lacks %q", s)
		}
	}
}

func TestRunArgs(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"up", "down", "status", "ssh", "images", "list"} {
		if !strings.Contains(out.String(), "  "+cmd+" ") {
			t.Errorf("help does not list %s:\n%s", cmd, out.String())
		}
	}
	for _, args := range [][]string{{"bogus"}, {"up", "--nodes", "0"}, {"up", "--nodes", "10"}, {"status", "extra"}, {"ssh"}, {"--name", "x_y", "down"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run %v: no error", args)
		}
	}
}
