package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func authFailed(h Host, format string, args ...any) *Error {
	return hostErr(h, AuthFailed, format, args...)
}

// dialHost connects and authenticates to h, through h.Via when set.
func (p *Pool) dialHost(ctx context.Context, h Host) (*ssh.Client, error) {
	target := h.Addr()
	// The worker's file policy, before any file is opened: the identity file and
	// the known_hosts file must lie where the worker's operator allows.
	if h.IdentityFile != "" {
		if err := p.files().ReadSSH(h.IdentityFile); err != nil {
			return nil, invalid(h, "identityFile: %v", err)
		}
	}
	if err := p.files().ReadSSH(h.KnownHostsFile); err != nil {
		return nil, invalid(h, "knownHostsFile: %v", err)
	}
	auth, authDesc, cleanup, err := p.authMethod(h)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	hk := &hostKeyCheck{host: h, log: p.log, files: p.files()}
	algos, err := knownHostAlgorithms(h.KnownHostsFile, target)
	if err != nil {
		return nil, invalid(h, "cannot read known_hosts file %s: %v", h.KnownHostsFile, err)
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

	// The jump host's connection first: its dial takes handshake slots of its own,
	// which this one must not hold meanwhile.
	var jump *ssh.Client
	if h.Via != nil {
		if jump, err = p.client(ctx, *h.Via); err != nil {
			return nil, err // already names the jump host
		}
	}
	release, err := p.handshakes.acquire(ctx, h.viaAddr()+">"+target)
	if err != nil {
		return nil, err
	}
	defer release()
	start := time.Now()

	var conn net.Conn
	if jump != nil {
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
	p.opts.Metrics.Timer(SSHHandshakeDuration).Record(time.Since(start))
	return ssh.NewClient(c, chans, reqs), nil
}

// handshakeSlots bounds the handshakes in flight: in the whole pool, and per
// target sshd (see PoolOptions.MaxHandshakes).
type handshakeSlots struct {
	all       chan struct{}
	perTarget int
	inFlight  client.MetricsGauge
	n         atomic.Int64

	mu      sync.Mutex
	targets map[string]*targetSlots
}

// targetSlots are one target's slots; the entry is dropped once nobody holds or
// waits for one.
type targetSlots struct {
	slots chan struct{}
	users int
}

// acquire waits for a slot of target, then for one of the pool (so that a dial
// waiting for a busy target holds none of the pool's). release frees both.
func (hs *handshakeSlots) acquire(ctx context.Context, target string) (release func(), err error) {
	hs.mu.Lock()
	ts := hs.targets[target]
	if ts == nil {
		ts = &targetSlots{slots: make(chan struct{}, hs.perTarget)}
		hs.targets[target] = ts
	}
	ts.users++
	hs.mu.Unlock()
	leave := func() {
		hs.mu.Lock()
		if ts.users--; ts.users == 0 {
			delete(hs.targets, target)
		}
		hs.mu.Unlock()
	}
	select {
	case ts.slots <- struct{}{}:
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
	select {
	case hs.all <- struct{}{}:
	case <-ctx.Done():
		<-ts.slots
		leave()
		return nil, ctx.Err()
	}
	hs.inFlight.Update(float64(hs.n.Add(1)))
	return sync.OnceFunc(func() {
		hs.inFlight.Update(float64(hs.n.Add(-1)))
		<-hs.all
		<-ts.slots
		leave()
	}), nil
}

// classifyDialErr turns a connect or handshake error into a typed application error.
func (p *Pool) classifyDialErr(h Host, err error, timedOut bool, authDesc string) error {
	var nerr net.Error
	var dnsErr *net.DNSError
	msg := err.Error()
	switch {
	case timedOut || (errors.As(err, &nerr) && nerr.Timeout()):
		return unreachable(h, "connection timed out after %s (%v)", p.opts.ConnectTimeout, err)
	case strings.Contains(msg, "unable to authenticate"):
		return authFailed(h, "authentication as %q failed: the server accepted none of the keys from %s. Check that the matching public key is in ~%s/.ssh/authorized_keys on the host", h.User, authDesc, h.User)
	case errors.Is(err, syscall.ECONNREFUSED):
		return unreachable(h, "connection refused: nothing listens on port %d, or a firewall rejects it", h.PortOrDefault())
	case errors.As(err, &dnsErr):
		return unreachable(h, "cannot resolve %q: %v", h.Address, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return unreachable(h, "the connection was closed during the SSH handshake (%v); the server may be overloaded (MaxStartups) or restarting", err)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return unreachable(h, "no route to host (%v)", err)
	default:
		return unreachable(h, "cannot connect: %v", err)
	}
}

// classifyJumpErr handles the jump host's refusal to open a channel to the target.
func (p *Pool) classifyJumpErr(h Host, err error) error {
	jump := h.Via.Label()
	var oce *ssh.OpenChannelError
	switch {
	case errors.As(err, &oce) && oce.Reason == ssh.Prohibited:
		return unreachable(h, "jump %s refuses TCP forwarding (%v); set AllowTcpForwarding yes in its sshd_config", jump, err)
	case errors.As(err, &oce):
		return unreachable(h, "jump %s cannot connect to %s: %v", jump, h.Addr(), err)
	case errors.Is(err, context.DeadlineExceeded):
		return unreachable(h, "jump %s did not connect to %s within %s", jump, h.Addr(), p.opts.ConnectTimeout)
	default:
		return unreachable(h, "through jump %s: %v", jump, err)
	}
}

// authMethod reads the identity file and/or connects to ssh-agent. It returns one
// public-key method offering all keys (x/crypto tries only the first method of a
// kind), a description of the key sources for messages, and a cleanup that closes
// the agent connection once the handshake is over. Agent forwarding is never
// requested.
func (p *Pool) authMethod(h Host) (ssh.AuthMethod, string, func(), error) {
	var signers []ssh.Signer
	var sources []string
	if h.IdentityFile != "" {
		// Read at dial time, on the worker: a key rotated on disk is picked up by
		// the next dial. The key's bytes never leave this function.
		data, err := os.ReadFile(h.IdentityFile)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", nil, invalid(h, "identity file %s does not exist on this worker", h.IdentityFile)
		}
		if err != nil {
			return nil, "", nil, invalid(h, "cannot read identity file: %v", err)
		}
		signer, err := ssh.ParsePrivateKey(data)
		var ppErr *ssh.PassphraseMissingError
		if errors.As(err, &ppErr) {
			return nil, "", nil, authFailed(h, "identity file %s is protected by a passphrase, which clusterflow cannot ask for: load it into ssh-agent (ssh-add %s) on the worker and set useAgent: true", h.IdentityFile, h.IdentityFile)
		}
		if err != nil {
			return nil, "", nil, invalid(h, "identity file %s is not a private key clusterflow can read (%v)", h.IdentityFile, err)
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
		return nil, "", nil, invalid(h, "no credentials: set identityFile or useAgent: true")
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
