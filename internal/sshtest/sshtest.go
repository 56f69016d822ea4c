// Package sshtest runs a real OpenSSH server on loopback addresses, for tests and for
// development commands that need a few SSH "hosts" on one machine.
//
// One sshd serves several hosts: it listens on one port on 127.0.0.2, 127.0.0.3, ...
// (one address per host, at most MaxHosts), so host-specific behaviour such as
// known_hosts entries and jump-host paths can be exercised without containers. The
// server has its own configuration, host keys, client key and known_hosts file in a
// directory of its own; nothing of the system's sshd setup is used or changed, except
// that /run/sshd (sshd's privilege separation directory) is created if missing.
//
// Logins are as root with the generated client key, so the process must run as root
// (as it does in the clusterflow test environment). Only loopback addresses are used.
package sshtest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// SSHD is the sshd binary used. sshd re-executes itself, so the path is absolute.
const SSHD = "/usr/sbin/sshd"

// MaxHosts is the most addresses one Server listens on.
const MaxHosts = 16

// RequireEnv is the environment variable that turns New's skip (no sshd, not root)
// into a failure. CI sets it, so that a broken environment cannot pass silently.
const RequireEnv = "CLUSTERFLOW_REQUIRE_SSHD"

// Endpoint is one host served by the Server.
type Endpoint struct {
	Addr string // 127.0.0.2, 127.0.0.3, ...
	Port int    // the same for every endpoint of a Server
}

// String is "addr:port".
func (e Endpoint) String() string { return net.JoinHostPort(e.Addr, strconv.Itoa(e.Port)) }

// Server is a running sshd. Its exported fields do not change after Start.
type Server struct {
	Hosts      []Endpoint
	Dir        string // private directory: config, keys, pid file, log
	ClientKey  string // path of the client's ed25519 private key (0600), authorized for root
	KnownHosts string // known_hosts with every endpoint's ed25519 host key ([addr]:port form)
	LogFile    string // sshd's log (-E)

	conf string

	mu       sync.Mutex
	proc     *os.Process     // nil when stopped
	exited   chan error      // receives sshd's exit once
	hostKeys []crypto.Signer // ed25519 first, then ECDSA P-256
}

// Start generates keys and a configuration in dir and starts sshd for n hosts on a
// free port. Stop it when done.
func Start(dir string, n int) (*Server, error) {
	if n < 1 || n > MaxHosts {
		return nil, fmt.Errorf("sshtest: %d hosts asked for; one server serves 1 to %d", n, MaxHosts)
	}
	if _, err := os.Stat(SSHD); err != nil {
		return nil, fmt.Errorf("sshtest: %w (install openssh-server)", err)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// sshd's privilege separation directory; missing in containers that never
	// started the system sshd.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	s := &Server{
		Dir:        dir,
		ClientKey:  filepath.Join(dir, "client_ed25519"),
		KnownHosts: filepath.Join(dir, "known_hosts"),
		LogFile:    filepath.Join(dir, "sshd.log"),
		conf:       filepath.Join(dir, "sshd_config"),
	}
	if err := s.writeClientKey(); err != nil {
		return nil, err
	}
	if err := s.newHostKeys(); err != nil {
		return nil, err
	}

	// The port is picked free on the first address, then sshd binds it on all of
	// them; another process can take it in between, so try a few ports.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Hosts = s.Hosts[:0]
		for i := range n {
			s.Hosts = append(s.Hosts, Endpoint{Addr: fmt.Sprintf("127.0.0.%d", 2+i), Port: port})
		}
		if lastErr = s.start(); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return nil, lastErr
	}
	if err := s.writeKnownHosts(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// New starts a server for a test and stops it when the test ends. Without sshd, or
// when not running as root, the test is skipped, unless CLUSTERFLOW_REQUIRE_SSHD is
// set, in which case it fails.
func New(t testing.TB, n int) *Server {
	t.Helper()
	missing := ""
	if _, err := os.Stat(SSHD); err != nil {
		missing = fmt.Sprintf("%s is missing (apt-get install openssh-server)", SSHD)
	} else if os.Geteuid() != 0 {
		missing = "the tests log in as root and so must run as root"
	}
	if missing != "" {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("sshtest: %s, and %s is set", missing, RequireEnv)
		}
		t.Skipf("sshtest: %s; skipping (set %s=1 to fail instead)", missing, RequireEnv)
	}
	s, err := Start(t.TempDir(), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Host returns a connection spec for endpoint i: user root, the client key, the
// server's known_hosts, strict host key checking. Its name is "host<i>".
func (s *Server) Host(i int) remote.Host {
	e := s.Hosts[i]
	return remote.Host{
		Name:           fmt.Sprintf("host%d", i),
		Address:        e.Addr,
		Port:           e.Port,
		User:           "root",
		IdentityFile:   s.ClientKey,
		KnownHostsFile: s.KnownHosts,
		HostKeyPolicy:  remote.HostKeyStrict,
		Groups:         []string{"sshtest"},
	}
}

// HostKeys returns the server's current public host keys: ed25519, then ECDSA.
// KnownHosts holds only the ed25519 one, written when the server started.
func (s *Server) HostKeys() []ssh.PublicKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []ssh.PublicKey
	for _, k := range s.hostKeys {
		pub, err := ssh.NewPublicKey(k.Public())
		if err != nil {
			panic(err)
		}
		keys = append(keys, pub)
	}
	return keys
}

// Log returns sshd's log so far, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.LogFile)
	return string(b)
}

