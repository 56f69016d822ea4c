package remote_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
)

// runTrue runs `true` on h through pool.
func runTrue(pool *remote.Pool, h remote.Host) error {
	_, err := pool.Run(context.Background(), h, remote.Cmd{Argv: []string{"true"}})
	return err
}

func TestHostKeyMismatchIsRefused(t *testing.T) {
	s := sshtest.New(t, 1)
	if err := s.RotateHostKey(); err != nil {
		t.Fatal(err)
	}
	for _, policy := range []string{remote.HostKeyStrict, remote.HostKeyTOFU} {
		t.Run(policy, func(t *testing.T) {
			h := s.Host(0)
			h.HostKeyPolicy = policy
			before, _ := os.ReadFile(h.KnownHostsFile)
			err := runTrue(sshtest.Pool(t, remote.PoolOptions{}, nil), h)
			appErr := requireKind(t, err, remote.HostKeyMismatch)
			msg := appErr.Msg
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
		err := runTrue(sshtest.Pool(t, remote.PoolOptions{}, nil), h)
		msg := requireKind(t, err, remote.HostKeyUnknown).Msg
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
	for _, h := range []*remote.Host{&h0, &h1} {
		h.KnownHostsFile = file
		h.HostKeyPolicy = remote.HostKeyTOFU
	}
	var logBuf syncBuffer
	pool := sshtest.Pool(t, remote.PoolOptions{}, &logBuf)
	// Both hosts at once: the appends are serialised, each host pinned once.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, h := range []remote.Host{h0, h1} {
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
	if err := runTrue(sshtest.Pool(t, remote.PoolOptions{}, nil), h0); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(file); string(again) != string(data) {
		t.Fatalf("known_hosts changed on a second connect:\n%s", again)
	}

	// Enforced: a new host key is a mismatch, even under tofu.
	if err := s.RotateHostKey(); err != nil {
		t.Fatal(err)
	}
	err = runTrue(sshtest.Pool(t, remote.PoolOptions{}, nil), h0)
	requireKind(t, err, remote.HostKeyMismatch)
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
			if err := runTrue(sshtest.Pool(t, remote.PoolOptions{}, nil), h); err != nil {
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
		msg := requireKind(t, runTrue(sshtest.Pool(t, remote.PoolOptions{}, nil), h), remote.AuthFailed).Msg
		if !strings.Contains(msg, "identity file "+wrong) || !strings.Contains(msg, "authorized_keys") {
			t.Errorf("message: %s", msg)
		}
	})
	t.Run("passphrase", func(t *testing.T) {
		h := s.Host(0)
		h.IdentityFile = locked
		msg := requireKind(t, runTrue(sshtest.Pool(t, remote.PoolOptions{}, nil), h), remote.AuthFailed).Msg
		if !strings.Contains(msg, "passphrase") || !strings.Contains(msg, "ssh-add "+locked) || !strings.Contains(msg, "useAgent: true") {
			t.Errorf("message: %s", msg)
		}
	})
	t.Run("missing identity file", func(t *testing.T) {
		h := s.Host(0)
		h.IdentityFile = filepath.Join(dir, "nope")
		requireKind(t, runTrue(sshtest.Pool(t, remote.PoolOptions{}, nil), h), remote.Invalid)
	})
	t.Run("agent without SSH_AUTH_SOCK", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", "")
		h := s.Host(0)
		h.IdentityFile = ""
		h.UseAgent = true
		msg := requireKind(t, runTrue(sshtest.Pool(t, remote.PoolOptions{}, nil), h), remote.AuthFailed).Msg
		if !strings.Contains(msg, "SSH_AUTH_SOCK") {
			t.Errorf("message: %s", msg)
		}
	})
}

func TestClosedPortIsRetryableUnreachable(t *testing.T) {
	s := sshtest.New(t, 1)
	h := closedPortHost(t, s)
	msg := requireKind(t, runTrue(sshtest.Pool(t, remote.PoolOptions{ConnectTimeout: 5 * time.Second}, nil), h), remote.Unreachable).Msg
	if !strings.Contains(msg, "host closed (127.0.0.1:") || !strings.Contains(msg, "connection refused") {
		t.Errorf("message: %s", msg)
	}
}

func TestJumpHost(t *testing.T) {
	s := sshtest.New(t, 2)
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	jump, target := s.Host(0), s.Host(1)
	target.Jump = jump.Name
	target.Via = &jump

	res, err := pool.Run(context.Background(), target, remote.Cmd{Argv: []string{"sh", "-c", `echo "$SSH_CONNECTION"`}})
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
	requireKind(t, runTrue(pool, closed), remote.Unreachable)
}

func TestPoolReusesOneConnection(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	h := s.Host(0)
	if err := runTrue(pool, h); err != nil {
		t.Fatal(err)
	}
	if err := runTrue(pool, h); err != nil {
		t.Fatal(err)
	}
	// Concurrent first use of another pool shares one dial too.
	pool2 := sshtest.Pool(t, remote.PoolOptions{}, nil)
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
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	h := s.Host(0)
	if err := runTrue(pool, h); err != nil {
		t.Fatal(err)
	}
	first, _ := remote.ClientOf(pool, context.Background(), h)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := runTrue(pool, h); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	second, _ := remote.ClientOf(pool, context.Background(), h)
	if first == second {
		t.Fatal("the pool kept the dead client")
	}
}

// TestPoolKeepalive: OpenSSH answers keepalive@openssh.com with a failure reply, which
// must not count as dead; a connection that stops answering is evicted.
func TestPoolKeepalive(t *testing.T) {
	s := sshtest.New(t, 1)
	h := s.Host(0)
	pool := sshtest.Pool(t, remote.PoolOptions{KeepAliveInterval: 20 * time.Millisecond, ConnectTimeout: 2 * time.Second}, nil)
	c1, err := remote.ClientOf(pool, context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	// Let several keepalives go by: the same client stays pooled.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		c, err := remote.ClientOf(pool, context.Background(), h)
		if err != nil || c != c1 {
			t.Fatalf("client replaced while healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Freeze the server: the TCP connection stays up but nothing answers, like a
	// host that vanished from the network.
	resume := s.Pause()
	defer resume()
	sshtest.Eventually(t, "the unresponsive connection to be evicted", 10*time.Second, func() bool {
		return remote.ConnCount(pool) == 0
	})
}

// TestDialIsOutsideThePool: a connection of its own, closed by its owner, that runs
// commands like the pool's.
func TestDialIsOutsideThePool(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	h := s.Host(0)
	if err := runTrue(pool, h); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Dial(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if n := tcpConnsTo(t, s.Hosts[0].String()); n != 2 {
		t.Errorf("%d TCP connections, want 2 (the pool's and the fresh one)", n)
	}
	res, err := conn.Run(context.Background(), remote.Cmd{Argv: []string{"sh", "-c", "echo out; exit 3"}})
	if err != nil || res.ExitCode != 3 || res.Stdout != "out\n" {
		t.Fatalf("run: %+v %v", res, err)
	}
	conn.Close()
	sshtest.Eventually(t, "the fresh connection to close", 5*time.Second, func() bool { return tcpConnsTo(t, s.Hosts[0].String()) == 1 })

	// A refused key is refused on a fresh dial too.
	bad := h
	bad.IdentityFile = filepath.Join(t.TempDir(), "missing")
	_, err = pool.Dial(context.Background(), bad)
	requireKind(t, err, remote.Invalid)
}

// TestConnectionDropKillsRemoteProcess closes the TCP connection under
// a running command, as a killed worker would, and checks that the remote processes
// end and the error is a retryable HostUnreachable.
func TestConnectionDropKillsRemoteProcess(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	marker := sshtest.SleepMarker()
	errc := make(chan error, 1)
	go func() {
		_, err := pool.Run(context.Background(), s.Host(0), remote.Cmd{Argv: []string{"sh", "-c", "sleep " + marker + "; echo never"}})
		errc <- err
	}()
	sshtest.Eventually(t, "the remote command to start", 10*time.Second, func() bool { return sshtest.SleepRunning(marker) })

	client, err := remote.ClientOf(pool, context.Background(), s.Host(0))
	if err != nil {
		t.Fatal(err)
	}
	// Closing the ssh.Client closes the socket with no SSH goodbye: to sshd this is
	// the same as the worker process being killed.
	client.Close()

	select {
	case err := <-errc:
		requireKind(t, err, remote.Unreachable)
	case <-time.After(15 * time.Second):
		t.Fatal("activity did not return after the connection dropped")
	}
	sshtest.Eventually(t, "the remote processes to end", 10*time.Second, func() bool { return len(sshtest.ProcsWith(marker)) == 0 })

	// The dead connection was evicted: the next call dials again and works.
	res, err := pool.Run(context.Background(), s.Host(0), remote.Cmd{Argv: []string{"true"}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("after reconnect: %+v, %v", res, err)
	}
}

// TestRunProgress: a running command reports the last line of its output.
func TestRunProgress(t *testing.T) {
	s := sshtest.New(t, 1)
	pool := sshtest.Pool(t, remote.PoolOptions{}, nil)
	dir := t.TempDir()
	stop := filepath.Join(dir, "stop")
	script := []string{"sh", "-c", `echo first; echo progress-line; while [ ! -e "$0" ]; do sleep 0.05; done`, stop}

	lines := make(chan string, 1000)
	done := make(chan error, 1)
	go func() {
		_, err := pool.Run(context.Background(), s.Host(0), remote.Cmd{
			Argv:          script,
			ProgressEvery: 20 * time.Millisecond,
			Progress: func(_ time.Duration, last string) {
				select {
				case lines <- last:
				default:
				}
			},
		})
		done <- err
	}()
	deadline := time.After(15 * time.Second)
wait:
	for {
		select {
		case l := <-lines:
			if l == "progress-line" {
				break wait
			}
		case <-deadline:
			t.Fatal("no heartbeat with the last output line")
		}
	}
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

}
