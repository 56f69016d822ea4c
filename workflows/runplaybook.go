package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

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

// Workflow error types. A run whose input cannot run (nothing was started) fails
// with activities.ErrInvalidInput, the activities' type for a request that is wrong.
const (
	ErrPlaybookFailed = "PlaybookFailed" // a step failed beyond its failure budget
)

// Activity option presets.
var (
	// loadOptions read a playbook file on the worker: quick, and bad input is final.
	loadOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{activities.ErrInvalidInput},
		},
	}
	// hostHeartbeat bounds how long a host activity may go silent. It is also how
	// soon a step resumes on another worker after its worker died mid-step.
	hostHeartbeat = 20 * time.Second
	// runHeartbeat is hostHeartbeat for the command activities of run steps, which
	// heartbeat every third of it from their start whatever the host does (and the
	// worker sends heartbeats at least every second): a run step of a killed worker
	// is retried on another within about 3 s. Uploads keep hostHeartbeat: they
	// checksum the source before their first heartbeat.
	runHeartbeat = 3 * time.Second
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
		r.finish(dctx, OutcomeFailed, err.Error())
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrPlaybookFailed, nil, r.progress)
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
		return nil, invalidInput(err.Error())
	}
	return plan, nil
}

// checkPlan catches what JSON decoding lets through (a plan sent by hand from the UI).
// Plans from the starter or LoadPlaybook were fully validated already.
func checkPlan(p *playbooks.Plan) error {
	if p.Name == "" {
		return errors.New("plan.name is empty")
	}
	if len(p.Steps) == 0 {
		return fmt.Errorf("playbook %s has no steps", p.Name)
	}
	for i, s := range p.Steps {
		where := fmt.Sprintf("plan.steps[%d] (%s)", i, s.Name)
		switch {
		case s.Kind == playbooks.KindRun && (s.Run == nil || len(s.Run.Command) == 0):
			return fmt.Errorf("%s: kind run needs run.command", where)
		case s.Kind == playbooks.KindUpload && (s.Upload == nil || s.Upload.Src == "" || s.Upload.Dest == ""):
			return fmt.Errorf("%s: kind upload needs upload.src and upload.dest", where)
		case s.Kind == playbooks.KindDistributeKeys && (s.DistributeKeys == nil || s.DistributeKeys.ClusterKey == ""):
			return fmt.Errorf("%s: kind distributeKeys needs distributeKeys.clusterKey", where)
		case s.Kind == playbooks.KindInstallDocker && s.InstallDocker == nil:
			return fmt.Errorf("%s: kind installDocker needs installDocker", where)
		case s.Kind == playbooks.KindSwarmInit && s.SwarmInit == nil:
			return fmt.Errorf("%s: kind swarmInit needs swarmInit", where)
		case isNodeOp(s.Kind) && (s.Node == nil || s.Node.Op != s.Kind):
			return fmt.Errorf("%s: kind %s needs node.op %q", where, s.Kind, s.Kind)
		case s.Kind == playbooks.KindConsulBootstrap && s.Consul == nil:
			return fmt.Errorf("%s: kind consulBootstrap needs consul", where)
		case s.Kind == playbooks.KindRotateCA && s.RotateCA == nil:
			return fmt.Errorf("%s: kind rotateCA needs rotateCA", where)
		case s.Kind == playbooks.KindCheckCertificates && s.CheckCertificates == nil:
			return fmt.Errorf("%s: kind checkCertificates needs checkCertificates", where)
		case isServiceKind(s.Kind) && (s.Service == nil || s.Service.Service == ""):
			return fmt.Errorf("%s: kind %s needs service.service", where, s.Kind)
		case s.Kind == playbooks.KindRollingNodeUpgrade && (s.Upgrade == nil || s.Upgrade.Docker.Version == ""):
			return fmt.Errorf("%s: kind rollingNodeUpgrade needs upgrade.docker.version", where)
		case s.Kind != playbooks.KindRun && s.Kind != playbooks.KindUpload && !isProcedure(s.Kind):
			return fmt.Errorf("%s: unknown step kind %q", where, s.Kind)
		case s.Parallel < 1 || s.Attempts < 1 || s.Timeout <= 0:
			return fmt.Errorf("%s: parallel, attempts and timeout must be positive", where)
		case s.MaxFailPercent < 0 || s.MaxFailPercent > 100:
			return fmt.Errorf("%s: maxFailPercent must be between 0 and 100", where)
		case len(s.Hosts) == 0:
			return fmt.Errorf("%s: no target hosts", where)
		}
		for _, h := range s.Hosts {
			if _, ok := p.HostByName(h); !ok {
				return fmt.Errorf("%s: host %q is not in plan.hosts", where, h)
			}
		}
	}
	return nil
}