// Restart stops sshd, dropping every connection, and starts it again on the same
// addresses with the same keys.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

// RotateHostKey gives the server new host keys, as a reinstalled host would have,
// and restarts it. KnownHosts keeps the old keys, so clients see a mismatch.
func (s *Server) RotateHostKey() error {
	s.Stop()
	if err := s.newHostKeys(); err != nil {
		return err
	}
	return s.start()
}

// Stop kills sshd and every process it started (connection handlers and the
// sessions' commands) and waits for them. It may be called more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.proc, s.exited = nil, nil
	s.mu.Unlock()
	if proc == nil {
		return
	}
	pid := proc.Pid
	// Per-connection sshd processes call setsid(), so a process group kill misses
	// them, and they outlive a killed listener. Freeze the whole tree first (no new
	// connections, no new forks), then kill everything: killing from the top down
	// would orphan grandchildren to init before they could be found.
	frozen := freezeTree(pid)
	for d := range frozen {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
	_ = proc.Kill()
	<-exited
	// The killed descendants are not our children; wait until the kernel has
	// torn them down (a zombie counts as gone: its sockets are closed).
	deadline := time.Now().Add(10 * time.Second)
	for d := range frozen {
		for alive(d) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Pause freezes sshd and every process it started (SIGSTOP): connections stay open
// but nothing answers, like a host that dropped off the network. The returned
// function resumes them.
func (s *Server) Pause() (resume func()) {
	s.mu.Lock()
	proc := s.proc
	s.mu.Unlock()
	if proc == nil {
		return func() {}
	}
	frozen := freezeTree(proc.Pid)
	frozen[proc.Pid] = true
	return func() {
		for p := range frozen {
			_ = syscall.Kill(p, syscall.SIGCONT)
		}
	}
}

// freezeTree stops root and its descendants, scanning until no new process shows
// up, and returns the descendants it stopped.
func freezeTree(root int) map[int]bool {
	_ = syscall.Kill(root, syscall.SIGSTOP)
	frozen := map[int]bool{}
	for range 50 {
		grew := false
		for _, d := range descendants(root) {
			if !frozen[d] {
				frozen[d] = true
				grew = true
				_ = syscall.Kill(d, syscall.SIGSTOP)
			}
		}
		if !grew {
			break
		}
	}
	return frozen
}

// start runs sshd with the current configuration and waits until it listens on
// every endpoint.
func (s *Server) start() error {
	if err := os.WriteFile(s.conf, []byte(s.config()), 0o600); err != nil {
		return err
	}
	logStart := int64(0)
	if st, err := os.Stat(s.LogFile); err == nil {
		logStart = st.Size()
	}
	cmd := exec.Command(SSHD, "-D", "-f", s.conf, "-E", s.LogFile)
	cmd.Dir = s.Dir
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true, // a ^C to the test run reaches the test, which stops sshd
		// sshd dies with the process that started it, so a crashed test leaves no
		// server behind.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("sshtest: starting %s: %w", SSHD, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	want := make(map[string]bool, len(s.Hosts))
	for _, e := range s.Hosts {
		want[fmt.Sprintf("Server listening on %s port %d.", e.Addr, e.Port)] = true
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("sshtest: sshd exited (%v); log:\n%s", err, s.logSince(logStart))
		case <-deadline:
			s.kill(cmd, exited)
			return fmt.Errorf("sshtest: sshd did not listen on every address within 15s; log:\n%s", s.logSince(logStart))
		case <-time.After(20 * time.Millisecond):
		}
		log := s.logSince(logStart)
		if strings.Contains(log, "Bind to port") || strings.Contains(log, "Cannot bind") {
			s.kill(cmd, exited)
			return fmt.Errorf("sshtest: sshd could not bind every address; log:\n%s", log)
		}
		all := true
		for line := range want {
			if !strings.Contains(log, line) {
				all = false
				break
			}
		}
		if all {
			break
		}
	}
	s.mu.Lock()
	s.proc, s.exited = cmd.Process, exited
	s.mu.Unlock()
	return nil
}

// kill ends an sshd that failed to come up (it has no connections yet).
func (s *Server) kill(cmd *exec.Cmd, exited chan error) {
	_ = cmd.Process.Kill()
	<-exited
}

func (s *Server) logSince(off int64) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil || int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

// config is the sshd_config: key-only root login, the server's own files, SFTP for
// uploads and TCP forwarding for jump-host tests.
func (s *Server) config() string {
	var b strings.Builder
	for _, e := range s.Hosts {
		fmt.Fprintf(&b, "ListenAddress %s\n", e)
	}
	for _, k := range hostKeyFiles {
		fmt.Fprintf(&b, "HostKey %s\n", filepath.Join(s.Dir, k))
	}
	fmt.Fprintf(&b, "PidFile %s\n", filepath.Join(s.Dir, "sshd.pid"))
	fmt.Fprintf(&b, "AuthorizedKeysFile %s\n", filepath.Join(s.Dir, "authorized_keys"))
	b.WriteString(`PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
AllowTcpForwarding yes
AllowAgentForwarding no
X11Forwarding no
PermitTTY no
PrintMotd no
PrintLastLog no
UseDNS no
MaxSessions 32
MaxStartups 64:30:128
LogLevel VERBOSE
`)
	return b.String()
}

var hostKeyFiles = []string{"ssh_host_ed25519_key", "ssh_host_ecdsa_key"}

// newHostKeys generates and writes fresh ed25519 and ECDSA host keys.
func (s *Server) newHostKeys() error {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keys := []crypto.Signer{edKey, ecKey}
	for i, k := range keys {
		if err := writePrivateKey(filepath.Join(s.Dir, hostKeyFiles[i]), k); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.hostKeys = keys
	s.mu.Unlock()
	return nil
}

// writeClientKey makes the client key pair and authorizes it.
func (s *Server) writeClientKey() error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := writePrivateKey(s.ClientKey, priv); err != nil {
		return err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return err
	}
	line := ssh.MarshalAuthorizedKey(sshPub)
	if err := os.WriteFile(s.ClientKey+".pub", line, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "authorized_keys"), line, 0o600)
}

