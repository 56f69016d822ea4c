package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/clusterflow/clusterflow/playbooks"
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
	// Logger receives connection events (dial, pin, evict). Default slog.Default().
	Logger *slog.Logger
	// Metrics counts dials as clusterflow_ssh_connections{result=ok|error}. Default:
	// none. (Dials run on the pool's context, not an activity's, so the pool takes
	// the worker's handler rather than activity.GetMetricsHandler.)
	Metrics client.MetricsHandler
}

// SSHConnections is the pool's dial counter, labelled result=ok|error.
const SSHConnections = "clusterflow_ssh_connections"

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
	}
}

// errPoolClosed is returned by a pool after Close.
var errPoolClosed = errors.New("ssh connection pool is closed (worker stopping)")

// Client returns a connected, authenticated client for h, dialling (through h.Via
// when set) if the pool has none. The client belongs to the pool: do not Close it.
// Errors are Temporal application errors typed with the Err* constants, or ctx's
// error when ctx ends first.
func (p *Pool) Client(ctx context.Context, h playbooks.Host) (*ssh.Client, error) {
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
func (p *Pool) conn(ctx context.Context, h playbooks.Host) (*poolConn, error) {
	if err := validateHost(h, 0); err != nil {
		return nil, err
	}
	key := poolKey(h)
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
	return nil, hostUnreachable(h, "the connection was closed right after it was made, three times in a row")
}

// dial makes pc's connection and starts its watchers.
func (p *Pool) dial(pc *poolConn, h playbooks.Host) {
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

	p.log.Debug("ssh connected", "host", h.Name, "addr", hostAddr(h), "user", h.User, "via", viaName(h))
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
func (p *Pool) keepalive(pc *poolConn, h playbooks.Host) {
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

// pooledSession is a session on a pooled connection; Close releases its slot.
type pooledSession struct {
	*ssh.Session
	pc      *poolConn
	release func()
}

func (s *pooledSession) Close() error {
	err := s.Session.Close()
	s.release()
	return err
}

// session opens a session to h. A pooled connection that turns out to be dead (the
// server restarted, say, and the keepalive has not noticed yet) is dropped and
// dialled again once.
func (p *Pool) session(ctx context.Context, h playbooks.Host) (*pooledSession, error) {
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

		type opened struct {
			s   *ssh.Session
			err error
		}
		ch := make(chan opened, 1)
		go func() {
			s, err := pc.client.NewSession()
			ch <- opened{s, err}
		}()
		var o opened
		select {
		case o = <-ch:
		case <-ctx.Done():
			go func() {
				if o := <-ch; o.s != nil {
					o.s.Close()
				}
				release()
			}()
			return nil, ctx.Err()
		}
		if o.err == nil {
			return &pooledSession{Session: o.s, pc: pc, release: release}, nil
		}
		release()
		lastErr = o.err
		var oce *ssh.OpenChannelError
		if errors.As(o.err, &oce) && oce.Reason == ssh.Prohibited {
			// The server's MaxSessions is lower than ours; the connection is fine.
			return nil, hostUnreachable(h, "the server refused a new session (%v); lower the step's parallelism or raise MaxSessions in the host's sshd_config", o.err)
		}
		p.evict(pc, fmt.Sprintf("new session failed: %v", o.err))
	}
	return nil, hostUnreachable(h, "cannot open a session: %v", lastErr)
}

// dialHost connects and authenticates to h, through h.Via when set.
func (p *Pool) dialHost(ctx context.Context, h playbooks.Host) (*ssh.Client, error) {
	target := hostAddr(h)
	auth, authDesc, cleanup, err := p.authMethod(h)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	hk := &hostKeyCheck{host: h, log: p.log}
	algos, err := knownHostAlgorithms(h.KnownHostsFile, target)
	if err != nil {
		return nil, hostInvalid(h, "cannot read known_hosts file %s: %v", h.KnownHostsFile, err)
	}
	cfg := &ssh.ClientConfig{
		User:            h.User,
		Auth:            []ssh.AuthMethod{auth},
		HostKeyCallback: hk.callback,
		// Offer only the algorithms the file has keys for: otherwise x/crypto may
		// negotiate, say, ECDSA while the file pins only ed25519, and report a
		// mismatch for a host whose ed25519 key is fine. Empty (host unknown) means
		// the library's defaults.
		HostKeyAlgorithms: algos,
		ClientVersion:     "SSH-2.0-clusterflow",
	}

	var conn net.Conn
	if h.Via != nil {
		jump, err := p.Client(ctx, *h.Via)
		if err != nil {
			return nil, err // already names the jump host
		}
		dctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
		conn, err = jump.DialContext(dctx, "tcp", target)
		cancel()
		if err != nil {
			return nil, p.classifyJumpErr(h, err)
		}
	} else {
		d := net.Dialer{Timeout: p.opts.ConnectTimeout, KeepAlive: 30 * time.Second}
		conn, err = d.DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, p.classifyDialErr(h, err, false, authDesc)
		}
	}

	// Bound the handshake. Channel connections through a jump host do not support
	// deadlines, so a timer that closes the connection works for both kinds.
	var timedOut bool
	var tmu sync.Mutex
	timer := time.AfterFunc(p.opts.ConnectTimeout, func() {
		tmu.Lock()
		timedOut = true
		tmu.Unlock()
		conn.Close()
	})
	stopCtx := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, target, cfg)
	timerStopped := timer.Stop()
	ctxStopped := stopCtx()
	if err == nil && (!timerStopped || !ctxStopped) {
		c.Close()
		err = errors.New("connection closed at the end of the handshake")
	}
	if err != nil {
		conn.Close()
		if hk.err != nil {
			return nil, hk.err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		tmu.Lock()
		to := timedOut
		tmu.Unlock()
		return nil, p.classifyDialErr(h, err, to, authDesc)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// classifyDialErr turns a connect or handshake error into a typed application error.
func (p *Pool) classifyDialErr(h playbooks.Host, err error, timedOut bool, authDesc string) error {
	var nerr net.Error
	var dnsErr *net.DNSError
	msg := err.Error()
	switch {
	case timedOut || (errors.As(err, &nerr) && nerr.Timeout()):
		return hostUnreachable(h, "connection timed out after %s (%v)", p.opts.ConnectTimeout, err)
	case strings.Contains(msg, "unable to authenticate"):
		return authFailed(h, "authentication as %q failed: the server accepted none of the keys from %s. Check that the matching public key is in ~%s/.ssh/authorized_keys on the host", h.User, authDesc, h.User)
	case errors.Is(err, syscall.ECONNREFUSED):
		return hostUnreachable(h, "connection refused: nothing listens on port %d, or a firewall rejects it", portOf(h))
	case errors.As(err, &dnsErr):
		return hostUnreachable(h, "cannot resolve %q: %v", h.Address, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return hostUnreachable(h, "the connection was closed during the SSH handshake (%v); the server may be overloaded (MaxStartups) or restarting", err)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return hostUnreachable(h, "no route to host (%v)", err)
	default:
		return hostUnreachable(h, "cannot connect: %v", err)
	}
}

// classifyJumpErr handles the jump host's refusal to open a channel to the target.
func (p *Pool) classifyJumpErr(h playbooks.Host, err error) error {
	jump := hostLabel(*h.Via)
	var oce *ssh.OpenChannelError
	switch {
	case errors.As(err, &oce) && oce.Reason == ssh.Prohibited:
		return hostUnreachable(h, "jump %s refuses TCP forwarding (%v); set AllowTcpForwarding yes in its sshd_config", jump, err)
	case errors.As(err, &oce):
		return hostUnreachable(h, "jump %s cannot connect to %s: %v", jump, hostAddr(h), err)
	case errors.Is(err, context.DeadlineExceeded):
		return hostUnreachable(h, "jump %s did not connect to %s within %s", jump, hostAddr(h), p.opts.ConnectTimeout)
	default:
		return hostUnreachable(h, "through jump %s: %v", jump, err)
	}
}

// authMethod reads the identity file and/or connects to ssh-agent. It returns one
// public-key method offering all keys (x/crypto tries only the first method of a
// kind), a description of the key sources for messages, and a cleanup that closes
// the agent connection once the handshake is over. Agent forwarding is never
// requested.
func (p *Pool) authMethod(h playbooks.Host) (ssh.AuthMethod, string, func(), error) {
	var signers []ssh.Signer
	var sources []string
	if h.IdentityFile != "" {
		// Read at dial time, on the worker: a key rotated on disk is picked up by
		// the next dial. The key's bytes never leave this function.
		data, err := os.ReadFile(h.IdentityFile)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", nil, hostInvalid(h, "identity file %s does not exist on this worker", h.IdentityFile)
		}
		if err != nil {
			return nil, "", nil, hostInvalid(h, "cannot read identity file: %v", err)
		}
		signer, err := ssh.ParsePrivateKey(data)
		var ppErr *ssh.PassphraseMissingError
		if errors.As(err, &ppErr) {
			return nil, "", nil, authFailed(h, "identity file %s is protected by a passphrase, which clusterflow cannot ask for: load it into ssh-agent (ssh-add %s) on the worker and set useAgent: true", h.IdentityFile, h.IdentityFile)
		}
		if err != nil {
			return nil, "", nil, hostInvalid(h, "identity file %s is not a private key clusterflow can read (%v)", h.IdentityFile, err)
		}
		signers = append(signers, signer)
		sources = append(sources, "identity file "+h.IdentityFile)
	}
	cleanup := func() {}
	var ag agent.ExtendedAgent
	if h.UseAgent {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			return nil, "", nil, authFailed(h, "useAgent is set but SSH_AUTH_SOCK is not set in the worker's environment; start the worker with an ssh-agent")
		}
		conn, err := net.DialTimeout("unix", sock, p.opts.ConnectTimeout)
		if err != nil {
			return nil, "", nil, authFailed(h, "useAgent is set but ssh-agent at SSH_AUTH_SOCK=%s cannot be reached: %v", sock, err)
		}
		ag = agent.NewClient(conn)
		cleanup = func() { conn.Close() }
		sources = append(sources, "ssh-agent")
	}
	if len(sources) == 0 {
		return nil, "", nil, hostInvalid(h, "no credentials: set identityFile or useAgent: true")
	}
	method := ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		all := append([]ssh.Signer(nil), signers...)
		if ag != nil {
			more, err := ag.Signers()
			if err != nil {
				return nil, fmt.Errorf("listing ssh-agent keys: %w", err)
			}
			all = append(all, more...)
		}
		return all, nil
	})
	return method, strings.Join(sources, " and "), cleanup, nil
}

