package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TaskQueue is the one task queue clusterflow's workers poll. Runs started from the
// Web UI name it in the "Task Queue" field.
const TaskQueue = "clusterflow"

// Registered workflow type names: stable, because the Web UI and stored histories
// refer to them by name.
const (
	RunPlaybookName   = "RunPlaybook"
	InstallDockerName = "InstallDocker"

	DistributeKeysName = "DistributeKeys"

	SwarmInitName       = "SwarmInit"
	SwarmNodesName      = "SwarmNodes"
	ConsulBootstrapName = "ConsulBootstrap"

	RotateCAName          = "RotateCA"
	CheckCertificatesName = "CheckCertificates"

	DeployServiceName = "DeployService"

	RollingNodeUpgradeName = "RollingNodeUpgrade"
	ClusterLockName        = "ClusterLock"
)

// Register adds every clusterflow workflow to a worker (or a replayer).
func Register(r worker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(RunPlaybook, workflow.RegisterOptions{Name: RunPlaybookName})
	r.RegisterWorkflowWithOptions(DistributeKeys, workflow.RegisterOptions{Name: DistributeKeysName})
	r.RegisterWorkflowWithOptions(InstallDocker, workflow.RegisterOptions{Name: InstallDockerName})
	r.RegisterWorkflowWithOptions(SwarmInit, workflow.RegisterOptions{Name: SwarmInitName})
	r.RegisterWorkflowWithOptions(SwarmNodes, workflow.RegisterOptions{Name: SwarmNodesName})
	r.RegisterWorkflowWithOptions(ConsulBootstrap, workflow.RegisterOptions{Name: ConsulBootstrapName})
	r.RegisterWorkflowWithOptions(RotateCA, workflow.RegisterOptions{Name: RotateCAName})
	r.RegisterWorkflowWithOptions(CheckCertificates, workflow.RegisterOptions{Name: CheckCertificatesName})
	r.RegisterWorkflowWithOptions(DeployService, workflow.RegisterOptions{Name: DeployServiceName})
	r.RegisterWorkflowWithOptions(RollingNodeUpgrade, workflow.RegisterOptions{Name: RollingNodeUpgradeName})
	r.RegisterWorkflowWithOptions(ClusterLock, workflow.RegisterOptions{Name: ClusterLockName})
}

// registeredNames are the workflow types Register adds; the replay test requires a
// recorded history of each.
var registeredNames = []string{
	RunPlaybookName, DistributeKeysName, InstallDockerName,
	SwarmInitName, SwarmNodesName, ConsulBootstrapName,
	RotateCAName, CheckCertificatesName, DeployServiceName,
	RollingNodeUpgradeName,
	ClusterLockName,
}