// writeKnownHosts writes the ed25519 host key of every endpoint.
func (s *Server) writeKnownHosts() error {
	edPub := s.HostKeys()[0]
	var b strings.Builder
	for _, e := range s.Hosts {
		b.WriteString(knownhosts.Line([]string{knownhosts.Normalize(e.String())}, edPub))
		b.WriteByte('\n')
	}
	return os.WriteFile(s.KnownHosts, []byte(b.String()), 0o600)
}

func writePrivateKey(path string, key crypto.Signer) error {
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(block), 0o600)
}

// freePort returns a TCP port that is free on 127.0.0.2 right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		return 0, fmt.Errorf("sshtest: no free port on 127.0.0.2: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// descendants lists every process below root, read from /proc.
func descendants(root int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// procStat returns the state and parent of pid from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err == nil
}

func parentOf(pid int) (int, bool) {
	_, ppid, ok := procStat(pid)
	return ppid, ok
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// Eventually polls cond until it holds, and fails the test when it does not within
// timeout. what names the wait in the failure.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ProcsWith lists processes (other than this one) whose command line contains
// marker, like pgrep -f, read from /proc so that procps is not needed.
func ProcsWith(marker string) []string {
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 { // gone, or a zombie (empty cmdline)
			continue
		}
		cmd := strings.ReplaceAll(string(bytes.TrimRight(b, "\x00")), "\x00", " ")
		if strings.Contains(cmd, marker) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}

// SleepRunning reports whether the sleep started with SleepMarker's marker runs.
func SleepRunning(marker string) bool {
	for _, p := range ProcsWith(marker) {
		if _, cmd, _ := strings.Cut(p, ": "); cmd == "sleep "+marker {
			return true
		}
	}
	return false
}

// SleepMarker returns a sleep duration argument that is unique on this machine, so
// that the processes of one test can be found by their command line.
func SleepMarker() string {
	return fmt.Sprintf("1000.%09d", mrand.IntN(1e9))
}

// Pool returns a connection pool closed at the end of the test. Its log goes to
// logTo when given, else nowhere.
func Pool(t testing.TB, opts remote.PoolOptions, logTo io.Writer) *remote.Pool {
	t.Helper()
	if logTo == nil {
		logTo = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p := remote.NewPool(opts)
	t.Cleanup(p.Close)
	return p
}
