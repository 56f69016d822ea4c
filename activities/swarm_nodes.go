package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// This file manages a swarm's nodes through a manager: finding a manager and a
// node, changing a node's role, availability and labels, draining and removing it.

// FindManagerRequest lists candidate hosts, in order of preference.
type FindManagerRequest struct {
	Candidates []remote.Host `json:"candidates"`
}

// FindManager returns the name of the first candidate whose engine is a reachable
// swarm manager. Candidates that cannot be reached are passed over.
func (s *Swarm) FindManager(ctx context.Context, req FindManagerRequest) (string, error) {
	var seen []string
	for _, h := range req.Candidates {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		st, err := s.SwarmState(cctx, SwarmHostRequest{Host: h})
		cancel()
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		switch {
		case err != nil:
			seen = append(seen, h.Name+": "+errorText(err))
		case st.Manager:
			return h.Name, nil
		default:
			seen = append(seen, fmt.Sprintf("%s: %s, not a manager", h.Name, st.State))
		}
		activity.RecordHeartbeat(ctx, h.Name)
	}
	return "", noManager("no reachable swarm manager among the inventory's hosts (" + strings.Join(seen, "; ") + ")")
}

// UpdateNodeRequest changes one node through a manager. Empty fields are left as
// they are; Labels are merged (a key with an empty value is removed).
type UpdateNodeRequest struct {
	Manager remote.Host `json:"manager"`
	// Node is the node's host; NodeID, when known, saves the look-up.
	Node         remote.Host       `json:"node"`
	NodeID       string            `json:"nodeId,omitempty"`
	Role         string            `json:"role,omitempty"`         // manager, worker
	Availability string            `json:"availability,omitempty"` // active, pause, drain
	Labels       map[string]string `json:"labels,omitempty"`
}

// UpdateNode sets a node's role, availability or labels. A demotion is refused,
// non-retryable, when it would leave fewer reachable managers than quorum needs. A
// promotion or demotion waits until the swarm shows the new role.
func (s *Swarm) UpdateNode(ctx context.Context, req UpdateNodeRequest) (SwarmChange, error) {
	m := req.Manager
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return SwarmChange{}, err
	}
	defer cli.Close()
	n, did, err := s.editNode(ctx, m, cli, req.Node, req.NodeID, "update node", func(nodes []swarm.Node, n swarm.Node, spec *swarm.NodeSpec) ([]string, error) {
		var did []string
		if req.Role != "" && string(spec.Role) != req.Role {
			if req.Role == string(swarm.NodeRoleWorker) {
				if err := checkQuorum(nodesOf(nodes), n.ID, "demoting "+req.Node.Name, false); err != nil {
					return nil, err
				}
			}
			spec.Role = swarm.NodeRole(req.Role)
			did = append(did, "role "+req.Role)
		}
		if req.Availability != "" && string(spec.Availability) != req.Availability {
			spec.Availability = swarm.NodeAvailability(req.Availability)
			did = append(did, "availability "+req.Availability)
		}
		for _, k := range sortedKeys(req.Labels) {
			v := req.Labels[k]
			old, has := spec.Labels[k]
			switch {
			case v == "" && has:
				spec.Labels = cloneLabels(spec.Labels)
				delete(spec.Labels, k)
				did = append(did, "label "+k+" removed")
			case v != "" && (!has || old != v):
				spec.Labels = cloneLabels(spec.Labels)
				spec.Labels[k] = v
				did = append(did, "label "+k+"="+v)
			}
		}
		return did, nil
	})
	if err != nil {
		return SwarmChange{}, err
	}
	role := string(n.Spec.Role)
	if req.Role != "" {
		role = req.Role
	}
	if err := s.waitRole(ctx, m, cli, n.ID, role); err != nil {
		return SwarmChange{}, err
	}
	state := SwarmNodeState{Host: req.Node.Name, NodeID: n.ID}
	if len(did) == 0 {
		return SwarmChange{Message: "unchanged (" + describeNode(n) + ")", State: state}, nil
	}
	return SwarmChange{Changed: true, Message: strings.Join(did, ", "), State: state}, nil
}

