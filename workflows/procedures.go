package workflows

import (
	"errors"
	"fmt"
	"slices"

	"github.com/clusterflow/clusterflow/playbooks"
)

// Procedure workflows (DistributeKeys, InstallDocker, ...) run one playbook step on
// its hosts as a child workflow of RunPlaybook, or on their own when started from the
// CLI or the Web UI. They report one HostOutcome per host; RunPlaybook turns those
// into the step's host states and applies the step's failure budget.

// HostOutcome is what a procedure did on one host.
type HostOutcome struct {
	Host    string `json:"host"`
	State   string `json:"state"` // HostChanged, HostUnchanged or HostFailed
	Message string `json:"message,omitempty"`
}

// procedureHosts picks the named hosts out of a plan, in the step's order.
func procedureHosts(p *playbooks.Plan, names []string) []playbooks.Host {
	hosts := make([]playbooks.Host, 0, len(names))
	for _, n := range names {
		if h, ok := p.HostByName(n); ok {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// checkHosts refuses an empty host list, unnamed hosts and repeated names, and
// returns the names in input order. Every procedure checks its hosts with it.
func checkHosts(hosts []playbooks.Host) ([]string, error) {
	if len(hosts) == 0 {
		return nil, errors.New(`no hosts: give at least one in "hosts"`)
	}
	var names []string
	for i, h := range hosts {
		switch {
		case h.Name == "":
			return nil, fmt.Errorf("hosts[%d] has no name", i)
		case slices.Contains(names, h.Name):
			return nil, fmt.Errorf("host %q is listed twice", h.Name)
		}
		names = append(names, h.Name)
	}
	return names, nil
}
