package remote

import (
	"context"

	"golang.org/x/crypto/ssh"
)

// For the tests of package remote_test, which need a real sshd (internal/sshtest,
// which imports this package).

// ClientOf is the pool's connection to h.
func ClientOf(p *Pool, ctx context.Context, h Host) (*ssh.Client, error) { return p.client(ctx, h) }

// ConnCount is the number of connections (and dials in progress) the pool holds.
func ConnCount(p *Pool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}
