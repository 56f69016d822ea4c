package activities

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the swarm activities of the RollingNodeUpgrade procedure. The
// engine itself is upgraded by the InstallDocker activities; these read the nodes,
// drain them with the quorum checked, back up the Raft state, and wait for a node
// to be Ready and for the services to converge.

// UpgradeLabel is the node label RollingNodeUpgrade sets on the nodes it drains and
// removes when it sets them active again: a node left drained by a failed run is
// told apart from one an operator drained on purpose.
const UpgradeLabel = "io.clusterflow.upgrade"

// UpgradeStateRequest asks for the state of the nodes to upgrade.
type UpgradeStateRequest struct {
	Manager remote.Host   `json:"manager"`
	Hosts   []remote.Host `json:"hosts"`
	// Version is the engine package version wanted (a pin, as installDocker's).
	Version string `json:"version"`
}

// UpgradeNode is one node as the upgrade sees it: its swarm node and its engine.
type UpgradeNode struct {
	Host         string `json:"host"`
	NodeID       string `json:"nodeId"`
	Role         string `json:"role"`
	Leader       bool   `json:"leader,omitempty"`
	Availability string `json:"availability"`
	State        string `json:"state"`
	Reachability string `json:"reachability,omitempty"`
	// Labelled: the node carries UpgradeLabel (drained by an earlier upgrade run).
	Labelled bool `json:"labelled,omitempty"`
	// Package and Installed are the engine package and its installed version.
	Package   string `json:"package,omitempty"`
	Installed string `json:"installed,omitempty"`
	// Stale: the running engine is an older binary than the installed one.
	Stale bool `json:"stale,omitempty"`
	// Engine is the engine version the swarm reports for the node.
	Engine string `json:"engine,omitempty"`
	// Current: the wanted version is installed and running.
	Current bool `json:"current"`
	// Refusal says why taking this manager away now would break Raft quorum.
	Refusal string `json:"refusal,omitempty"`
}

// ServiceCount is one service's running tasks against those it wants.
type ServiceCount struct {
	Name    string `json:"name"`
	Mode    string `json:"mode"` // replicated, global
	Running int    `json:"running"`
	Desired int    `json:"desired"`
	// Updating: an update or rollback of the service is in progress.
	Updating bool `json:"updating,omitempty"`
}

func (c ServiceCount) String() string {
	s := fmt.Sprintf("%s %d/%d", c.Name, c.Running, c.Desired)
	if c.Mode == "global" {
		s += " (global)"
	}
	if c.Updating {
		s += " (updating)"
	}
	return s
}

func (c ServiceCount) satisfied() bool { return c.Running >= c.Desired && !c.Updating }

// UpgradeState is what UpgradeState read.
type UpgradeState struct {
	Nodes    []UpgradeNode  `json:"nodes"`
	Managers int            `json:"managers"`
	Workers  int            `json:"workers"` // of the whole swarm
	Services []ServiceCount `json:"services"`
}

// UpgradeState reads, through the manager, the swarm node of every host and, over
// SSH, its installed engine package; and the services' task counts. It changes
// nothing: it is the dry run's plan and the upgrade's starting point.
func (s *Swarm) UpgradeState(ctx context.Context, req UpgradeStateRequest) (UpgradeState, error) {
	m := req.Manager
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return UpgradeState{}, err
	}
	defer cli.Close()
	nodes, err := s.nodes(ctx, m, cli)
	if err != nil {
		return UpgradeState{}, err
	}
	var out UpgradeState
	for _, n := range nodes {
		if n.ManagerStatus != nil {
			out.Managers++
		} else {
			out.Workers++
		}
	}
	for _, h := range req.Hosts {
		n, err := s.findNode(ctx, nodes, h, "")
		if err != nil {
			return UpgradeState{}, err
		}
		sn := summarise(n)
		un := UpgradeNode{
			Host: h.Name, NodeID: n.ID, Role: sn.Role, Leader: sn.Leader, Availability: sn.Availability,
			State: sn.State, Reachability: sn.Reachability, Engine: n.Description.Engine.EngineVersion,
		}
		_, un.Labelled = n.Spec.Labels[UpgradeLabel]
		c := enginePackageScript.cmd()
		c.Sudo = h.Sudo
		r, err := s.rem.run(ctx, h, c)
		if err != nil {
			return UpgradeState{}, err
		}
		kv := parseKeyValues(r.Stdout)
		un.Package, un.Installed, un.Stale = kv["pkg"], kv["version"], kv["stale"] == "yes"
		un.Current = un.Installed != "" && versionMatches(un.Installed, req.Version) && !un.Stale
		if n.ManagerStatus != nil {
			un.Refusal = upgradeRefusal(nodes, n, h.Name)
		}
		out.Nodes = append(out.Nodes, un)
		activity.RecordHeartbeat(ctx, h.Name)
	}
	if out.Services, err = serviceCounts(ctx, m, cli); err != nil {
		return UpgradeState{}, err
	}
	return out, nil
}

