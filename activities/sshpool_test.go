package activities

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterflow/clusterflow/internal/sshtest"
	"github.com/clusterflow/clusterflow/playbooks"
)

// runTrue runs `true` on h through a fresh SSH activity on pool.
func runTrue(pool *Pool, h playbooks.Host) error {
	_, err := NewSSH(pool).RunRemoteCommand(context.Background(), CommandRequest{Host: h, Command: []string{"true"}})
	return err
}

func TestHostKeyMismatchIsRefused(t *testing.T) {
	s := sshtest.New(t, 1)
	if err := s.RotateHostKey(); err != nil {
		t.Fatal(err)
	}
	for _, policy := range []string{playbooks.HostKeyStrict, playbooks.HostKeyTOFU} {
		t.Run(policy, func(t *testing.T) {
			h := s.Host(0)
			h.HostKeyPolicy = policy
			before, _ := os.ReadFile(h.KnownHostsFile)
			err := runTrue(testPool(t, PoolOptions{}, nil), h)
			appErr := requireAppErr(t, err, ErrHostKeyMismatch, false)
			msg := appErr.Message()
			for _, want := range []string{
				"host host0 (" + s.Hosts[0].String() + ")",
				"host key mismatch",
				"ssh-ed25519 " + ssh.FingerprintSHA256(s.HostKeys()[0]),
				h.KnownHostsFile + ":1 has a different key",
				"remove that line",
				"attack",
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q:\n%s", want, msg)
				}
			}
			if after, _ := os.ReadFile(h.KnownHostsFile); string(after) != string(before) {
				t.Errorf("known_hosts changed on mismatch:\n%s", after)
			}
		})
	}
}

