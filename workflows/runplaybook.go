package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// RunPlaybookInput is the one argument of RunPlaybook. Exactly one field is set: the
// starter sends a plan it has already validated and resolved; a run started from the
// Web UI names a playbook file known to the worker, or carries the YAML inline:
//
//	{"playbook": "hello.yaml"}
type RunPlaybookInput struct {
	Playbook string          `json:"playbook,omitempty"`
	Inline   string          `json:"inline,omitempty"`
	Plan     *playbooks.Plan `json:"plan,omitempty"`
}

// Workflow error types.
const (
	ErrInvalidInput   = "InvalidInput"   // the input cannot run; nothing was started
	ErrPlaybookFailed = "PlaybookFailed" // a step failed beyond its failure budget
)

// WorkflowID is the business ID a playbook runs under. Starting a second run of the
// same playbook while one is open fails with an "already started" error.
func WorkflowID(playbook string) string { return "playbook/" + playbook }

// RunPlaybook executes a playbook's steps in order. Each step fans out over its target
// hosts, at most step.Parallel at a time; a host that fails is left out of later steps,
// and a step whose failures exceed its maxFailPercent budget ends the run. Per-host,
// per-step state is readable at any time through the "progress" query.
func RunPlaybook(ctx workflow.Context, in RunPlaybookInput) (*Progress, error) {
	// Step 1. Resolve the plan and check it before touching any host.
	plan, err := resolvePlan(ctx, in)
	if err != nil {
		return nil, err
	}
	// Step 1b. Take the cluster's lease: one run at a time per cluster (clusterlock.go).
	held, err := acquireLease(ctx, plan)
	if err != nil {
		return nil, err
	}
	r := newRun(plan)
	r.lease = held

	// Step 2. Publish progress: query handler, search attributes, UI details.
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*Progress, error) {
		return r.progress, nil
	}, workflow.QueryHandlerOptions{Description: "per-step, per-host state of the run"}); err != nil {
		return nil, err
	}
	r.upsert(ctx, SAPlaybook.ValueSet(plan.Name), SAStepKinds.ValueSet(stepKinds(plan)), SAOutcome.ValueSet(OutcomeRunning))
	if plan.Cluster != "" {
		r.upsert(ctx, SACluster.ValueSet(plan.Cluster))
	}
	r.publish(ctx)

	// Step 3. Run the steps in order.
	for i := range plan.Steps {
		r.progress.Current = i
		err := r.runStep(ctx, i)
		if err == nil {
			continue
		}
		r.progress.Current = -1
		for j := i + 1; j < len(plan.Steps); j++ {
			r.skipStep(j, "not run: an earlier step failed or the run was cancelled")
		}
		// A cancelled context can no longer record anything; finish in a fresh one.
		dctx, cancel := workflow.NewDisconnectedContext(ctx)
		defer cancel()
		if temporal.IsCanceledError(err) || ctx.Err() != nil {
			r.finish(dctx, OutcomeCancelled, "cancelled")
			return r.progress, temporal.NewCanceledError(r.progress.Summary())
		}
		if workflow.GetVersion(dctx, boundedFailureChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
			// Runs before the change carried the whole progress, unbounded.
			r.finish(dctx, OutcomeFailed, err.Error())
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrPlaybookFailed, nil, r.progress)
		}
		msg := clipText(err.Error(), maxFailureMessage)
		r.finish(dctx, OutcomeFailed, msg)
		return nil, temporal.NewNonRetryableApplicationError(msg, ErrPlaybookFailed, nil, r.failureSummary(i))
	}

	// Step 4. Record the outcome.
	r.progress.Current = -1
	r.finish(ctx, OutcomeCompleted, "")
	return r.progress, nil
}

