package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/crypto/ssh"

	"github.com/clusterflow/clusterflow/internal/workerfs"
)

// PoolOptions configure a Pool. Zero values mean the defaults.
type PoolOptions struct {
	// ConnectTimeout bounds the TCP connect plus the SSH handshake of one hop, and a
	// keepalive round trip. Default 10s.
	ConnectTimeout time.Duration
	// KeepAliveInterval is how often an idle-or-busy connection is probed with a
	// keepalive@openssh.com request. Default 15s.
	KeepAliveInterval time.Duration
	// MaxSessions caps concurrent sessions (commands, SFTP) per connection. OpenSSH
	// refuses more than MaxSessions (default 10) per connection, so callers beyond
	// this wait for a slot instead of failing. Default 8.
	MaxSessions int
	// MaxHandshakes caps the SSH handshakes (TCP connect, key exchange, host key
	// check, authentication) in flight at once in the whole pool: each costs CPU on
	// both ends, and a cold fan-out to thousands of hosts would otherwise start them
	// all together and slow every one down past ConnectTimeout. Dials beyond it wait
	// for a free slot (not counted against ConnectTimeout). Default 32.
	MaxHandshakes int
	// MaxHandshakesPerTarget caps them per target sshd: an address:port as dialled
	// from the worker, or from a jump host. OpenSSH's MaxStartups (default 10:30:100)
	// drops connections at random once 10 are waiting to authenticate. Default 8.
	MaxHandshakesPerTarget int
	// Logger receives connection events (dial, pin, evict). Default slog.Default().
	Logger *slog.Logger
	// Metrics counts dials as clusterflow_ssh_connections{result=ok|error}, times
	// handshakes (clusterflow_ssh_handshake_duration) and reports the handshakes
	// in flight (clusterflow_ssh_handshakes_in_flight). Default: none. (Dials run on
	// the pool's context, not an activity's, so the pool takes the worker's handler
	// rather than activity.GetMetricsHandler.)
	Metrics client.MetricsHandler
	// Files is the worker's file policy: identity files and known_hosts files are
	// read, and TOFU pins written, only where it allows. nil allows every path (a
	// pool made by a test or a library caller); the worker always sets it.
	Files *workerfs.Policy
}

// The pool's metrics.
const (
	// SSHConnections counts dials, labelled result=ok|error.
	SSHConnections = "clusterflow_ssh_connections"
	// SSHHandshakeDuration times the successful handshakes, from the TCP connect
	// (or the jump host's channel) to the end of authentication; not the wait for
	// a handshake slot.
	SSHHandshakeDuration = "clusterflow_ssh_handshake_duration"
	// SSHHandshakesInFlight is the number of handshakes under way.
	SSHHandshakesInFlight = "clusterflow_ssh_handshakes_in_flight"
)

// Pool keeps one SSH connection per target per worker process and shares it among
// activities. Connections are dialled on first use, probed with keepalives, and
// dropped when they die; the next use dials again.
//
// A connection is keyed by everything that decides who we are and whom we trust:
// user@address:port, identity file, agent use, known_hosts file, host key policy and
// the jump chain. Two hosts that differ in any of these never share a connection, so
// a playbook can't ride on a connection authenticated with another playbook's key.
type Pool struct {
	opts PoolOptions
	log  *slog.Logger

	ctx    context.Context // ends pending dials on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // dial, keepalive and wait goroutines

	mu     sync.Mutex
	conns  map[string]*poolConn
	closed bool

	handshakes handshakeSlots
}

// poolConn is one pooled connection, or a dial in progress. Callers that find a
// dial in progress wait on ready and share its outcome (one dial per key).
type poolConn struct {
	key   string
	ready chan struct{} // closed when the dial has finished; client/err are set then
	// Set before ready is closed, read-only after.
	client *ssh.Client
	err    error

	sessions chan struct{} // counting semaphore, cap MaxSessions
	dead     chan struct{} // closed on eviction
	deadOnce sync.Once
}

