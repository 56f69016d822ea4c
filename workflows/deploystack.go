package workflows

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/compose"
	"github.com/clusterflow/clusterflow/playbooks"
)

// DeployStackName is the registered name of DeployStack: stable, histories use it.
const DeployStackName = "DeployStack"

// DeployStackInput is the one argument of DeployStack. From the Web UI:
//
//	{"hosts": [{"name": "master", "address": "10.211.73.11", "port": 22, "user": "root",
//	  "identityFile": "/path/id_ed25519", "knownHostsFile": "/path/known_hosts"}],
//	 "stack": {"stack": "demo", "compose": ["stacks/demo/compose.yaml"],
//	  "dir": "/path/playbooks", "rollbackOnFailure": true},
//	 "timeout": "10m"}
type DeployStackInput struct {
	// Hosts are the step's hosts: the candidates for the manager to ask, and the
	// hosts whose outcome is reported.
	Hosts []remote.Host `json:"hosts"`
	// Cluster is every host of the inventory: where a named manager is looked up.
	Cluster []remote.Host       `json:"cluster,omitempty"`
	Stack   playbooks.StackStep `json:"stack"`
	// Timeout bounds the wait for the services' outcomes (and, on a failure, for
	// the rollback's); default 10m.
	Timeout playbooks.Duration `json:"timeout,omitempty"`
}

// DeployStackResult is the stack's outcome, service by service.
type DeployStackResult struct {
	Hosts   []HostOutcome `json:"hosts"`
	Manager string        `json:"manager,omitempty"`
	Stack   string        `json:"stack"`
	// Outcome: activities.ServiceCompleted (something changed, every service
	// converged), ServiceUnchanged (nothing to do), or ServiceFailed.
	Outcome  string              `json:"outcome"`
	Message  string              `json:"message"`
	Services []StackServiceState `json:"services"`
	// Networks created, and the secrets and configs as the engine has them (names
	// and digests; never their content).
	Networks []string                 `json:"networks,omitempty"`
	Objects  []activities.StackObject `json:"objects,omitempty"`
	Cleanup  *activities.StackCleanup `json:"cleanup,omitempty"`
	// Files are the Compose files read (and those they include), relative to the
	// playbook's directory.
	Files []string `json:"files,omitempty"`
	// RolledBack: a service failed and rollbackOnFailure put the stack back.
	RolledBack bool `json:"rolledBack,omitempty"`
}

func (r *DeployStackResult) hostOutcomes() []HostOutcome { return r.Hosts }

// StackServiceState is one service of a stack, as the progress query and the
// result show it.
type StackServiceState struct {
	Key       string `json:"key"`  // its name in the Compose file
	Name      string `json:"name"` // the swarm service (STACK_key)
	ServiceID string `json:"serviceId,omitempty"`
	// Applied says what was sent ("created", "updated: image", "unchanged").
	Applied string `json:"applied,omitempty"`
	// Outcome: activities.ServiceCompleted, ServiceUnchanged, ServiceRolledBack,
	// ServicePaused, ServiceTaskFailed, or ServiceFailed ("" while it runs).
	Outcome string                   `json:"outcome,omitempty"`
	Message string                   `json:"message,omitempty"`
	Status  activities.ServiceStatus `json:"status"`
	// Rollback is what the stack's rollback did to it.
	Rollback string `json:"rollback,omitempty"`

	applied activities.StackServiceApplied
}

// Phases of DeployStack, as the progress query shows them.
const (
	StackPhaseManager  = "find-manager"
	StackPhaseLoad     = "load"
	StackPhaseNetworks = "networks"
	StackPhaseObjects  = "secrets-configs"
	StackPhaseApply    = "apply"
	StackPhaseWatch    = "watch"
	StackPhaseRollback = "rollback"
	StackPhaseCleanup  = "cleanup"
	StackPhaseDone     = "done"
)