// resolvePlan returns the plan from the input, loading it on the worker when the
// input names a playbook, and checks what a hand-written JSON input could get wrong.
func resolvePlan(ctx workflow.Context, in RunPlaybookInput) (*playbooks.Plan, error) {
	set := 0
	for _, ok := range []bool{in.Plan != nil, in.Playbook != "", in.Inline != ""} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return nil, invalidInput(`give exactly one of "playbook" (a file name known to the worker), "inline" (playbook YAML) or "plan"; for example {"playbook": "hello.yaml"}`)
	}
	plan := in.Plan
	if plan == nil {
		actx := workflow.WithActivityOptions(ctx, loadOptions)
		req := activities.LoadPlaybookRequest{Playbook: in.Playbook, Inline: in.Inline}
		if err := workflow.ExecuteActivity(actx, playbookActs.LoadPlaybook, req).Get(ctx, &plan); err != nil {
			return nil, invalidInput("loading the playbook: " + errorMessage(err))
		}
	}
	if err := checkPlan(plan); err != nil {
		// A plan over the size limits (playbooks/limits.go) is refused from
		// planLimitsChange on; a run from before, replayed, goes on as it did. The
		// version is asked only then: runs within the limits record no marker.
		if !playbooks.IsLimitError(err) || workflow.GetVersion(ctx, planLimitsChange, workflow.DefaultVersion, 1) != workflow.DefaultVersion {
			return nil, invalidInput(err.Error())
		}
	}
	// A plan whose steps carry fields their kind does not use (a timeout on an
	// installDocker step, sent as JSON) is refused from fieldUseChange on; before, the
	// fields were ignored. As above, the version is asked only for such a plan.
	if err := plan.CheckFieldUse(); err != nil && workflow.GetVersion(ctx, fieldUseChange, workflow.DefaultVersion, 1) != workflow.DefaultVersion {
		return nil, invalidInput(err.Error())
	}
	return plan, nil
}

// planLimitsChange guards the refusal of plans over the size limits.
const planLimitsChange = "plan-limits"

// fieldUseChange guards the refusal of plans with fields their step kind does not use.
const fieldUseChange = "field-use"

// checkPlan checks a plan that may not come from the parser (a plan sent by hand
// from the Web UI) with the playbook rules (Plan.Normalize), and that every step kind
// has a workflow to run it. Plans from the starter or LoadPlaybook pass unchanged.
//
// A plan that breaks only the size limits gets their error last (see resolvePlan).
func checkPlan(p *playbooks.Plan) error {
	err := p.Normalize()
	if err != nil && !playbooks.IsLimitError(err) {
		return err
	}
	for i, s := range p.Steps {
		if _, ok := procedureFor(s.Kind); !ok && s.Kind != playbooks.KindRun && s.Kind != playbooks.KindUpload {
			return fmt.Errorf("plan.steps[%d] (%s): no workflow runs step kind %q", i, s.Name, s.Kind)
		}
	}
	return err
}

func invalidInput(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, ErrInvalidInput, nil)
}

// run is the state of one RunPlaybook execution.
type run struct {
	plan     *playbooks.Plan
	progress *Progress
	failed   map[string]bool // hosts that failed a step; looked up only, never ranged
	lease    *lease          // released by finish
	msgLimit int             // bytes of JSON a host's message may take (hostMessageLimit)
}

func newRun(plan *playbooks.Plan) *run {
	p := &Progress{Playbook: plan.Name, Cluster: plan.Cluster, Outcome: OutcomeRunning, Current: -1}
	for _, s := range plan.Steps {
		st := StepState{Name: s.Name, Kind: s.Kind, Status: StepPending}
		for _, h := range s.Hosts {
			st.Hosts = append(st.Hosts, HostState{Host: h, State: HostPending})
		}
		p.Steps = append(p.Steps, st)
	}
	return &run{plan: plan, progress: p, failed: map[string]bool{}, msgLimit: hostMessageLimit(plan)}
}

// runStep runs step i on its hosts and returns an error when the step's failures
// exceed its budget or the run was cancelled.
func (r *run) runStep(ctx workflow.Context, i int) error {
	step := r.plan.Steps[i]
	st := &r.progress.Steps[i]
	st.Status = StepRunning
	r.upsert(ctx, SAStep.ValueSet(step.Name))
	r.publish(ctx)

	// Hosts that failed an earlier step sit this one out.
	var targets []int
	for k := range st.Hosts {
		if r.failed[st.Hosts[k].Host] {
			st.Hosts[k].State, st.Hosts[k].Message = HostSkipped, "failed in an earlier step"
			continue
		}
		targets = append(targets, k)
	}
	failures := 0
	overBudget := func() bool { return failures*100 > step.MaxFailPercent*len(targets) }

	if p, ok := procedureFor(step.Kind); ok {
		// A procedure works on all its hosts at once, in phases: it runs as a child
		// workflow and reports per host; the budget applies to its outcome.
		failures = r.runProcedure(ctx, i, targets, p)
		return r.endStep(ctx, i, targets, failures, overBudget())
	}

	next := fanOut(ctx, len(targets), step.Parallel,
		func() bool { return !overBudget() && ctx.Err() == nil },
		func(k int) workflow.Future {
			hs := &st.Hosts[targets[k]]
			host, _ := r.plan.HostByName(hs.Host)
			hs.State, hs.Started = HostRunning, workflow.Now(ctx)
			return r.startHost(ctx, step, HostOf(host))
		},
		func(k int, f workflow.Future) {
			hs := &st.Hosts[targets[k]]
			r.finishHost(ctx, step, hs, f)
			if hs.State == HostFailed {
				failures++
				r.failed[hs.Host] = true
			}
			r.publish(ctx)
		})

	// Hosts never started: the budget was spent or the run was cancelled.
	reason := "not started: the step's failure budget was spent"
	if ctx.Err() != nil {
		reason = "not started: the run was cancelled"
	}
	for _, k := range targets[next:] {
		st.Hosts[k].State, st.Hosts[k].Message = HostSkipped, reason
	}

	return r.endStep(ctx, i, targets, failures, overBudget())
}

