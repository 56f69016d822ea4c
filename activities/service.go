package activities

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the DeployService procedure: ApplyService
// starts a service's creation or update (idempotently: it compares the wanted spec
// with the service's first), WatchService only reads, so a retry after a worker
// was killed picks the watch up where it was.

// Error types of the service activities.
const (
	// ErrServiceNotFound: updateService names a service that does not exist.
	// Non-retryable: deployService creates services.
	ErrServiceNotFound = "ServiceNotFound"
	// ErrServiceSpec: the engine refused the wanted spec (an unknown network, a
	// bad mount). Non-retryable: the playbook needs a fix.
	ErrServiceSpec = "ServiceSpec"
)

// Outcomes of a service update, as WatchService and DeployService report them.
const (
	ServiceCompleted  = "completed"   // converged on the wanted spec
	ServiceUnchanged  = "unchanged"   // the spec was as wanted already, and tasks run
	ServiceRolledBack = "rolled-back" // the update failed and the engine rolled it back
	ServicePaused     = "paused"      // the update (or its rollback) paused on failures
)

// ApplyServiceRequest asks for a service as the step describes it.
type ApplyServiceRequest struct {
	Manager playbooks.Host        `json:"manager"`
	Service playbooks.ServiceStep `json:"service"`
}

// ServiceApplied is what ApplyService did.
type ServiceApplied struct {
	ServiceID string `json:"serviceId"`
	Created   bool   `json:"created,omitempty"`
	Changed   bool   `json:"changed,omitempty"`
	Message   string `json:"message"`
	// Since is when the service object last changed before this update, on the
	// engine's clock: an UpdateStatus that started before it is an earlier
	// update's. Zero when nothing was updated.
	Since time.Time `json:"since,omitzero"`
	// Monitor is the update's failure window (the engine's default 5s when unset).
	Monitor  playbooks.Duration `json:"monitor"`
	Replicas uint64             `json:"replicas"`
}

// ApplyService creates the service (deployService) or updates it to the wanted
// spec, unless its spec is that already. Fields the step leaves out keep the
// service's values. A retry after an attempt that did the update finds the spec
// equal and returns what that attempt did (kept in the heartbeat details).
func (s *Swarm) ApplyService(ctx context.Context, req ApplyServiceRequest) (ServiceApplied, error) {
	m, want := req.Manager, req.Service
	if want.Service == "" {
		return ServiceApplied{}, invalidInput("service: the service name is empty")
	}
	var earlier ServiceApplied
	if activity.IsActivity(ctx) && activity.HasHeartbeatDetails(ctx) {
		_ = activity.GetHeartbeatDetails(ctx, &earlier)
	}
	cli, err := s.api(m)
	if err != nil {
		return ServiceApplied{}, err
	}
	defer cli.Close()
	netIDs, err := s.networkIDs(ctx, m, cli, want.Networks)
	if err != nil {
		return ServiceApplied{}, err
	}
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		svc, _, err := cli.ServiceInspectWithRaw(actx, want.Service, swarm.ServiceInspectOptions{})
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			if !want.Create {
				return ServiceApplied{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
					"service %s does not exist on the swarm of %s: updateService changes a service that exists; deployService creates it", want.Service, m.Name), ErrServiceNotFound, nil)
			}
			spec := serviceSpec(swarm.ServiceSpec{Annotations: swarm.Annotations{Name: want.Service}}, want, netIDs)
			applied := ServiceApplied{Created: true, Changed: true, Message: "created", Monitor: monitorOf(spec), Replicas: replicasOf(spec)}
			recordHeartbeat(ctx, applied)
			actx, cancel := context.WithTimeout(ctx, apiTimeout)
			resp, err := cli.ServiceCreate(actx, spec, swarm.ServiceCreateOptions{})
			cancel()
			if err != nil {
				if (cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists")) && attempt < 5 {
					continue // created meanwhile: compare with it
				}
				return ServiceApplied{}, specFailure(ctx, m, "create service "+want.Service, err)
			}
			applied.ServiceID = resp.ID
			return applied, nil
		case err != nil:
			return ServiceApplied{}, apiFailure(ctx, m, "read service "+want.Service, err)
		}
		spec := serviceSpec(svc.Spec, want, netIDs)
		if diff := specDiff(svc.Spec, spec); len(diff) == 0 {
			if earlier.Changed && (earlier.ServiceID == "" || earlier.ServiceID == svc.ID) {
				earlier.ServiceID = svc.ID
				return earlier, nil // an earlier attempt made the change
			}
			return ServiceApplied{ServiceID: svc.ID, Message: "unchanged", Monitor: monitorOf(svc.Spec), Replicas: replicasOf(svc.Spec)}, nil
		} else {
			applied := ServiceApplied{ServiceID: svc.ID, Changed: true, Message: "updated: " + strings.Join(diff, ", "),
				Since: svc.Meta.UpdatedAt, Monitor: monitorOf(spec), Replicas: replicasOf(spec)}
			recordHeartbeat(ctx, applied)
			actx, cancel := context.WithTimeout(ctx, apiTimeout)
			_, err = cli.ServiceUpdate(actx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{})
			cancel()
			if err != nil {
				if strings.Contains(err.Error(), "update out of sequence") && attempt < 5 {
					continue // changed meanwhile: read it again
				}
				return ServiceApplied{}, specFailure(ctx, m, "update service "+want.Service, err)
			}
			return applied, nil
		}
	}
}

