package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

// follower shows a run's progress until it ends: a table redrawn in place on a
// terminal, one line per change otherwise, or the final result as JSON.
type follower struct {
	s      *session
	id     string
	runID  string
	output string
	out    io.Writer
	tty    bool
	drawn  int                  // lines of the last table drawn, to redraw over
	seen   map[string]hostState // last state printed per step/host, in line mode
	ctx    context.Context
	// waiting is the approval a rolling upgrade of the run waits for, as shown.
	waiting string
}

type hostState struct{ state, message string }

func newFollower(s *session, id, runID, output string, out io.Writer) *follower {
	return &follower{s: s, id: id, runID: runID, output: output, out: out, tty: isTerminal(out), seen: map[string]hostState{}}
}

func (f *follower) ctxOrBackground() context.Context {
	if f.ctx != nil {
		return f.ctx
	}
	return context.Background()
}

// announce prints the run's IDs and Web UI link.
func (f *follower) announce() {
	if f.output == "json" {
		return
	}
	fmt.Fprintf(f.out, "started %s (run %s) on %s\n", f.id, f.runID, f.s.t.HostPort)
	if link := f.s.t.RunLink(f.id, f.runID); link != "" {
		fmt.Fprintf(f.out, "Web UI: %s\n", link)
	}
}

// follow polls the progress query until the run ends, then reports its outcome.
func (f *follower) follow(ctx context.Context, run client.WorkflowRun) error {
	f.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, nil) }()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last *workflows.Progress
	for {
		select {
		case err := <-done:
			if p := f.query(ctx); p != nil {
				last = p
			}
			return f.finish(last, err)
		case <-ctx.Done():
			if f.output != "json" {
				fmt.Fprintf(f.out, "\nstopped following; the run goes on. Follow again: starter status %s --follow\n", strings.TrimPrefix(f.id, "playbook/"))
			}
			return withCode(exitFailed, errors.New("interrupted"))
		case <-tick.C:
			if p := f.query(ctx); p != nil {
				last = p
				f.show(p)
			}
		}
	}
}

// once shows the current state of a run and returns.
func (f *follower) once(ctx context.Context, status enumspb.WorkflowExecutionStatus) error {
	p := f.query(ctx)
	if f.output == "json" {
		return json.NewEncoder(f.out).Encode(map[string]any{"workflowId": f.id, "runId": f.runID, "status": statusName(status), "progress": p})
	}
	fmt.Fprintf(f.out, "%s (run %s): %s\n", f.id, f.runID, statusName(status))
	if p != nil {
		f.tty = false // a snapshot: print the table once, no redraw
		fmt.Fprint(f.out, renderTable(p))
	}
	return nil
}

func (f *follower) query(ctx context.Context) *workflows.Progress {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := f.s.t.Client.QueryWorkflow(qctx, f.id, f.runID, workflows.ProgressQuery)
	if err != nil {
		return nil // no worker yet, or the run has not started its first task
	}
	var p workflows.Progress
	if v.Get(&p) != nil {
		return nil
	}
	return &p
}

func (f *follower) show(p *workflows.Progress) {
	notice := f.approvalNotice(p) + f.stackNotice(p)
	switch {
	case f.output == "json":
	case f.tty:
		table := renderTable(p) + notice
		if f.drawn > 0 {
			fmt.Fprintf(f.out, "\x1b[%dA\x1b[J", f.drawn) // back to the table's first line, clear below
		}
		fmt.Fprint(f.out, table)
		f.drawn = strings.Count(table, "\n")
	default:
		f.printChanges(p)
		if notice != "" && notice != f.waiting {
			fmt.Fprint(f.out, notice)
		}
	}
	f.waiting = notice
}

// approvalNotice says which batch a running rollingNodeUpgrade step waits to have
// approved, and how to approve it; "" when none waits.
func (f *follower) approvalNotice(p *workflows.Progress) string {
	for i, s := range p.Steps {
		if s.Kind != playbooks.KindRollingNodeUpgrade || s.Status != workflows.StepRunning {
			continue
		}
		var up workflows.RollingUpgradeProgress
		if !f.stepProgress(i, s, &up) || up.Waiting == 0 {
			continue
		}
		return fmt.Sprintf("step %d waits for approval of batch %d of %d: starter approve %s\n", i+1, up.Waiting, up.Batches, strings.TrimPrefix(f.id, "playbook/"))
	}
	return ""
}

// stepProgress reads the progress query of step i's procedure into v; false when
// it does not answer.
func (f *follower) stepProgress(i int, s workflows.StepState, v any) bool {
	qctx, cancel := context.WithTimeout(f.ctxOrBackground(), 2*time.Second)
	defer cancel()
	res, err := f.s.t.Client.QueryWorkflow(qctx, fmt.Sprintf("%s/%d-%s", f.id, i+1, s.Kind), "", workflows.ProgressQuery)
	return err == nil && res.Get(v) == nil
}

// stackNotice shows the services of a running deployStack step, one line each:
// what was sent, the update's state, the tasks, the outcome.
func (f *follower) stackNotice(p *workflows.Progress) string {
	var b strings.Builder
	for i, s := range p.Steps {
		if s.Kind != playbooks.KindDeployStack || s.Status != workflows.StepRunning {
			continue
		}
		var st workflows.DeployStackProgress
		if !f.stepProgress(i, s, &st) {
			continue
		}
		fmt.Fprintf(&b, "step %d stack %s: %s\n", i+1, st.Stack, st.Phase)
		for _, svc := range st.Services {
			fmt.Fprintf(&b, "  %-16s %s\n", clip(svc.Key, 16), serviceLine(svc))
		}
	}
	return b.String()
}