// upgradeRefusal is the quorum refusal of taking manager n away for an upgrade, or
// "". The only manager of a swarm is not refused: there is no quorum to keep, and
// the swarm is unmanaged only while its engine restarts.
func upgradeRefusal(nodes []swarm.Node, n swarm.Node, name string) string {
	managers := 0
	for _, o := range nodes {
		if o.ManagerStatus != nil {
			managers++
		}
	}
	if managers == 1 {
		return ""
	}
	if err := checkQuorum(nodesOf(nodes), n.ID, "upgrading "+name, true); err != nil {
		return errorText(err)
	}
	return ""
}

// UpgradeNodeRequest names a node to act on through a manager.
type UpgradeNodeRequest struct {
	Manager remote.Host `json:"manager"`
	Node    remote.Host `json:"node"`
	NodeID  string      `json:"nodeId"`
	// Timeout bounds the wait of WaitNodeReady and WaitConverged.
	Timeout playbooks.Duration `json:"timeout,omitempty"`
}

// DrainForUpgrade drains the node and labels it UpgradeLabel, after checking that
// taking it away keeps Raft quorum (refused, non-retryable, otherwise). A node
// already drained is left as it is, without the label.
func (s *Swarm) DrainForUpgrade(ctx context.Context, req UpgradeNodeRequest) (SwarmChange, error) {
	m := req.Manager
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return SwarmChange{}, err
	}
	defer cli.Close()
	n, did, err := s.editNode(ctx, m, cli, req.Node, req.NodeID, "drain node", func(nodes []swarm.Node, n swarm.Node, spec *swarm.NodeSpec) ([]string, error) {
		if n.ManagerStatus != nil {
			if why := upgradeRefusal(nodes, n, req.Node.Name); why != "" {
				return nil, quorumRefused(why)
			}
		}
		if spec.Availability == swarm.NodeAvailabilityDrain {
			return nil, nil
		}
		spec.Availability = swarm.NodeAvailabilityDrain
		spec.Labels = cloneLabels(spec.Labels)
		spec.Labels[UpgradeLabel] = "drained"
		return []string{"drained"}, nil
	})
	if err != nil {
		return SwarmChange{}, err
	}
	state := SwarmNodeState{Host: req.Node.Name, NodeID: n.ID}
	if len(did) == 0 {
		return SwarmChange{Message: "already drained", State: state}, nil
	}
	return SwarmChange{Changed: true, Message: "drained", State: state}, nil
}

// WaitNodeReady waits until the node is Ready (and, for a manager, reachable) and
// returns the engine version the swarm reports for it. The manager may itself be
// restarting: API errors are waited out until the timeout, which is final.
func (s *Swarm) WaitNodeReady(ctx context.Context, req UpgradeNodeRequest) (string, error) {
	timeout := waitTimeout(req.Timeout)
	start := time.Now()
	var last string
	for {
		n, err := s.inspectNode(ctx, req.Manager, req.NodeID)
		switch {
		case err != nil:
			last = errorText(err)
		case n.Status.State != swarm.NodeStateReady:
			last = "state " + string(n.Status.State)
		case n.ManagerStatus != nil && n.ManagerStatus.Reachability != swarm.ReachabilityReachable:
			last = "manager " + string(n.ManagerStatus.Reachability)
		default:
			return n.Description.Engine.EngineVersion, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if time.Since(start) > timeout {
			return "", nodeNotReady(req.Node, "not Ready %s after its engine was upgraded (last seen: %s); it is left drained", timeout, last)
		}
		activity.RecordHeartbeat(ctx, last)
		if err := sleepCtx(ctx, s.poll); err != nil {
			return "", err
		}
	}
}

func (s *Swarm) inspectNode(ctx context.Context, m remote.Host, id string) (swarm.Node, error) {
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return swarm.Node{}, err
	}
	defer cli.Close()
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	n, _, err := cli.NodeInspectWithRaw(actx, id)
	if err != nil {
		return swarm.Node{}, apiFailure(ctx, m, "read node "+short(id), err)
	}
	return n, nil
}

// WaitConverged waits until every service of the swarm has all its tasks running
// and none is being updated, and returns the counts. After the timeout it fails,
// non-retryable, naming the services that are short.
func (s *Swarm) WaitConverged(ctx context.Context, req UpgradeNodeRequest) ([]ServiceCount, error) {
	timeout := waitTimeout(req.Timeout)
	start := time.Now()
	m := req.Manager
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	for {
		counts, err := serviceCounts(ctx, m, cli)
		if err != nil {
			return nil, err
		}
		var short []string
		for _, c := range counts {
			if !c.satisfied() {
				short = append(short, c.String())
			}
		}
		if len(short) == 0 {
			return counts, nil
		}
		if time.Since(start) > timeout {
			return counts, convergeTimeout(fmt.Sprintf("services not converged after %s: %s", timeout, strings.Join(short, ", ")))
		}
		activity.RecordHeartbeat(ctx, strings.Join(short, ", "))
		if err := sleepCtx(ctx, s.poll); err != nil {
			return counts, err
		}
	}
}