// NewPool returns an empty pool. Close it when the worker stops.
func NewPool(opts PoolOptions) *Pool {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 10 * time.Second
	}
	if opts.KeepAliveInterval <= 0 {
		opts.KeepAliveInterval = 15 * time.Second
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = 8
	}
	if opts.MaxHandshakes <= 0 {
		opts.MaxHandshakes = 32
	}
	if opts.MaxHandshakesPerTarget <= 0 {
		opts.MaxHandshakesPerTarget = 8
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Metrics == nil {
		opts.Metrics = client.MetricsNopHandler
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{
		opts:   opts,
		log:    log.With("component", "sshpool"),
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[string]*poolConn),
		handshakes: handshakeSlots{
			all:       make(chan struct{}, opts.MaxHandshakes),
			perTarget: opts.MaxHandshakesPerTarget,
			targets:   map[string]*targetSlots{},
			inFlight:  opts.Metrics.Gauge(SSHHandshakesInFlight),
		},
	}
}

// files is the pool's file policy (see PoolOptions.Files).
func (p *Pool) files() *workerfs.Policy {
	if p.opts.Files == nil {
		return workerfs.Unrestricted()
	}
	return p.opts.Files
}

// Files is the pool's file policy: the activities check the worker files they
// open against it too.
func (p *Pool) Files() *workerfs.Policy { return p.files() }

// errPoolClosed is returned by a pool after Close.
var errPoolClosed = errors.New("ssh connection pool is closed (worker stopping)")

// client returns a connected, authenticated client for h, dialling (through h.Via
// when set) if the pool has none. The client belongs to the pool: do not Close it.
// Errors are *Error, or ctx's error when ctx ends first.
func (p *Pool) client(ctx context.Context, h Host) (*ssh.Client, error) {
	pc, err := p.conn(ctx, h)
	if err != nil {
		return nil, err
	}
	return pc.client, nil
}

// Close closes every pooled connection and waits for the pool's goroutines. Sessions
// still open on them end with a transport error.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	conns := make([]*poolConn, 0, len(p.conns))
	for _, pc := range p.conns {
		conns = append(conns, pc)
	}
	p.mu.Unlock()

	p.cancel() // pending dials give up and close what they got
	for _, pc := range conns {
		<-pc.ready
		if pc.client != nil {
			p.evict(pc, "pool closed")
		}
	}
	p.wg.Wait()
}

