package activities

import (
	"context"
	"fmt"
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
func (s *Swarm) serviceStatus(ctx context.Context, m remote.Host, cli *client.Client, id string, since time.Time) (ServiceStatus, error) {
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
