package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/clusterflow/clusterflow/internal/pgtest"
)

// Throughput of the server setups (section 6): clusterRuns playbooks at once, each
// clusterSteps steps of `true` on clusterHosts hosts (the step's default parallel,
// 10), against the embedded server on SQLite and against a cluster of two server
// processes on PostgreSQL, with clusterWorkers worker processes each.
const (
	clusterRuns    = 10
	clusterHosts   = 50
	clusterSteps   = 5
	clusterWorkers = 2
	clusterIdle    = 30 * time.Second // idle CPU is averaged over this long
)

// clkTck is the kernel's USER_HZ, the unit of /proc/PID/stat's CPU times (100 on
// every Linux architecture Go runs on).
const clkTck = 100

// backend is one server setup under test.
type backend struct {
	name    string
	addr    string // the workers' --address (comma-separated for the cluster)
	client  client.Client
	servers []*exec.Cmd
	pg      *pgtest.Server // nil for SQLite
	workers []*exec.Cmd
}

// batch is one measured round of one backend.
type batch struct {
	wall                     time.Duration
	server, worker, postgres time.Duration // CPU used
	load                     float64       // 1-minute load average at the end
}

// benchCluster measures section 6: idle server CPU of each setup (and of a
// PostgreSQL cluster with 512 shards, against the default), then rounds of
// clusterRuns concurrent runs on each, alternating which goes first.
func benchCluster(ctx context.Context, e *env, f *fleet, rounds int, t *table) error {
	if err := pgtest.Available(); err != nil {
		return err
	}
	dir := filepath.Join(e.dir, "cluster")
	if err := mkdir(dir); err != nil {
		return err
	}
	pg, err := pgtest.Start(pgtest.Options{}) // fsync on: SQLite runs with synchronous=FULL
	if err != nil {
		return err
	}
	defer pg.Stop()
	const section = "6. 10 runs × 50 hosts"
	sqlite := &backend{name: "SQLite (embedded, 1 shard)", addr: e.addr, client: e.client, servers: []*exec.Cmd{e.server}}
	idle, err := idleCPU(sqlite)
	if err != nil {
		return err
	}
	t.add(section, "idle server CPU, SQLite embedded (1 shard)", fmt.Sprintf("%.3f cores", idle), "", "")

	for _, shards := range []int{512} {
		b, err := e.startPGCluster(pg, fmt.Sprintf("idle%d", shards), shards)
		if err != nil {
			return err
		}
		idle, err := idleCPU(b)
		b.stop()
		if err != nil {
			return err
		}
		t.add(section, fmt.Sprintf("idle server CPU, PostgreSQL cluster, %d shards (2 servers)", shards), fmt.Sprintf("%.3f cores", idle), "", "")
	}
	cl, err := e.startPGCluster(pg, "bench", 0)
	if err != nil {
		return err
	}
	defer cl.stop()
	if idle, err = idleCPU(cl); err != nil {
		return err
	}
	t.add(section, "idle server CPU, PostgreSQL cluster, 64 shards, the default (2 servers)", fmt.Sprintf("%.3f cores", idle), "", "")

	pb := filepath.Join(dir, "throughput.yaml")
	var steps strings.Builder
	for i := range clusterSteps {
		fmt.Fprintf(&steps, "    - {name: s%d, kind: run, hosts: all, command: [\"true\"], timeout: 5m}\n", i+1)
	}
	if err := f.playbook(pb, "throughput", clusterHosts, steps.String()); err != nil {
		return err
	}
	backends := []*backend{sqlite, cl}
	for _, b := range backends {
		if err := e.startClusterWorkers(b); err != nil {
			return err
		}
		defer b.stopWorkers()
		// Unmeasured: fills the workers' connection pools and the servers' caches.
		if _, err := runBatch(ctx, b, pb); err != nil {
			return fmt.Errorf("%s warm-up: %w", b.name, err)
		}
	}
	results := map[*backend][]batch{}
	for r := range rounds {
		order := backends
		if r%2 == 1 {
			order = []*backend{cl, sqlite}
		}
		for _, b := range order {
			m, err := runBatch(ctx, b, pb)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", b.name, r+1, err)
			}
			fmt.Fprintf(e.log, "  %s: %s, server CPU %s, load %.1f\n", b.name, m.wall.Round(time.Millisecond), m.server.Round(time.Millisecond), m.load)
			results[b] = append(results[b], m)
		}
	}
	hostSteps := float64(clusterRuns * clusterHosts * clusterSteps)
	for _, b := range backends {
		ms := results[b]
		stat := func(f func(batch) float64) []float64 {
			var out []float64
			for _, m := range ms {
				out = append(out, f(m))
			}
			return out
		}
		runsPerMin := stat(func(m batch) float64 { return clusterRuns / m.wall.Minutes() })
		perSecond := stat(func(m batch) float64 { return hostSteps / m.wall.Seconds() })
		serverCPU := stat(func(m batch) float64 { return float64(m.server.Microseconds()) / 1000 / hostSteps })
		workerCPU := stat(func(m batch) float64 { return float64(m.worker.Microseconds()) / 1000 / hostSteps })
		t.add(section, b.name+": playbook runs per minute", fmt.Sprintf("%.1f (rounds: %s)", median(runsPerMin), joinF(runsPerMin)), "", "")
		t.add(section, b.name+": host-steps per second", fmt.Sprintf("%.0f (rounds: %s)", median(perSecond), joinF(perSecond)), "", "")
		t.add(section, b.name+": server CPU per host-step", fmt.Sprintf("%.2f ms (rounds: %s)", median(serverCPU), joinF(serverCPU)), "", "")
		if b.pg != nil {
			pgCPU := stat(func(m batch) float64 { return float64(m.postgres.Microseconds()) / 1000 / hostSteps })
			t.add(section, b.name+": PostgreSQL CPU per host-step", fmt.Sprintf("%.2f ms (rounds: %s)", median(pgCPU), joinF(pgCPU)), "", "")
		}
		t.add(section, b.name+": worker CPU per host-step", fmt.Sprintf("%.2f ms (rounds: %s)", median(workerCPU), joinF(workerCPU)), "", "")
		loads := stat(func(m batch) float64 { return m.load })
		t.add(section, b.name+": machine load (1-min average after each round)", joinF(loads), "", "")
	}
	var walls []float64
	for i := range min(len(results[sqlite]), len(results[cl])) {
		walls = append(walls, results[sqlite][i].wall.Seconds()/results[cl][i].wall.Seconds())
	}
	t.ratio(section, "host-steps per second, PostgreSQL cluster / SQLite", walls, 0, false, false)
	return nil
}

