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

// DeployServiceName is the registered name of DeployService: stable, histories use it.
const DeployServiceName = "DeployService"

// DeployServiceInput is the one argument of DeployService. From the Web UI:
//
//	{"hosts": [{"name": "master", "address": "10.211.73.11", "port": 22, "user": "root",
//	  "identityFile": "/path/id_ed25519", "knownHostsFile": "/path/known_hosts"}],
//	 "service": {"create": true, "service": "web", "image": "web:2", "replicas": 3,
//	  "updateConfig": {"parallelism": 1, "monitor": "5s", "failureAction": "rollback", "order": "stop-first"}},
//	 "timeout": "10m"}
type DeployServiceInput struct {
	// Hosts are the step's hosts: the candidates for the manager to ask, and the
	// hosts whose outcome is reported.
	Hosts []remote.Host `json:"hosts"`
	// Cluster is every host of the inventory: where a named manager is looked up.
	Cluster []remote.Host         `json:"cluster,omitempty"`
	Service playbooks.ServiceStep `json:"service"`
	// Timeout bounds the wait for the update's outcome; default 10m.
	Timeout playbooks.Duration `json:"timeout,omitempty"`
}

// DeployServiceResult is the service's outcome.
type DeployServiceResult struct {
	Hosts     []HostOutcome `json:"hosts"`
	Manager   string        `json:"manager,omitempty"`
	Service   string        `json:"service"`
	ServiceID string        `json:"serviceId,omitempty"`
	// Outcome: activities.ServiceCompleted, ServiceUnchanged, ServiceRolledBack,
	// ServicePaused, or ServiceFailed when the update could not be started or
	// followed to its end.
	Outcome string                    `json:"outcome"`
	Message string                    `json:"message"`
	Status  *activities.ServiceStatus `json:"status,omitempty"`
	// Images is what the image load did per node (service.imageLoad).
	Images []activities.ImageLoaded `json:"images,omitempty"`
}

func (r *DeployServiceResult) hostOutcomes() []HostOutcome { return r.Hosts }

// ServiceFailed is the outcome of a DeployService that could not start or follow
// the update (no manager, a refused spec, no outcome within the timeout).
const ServiceFailed = "failed"

// Phases of DeployService, as the progress query shows them.
const (
	ServicePhaseManager = "find-manager"
	ServicePhaseImages  = "load-image"
	ServicePhaseApply   = "apply"
	ServicePhaseWatch   = "watch"
	ServicePhaseDone    = "done"
)

// DeployServiceProgress is the result of DeployService's "progress" query.
type DeployServiceProgress struct {
	Service string `json:"service"`
	Manager string `json:"manager,omitempty"`
	Phase   string `json:"phase"`
	// Applied says what was changed ("created", "updated: image, env", "unchanged").
	Applied string                   `json:"applied,omitempty"`
	Images  []activities.ImageLoaded `json:"images,omitempty"`
	Status  activities.ServiceStatus `json:"status"`
	Outcome string                   `json:"outcome,omitempty"`
	Message string                   `json:"message,omitempty"`
}

