// Command starter validates playbooks and starts, follows, lists and cancels their
// runs. With no Temporal address configured it uses the embedded server: the one a
// running `worker` hosts, or one it starts itself together with an in-process worker,
// so that `starter run PLAYBOOK` alone works on a fresh machine.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes: scripts can tell a failed run from refused input and from trouble
// reaching Temporal.
const (
	exitOK       = 0
	exitFailed   = 1 // the run failed or was cancelled
	exitRefused  = 2 // bad input or flags: nothing was started
	exitNotReady = 3 // Temporal unreachable, or the playbook is already running
)

// exitError carries an exit code with the error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitOK
	if err := run(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr); err != nil {
		code = exitCode(err)
		if !errors.Is(err, errReported) {
			fmt.Fprintln(os.Stderr, "starter:", err)
		}
	}
	stop()
	os.Exit(code)
}

// errReported marks an error whose details were already printed.
var errReported = errors.New("reported")

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitRefused // cobra's own errors: unknown flags, wrong arguments
}

func run(ctx context.Context, args, environ []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:   "starter",
		Short: "Validate clusterflow playbooks and start, follow, list and cancel their runs",
		Long: `starter talks to Temporal: the cluster named by --address / TEMPORAL_ADDRESS, or, when
none is set, the embedded server (the one a running "worker" hosts, or one it starts
itself with an in-process worker and the Web UI on 127.0.0.1:8233).

Exit codes: 0 success, 1 the run failed or was cancelled, 2 input refused (nothing
started), 3 Temporal unreachable or the playbook already running.`,
		Example: `  starter validate playbooks/hello.yaml
  starter run playbooks/hello.yaml
  starter run --detach playbooks/hello.yaml && starter status hello --follow
  starter list
  starter cancel hello`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	env := environ
	root.AddCommand(
		runCommand(env, stdout, stderr),
		validateCommand(env, stdout),
		statusCommand(env, stdout, stderr),
		listCommand(env, stdout, stderr),
		cancelCommand(env, stdout, stderr),
		approveCommand(env, stdout, stderr),
		scheduleCommand(env, stdout, stderr),
	)
	return root.ExecuteContext(ctx)
}
