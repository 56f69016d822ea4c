package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/playbooks"
)

// ConsulBootstrapInput is the one argument of ConsulBootstrap.
type ConsulBootstrapInput struct {
	Hosts  []playbooks.Host     `json:"hosts"`
	Consul playbooks.ConsulStep `json:"consul"`
	// Parallel is how many hosts are worked on at once; 0 means all of them.
	Parallel int `json:"parallel,omitempty"`
}

// ConsulBootstrapResult is what ConsulBootstrap did and what the cluster reported.
type ConsulBootstrapResult struct {
	Hosts   []HostOutcome `json:"hosts"`
	Leader  string        `json:"leader,omitempty"`  // address:port of the Raft leader
	Peers   []string      `json:"peers,omitempty"`   // Raft peers, address:port
	Members []string      `json:"members,omitempty"` // "name address status"
}

// ConsulBootstrap installs, configures and starts Consul agents and checks the
// cluster. TODO(consul): implement.
func ConsulBootstrap(ctx workflow.Context, in ConsulBootstrapInput) (*ConsulBootstrapResult, error) {
	return nil, invalidInput("ConsulBootstrap is not implemented yet")
}