// waitTimeout is a wait's limit (default 10 minutes), counted afresh by a retry.
func waitTimeout(d playbooks.Duration) time.Duration {
	if d <= 0 {
		return 10 * time.Minute
	}
	return d.Std()
}

// serviceCounts counts, for every service, the tasks that are running against those
// the swarm wants running: the replicas of a replicated service, the tasks the
// orchestrator keeps for a global one (one per eligible node).
func serviceCounts(ctx context.Context, m remote.Host, cli *client.Client) ([]ServiceCount, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	services, err := cli.ServiceList(actx, swarm.ServiceListOptions{})
	if err != nil {
		return nil, apiFailure(ctx, m, "list services", err)
	}
	tasks, err := cli.TaskList(actx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
	if err != nil {
		return nil, apiFailure(ctx, m, "list tasks", err)
	}
	wanted, running := map[string]int{}, map[string]int{}
	for _, t := range tasks {
		wanted[t.ServiceID]++
		if t.Status.State == swarm.TaskStateRunning {
			running[t.ServiceID]++
		}
	}
	out := make([]ServiceCount, 0, len(services))
	for _, svc := range services {
		c := ServiceCount{Name: svc.Spec.Name, Running: running[svc.ID]}
		switch {
		case svc.Spec.Mode.Replicated != nil && svc.Spec.Mode.Replicated.Replicas != nil:
			c.Mode, c.Desired = "replicated", int(*svc.Spec.Mode.Replicated.Replicas)
		case svc.Spec.Mode.Global != nil:
			c.Mode, c.Desired = "global", wanted[svc.ID]
		default:
			continue // jobs run to completion: nothing to keep running
		}
		if us := svc.UpdateStatus; us != nil {
			c.Updating = us.State == swarm.UpdateStateUpdating || us.State == swarm.UpdateStateRollbackStarted
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b ServiceCount) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// BackupRequest asks for the swarm's Raft state of Host, a manager, to be saved on
// the host itself at Path.
type BackupRequest struct {
	Host remote.Host `json:"host"`
	Path string      `json:"path"`
	// Live copies the state with the engine running (when no drained manager is
	// at hand): Docker advises a stopped engine, so the result says so.
	Live bool `json:"live,omitempty"`
}

// BackupResult describes the backup.
type BackupResult struct {
	Host    string `json:"host"`
	Path    string `json:"path"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"`
	Changed bool   `json:"changed"`
	Live    bool   `json:"live,omitempty"`
}

// BackupSwarmState saves the manager's Raft state (/var/lib/docker/swarm) on the
// host, with its engine stopped for the copy and started again, then waits until
// the engine answers. The archive holds the swarm's keys: it stays on the host,
// readable by root only, and only its path, size and sha256 are returned.
func (s *Swarm) BackupSwarmState(ctx context.Context, req BackupRequest) (BackupResult, error) {
	h := req.Host
	if !strings.HasPrefix(req.Path, "/") || strings.ContainsAny(req.Path, "\n'") {
		return BackupResult{}, hostInvalid(h, "backup path %q must be absolute", req.Path)
	}
	mode := "stop"
	if req.Live {
		mode = "live"
	}
	c := swarmBackupScript.cmd(req.Path, mode)
	c.Sudo = h.Sudo
	c.ProgressEvery = time.Second
	if activity.IsActivity(ctx) {
		c.Progress = func(elapsed time.Duration, _ string) {
			activity.RecordHeartbeat(ctx, "backup "+elapsed.Round(time.Second).String())
		}
	}
	r, err := s.rem.run(ctx, h, c)
	if err != nil {
		return BackupResult{}, err
	}
	if r.ExitCode != 0 {
		failed := backupFailed
		if r.ExitCode == 3 {
			failed = backupRefused
		}
		return BackupResult{}, failed(h, "Raft state backup failed (exit %d): %s", r.ExitCode, lastOutputLine(r.Stderr+"\n"+r.Stdout))
	}
	kv := parseKeyValues(r.Stdout)
	res := BackupResult{Host: h.Name, Path: req.Path, SHA256: kv["sha256"], Changed: kv["existed"] != "yes", Live: req.Live}
	res.Bytes, _ = strconv.ParseInt(kv["bytes"], 10, 64)
	wait := serviceWaitScript.cmd(waitTries(60), "docker", DockerSocket)
	wait.Sudo = h.Sudo
	w, err := s.rem.run(ctx, h, wait)
	if err != nil {
		return res, err
	}
	if w.ExitCode != 0 {
		return res, engineNotReady(h, "the engine did not answer within 60 s after the backup")
	}
	return res, nil
}
