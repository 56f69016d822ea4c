package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TaskQueue is the one task queue clusterflow's workers poll. Runs started from the
// Web UI name it in the "Task Queue" field.
const TaskQueue = "clusterflow"

// Registered workflow type names: stable, because the Web UI and stored histories
// refer to them by name. Each procedure declares its own beside its workflow.
const (
	RunPlaybookName = "RunPlaybook"
	ClusterLockName = "ClusterLock"
)

// Register adds every clusterflow workflow to a worker (or a replayer): RunPlaybook,
// ClusterLock and the procedures of the table in procedures.go.
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(RunPlaybook, workflow.RegisterOptions{Name: RunPlaybookName})
	r.RegisterWorkflowWithOptions(ClusterLock, workflow.RegisterOptions{Name: ClusterLockName})
	for _, p := range procedures {
		r.RegisterWorkflowWithOptions(p.fn, workflow.RegisterOptions{Name: p.name})
	}
}

// registeredNames are the workflow types Register adds; the replay test requires a
// recorded history of each.
var registeredNames = func() []string {
	names := []string{RunPlaybookName, ClusterLockName}
	for _, p := range procedures {
		names = append(names, p.name)
	}
	return names
}()