// DeployStackProgress is the result of DeployStack's "progress" query.
type DeployStackProgress struct {
	Stack    string                   `json:"stack"`
	Manager  string                   `json:"manager,omitempty"`
	Phase    string                   `json:"phase"`
	Services []StackServiceState      `json:"services"`
	Objects  []activities.StackObject `json:"objects,omitempty"`
	Outcome  string                   `json:"outcome,omitempty"`
	Message  string                   `json:"message,omitempty"`
}

// DeployStack deploys a stack from Compose files (step kind deployStack) through a
// manager, as `docker stack deploy` does, and follows every service to a
// definite outcome: completed, unchanged, rolled-back (the engine's reason),
// paused, or failed (a task that runs once failed). Jobs and services with
// restart condition none count as done once their tasks completed. One service
// that fails fails the step; with rollbackOnFailure every service the step
// changed goes back to the spec it had before (one it created is removed). The
// stack's secrets and configs are created on the worker's side, their content
// never in history: a changed content is a new object (named with its digest),
// the services move to it, and the old one is removed once nothing uses it.
func DeployStack(ctx workflow.Context, in DeployStackInput) (*DeployStackResult, error) {
	// Step 1. Check the input before asking any engine.
	if err := checkDeployStack(&in); err != nil {
		return nil, invalidInput(err.Error())
	}
	st := in.Stack
	timeout := in.Timeout.Std()
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	// Step 2. Publish progress.
	prog := &DeployStackProgress{Stack: st.Stack, Phase: StackPhaseManager, Services: []StackServiceState{}}
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*DeployStackProgress, error) {
		return prog, nil
	}, workflow.QueryHandlerOptions{Description: "the stack's services: what was sent, their update state and tasks"}); err != nil {
		return nil, err
	}
	res := &DeployStackResult{Stack: st.Stack}
	d := &stackDeploy{ctx: ctx, in: in, prog: prog, res: res, timeout: timeout}
	d.publish(StackPhaseManager)

	// Step 3. The manager.
	manager, err := serviceManager(ctx, st.Manager, in.Hosts, in.Cluster, "stack.manager")
	if err != nil {
		if isInvalidInput(err) {
			return nil, err
		}
		return d.finish(ServiceFailed, errorMessage(err))
	}
	d.manager = manager
	res.Manager, prog.Manager = manager.Name, manager.Name

	// Step 4. Load the Compose files on the worker: names and digests come back.
	d.publish(StackPhaseLoad)
	var plan activities.StackPlan
	if err := workflow.ExecuteActivity(withSummary(ctx, loadOptions, "load stack "+st.Stack), swarmActs.LoadStack,
		activities.LoadStackRequest{Stack: st}).Get(ctx, &plan); err != nil {
		return d.finish(ServiceFailed, errorMessage(err))
	}
	res.Files = plan.Stack.Files
	for _, svc := range plan.Stack.Services {
		prog.Services = append(prog.Services, StackServiceState{Key: svc.Key, Name: svc.Spec.Name})
	}

	// Step 5. Networks, then secrets and configs.
	d.publish(StackPhaseNetworks)
	var nets activities.StackNetworks
	if err := workflow.ExecuteActivity(d.opts("networks of stack "+st.Stack), swarmActs.EnsureStackNetworks,
		activities.StackNetworksRequest{Manager: manager, Networks: plan.Stack.Networks}).Get(ctx, &nets); err != nil {
		return d.finish(ServiceFailed, "networks: "+errorMessage(err))
	}
	res.Networks = nets.Created
	if len(plan.Objects) > 0 {
		d.publish(StackPhaseObjects)
		req := activities.StackObjectsRequest{Manager: manager, Stack: st.Stack, Dir: st.Dir, Plans: plan.Objects}
		for _, p := range plan.Objects {
			objs := plan.Stack.Configs
			if p.Kind == activities.ObjectSecret {
				objs = plan.Stack.Secrets
			}
			i := slices.IndexFunc(objs, func(o compose.Object) bool { return o.Key == p.Key })
			req.Objects, req.Kinds = append(req.Objects, objs[i]), append(req.Kinds, p.Kind)
		}
		if err := workflow.ExecuteActivity(d.opts("secrets and configs of stack "+st.Stack), swarmActs.EnsureStackObjects, req).Get(ctx, &res.Objects); err != nil {
			return d.finish(ServiceFailed, "secrets and configs: "+errorMessage(err))
		}
		prog.Objects = res.Objects
	}

	// Step 6. Each service created or updated, unless it has its spec already.
	d.publish(StackPhaseApply)
	failed := false
	for i, svc := range plan.Stack.Services {
		s := &prog.Services[i]
		err := workflow.ExecuteActivity(d.opts("apply "+svc.Spec.Name+" on "+manager.Name), swarmActs.ApplyStackService,
			activities.ApplyStackServiceRequest{Manager: manager, Service: svc, Networks: nets.IDs, Objects: res.Objects,
				RegistryAuth: st.RegistryAuth, Dir: st.Dir}).Get(ctx, &s.applied)
		if err != nil {
			s.Outcome, s.Message = ServiceFailed, errorMessage(err)
			failed = true
			break
		}
		s.ServiceID, s.Applied = s.applied.ServiceID, s.applied.Message
		d.publish(StackPhaseApply)
	}

	// Step 7. Follow every service sent to an outcome, all at once.
	if !failed {
		d.publish(StackPhaseWatch)
		var sent []int
		for i, s := range prog.Services {
			if s.ServiceID != "" {
				sent = append(sent, i)
			}
		}
		d.followAll(sent, func(s *StackServiceState, st activities.ServiceStatus, msg string) {
			s.Status = st
			switch {
			case msg != "":
				s.Outcome, s.Message = ServiceFailed, msg
			case st.Outcome == activities.ServiceRolledBack:
				s.Outcome, s.Message = st.Outcome, "rolled back: "+st.RollbackReason
			case st.Outcome == activities.ServicePaused:
				s.Outcome, s.Message = st.Outcome, "update paused: "+st.Message
			case st.Outcome == activities.ServiceTaskFailed:
				s.Outcome, s.Message = st.Outcome, "a task failed: "+st.Message
			default:
				s.Outcome, s.Message = st.Outcome, s.Applied+"; "+statusText(st)
			}
		})
		failed = slices.ContainsFunc(prog.Services, func(s StackServiceState) bool {
			return s.Outcome != activities.ServiceCompleted && s.Outcome != activities.ServiceUnchanged
		})
	}
	if ctx.Err() != nil {
		return d.finish(ServiceFailed, "cancelled")
	}

	// Step 8. A failure: roll the stack back, when asked, and remove what the step
	// made that nothing uses now.
	if failed {
		why := d.failures()
		if !st.RollbackOnFailure {
			return d.finish(ServiceFailed, why)
		}
		d.rollback()
		d.cleanup(plan, false)
		return d.finish(ServiceFailed, why+"; the stack was rolled back: "+d.rollbackText())
	}

	// Step 9. All converged: the leftovers go (old versions of rotated secrets and
	// configs; with prune, the services and objects the files no longer have).
	d.cleanup(plan, true)
	changed := len(res.Networks) > 0 || slices.ContainsFunc(res.Objects, func(o activities.StackObject) bool { return o.Created }) ||
		slices.ContainsFunc(prog.Services, func(s StackServiceState) bool { return s.Outcome == activities.ServiceCompleted }) ||
		(res.Cleanup != nil && len(res.Cleanup.Services)+len(res.Cleanup.Secrets)+len(res.Cleanup.Configs) > 0)
	outcome := activities.ServiceUnchanged
	if changed {
		outcome = activities.ServiceCompleted
	}
	return d.finish(outcome, d.summary())
}

