package remote_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
)

// The tests in this package run against a real OpenSSH server on loopback addresses
// (internal/sshtest). They are skipped without /usr/sbin/sshd unless
// CLUSTERFLOW_REQUIRE_SSHD is set.

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

// closedPortHost is a host on 127.0.0.1 whose port had a listener a moment ago and
// has none now: connecting is refused.
func closedPortHost(t *testing.T, s *sshtest.Server) remote.Host {
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

// requireKind checks that err is an *remote.Error of kind k, and returns it.
func requireKind(t *testing.T, err error, k remote.Kind) *remote.Error {
	t.Helper()
	var re *remote.Error
	if !errors.As(err, &re) {
		t.Fatalf("want a %s error, got %T: %v", k, err, err)
	}
	if re.Kind != k {
		t.Fatalf("error kind %s, want %s: %v", re.Kind, k, err)
	}
	return re
}

func itoa(i int) string { return strconv.Itoa(i) }