// DeployService creates or updates a swarm service (step kinds deployService and
// updateService) through a manager and follows the update to a definite outcome:
// completed, unchanged (the spec was as wanted already), rolled-back (with the
// engine's reason) or paused. A rolled-back or paused update fails the step's hosts
// ("rolled back: <reason>"); the run itself ends normally with the outcome in its
// result. Invalid input fails the run before any engine is asked.
func DeployService(ctx workflow.Context, in DeployServiceInput) (*DeployServiceResult, error) {
	// Step 1. Check the input before asking any engine.
	if err := checkDeployService(&in); err != nil {
		return nil, invalidInput(err.Error())
	}
	svc := in.Service
	// Step 2. Publish progress.
	prog := &DeployServiceProgress{Service: svc.Service, Phase: ServicePhaseManager}
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*DeployServiceProgress, error) {
		return prog, nil
	}, workflow.QueryHandlerOptions{Description: "the service's update state and its tasks per node"}); err != nil {
		return nil, err
	}
	res := &DeployServiceResult{Service: svc.Service}
	finish := func(outcome, msg string) (*DeployServiceResult, error) {
		res.Outcome, res.Message = outcome, msg
		prog.Phase, prog.Outcome, prog.Message = ServicePhaseDone, outcome, msg
		state := HostFailed
		switch outcome {
		case activities.ServiceCompleted:
			state = HostChanged
		case activities.ServiceUnchanged:
			state = HostUnchanged
		}
		for _, h := range in.Hosts {
			res.Hosts = append(res.Hosts, HostOutcome{Host: h.Name, State: state, Message: msg})
		}
		publishService(ctx, prog)
		if ctx.Err() != nil {
			return res, temporal.NewCanceledError("DeployService cancelled")
		}
		return res, nil
	}
	publishService(ctx, prog)
	opts := func(summary string) workflow.Context { return withSummary(ctx, swarmOptions, summary) }

	// Step 3. The manager: the one the step names, else the first of the step's hosts
	// that answers as a manager.
	manager, err := serviceManager(ctx, svc.Manager, in.Hosts, in.Cluster, "service.manager")
	if err != nil {
		if isInvalidInput(err) {
			return nil, err
		}
		return finish(ServiceFailed, errorMessage(err))
	}
	res.Manager, prog.Manager = manager.Name, manager.Name
	publishService(ctx, prog)

	// Step 4. Without a registry: load the image tarball into every node that can run
	// tasks and lacks the image.
	if svc.ImageLoad != "" {
		prog.Phase = ServicePhaseImages
		publishService(ctx, prog)
		if msg := loadImages(ctx, in, manager, res, prog); msg != "" {
			return finish(ServiceFailed, msg)
		}
	}
	prog.Phase = ServicePhaseApply
	publishService(ctx, prog)

	// Step 5. Create or update the service (nothing when its spec is as wanted).
	var applied activities.ServiceApplied
	if err := workflow.ExecuteActivity(opts("apply service "+svc.Service+" on "+manager.Name), swarmActs.ApplyService,
		activities.ApplyServiceRequest{Manager: manager, Service: svc}).Get(ctx, &applied); err != nil {
		return finish(ServiceFailed, errorMessage(err))
	}
	res.ServiceID, prog.Applied, prog.Phase = applied.ServiceID, applied.Message, ServicePhaseWatch
	publishService(ctx, prog)

	// Step 6. Follow the update until it has an outcome. Each WatchService call returns
	// when what it sees changes, so the progress query stays current.
	timeout := in.Timeout.Std()
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	st, msg := followService(ctx, manager, applied, timeout, func(st activities.ServiceStatus) {
		res.Status, prog.Status = &st, st
		publishService(ctx, prog)
	})
	if msg != "" {
		return finish(ServiceFailed, msg)
	}

	// Step 7. The outcome.
	switch st.Outcome {
	case activities.ServiceRolledBack:
		return finish(st.Outcome, "rolled back: "+st.RollbackReason)
	case activities.ServicePaused:
		return finish(st.Outcome, "update paused: "+st.Message)
	case activities.ServiceTaskFailed:
		return finish(st.Outcome, applied.Message+"; a task failed: "+st.Message)
	default:
		return finish(st.Outcome, fmt.Sprintf("%s%s; %s", imagesText(res.Images), applied.Message, statusText(st)))
	}
}

