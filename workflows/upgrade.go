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

// RollingNodeUpgradeName is the registered name of RollingNodeUpgrade: stable, histories use it.
const RollingNodeUpgradeName = "RollingNodeUpgrade"

// RollingUpgradeInput is the one argument of RollingNodeUpgrade. From the Web UI:
//
//	{"hosts": [{"name": "master", "address": "10.211.73.11", ...}, ...],
//	 "cluster": [... every inventory host ...],
//	 "upgrade": {"docker": {"source": "offline", "packages": "/srv/debs",
//	  "version": "20.10.24+dfsg1-1+deb12u1"}, "maxUnavailable": 50, "approval": true},
//	 "dryRun": true}
type RollingUpgradeInput struct {
	Hosts []remote.Host `json:"hosts"`
	// Cluster is every host of the inventory: where managers are looked for.
	Cluster []remote.Host                `json:"cluster"`
	Upgrade playbooks.RollingUpgradeStep `json:"upgrade"`
	// Timeout bounds each wait: tasks moved off a node, a node Ready, the
	// services converged. Default 10m.
	Timeout playbooks.Duration `json:"timeout,omitempty"`
	// DryRun reads the swarm and returns the plan per node; nothing is changed.
	DryRun bool `json:"dryRun,omitempty"`
}

// Actions of the plan, per node.
const (
	UpgradeActionUpgrade  = "upgrade"  // drain, upgrade, restart, Ready, activate
	UpgradeActionActivate = "activate" // upgraded by an earlier run that stopped: Ready, activate
	UpgradeActionSkip     = "skip"     // at the wanted version already
)

// UpgradeNodePlan is one node's line of the plan.
type UpgradeNodePlan struct {
	Host         string `json:"host"`
	Role         string `json:"role"` // manager, manager (leader), worker
	Batch        int    `json:"batch,omitempty"`
	Action       string `json:"action"`
	Availability string `json:"availability"`
	Installed    string `json:"installed"` // package and version now
	Engine       string `json:"engine"`    // engine version the swarm reports
	// Note explains the action, or why the node would be refused.
	Note string `json:"note,omitempty"`
}

// BatchBoundary is the swarm's services as seen before the first batch (After 0)
// and after each batch: every service's running tasks against those wanted.
type BatchBoundary struct {
	After     int       `json:"after"`
	Nodes     []string  `json:"nodes,omitempty"`
	Services  []string  `json:"services"`
	Satisfied bool      `json:"satisfied"`
	At        time.Time `json:"at"`
}

// RollingUpgradeResult is what RollingNodeUpgrade did (or, for a dry run, would do).
type RollingUpgradeResult struct {
	Hosts      []HostOutcome             `json:"hosts"`
	Version    string                    `json:"version"`
	Plan       []UpgradeNodePlan         `json:"plan"`
	Batches    int                       `json:"batches"`
	Boundaries []BatchBoundary           `json:"boundaries,omitempty"`
	Backup     *activities.BackupResult  `json:"backup,omitempty"`
	Converged  []activities.ServiceCount `json:"converged,omitempty"`
	DryRun     bool                      `json:"dryRun,omitempty"`
	Engines    map[string]string         `json:"engines,omitempty"` // host: engine version after
	Approvals  []UpgradeApproval         `json:"approvals,omitempty"`
	Manager    string                    `json:"manager,omitempty"`
}

func (r *RollingUpgradeResult) hostOutcomes() []HostOutcome { return r.Hosts }

// ApproveSignal is the signal that lets RollingNodeUpgrade go on to the next batch
// when the step asks for approval. Its payload names the batch approved, as the
// progress query shows it waiting: {"batch": 2}.
const ApproveSignal = "approve"

// UpgradeApproval is an approval a run received.
type UpgradeApproval struct {
	Batch int    `json:"batch"`
	By    string `json:"by,omitempty"`
}

// RollingUpgradeProgress is the result of RollingNodeUpgrade's "progress" query.
type RollingUpgradeProgress struct {
	SwarmProgress
	Version    string          `json:"version"`
	Batch      int             `json:"batch"`   // the batch in progress, 1-based; 0 before the first
	Batches    int             `json:"batches"` // batches in the plan
	Waiting    int             `json:"waitingApproval,omitempty"`
	Boundaries []BatchBoundary `json:"boundaries,omitempty"`
}