// endStep sets the step's status and returns an error when the run must stop: it was
// cancelled, or the step's failures exceed its budget.
func (r *run) endStep(ctx workflow.Context, i int, targets []int, failures int, overBudget bool) error {
	step, st := r.plan.Steps[i], &r.progress.Steps[i]
	defer r.recordStep(ctx, i) // metrics, once the status is set
	if ctx.Err() != nil {
		st.Status = StepFailed
		return temporal.NewCanceledError()
	}
	if failures > 0 && overBudget {
		st.Status = StepFailed
		r.publish(ctx)
		return fmt.Errorf("step %q failed on %d of %d hosts (maxFailPercent %d): %s",
			step.Name, failures, len(targets), step.MaxFailPercent, r.failureList(st))
	}
	st.Status = StepDone
	r.publish(ctx)
	return nil
}

// runProcedure runs step i as a child workflow on the target hosts and records each
// host's outcome. It returns the number of hosts that failed.
func (r *run) runProcedure(ctx workflow.Context, i int, targets []int, p procedure) int {
	step, st := r.plan.Steps[i], &r.progress.Steps[i]
	names := make([]string, 0, len(targets))
	for _, k := range targets {
		hs := &st.Hosts[k]
		hs.State, hs.Started = HostRunning, workflow.Now(ctx)
		names = append(names, hs.Host)
	}
	r.publish(ctx)
	hosts := procedureHosts(r.plan, names)
	// The child's ID is derived from the run's own: one child per step, beside its parent.
	cctx := childOptions(ctx, fmt.Sprintf("%s/%d-%s", workflow.GetInfo(ctx).WorkflowExecution.ID, i+1, step.Kind),
		fmt.Sprintf("%s: %s on %d hosts", r.plan.Name, step.Name, len(hosts)))
	outcomes, err := p.run(ctx, cctx, stepCall{step: step, hosts: hosts, cluster: HostsOf(r.plan.Hosts)})

	failures := 0
	now := workflow.Now(ctx)
	for _, k := range targets {
		hs := &st.Hosts[k]
		hs.Finished = now
		switch {
		case err != nil && temporal.IsCanceledError(err):
			hs.State, hs.Message = HostSkipped, "cancelled"
		case err != nil:
			hs.State, hs.Message = HostFailed, errorMessage(err)
		default:
			hs.State, hs.Message = HostFailed, "the procedure reported nothing for this host"
			for _, o := range outcomes {
				if o.Host == hs.Host {
					hs.State, hs.Message = o.State, o.Message
				}
			}
		}
		hs.Message = r.hostMessage(ctx, hs.Message)
		if hs.State == HostFailed {
			failures++
			r.failed[hs.Host] = true
		}
	}
	return failures
}

// startHost schedules the activity that performs step on one host.
func (r *run) startHost(ctx workflow.Context, step playbooks.Step, host remote.Host) workflow.Future {
	actx := workflow.WithActivityOptions(ctx, hostOptions(step, host))
	switch step.Kind {
	case playbooks.KindUpload:
		u := step.Upload
		return workflow.ExecuteActivity(actx, fileActs.UploadFile, activities.UploadRequest{
			Host: host, Src: u.Src, Template: u.Template, Vars: r.plan.Vars,
			Dest: u.Dest, Mode: u.Mode, Owner: u.Owner, Group: u.Group,
		})
	default: // playbooks.KindRun; checkPlan refused every other kind
		c := step.Run
		return workflow.ExecuteActivity(actx, sshActs.RunRemoteCommand, activities.CommandRequest{
			Host: host, Command: c.Command, Creates: c.Creates, Unless: c.Unless,
			Env: c.Env, Dir: c.Dir, ExitCodes: c.ExitCodes,
		})
	}
}

