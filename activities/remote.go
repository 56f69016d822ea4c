package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/clusterflow/clusterflow/playbooks"
)

// This file runs one remote argv over a pooled connection. It is shared by the
// command and upload activities.

// wrapperScript is run by /bin/sh on the host with the real command line as $1. It
// makes the remote process die with the activity:
//
//   - the command runs in a new session and process group (setsid), with stdin from
//     /dev/null, so the whole group can be signalled;
//   - a watcher reads the session's stdin, which the worker keeps open and never
//     writes to. stdin ends when the worker closes it (the activity was cancelled or
//     timed out) or when sshd loses the connection (worker killed, network gone);
//     then the watcher sends TERM to the group, and KILL after 2 s if any is left;
//   - when the command ends first, the watcher is stopped, and the command's exit
//     status is the wrapper's.
//
// Details: stdin is saved on fd 3 because sh gives background jobs /dev/null as
// stdin; setsid does not fork when its caller is not a group leader, which a
// background job of a non-interactive shell never is, so $! is the new group's id.
// stdin may end before the background job has called setsid (a cancel right after
// the start), when there is no group -$pid yet: so the watcher signals the process
// $pid first (which then dies before starting anything) and the group second (which
// by then holds everything started). The watcher ignores TERM once it has started
// killing, so the main shell's clean-up cannot interrupt it. "wait ... 2>/dev/null"
// keeps dash's "Terminated" job notices out of the command's stderr. Zombies count
// as group members, so where init reaps orphans slowly the watcher may take the full
// 2 s. With sudo, sudo is in the group and relays TERM to the command (which sudo's
// use_pty puts in a session of its own); KILL reaches sudo only.
//
// Only POSIX sh, setsid (util-linux or busybox), kill and sleep are needed on the
// host.
const wrapperScript = `exec 3<&0
setsid /bin/sh -c "$1" </dev/null 3<&- &
pid=$!
(
  while read -r line; do :; done
  trap '' TERM
  kill -TERM $pid; kill -TERM -$pid
  n=0
  while { kill -0 -$pid || kill -0 $pid; } && [ $n -lt 20 ]; do sleep 0.1; n=$((n+1)); done
  kill -KILL -$pid; kill -KILL $pid
) <&3 >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait $pid 2>/dev/null
rc=$?
kill $watcher 2>/dev/null
wait $watcher 2>/dev/null
exit $rc`

// cancelGrace is how long a cancelled command gets to end (the wrapper's TERM, then
// KILL after 2 s) before the session is closed without waiting further.
const cancelGrace = 5 * time.Second

// remoteExec describes one remote run.
type remoteExec struct {
	argv []string
	env  map[string]string
	dir  string
	sudo bool
	// heartbeat, when set, is called every heartbeatEvery while the command runs.
	heartbeat      func(elapsed time.Duration, lastLine string)
	heartbeatEvery time.Duration
}

// execResult is the outcome of a remote run that reached an exit status.
type execResult struct {
	exitCode int
	stdout   string
	stderr   string
	lastLine string
}

// envKeyRE is what a portable environment variable name looks like.
var envKeyRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// commandLine builds the shell command line that sshd hands to the login shell. Every
// argv element, env value and directory is single-quoted; nothing is pasted raw.
// The login shell must be POSIX-like (sh, bash, dash, ksh, zsh).
func (e remoteExec) commandLine() (string, error) {
	if len(e.argv) == 0 {
		return "", errors.New("command is empty")
	}
	for _, a := range e.argv {
		if strings.ContainsRune(a, 0) {
			return "", fmt.Errorf("command argument %q contains a NUL byte", a)
		}
	}
	var inner strings.Builder
	if e.dir != "" {
		inner.WriteString("cd " + shellQuote(e.dir) + " && ")
	}
	inner.WriteString("exec ")
	if e.sudo {
		// -n: never prompt; a sudo that needs a password fails at once instead.
		inner.WriteString("sudo -n -- ")
	}
	if len(e.env) > 0 {
		// After sudo, so that sudo's environment reset does not drop the variables.
		inner.WriteString("env ")
		keys := make([]string, 0, len(e.env))
		for k := range e.env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !envKeyRE.MatchString(k) {
				return "", fmt.Errorf("env name %q is not a valid variable name", k)
			}
			v := e.env[k]
			if strings.ContainsRune(v, 0) {
				return "", fmt.Errorf("env %s contains a NUL byte", k)
			}
			inner.WriteString(shellQuote(k+"="+v) + " ")
		}
	}
	for i, a := range e.argv {
		if i > 0 {
			inner.WriteByte(' ')
		}
		inner.WriteString(shellQuote(a))
	}
	return "exec /bin/sh -c " + shellQuote(wrapperScript) + " clusterflow " + shellQuote(inner.String()), nil
}

