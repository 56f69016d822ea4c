package workflows

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
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
	Operation string              `json:"operation"` // swarmInit, promote, drain, ...
	Manager   string              `json:"manager,omitempty"`
	Hosts     []SwarmHostProgress `json:"hosts"`
}

// SwarmHostProgress is one host's phase and state (HostPending ... HostFailed).
type SwarmHostProgress struct {
	Host    string `json:"host"`
	Phase   string `json:"phase"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

var (
	// swarmOptions serve the swarm activities: API calls plus waits of up to 90 s
	// for a node to be ready or to settle in its role.
	swarmOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    hostHeartbeat,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    2 * time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    30 * time.Second,
			MaximumAttempts:    6,
			NonRetryableErrorTypes: []string{
				activities.ErrInvalidInput, activities.ErrAuthFailed,
				activities.ErrHostKeyMismatch, activities.ErrHostKeyUnknown,
				activities.ErrRemoteFailed, activities.ErrQuorum,
				activities.ErrSwarmConflict, activities.ErrDrainTimeout,
			},
		},
	}
)

// swarmActs names the swarm activities for ExecuteActivity.
var swarmActs *activities.Swarm

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
	if err := checkSwarmInit(in); err != nil {
		return nil, invalidInput(err.Error())
	}
	sw := newSwarmRun(ctx, playbooks.KindSwarmInit, in.Hosts)
	if err := sw.expose(ctx); err != nil {
		return nil, err
	}
	spec := in.Swarm
	first, _ := hostNamed(in.Hosts, spec.Managers[0])
	sw.progress.Manager = first.Name
	res := &SwarmInitResult{Managers: []string{}, Workers: []string{}}

	// 1. Initialise (or find) the swarm on the first manager.
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

	// 2. Join the others, all at once and all as workers: a join cut short then
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
	eachHost(ctx, others, func(ctx workflow.Context, h remote.Host) {
		var jr activities.SwarmChange
		if sw.call(ctx, h.Name, SwarmPhaseJoin, activities.JoinSwarmRequest{
			Manager: first, Host: h, Role: "worker", AdvertiseAddr: advertiseAddr,
			ListenAddr: spec.ListenAddr, DataPathAddr: dataPath(spec.DataPathAddr),
		}, swarmActs.JoinSwarm, &jr) {
			nodeIDs[h.Name] = jr.State.NodeID
		}
	})

	// 3. Roles, then labels, one node at a time through the first manager:
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

	// 4. Overlay networks, through the first manager; a failure counts against it.
	for _, n := range spec.Networks {
		if sw.failed(first.Name) {
			break
		}
		if sw.call(ctx, first.Name, SwarmPhaseNetworks, activities.EnsureNetworkRequest{Manager: first, Network: n}, swarmActs.EnsureNetwork, nil) {
			res.Networks = append(res.Networks, n.Name)
		}
	}

	// 5. Read the swarm back for the result.
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
	for _, h := range in.Hosts {
		if !sw.done(h.Name) {
			sw.finish(ctx, h.Name, sw.state(h.Name), sw.message(h.Name))
		}
	}
	if ctx.Err() != nil {
		return sw.initResult(res), temporal.NewCanceledError("SwarmInit cancelled")
	}
	return sw.initResult(res), nil
}

// checkSwarmInit validates SwarmInit's input.
func checkSwarmInit(in SwarmInitInput) error {
	if _, err := checkHosts(in.Hosts); err != nil {
		return err
	}
	if len(in.Swarm.Managers) == 0 {
		return errors.New(`swarm.managers is empty: name at least one of the hosts`)
	}
	for _, m := range in.Swarm.Managers {
		if _, ok := hostNamed(in.Hosts, m); !ok {
			return fmt.Errorf("swarm.managers: %q is not among the hosts", m)
		}
	}
	if err := labelHostsKnown(in); err != nil {
		return err
	}
	for i, n := range in.Swarm.Networks {
		if n.Name == "" {
			return fmt.Errorf("swarm.networks[%d] has no name", i)
		}
	}
	return nil
}

// labelHostsKnown checks that labels name hosts of the input. The first unknown name
// in sorted order is reported, so the message does not depend on map order.
func labelHostsKnown(in SwarmInitInput) error {
	//workflowcheck:ignore sorted right after; the result does not depend on map order
	names := slices.Sorted(maps.Keys(in.Swarm.Labels))
	for _, name := range names {
		if _, ok := hostNamed(in.Hosts, name); !ok {
			return fmt.Errorf("swarm.labels: %q is not among the hosts", name)
		}
	}
	return nil
}

// SwarmNodes runs one node operation (promote, demote, drain, activate,
// removeNode) on its hosts, one node at a time, through a manager: the one the
// step names, or the first inventory host that answers as a manager (hosts outside
// the step first, so that a manager is not asked to act on itself when another
// can). A drain waits until the node's tasks run elsewhere. Demotions and removals
// that would break Raft quorum are refused. The first failure stops the operation:
// the remaining hosts are reported as not started.
func SwarmNodes(ctx workflow.Context, in SwarmNodesInput) (*SwarmNodesResult, error) {
	if _, err := checkHosts(in.Hosts); err != nil {
		return nil, invalidInput(err.Error())
	}
	if !isNodeOp(in.Node.Op) {
		return nil, invalidInput(fmt.Sprintf("node.op %q is not one of promote, demote, drain, activate, removeNode", in.Node.Op))
	}
	sw := newSwarmRun(ctx, in.Node.Op, in.Hosts)
	if err := sw.expose(ctx); err != nil {
		return nil, err
	}
	res := &SwarmNodesResult{}

	// 1. Find a manager.
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
			for _, h := range in.Hosts {
				sw.finish(ctx, h.Name, HostFailed, errorMessage(err))
			}
			return sw.nodesResult(res), nil
		}
		manager, _ = hostNamed(append(slices.Clone(in.Cluster), in.Hosts...), name)
	}
	res.Manager, sw.progress.Manager = manager.Name, manager.Name
	sw.publish(ctx)

	// 2. One node at a time.
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
			opts := swarmOptions
			opts.StartToCloseTimeout = timeout + 2*time.Minute
			var st activities.DrainStatus
			sw.callWith(ctx, opts, h.Name, SwarmPhaseWait, activities.DrainRequest{
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

// swarmRun is the bookkeeping of one SwarmInit or SwarmNodes execution.
type swarmRun struct {
	progress *SwarmProgress
	changed  map[string]bool
	notes    map[string][]string
	final    map[string]bool
	// footer, when set, adds its text below the hosts in the Web UI's details.
	footer func() string
}

func newSwarmRun(_ workflow.Context, op string, hosts []remote.Host) *swarmRun {
	sw := &swarmRun{
		progress: &SwarmProgress{Operation: op},
		changed:  map[string]bool{}, notes: map[string][]string{}, final: map[string]bool{},
	}
	for _, h := range hosts {
		sw.progress.Hosts = append(sw.progress.Hosts, SwarmHostProgress{Host: h.Name, Phase: SwarmPhasePending, State: HostPending})
	}
	return sw
}

// expose registers the progress query and publishes the first table.
func (sw *swarmRun) expose(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*SwarmProgress, error) {
		return sw.progress, nil
	}, workflow.QueryHandlerOptions{Description: "per-host phase and state of the swarm operation"}); err != nil {
		return err
	}
	sw.publish(ctx)
	return nil
}

func (sw *swarmRun) host(name string) *SwarmHostProgress {
	for i := range sw.progress.Hosts {
		if sw.progress.Hosts[i].Host == name {
			return &sw.progress.Hosts[i]
		}
	}
	return &SwarmHostProgress{}
}

func (sw *swarmRun) options(ctx workflow.Context, summary string) workflow.Context {
	opts := swarmOptions
	opts.Summary = summary
	return workflow.WithActivityOptions(ctx, opts)
}

// call runs one activity for host name in phase. Its SwarmChange (res may be nil)
// is noted; on failure the host is finished as failed and call returns false.
func (sw *swarmRun) call(ctx workflow.Context, name, phase string, req, activity any, res *activities.SwarmChange) bool {
	return sw.callWith(ctx, swarmOptions, name, phase, req, activity, res)
}

func (sw *swarmRun) callWith(ctx workflow.Context, opts workflow.ActivityOptions, name, phase string, req, activity, res any) bool {
	hp := sw.host(name)
	if sw.final[name] {
		return false
	}
	hp.Phase, hp.State = phase, HostRunning
	sw.publish(ctx)
	opts.Summary = fmt.Sprintf("%s on %s", phase, name)
	var ch activities.SwarmChange
	var err error
	switch r := res.(type) {
	case *activities.SwarmChange:
		if r == nil {
			r = &ch
		}
		err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), activity, req).Get(ctx, r)
		ch = *r
	default:
		err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), activity, req).Get(ctx, res)
	}
	switch {
	case err == nil:
		if ch.Changed {
			sw.changed[name] = true
		}
		if ch.Message != "" {
			sw.notes[name] = append(sw.notes[name], ch.Message)
		}
		hp.Message = strings.Join(sw.notes[name], "; ")
		sw.publish(ctx)
		return true
	case temporal.IsCanceledError(err) || ctx.Err() != nil:
		sw.finish(ctx, name, HostFailed, "cancelled during "+phase)
	default:
		sw.finish(ctx, name, HostFailed, phase+": "+errorMessage(err))
	}
	return false
}

func (sw *swarmRun) finish(ctx workflow.Context, name, state, msg string) {
	hp := sw.host(name)
	hp.State, hp.Message, sw.final[name] = state, msg, true
	if state != HostFailed {
		hp.Phase = SwarmPhaseDone
	}
	sw.publish(ctx)
}

func (sw *swarmRun) done(name string) bool { return sw.final[name] }
func (sw *swarmRun) failed(name string) bool {
	return sw.final[name] && sw.host(name).State == HostFailed
}

func (sw *swarmRun) anyFailed() bool {
	for _, h := range sw.progress.Hosts {
		if h.State == HostFailed {
			return true
		}
	}
	return false
}

func (sw *swarmRun) state(name string) string {
	if sw.changed[name] {
		return HostChanged
	}
	return HostUnchanged
}

func (sw *swarmRun) message(name string) string { return strings.Join(sw.notes[name], "; ") }

func (sw *swarmRun) outcomes() []HostOutcome {
	out := make([]HostOutcome, 0, len(sw.progress.Hosts))
	for _, h := range sw.progress.Hosts {
		out = append(out, HostOutcome{Host: h.Host, State: h.State, Message: h.Message})
	}
	return out
}

func (sw *swarmRun) initResult(res *SwarmInitResult) *SwarmInitResult {
	res.Hosts = sw.outcomes()
	return res
}

func (sw *swarmRun) nodesResult(res *SwarmNodesResult) *SwarmNodesResult {
	res.Hosts = sw.outcomes()
	return res
}

// publish refreshes the Markdown the Web UI shows as the run's current details.
func (sw *swarmRun) publish(ctx workflow.Context) {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**%s**", sw.progress.Operation))
	if sw.progress.Manager != "" {
		b.WriteString(" through " + sw.progress.Manager)
	}
	b.WriteString("\n\n| host | phase | state | message |\n|---|---|---|---|\n")
	for _, h := range sw.progress.Hosts {
		b.WriteString(fmt.Sprintf("| %s | %s | %s | %s |\n", h.Host, h.Phase, h.State, strings.ReplaceAll(h.Message, "|", "\\|")))
	}
	if sw.footer != nil {
		b.WriteString(sw.footer())
	}
	workflow.SetCurrentDetails(ctx, b.String())
}

// eachHost runs fn for every host in its own coroutine and waits for all.
func eachHost(ctx workflow.Context, hosts []remote.Host, fn func(workflow.Context, remote.Host)) {
	wg := workflow.NewWaitGroup(ctx)
	for _, h := range hosts {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			fn(ctx, h)
		})
	}
	wg.Wait(ctx)
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
