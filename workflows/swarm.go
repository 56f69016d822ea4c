package workflows

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// Registered names of SwarmInit and SwarmNodes: stable, histories use them.
const (
	SwarmInitName  = "SwarmInit"
	SwarmNodesName = "SwarmNodes"
)

// SwarmInitInput is the one argument of SwarmInit. From the Web UI:
//
//	{"hosts": [{"name": "master", "address": "10.211.73.11", "port": 22, "user": "root",
//	  "identityFile": "/path/id_ed25519", "knownHostsFile": "/path/known_hosts"}, ...],
//	 "swarm": {"managers": ["master"], "advertiseAddr": "address",
//	  "networks": [{"name": "backend", "attachable": true}]}}
type SwarmInitInput struct {
	Hosts []remote.Host           `json:"hosts"`
	Swarm playbooks.SwarmInitStep `json:"swarm"`
}

// SwarmInitResult is the swarm SwarmInit left behind.
type SwarmInitResult struct {
	Hosts     []HostOutcome `json:"hosts"`
	ClusterID string        `json:"clusterId,omitempty"`
	Managers  []string      `json:"managers"`
	Workers   []string      `json:"workers"`
	Networks  []string      `json:"networks,omitempty"`
	// Quorum explains the manager count: "3 manager(s): Raft quorum is 2; 1 may be lost ...".
	Quorum   string   `json:"quorum"`
	Warnings []string `json:"warnings,omitempty"`
}

func (r *SwarmInitResult) hostOutcomes() []HostOutcome { return r.Hosts }

// SwarmNodesInput is the one argument of SwarmNodes.
type SwarmNodesInput struct {
	Hosts []remote.Host `json:"hosts"`
	// Cluster is every host of the inventory: where a manager is looked for.
	Cluster []remote.Host      `json:"cluster"`
	Node    playbooks.NodeStep `json:"node"`
	// Timeout bounds the wait of a drain (tasks running elsewhere); default 10m.
	Timeout playbooks.Duration `json:"timeout,omitempty"`
}

// SwarmNodesResult is what SwarmNodes did, per node.
type SwarmNodesResult struct {
	Hosts   []HostOutcome `json:"hosts"`
	Manager string        `json:"manager,omitempty"` // the host whose engine was asked
}

func (r *SwarmNodesResult) hostOutcomes() []HostOutcome { return r.Hosts }

// Phases of a host in SwarmInit and SwarmNodes, as the progress query shows them.
const (
	SwarmPhasePending  = "pending"
	SwarmPhaseInit     = "init"
	SwarmPhaseJoin     = "join"
	SwarmPhaseRole     = "role"
	SwarmPhaseLabels   = "labels"
	SwarmPhaseNetworks = "networks"
	SwarmPhaseDrain    = "drain"
	SwarmPhaseWait     = "wait-drained"
	SwarmPhaseDone     = "done"
)

// SwarmProgress is the result of the "progress" query of SwarmInit and SwarmNodes.
type SwarmProgress struct {
	Operation string         `json:"operation"` // swarmInit, promote, drain, ...
	Manager   string         `json:"manager,omitempty"`
	Hosts     []HostProgress `json:"hosts"`
}

