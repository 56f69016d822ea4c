package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/playbooks"
)

// SwarmInitInput is the one argument of SwarmInit.
type SwarmInitInput struct {
	Hosts []playbooks.Host        `json:"hosts"`
	Swarm playbooks.SwarmInitStep `json:"swarm"`
}

// SwarmInitResult is the swarm SwarmInit left behind.
type SwarmInitResult struct {
	Hosts     []HostOutcome `json:"hosts"`
	ClusterID string        `json:"clusterId,omitempty"`
	Managers  []string      `json:"managers"`
	Workers   []string      `json:"workers"`
	Networks  []string      `json:"networks,omitempty"`
	// Quorum explains the manager count: "3 managers: Raft quorum is 2, 1 may be lost".
	Quorum   string   `json:"quorum"`
	Warnings []string `json:"warnings,omitempty"`
}

// SwarmNodesInput is the one argument of SwarmNodes.
type SwarmNodesInput struct {
	Hosts []playbooks.Host `json:"hosts"`
	// Cluster is every host of the inventory: where a manager is looked for.
	Cluster []playbooks.Host   `json:"cluster"`
	Node    playbooks.NodeStep `json:"node"`
	// Timeout bounds the wait of a drain (tasks running elsewhere); default 10m.
	Timeout playbooks.Duration `json:"timeout,omitempty"`
}

// SwarmNodesResult is what SwarmNodes did, per node.
type SwarmNodesResult struct {
	Hosts   []HostOutcome `json:"hosts"`
	Manager string        `json:"manager,omitempty"` // the host whose engine was asked
}

// SwarmInit forms the swarm. TODO: implement.
func SwarmInit(ctx workflow.Context, in SwarmInitInput) (*SwarmInitResult, error) {
	return nil, invalidInput("not implemented")
}

// SwarmNodes runs a node operation. TODO: implement.
func SwarmNodes(ctx workflow.Context, in SwarmNodesInput) (*SwarmNodesResult, error) {
	return nil, invalidInput("not implemented")
}
