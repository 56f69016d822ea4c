package activities

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/clusterflow/clusterflow/internal/sshtest"
	"github.com/clusterflow/clusterflow/playbooks"
)

// The tests in this package run against a real OpenSSH server on loopback addresses
// (internal/sshtest). They are skipped without /usr/sbin/sshd unless
// CLUSTERFLOW_REQUIRE_SSHD is set.

// testPool returns a pool closed at the end of the test. Its log goes to logBuf
// when given, else nowhere.
func testPool(t *testing.T, opts PoolOptions, logBuf *syncBuffer) *Pool {
	t.Helper()
	var w io.Writer = io.Discard
	if logBuf != nil {
		w = logBuf
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p := NewPool(opts)
	t.Cleanup(p.Close)
	return p
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// requireAppErr checks that err is an application error of the given type and
// retryability, and returns it.
func requireAppErr(t *testing.T, err error, typ string, retryable bool) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("want a %s application error, got %T: %v", typ, err, err)
	}
	if appErr.Type() != typ {
		t.Fatalf("error type %q, want %q: %v", appErr.Type(), typ, err)
	}
	if appErr.NonRetryable() == retryable {
		t.Fatalf("%s: retryable=%v, want %v", typ, !appErr.NonRetryable(), retryable)
	}
	return appErr
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// procsWith lists processes (other than this one) whose command line contains
// marker, like pgrep -f, read from /proc so that procps is not needed.
func procsWith(marker string) []string {
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

// sleepRunning reports whether the sleep started with sleepMarker's marker runs.
func sleepRunning(marker string) bool {
	for _, p := range procsWith(marker) {
		if _, cmd, _ := strings.Cut(p, ": "); cmd == "sleep "+marker {
			return true
		}
	}
	return false
}

// sleepMarker returns a sleep duration argument that is unique on this machine, so
// that the processes of one test can be found by their command line.
func sleepMarker() string {
	return fmt.Sprintf("1000.%09d", rand.IntN(1e9))
}

// tcpConnsTo counts this process's established TCP connections to addr ("ip:port").
func tcpConnsTo(t *testing.T, addr string) int {
	t.Helper()
	host, portStr, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host).To4()
	port, _ := strconv.Atoi(portStr)
	// /proc/net/tcp writes IPv4 addresses as a little-endian hex word.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], port)

	inodes := map[string]bool{}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	data, err := os.ReadFile("/proc/self/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[2] == want && f[3] == "01" && inodes[f[9]] {
			n++
		}
	}
	return n
}

// activityEnv returns a test activity environment whose activity contexts end when
// the returned cancel is called.
func activityEnv(t *testing.T, acts ...any) (*testsuite.TestActivityEnvironment, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
	for _, a := range acts {
		env.RegisterActivity(a)
	}
	return env, cancel
}

// closedPortHost is a host on 127.0.0.1 whose port had a listener a moment ago and
// has none now: connecting is refused.
func closedPortHost(t *testing.T, s *sshtest.Server) playbooks.Host {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	h := s.Host(0)
	h.Name = "closed"
	h.Address = "127.0.0.1"
	h.Port = port
	return h
}
