package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
)

// This file is the pool's FS: files on hosts over SFTP, as the login user, and the
// sudo path for hosts whose login user may not write where the file goes.

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

// WriteFile makes dest on h hold src with attributes a, atomically (see FS).
func (p *Pool) WriteFile(ctx context.Context, h Host, dest string, src Content, a Attrs, sent *atomic.Int64) error {
	if sent == nil {
		sent = new(atomic.Int64)
	}
	client, closeSFTP, err := p.sftpClient(ctx, h)
	if err != nil {
		return err
	}
	defer closeSFTP()
	if h.Sudo {
		return p.writeSudo(ctx, h, client, dest, src, a, sent)
	}
	return p.writeDirect(ctx, h, client, dest, src, a, sent)
}

// writeDirect writes the file as the login user: temporary file in the destination
// directory (created exclusively), content, fsync, mode, rename over the
// destination. The temporary file is removed on any failure.
func (p *Pool) writeDirect(ctx context.Context, h Host, client *sftp.Client, dest string, src Content, a Attrs, sent *atomic.Int64) error {
	tmp := path.Join(path.Dir(dest), "."+path.Base(dest)+".clusterflow-tmp-"+randomSuffix())
	if err := p.writeTemp(ctx, h, client, tmp, src, sent, func() error {
		// Until the content is complete the file is private (0600); the final mode
		// comes after chown, which would clear setuid bits set before it.
		if a.Owner != "" || a.Group != "" {
			return p.helper(ctx, h, "chown", ChownArgv(a.Owner, a.Group, tmp))
		}
		return nil
	}, a.Mode); err != nil {
		return err
	}
	// OpenSSH's SFTP rename refuses to replace an existing file; posix-rename@openssh.com
	// is rename(2), atomic over the old file.
	if err := client.PosixRename(tmp, dest); err != nil {
		p.removeTemp(ctx, h, client, tmp)
		return sftpError(ctx, h, "renaming the uploaded file onto "+dest, err)
	}
	return nil
}

// writeSudo serves hosts whose login user is not root: the content goes to a
// private file in /tmp as the login user, then one sudo call installs it with mode
// and ownership next to the destination and renames it over the destination.
func (p *Pool) writeSudo(ctx context.Context, h Host, client *sftp.Client, dest string, src Content, a Attrs, sent *atomic.Int64) error {
	suffix := randomSuffix()
	tmp := "/tmp/.clusterflow-upload-" + suffix
	if err := p.writeTemp(ctx, h, client, tmp, src, sent, nil, 0o600); err != nil {
		return err
	}
	defer p.removeTemp(ctx, h, client, tmp)

	stage := path.Join(path.Dir(dest), "."+path.Base(dest)+".clusterflow-tmp-"+suffix)
	install := []string{"install", "-m", fmt.Sprintf("%04o", a.Mode)}
	if a.Owner != "" {
		install = append(install, "-o", a.Owner)
	}
	if a.Group != "" {
		install = append(install, "-g", a.Group)
	}
	install = append(install, "--", tmp, stage)
	script := Join(install) +
		" && { sync -- " + Quote(stage) + " 2>/dev/null || :; }" +
		" && mv -f -- " + Quote(stage) + " " + Quote(dest) +
		" || { rc=$?; rm -f -- " + Quote(stage) + "; exit $rc; }"
	return p.helper(ctx, h, "installing the file with sudo", []string{"/bin/sh", "-c", script})
}

// writeTemp creates tmp exclusively, lets prepare act on it, writes the content
// counting into sent, fsyncs and sets mode. On failure tmp is removed.
func (p *Pool) writeTemp(ctx context.Context, h Host, client *sftp.Client, tmp string, src Content, sent *atomic.Int64, prepare func() error, mode uint32) (err error) {
	file, err := client.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return sftpError(ctx, h, "creating "+tmp, err)
	}
	defer func() {
		if err != nil {
			file.Close()
			p.removeTemp(ctx, h, client, tmp)
		}
	}()
	if err := file.Chmod(0o600); err != nil {
		return sftpError(ctx, h, "chmod "+tmp, err)
	}
	if prepare != nil {
		if err := prepare(); err != nil {
			return err
		}
	}
	r, err := src.Open()
	if err != nil {
		return invalid(h, "upload src: %v", err)
	}
	defer r.Close()
	if _, err := file.ReadFromWithConcurrency(&countingReader{r: r, n: sent}, 0); err != nil {
		return sftpError(ctx, h, "writing "+tmp, err)
	}
	if err := file.Sync(); err != nil {
		var se *sftp.StatusError
		// fsync@openssh.com is an OpenSSH extension; other servers may lack it.
		if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxOpUnsupported {
			return sftpError(ctx, h, "fsync "+tmp, err)
		}
	}
	if err := file.Chmod(os.FileMode(mode)); err != nil {
		return sftpError(ctx, h, "chmod "+tmp, err)
	}
	if err := file.Close(); err != nil {
		return sftpError(ctx, h, "closing "+tmp, err)
	}
	return nil
}

// removeTemp deletes a temporary file, best effort. After a cancellation the SFTP
// client is closed, so it falls back to a short rm over a fresh context.
func (p *Pool) removeTemp(ctx context.Context, h Host, client *sftp.Client, tmp string) {
	if ctx.Err() == nil {
		if err := client.Remove(tmp); err == nil || errors.Is(err, fs.ErrNotExist) {
			return
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	_, _ = p.Run(rctx, h, Cmd{Argv: []string{"rm", "-f", "--", tmp}, Sudo: h.Sudo})
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