func recordHeartbeat(ctx context.Context, details any) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, details)
	}
}

// specFailure is apiFailure, except that a spec the engine refuses is final.
func specFailure(ctx context.Context, m playbooks.Host, what string, err error) error {
	if cerrdefs.IsInvalidArgument(err) || cerrdefs.IsNotFound(err) {
		return hostError(m, ErrServiceSpec, false, "could not %s: %s", what, engineMessage(err))
	}
	return apiFailure(ctx, m, what, err)
}

// networkIDs resolves network names to the IDs the engine keeps in service specs.
func (s *Swarm) networkIDs(ctx context.Context, m playbooks.Host, cli *client.Client, names []string) (map[string]string, error) {
	ids := map[string]string{}
	for _, name := range names {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		n, err := cli.NetworkInspect(actx, name, network.InspectOptions{Scope: "swarm"})
		cancel()
		switch {
		case cerrdefs.IsNotFound(err):
			return nil, hostError(m, ErrServiceSpec, false, "network %s does not exist on the swarm: create it first (swarmInit networks)", name)
		case err != nil:
			return nil, apiFailure(ctx, m, "look up network "+name, err)
		}
		ids[name] = n.ID
	}
	return ids, nil
}

// serviceSpec is cur with the step's fields applied. Pointers of cur that change
// are copied first: cur is compared with the result afterwards.
func serviceSpec(cur swarm.ServiceSpec, want playbooks.ServiceStep, netIDs map[string]string) swarm.ServiceSpec {
	spec := cur
	cs := swarm.ContainerSpec{}
	if cur.TaskTemplate.ContainerSpec != nil {
		cs = *cur.TaskTemplate.ContainerSpec
	}
	if want.Image != "" {
		cs.Image = want.Image
	}
	if want.Env != nil {
		cs.Env = []string{}
		for _, k := range sortedKeys(want.Env) {
			cs.Env = append(cs.Env, k+"="+want.Env[k])
		}
	}
	if want.Mounts != nil {
		cs.Mounts = []mount.Mount{}
		for _, mt := range want.Mounts {
			cs.Mounts = append(cs.Mounts, mount.Mount{Type: mount.Type(mt.Type), Source: mt.Source, Target: mt.Target, ReadOnly: mt.ReadOnly})
		}
	}
	if h := want.HealthCheck; h != nil {
		cs.Healthcheck = &container.HealthConfig{Test: h.Test, Interval: h.Interval.Std(), Timeout: h.Timeout.Std(),
			Retries: h.Retries, StartPeriod: h.StartPeriod.Std()}
	}
	spec.TaskTemplate.ContainerSpec = &cs
	if want.Constraints != nil {
		p := swarm.Placement{}
		if cur.TaskTemplate.Placement != nil {
			p = *cur.TaskTemplate.Placement
		}
		p.Constraints = slices.Clone(want.Constraints)
		spec.TaskTemplate.Placement = &p
	}
	if want.Networks != nil {
		spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{}
		for _, name := range want.Networks {
			spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: netIDs[name]})
		}
	}
	if want.Ports != nil {
		e := swarm.EndpointSpec{}
		if cur.EndpointSpec != nil {
			e = *cur.EndpointSpec
		}
		e.Ports = []swarm.PortConfig{}
		for _, p := range want.Ports {
			e.Ports = append(e.Ports, swarm.PortConfig{Protocol: swarm.PortConfigProtocol(p.Protocol),
				TargetPort: p.Target, PublishedPort: p.Published, PublishMode: swarm.PortConfigPublishModeHost})
		}
		spec.EndpointSpec = &e
	}
	if want.Replicas != nil || (cur.Mode.Replicated == nil && cur.Mode.Global == nil) {
		n := uint64(1)
		if want.Replicas != nil {
			n = *want.Replicas
		}
		spec.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}}
	}
	if want.Update != nil {
		spec.UpdateConfig = updateConfig(*want.Update)
	}
	if want.Rollback != nil {
		spec.RollbackConfig = updateConfig(*want.Rollback)
	}
	return spec
}