// editNode reads the swarm's nodes through the manager, finds node (by id when
// known), lets edit change a copy of its spec, and writes the spec back when edit
// did something, reading again when another writer got there first ("update out of
// sequence"). It returns the node as read and what edit did (nothing: no write).
func (s *Swarm) editNode(ctx context.Context, m remote.Host, cli *client.Client, node remote.Host, id, what string,
	edit func(nodes []swarm.Node, n swarm.Node, spec *swarm.NodeSpec) ([]string, error)) (swarm.Node, []string, error) {
	for attempt := 0; ; attempt++ {
		nodes, err := s.nodes(ctx, m, cli)
		if err != nil {
			return swarm.Node{}, nil, err
		}
		n, err := s.findNode(ctx, nodes, node, id)
		if err != nil {
			return swarm.Node{}, nil, err
		}
		spec := n.Spec
		did, err := edit(nodes, n, &spec)
		if err != nil || len(did) == 0 {
			return n, nil, err
		}
		activity.RecordHeartbeat(ctx, strings.Join(did, ", "))
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		err = cli.NodeUpdate(actx, n.ID, n.Version, spec)
		cancel()
		if err == nil {
			return n, did, nil
		}
		if !strings.Contains(err.Error(), "update out of sequence") || attempt >= 5 {
			return n, nil, apiFailure(ctx, m, what+" "+node.Name, err)
		}
	}
}

// waitRole waits until the node shows role: a new manager reachable, a demoted one
// without manager status.
func (s *Swarm) waitRole(ctx context.Context, m remote.Host, cli *client.Client, id, role string) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		n, _, err := cli.NodeInspectWithRaw(actx, id)
		cancel()
		if err != nil {
			return apiFailure(ctx, m, "read node "+short(id), err)
		}
		switch {
		case role == string(swarm.NodeRoleManager) && n.ManagerStatus != nil && n.ManagerStatus.Reachability == swarm.ReachabilityReachable:
			return nil
		case role == string(swarm.NodeRoleWorker) && n.ManagerStatus == nil:
			return nil
		case role == string(swarm.NodeRoleManager) && n.Status.State != swarm.NodeStateReady:
			return nil // a down node cannot become reachable now; the swarm has its role
		}
		if time.Now().After(deadline) {
			return swarmAPI(m, "node %s did not settle as %s within 90 s", describeNode(n), role)
		}
		activity.RecordHeartbeat(ctx, "waiting for role "+role)
		if err := sleepCtx(ctx, s.poll); err != nil {
			return err
		}
	}
}

// findNode picks the swarm node of host h: by ID when given, else by asking h's own
// engine, else by address, else by hostname.
func (s *Swarm) findNode(ctx context.Context, nodes []swarm.Node, h remote.Host, id string) (swarm.Node, error) {
	if id == "" {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		st, err := s.SwarmState(cctx, SwarmHostRequest{Host: h})
		cancel()
		if err == nil {
			id = st.NodeID
		}
	}
	var byAddr, byName []swarm.Node
	for _, n := range nodes {
		if id != "" && n.ID == id {
			return n, nil
		}
		if n.Status.Addr == h.Address {
			byAddr = append(byAddr, n)
		}
		if n.Description.Hostname == h.Name {
			byName = append(byName, n)
		}
	}
	// A node that rejoined leaves a down entry behind: prefer the live one.
	for _, set := range [][]swarm.Node{byAddr, byName} {
		slices.SortStableFunc(set, func(a, b swarm.Node) int {
			return boolRank(b.Status.State == swarm.NodeStateReady) - boolRank(a.Status.State == swarm.NodeStateReady)
		})
		if len(set) > 0 {
			return set[0], nil
		}
	}
	return swarm.Node{}, swarmConflict(h, "is not a node of the swarm (no node with its engine's ID, address %s or hostname %s)", h.Address, h.Name)
}

// DrainRequest asks to wait until a drained node's tasks run elsewhere.
type DrainRequest struct {
	Manager remote.Host        `json:"manager"`
	Node    remote.Host        `json:"node"`
	NodeID  string             `json:"nodeId"`
	Timeout playbooks.Duration `json:"timeout"`
}

// DrainStatus is what WaitDrained saw last.
type DrainStatus struct {
	// Running is the number of tasks still running on the node.
	Running int `json:"running"`
	// Short lists replicated services with fewer running tasks than replicas.
	Short []string `json:"short,omitempty"`
}

