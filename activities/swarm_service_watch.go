package activities

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file follows a service update until it has an outcome (WatchService).

// WatchServiceRequest asks for the state of a service's update.
type WatchServiceRequest struct {
	Manager   remote.Host `json:"manager"`
	ServiceID string      `json:"serviceId"`
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
	// Running counts the replicas whose up-to-date task runs (for a global
	// service: the nodes).
	Running int `json:"running"`
	// Completed and Failed count, for a service whose tasks run once (a job, or
	// restart condition none), the replicas whose latest task completed or failed.
	Completed int             `json:"completed,omitempty"`
	Failed    int             `json:"failed,omitempty"`
	Nodes     []ServiceOnNode `json:"nodes,omitempty"`
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
	// ServiceRolledBack, ServicePaused, or ServiceTaskFailed (a task that runs once
	// failed).
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
	cli, err := s.rem.dockerAPI(req.Manager)
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
		st, err := s.serviceStatus(ctx, req.Manager, cli, req.ServiceID, req.Applied)
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
func (s *Swarm) serviceStatus(ctx context.Context, m remote.Host, cli *client.Client, id string, applied ServiceApplied) (ServiceStatus, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	list, err := cli.ServiceList(actx, swarm.ServiceListOptions{Status: true, Filters: filters.NewArgs(filters.Arg("id", id))})
	if err != nil {
		return ServiceStatus{}, apiFailure(ctx, m, "read service "+short(id), err)
	}
	i := slices.IndexFunc(list, func(svc swarm.Service) bool { return svc.ID == id })
	if i < 0 {
		return ServiceStatus{}, serviceNotFound(fmt.Sprintf("service %s was removed while its update was followed", short(id)))
	}
	svc := list[i]
	mode := appliedOf(svc.Spec, ServiceApplied{})
	tf := filters.NewArgs(filters.Arg("service", id))
	if !mode.RunsOnce {
		tf.Add("_up-to-date", "true")
	}
	tasks, err := cli.TaskList(actx, swarm.TaskListOptions{Filters: tf})
	if err != nil {
		return ServiceStatus{}, apiFailure(ctx, m, "list the tasks of service "+svc.Spec.Name, err)
	}
	nodes, err := s.nodes(ctx, m, cli)
	if err != nil {
		return ServiceStatus{}, err
	}
	st := ServiceStatus{Replicas: replicasOf(svc.Spec)}
	if mode.Mode == playbooks.ModeGlobal || mode.Mode == playbooks.ModeGlobalJob {
		st.Replicas = eligibleNodes(svc, tasks, nodes, mode.RunsOnce)
	}
	if u := svc.UpdateStatus; u != nil {
		st.UpdateState, st.Message = string(u.State), u.Message
		if u.StartedAt != nil {
			st.ConvergedAt = *u.StartedAt // carried to judge, which replaces it
		}
	}
	if mode.RunsOnce {
		if svc.JobStatus != nil {
			tasks = slices.DeleteFunc(tasks, func(t swarm.Task) bool {
				return t.JobIteration != nil && t.JobIteration.Index != svc.JobStatus.JobIteration.Index
			})
		} else {
			tasks = slices.DeleteFunc(tasks, func(t swarm.Task) bool { return !t.Meta.CreatedAt.After(applied.Since) && applied.Changed })
		}
		st.Running, st.Completed, st.Failed, st.Nodes = countOnce(tasks, nodes, mode.Mode)
	} else {
		st.Running, st.Nodes = countTasks(tasks, nodes, mode.Mode == playbooks.ModeGlobal)
	}
	if strings.HasPrefix(st.UpdateState, "rollback") || st.Failed > 0 {
		all, err := cli.TaskList(actx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", id))})
		if err != nil {
			return ServiceStatus{}, apiFailure(ctx, m, "list the tasks of service "+svc.Spec.Name, err)
		}
		st.TaskError = lastTaskError(all, nodes, applied.Since)
	}
	return st, nil
}

// eligibleNodes is how many tasks a global service wants: the engine's count when
// it gives one, else the nodes that have a task meant to run.
func eligibleNodes(svc swarm.Service, tasks []swarm.Task, nodes []swarm.Node, once bool) uint64 {
	if svc.ServiceStatus != nil && svc.ServiceStatus.DesiredTasks > 0 {
		return svc.ServiceStatus.DesiredTasks
	}
	down := map[string]bool{}
	for _, n := range nodes {
		down[n.ID] = n.Status.State == swarm.NodeStateDown
	}
	seen := map[string]bool{}
	for _, t := range tasks {
		if t.NodeID != "" && !down[t.NodeID] && (once || t.DesiredState == swarm.TaskStateRunning) {
			seen[t.NodeID] = true
		}
	}
	return uint64(len(seen))
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

// countTasks counts the replicas that run (one per slot, as the CLI does; one
// per node for a global service) and the tasks per node; tasks on down nodes are
// left out.
func countTasks(tasks []swarm.Task, nodes []swarm.Node, global bool) (int, []ServiceOnNode) {
	c := newNodeCounts(nodes)
	running := map[string]bool{}
	for _, t := range tasks {
		p := c.of(t)
		if p == nil || c.down[t.NodeID] || t.DesiredState != swarm.TaskStateRunning {
			continue
		}
		p.Desired++
		if t.Status.State == swarm.TaskStateRunning {
			p.Running++
			running[taskKey(t, global)] = true
		}
	}
	return len(running), c.list()
}

// countOnce counts, for tasks that run once, the replicas (slots, or nodes of a
// global job) whose latest task runs, completed, or failed.
func countOnce(tasks []swarm.Task, nodes []swarm.Node, mode string) (running, completed, failed int, on []ServiceOnNode) {
	c := newNodeCounts(nodes)
	global := mode == playbooks.ModeGlobal || mode == playbooks.ModeGlobalJob
	latest := map[string]swarm.Task{}
	for _, t := range tasks {
		if c.of(t) == nil || c.down[t.NodeID] {
			continue
		}
		k := taskKey(t, global)
		if mode == playbooks.ModeReplicatedJob {
			k = t.ID // every completion is a task of its own
		}
		if l, ok := latest[k]; !ok || t.Meta.CreatedAt.After(l.Meta.CreatedAt) {
			latest[k] = t
		}
	}
	for _, k := range slices.Sorted(maps.Keys(latest)) {
		t := latest[k]
		p := c.of(t)
		p.Desired++
		switch t.Status.State {
		case swarm.TaskStateRunning:
			p.Running++
			running++
		case swarm.TaskStateComplete:
			completed++
		case swarm.TaskStateFailed, swarm.TaskStateRejected:
			failed++
		}
	}
	return running, completed, failed, c.list()
}

// taskKey is what a task counts for: its slot, or its node for a global service.
func taskKey(t swarm.Task, global bool) string {
	if global {
		return t.NodeID
	}
	return fmt.Sprint(t.Slot)
}

// nodeCounts are the tasks per node being counted.
type nodeCounts struct {
	name map[string]string
	down map[string]bool
	per  map[string]*ServiceOnNode
}

func newNodeCounts(nodes []swarm.Node) *nodeCounts {
	c := &nodeCounts{name: map[string]string{}, down: map[string]bool{}, per: map[string]*ServiceOnNode{}}
	for _, n := range nodes {
		c.name[n.ID] = n.Description.Hostname
		c.down[n.ID] = n.Status.State == swarm.NodeStateDown
	}
	return c
}

// of is the counts of t's node; nil for a task on no node.
func (c *nodeCounts) of(t swarm.Task) *ServiceOnNode {
	if t.NodeID == "" {
		return nil
	}
	n := c.name[t.NodeID]
	if n == "" {
		n = short(t.NodeID)
	}
	p := c.per[n]
	if p == nil {
		p = &ServiceOnNode{Node: n, Down: c.down[t.NodeID]}
		c.per[n] = p
	}
	return p
}

// list is the counts by node name.
func (c *nodeCounts) list() []ServiceOnNode {
	out := make([]ServiceOnNode, 0, len(c.per))
	for _, p := range c.per {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b ServiceOnNode) int { return strings.Compare(a.Node, b.Node) })
	return out
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
	if applied.RunsOnce {
		converged = uint64(st.Running+st.Completed) >= st.Replicas && st.Failed == 0
		if applied.Mode == playbooks.ModeReplicatedJob || applied.Mode == playbooks.ModeGlobalJob {
			converged = uint64(st.Completed) >= st.Replicas && st.Failed == 0
		}
	}
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
		// Unchanged too only once the tasks run: a retried ApplyService whose
		// earlier attempt updated the service (its heartbeat lost with its
		// worker) sees the spec as wanted, while that update's tasks still start.
		if converged {
			st.Outcome = settled
		}
	default: // no update (a creation, a scaling, an equal spec) or not started yet
		switch {
		case applied.RunsOnce && st.Failed > 0 && applied.Changed:
			st.Outcome, st.Message = ServiceTaskFailed, cmp.Or(st.TaskError, fmt.Sprintf("%d of its tasks failed", st.Failed))
		case stable || (converged && !applied.Changed):
			st.Outcome = settled
		}
	}
	return st
}

// sameStatus compares what the workflow shows of two statuses.
func sameStatus(a, b ServiceStatus) bool {
	return a.UpdateState == b.UpdateState && a.Message == b.Message && a.Running == b.Running &&
		a.Completed == b.Completed && a.Failed == b.Failed &&
		a.Replicas == b.Replicas && a.ConvergedAt.IsZero() == b.ConvergedAt.IsZero() && slices.Equal(a.Nodes, b.Nodes) &&
		a.RolledBackAt.IsZero() == b.RolledBackAt.IsZero() && a.RollbackReason == b.RollbackReason
}