// SwarmInit forms the swarm on its hosts, or completes it: the first manager
// initialises it unless it is a manager already, the other hosts join as workers,
// roles are promoted (one at a time) or demoted to match the wanted managers (a
// demotion that would break quorum is refused), labels are set and overlay
// networks created. Join tokens never leave the JoinSwarm activity.
//
// Hosts that fail are reported in the result; when the first manager fails, nobody
// can join and every host fails. Invalid input fails the run before any host is
// touched.
func SwarmInit(ctx workflow.Context, in SwarmInitInput) (*SwarmInitResult, error) {
	// Step 1. Check the input before touching any host.
	spec, err := checkSwarmInit(in)
	if err != nil {
		return nil, invalidInput(err.Error())
	}
	// Step 2. Publish progress.
	sw := newSwarmRun(playbooks.KindSwarmInit, in.Hosts)
	if err := sw.expose(ctx); err != nil {
		return nil, err
	}
	first, _ := hostNamed(in.Hosts, spec.Managers[0])
	sw.manager = first.Name
	res := &SwarmInitResult{Managers: []string{}, Workers: []string{}}

	// Step 3. Initialise (or find) the swarm on the first manager.
	var init activities.SwarmChange
	if !sw.call(ctx, first.Name, SwarmPhaseInit, activities.InitSwarmRequest{
		Host: first, AdvertiseAddr: spec.AdvertiseAddr, ListenAddr: spec.ListenAddr, DataPathAddr: spec.DataPathAddr,
	}, swarmActs.InitSwarm, &init) {
		for _, h := range in.Hosts[1:] {
			if h.Name != first.Name {
				sw.finish(ctx, h.Name, HostFailed, "not joined: the swarm could not be initialised on "+first.Name)
			}
		}
		return sw.initResult(res), nil
	}
	res.ClusterID = init.State.ClusterID
	nodeIDs := map[string]string{first.Name: init.State.NodeID}

	// Step 4. Join the others, all at once and all as workers: a join cut short then
	// leaves a worker, never a half-added Raft member. Managers are promoted next,
	// one at a time, each waited for until it is reachable.
	var others []remote.Host
	for _, h := range in.Hosts {
		if h.Name != first.Name {
			others = append(others, h)
		}
	}
	advertiseAddr := spec.AdvertiseAddr
	if isIP(advertiseAddr) {
		advertiseAddr = "" // an IP address is the first manager's own
	}
	eachHost(ctx, len(others), 0, func(ctx workflow.Context, k int) {
		h := others[k]
		var jr activities.SwarmChange
		if sw.call(ctx, h.Name, SwarmPhaseJoin, activities.JoinSwarmRequest{
			Manager: first, Host: h, Role: "worker", AdvertiseAddr: advertiseAddr,
			ListenAddr: spec.ListenAddr, DataPathAddr: dataPath(spec.DataPathAddr),
		}, swarmActs.JoinSwarm, &jr) {
			nodeIDs[h.Name] = jr.State.NodeID
		}
	})

	// Step 5. Roles, then labels, one node at a time through the first manager:
	// promotions before demotions, so quorum only grows before it shrinks.
	for _, role := range []string{"manager", "worker"} {
		for _, h := range in.Hosts {
			wantManager := slices.Contains(spec.Managers, h.Name)
			if sw.failed(h.Name) || h.Name == first.Name || (role == "manager") != wantManager {
				continue
			}
			sw.call(ctx, h.Name, SwarmPhaseRole, activities.UpdateNodeRequest{
				Manager: first, Node: h, NodeID: nodeIDs[h.Name], Role: role,
			}, swarmActs.UpdateNode, nil)
		}
	}
	for _, h := range in.Hosts {
		if labels := spec.Labels[h.Name]; len(labels) > 0 && !sw.failed(h.Name) {
			sw.call(ctx, h.Name, SwarmPhaseLabels, activities.UpdateNodeRequest{
				Manager: first, Node: h, NodeID: nodeIDs[h.Name], Labels: labels,
			}, swarmActs.UpdateNode, nil)
		}
	}

	// Step 6. Overlay networks, through the first manager; a failure counts against it.
	for _, n := range spec.Networks {
		if sw.failed(first.Name) {
			break
		}
		if sw.call(ctx, first.Name, SwarmPhaseNetworks, activities.EnsureNetworkRequest{Manager: first, Network: n}, swarmActs.EnsureNetwork, nil) {
			res.Networks = append(res.Networks, n.Name)
		}
	}

	// Step 7. Read the swarm back for the result.
	var nodes []activities.SwarmNode
	if err := workflow.ExecuteActivity(sw.options(ctx, "read the swarm's nodes"), swarmActs.ListSwarmNodes,
		activities.SwarmManagerRequest{Manager: first}).Get(ctx, &nodes); err == nil {
		for _, h := range in.Hosts {
			for _, n := range nodes {
				if n.ID == nodeIDs[h.Name] && n.ID != "" {
					if n.Role == "manager" {
						res.Managers = append(res.Managers, h.Name)
					} else {
						res.Workers = append(res.Workers, h.Name)
					}
				}
			}
		}
		managers := 0
		for _, n := range nodes {
			if n.Role == "manager" {
				managers++
			}
		}
		res.Quorum = activities.QuorumText(managers)
		if managers%2 == 0 {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%d managers: an even number tolerates no more failures than %d; use an odd number of managers", managers, managers-1))
		}
	}
	sw.finishRest(ctx)
	if ctx.Err() != nil {
		return sw.initResult(res), temporal.NewCanceledError("SwarmInit cancelled")
	}
	return sw.initResult(res), nil
}