// startPGCluster starts two `worker server` processes on database db of pg (shards
// 0: the default) and returns once both serve.
func (e *env) startPGCluster(pg *pgtest.Server, db string, shards int) (*backend, error) {
	b := &backend{name: "PostgreSQL cluster (2 servers, 64 shards)", pg: pg}
	if shards != 0 {
		b.name = fmt.Sprintf("PostgreSQL cluster (2 servers, %d shards)", shards)
	}
	var addrs []string
	var readies []<-chan struct{}
	for i := range 2 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args := []string{"server", "--db", pg.URL(db), "--db-password-file", pg.PasswordFile,
			"--grpc-port", strconv.Itoa(port), "--ui-port", "0", "--state-dir", filepath.Join(e.dir, "cluster", fmt.Sprintf("%s-%d", db, i))}
		if shards != 0 {
			args = append(args, "--history-shards", strconv.Itoa(shards))
		}
		// The profiler address is the SQLite server's; these go without.
		cmd, ready, err := e.startProcEnv(fmt.Sprintf("%s-server%d", db, i+1), "Temporal server on", []string{"CLUSTERFLOW_PPROF_ADDRESS="}, args...)
		if err != nil {
			b.stop()
			return nil, err
		}
		b.servers = append(b.servers, cmd)
		addrs = append(addrs, addr)
		readies = append(readies, ready)
	}
	for i, ready := range readies {
		select {
		case <-ready:
		case <-time.After(3 * time.Minute):
			b.stop()
			return nil, fmt.Errorf("server %s on PostgreSQL did not start within 3 min; see %s", addrs[i], filepath.Join(e.dir, fmt.Sprintf("%s-server%d.log", db, i+1)))
		}
	}
	b.addr = strings.Join(addrs, ",")
	c, err := client.Dial(client.Options{HostPort: addrs[0], Logger: quietLogger{}})
	if err != nil {
		b.stop()
		return nil, err
	}
	b.client = c
	return b, nil
}

