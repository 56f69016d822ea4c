package sshtest_test

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterflow/clusterflow/internal/sshtest"
)

// sshRun runs a command with the system's OpenSSH client against endpoint e, checking
// the host key against the server's known_hosts.
func sshRun(t *testing.T, s *sshtest.Server, i int, cmd string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client (apt-get install openssh-client)")
	}
	e := s.Hosts[i]
	out, err := exec.Command("ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+s.KnownHosts,
		"-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5", "-i", s.ClientKey,
		"-p", strconv.Itoa(e.Port), "root@"+e.Addr, cmd).CombinedOutput()
	return string(out), err
}

func TestServerServesEveryAddress(t *testing.T) {
	s := sshtest.New(t, 3)
	if len(s.Hosts) != 3 {
		t.Fatalf("hosts = %v", s.Hosts)
	}
	for i, e := range s.Hosts {
		if want := "127.0.0." + strconv.Itoa(2+i); e.Addr != want {
			t.Errorf("host %d addr %s, want %s", i, e.Addr, want)
		}
		out, err := sshRun(t, s, i, "echo hello")
		if err != nil || strings.TrimSpace(out) != "hello" {
			t.Fatalf("ssh to %s: %v: %s\nsshd log:\n%s", e, err, out, s.Log())
		}
	}
	for _, f := range []string{s.ClientKey, s.KnownHosts} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, st.Mode().Perm())
		}
	}
	h := s.Host(1)
	if h.Address != "127.0.0.3" || h.Port != s.Hosts[1].Port || h.User != "root" || h.IdentityFile != s.ClientKey || h.KnownHostsFile != s.KnownHosts {
		t.Errorf("Host(1) = %+v", h)
	}
}

func TestRotateHostKeyAndStop(t *testing.T) {
	s := sshtest.New(t, 1)
	old := s.HostKeys()[0]
	if err := s.RotateHostKey(); err != nil {
		t.Fatal(err)
	}
	if string(s.HostKeys()[0].Marshal()) == string(old.Marshal()) {
		t.Fatal("host key did not change")
	}
	// The known_hosts file still has the old key: OpenSSH must refuse.
	if out, err := sshRun(t, s, 0, "true"); err == nil || !strings.Contains(out, "HOST IDENTIFICATION HAS CHANGED") {
		t.Fatalf("want a host key change error, got %v: %s", err, out)
	}
	// And x/crypto's knownhosts agrees.
	cb, err := knownhosts.New(s.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	if err := cb(s.Hosts[0].String(), &net.TCPAddr{}, s.HostKeys()[0]); err == nil {
		t.Fatal("new key accepted by known_hosts")
	}

	s.Stop()
	s.Stop() // idempotent
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Hosts[0].String(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("sshd still accepts connections after Stop")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStopEndsSessions: Stop kills the per-connection sshd processes (which call
// setsid and so escape a process group kill) and the commands they run.
func TestStopEndsSessions(t *testing.T) {
	s := sshtest.New(t, 1)
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client (apt-get install openssh-client)")
	}
	marker := "1000." + strconv.Itoa(os.Getpid()) + "7"
	e := s.Hosts[0]
	cmd := exec.Command("ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile="+s.KnownHosts, "-i", s.ClientKey,
		"-p", strconv.Itoa(e.Port), "root@"+e.Addr, "sleep "+marker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Read /proc rather than run ps: procps may not be installed. A zombie has an
	// empty cmdline, so it does not count.
	running := func() bool {
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && string(b) == "sleep\x00"+marker+"\x00" {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(20 * time.Second)
	for !running() {
		if time.Now().After(deadline) {
			t.Fatalf("remote sleep did not start; log:\n%s", s.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	if running() {
		t.Fatal("the session's command survived Stop")
	}
	_ = cmd.Wait() // the client sees the connection close
}

func TestStartRejectsTooManyHosts(t *testing.T) {
	if _, err := sshtest.Start(t.TempDir(), sshtest.MaxHosts+1); err == nil {
		t.Fatal("want an error")
	}
}