// serviceManager is the manager a service or stack step works through: the host
// it names (field, among the cluster's hosts, then the step's; an InvalidInput
// error when none), else the first of the step's hosts that answers as a manager.
func serviceManager(ctx workflow.Context, name string, hosts, cluster []remote.Host, field string) (remote.Host, error) {
	if name != "" {
		h, ok := hostNamed(cluster, name)
		if !ok {
			h, ok = hostNamed(hosts, name)
		}
		if !ok {
			return remote.Host{}, invalidInput(fmt.Sprintf("%s %q is not among the cluster's hosts", field, name))
		}
		return h, nil
	}
	var found string
	if err := workflow.ExecuteActivity(withSummary(ctx, swarmOptions, "find a swarm manager"), swarmActs.FindManager,
		activities.FindManagerRequest{Candidates: hosts}).Get(ctx, &found); err != nil {
		return remote.Host{}, err
	}
	h, _ := hostNamed(hosts, found)
	return h, nil
}

// isInvalidInput reports whether err is the workflow's own InvalidInput.
func isInvalidInput(err error) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == ErrInvalidInput
}

// followService calls WatchService until the service's update has an outcome or
// timeout passes, seen getting each status as it comes. Each call returns when what it sees
// changes (or after a minute), so whoever shows the statuses stays current. It
// returns the last status, and why it has no outcome ("" when it has one): the
// deadline passed, the run was cancelled, or watching failed.
func followService(ctx workflow.Context, manager remote.Host, applied activities.ServiceApplied, timeout time.Duration,
	seen func(activities.ServiceStatus)) (activities.ServiceStatus, string) {
	deadline := workflow.Now(ctx).Add(timeout)
	wctx := workflow.WithActivityOptions(ctx, watchOptions)
	var st activities.ServiceStatus
	for st.Outcome == "" {
		if !workflow.Now(ctx).Before(deadline) {
			return st, fmt.Sprintf("%s; no outcome after %s: %s", applied.Message, timeout, statusText(st))
		}
		wait := min(time.Minute, deadline.Sub(workflow.Now(ctx)))
		var next activities.ServiceStatus
		err := workflow.ExecuteActivity(wctx, swarmActs.WatchService, activities.WatchServiceRequest{
			Manager: manager, ServiceID: applied.ServiceID, Applied: applied, Last: st, MaxWait: playbooks.Duration(wait),
		}).Get(ctx, &next)
		if err != nil {
			if temporal.IsCanceledError(err) || ctx.Err() != nil {
				return st, "cancelled while the update ran"
			}
			return st, applied.Message + "; watching the update failed: " + errorMessage(err)
		}
		st = next
		seen(st)
	}
	return st, ""
}

// loadImages loads service.imageLoad into every ready, active swarm node, each
// known by its inventory host (address, then hostname). It returns "" or why it
// failed.
func loadImages(ctx workflow.Context, in DeployServiceInput, manager remote.Host, res *DeployServiceResult, prog *DeployServiceProgress) string {
	svc := in.Service
	var nodes []activities.SwarmNode
	if err := workflow.ExecuteActivity(withSummary(ctx, swarmOptions, "list the swarm's nodes"), swarmActs.ListSwarmNodes,
		activities.SwarmManagerRequest{Manager: manager}).Get(ctx, &nodes); err != nil {
		return "image load: " + errorMessage(err)
	}
	known := append(slices.Clone(in.Cluster), in.Hosts...)
	var targets []remote.Host
	var missing []string
	for _, n := range nodes {
		if n.State != "ready" || n.Availability != "active" {
			continue
		}
		i := slices.IndexFunc(known, func(h remote.Host) bool { return h.Address == n.Addr })
		if i < 0 {
			i = slices.IndexFunc(known, func(h remote.Host) bool { return h.Name == n.Hostname })
		}
		switch {
		case i < 0:
			missing = append(missing, n.Hostname+" ("+n.Addr+")")
		case !slices.ContainsFunc(targets, func(h remote.Host) bool { return h.Name == known[i].Name }):
			targets = append(targets, known[i])
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("image load: swarm nodes %s are not in the inventory, so %s cannot be loaded there; add them, or drain them", strings.Join(missing, ", "), svc.Image)
	}
	loaded := make([]activities.ImageLoaded, len(targets))
	errs := make([]string, len(targets))
	eachHost(ctx, len(targets), 0, func(ctx workflow.Context, i int) {
		h := targets[i]
		if err := workflow.ExecuteActivity(withSummary(ctx, imageLoadOptions, "load "+svc.Image+" on "+h.Name), swarmActs.LoadImage, activities.LoadImageRequest{
			Host: h, Tarball: svc.ImageLoad, Image: svc.Image,
		}).Get(ctx, &loaded[i]); err != nil {
			errs[i] = h.Name + ": " + errorMessage(err)
		}
	})
	for i := range targets {
		if errs[i] == "" {
			res.Images = append(res.Images, loaded[i])
		}
	}
	prog.Images = res.Images
	if msg := strings.Join(slices.DeleteFunc(errs, func(e string) bool { return e == "" }), "; "); msg != "" {
		return "image load failed on " + msg
	}
	return ""
}

// checkDeployService validates DeployService's input and applies the defaults of its
// service settings (ServiceStep.Normalize).
func checkDeployService(in *DeployServiceInput) error {
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return err
	}
	return in.Service.Normalize(playbooks.Scope{Hosts: names, Inventory: hostNames(in.Cluster, in.Hosts)}).Err("service")
}

