package workflows

import (
	"errors"
	"fmt"
	"slices"

	"github.com/clusterflow/clusterflow/activities/remote"
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
func procedureHosts(p *playbooks.Plan, names []string) []remote.Host {
	hosts := make([]remote.Host, 0, len(names))
	for _, n := range names {
		if h, ok := p.HostByName(n); ok {
			hosts = append(hosts, HostOf(h))
		}
	}
	return hosts
}

// HostOf is an inventory host as the activities reach it: the same fields, and the
// same JSON, as a remote.Host.
func HostOf(h playbooks.Host) remote.Host {
	r := remote.Host{
		Name: h.Name, Address: h.Address, Port: h.Port, User: h.User,
		IdentityFile: h.IdentityFile, UseAgent: h.UseAgent, Sudo: h.Sudo, Groups: h.Groups,
		KnownHostsFile: h.KnownHostsFile, HostKeyPolicy: h.HostKeyPolicy, Jump: h.Jump,
	}
	if h.Via != nil {
		via := HostOf(*h.Via)
		r.Via = &via
	}
	return r
}

// HostsOf is HostOf of every host.
func HostsOf(hosts []playbooks.Host) []remote.Host {
	out := make([]remote.Host, len(hosts))
	for i, h := range hosts {
		out[i] = HostOf(h)
	}
	return out
}

// checkHosts refuses an empty host list, unnamed hosts and repeated names, and
// returns the names in input order. Every procedure checks its hosts with it.
func checkHosts(hosts []remote.Host) ([]string, error) {
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
