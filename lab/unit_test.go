package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// These tests need no Docker engine; lab_test.go (build tag lab) runs a real lab.

func TestLabNodes(t *testing.T) {
	nodes, err := labNodes(3)
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
	last, err := labNodes(maxNodes)
	if err != nil {
		t.Fatal(err)
	}
	if n := last[maxNodes-1]; n.Name != "slave08" || n.Address.String() != "10.211.73.19" {
		t.Errorf("last node = %+v", n)
	}
	for _, bad := range []int{0, -1, maxNodes + 1} {
		if _, err := labNodes(bad); err == nil {
			t.Errorf("labNodes(%d) accepted", bad)
		}
	}
}

func TestNodeByName(t *testing.T) {
	for _, name := range []string{"master", "slave01", "slave08"} {
		n, ok := nodeByName(name)
		if !ok || n.Name != name {
			t.Errorf("nodeByName(%q) = %+v, %v", name, n, ok)
		}
	}
	for _, name := range []string{"", "slave00", "slave09", "slave1", "slave001", "worker", "Master"} {
		if n, ok := nodeByName(name); ok {
			t.Errorf("nodeByName(%q) = %+v, want none", name, n)
		}
	}
}

func TestStatePaths(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CLUSTERFLOW_STATE_DIR", dir)
	p, err := statePaths()
	if err != nil {
		t.Fatal(err)
	}
	if p.Dir != filepath.Join(dir, "lab") || p.Inventory != filepath.Join(dir, "lab", "inventory.yaml") ||
		p.KnownHosts != filepath.Join(dir, "lab", "known_hosts") || p.Key != filepath.Join(dir, "lab", "id_ed25519") {
		t.Errorf("statePaths() = %+v", p)
	}
	t.Setenv("CLUSTERFLOW_STATE_DIR", "")
	t.Chdir(dir)
	p, err = statePaths()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, ".clusterflow", "lab"); p.Dir != want {
		t.Errorf("default state dir = %s, want %s", p.Dir, want)
	}
}

func TestRenderInventory(t *testing.T) {
	nodes, _ := labNodes(3)
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
	p, err := statePaths()
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
	must := []string{
		"io.clusterflow.lab.context-hash: " + hash,
		"name: " + labName, "subnet: " + labSubnet, "ip_range: " + labIPRange, "gateway: " + labGateway,
		"image: " + nodeImage, "dockerfile: node.Dockerfile",
		"cap_drop: [SYS_RESOURCE]", "seccomp=unconfined", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "init: true",
	}
	nodes, _ := labNodes(3)
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
	for _, cmd := range []string{"up", "down", "status", "ssh", "images"} {
		if !strings.Contains(out.String(), "  "+cmd+" ") {
			t.Errorf("help does not list %s:\n%s", cmd, out.String())
		}
	}
	for _, args := range [][]string{{"bogus"}, {"up", "--nodes", "0"}, {"up", "--nodes", "10"}, {"status", "extra"}, {"ssh"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run %v: no error", args)
		}
	}
}
