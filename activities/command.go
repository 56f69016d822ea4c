package activities

import (
	"context"
	"fmt"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// SSH runs commands on hosts. Its exported methods are activities.
type SSH struct {
	rem typedRemote
	// heartbeatEvery is the longest gap between heartbeats while a command runs;
	// shorter when the activity's heartbeat timeout asks for it.
	heartbeatEvery time.Duration
}

// NewSSH returns the command activities, reaching hosts through r.
func NewSSH(r remote.Remote) *SSH {
	return &SSH{rem: typedRemote{r}, heartbeatEvery: defaultHeartbeat}
}

// CommandRequest is the input of RunRemoteCommand: one run step on one host.
type CommandRequest struct {
	Host    remote.Host `json:"host"`
	Command []string    `json:"command"` // argv; never interpreted by a shell
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
// activities/remote/wrapper.sh).
func (s *SSH) RunRemoteCommand(ctx context.Context, req CommandRequest) (CommandResult, error) {
	start := time.Now()
	if len(req.Command) == 0 {
		return CommandResult{}, hostInvalid(req.Host, "command is empty")
	}
	base := remote.Cmd{Env: req.Env, Dir: req.Dir, Sudo: req.Host.Sudo}
	run := func(argv []string, phase string) (remote.Result, error) {
		c := base
		c.Argv = argv
		if phase == "creates" {
			c.Env = nil
		}
		return s.rem.run(ctx, req.Host, commandProgress(ctx, c, s.heartbeatEvery, phase))
	}
	skipped := func(reason string) (CommandResult, error) {
		return CommandResult{Skipped: true, SkipReason: reason, DurationMs: time.Since(start).Milliseconds()}, nil
	}

	// Guards first: check, then act.
	if req.Creates != "" {
		r, err := run([]string{"test", "-e", req.Creates}, "creates")
		if err != nil {
			return CommandResult{}, err
		}
		if r.ExitCode == 0 {
			return skipped(fmt.Sprintf("creates: %s exists", req.Creates))
		}
	}
	if len(req.Unless) > 0 {
		r, err := run(req.Unless, "unless")
		if err != nil {
			return CommandResult{}, err
		}
		if r.ExitCode == 0 {
			return skipped(fmt.Sprintf("unless: %s exited 0", remote.Join(req.Unless)))
		}
	}

	r, err := run(req.Command, "command")
	if err != nil {
		return CommandResult{}, err
	}
	return CommandResult{
		ExitCode:   r.ExitCode,
		Stdout:     r.Stdout,
		Stderr:     r.Stderr,
		DurationMs: time.Since(start).Milliseconds(),
	}, nil
}