// shellQuote quotes s for a POSIX shell. Inside single quotes nothing is special
// but the single quote itself, which becomes: end quote, escaped quote, new quote.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin quotes and joins an argv, for messages.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// run executes e on h and waits for it. A non-zero exit is a result, not an error.
// Errors are typed application errors, or ctx's error when ctx ended (the remote
// process is then being killed by the wrapper).
func (p *Pool) run(ctx context.Context, h playbooks.Host, e remoteExec) (execResult, error) {
	line, err := e.commandLine()
	if err != nil {
		return execResult{}, hostInvalid(h, "%v", err)
	}
	start := time.Now()
	out := newOutputSink(tailMax)
	if e.heartbeat != nil && e.heartbeatEvery > 0 {
		// From the start, not from the exec: opening the session may wait for a
		// dial (up to ConnectTimeout) or a free session slot, and a short heartbeat
		// timeout must not take that wait for a dead worker.
		stop := tick(ctx, e.heartbeatEvery, func() { e.heartbeat(time.Since(start), out.lastLine()) })
		defer stop()
	}
	sess, err := p.session(ctx, h)
	if err != nil {
		return execResult{}, err
	}
	defer sess.Close()

	sess.Stdout = out.stdout()
	sess.Stderr = out.stderr()
	stdin, err := sess.StdinPipe()
	if err != nil {
		return execResult{}, hostUnreachable(h, "cannot set up the session: %v", err)
	}
	if err := sess.Start(line); err != nil {
		p.evict(sess.pc, fmt.Sprintf("exec request failed: %v", err))
		return execResult{}, hostUnreachable(h, "cannot start the command: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()

	select {
	case err := <-done:
		return p.finish(h, sess, out, err)
	case <-ctx.Done():
		// EOF on the wrapper's stdin: it kills the remote process group.
		stdin.Close()
		select {
		case <-done:
		case <-time.After(cancelGrace):
		}
		return execResult{}, ctx.Err()
	}
}

func (p *Pool) finish(h playbooks.Host, sess *pooledSession, out *outputSink, err error) (execResult, error) {
	res := execResult{stdout: out.out.String(), stderr: out.err.String(), lastLine: out.lastLine()}
	var exitErr *ssh.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &exitErr):
		res.exitCode = exitErr.ExitStatus()
		return res, nil
	default:
		// No exit status: the connection (or the channel) went away mid-command.
		p.evict(sess.pc, fmt.Sprintf("session ended without exit status: %v", err))
		return res, hostUnreachable(h, "the connection was lost while the command ran (%v); the remote command was killed with it, so a retry starts it afresh", err)
	}
}

// tailMax bounds the stdout and stderr kept per command (each).
const tailMax = 4096

// outputSink collects both streams into bounded tails and remembers the last line
// written to either, for heartbeats.
type outputSink struct {
	out, err *tailBuffer
	last     lineTracker
}

func newOutputSink(limit int) *outputSink {
	return &outputSink{out: newTailBuffer(limit), err: newTailBuffer(limit)}
}

func (o *outputSink) stdout() io.Writer { return io.MultiWriter(o.out, &o.last) }
func (o *outputSink) stderr() io.Writer { return io.MultiWriter(o.err, &o.last) }
func (o *outputSink) lastLine() string  { return o.last.String() }
