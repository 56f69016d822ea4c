package remote_test

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
)

// handshakeMeter is a client.MetricsHandler that keeps the highest number of
// handshakes in flight and counts the timed handshakes.
type handshakeMeter struct {
	mu       *sync.Mutex
	max, now *float64
	timed    *int
}

func newHandshakeMeter() handshakeMeter {
	return handshakeMeter{mu: &sync.Mutex{}, max: new(float64), now: new(float64), timed: new(int)}
}

func (m handshakeMeter) WithTags(map[string]string) client.MetricsHandler { return m }
func (m handshakeMeter) Counter(name string) client.MetricsCounter {
	return client.MetricsNopHandler.Counter(name)
}

func (m handshakeMeter) Gauge(name string) client.MetricsGauge {
	if name != remote.SSHHandshakesInFlight {
		return client.MetricsNopHandler.Gauge(name)
	}
	return gaugeOf(func(v float64) {
		m.mu.Lock()
		defer m.mu.Unlock()
		*m.now = v
		*m.max = max(*m.max, v)
	})
}

func (m handshakeMeter) Timer(name string) client.MetricsTimer {
	if name != remote.SSHHandshakeDuration {
		return client.MetricsNopHandler.Timer(name)
	}
	return timerOf(func(time.Duration) {
		m.mu.Lock()
		defer m.mu.Unlock()
		*m.timed++
	})
}

type gaugeOf func(float64)

func (f gaugeOf) Update(v float64) { f(v) }

type timerOf func(time.Duration)

func (f timerOf) Record(d time.Duration) { f(d) }

// runAll runs true on every host at once and fails on any error.
func runAll(t *testing.T, pool *remote.Pool, hosts []remote.Host) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(hosts))
	for _, h := range hosts {
		wg.Go(func() { errs <- runTrue(pool, h) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestPoolCapsHandshakes(t *testing.T) {
	s := sshtest.New(t, sshtest.MaxHosts)
	m := newHandshakeMeter()
	pool := sshtest.Pool(t, remote.PoolOptions{Metrics: m, MaxHandshakes: 3}, nil)
	var hosts []remote.Host
	for i := range s.Hosts {
		hosts = append(hosts, s.Host(i))
	}
	runAll(t, pool, hosts)
	m.mu.Lock()
	defer m.mu.Unlock()
	if *m.max > 3 || *m.max < 1 || *m.now != 0 || *m.timed != len(hosts) {
		t.Fatalf("handshakes in flight: at most %v (cap 3), %v at the end; %d timed, want %d", *m.max, *m.now, *m.timed, len(hosts))
	}
}

func TestPoolCapsHandshakesPerTarget(t *testing.T) {
	s := sshtest.New(t, 1)
	m := newHandshakeMeter()
	pool := sshtest.Pool(t, remote.PoolOptions{Metrics: m, MaxHandshakesPerTarget: 2}, nil)
	// One target, 12 connections: hosts that differ in their known_hosts file
	// never share one.
	var hosts []remote.Host
	for i := range 12 {
		h := s.Host(0)
		h.KnownHostsFile = copyFile(t, s.KnownHosts, i)
		hosts = append(hosts, h)
	}
	runAll(t, pool, hosts)
	if n := remote.ConnCount(pool); n != 12 {
		t.Fatalf("%d connections, want 12", n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if *m.max > 2 {
		t.Fatalf("%v handshakes with one target at once, cap 2", *m.max)
	}
}

// TestJumpHostSharedByEveryTarget: hosts behind a jump host ride on one
// authenticated connection to it, however many dial at once.
func TestJumpHostSharedByEveryTarget(t *testing.T) {
	s := sshtest.New(t, sshtest.MaxHosts)
	m := newHandshakeMeter()
	pool := sshtest.Pool(t, remote.PoolOptions{Metrics: m}, nil)
	jump := s.Host(0)
	var hosts []remote.Host
	for i := 1; i < len(s.Hosts); i++ {
		h := s.Host(i)
		h.Jump, h.Via = jump.Name, &jump
		hosts = append(hosts, h)
	}
	runAll(t, pool, hosts)
	if n := tcpConnsTo(t, s.Hosts[0].String()); n != 1 {
		t.Fatalf("%d TCP connections to the jump host, want 1", n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if *m.timed != len(hosts)+1 {
		t.Fatalf("%d handshakes, want %d (the jump host once, then every target)", *m.timed, len(hosts)+1)
	}
}

// copyFile copies a file to a new one in a test directory (the i-th copy).
func copyFile(t *testing.T, src string, i int) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy"+itoa(i))
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}