func TestHostKeyUnknownUnderStrict(t *testing.T) {
	s := sshtest.New(t, 2)
	// A known_hosts that knows only the other address, and one that does not exist.
	other := filepath.Join(t.TempDir(), "known_hosts")
	lines, _ := os.ReadFile(s.KnownHosts)
	if err := os.WriteFile(other, []byte(strings.SplitAfter(string(lines), "\n")[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope", "known_hosts")
	for _, file := range []string{other, missing} {
		h := s.Host(0)
		h.KnownHostsFile = file
		err := runTrue(testPool(t, PoolOptions{}, nil), h)
		msg := requireAppErr(t, err, ErrHostKeyUnknown, false).Message()
		want := "[127.0.0.2]:" + itoa(s.Hosts[0].Port) + " is not in " + file +
			"; add it (ssh-keyscan -p " + itoa(s.Hosts[0].Port) + " 127.0.0.2 >> " + file
		if !strings.Contains(msg, want) || !strings.Contains(msg, "spec.hostKeyPolicy: tofu") {
			t.Errorf("message:\n%s\nwant it to contain:\n%s", msg, want)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Error("strict policy created a known_hosts file")
		}
	}
}

func TestHostKeyTOFUPinsThenEnforces(t *testing.T) {
	s := sshtest.New(t, 2)
	dir := filepath.Join(t.TempDir(), "state") // does not exist yet
	file := filepath.Join(dir, "known_hosts")
	h0, h1 := s.Host(0), s.Host(1)
	for _, h := range []*playbooks.Host{&h0, &h1} {
		h.KnownHostsFile = file
		h.HostKeyPolicy = playbooks.HostKeyTOFU
	}
	var logBuf syncBuffer
	pool := testPool(t, PoolOptions{}, &logBuf)
	// Both hosts at once: the appends are serialised, each host pinned once.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, h := range []playbooks.Host{h0, h1} {
		wg.Go(func() { errs[i] = runTrue(pool, h) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("known_hosts: %v, mode %v", err, st.Mode().Perm())
	}
	if dst, _ := os.Stat(dir); dst.Mode().Perm() != 0o700 {
		t.Errorf("known_hosts dir mode %v, want 0700", dst.Mode().Perm())
	}
	data, _ := os.ReadFile(file)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one line per host, got:\n%s", data)
	}
	for i, e := range s.Hosts {
		if !strings.Contains(string(data), knownhosts.Normalize(e.String())+" ") {
			t.Errorf("host %d (%s) not pinned:\n%s", i, e, data)
		}
	}
	if !strings.Contains(logBuf.String(), "pinned new host key") || !strings.Contains(logBuf.String(), "SHA256:") {
		t.Errorf("pin not logged with its fingerprint:\n%s", logBuf.String())
	}

	// Pinned: a new pool (new dial) connects without adding lines.
	if err := runTrue(testPool(t, PoolOptions{}, nil), h0); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(file); string(again) != string(data) {
		t.Fatalf("known_hosts changed on a second connect:\n%s", again)
	}

	// Enforced: a new host key is a mismatch, even under tofu.
	if err := s.RotateHostKey(); err != nil {
		t.Fatal(err)
	}
	err = runTrue(testPool(t, PoolOptions{}, nil), h0)
	requireAppErr(t, err, ErrHostKeyMismatch, false)
}

// TestHostKeyAlgorithmsFollowKnownHosts: the server has ed25519 and ECDSA host keys,
// and x/crypto prefers ECDSA. A known_hosts with only one of them must still work.
func TestHostKeyAlgorithmsFollowKnownHosts(t *testing.T) {
	s := sshtest.New(t, 1)
	keys := s.HostKeys()
	for _, key := range keys {
		t.Run(key.Type(), func(t *testing.T) {
			h := s.Host(0)
			h.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
			line := knownhosts.Line([]string{knownhosts.Normalize(s.Hosts[0].String())}, key)
			if err := os.WriteFile(h.KnownHostsFile, []byte("# comment\n"+line+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := runTrue(testPool(t, PoolOptions{}, nil), h); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	s := sshtest.New(t, 1)
	dir := t.TempDir()

	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(otherKey, "")
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrong, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	block, err = ssh.MarshalPrivateKeyWithPassphrase(otherKey, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	locked := filepath.Join(dir, "locked")
	if err := os.WriteFile(locked, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("wrong key", func(t *testing.T) {
		h := s.Host(0)
		h.IdentityFile = wrong
		msg := requireAppErr(t, runTrue(testPool(t, PoolOptions{}, nil), h), ErrAuthFailed, false).Message()
		if !strings.Contains(msg, "identity file "+wrong) || !strings.Contains(msg, "authorized_keys") {
			t.Errorf("message: %s", msg)
		}
	})
	t.Run("passphrase", func(t *testing.T) {
		h := s.Host(0)
		h.IdentityFile = locked
		msg := requireAppErr(t, runTrue(testPool(t, PoolOptions{}, nil), h), ErrAuthFailed, false).Message()
		if !strings.Contains(msg, "passphrase") || !strings.Contains(msg, "ssh-add "+locked) || !strings.Contains(msg, "useAgent: true") {
			t.Errorf("message: %s", msg)
		}
	})
	t.Run("missing identity file", func(t *testing.T) {
		h := s.Host(0)
		h.IdentityFile = filepath.Join(dir, "nope")
		requireAppErr(t, runTrue(testPool(t, PoolOptions{}, nil), h), ErrInvalidInput, false)
	})
	t.Run("agent without SSH_AUTH_SOCK", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", "")
		h := s.Host(0)
		h.IdentityFile = ""
		h.UseAgent = true
		msg := requireAppErr(t, runTrue(testPool(t, PoolOptions{}, nil), h), ErrAuthFailed, false).Message()
		if !strings.Contains(msg, "SSH_AUTH_SOCK") {
			t.Errorf("message: %s", msg)
		}
	})
}

func TestClosedPortIsRetryableUnreachable(t *testing.T) {
	s := sshtest.New(t, 1)
	h := closedPortHost(t, s)
	msg := requireAppErr(t, runTrue(testPool(t, PoolOptions{ConnectTimeout: 5 * time.Second}, nil), h), ErrHostUnreachable, true).Message()
	if !strings.Contains(msg, "host closed (127.0.0.1:") || !strings.Contains(msg, "connection refused") {
		t.Errorf("message: %s", msg)
	}
}

func TestJumpHost(t *testing.T) {
	s := sshtest.New(t, 2)
	pool := testPool(t, PoolOptions{}, nil)
	jump, target := s.Host(0), s.Host(1)
	target.Jump = jump.Name
	target.Via = &jump

	res, err := NewSSH(pool).RunRemoteCommand(context.Background(), CommandRequest{
		Host:    target,
		Command: []string{"sh", "-c", `echo "$SSH_CONNECTION"`},
	})
	if err != nil {
		t.Fatal(err)
	}
	// SSH_CONNECTION is "client port server port": the server side is the target.
	if f := strings.Fields(res.Stdout); len(f) != 4 || f[2] != "127.0.0.3" || f[3] != itoa(s.Hosts[1].Port) {
		t.Fatalf("SSH_CONNECTION = %q, want the target 127.0.0.3", res.Stdout)
	}
	// This process has a TCP connection to the jump host only.
	if n := tcpConnsTo(t, s.Hosts[0].String()); n != 1 {
		t.Errorf("%d TCP connections to the jump host, want 1", n)
	}
	if n := tcpConnsTo(t, s.Hosts[1].String()); n != 0 {
		t.Errorf("%d direct TCP connections to the target, want 0 (it must go through the jump host)", n)
	}

	// A target the jump host cannot reach is a retryable HostUnreachable.
	closed := closedPortHost(t, s)
	closed.Via = &jump
	requireAppErr(t, runTrue(pool, closed), ErrHostUnreachable, true)
}

func TestPoolReusesOneConnection(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := testPool(t, PoolOptions{}, nil)
	h := s.Host(0)
	if err := runTrue(pool, h); err != nil {
		t.Fatal(err)
	}
	if err := runTrue(pool, h); err != nil {
		t.Fatal(err)
	}
	// Concurrent first use of another pool shares one dial too.
	pool2 := testPool(t, PoolOptions{}, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() { errs <- runTrue(pool2, h) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := tcpConnsTo(t, s.Hosts[0].String()); n != 2 {
		t.Errorf("%d TCP connections, want 2 (one per pool)", n)
	}
	if n := strings.Count(s.Log(), "Accepted publickey"); n != 2 {
		t.Errorf("sshd accepted %d logins, want 2:\n%s", n, s.Log())
	}
}

func TestPoolReconnectsAfterServerRestart(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := testPool(t, PoolOptions{}, nil)
	h := s.Host(0)
	if err := runTrue(pool, h); err != nil {
		t.Fatal(err)
	}
	first, _ := pool.Client(context.Background(), h)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := runTrue(pool, h); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	second, _ := pool.Client(context.Background(), h)
	if first == second {
		t.Fatal("the pool kept the dead client")
	}
}

// TestPoolKeepalive: OpenSSH answers keepalive@openssh.com with a failure reply, which
// must not count as dead; a connection that stops answering is evicted.
func TestPoolKeepalive(t *testing.T) {
	s := sshtest.New(t, 1)
	h := s.Host(0)
	pool := testPool(t, PoolOptions{KeepAliveInterval: 20 * time.Millisecond, ConnectTimeout: 2 * time.Second}, nil)
	c1, err := pool.Client(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	// Let several keepalives go by: the same client stays pooled.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		c, err := pool.Client(context.Background(), h)
		if err != nil || c != c1 {
			t.Fatalf("client replaced while healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Freeze the server: the TCP connection stays up but nothing answers, like a
	// host that vanished from the network.
	resume := s.Pause()
	defer resume()
	waitFor(t, "the unresponsive connection to be evicted", 10*time.Second, func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return len(pool.conns) == 0
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