func updateConfig(u playbooks.UpdatePolicy) *swarm.UpdateConfig {
	return &swarm.UpdateConfig{Parallelism: u.Parallelism, Delay: u.Delay.Std(), FailureAction: u.FailureAction,
		Monitor: u.Monitor.Std(), MaxFailureRatio: u.MaxFailureRatio, Order: u.Order}
}

// specDiff names the managed fields in which two specs differ.
func specDiff(cur, want swarm.ServiceSpec) []string {
	a, b := managed(cur), managed(want)
	var diff []string
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			diff = append(diff, va.Type().Field(i).Tag.Get("diff"))
		}
	}
	return diff
}

// managedFields is the part of a spec the playbook sets, normalised (nil and empty
// are the same).
type managedFields struct {
	Image       string                   `diff:"image"`
	Replicas    uint64                   `diff:"replicas"`
	Env         []string                 `diff:"env"`
	Mounts      []playbooks.ServiceMount `diff:"mounts"`
	Health      *container.HealthConfig  `diff:"healthCheck"`
	Constraints []string                 `diff:"constraints"`
	Networks    []string                 `diff:"networks"`
	Ports       []playbooks.ServicePort  `diff:"ports"`
	Update      *swarm.UpdateConfig      `diff:"updateConfig"`
	Rollback    *swarm.UpdateConfig      `diff:"rollbackConfig"`
}