func invalidInput(msg string) error {
	return temporal.NewNonRetryableApplicationError(msg, activities.ErrInvalidInput, nil)
}

// run is the state of one RunPlaybook execution.
type run struct {
	plan     *playbooks.Plan
	progress *Progress
	failed   map[string]bool // hosts that failed a step; looked up only, never ranged
	lease    *lease          // released by finish
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
	return &run{plan: plan, progress: p, failed: map[string]bool{}}
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

	if isProcedure(step.Kind) {
		// A procedure works on all its hosts at once, in phases: it runs as a child
		// workflow and reports per host; the budget applies to its outcome.
		failures = r.runProcedure(ctx, i, targets)
		return r.endStep(ctx, i, targets, failures, overBudget())
	}

	next := boundedFanOut(ctx, len(targets), step.Parallel,
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

// isProcedure reports whether a step kind runs as a procedure workflow.
func isProcedure(kind string) bool {
	switch kind {
	case playbooks.KindDistributeKeys, playbooks.KindInstallDocker, playbooks.KindSwarmInit, playbooks.KindConsulBootstrap,
		playbooks.KindRotateCA, playbooks.KindCheckCertificates, playbooks.KindRollingNodeUpgrade:
		return true
	}
	return isNodeOp(kind) || isServiceKind(kind)
}

// isServiceKind reports whether a step kind runs DeployService.
func isServiceKind(kind string) bool {
	return kind == playbooks.KindDeployService || kind == playbooks.KindUpdateService
}

// isNodeOp reports whether a step kind is a swarm node operation (SwarmNodes).
func isNodeOp(kind string) bool {
	switch kind {
	case playbooks.KindPromote, playbooks.KindDemote, playbooks.KindDrain, playbooks.KindActivate, playbooks.KindRemoveNode:
		return true
	}
	return false
}

// runProcedure runs step i as a child workflow on the target hosts and records each
// host's outcome. It returns the number of hosts that failed.
func (r *run) runProcedure(ctx workflow.Context, i int, targets []int) int {
	step, st := r.plan.Steps[i], &r.progress.Steps[i]
	names := make([]string, 0, len(targets))
	for _, k := range targets {
		hs := &st.Hosts[k]
		hs.State, hs.Started = HostRunning, workflow.Now(ctx)
		names = append(names, hs.Host)
	}
	r.publish(ctx)
	hosts := procedureHosts(r.plan, names)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		// Derived from the run's own ID: one child per step, visible beside its parent.
		WorkflowID:          fmt.Sprintf("%s/%d-%s", workflow.GetInfo(ctx).WorkflowExecution.ID, i+1, step.Kind),
		WaitForCancellation: true,
		StaticSummary:       fmt.Sprintf("%s: %s on %d hosts", r.plan.Name, step.Name, len(hosts)),
	})

	var outcomes []HostOutcome
	var err error
	switch step.Kind {
	case playbooks.KindDistributeKeys:
		var res DistributeKeysResult
		err = workflow.ExecuteChildWorkflow(cctx, DistributeKeys, DistributeKeysInput{
			Hosts: hosts, Keys: *step.DistributeKeys, Parallel: step.Parallel,
			Timeout: step.Timeout, Attempts: step.Attempts,
		}).Get(ctx, &res)
		outcomes = res.Hosts
	case playbooks.KindInstallDocker:
		var res InstallDockerResult
		err = workflow.ExecuteChildWorkflow(cctx, InstallDocker, InstallDockerInput{
			Hosts: hosts, Docker: *step.InstallDocker, Parallel: step.Parallel,
		}).Get(ctx, &res)
		outcomes = res.Hosts
	case playbooks.KindSwarmInit:
		var res SwarmInitResult
		err = workflow.ExecuteChildWorkflow(cctx, SwarmInit, SwarmInitInput{
			Hosts: hosts, Swarm: *step.SwarmInit,
		}).Get(ctx, &res)
		outcomes = res.Hosts
	case playbooks.KindConsulBootstrap:
		var res ConsulBootstrapResult
		err = workflow.ExecuteChildWorkflow(cctx, ConsulBootstrap, ConsulBootstrapInput{
			Hosts: hosts, Consul: *step.Consul, Parallel: step.Parallel,
		}).Get(ctx, &res)
		outcomes = res.Hosts
	case playbooks.KindRotateCA:
		// A failed rotation carries its per-host outcomes as the error's details.
		var res RotateCAResult
		err = workflow.ExecuteChildWorkflow(cctx, RotateCA, RotateCAInput{
			Hosts: hosts, Cluster: HostsOf(r.plan.Hosts), CA: *step.RotateCA, Timeout: step.Timeout,
		}).Get(ctx, &res)
		if detailsInto(err, &res) {
			err = nil
		}
		outcomes = res.Hosts
	case playbooks.KindCheckCertificates:
		var res CheckCertificatesResult
		err = workflow.ExecuteChildWorkflow(cctx, CheckCertificates, CheckCertificatesInput{
			Hosts: hosts, Cluster: HostsOf(r.plan.Hosts), Check: *step.CheckCertificates, Timeout: step.Timeout,
		}).Get(ctx, &res)
		if detailsInto(err, &res) {
			err = nil
		}
		outcomes = res.Hosts
	case playbooks.KindDeployService, playbooks.KindUpdateService:
		var res DeployServiceResult
		err = workflow.ExecuteChildWorkflow(cctx, DeployService, DeployServiceInput{
			Hosts: hosts, Cluster: HostsOf(r.plan.Hosts), Service: *step.Service, Timeout: step.Timeout,
		}).Get(ctx, &res)
		outcomes = res.Hosts
	case playbooks.KindRollingNodeUpgrade:
		var res RollingUpgradeResult
		err = workflow.ExecuteChildWorkflow(cctx, RollingNodeUpgrade, RollingUpgradeInput{
			Hosts: hosts, Cluster: HostsOf(r.plan.Hosts), Upgrade: *step.Upgrade, Timeout: step.Timeout,
		}).Get(ctx, &res)
		outcomes = res.Hosts
	default: // a node operation; checkPlan refused every other kind
		var res SwarmNodesResult
		err = workflow.ExecuteChildWorkflow(cctx, SwarmNodes, SwarmNodesInput{
			Hosts: hosts, Cluster: HostsOf(r.plan.Hosts), Node: *step.Node, Timeout: step.Timeout,
		}).Get(ctx, &res)
		outcomes = res.Hosts
	}

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

// hostOptions is the activity preset for one host of a step: the step's timeout and
// attempts, a heartbeat so a dead worker's attempt is retried within seconds, and
// waiting for cancellation so a cancelled run has stopped its remote commands before
// it reports cancelled.
func hostOptions(step playbooks.Step, host remote.Host) workflow.ActivityOptions {
	heartbeat := hostHeartbeat
	if step.Kind == playbooks.KindRun {
		heartbeat = runHeartbeat
	}
	return workflow.ActivityOptions{
		StartToCloseTimeout: step.Timeout.Std(),
		HeartbeatTimeout:    heartbeat,
		WaitForCancellation: true,
		Summary:             fmt.Sprintf("%s on %s", step.Name, host.Name),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    int32(step.Attempts),
			NonRetryableErrorTypes: []string{
				activities.ErrInvalidInput, activities.ErrAuthFailed,
				activities.ErrHostKeyMismatch, activities.ErrHostKeyUnknown,
			},
		},
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
		hs.State, hs.Message = HostFailed, errorMessage(err)
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