// finishHost records the outcome of one host's activity.
func (r *run) finishHost(ctx workflow.Context, step playbooks.Step, hs *HostState, f workflow.Future) {
	hs.Finished = workflow.Now(ctx)
	var err error
	switch step.Kind {
	case playbooks.KindUpload:
		var res activities.UploadResult
		if err = f.Get(ctx, &res); err == nil {
			if res.Changed {
				hs.State, hs.Message = HostChanged, fmt.Sprintf("wrote %d bytes, sha256 %.12s", res.Bytes, res.SHA256)
			} else {
				hs.State, hs.Message = HostUnchanged, "up to date"
			}
		}
	default:
		var res activities.CommandResult
		if err = f.Get(ctx, &res); err == nil {
			switch {
			case res.Skipped:
				hs.State, hs.Message = HostUnchanged, res.SkipReason
			case exitOK(res.ExitCode, step.Run.ExitCodes):
				hs.State, hs.Message = HostChanged, commandMessage(res)
			default:
				hs.State, hs.Message = HostFailed, commandMessage(res)
			}
		}
	}
	if err != nil {
		if temporal.IsCanceledError(err) {
			hs.State, hs.Message = HostSkipped, "cancelled"
			return
		}
		hs.State, hs.Message = HostFailed, r.hostMessage(ctx, errorMessage(err))
	}
}

func exitOK(code int, allowed []int) bool {
	if len(allowed) == 0 {
		return code == 0
	}
	return slices.Contains(allowed, code)
}

// commandMessage is the short account of a finished command: its exit code and the
// last line of output that says something.
func commandMessage(res activities.CommandResult) string {
	msg := fmt.Sprintf("exit %d", res.ExitCode)
	out := lastLine(res.Stderr)
	if res.ExitCode == 0 || out == "" {
		if o := lastLine(res.Stdout); o != "" {
			out = o
		}
	}
	if out != "" {
		msg += ": " + out
	}
	return msg
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n\r\t ")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	const limit = 200
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return strings.TrimSpace(s)
}

// errorMessage strips the SDK's wrapping (activity type, event IDs) from an activity
// error and keeps what the activity said.
func errorMessage(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		msg := fmt.Sprintf("timed out (%s)", strings.ToLower(strings.TrimPrefix(timeoutErr.TimeoutType().String(), "TIMEOUT_TYPE_")))
		if cause := errors.Unwrap(timeoutErr); cause != nil {
			msg += ": " + errorMessage(cause)
		}
		return msg
	}
	return err.Error()
}

// failureList names the failed hosts of a step with their messages.
func (r *run) failureList(st *StepState) string {
	var parts []string
	for _, h := range st.Hosts {
		if h.State == HostFailed {
			parts = append(parts, h.Host+": "+h.Message)
		}
	}
	return strings.Join(parts, "; ")
}

func (r *run) skipStep(i int, reason string) {
	st := &r.progress.Steps[i]
	st.Status = StepSkipped
	for k := range st.Hosts {
		if st.Hosts[k].State == HostPending {
			st.Hosts[k].State, st.Hosts[k].Message = HostSkipped, reason
		}
	}
}

// finish records the run's outcome in the progress, the search attributes, the memo
// and the UI details.
func (r *run) finish(ctx workflow.Context, outcome, errMsg string) {
	r.progress.Outcome, r.progress.Error = outcome, errMsg
	r.recordRun(ctx, outcome)
	r.upsert(ctx, SAOutcome.ValueSet(outcome), SAStep.ValueUnset())
	if err := workflow.UpsertMemo(ctx, map[string]any{"summary": r.progress.Summary()}); err != nil {
		workflow.GetLogger(ctx).Warn("memo not updated", "error", err)
	}
	r.publish(ctx)
	r.lease.end(ctx)
}

// publish refreshes the Markdown the Web UI shows as the run's current details.
func (r *run) publish(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, r.progress.details())
}

// upsert sets search attributes. A failure is logged, not fatal: the run matters more
// than its listing in the UI.
func (r *run) upsert(ctx workflow.Context, updates ...temporal.SearchAttributeUpdate) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		workflow.GetLogger(ctx).Warn("search attributes not updated", "error", err)
	}
}

// stepKinds lists the plan's step kinds, sorted and without repeats.
func stepKinds(p *playbooks.Plan) []string {
	var kinds []string
	for _, s := range p.Steps {
		if !slices.Contains(kinds, s.Kind) {
			kinds = append(kinds, s.Kind)
		}
	}
	slices.Sort(kinds)
	return kinds
}