func managed(s swarm.ServiceSpec) managedFields {
	f := managedFields{Replicas: replicasOf(s), Update: s.UpdateConfig, Rollback: s.RollbackConfig,
		Env: []string{}, Mounts: []playbooks.ServiceMount{}, Constraints: []string{}, Networks: []string{}, Ports: []playbooks.ServicePort{}}
	if cs := s.TaskTemplate.ContainerSpec; cs != nil {
		f.Image, f.Health = cs.Image, cs.Healthcheck
		f.Env = append(f.Env, cs.Env...)
		slices.Sort(f.Env)
		for _, m := range cs.Mounts {
			f.Mounts = append(f.Mounts, playbooks.ServiceMount{Type: string(m.Type), Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		}
	}
	if p := s.TaskTemplate.Placement; p != nil {
		f.Constraints = append(f.Constraints, p.Constraints...)
	}
	for _, n := range s.TaskTemplate.Networks {
		f.Networks = append(f.Networks, n.Target)
	}
	slices.Sort(f.Networks)
	if e := s.EndpointSpec; e != nil {
		for _, p := range e.Ports {
			f.Ports = append(f.Ports, playbooks.ServicePort{Published: p.PublishedPort, Target: p.TargetPort, Protocol: string(p.Protocol)})
		}
	}
	return f
}

func replicasOf(s swarm.ServiceSpec) uint64 {
	if r := s.Mode.Replicated; r != nil && r.Replicas != nil {
		return *r.Replicas
	}
	return 0
}

func monitorOf(s swarm.ServiceSpec) playbooks.Duration {
	if u := s.UpdateConfig; u != nil && u.Monitor > 0 {
		return playbooks.Duration(u.Monitor)
	}
	return playbooks.Duration(5 * time.Second)
}

// WatchServiceRequest asks for the state of a service's update.
type WatchServiceRequest struct {
	Manager   playbooks.Host `json:"manager"`
	ServiceID string         `json:"serviceId"`
	// Applied is what ApplyService did: whether an update was started and since when.
	Applied ServiceApplied `json:"applied"`
	// Last is the status the caller saw last: WatchService returns when the status
	// differs from it, when an outcome is reached, or after MaxWait.
	Last    ServiceStatus      `json:"last"`
	MaxWait playbooks.Duration `json:"maxWait,omitempty"`
}

// ServiceStatus is a service's update state and its tasks per node.
type ServiceStatus struct {
	// UpdateState is the engine's UpdateStatus.State of this update ("" before
	// the engine starts it, or when there is none).
	UpdateState string `json:"updateState,omitempty"`
	Message     string `json:"message,omitempty"`
	// RollbackReason is the message of rollback_started: why the update failed.
	RollbackReason string `json:"rollbackReason,omitempty"`
	Replicas       uint64 `json:"replicas"`
	// Running counts the replicas whose up-to-date task runs.
	Running int             `json:"running"`
	Nodes   []ServiceOnNode `json:"nodes,omitempty"`
	// ConvergedAt is when Running first reached Replicas in the current streak
	// (worker's clock); zero when not converged.
	ConvergedAt time.Time `json:"convergedAt,omitzero"`
	// RolledBackAt is when rollback_completed was first seen (worker's clock):
	// the outcome waits for the old tasks to run again, a while at most.
	RolledBackAt time.Time `json:"rolledBackAt,omitzero"`
	// TaskError is the latest failure of one of the service's tasks
	// ("task x on slave01: task: non-zero exit (1)"), read during a rollback.
	TaskError string `json:"taskError,omitempty"`
	// Outcome is set once the update is over: ServiceCompleted, ServiceUnchanged,
	// ServiceRolledBack, ServicePaused.
	Outcome string `json:"outcome,omitempty"`
}

// ServiceOnNode counts the service's current tasks on one node.
type ServiceOnNode struct {
	Node    string `json:"node"`
	Desired int    `json:"desired"` // tasks meant to run
	Running int    `json:"running"`
	Down    bool   `json:"down,omitempty"` // the node is down: its tasks are not counted
}

// WatchService polls the service's UpdateStatus and tasks, heartbeating, until
// the status changes from req.Last, the update reaches an outcome, or MaxWait
// passes. It only reads, so it can be retried at any time.
func (s *Swarm) WatchService(ctx context.Context, req WatchServiceRequest) (ServiceStatus, error) {
	cli, err := s.api(req.Manager)
	if err != nil {
		return ServiceStatus{}, err
	}
	defer cli.Close()
	wait := req.MaxWait.Std()
	if wait <= 0 {
		wait = time.Minute
	}
	deadline := time.Now().Add(wait)
	last := req.Last
	for {
		st, err := s.serviceStatus(ctx, req.Manager, cli, req.ServiceID, req.Applied.Since)
		if err != nil {
			return st, err
		}
		st = judge(st, last, req.Applied, time.Now())
		if st.Outcome != "" || !sameStatus(st, req.Last) || time.Now().After(deadline) {
			return st, nil
		}
		last = st
		recordHeartbeat(ctx, st)
		if err := sleepCtx(ctx, min(s.poll, 500*time.Millisecond)); err != nil {
			return st, err
		}
	}
}

// serviceStatus reads the service's update state and counts its tasks.
func (s *Swarm) serviceStatus(ctx context.Context, m playbooks.Host, cli *client.Client, id string, since time.Time) (ServiceStatus, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	svc, _, err := cli.ServiceInspectWithRaw(actx, id, swarm.ServiceInspectOptions{})
	if err != nil {
		return ServiceStatus{}, apiFailure(ctx, m, "read service "+short(id), err)
	}
	tasks, err := cli.TaskList(actx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", id), filters.Arg("_up-to-date", "true"))})
	if err != nil {
		return ServiceStatus{}, apiFailure(ctx, m, "list the tasks of service "+svc.Spec.Name, err)
	}
	nodes, err := s.nodes(ctx, m, cli)
	if err != nil {
		return ServiceStatus{}, err
	}
	st := ServiceStatus{Replicas: replicasOf(svc.Spec)}
	if u := svc.UpdateStatus; u != nil {
		st.UpdateState, st.Message = string(u.State), u.Message
		if u.StartedAt != nil {
			st.ConvergedAt = *u.StartedAt // carried to judge, which replaces it
		}
	}
	st.Running, st.Nodes = countTasks(tasks, nodes)
	if strings.HasPrefix(st.UpdateState, "rollback") {
		all, err := cli.TaskList(actx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", id))})
		if err != nil {
			return ServiceStatus{}, apiFailure(ctx, m, "list the tasks of service "+svc.Spec.Name, err)
		}
		st.TaskError = lastTaskError(all, nodes, since)
	}
	return st, nil
}

// lastTaskError describes the service's most recent task failure after since.
func lastTaskError(tasks []swarm.Task, nodes []swarm.Node, since time.Time) string {
	var last *swarm.Task
	for i, t := range tasks {
		if (t.Status.State == swarm.TaskStateFailed || t.Status.State == swarm.TaskStateRejected) && t.Status.Err != "" &&
			t.Status.Timestamp.After(since) && (last == nil || t.Status.Timestamp.After(last.Status.Timestamp)) {
			last = &tasks[i]
		}
	}
	if last == nil {
		return ""
	}
	node := short(last.NodeID)
	for _, n := range nodes {
		if n.ID == last.NodeID {
			node = n.Description.Hostname
		}
	}
	return fmt.Sprintf("task %s on %s: %s", short(last.ID), node, last.Status.Err)
}

// countTasks counts the replicas that run (one per slot, as the CLI does) and
// the tasks per node; tasks on down nodes are left out.
func countTasks(tasks []swarm.Task, nodes []swarm.Node) (int, []ServiceOnNode) {
	name, down := map[string]string{}, map[string]bool{}
	for _, n := range nodes {
		name[n.ID] = n.Description.Hostname
		down[n.ID] = n.Status.State == swarm.NodeStateDown
	}
	perNode := map[string]*ServiceOnNode{}
	running := map[int]bool{}
	for _, t := range tasks {
		if t.NodeID == "" {
			continue
		}
		n := name[t.NodeID]
		if n == "" {
			n = short(t.NodeID)
		}
		p := perNode[n]
		if p == nil {
			p = &ServiceOnNode{Node: n, Down: down[t.NodeID]}
			perNode[n] = p
		}
		if down[t.NodeID] || t.DesiredState != swarm.TaskStateRunning {
			continue
		}
		p.Desired++
		if t.Status.State == swarm.TaskStateRunning {
			p.Running++
			running[t.Slot] = true
		}
	}
	out := make([]ServiceOnNode, 0, len(perNode))
	for _, p := range perNode {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b ServiceOnNode) int { return strings.Compare(a.Node, b.Node) })
	return len(running), out
}

// rollbackSettle is how long after rollback_completed (beyond the monitor window)
// the outcome waits for the old tasks to run again.
const rollbackSettle = time.Minute

// judge decides a status's outcome. st.ConvergedAt holds the UpdateStatus's
// StartedAt on entry (zero when none).
func judge(st, last ServiceStatus, applied ServiceApplied, now time.Time) ServiceStatus {
	started := st.ConvergedAt
	st.ConvergedAt = time.Time{}
	// A status from before this update is an earlier update's: ignore it.
	if st.UpdateState != "" && applied.Changed && !applied.Since.IsZero() && !started.After(applied.Since) {
		st.UpdateState, st.Message = "", ""
	}
	st.RollbackReason = last.RollbackReason
	if st.TaskError == "" {
		st.TaskError = last.TaskError
	}
	converged := uint64(st.Running) >= st.Replicas
	if converged {
		st.ConvergedAt = last.ConvergedAt
		if st.ConvergedAt.IsZero() {
			st.ConvergedAt = now
		}
	}
	stable := converged && now.Sub(st.ConvergedAt) >= applied.Monitor.Std()
	settled := ServiceCompleted
	if !applied.Changed {
		settled = ServiceUnchanged
	}
	switch swarm.UpdateState(st.UpdateState) {
	case swarm.UpdateStateUpdating:
	case swarm.UpdateStateRollbackStarted:
		if applied.Changed {
			st.RollbackReason = st.Message
			if st.TaskError != "" && !strings.Contains(st.Message, st.TaskError) {
				st.RollbackReason += " (" + st.TaskError + ")"
			}
		}
	case swarm.UpdateStatePaused:
		st.Outcome = ServicePaused
	case swarm.UpdateStateRollbackPaused:
		st.Outcome = ServicePaused
		if st.RollbackReason != "" {
			st.Message = st.RollbackReason + "; then the rollback paused: " + st.Message
		}
	case swarm.UpdateStateRollbackCompleted:
		if applied.Changed {
			if st.RollbackReason == "" {
				// rollback_started passed between two reads: say what failed.
				st.RollbackReason = "the update failed"
				if st.TaskError != "" {
					st.RollbackReason += " (" + st.TaskError + ")"
				}
			}
			st.RolledBackAt = last.RolledBackAt
			if st.RolledBackAt.IsZero() {
				st.RolledBackAt = now
			}
			// Once the old tasks run again; or, when they do not, after a while.
			if converged || now.Sub(st.RolledBackAt) >= rollbackSettle+applied.Monitor.Std() {
				st.Outcome = ServiceRolledBack
			}
		} else if converged {
			st.Outcome = settled // an earlier update rolled back to the spec wanted now
		}
	case swarm.UpdateStateCompleted:
		if converged || !applied.Changed {
			st.Outcome = settled
		}
	default: // no update (a creation, a scaling, an equal spec) or not started yet
		if stable || (converged && !applied.Changed) {
			st.Outcome = settled
		}
	}
	return st
}

// sameStatus compares what the workflow shows of two statuses.
func sameStatus(a, b ServiceStatus) bool {
	return a.UpdateState == b.UpdateState && a.Message == b.Message && a.Running == b.Running &&
		a.Replicas == b.Replicas && a.ConvergedAt.IsZero() == b.ConvergedAt.IsZero() && slices.Equal(a.Nodes, b.Nodes) &&
		a.RolledBackAt.IsZero() == b.RolledBackAt.IsZero() && a.RollbackReason == b.RollbackReason
}