func (b *backend) stop() {
	b.stopWorkers()
	if b.client != nil {
		b.client.Close()
	}
	var wg sync.WaitGroup
	for _, s := range b.servers {
		wg.Go(func() { stopProc(s) })
	}
	wg.Wait()
}

func (e *env) startClusterWorkers(b *backend) error {
	kind := "sqlite"
	if b.pg != nil {
		kind = "postgres"
	}
	for i := range clusterWorkers {
		w, ready, err := e.startProcEnv(fmt.Sprintf("cluster-worker-%s-%d", kind, i+1), "worker polling task queue", nil,
			"--address", b.addr, "--state-dir", filepath.Join(e.dir, "state"), "--playbook-dir", e.dir)
		if err != nil {
			return err
		}
		b.workers = append(b.workers, w)
		select {
		case <-ready:
		case <-time.After(time.Minute):
			return errors.New("a worker did not start polling within 60s")
		}
	}
	return nil
}

func (b *backend) stopWorkers() {
	for _, w := range b.workers {
		stopProc(w)
	}
	b.workers = nil
}

// runBatch starts clusterRuns runs of pb at once and waits for all of them.
func runBatch(ctx context.Context, b *backend, pb string) (batch, error) {
	server0, worker0, pg0 := b.cpu()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, clusterRuns)
	for i := range clusterRuns {
		wg.Go(func() {
			run, err := startRun(ctx, b.client, pb)
			if err == nil {
				err = run.Get(ctx, nil)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	m := batch{wall: time.Since(start)}
	server1, worker1, pg1 := b.cpu()
	m.server, m.worker, m.postgres = server1-server0, worker1-worker0, pg1-pg0
	m.load = loadAverage()
	return m, errors.Join(errs...)
}

// cpu is the CPU time the backend's servers, workers and PostgreSQL have used.
func (b *backend) cpu() (server, worker, postgres time.Duration) {
	for _, s := range b.servers {
		server += procCPU(s.Process.Pid)
	}
	for _, w := range b.workers {
		worker += procCPU(w.Process.Pid)
	}
	if b.pg != nil {
		postgres = treeCPU(b.pg.Pid())
	}
	return server, worker, postgres
}

// idleCPU is the cores the backend's servers use with nothing to do, workers
// stopped, averaged over clusterIdle after a settling period.
func idleCPU(b *backend) (float64, error) {
	time.Sleep(15 * time.Second)
	s0, _, _ := b.cpu()
	time.Sleep(clusterIdle)
	s1, _, _ := b.cpu()
	return (s1 - s0).Seconds() / clusterIdle.Seconds(), nil
}

// procCPU is a process's user and system CPU time from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	f := statFields(pid)
	if len(f) < 15 {
		return 0
	}
	return ticks(f[11]) + ticks(f[12])
}

// treeCPU is procCPU of a process, its children, and its children that ended (the
// PostgreSQL postmaster and its backends).
func treeCPU(pid int) time.Duration {
	f := statFields(pid)
	if len(f) < 15 {
		return 0
	}
	total := ticks(f[11]) + ticks(f[12]) + ticks(f[13]) + ticks(f[14])
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cf := statFields(child); len(cf) > 12 && cf[1] == strconv.Itoa(pid) {
			total += ticks(cf[11]) + ticks(cf[12])
		}
	}
	return total
}

// statFields are /proc/PID/stat's fields after the command name: [0] is the state
// (field 3), [1] the parent (4), [11] utime (14), [12] stime (15), [13] cutime,
// [14] cstime.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return nil
	}
	return strings.Fields(s[i+2:])
}

func ticks(s string) time.Duration {
	n, _ := strconv.ParseInt(s, 10, 64)
	return time.Duration(n) * time.Second / clkTck
}

func loadAverage() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