// checkSwarmInit validates SwarmInit's input and returns its swarm settings with
// their defaults applied (SwarmInitStep.Normalize).
func checkSwarmInit(in SwarmInitInput) (playbooks.SwarmInitStep, error) {
	spec := in.Swarm
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return spec, err
	}
	return spec, spec.Normalize(playbooks.Scope{Hosts: names}).Err("swarm")
}

// SwarmNodes runs one node operation (promote, demote, drain, activate,
// removeNode) on its hosts, one node at a time, through a manager: the one the
// step names, or the first inventory host that answers as a manager (hosts outside
// the step first, so that a manager is not asked to act on itself when another
// can). A drain waits until the node's tasks run elsewhere. Demotions and removals
// that would break Raft quorum are refused. The first failure stops the operation:
// the remaining hosts are reported as not started.
func SwarmNodes(ctx workflow.Context, in SwarmNodesInput) (*SwarmNodesResult, error) {
	// Step 1. Check the input before touching any host.
	if err := checkSwarmNodes(in); err != nil {
		return nil, invalidInput(err.Error())
	}
	// Step 2. Publish progress.
	sw := newSwarmRun(in.Node.Op, in.Hosts)
	if err := sw.expose(ctx); err != nil {
		return nil, err
	}
	res := &SwarmNodesResult{}

	// Step 3. Find a manager.
	var manager remote.Host
	if in.Node.Manager != "" {
		h, ok := hostNamed(in.Cluster, in.Node.Manager)
		if !ok {
			h, ok = hostNamed(in.Hosts, in.Node.Manager)
		}
		if !ok {
			return nil, invalidInput(fmt.Sprintf("node.manager %q is not among the cluster's hosts", in.Node.Manager))
		}
		manager = h
	} else {
		var candidates []remote.Host
		for _, h := range in.Cluster {
			if _, target := hostNamed(in.Hosts, h.Name); !target {
				candidates = append(candidates, h)
			}
		}
		candidates = append(candidates, in.Hosts...)
		var name string
		if err := workflow.ExecuteActivity(sw.options(ctx, "find a swarm manager"), swarmActs.FindManager,
			activities.FindManagerRequest{Candidates: candidates}).Get(ctx, &name); err != nil {
			sw.failRest(ctx, errorMessage(err))
			return sw.nodesResult(res), nil
		}
		manager, _ = hostNamed(append(slices.Clone(in.Cluster), in.Hosts...), name)
	}
	res.Manager, sw.manager = manager.Name, manager.Name
	sw.publish(ctx)

	// Step 4. One node at a time.
	for _, h := range in.Hosts {
		if ctx.Err() != nil || sw.anyFailed() {
			sw.finish(ctx, h.Name, HostFailed, "not started: an earlier node failed or the run was cancelled")
			continue
		}
		switch in.Node.Op {
		case playbooks.KindPromote, playbooks.KindDemote:
			role := "manager"
			if in.Node.Op == playbooks.KindDemote {
				role = "worker"
			}
			sw.call(ctx, h.Name, SwarmPhaseRole, activities.UpdateNodeRequest{Manager: manager, Node: h, Role: role}, swarmActs.UpdateNode, nil)
		case playbooks.KindActivate:
			sw.call(ctx, h.Name, SwarmPhaseDrain, activities.UpdateNodeRequest{Manager: manager, Node: h, Availability: "active"}, swarmActs.UpdateNode, nil)
		case playbooks.KindDrain:
			var ch activities.SwarmChange
			if !sw.call(ctx, h.Name, SwarmPhaseDrain, activities.UpdateNodeRequest{Manager: manager, Node: h, Availability: "drain"}, swarmActs.UpdateNode, &ch) {
				continue
			}
			timeout := in.Timeout.Std()
			if timeout <= 0 {
				timeout = 10 * time.Minute
			}
			var st activities.DrainStatus
			sw.callWith(ctx, swarmWaitOptions(timeout), h.Name, SwarmPhaseWait, activities.DrainRequest{
				Manager: manager, Node: h, NodeID: ch.State.NodeID, Timeout: playbooks.Duration(timeout),
			}, swarmActs.WaitDrained, &st)
		case playbooks.KindRemoveNode:
			sw.call(ctx, h.Name, SwarmPhaseRole, activities.RemoveNodeRequest{Manager: manager, Node: h, Force: in.Node.Force}, swarmActs.RemoveNode, nil)
		}
		if !sw.done(h.Name) {
			sw.finish(ctx, h.Name, sw.state(h.Name), sw.message(h.Name))
		}
	}
	if ctx.Err() != nil {
		return sw.nodesResult(res), temporal.NewCanceledError("SwarmNodes cancelled")
	}
	return sw.nodesResult(res), nil
}