// WaitDrained waits until no task runs on the drained node and every replicated
// service has its replicas running (elsewhere): the engine's drain does not wait
// (moby issue 33220). It fails, non-retryable, after req.Timeout.
func (s *Swarm) WaitDrained(ctx context.Context, req DrainRequest) (DrainStatus, error) {
	m := req.Manager
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return DrainStatus{}, err
	}
	defer cli.Close()
	timeout := waitTimeout(req.Timeout)
	start := time.Now()
	if activity.IsActivity(ctx) {
		start = activity.GetInfo(ctx).StartedTime
		if activity.GetInfo(ctx).Attempt > 1 {
			start = time.Now() // a new worker: give the wait its full time
		}
	}
	for {
		st, err := s.drainStatus(ctx, m, cli, req.NodeID)
		if err != nil {
			return st, err
		}
		if st.Running == 0 && len(st.Short) == 0 {
			return st, nil
		}
		if time.Since(start) > timeout {
			return st, drainTimeout(req.Node, "drained, but after %s %d task(s) still run on it and these services are short of replicas: %s",
				timeout, st.Running, strings.Join(st.Short, ", "))
		}
		activity.RecordHeartbeat(ctx, st)
		if err := sleepCtx(ctx, s.poll); err != nil {
			return st, err
		}
	}
}

func (s *Swarm) drainStatus(ctx context.Context, m remote.Host, cli *client.Client, nodeID string) (DrainStatus, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	tasks, err := cli.TaskList(actx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
	if err != nil {
		return DrainStatus{}, apiFailure(ctx, m, "list tasks", err)
	}
	services, err := cli.ServiceList(actx, swarm.ServiceListOptions{})
	if err != nil {
		return DrainStatus{}, apiFailure(ctx, m, "list services", err)
	}
	onNode, _ := cli.TaskList(actx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("node", nodeID))})
	var st DrainStatus
	for _, t := range onNode {
		if t.Status.State == swarm.TaskStateRunning || t.Status.State == swarm.TaskStateStarting {
			st.Running++
		}
	}
	running := map[string]int{}
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateRunning && t.NodeID != nodeID {
			running[t.ServiceID]++
		}
	}
	for _, svc := range services {
		if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil && uint64(running[svc.ID]) < *r.Replicas {
			st.Short = append(st.Short, fmt.Sprintf("%s %d/%d", svc.Spec.Name, running[svc.ID], *r.Replicas))
		}
	}
	slices.Sort(st.Short)
	return st, nil
}

// RemoveNodeRequest takes a node out of the swarm.
type RemoveNodeRequest struct {
	Manager remote.Host `json:"manager"`
	Node    remote.Host `json:"node"`
	// Force removes a node that cannot leave by itself (down, unreachable).
	Force bool `json:"force,omitempty"`
}

// RemoveNode makes the node leave the swarm and removes it from the manager's list.
// A manager is demoted first (quorum checked). A node that is gone already is
// unchanged.
func (s *Swarm) RemoveNode(ctx context.Context, req RemoveNodeRequest) (SwarmChange, error) {
	m, h := req.Manager, req.Node
	cli, err := s.rem.dockerAPI(m)
	if err != nil {
		return SwarmChange{}, err
	}
	defer cli.Close()
	nodes, err := s.nodes(ctx, m, cli)
	if err != nil {
		return SwarmChange{}, err
	}
	n, err := s.findNode(ctx, nodes, h, "")
	if err != nil {
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) && ae.Type() == ErrSwarmConflict {
			return SwarmChange{Message: "not a node of the swarm"}, nil
		}
		return SwarmChange{}, err
	}
	var did []string
	if n.Spec.Role == swarm.NodeRoleManager {
		if _, err := s.UpdateNode(ctx, UpdateNodeRequest{Manager: m, Node: h, NodeID: n.ID, Role: string(swarm.NodeRoleWorker)}); err != nil {
			return SwarmChange{}, err
		}
		did = append(did, "demoted")
	}
	// The node leaves by itself when it can; a forced removal covers one that cannot.
	if hcli, err := s.rem.dockerAPI(h); err == nil {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if st, err := s.state(lctx, h, hcli); err == nil && st.NodeID == n.ID && st.State != string(swarm.LocalNodeStateInactive) {
			if err := s.leave(lctx, h, hcli); err == nil {
				did = append(did, "left")
			}
		}
		cancel()
		hcli.Close()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := cli.NodeRemove(actx, n.ID, swarm.NodeRemoveOptions{Force: req.Force})
		cancel()
		if err == nil || cerrdefs.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			return SwarmChange{}, swarmConflict(h, "could not be removed from the swarm: %s (set force: true to remove a node that is down)", engineMessage(err))
		}
		activity.RecordHeartbeat(ctx, "waiting for the node to be down")
		if err := sleepCtx(ctx, s.poll); err != nil {
			return SwarmChange{}, err
		}
	}
	did = append(did, "removed")
	return SwarmChange{Changed: true, Message: strings.Join(did, ", ")}, nil
}
