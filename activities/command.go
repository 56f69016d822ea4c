package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/playbooks"
)

// SSH runs commands on hosts. Its exported methods are activities.
type SSH struct {
	pool *Pool
	// heartbeatEvery is the longest gap between heartbeats while a command runs;
	// shorter when the activity's heartbeat timeout asks for it.
	heartbeatEvery time.Duration
}

// NewSSH returns the command activities, using pool for connections.
func NewSSH(pool *Pool) *SSH {
	return &SSH{pool: pool, heartbeatEvery: 5 * time.Second}
}

// CommandRequest is the input of RunRemoteCommand: one run step on one host.
type CommandRequest struct {
	Host    playbooks.Host `json:"host"`
	Command []string       `json:"command"` // argv; never interpreted by a shell
	// Creates skips the command when this remote path exists (relative to Dir).
	Creates string `json:"creates,omitempty"`
	// Unless skips the command when this argv exits 0 (run with the same Env, Dir
	// and sudo as the command).
	Unless []string          `json:"unless,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	// Dir is the working directory on the host; it is entered as the login user,
	// before sudo.
	Dir string `json:"dir,omitempty"`
	// ExitCodes that the workflow counts as success. Informational here: the
	// activity returns every exit code as a result and leaves judging to the workflow.
	ExitCodes []int `json:"exitCodes,omitempty"`
}

// CommandResult is what a command did. Stdout and Stderr are tails of at most 4 KiB
// each, valid UTF-8, starting with a "[clusterflow: N earlier bytes not kept]" line
// when output was cut.
type CommandResult struct {
	Skipped    bool   `json:"skipped,omitempty"`
	SkipReason string `json:"skipReason,omitempty"`
	ExitCode   int    `json:"exitCode"`
	Stdout     string `json:"stdout,omitempty"`
	Stderr     string `json:"stderr,omitempty"`
	DurationMs int64  `json:"durationMs"`
}

// CommandProgress is the heartbeat detail of RunRemoteCommand.
type CommandProgress struct {
	Phase     string `json:"phase"` // "creates", "unless" or "command"
	ElapsedMs int64  `json:"elapsedMs"`
	LastLine  string `json:"lastLine,omitempty"` // last output line, at most 200 bytes
}

// RunRemoteCommand runs req.Command on req.Host unless a guard says it is done.
//
// A non-zero exit status is a result (ExitCode), not an error. Errors are transport
// and input problems, typed with the Err* constants. When the activity is cancelled
// or times out, or the worker dies, the remote process group is killed (see
// wrapperScript).
func (s *SSH) RunRemoteCommand(ctx context.Context, req CommandRequest) (CommandResult, error) {
	start := time.Now()
	if len(req.Command) == 0 {
		return CommandResult{}, hostInvalid(req.Host, "command is empty")
	}
	base := remoteExec{env: req.Env, dir: req.Dir, sudo: req.Host.Sudo}
	hbEvery := heartbeatInterval(ctx, s.heartbeatEvery)
	withPhase := func(e remoteExec, phase string) remoteExec {
		if activity.IsActivity(ctx) {
			e.heartbeatEvery = hbEvery
			e.heartbeat = func(elapsed time.Duration, last string) {
				activity.RecordHeartbeat(ctx, CommandProgress{Phase: phase, ElapsedMs: elapsed.Milliseconds(), LastLine: last})
			}
		}
		return e
	}
	skipped := func(reason string) (CommandResult, error) {
		return CommandResult{Skipped: true, SkipReason: reason, DurationMs: time.Since(start).Milliseconds()}, nil
	}

	// Guards first: check, then act.
	if req.Creates != "" {
		e := base
		e.env = nil
		e.argv = []string{"test", "-e", req.Creates}
		r, err := s.pool.run(ctx, req.Host, withPhase(e, "creates"))
		if err != nil {
			return CommandResult{}, err
		}
		if r.exitCode == 0 {
			return skipped(fmt.Sprintf("creates: %s exists", req.Creates))
		}
	}
	if len(req.Unless) > 0 {
		e := base
		e.argv = req.Unless
		r, err := s.pool.run(ctx, req.Host, withPhase(e, "unless"))
		if err != nil {
			return CommandResult{}, err
		}
		if r.exitCode == 0 {
			return skipped(fmt.Sprintf("unless: %s exited 0", shellJoin(req.Unless)))
		}
	}

	e := base
	e.argv = req.Command
	r, err := s.pool.run(ctx, req.Host, withPhase(e, "command"))
	if err != nil {
		return CommandResult{}, err
	}
	return CommandResult{
		ExitCode:   r.exitCode,
		Stdout:     r.stdout,
		Stderr:     r.stderr,
		DurationMs: time.Since(start).Milliseconds(),
	}, nil
}

// heartbeatInterval is def, or a third of the activity's heartbeat timeout when that
// is shorter, so that a heartbeat always lands in time.
func heartbeatInterval(ctx context.Context, def time.Duration) time.Duration {
	if !activity.IsActivity(ctx) {
		return def
	}
	if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 && hb/3 < def {
		return max(hb/3, 100*time.Millisecond)
	}
	return def
}

// tick calls record every interval until the returned stop is called or ctx ends. It
// is how long activities keep heartbeating while they wait on a remote host; stop
// returns once record is no longer running.
func tick(ctx context.Context, interval time.Duration, record func()) (stop func()) {
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
				record()
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
	}
}