// checkSwarmNodes validates SwarmNodes' input (NodeStep.Normalize): the manager it
// names must be a host of the cluster.
func checkSwarmNodes(in SwarmNodesInput) error {
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return err
	}
	return in.Node.Normalize(playbooks.Scope{Hosts: names, Inventory: hostNames(in.Cluster, in.Hosts)}).Err("node")
}

func (sw *swarmRun) initResult(res *SwarmInitResult) *SwarmInitResult {
	res.Hosts = sw.hosts.outcomes()
	return res
}

func (sw *swarmRun) nodesResult(res *SwarmNodesResult) *SwarmNodesResult {
	res.Hosts = sw.hosts.outcomes()
	return res
}

// swarmRun is the bookkeeping of one SwarmInit, SwarmNodes or RollingNodeUpgrade
// execution. Hosts are known by name.
type swarmRun struct {
	op      string // swarmInit, promote, drain, ..., rollingNodeUpgrade
	manager string // the host whose engine is asked, once known
	hosts   *hostTracker
	// footer, when set, adds its text below the hosts in the Web UI's details.
	footer func() string
}

func newSwarmRun(op string, hosts []remote.Host) *swarmRun {
	return &swarmRun{op: op, hosts: newHostTracker(hosts, SwarmPhasePending)}
}

// progress is the result of the progress query.
func (sw *swarmRun) progress() SwarmProgress {
	return SwarmProgress{Operation: sw.op, Manager: sw.manager, Hosts: sw.hosts.hosts}
}

// expose registers the progress query and publishes the first table.
func (sw *swarmRun) expose(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*SwarmProgress, error) {
		p := sw.progress()
		return &p, nil
	}, workflow.QueryHandlerOptions{Description: "per-host phase and state of the swarm operation"}); err != nil {
		return err
	}
	sw.publish(ctx)
	return nil
}

func (sw *swarmRun) options(ctx workflow.Context, summary string) workflow.Context {
	return withSummary(ctx, swarmOptions, summary)
}

// call runs one activity for host name in phase. Its SwarmChange (res may be nil)
// is noted; on failure the host is finished as failed and call returns false.
func (sw *swarmRun) call(ctx workflow.Context, name, phase string, req, activity any, res *activities.SwarmChange) bool {
	if res == nil {
		res = &activities.SwarmChange{}
	}
	return sw.callWith(ctx, swarmOptions, name, phase, req, activity, res)
}

