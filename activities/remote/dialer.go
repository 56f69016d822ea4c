package remote

import (
	"context"
	"errors"
	"net"

	"golang.org/x/crypto/ssh"
)

// DialUnix connects to a unix socket on h over h's pooled connection. Each call
// takes the pool's current connection, so a client built on it keeps working after
// the pool reconnects.
func (p *Pool) DialUnix(ctx context.Context, h Host, socket string) (net.Conn, error) {
	c, err := p.client(ctx, h)
	if err != nil {
		return nil, err
	}
	return c.DialContext(ctx, "unix", socket)
}

// DialTCP connects to addr, as h sees it, over h's pooled connection.
func (p *Pool) DialTCP(ctx context.Context, h Host, addr string) (net.Conn, error) {
	c, err := p.client(ctx, h)
	if err != nil {
		return nil, err
	}
	return c.DialContext(ctx, "tcp", addr)
}

// ChannelRefused reports whether err is the host's sshd refusing to open a stream
// (DialUnix, DialTCP), and whether it refused by its configuration (prohibited:
// forwarding is not allowed) rather than because the far end could not be reached.
func ChannelRefused(err error) (refused, prohibited bool) {
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) {
		return false, false
	}
	return true, oce.Reason == ssh.Prohibited
}

// Dial opens a connection of its own to h, authenticated and host-key checked like
// a pooled one; a jump host is reached through the pool.
func (p *Pool) Dial(ctx context.Context, h Host) (Conn, error) {
	if err := h.Validate(); err != nil {
		return nil, err
	}
	c, err := p.dialHost(ctx, h)
	if err != nil {
		return nil, err
	}
	return &freshConn{h: h, c: c}, nil
}

// freshConn is a connection outside the pool.
type freshConn struct {
	h Host
	c *ssh.Client
}

func (f *freshConn) Run(ctx context.Context, c Cmd) (Result, error) {
	return execute(ctx, f.h, func(ctx context.Context) (*session, error) {
		s, err := newSession(ctx, f.c, func() {})
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			return nil, unreachable(f.h, "cannot open a session: %v", err)
		}
		return &session{Session: s, release: func() {}, broken: func(string) {}}, nil
	}, c, nil)
}

func (f *freshConn) DialUnix(ctx context.Context, socket string) (net.Conn, error) {
	return f.c.DialContext(ctx, "unix", socket)
}

func (f *freshConn) Close() error { return f.c.Close() }
