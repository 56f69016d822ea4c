//go:build lab

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

// TestLabDistributeKeys runs the DistributeKeys workflow on a fresh 3-node lab through
// a real worker: first run (everything changes, the mesh is verified), second run
// (nothing changes, much faster), a rotation (new key in, old key out), and a run
// after the rotation (nothing changes). Files on the nodes are read with the cluster
// key itself, which proves that it logs in.
func TestLabDistributeKeys(t *testing.T) {
	c := newCluster(t, 0)
	inv := c.labUp(3, false)
	c.startWorker()
	hosts := c.labHosts(inv, 3)
	clusterKey := filepath.Join(t.TempDir(), "keys", "cluster")
	in := workflows.DistributeKeysInput{
		Hosts:    workflows.HostsOf(hosts),
		Keys:     playbooks.DistributeKeysStep{ClusterKey: clusterKey, Mesh: true},
		Parallel: 3,
	}
	labKnownHosts := readFile(t, hosts[0].KnownHostsFile)

	// First run: the cluster key is made, every node gets everything.
	first, d1 := c.distributeKeys(t, "keys-first", in)
	for _, h := range first.Hosts {
		if h.State != workflows.HostChanged {
			t.Errorf("first run: %s %s: %s", h.Host, h.State, h.Message)
		}
	}
	if !first.Mesh {
		t.Errorf("first run: mesh not verified")
	}
	if fp := fingerprintOf(t, clusterKey+".pub"); first.ClusterKeyFingerprint != fp {
		t.Fatalf("fingerprint %s, the key's is %s", first.ClusterKeyFingerprint, fp)
	}
	checkNodes(t, hosts, clusterKey, []string{clusterKey + ".pub"})
	if got := readFile(t, hosts[0].KnownHostsFile); got != labKnownHosts {
		t.Errorf("the operator's known_hosts changed although it had every host key:\n%s", got)
	}

	// Second run: nothing to do.
	second, d2 := c.distributeKeys(t, "keys-second", in)
	for _, h := range second.Hosts {
		if h.State != workflows.HostUnchanged {
			t.Errorf("second run: %s %s: %s", h.Host, h.State, h.Message)
		}
	}
	if !second.Mesh || second.ClusterKeyFingerprint != first.ClusterKeyFingerprint {
		t.Errorf("second run: %+v", second)
	}
	t.Logf("wall time: first run %s, second run %s (%.0f%%)", d1.Round(time.Millisecond), d2.Round(time.Millisecond), 100*d2.Seconds()/d1.Seconds())
	if d2 >= d1 {
		t.Errorf("the second run (%s) was not faster than the first (%s)", d2, d1)
	}

	// Rotation: a new key, verified, promoted; the old one removed everywhere.
	rot := in
	rot.Keys.Rotate = true
	third, d3 := c.distributeKeys(t, "keys-rotate", rot)
	t.Logf("wall time: rotation %s", d3.Round(time.Millisecond))
	if !third.Rotated || third.RotationPending || third.ClusterKeyFingerprint == first.ClusterKeyFingerprint {
		t.Fatalf("rotation: %+v", third)
	}
	for _, h := range third.Hosts {
		if h.State != workflows.HostChanged {
			t.Errorf("rotation: %s %s: %s", h.Host, h.State, h.Message)
		}
	}
	if fp := fingerprintOf(t, clusterKey+".pub"); third.ClusterKeyFingerprint != fp {
		t.Fatalf("fingerprint after rotation %s, the key file's is %s", third.ClusterKeyFingerprint, fp)
	}
	if fp := fingerprintOf(t, clusterKey+".old.pub"); fp != first.ClusterKeyFingerprint {
		t.Fatalf("the old pair kept is %s, want %s", fp, first.ClusterKeyFingerprint)
	}
	for _, h := range hosts {
		_, err := dialWith(h, clusterKey+".old")
		if err == nil || !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("%s: the old key still logs in, or another error: %v", h.Name, err)
		}
	}
	// checkNodes logs in with the new key; the old public key must be gone.
	checkNodes(t, hosts, clusterKey, []string{clusterKey + ".pub"}, clusterKey+".old.pub")

	// After the rotation, a plain run changes nothing.
	fourth, d4 := c.distributeKeys(t, "keys-after-rotation", in)
	t.Logf("wall time: run after rotation %s", d4.Round(time.Millisecond))
	for _, h := range fourth.Hosts {
		if h.State != workflows.HostUnchanged {
			t.Errorf("run after rotation: %s %s: %s", h.Host, h.State, h.Message)
		}
	}
}

// distributeKeys runs the workflow through the SDK client and returns its result and
// wall time.
func (c *cluster) distributeKeys(t *testing.T, id string, in workflows.DistributeKeysInput) (*workflows.DistributeKeysResult, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	run, err := c.client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: workflows.TaskQueue}, workflows.DistributeKeysName, in)
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.DistributeKeysResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("%s: %v\nworker log:\n%s", id, err, c.logOf(c.procs[len(c.procs)-1]))
	}
	d := time.Since(start)
	for _, h := range res.Hosts {
		t.Logf("%s: %s %s: %s", id, h.Host, h.State, h.Message)
	}
	c.record(id, workflows.DistributeKeysName+"-"+strings.TrimPrefix(id, "keys-"))
	return &res, d
}