// Phases of a node in RollingNodeUpgrade, beyond the swarm phases.
const (
	UpgradePhaseBackup   = "backup"
	UpgradePhaseEngine   = "engine"
	UpgradePhaseReady    = "wait-ready"
	UpgradePhaseActivate = "activate"
	UpgradePhaseConverge = "converge"
)

// RollingNodeUpgrade upgrades the Docker engine of its hosts, which must be nodes of
// one swarm: managers one at a time (the leader last), then workers in batches of
// at most Upgrade.MaxUnavailable percent of the swarm's workers. For each batch:
// every node is drained (refused, non-retryable, for a manager whose absence would
// break Raft quorum) and its tasks seen running elsewhere; a backup of the Raft
// state is taken before the first engine is changed; InstallDocker upgrades and
// restarts the engines; each node is seen Ready and set active again; and every
// service is seen converged, its counts recorded, before the next batch (after an
// "approve" signal, when the step asks for approval). Nodes already at the version
// are left alone, so a run that stopped halfway resumes where it stopped.
//
// A failed batch stops the run: its nodes are left drained and the report says
// where. With DryRun it returns the plan and changes nothing.
func RollingNodeUpgrade(ctx workflow.Context, in RollingUpgradeInput) (*RollingUpgradeResult, error) {
	// Step 1. Check the input before touching any host.
	if err := checkRollingUpgrade(&in); err != nil {
		return nil, invalidInput(err.Error())
	}
	// Step 2. Publish progress.
	u := &upgradeRun{in: in, sw: newSwarmRun(playbooks.KindRollingNodeUpgrade, in.Hosts),
		res: &RollingUpgradeResult{Version: in.Upgrade.Docker.Version, DryRun: in.DryRun, Engines: map[string]string{}}}
	u.progress = &RollingUpgradeProgress{Version: in.Upgrade.Docker.Version}
	u.sw.footer = u.footer
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*RollingUpgradeProgress, error) {
		u.progress.SwarmProgress = u.sw.progress()
		return u.progress, nil
	}, workflow.QueryHandlerOptions{Description: "per-node phase and state, the batch in progress and the service counts at each batch boundary"}); err != nil {
		return nil, err
	}
	u.sw.publish(ctx)

	// Step 3. Read the swarm through a manager and make the plan.
	manager, ok := u.manager(ctx, nil)
	if !ok {
		return u.result(), nil
	}
	var state activities.UpgradeState
	if !u.activity(ctx, "read the swarm", swarmOptions, swarmActs.UpgradeState, activities.UpgradeStateRequest{
		Manager: manager, Hosts: in.Hosts, Version: in.Upgrade.Docker.Version,
	}, &state) {
		return u.result(), nil
	}
	u.state = state
	batches := u.plan(state)
	u.progress.Batches, u.res.Batches = len(batches), len(batches)
	u.record(ctx, 0, nil, state.Services)
	if why := u.refusal(state); why != "" || in.DryRun {
		for _, p := range u.res.Plan {
			switch {
			case in.DryRun:
				u.sw.finish(ctx, p.Host, HostUnchanged, "dry run: "+p.Action+planNote(p))
			case p.Host == u.refused:
				u.sw.finish(ctx, p.Host, HostFailed, why)
			default:
				u.sw.finish(ctx, p.Host, HostFailed, "not started: "+why)
			}
		}
		return u.result(), nil
	}
	for _, p := range u.res.Plan {
		if p.Action == UpgradeActionSkip {
			u.sw.finish(ctx, p.Host, HostUnchanged, "already at "+p.Installed+" (engine "+p.Engine+")")
		}
	}

	// Step 4. Batch by batch.
	for k, batch := range batches {
		n := k + 1
		if in.Upgrade.Approval && n > 1 && !u.approve(ctx, n) {
			break
		}
		u.progress.Batch = n
		if !u.runBatch(ctx, n, batch) || ctx.Err() != nil {
			break
		}
	}
	for _, h := range in.Hosts {
		if !u.sw.done(h.Name) {
			u.sw.finish(ctx, h.Name, HostFailed, "not started: an earlier batch failed or the run was cancelled")
		}
	}
	if ctx.Err() != nil {
		return u.result(), temporal.NewCanceledError("RollingNodeUpgrade cancelled")
	}
	return u.result(), nil
}