// checkDeployStack validates DeployStack's input and applies the defaults of its
// settings (StackStep.Normalize).
func checkDeployStack(in *DeployStackInput) error {
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return err
	}
	return in.Stack.Normalize(playbooks.Scope{Hosts: names, Inventory: hostNames(in.Cluster, in.Hosts)}).Err("stack")
}

// stackDeploy is the state of one DeployStack run.
type stackDeploy struct {
	ctx     workflow.Context
	in      DeployStackInput
	prog    *DeployStackProgress
	res     *DeployStackResult
	manager remote.Host
	timeout time.Duration
}

func (d *stackDeploy) opts(summary string) workflow.Context {
	return withSummary(d.ctx, swarmOptions, summary)
}

// followAll follows the services picked (indexes of prog.Services), each in a
// coroutine of its own, and records each one's end with done.
func (d *stackDeploy) followAll(picked []int, done func(s *StackServiceState, st activities.ServiceStatus, msg string)) {
	eachHost(d.ctx, len(picked), 0, func(ctx workflow.Context, k int) {
		s := &d.prog.Services[picked[k]]
		st, msg := followService(ctx, d.manager, s.applied.ServiceApplied, d.timeout, func(st activities.ServiceStatus) {
			s.Status = st
			d.publish(d.prog.Phase)
		})
		done(s, st, msg)
		d.publish(d.prog.Phase)
	})
}