// serviceLine is one service of a stack as the terminal shows it.
func serviceLine(s workflows.StackServiceState) string {
	parts := []string{}
	if s.Applied != "" {
		parts = append(parts, s.Applied)
	}
	if s.Status.UpdateState != "" {
		parts = append(parts, "update "+s.Status.UpdateState)
	}
	if s.ServiceID != "" {
		if s.Status.Completed > 0 {
			parts = append(parts, fmt.Sprintf("%d/%d completed", s.Status.Completed, s.Status.Replicas))
		} else {
			parts = append(parts, fmt.Sprintf("%d/%d running", s.Status.Running, s.Status.Replicas))
		}
	}
	if s.Outcome != "" {
		parts = append(parts, s.Outcome)
	}
	if s.Rollback != "" {
		parts = append(parts, "rollback: "+s.Rollback)
	}
	if len(parts) == 0 {
		return "pending"
	}
	return strings.Join(parts, ", ")
}

// printChanges prints one line per host whose state changed since the last poll.
func (f *follower) printChanges(p *workflows.Progress) {
	for i, s := range p.Steps {
		for _, h := range s.Hosts {
			key := fmt.Sprintf("%d/%s", i, h.Host)
			now := hostState{h.State, h.Message}
			if f.seen[key] == now || (h.State == workflows.HostPending && f.seen[key].state == "") {
				continue
			}
			f.seen[key] = now
			line := fmt.Sprintf("%s step %d/%d %-16s %-10s %-9s", time.Now().Format("15:04:05"), i+1, len(p.Steps), clip(s.Name, 16), h.Host, h.State)
			if h.Message != "" {
				line += " " + h.Message
			}
			fmt.Fprintln(f.out, line)
		}
	}
}

// finish prints the outcome and maps it to the exit code.
func (f *follower) finish(p *workflows.Progress, runErr error) error {
	// Without the progress query (no worker answers it), the failure's details tell:
	// a FailureSummary from runs since bounded-failure-details, the whole Progress
	// from runs before.
	var summary *workflows.FailureSummary
	if p == nil && runErr != nil {
		p, summary = failureDetails(runErr)
	}
	if f.output == "json" {
		out := map[string]any{"workflowId": f.id, "runId": f.runID, "progress": p}
		if summary != nil {
			out["failure"] = summary
		}
		if runErr != nil {
			out["error"] = runErr.Error()
		}
		if err := json.NewEncoder(f.out).Encode(out); err != nil {
			return err
		}
	} else if p != nil {
		f.show(p)
		if !f.tty {
			f.printChanges(p)
		}
		fmt.Fprintln(f.out, p.Summary())
	} else if summary != nil {
		fmt.Fprintln(f.out, strings.Join(summary.Lines(), "\n"))
	}
	if runErr != nil {
		if f.output != "json" {
			fmt.Fprintf(f.out, "run failed: %s\n", runMessage(runErr))
		}
		return withCode(exitFailed, errReported)
	}
	return nil
}

// failureDetails reads the details of a failed run's error: a FailureSummary (it
// names the failed step), or else a whole Progress (runs from before the summary).
func failureDetails(runErr error) (*workflows.Progress, *workflows.FailureSummary) {
	var appErr *temporal.ApplicationError
	if !errors.As(runErr, &appErr) || !appErr.HasDetails() {
		return nil, nil
	}
	var fs workflows.FailureSummary
	if appErr.Details(&fs) == nil && fs.FailedStep != "" {
		return nil, &fs
	}
	var p workflows.Progress
	if appErr.Details(&p) == nil && p.Playbook != "" {
		return &p, nil
	}
	return nil, nil
}

// runMessage keeps what the workflow said and drops the SDK's wrapping.
func runMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	if temporal.IsCanceledError(err) {
		return "cancelled"
	}
	return err.Error()
}

// renderTable draws hosts down and steps across.
func renderTable(p *workflows.Progress) string {
	var b strings.Builder
	status := p.Outcome
	if p.Current >= 0 && p.Current < len(p.Steps) {
		s := p.Steps[p.Current]
		status = fmt.Sprintf("step %d/%d: %s (%s)", p.Current+1, len(p.Steps), s.Name, s.Kind)
	}
	title := p.Playbook
	if p.Cluster != "" {
		title += " on " + p.Cluster
	}
	fmt.Fprintf(&b, "%s: %s\n", title, status)
	var hosts []string
	for _, s := range p.Steps {
		for _, h := range s.Hosts {
			if !slices.Contains(hosts, h.Host) {
				hosts = append(hosts, h.Host)
			}
		}
	}
	const col = 11
	fmt.Fprintf(&b, "  %-14s", "HOST")
	for i, s := range p.Steps {
		fmt.Fprintf(&b, " %-*s", col, clip(fmt.Sprintf("%d.%s", i+1, s.Name), col))
	}
	b.WriteString("\n")
	var failures []string
	for _, h := range hosts {
		fmt.Fprintf(&b, "  %-14s", clip(h, 14))
		for _, s := range p.Steps {
			cell := ""
			for _, hs := range s.Hosts {
				if hs.Host == h {
					cell = hs.State
					if hs.State == workflows.HostFailed {
						failures = append(failures, fmt.Sprintf("  %s, %s: %s", h, s.Name, hs.Message))
					}
				}
			}
			fmt.Fprintf(&b, " %-*s", col, cell)
		}
		b.WriteString("\n")
	}
	for _, f := range failures {
		b.WriteString(f + "\n")
	}
	return b.String()
}

func clip(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