// checkRollingUpgrade validates RollingNodeUpgrade's input and applies the defaults
// of its engine settings (RollingUpgradeStep.Normalize).
func checkRollingUpgrade(in *RollingUpgradeInput) error {
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return err
	}
	return in.Upgrade.Normalize(playbooks.Scope{Hosts: names, Inventory: hostNames(in.Cluster, in.Hosts)}).Err("upgrade")
}

// upgradeRun is the state of one RollingNodeUpgrade execution.
type upgradeRun struct {
	in       RollingUpgradeInput
	sw       *swarmRun
	progress *RollingUpgradeProgress
	res      *RollingUpgradeResult
	state    activities.UpgradeState    // the nodes as read before the first batch
	byHost   map[string]UpgradeNodePlan // looked up only, never ranged
	refused  string                     // the node that makes the run refused
}

// plan orders the nodes (managers first, one per batch, the leader last; then the
// workers in batches of the budget) and records each node's action.
func (u *upgradeRun) plan(st activities.UpgradeState) [][]string {
	u.byHost = map[string]UpgradeNodePlan{}
	var managers, leader, workers []string
	for _, n := range st.Nodes {
		p := UpgradeNodePlan{Host: n.Host, Role: n.Role, Availability: n.Availability, Engine: n.Engine,
			Installed: strings.TrimSpace(n.Package + " " + n.Installed), Action: UpgradeActionUpgrade}
		if n.Leader {
			p.Role += " (leader)"
		}
		switch {
		case n.Current && n.Labelled:
			p.Action, p.Note = UpgradeActionActivate, "upgraded by an earlier run that stopped before setting it active"
		case n.Current:
			p.Action = UpgradeActionSkip
		case n.Stale:
			p.Note = "the new package is installed but the engine still runs the old binary"
		}
		if n.State != "ready" {
			p.Note = "node is " + n.State
		} else if n.Refusal != "" && p.Action != UpgradeActionSkip {
			p.Note = n.Refusal
		}
		if n.Availability != "active" && !n.Labelled && p.Action != UpgradeActionSkip {
			p.Note = strings.TrimPrefix(p.Note+"; ", "; ") + "drained before this run: left drained afterwards"
		}
		u.byHost[n.Host] = p
		if p.Action == UpgradeActionSkip {
			continue
		}
		switch {
		case n.Role == "manager" && n.Leader:
			leader = append(leader, n.Host)
		case n.Role == "manager":
			managers = append(managers, n.Host)
		default:
			workers = append(workers, n.Host)
		}
	}
	var batches [][]string
	for _, m := range append(managers, leader...) {
		batches = append(batches, []string{m})
	}
	size := playbooks.WorkerBatch(st.Workers, u.in.Upgrade.MaxUnavailable)
	for chunk := range slices.Chunk(workers, size) {
		batches = append(batches, chunk)
	}
	for k, b := range batches {
		for _, h := range b {
			p := u.byHost[h]
			p.Batch = k + 1
			u.byHost[h] = p
		}
	}
	for _, n := range st.Nodes {
		u.res.Plan = append(u.res.Plan, u.byHost[n.Host])
	}
	slices.SortStableFunc(u.res.Plan, func(a, b UpgradeNodePlan) int { return batchRank(a) - batchRank(b) })
	return batches
}

// batchRank sorts the plan by batch, skipped nodes last.
func batchRank(p UpgradeNodePlan) int {
	if p.Batch == 0 {
		return 1 << 20
	}
	return p.Batch
}

// refusal is why the upgrade cannot start at all: a node that is not Ready, or a
// manager whose absence would break quorum. "" when it can.
func (u *upgradeRun) refusal(st activities.UpgradeState) string {
	for _, n := range st.Nodes {
		p := u.byHost[n.Host]
		if p.Action == UpgradeActionSkip {
			continue
		}
		if n.State != "ready" {
			u.refused = n.Host
			return fmt.Sprintf("refused: %s is %s; bring it back, or leave it out of the step's hosts", n.Host, n.State)
		}
		if n.Refusal != "" {
			u.refused = n.Host
			return n.Refusal
		}
	}
	return ""
}

