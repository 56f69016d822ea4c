package remote_test

import (
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/sshtest"
)

// dialCounter is a client.MetricsHandler that counts clusterflow_ssh_connections by
// its result label.
type dialCounter struct {
	mu     *sync.Mutex
	result string
	n      map[string]int64
}

func (d dialCounter) WithTags(tags map[string]string) client.MetricsHandler {
	d.result = tags["result"]
	return d
}

func (d dialCounter) Counter(name string) client.MetricsCounter {
	if name != remote.SSHConnections {
		return client.MetricsNopHandler.Counter(name)
	}
	return counterOf(func(v int64) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.n[d.result] += v
	})
}
func (d dialCounter) Gauge(name string) client.MetricsGauge {
	return client.MetricsNopHandler.Gauge(name)
}
func (d dialCounter) Timer(name string) client.MetricsTimer {
	return client.MetricsNopHandler.Timer(name)
}

type counterOf func(int64)

func (f counterOf) Inc(v int64) { f(v) }

func TestPoolCountsDials(t *testing.T) {
	s := sshtest.New(t, 1)
	d := dialCounter{mu: &sync.Mutex{}, n: map[string]int64{}}
	pool := sshtest.Pool(t, remote.PoolOptions{Metrics: d, ConnectTimeout: 5 * time.Second}, nil)
	for range 2 { // one dial, reused
		if err := runTrue(pool, s.Host(0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := runTrue(pool, closedPortHost(t, s)); err == nil {
		t.Fatal("a closed port must fail")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n["ok"] != 1 || d.n["error"] != 1 {
		t.Fatalf("dials by result: %v, want ok 1, error 1", d.n)
	}
}
