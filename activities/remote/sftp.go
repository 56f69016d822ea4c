package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"path"
	"strings"
	"sync/atomic"

	"github.com/pkg/sftp"
)

// This file is the pool's FS over SFTP, as the login user: reading files and
// creating directories. Files are written by receive.go.

// ReadFile reads path on h as the login user, at most limit bytes.
func (p *Pool) ReadFile(ctx context.Context, h Host, file string, limit int64) ([]byte, error) {
	client, closeSFTP, err := p.sftpClient(ctx, h)
	if err != nil {
		return nil, err
	}
	defer closeSFTP()
	f, err := client.Open(file)
	if err != nil {
		return nil, sftpError(ctx, h, "opening "+file, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, sftpError(ctx, h, "reading "+file, err)
	}
	return b, nil
}

// MkdirAll creates dir (relative: under the login user's home) and its parents,
// sets dir's mode, and returns dir's absolute path.
func (p *Pool) MkdirAll(ctx context.Context, h Host, dir string, mode fs.FileMode) (string, error) {
	client, closeSFTP, err := p.sftpClient(ctx, h)
	if err != nil {
		return "", err
	}
	defer closeSFTP()
	if !path.IsAbs(dir) {
		home, err := client.Getwd()
		if err != nil {
			return "", sftpError(ctx, h, "finding the home directory", err)
		}
		dir = path.Join(home, dir)
	}
	if err := client.MkdirAll(dir); err != nil {
		return "", sftpError(ctx, h, "creating "+dir, err)
	}
	if err := client.Chmod(dir, mode); err != nil {
		return "", sftpError(ctx, h, "chmod "+dir, err)
	}
	return dir, nil
}

// helper runs a step of a file transfer with the host's sudo setting; a non-zero
// exit is a Refused error.
func (p *Pool) helper(ctx context.Context, h Host, what string, argv []string) error {
	r, err := p.Run(ctx, h, Cmd{Argv: argv, Sudo: h.Sudo})
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return refused(h, "%s failed (exit %d): %s", what, r.ExitCode, strings.TrimSpace(r.Stderr+" "+r.Stdout))
	}
	return nil
}

// ChownArgv is the chown command that gives file to owner and group (either may be
// empty).
func ChownArgv(owner, group, file string) []string {
	spec := owner
	if group != "" {
		spec += ":" + group
	}
	return []string{"chown", spec, "--", file}
}

// sftpClient starts the SFTP subsystem on a pooled connection. The returned close
// function ends the client and its session. The client is closed early when ctx
// ends, which makes a transfer in progress fail at once.
func (p *Pool) sftpClient(ctx context.Context, h Host) (*sftp.Client, func(), error) {
	sess, err := p.session(ctx, h)
	if err != nil {
		return nil, nil, err
	}
	stdin, err := sess.StdinPipe()
	if err == nil {
		var stdout io.Reader
		stdout, err = sess.StdoutPipe()
		if err == nil {
			if err = sess.RequestSubsystem("sftp"); err != nil {
				sess.close()
				return nil, nil, refused(h, "the host's sshd offers no SFTP (%v); add a Subsystem sftp line to its sshd_config", err)
			}
			var client *sftp.Client
			client, err = sftp.NewClientPipe(stdout, stdin, sftp.UseConcurrentWrites(true))
			if err == nil {
				stop := context.AfterFunc(ctx, func() { client.Close() })
				return client, func() {
					stop()
					client.Close()
					sess.close()
				}, nil
			}
		}
	}
	sess.close()
	return nil, nil, unreachable(h, "cannot start SFTP: %v", err)
}

// sftpError types an SFTP failure: server status codes (permission denied, no such
// file, disk full) are not fixed by retrying; anything else is a lost connection.
func sftpError(ctx context.Context, h Host, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var se *sftp.StatusError
	if errors.As(err, &se) || errors.Is(err, fs.ErrPermission) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) {
		return refused(h, "%s: %v", what, err)
	}
	return unreachable(h, "%s: %v", what, err)
}

// countingReader counts bytes read into n.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// randomSuffix names temporary files; 96 random bits make collisions moot and names
// unguessable.
func randomSuffix() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}