// checkNodes logs in to every node with key, and checks root's ~/.ssh: modes and
// owners, authorized_keys with the wanted public keys (files on the worker), every
// other node's own key (mesh) and none of the unwanted keys, no duplicate line, and a
// known_hosts that lists every node by address and name with its host key.
func checkNodes(t *testing.T, hosts []playbooks.Host, key string, wantPubs []string, unwantedPubs ...string) {
	t.Helper()
	nodeKeys := map[string]string{}
	files := map[string][2]string{}
	for _, h := range hosts {
		cl, err := dialWith(h, key)
		if err != nil {
			t.Fatalf("%s: login with %s: %v", h.Name, key, err)
		}
		out := runOn(t, cl, `stat -c '%a %U %n' /root/.ssh /root/.ssh/authorized_keys; echo ---; cat /root/.ssh/authorized_keys; echo ---; cat /root/.ssh/known_hosts; echo ---; cat /root/.ssh/id_ed25519.pub`)
		cl.Close()
		parts := strings.Split(out, "---\n")
		if len(parts) != 4 {
			t.Fatalf("%s: unexpected output %q", h.Name, out)
		}
		if want := "700 root /root/.ssh\n600 root /root/.ssh/authorized_keys\n"; parts[0] != want {
			t.Errorf("%s: modes\n%s want\n%s", h.Name, parts[0], want)
		}
		files[h.Name] = [2]string{parts[1], parts[2]}
		nodeKeys[h.Name] = keyField(strings.TrimSpace(parts[3]))
	}
	for _, h := range hosts {
		ak, kh := files[h.Name][0], files[h.Name][1]
		seen := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(ak), "\n") {
			if seen[l] || seen[keyField(l)] {
				t.Errorf("%s: duplicate line in authorized_keys: %s", h.Name, l)
			}
			seen[l], seen[keyField(l)] = true, true
		}
		for _, p := range wantPubs {
			if k := keyField(strings.TrimSpace(readFile(t, p))); !seen[k] {
				t.Errorf("%s: authorized_keys lacks %s", h.Name, p)
			}
		}
		for _, p := range unwantedPubs {
			if k := keyField(strings.TrimSpace(readFile(t, p))); seen[k] {
				t.Errorf("%s: authorized_keys still has %s", h.Name, p)
			}
		}
		for _, o := range hosts {
			if o.Name != h.Name && !seen[nodeKeys[o.Name]] {
				t.Errorf("%s: authorized_keys lacks %s's own key", h.Name, o.Name)
			}
		}
		if seen[nodeKeys[h.Name]] {
			t.Errorf("%s: authorized_keys has the node's own key", h.Name)
		}
		// known_hosts: x/crypto's reader finds every node under address and name.
		file := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(file, []byte(kh), 0o600); err != nil {
			t.Fatal(err)
		}
		check, err := knownhosts.New(file)
		if err != nil {
			t.Fatalf("%s: known_hosts: %v", h.Name, err)
		}
		lines := strings.Split(strings.TrimSpace(kh), "\n")
		if dups := len(lines) - len(uniq(lines)); dups > 0 {
			t.Errorf("%s: %d duplicate lines in known_hosts", h.Name, dups)
		}
		for _, o := range hosts {
			hk := labHostKey(t, o)
			for _, name := range []string{o.Address, o.Name} {
				if err := check(net.JoinHostPort(name, strconv.Itoa(o.Port)), &net.TCPAddr{IP: net.IPv4zero}, hk); err != nil {
					t.Errorf("%s: known_hosts does not list %s as %s: %v", h.Name, o.Name, name, err)
				}
			}
		}
	}
}

// dialWith logs in to h as its user with only the given key, checking the host key
// against the lab's known_hosts.
func dialWith(h playbooks.Host, key string) (*ssh.Client, error) {
	data, err := os.ReadFile(key)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, err
	}
	check, err := knownhosts.New(h.KnownHostsFile)
	if err != nil {
		return nil, err
	}
	return ssh.Dial("tcp", net.JoinHostPort(h.Address, strconv.Itoa(h.Port)), &ssh.ClientConfig{
		User:              h.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   check,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           10 * time.Second,
	})
}

func runOn(t *testing.T, cl *ssh.Client, cmd string) string {
	t.Helper()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	if err := s.Run(cmd); err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, errb.String())
	}
	return out.String()
}

// labHostKey is the host key the lab's known_hosts has for h.
func labHostKey(t *testing.T, h playbooks.Host) ssh.PublicKey {
	t.Helper()
	rest := []byte(readFile(t, h.KnownHostsFile))
	for len(rest) > 0 {
		_, hosts, key, _, r, err := ssh.ParseKnownHosts(rest)
		if err != nil {
			break
		}
		rest = r
		for _, n := range hosts {
			if n == h.Address || n == fmt.Sprintf("[%s]:%d", h.Address, h.Port) {
				return key
			}
		}
	}
	t.Fatalf("no key for %s in %s", h.Address, h.KnownHostsFile)
	return nil
}

func fingerprintOf(t *testing.T, pubFile string) string {
	t.Helper()
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(readFile(t, pubFile)))
	if err != nil {
		t.Fatalf("%s: %v", pubFile, err)
	}
	return ssh.FingerprintSHA256(k)
}

// keyField is "TYPE BASE64" of an authorized_keys line (without options or comment).
func keyField(line string) string {
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return line
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func uniq(lines []string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lines {
		m[l] = true
	}
	return m
}