// rollback puts every service the step changed back to its spec from before the
// step (removes one it created), and follows the updates.
func (d *stackDeploy) rollback() {
	d.res.RolledBack = true
	d.publish(StackPhaseRollback)
	var back []int
	for i := range d.prog.Services {
		s := &d.prog.Services[i]
		if !s.applied.Changed {
			continue
		}
		var applied activities.ServiceApplied
		err := workflow.ExecuteActivity(d.opts("roll back "+s.Name), swarmActs.RollbackStackService, activities.RollbackStackServiceRequest{
			Manager: d.manager, ServiceID: s.ServiceID, Name: s.Name, Before: s.applied.Before,
		}).Get(d.ctx, &applied)
		switch {
		case err != nil:
			s.Rollback = "failed: " + errorMessage(err)
		case !applied.Changed && s.applied.Before != nil:
			s.Rollback = "back to its spec already (the engine rolled it back)"
		case s.applied.Before == nil:
			s.Rollback = applied.Message
		default:
			s.Rollback = applied.Message
			s.applied.ServiceApplied = applied
			back = append(back, i)
		}
		d.publish(StackPhaseRollback)
	}
	d.followAll(back, func(s *StackServiceState, st activities.ServiceStatus, msg string) {
		s.Status = st
		switch {
		case msg != "":
			s.Rollback += "; " + msg
		case st.Outcome == activities.ServiceCompleted:
			s.Rollback += "; " + statusText(st)
		default:
			s.Rollback += "; then " + st.Outcome + ": " + cmp.Or(st.RollbackReason, st.Message)
		}
	})
}

// cleanup removes the stack's leftovers: after a deploy that converged, old
// versions of its secrets and configs (and, with prune, what the files no longer
// have); after a rollback, the objects the step made that nothing uses now.
func (d *stackDeploy) cleanup(plan activities.StackPlan, converged bool) {
	d.publish(StackPhaseCleanup)
	req := activities.StackCleanupRequest{Manager: d.manager, Stack: d.in.Stack.Stack, Prune: converged && d.in.Stack.Prune}
	for _, svc := range plan.Stack.Services {
		req.Services = append(req.Services, svc.Spec.Name)
	}
	for _, o := range d.res.Objects {
		if converged || !o.Created {
			req.Keep = append(req.Keep, o.ID)
		}
		req.Names = append(req.Names, o.Kind+"/"+o.Name)
	}
	var out activities.StackCleanup
	if err := workflow.ExecuteActivity(d.opts("clean up stack "+d.in.Stack.Stack), swarmActs.CleanupStack, req).Get(d.ctx, &out); err != nil {
		// What is left is removed by the next run; the deploy itself is done.
		d.res.Cleanup = &activities.StackCleanup{Error: errorMessage(err)}
		return
	}
	d.res.Cleanup = &out
}