// runBatch upgrades one batch. It returns false when a node of it failed.
func (u *upgradeRun) runBatch(ctx workflow.Context, n int, batch []string) bool {
	manager, ok := u.manager(ctx, batch)
	if !ok {
		return false
	}
	hosts := make([]remote.Host, 0, len(batch))
	for _, name := range batch {
		h, _ := hostNamed(u.in.Hosts, name)
		hosts = append(hosts, h)
	}
	timeout := u.in.Timeout
	if timeout <= 0 {
		timeout = playbooks.Duration(10 * time.Minute)
	}
	waitOpts := swarmWaitOptions(timeout.Std())

	// Drain the batch's nodes and wait until their tasks run elsewhere.
	var upgrade []remote.Host
	eachHost(ctx, len(hosts), 0, func(ctx workflow.Context, k int) {
		h := hosts[k]
		p := u.byHost[h.Name]
		if p.Action != UpgradeActionUpgrade {
			return
		}
		id := u.node(h.Name).NodeID
		if !u.sw.call(ctx, h.Name, SwarmPhaseDrain, activities.UpgradeNodeRequest{Manager: manager, Node: h, NodeID: id}, swarmActs.DrainForUpgrade, nil) {
			return
		}
		var ds activities.DrainStatus
		if u.sw.callWith(ctx, waitOpts, h.Name, SwarmPhaseWait, activities.DrainRequest{Manager: manager, Node: h, NodeID: id, Timeout: timeout},
			swarmActs.WaitDrained, &ds) {
			upgrade = append(upgrade, h)
		}
	})
	if u.sw.anyFailed() {
		return u.stopBatch(ctx, n, batch)
	}
	slices.SortStableFunc(upgrade, func(a, b remote.Host) int { return slices.Index(batch, a.Name) - slices.Index(batch, b.Name) })

	// The Raft state backup, before the first engine changes: from the drained
	// manager of this batch (its engine stopped for the copy), or taken live from
	// the manager asked when the run upgrades no manager.
	if !u.in.Upgrade.NoBackup && u.res.Backup == nil && len(upgrade) > 0 {
		from, stop := manager, false
		if u.byHost[upgrade[0].Name].Role != "worker" {
			from, stop = upgrade[0], true
		}
		path := fmt.Sprintf("/var/backups/clusterflow/swarm-%s-%s.tar.gz", from.Name, workflow.GetInfo(ctx).WorkflowStartTime.UTC().Format("20060102T150405Z"))
		var b activities.BackupResult
		if !u.sw.callWith(ctx, waitOpts, upgrade[0].Name, UpgradePhaseBackup, activities.BackupRequest{Host: from, Path: path, Live: !stop}, swarmActs.BackupSwarmState, &b) {
			return u.stopBatch(ctx, n, batch)
		}
		u.res.Backup = &b
		u.sw.noteChange(upgrade[0].Name, false, fmt.Sprintf("Raft state backup %s:%s (%d bytes)", from.Name, b.Path, b.Bytes))
	}

	// Upgrade and restart the engines: InstallDocker with the step's settings.
	if len(upgrade) > 0 {
		for _, h := range upgrade {
			u.sw.hosts.begin(u.sw.hosts.index(h.Name), UpgradePhaseEngine)
		}
		u.sw.publish(ctx)
		var res InstallDockerResult
		cctx := childOptions(ctx, fmt.Sprintf("%s/batch-%d", workflow.GetInfo(ctx).WorkflowExecution.ID, n),
			fmt.Sprintf("engine upgrade to %s, batch %d: %s", u.in.Upgrade.Docker.Version, n, strings.Join(batch, ", ")))
		err := workflow.ExecuteChildWorkflow(cctx, InstallDocker, InstallDockerInput{Hosts: upgrade, Docker: u.in.Upgrade.Docker}).Get(ctx, &res)
		for _, h := range upgrade {
			switch {
			case err != nil:
				u.sw.finish(ctx, h.Name, HostFailed, "engine: "+errorMessage(err)+"; left drained")
			default:
				o := outcomeOf(res.Hosts, h.Name)
				if o.State == HostFailed {
					u.sw.finish(ctx, h.Name, HostFailed, "engine: "+o.Message+"; left drained")
				} else {
					u.sw.noteChange(h.Name, true, fmt.Sprintf("%s → %s", u.byHost[h.Name].Installed, u.in.Upgrade.Docker.Version))
				}
			}
		}
		if u.sw.anyFailed() {
			return u.stopBatch(ctx, n, batch)
		}
	}

	// Each node Ready, then active again (unless it was drained before the run).
	manager, ok = u.manager(ctx, nil)
	if !ok {
		return false
	}
	eachHost(ctx, len(hosts), 0, func(ctx workflow.Context, k int) {
		h := hosts[k]
		id, p := u.node(h.Name).NodeID, u.byHost[h.Name]
		var engine string
		if !u.sw.callWith(ctx, waitOpts, h.Name, UpgradePhaseReady, activities.UpgradeNodeRequest{Manager: manager, Node: h, NodeID: id, Timeout: timeout},
			swarmActs.WaitNodeReady, &engine) {
			return
		}
		u.res.Engines[h.Name] = engine
		wasActive := p.Availability == "active" || u.node(h.Name).Labelled
		req := activities.UpdateNodeRequest{Manager: manager, Node: h, NodeID: id, Labels: map[string]string{activities.UpgradeLabel: ""}}
		if wasActive {
			req.Availability = "active"
		}
		u.sw.call(ctx, h.Name, UpgradePhaseActivate, req, swarmActs.UpdateNode, nil)
	})
	if u.sw.anyFailed() {
		return u.stopBatch(ctx, n, batch)
	}

	// The services converged: the batch boundary.
	var counts []activities.ServiceCount
	ok = u.sw.callWith(ctx, waitOpts, batch[0], UpgradePhaseConverge, activities.UpgradeNodeRequest{Manager: manager, Timeout: timeout},
		swarmActs.WaitConverged, &counts)
	if !ok {
		return u.stopBatch(ctx, n, batch)
	}
	u.res.Converged = counts
	u.record(ctx, n, batch, counts)
	for _, h := range batch {
		msg := u.sw.message(h)
		if e := u.res.Engines[h]; e != "" {
			msg = strings.TrimPrefix(msg+"; ", "; ") + "engine " + e + " Ready"
		}
		u.sw.finish(ctx, h, u.sw.state(h), msg)
	}
	return true
}

