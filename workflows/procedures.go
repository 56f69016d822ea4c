package workflows

import (
	"errors"
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// Procedure workflows (DistributeKeys, InstallDocker, ...) run one playbook step on
// its hosts as a child workflow of RunPlaybook, or on their own when started from the
// CLI or the Web UI. They report one HostOutcome per host; RunPlaybook turns those
// into the step's host states and applies the step's failure budget.

// procedures is the table of the procedure workflows: the step kinds each runs, its
// registered name, and how RunPlaybook builds its input from a step. Register, the
// replay test's list of workflows and RunPlaybook's dispatch all read it; a step kind
// that is neither run, upload nor in it is refused (TestEveryStepKindRuns).
var procedures = []procedure{
	procedureOf(DistributeKeysName, DistributeKeys, func(c stepCall) DistributeKeysInput {
		return DistributeKeysInput{Hosts: c.hosts, Keys: *c.step.DistributeKeys, Parallel: c.step.Parallel,
			Timeout: c.step.Timeout, Attempts: c.step.Attempts}
	}, playbooks.KindDistributeKeys),
	procedureOf(InstallDockerName, InstallDocker, func(c stepCall) InstallDockerInput {
		return InstallDockerInput{Hosts: c.hosts, Docker: *c.step.InstallDocker, Parallel: c.step.Parallel}
	}, playbooks.KindInstallDocker),
	procedureOf(SwarmInitName, SwarmInit, func(c stepCall) SwarmInitInput {
		return SwarmInitInput{Hosts: c.hosts, Swarm: *c.step.SwarmInit}
	}, playbooks.KindSwarmInit),
	procedureOf(SwarmNodesName, SwarmNodes, func(c stepCall) SwarmNodesInput {
		return SwarmNodesInput{Hosts: c.hosts, Cluster: c.cluster, Node: *c.step.Node, Timeout: c.step.Timeout}
	}, playbooks.KindPromote, playbooks.KindDemote, playbooks.KindDrain, playbooks.KindActivate, playbooks.KindRemoveNode),
	procedureOf(ConsulBootstrapName, ConsulBootstrap, func(c stepCall) ConsulBootstrapInput {
		return ConsulBootstrapInput{Hosts: c.hosts, Consul: *c.step.Consul, Parallel: c.step.Parallel}
	}, playbooks.KindConsulBootstrap),
	procedureOf(RotateCAName, RotateCA, func(c stepCall) RotateCAInput {
		return RotateCAInput{Hosts: c.hosts, Cluster: c.cluster, CA: *c.step.RotateCA, Timeout: c.step.Timeout}
	}, playbooks.KindRotateCA).withFailureDetails(),
	procedureOf(CheckCertificatesName, CheckCertificates, func(c stepCall) CheckCertificatesInput {
		return CheckCertificatesInput{Hosts: c.hosts, Cluster: c.cluster, Check: *c.step.CheckCertificates, Timeout: c.step.Timeout}
	}, playbooks.KindCheckCertificates).withFailureDetails(),
	procedureOf(DeployServiceName, DeployService, func(c stepCall) DeployServiceInput {
		return DeployServiceInput{Hosts: c.hosts, Cluster: c.cluster, Service: *c.step.Service, Timeout: c.step.Timeout}
	}, playbooks.KindDeployService, playbooks.KindUpdateService),
	procedureOf(RollingNodeUpgradeName, RollingNodeUpgrade, func(c stepCall) RollingUpgradeInput {
		return RollingUpgradeInput{Hosts: c.hosts, Cluster: c.cluster, Upgrade: *c.step.Upgrade, Timeout: c.step.Timeout}
	}, playbooks.KindRollingNodeUpgrade),
	procedureOf(DeployStackName, DeployStack, func(c stepCall) DeployStackInput {
		return DeployStackInput{Hosts: c.hosts, Cluster: c.cluster, Stack: *c.step.Stack, Timeout: c.step.Timeout}
	}, playbooks.KindDeployStack),
	procedureOf(BuildImageName, BuildImage, func(c stepCall) BuildImageInput {
		return BuildImageInput{Hosts: c.hosts, Build: *c.step.BuildImage, Parallel: c.step.Parallel}
	}, playbooks.KindBuildImage),
	procedureOf(TeardownName, Teardown, func(c stepCall) TeardownInput {
		return TeardownInput{Hosts: c.hosts, Cluster: c.cluster, Remove: *c.step.Remove, Timeout: c.step.Timeout}
	}, playbooks.KindRemoveService, playbooks.KindRemoveStack, playbooks.KindRemoveNetwork, playbooks.KindRemoveVolume),
}

// procedure is one entry of the table.
type procedure struct {
	name  string   // registered workflow type: stable, histories name it
	fn    any      // the workflow function
	kinds []string // the step kinds it runs
	// failureDetails: a failed run carries its result, with the per-host outcomes, as
	// the error's details (RotateCA, CheckCertificates); the step then reports those
	// outcomes rather than the error on every host.
	failureDetails bool
	// child runs the workflow as a child for a step and returns its per-host outcomes.
	child func(ctx, cctx workflow.Context, c stepCall, failureDetails bool) ([]HostOutcome, error)
}

// stepCall is what a procedure's input is built from: the step, the hosts it runs on
// (those that have not failed an earlier step) and every host of the plan.
type stepCall struct {
	step    playbooks.Step
	hosts   []remote.Host
	cluster []remote.Host
}

// hostResult is a procedure's result: it reports per host.
type hostResult[R any] interface {
	*R
	hostOutcomes() []HostOutcome
}

// procedureOf makes the table entry of workflow fn, registered as name, for the step
// kinds given; input builds its input from a step.
func procedureOf[In, R any, PR hostResult[R]](name string, fn func(workflow.Context, In) (PR, error),
	input func(stepCall) In, kinds ...string) procedure {
	return procedure{name: name, fn: fn, kinds: kinds,
		child: func(ctx, cctx workflow.Context, c stepCall, failureDetails bool) ([]HostOutcome, error) {
			var res R
			err := workflow.ExecuteChildWorkflow(cctx, fn, input(c)).Get(ctx, &res)
			if failureDetails && detailsInto(err, PR(&res)) {
				err = nil
			}
			return PR(&res).hostOutcomes(), err
		}}
}

func (p procedure) withFailureDetails() procedure {
	p.failureDetails = true
	return p
}

// run runs the procedure as a child workflow for a step (cctx holds its options).
func (p procedure) run(ctx, cctx workflow.Context, c stepCall) ([]HostOutcome, error) {
	return p.child(ctx, cctx, c, p.failureDetails)
}

// detailsInto reads the result a failed procedure attached to its error, and reports
// whether it held per-host outcomes. A cancellation never counts: the step reports
// it as such.
func detailsInto[R any, PR hostResult[R]](err error, res PR) bool {
	var ae *temporal.ApplicationError
	if err == nil || temporal.IsCanceledError(err) || !errors.As(err, &ae) || !ae.HasDetails() {
		return false
	}
	if ae.Details(res) != nil {
		return false
	}
	return len(res.hostOutcomes()) > 0
}

// procedureFor is the procedure that runs a step kind.
func procedureFor(kind string) (procedure, bool) {
	i := slices.IndexFunc(procedures, func(p procedure) bool { return slices.Contains(p.kinds, kind) })
	if i < 0 {
		return procedure{}, false
	}
	return procedures[i], true
}

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

// hostNames are the names of the hosts of cluster and then of hosts: the inventory a
// procedure's references are checked against.
func hostNames(cluster, hosts []remote.Host) []string {
	names := make([]string, 0, len(cluster)+len(hosts))
	for _, h := range append(slices.Clone(cluster), hosts...) {
		names = append(names, h.Name)
	}
	return names
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