// conn returns the live pooled connection for h, dialling it if needed.
func (p *Pool) conn(ctx context.Context, h Host) (*poolConn, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	key := h.poolKey()
	// A connection found dead right after its dial is redialled; give up after a few
	// rounds instead of spinning on a host that accepts and drops at once.
	for range 3 {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		pc := p.conns[key]
		if pc == nil {
			pc = &poolConn{
				key:      key,
				ready:    make(chan struct{}),
				sessions: make(chan struct{}, p.opts.MaxSessions),
				dead:     make(chan struct{}),
			}
			p.conns[key] = pc
			p.wg.Add(1)
			// The dial runs on the pool's context, not the caller's: other callers
			// may be waiting on it, and a cancelled activity must not fail them.
			// ConnectTimeout bounds it.
			go p.dial(pc, h)
		}
		p.mu.Unlock()

		select {
		case <-pc.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if pc.err != nil {
			return nil, pc.err
		}
		select {
		case <-pc.dead:
			continue
		default:
			return pc, nil
		}
	}
	return nil, unreachable(h, "the connection was closed right after it was made, three times in a row")
}

// dial makes pc's connection and starts its watchers.
func (p *Pool) dial(pc *poolConn, h Host) {
	defer p.wg.Done()
	client, err := p.dialHost(p.ctx, h)
	result := "ok"
	if err != nil {
		result = "error"
	}
	p.opts.Metrics.WithTags(map[string]string{"result": result}).Counter(SSHConnections).Inc(1)

	p.mu.Lock()
	if err == nil && p.closed {
		client.Close()
		client, err = nil, errPoolClosed
	}
	if err != nil {
		// Failed dials are not cached: the next caller tries again.
		if p.conns[pc.key] == pc {
			delete(p.conns, pc.key)
		}
		pc.err = err
		close(pc.ready)
		p.mu.Unlock()
		return
	}
	pc.client = client
	close(pc.ready)
	p.wg.Add(2)
	p.mu.Unlock()

	p.log.Debug("ssh connected", "host", h.Name, "addr", h.Addr(), "user", h.User, "via", h.viaAddr())
	go func() {
		defer p.wg.Done()
		err := client.Wait()
		p.evict(pc, fmt.Sprintf("connection closed: %v", err))
	}()
	go func() {
		defer p.wg.Done()
		p.keepalive(pc, h)
	}()
}

// keepalive probes pc every KeepAliveInterval and evicts it when a probe fails or
// gets no answer within ConnectTimeout.
func (p *Pool) keepalive(pc *poolConn, h Host) {
	t := time.NewTicker(p.opts.KeepAliveInterval)
	defer t.Stop()
	for {
		select {
		case <-pc.dead:
			return
		case <-t.C:
		}
		errc := make(chan error, 1)
		go func() {
			// OpenSSH answers keepalive@openssh.com with "failure" (ok=false): that is
			// still an answer. Only an error means the connection is gone.
			_, _, err := pc.client.SendRequest("keepalive@openssh.com", true, nil)
			errc <- err
		}()
		timer := time.NewTimer(p.opts.ConnectTimeout)
		select {
		case err := <-errc:
			timer.Stop()
			if err != nil {
				p.evict(pc, fmt.Sprintf("keepalive failed: %v", err))
				return
			}
		case <-timer.C:
			// Closing the client also unblocks the SendRequest goroutine.
			p.evict(pc, fmt.Sprintf("no keepalive answer within %s", p.opts.ConnectTimeout))
			return
		case <-pc.dead:
			timer.Stop()
			return
		}
	}
}

// evict drops pc from the pool and closes its client. Safe to call many times.
func (p *Pool) evict(pc *poolConn, reason string) {
	pc.deadOnce.Do(func() {
		close(pc.dead)
		p.mu.Lock()
		if p.conns[pc.key] == pc {
			delete(p.conns, pc.key)
		}
		p.mu.Unlock()
		if pc.client != nil {
			pc.client.Close()
		}
		p.log.Debug("ssh connection dropped", "conn", redactKey(pc.key), "reason", reason)
	})
}

// session opens a session to h. A pooled connection that turns out to be dead (the
// server restarted, say, and the keepalive has not noticed yet) is dropped and
// dialled again once.
func (p *Pool) session(ctx context.Context, h Host) (*session, error) {
	var lastErr error
	for range 2 {
		pc, err := p.conn(ctx, h)
		if err != nil {
			return nil, err
		}
		select {
		case pc.sessions <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-pc.dead:
			continue
		}
		release := sync.OnceFunc(func() { <-pc.sessions })
		s, err := newSession(ctx, pc.client, release)
		if err == nil {
			return &session{
				Session: s,
				release: release,
				broken:  func(reason string) { p.evict(pc, reason) },
			}, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		release()
		lastErr = err
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) && oce.Reason == ssh.Prohibited {
			// The server's MaxSessions is lower than ours; the connection is fine.
			return nil, unreachable(h, "the server refused a new session (%v); lower the step's parallelism or raise MaxSessions in the host's sshd_config", err)
		}
		p.evict(pc, fmt.Sprintf("new session failed: %v", err))
	}
	return nil, unreachable(h, "cannot open a session: %v", lastErr)
}

// redactKey shortens a pool key to user@addr (and the jump chain) for logs.
func redactKey(key string) string {
	parts := strings.Split(key, " via ")
	for i, part := range parts {
		parts[i], _, _ = strings.Cut(part, " ")
	}
	return strings.Join(parts, " via ")
}

var _ Remote = (*Pool)(nil)