// stopBatch ends batch n after a failure: its unfinished nodes are reported as
// stopped (left drained when they were), and the run goes no further.
func (u *upgradeRun) stopBatch(ctx workflow.Context, n int, batch []string) bool {
	var failed []string
	for _, h := range batch {
		if u.sw.failed(h) {
			failed = append(failed, h)
		}
	}
	for _, h := range batch {
		if !u.sw.done(h) {
			msg := fmt.Sprintf("batch %d stopped (%s failed)", n, strings.Join(failed, ", "))
			switch phase := u.sw.phase(h); {
			case u.sw.changed(h):
				msg += "; its engine was upgraded, and it is left drained"
			case phase != SwarmPhasePending:
				msg += "; reached " + phase + ", left drained"
			}
			u.sw.finish(ctx, h, HostFailed, msg)
		}
	}
	return false
}

// manager finds a reachable manager, preferring the step's manager, then hosts
// outside avoid. When none answers, every unfinished host fails with the reason.
func (u *upgradeRun) manager(ctx workflow.Context, avoid []string) (remote.Host, bool) {
	var first, later []remote.Host
	seen := map[string]bool{} // looked up only, never ranged
	add := func(h remote.Host) {
		switch {
		case seen[h.Name]:
		case slices.Contains(avoid, h.Name):
			later = append(later, h)
		default:
			first = append(first, h)
		}
		seen[h.Name] = true
	}
	if h, ok := hostNamed(u.in.Cluster, u.in.Upgrade.Manager); ok && !slices.Contains(avoid, h.Name) {
		add(h)
	}
	for _, h := range u.in.Cluster {
		add(h)
	}
	for _, h := range u.in.Hosts {
		add(h)
	}
	candidates := append(first, later...)
	var name string
	if !u.activity(ctx, "find a swarm manager", swarmOptions, swarmActs.FindManager, activities.FindManagerRequest{Candidates: candidates}, &name) {
		return remote.Host{}, false
	}
	h, _ := hostNamed(candidates, name)
	u.res.Manager, u.sw.manager = name, name
	return h, true
}