// imagesText sums up an image load: "image web:2 loaded on 2 of 3 nodes; ".
func imagesText(images []activities.ImageLoaded) string {
	if len(images) == 0 {
		return ""
	}
	n := 0
	for _, im := range images {
		if im.Changed {
			n++
		}
	}
	return fmt.Sprintf("image loaded on %d of %d nodes; ", n, len(images))
}

// statusText sums up a status: "3/3 running (master 1/1, slave01 1/1, slave02 1/1)",
// or, for tasks that run once, "2/2 completed".
func statusText(st activities.ServiceStatus) string {
	var nodes []string
	for _, n := range st.Nodes {
		s := fmt.Sprintf("%s %d/%d", n.Node, n.Running, n.Desired)
		if n.Down {
			s = n.Node + " down"
		}
		nodes = append(nodes, s)
	}
	text := fmt.Sprintf("%d/%d running", st.Running, st.Replicas)
	if st.Completed > 0 || st.Failed > 0 {
		text = fmt.Sprintf("%d/%d completed", st.Completed, st.Replicas)
		if st.Running > 0 {
			text += fmt.Sprintf(", %d running", st.Running)
		}
		if st.Failed > 0 {
			text += fmt.Sprintf(", %d failed", st.Failed)
		}
		nodes = nil // tasks that ran once: per node they are all 0 of 1
	}
	if len(nodes) > 0 {
		text += " (" + strings.Join(nodes, ", ") + ")"
	}
	if st.UpdateState != "" {
		text += ", update " + st.UpdateState
	}
	return text
}

// publishService refreshes the Markdown the Web UI shows as the run's current details.
func publishService(ctx workflow.Context, p *DeployServiceProgress) {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**service %s**", p.Service))
	if p.Manager != "" {
		b.WriteString(" through " + p.Manager)
	}
	b.WriteString(fmt.Sprintf(": %s", p.Phase))
	if p.Applied != "" {
		b.WriteString(", " + p.Applied)
	}
	if p.Outcome != "" {
		b.WriteString(fmt.Sprintf("\n\noutcome **%s**: %s", p.Outcome, p.Message))
	}
	b.WriteString("\n\n| node | desired | running |\n|---|---|---|\n")
	for _, n := range p.Status.Nodes {
		b.WriteString(fmt.Sprintf("| %s | %d | %d |\n", n.Node, n.Desired, n.Running))
	}
	if p.Status.UpdateState != "" {
		b.WriteString(fmt.Sprintf("\nupdate %s: %s\n", p.Status.UpdateState, strings.ReplaceAll(p.Status.Message, "|", "\\|")))
	}
	workflow.SetCurrentDetails(ctx, b.String())
}