// validateHost checks the fields the pool relies on. Defaults (port 22, strict) are
// applied by the playbook loader; zero values are tolerated here too.
func validateHost(h playbooks.Host, depth int) error {
	switch {
	case h.Address == "":
		return hostInvalid(h, "address is empty")
	case h.User == "":
		return hostInvalid(h, "user is empty")
	case h.Port < 0 || h.Port > 65535:
		return hostInvalid(h, "port %d is out of range", h.Port)
	case h.KnownHostsFile == "":
		return hostInvalid(h, "knownHostsFile is empty: clusterflow never connects without checking host keys")
	case !filepath.IsAbs(h.KnownHostsFile):
		return hostInvalid(h, "knownHostsFile %q must be an absolute path on the worker", h.KnownHostsFile)
	case h.IdentityFile != "" && !filepath.IsAbs(h.IdentityFile):
		return hostInvalid(h, "identityFile %q must be an absolute path on the worker", h.IdentityFile)
	case h.HostKeyPolicy != "" && h.HostKeyPolicy != playbooks.HostKeyStrict && h.HostKeyPolicy != playbooks.HostKeyTOFU:
		return hostInvalid(h, "hostKeyPolicy %q is not %q or %q", h.HostKeyPolicy, playbooks.HostKeyStrict, playbooks.HostKeyTOFU)
	case depth > 4:
		return hostInvalid(h, "jump chain is longer than 4 hosts (a loop?)")
	}
	if h.Via != nil {
		return validateHost(*h.Via, depth+1)
	}
	return nil
}

// poolKey identifies a connection: see Pool.
func poolKey(h playbooks.Host) string {
	policy := h.HostKeyPolicy
	if policy == "" {
		policy = playbooks.HostKeyStrict
	}
	k := fmt.Sprintf("%s@%s id=%s agent=%t known=%s policy=%s", h.User, hostAddr(h), h.IdentityFile, h.UseAgent, h.KnownHostsFile, policy)
	if h.Via != nil {
		k += " via " + poolKey(*h.Via)
	}
	return k
}

// redactKey shortens a pool key to user@addr (and the jump chain) for logs.
func redactKey(key string) string {
	parts := strings.Split(key, " via ")
	for i, part := range parts {
		parts[i], _, _ = strings.Cut(part, " ")
	}
	return strings.Join(parts, " via ")
}

func viaName(h playbooks.Host) string {
	if h.Via == nil {
		return ""
	}
	return hostAddr(*h.Via)
}

func portOf(h playbooks.Host) int {
	if h.Port == 0 {
		return 22
	}
	return h.Port
}