// activity runs an activity that concerns no host in particular; when it fails,
// every unfinished host fails with its error.
func (u *upgradeRun) activity(ctx workflow.Context, what string, opts workflow.ActivityOptions, act, req, res any) bool {
	opts.Summary = what
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), act, req).Get(ctx, res)
	if err == nil {
		return true
	}
	msg := what + ": " + errorMessage(err)
	if temporal.IsCanceledError(err) || ctx.Err() != nil {
		msg = "cancelled during " + what
	}
	for _, h := range u.in.Hosts {
		if !u.sw.done(h.Name) {
			u.sw.finish(ctx, h.Name, HostFailed, msg)
		}
	}
	return false
}

// approve waits for the approval of batch n.
func (u *upgradeRun) approve(ctx workflow.Context, n int) bool {
	u.progress.Waiting = n
	u.sw.publish(ctx)
	defer func() { u.progress.Waiting = 0 }()
	ch := workflow.GetSignalChannel(ctx, ApproveSignal)
	for {
		var a UpgradeApproval
		approved := false
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(ch, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, &a); approved = true })
		sel.AddReceive(ctx.Done(), func(workflow.ReceiveChannel, bool) {})
		sel.Select(ctx)
		if !approved {
			return false
		}
		if a.Batch == n {
			u.res.Approvals = append(u.res.Approvals, a)
			return true
		}
		workflow.GetLogger(ctx).Warn("approval ignored: it names another batch", "approved", a.Batch, "waiting", n)
	}
}

// record notes the services' counts at a batch boundary.
func (u *upgradeRun) record(ctx workflow.Context, after int, nodes []string, counts []activities.ServiceCount) {
	b := BatchBoundary{After: after, Nodes: nodes, Satisfied: true, At: workflow.Now(ctx), Services: []string{}}
	for _, c := range counts {
		b.Services = append(b.Services, c.String())
		if c.Running < c.Desired {
			b.Satisfied = false
		}
	}
	u.res.Boundaries = append(u.res.Boundaries, b)
	u.progress.Boundaries = u.res.Boundaries
	u.sw.publish(ctx)
}

// node is host's node as read before the first batch.
func (u *upgradeRun) node(host string) activities.UpgradeNode {
	for _, n := range u.state.Nodes {
		if n.Host == host {
			return n
		}
	}
	return activities.UpgradeNode{Host: host}
}

func (u *upgradeRun) result() *RollingUpgradeResult {
	u.res.Hosts = u.sw.hosts.outcomes()
	return u.res
}

// footer adds the batch, the approval awaited and the boundaries to the Web UI's
// current details.
func (u *upgradeRun) footer() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nengine %s: batch %d of %d", u.progress.Version, u.progress.Batch, u.progress.Batches)
	if u.progress.Waiting > 0 {
		fmt.Fprintf(&b, "; **waiting for approval of batch %d**: `starter approve NAME`, or signal `approve` with `{\"batch\": %d}`", u.progress.Waiting, u.progress.Waiting)
	}
	b.WriteString("\n")
	for _, bd := range u.progress.Boundaries {
		label := "before batch 1"
		if bd.After > 0 {
			label = fmt.Sprintf("after batch %d (%s)", bd.After, strings.Join(bd.Nodes, ", "))
		}
		fmt.Fprintf(&b, "\n- %s: %s", label, strings.Join(bd.Services, ", "))
	}
	return b.String()
}

// planNote is a plan line's batch and note for messages.
func planNote(p UpgradeNodePlan) string {
	s := ""
	if p.Batch > 0 {
		s = fmt.Sprintf(" in batch %d", p.Batch)
	}
	s += fmt.Sprintf(" (%s, %s, %s)", p.Role, p.Availability, p.Installed)
	if p.Note != "" {
		s += ": " + p.Note
	}
	return s
}

func outcomeOf(outcomes []HostOutcome, host string) HostOutcome {
	for _, o := range outcomes {
		if o.Host == host {
			return o
		}
	}
	return HostOutcome{Host: host, State: HostFailed, Message: "InstallDocker reported nothing for this host"}
}