// callWith runs one activity for host name in phase with the preset opts, its
// result into res (a SwarmChange is noted). On failure the host is finished as
// failed and it returns false; a host finished already is not called again.
func (sw *swarmRun) callWith(ctx workflow.Context, opts workflow.ActivityOptions, name, phase string, req, activity, res any) bool {
	i := sw.hosts.index(name)
	if i >= 0 {
		if sw.hosts.done(i) {
			return false
		}
		sw.hosts.begin(i, phase)
	}
	sw.publish(ctx)
	err := workflow.ExecuteActivity(withSummary(ctx, opts, fmt.Sprintf("%s on %s", phase, name)), activity, req).Get(ctx, res)
	switch {
	case err == nil:
		if i >= 0 {
			if ch, ok := res.(*activities.SwarmChange); ok {
				sw.hosts.note(i, ch.Changed, ch.Message)
			}
			sw.hosts.hosts[i].Message = sw.hosts.message(i)
		}
		sw.publish(ctx)
		return true
	case temporal.IsCanceledError(err) || ctx.Err() != nil:
		sw.finish(ctx, name, HostFailed, "cancelled during "+phase)
	default:
		sw.finish(ctx, name, HostFailed, phase+": "+errorMessage(err))
	}
	return false
}

// finish records host name's final state; a host that did not fail is done.
func (sw *swarmRun) finish(ctx workflow.Context, name, state, msg string) {
	i := sw.hosts.index(name)
	if i < 0 {
		return
	}
	sw.hosts.finish(i, state, msg)
	if state != HostFailed {
		sw.hosts.hosts[i].Phase = SwarmPhaseDone
	}
	sw.publish(ctx)
}

// finishRest finishes every host not finished yet: with its result and what its
// activities said.
func (sw *swarmRun) finishRest(ctx workflow.Context) {
	for i, h := range sw.hosts.hosts {
		if !sw.hosts.done(i) {
			sw.finish(ctx, h.Host, sw.hosts.result(i), sw.hosts.message(i))
		}
	}
}

// failRest fails every host not finished yet with msg.
func (sw *swarmRun) failRest(ctx workflow.Context, msg string) {
	for i, h := range sw.hosts.hosts {
		if !sw.hosts.done(i) {
			sw.finish(ctx, h.Host, HostFailed, msg)
		}
	}
}

func (sw *swarmRun) done(name string) bool {
	i := sw.hosts.index(name)
	return i >= 0 && sw.hosts.done(i)
}
func (sw *swarmRun) failed(name string) bool {
	i := sw.hosts.index(name)
	return i >= 0 && sw.hosts.failed(i)
}
func (sw *swarmRun) anyFailed() bool { return sw.hosts.anyFailed() }

// noteChange records a change on host name that no SwarmChange reported.
func (sw *swarmRun) noteChange(name string, changed bool, msg string) {
	if i := sw.hosts.index(name); i >= 0 {
		sw.hosts.note(i, changed, msg)
	}
}

func (sw *swarmRun) changed(name string) bool {
	i := sw.hosts.index(name)
	return i >= 0 && sw.hosts.changed[i]
}

func (sw *swarmRun) phase(name string) string {
	if i := sw.hosts.index(name); i >= 0 {
		return sw.hosts.hosts[i].Phase
	}
	return ""
}

func (sw *swarmRun) state(name string) string {
	if i := sw.hosts.index(name); i >= 0 {
		return sw.hosts.result(i)
	}
	return HostUnchanged
}

func (sw *swarmRun) message(name string) string {
	if i := sw.hosts.index(name); i >= 0 {
		return sw.hosts.message(i)
	}
	return ""
}

// publish refreshes the Markdown the Web UI shows as the run's current details.
func (sw *swarmRun) publish(ctx workflow.Context) {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**%s**", sw.op))
	if sw.manager != "" {
		b.WriteString(" through " + sw.manager)
	}
	b.WriteString("\n\n" + sw.hosts.table(false))
	if sw.footer != nil {
		b.WriteString(sw.footer())
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

func hostNamed(hosts []remote.Host, name string) (remote.Host, bool) {
	for _, h := range hosts {
		if h.Name == name {
			return h, true
		}
	}
	return remote.Host{}, false
}

// isIP reports whether an advertise setting is a literal address (with or without
// a port) rather than "address" or an interface name.
func isIP(v string) bool {
	return v != "" && v != "address" && strings.ContainsAny(v, ".:")
}

// dataPath keeps interface names and "address" for joiners; a literal address is
// the first manager's.
func dataPath(v string) string {
	if isIP(v) {
		return ""
	}
	return v
}
