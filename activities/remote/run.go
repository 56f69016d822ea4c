package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/ssh"
)

// This file runs one command over one SSH session: the one way of running anything
// on a host, for pooled connections and fresh ones alike.

// cancelGrace is how long a cancelled command gets to end (the wrapper's TERM, then
// KILL after 2 s) before the session is closed without waiting further.
const cancelGrace = 5 * time.Second

// session is an open SSH session with what its owner does at the end.
type session struct {
	*ssh.Session
	release func()              // frees what the session held (a pool slot); idempotent
	broken  func(reason string) // the connection is not usable any more
}

func (s *session) close() {
	s.Session.Close()
	s.release()
}

// newSession opens a session on c, giving up when ctx ends; a session that opens
// after that is closed, and then abandoned runs.
func newSession(ctx context.Context, c *ssh.Client, abandoned func()) (*ssh.Session, error) {
	type opened struct {
		s   *ssh.Session
		err error
	}
	ch := make(chan opened, 1)
	go func() {
		s, err := c.NewSession()
		ch <- opened{s, err}
	}()
	select {
	case o := <-ch:
		return o.s, o.err
	case <-ctx.Done():
		go func() {
			if o := <-ch; o.s != nil {
				o.s.Close()
			}
			abandoned()
		}()
		return nil, ctx.Err()
	}
}

// Run executes c on h over h's pooled connection and waits for it.
func (p *Pool) Run(ctx context.Context, h Host, c Cmd) (Result, error) {
	res, err := execute(ctx, h, func(ctx context.Context) (*session, error) { return p.session(ctx, h) }, c, nil)
	return res, err
}

// Capture is Run keeping the whole standard output, up to limit bytes.
func (p *Pool) Capture(ctx context.Context, h Host, c Cmd, limit int) ([]byte, Result, error) {
	out := &capBuffer{limit: limit}
	res, err := execute(ctx, h, func(ctx context.Context) (*session, error) { return p.session(ctx, h) }, c, out)
	if err != nil {
		return nil, res, err
	}
	if out.over {
		return nil, res, refused(h, "output of %s is larger than %d MiB", c.Argv[0], limit>>20)
	}
	return out.buf.Bytes(), res, nil
}

// execute runs c in a session from open. Standard output goes to capture when set
// (and is then not in the Result), else into the Result's tail. A non-zero exit is
// a result; errors are *Error, or ctx's error when ctx ended (the remote process
// is then being killed by the wrapper).
func execute(ctx context.Context, h Host, open func(context.Context) (*session, error), c Cmd, capture io.Writer) (Result, error) {
	line, err := c.commandLine()
	if err != nil {
		return Result{}, invalid(h, "%v", err)
	}
	start := time.Now()
	out := newOutputSink(TailMax)
	if c.Progress != nil && c.ProgressEvery > 0 {
		// From the start, not from the exec: opening the session may wait for a
		// dial (up to ConnectTimeout) or a free session slot, and a short heartbeat
		// timeout must not take that wait for a dead worker.
		stop := Tick(ctx, c.ProgressEvery, func() { c.Progress(time.Since(start), out.lastLine()) })
		defer stop()
	}
	sess, err := open(ctx)
	if err != nil {
		return Result{}, err
	}
	defer sess.close()

	sess.Stdout = out.stdout()
	if capture != nil {
		sess.Stdout = capture
	}
	sess.Stderr = out.stderr()
	stdin, err := sess.StdinPipe()
	if err != nil {
		return Result{}, unreachable(h, "cannot set up the session: %v", err)
	}
	if err := sess.Start(line); err != nil {
		sess.broken(fmt.Sprintf("exec request failed: %v", err))
		return Result{}, unreachable(h, "cannot start the command: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()

	select {
	case err := <-done:
		res := Result{Stdout: out.out.String(), Stderr: out.err.String(), LastLine: out.lastLine()}
		var exitErr *ssh.ExitError
		switch {
		case err == nil:
			return res, nil
		case errors.As(err, &exitErr):
			res.ExitCode = exitErr.ExitStatus()
			return res, nil
		default:
			// No exit status: the connection (or the channel) went away mid-command.
			sess.broken(fmt.Sprintf("session ended without exit status: %v", err))
			return res, unreachable(h, "the connection was lost while the command ran (%v); the remote command was killed with it, so a retry starts it afresh", err)
		}
	case <-ctx.Done():
		// EOF on the wrapper's stdin: it kills the remote process group.
		stdin.Close()
		select {
		case <-done:
		case <-time.After(cancelGrace):
		}
		return Result{}, ctx.Err()
	}
}

// Tick calls fn every interval until the returned stop is called or ctx ends; stop
// returns once fn is no longer running. It is how long waits keep reporting
// progress (and activities keep heartbeating).
func Tick(ctx context.Context, interval time.Duration, fn func()) (stop func()) {
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}