// failures says which services failed and why.
func (d *stackDeploy) failures() string {
	var parts []string
	for _, s := range d.prog.Services {
		if s.Outcome != "" && s.Outcome != activities.ServiceCompleted && s.Outcome != activities.ServiceUnchanged {
			parts = append(parts, fmt.Sprintf("service %s: %s", s.Key, s.Message))
		}
	}
	if len(parts) == 0 {
		return "a service failed"
	}
	return strings.Join(parts, "; ")
}

// rollbackText sums up the rollback: "web rolled back: image; db removed".
func (d *stackDeploy) rollbackText() string {
	var parts []string
	for _, s := range d.prog.Services {
		if s.Rollback != "" {
			parts = append(parts, s.Key+" "+s.Rollback)
		}
	}
	if len(parts) == 0 {
		return "nothing had changed"
	}
	return strings.Join(parts, "; ")
}

// summary is the outcome line of a deploy that converged: each service's outcome,
// then what was made and removed.
func (d *stackDeploy) summary() string {
	var parts []string
	for _, s := range d.prog.Services {
		text := s.Key + " " + s.Outcome
		if s.Outcome == activities.ServiceCompleted {
			text += " (" + strings.TrimPrefix(s.Applied, "updated: ") + ", " + statusText(s.Status) + ")"
		}
		parts = append(parts, text)
	}
	msg := "services: " + strings.Join(parts, ", ")
	if n := d.res.Networks; len(n) > 0 {
		msg += "; networks created: " + strings.Join(n, ", ")
	}
	var made []string
	for _, o := range d.res.Objects {
		if o.Created {
			made = append(made, o.Kind+" "+o.EngineName)
		}
	}
	if len(made) > 0 {
		msg += "; created " + strings.Join(made, ", ")
	}
	if c := d.res.Cleanup; c != nil {
		if removed := c.Text(); removed != "" {
			msg += "; removed " + removed
		}
	}
	return msg
}

// finish records the outcome on every host of the step.
func (d *stackDeploy) finish(outcome, msg string) (*DeployStackResult, error) {
	d.res.Outcome, d.res.Message = outcome, msg
	d.res.Services = d.prog.Services
	d.prog.Outcome, d.prog.Message = outcome, msg
	state := HostFailed
	switch outcome {
	case activities.ServiceCompleted:
		state = HostChanged
	case activities.ServiceUnchanged:
		state = HostUnchanged
	}
	for _, h := range d.in.Hosts {
		d.res.Hosts = append(d.res.Hosts, HostOutcome{Host: h.Name, State: state, Message: msg})
	}
	d.publish(StackPhaseDone)
	if d.ctx.Err() != nil {
		return d.res, temporal.NewCanceledError("DeployStack cancelled")
	}
	return d.res, nil
}

// publish sets the phase and refreshes the Markdown the Web UI shows as the run's
// current details.
func (d *stackDeploy) publish(phase string) {
	p := d.prog
	p.Phase = phase
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**stack %s**", p.Stack))
	if p.Manager != "" {
		b.WriteString(" through " + p.Manager)
	}
	b.WriteString(": " + p.Phase)
	if p.Outcome != "" {
		b.WriteString(fmt.Sprintf("\n\noutcome **%s**: %s", p.Outcome, strings.ReplaceAll(p.Message, "|", "\\|")))
	}
	b.WriteString("\n\n| service | sent | state | tasks | outcome |\n|---|---|---|---|---|\n")
	for _, s := range p.Services {
		b.WriteString(fmt.Sprintf("| %s | %s | %s | %s | %s |\n", s.Key, s.Applied, s.Status.UpdateState, taskCount(s.Status),
			strings.ReplaceAll(s.Outcome+" "+s.Rollback, "|", "\\|")))
	}
	workflow.SetCurrentDetails(d.ctx, b.String())
}

// taskCount is "2/3", or "3/3 done" for tasks that ran to completion.
func taskCount(st activities.ServiceStatus) string {
	if st.Completed > 0 {
		return fmt.Sprintf("%d/%d done", st.Completed, st.Replicas)
	}
	return fmt.Sprintf("%d/%d", st.Running, st.Replicas)
}
