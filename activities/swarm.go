package activities

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/playbooks"
)

// This file holds the activities of the SwarmInit and SwarmNodes procedures. They
// speak the Docker Engine API over SSH (DockerAPI), never a TCP port of the engine.
// Each reads the swarm's state first and acts only when it differs from what is
// asked, so a retry or a second run finds the work done. Join tokens are read and
// used inside JoinSwarm: they are never an input, a result, a heartbeat or a log line.

// Error types of the swarm activities, in addition to those of errors.go.
const (
	// ErrQuorum: the operation would leave fewer reachable managers than Raft
	// quorum needs. Non-retryable; the message carries the arithmetic.
	ErrQuorum = "QuorumRefused"
	// ErrSwarmConflict: the host belongs to another swarm, is locked, or the
	// playbook asks for something the swarm cannot do as it stands (a network
	// that exists with other options). Non-retryable: a person decides.
	ErrSwarmConflict = "SwarmConflict"
	// ErrNoManager: no host of the inventory answered as a reachable manager.
	// Retryable: a manager may be restarting.
	ErrNoManager = "NoManager"
	// ErrDrainTimeout: a drained node's tasks did not come up elsewhere in time.
	// Non-retryable; the message says which services are short.
	ErrDrainTimeout = "DrainTimeout"
	// ErrSwarmAPI: the engine refused or failed a swarm call for a reason that
	// may pass (leader election, a node still joining). Retryable.
	ErrSwarmAPI = "SwarmAPI"
)

// Swarm holds the activities of the SwarmInit and SwarmNodes procedures.
type Swarm struct {
	pool *Pool
	// poll is how often waits re-read the swarm.
	poll time.Duration
}

// NewSwarm returns the swarm activities, working through pool.
func NewSwarm(pool *Pool) *Swarm { return &Swarm{pool: pool, poll: time.Second} }

// SwarmHostRequest names one host.
type SwarmHostRequest struct {
	Host playbooks.Host `json:"host"`
}

// SwarmNodeState is a host's swarm membership as its own engine reports it.
type SwarmNodeState struct {
	Host string `json:"host"`
	// State is the engine's LocalNodeState: inactive, pending, active, error, locked.
	State     string `json:"state"`
	NodeID    string `json:"nodeId,omitempty"`
	ClusterID string `json:"clusterId,omitempty"`
	NodeAddr  string `json:"nodeAddr,omitempty"`
	Manager   bool   `json:"manager,omitempty"` // ControlAvailable: a manager whose API answers
	Error     string `json:"error,omitempty"`
	// RemoteManagers are the manager addresses the node knows (a worker's engine
	// does not report the cluster ID; these tell which swarm it is in).
	RemoteManagers []string `json:"remoteManagers,omitempty"`
}

// SwarmState reads the host's swarm membership.
func (s *Swarm) SwarmState(ctx context.Context, req SwarmHostRequest) (SwarmNodeState, error) {
	cli, st, err := s.open(ctx, req.Host)
	if err != nil {
		return SwarmNodeState{}, err
	}
	cli.Close()
	return st, nil
}

// open returns a client of h's engine and the host's swarm state read through it.
// The caller closes the client.
func (s *Swarm) open(ctx context.Context, h playbooks.Host) (*client.Client, SwarmNodeState, error) {
	cli, err := s.api(h)
	if err != nil {
		return nil, SwarmNodeState{}, err
	}
	st, err := s.state(ctx, h, cli)
	if err != nil {
		cli.Close()
		return nil, SwarmNodeState{}, err
	}
	return cli, st, nil
}

func (s *Swarm) state(ctx context.Context, h playbooks.Host, cli *client.Client) (SwarmNodeState, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	info, err := cli.Info(actx)
	if err != nil {
		return SwarmNodeState{}, apiFailure(ctx, h, "read the engine's swarm state", err)
	}
	st := SwarmNodeState{
		Host:     h.Name,
		State:    string(info.Swarm.LocalNodeState),
		NodeID:   info.Swarm.NodeID,
		NodeAddr: info.Swarm.NodeAddr,
		Manager:  info.Swarm.ControlAvailable,
		Error:    info.Swarm.Error,
	}
	if info.Swarm.Cluster != nil {
		st.ClusterID = info.Swarm.Cluster.ID
	}
	for _, p := range info.Swarm.RemoteManagers {
		st.RemoteManagers = append(st.RemoteManagers, p.Addr)
	}
	return st, nil
}

// api returns a Docker client of h's engine over SSH.
func (s *Swarm) api(h playbooks.Host) (*client.Client, error) {
	cli, err := DockerAPI(s.pool, h)
	if err != nil {
		return nil, hostInvalid(h, "docker client: %v", err)
	}
	return cli, nil
}

// InitSwarmRequest asks for a swarm initialised on Host.
type InitSwarmRequest struct {
	Host playbooks.Host `json:"host"`
	// AdvertiseAddr: "" (the engine chooses), "address" (the inventory address),
	// an interface name or an IP[:port].
	AdvertiseAddr string `json:"advertiseAddr,omitempty"`
	ListenAddr    string `json:"listenAddr,omitempty"`
	DataPathAddr  string `json:"dataPathAddr,omitempty"`
}

// SwarmChange is what an activity did to one node.
type SwarmChange struct {
	Changed bool           `json:"changed"`
	Message string         `json:"message"`
	State   SwarmNodeState `json:"state"`
}

// InitSwarm initialises a swarm on the host unless it is already a manager of one.
// A host left halfway through an earlier join (pending or error) is taken out of
// that attempt first. A host with several addresses and no advertiseAddr gets an
// error naming the engine's candidates.
func (s *Swarm) InitSwarm(ctx context.Context, req InitSwarmRequest) (SwarmChange, error) {
	h := req.Host
	cli, st, err := s.open(ctx, h)
	if err != nil {
		return SwarmChange{}, err
	}
	defer cli.Close()
	var notes []string
	switch swarm.LocalNodeState(st.State) {
	case swarm.LocalNodeStateActive:
		if !st.Manager {
			return SwarmChange{}, hostError(h, ErrSwarmConflict, false,
				"is a worker of swarm %s, so it cannot initialise one; make it the first manager only after it leaves that swarm, or list a manager of it first", short(st.ClusterID))
		}
		return SwarmChange{Message: "already the manager of swarm " + short(st.ClusterID), State: st}, nil
	case swarm.LocalNodeStateLocked, swarm.LocalNodeStatePending, swarm.LocalNodeStateError:
		note, err := s.leaveHalfJoin(ctx, h, cli, st)
		if err != nil {
			return SwarmChange{}, err
		}
		notes = append(notes, note)
	}

	ireq := swarm.InitRequest{
		ListenAddr:    req.ListenAddr,
		AdvertiseAddr: advertise(h, req.AdvertiseAddr),
		DataPathAddr:  advertise(h, req.DataPathAddr),
	}
	if ireq.ListenAddr == "" {
		ireq.ListenAddr = "0.0.0.0:2377"
	}
	activity.RecordHeartbeat(ctx, "init")
	actx, cancel := context.WithTimeout(ctx, 2*apiTimeout)
	defer cancel()
	if _, err := cli.SwarmInit(actx, ireq); err != nil {
		if msg := err.Error(); strings.Contains(msg, "could not choose an IP address to advertise") ||
			strings.Contains(msg, "must specify a listening address") {
			return SwarmChange{}, hostInvalid(h, "the engine cannot choose an address to advertise: %s. Set advertiseAddr on the swarmInit step: \"address\" (this host's inventory address, %s), an interface name (such as eth1) or one of the addresses above",
				engineMessage(err), h.Address)
		}
		if strings.Contains(err.Error(), "already part of a swarm") {
			// Another attempt got there first; read what it left.
			if st, err := s.state(ctx, h, cli); err == nil && st.Manager {
				return SwarmChange{Changed: true, Message: "swarm initialised", State: st}, nil
			}
		}
		return SwarmChange{}, apiFailure(ctx, h, "initialise the swarm", err)
	}
	st, err = s.state(ctx, h, cli)
	if err != nil {
		return SwarmChange{}, err
	}
	notes = append(notes, fmt.Sprintf("swarm %s initialised, advertising %s", short(st.ClusterID), st.NodeAddr))
	return SwarmChange{Changed: true, Message: strings.Join(notes, "; "), State: st}, nil
}

// JoinSwarmRequest asks for Host to be a member of Manager's swarm, joining with
// Role's token when it is not.
type JoinSwarmRequest struct {
	Manager       playbooks.Host `json:"manager"`
	Host          playbooks.Host `json:"host"`
	Role          string         `json:"role"` // manager or worker
	AdvertiseAddr string         `json:"advertiseAddr,omitempty"`
	ListenAddr    string         `json:"listenAddr,omitempty"`
	DataPathAddr  string         `json:"dataPathAddr,omitempty"`
}

// JoinSwarm makes the host a member of the manager's swarm. A member of it is left
// alone (its role is SwarmNodes' business); a host in another swarm is refused; a
// host left pending or in error by an earlier join, or one the swarm no longer
// knows, leaves and joins again. The join token is read from the manager and
// used here, never returned. It waits until the manager sees the node ready.
func (s *Swarm) JoinSwarm(ctx context.Context, req JoinSwarmRequest) (SwarmChange, error) {
	h, m := req.Host, req.Manager
	if req.Role != string(swarm.NodeRoleManager) && req.Role != string(swarm.NodeRoleWorker) {
		return SwarmChange{}, invalidInput(fmt.Sprintf("role must be manager or worker, not %q", req.Role))
	}
	mcli, mst, err := s.open(ctx, m)
	if err != nil {
		return SwarmChange{}, err
	}
	defer mcli.Close()
	if !mst.Manager {
		return SwarmChange{}, hostError(m, ErrNoManager, true, "is not a reachable swarm manager (state %s)", mst.State)
	}
	cli, st, err := s.open(ctx, h)
	if err != nil {
		return SwarmChange{}, err
	}
	defer cli.Close()

	var notes []string
	switch swarm.LocalNodeState(st.State) {
	case swarm.LocalNodeStateActive:
		known, err := s.nodeKnown(ctx, m, mcli, st.NodeID)
		if err != nil {
			return SwarmChange{}, err
		}
		// A manager reports its cluster ID; a worker only the managers it knows.
		ours := st.ClusterID == mst.ClusterID ||
			st.ClusterID == "" && slices.ContainsFunc(st.RemoteManagers, func(a string) bool { return slices.Contains(mst.RemoteManagers, a) })
		switch {
		case known && ours:
			return SwarmChange{Message: "already a member of swarm " + short(mst.ClusterID), State: st}, nil
		case !ours:
			other := short(st.ClusterID)
			if other == "" {
				other = "managed by " + strings.Join(st.RemoteManagers, ", ")
			}
			return SwarmChange{}, hostError(h, ErrSwarmConflict, false,
				"belongs to another swarm (%s), not to the swarm of %s (%s); take it out of that swarm first (docker swarm leave)", other, m.Name, short(mst.ClusterID))
		}
		// Removed from the swarm while it was away: it still believes it is a member.
		if err := s.leave(ctx, h, cli); err != nil {
			return SwarmChange{}, err
		}
		notes = append(notes, "the swarm no longer knew this node; it left and joins again")
	case swarm.LocalNodeStateLocked, swarm.LocalNodeStatePending, swarm.LocalNodeStateError:
		note, err := s.leaveHalfJoin(ctx, h, cli, st)
		if err != nil {
			return SwarmChange{}, err
		}
		notes = append(notes, note)
	}

	// The token lives in this function only.
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	sw, err := mcli.SwarmInspect(actx)
	cancel()
	if err != nil {
		return SwarmChange{}, apiFailure(ctx, m, "read the join tokens", err)
	}
	token := sw.JoinTokens.Worker
	if req.Role == string(swarm.NodeRoleManager) {
		token = sw.JoinTokens.Manager
	}
	remote := managerAddrs(mst)
	jreq := swarm.JoinRequest{
		ListenAddr:    req.ListenAddr,
		AdvertiseAddr: advertise(h, req.AdvertiseAddr),
		DataPathAddr:  advertise(h, req.DataPathAddr),
		RemoteAddrs:   remote,
		JoinToken:     token,
	}
	if jreq.ListenAddr == "" {
		jreq.ListenAddr = "0.0.0.0:2377"
	}
	activity.RecordHeartbeat(ctx, "join")
	jctx, cancel := context.WithTimeout(ctx, 2*apiTimeout)
	err = cli.SwarmJoin(jctx, jreq)
	cancel()
	if err != nil {
		msg := strings.ReplaceAll(engineMessage(err), token, "<join token>")
		if strings.Contains(msg, "could not choose an IP address to advertise") {
			return SwarmChange{}, hostInvalid(h, "the engine cannot choose an address to advertise: %s. Set advertiseAddr on the swarmInit step: \"address\" (this host's inventory address, %s) or an interface name", msg, h.Address)
		}
		if !strings.Contains(msg, "already part of a swarm") {
			return SwarmChange{}, hostError(h, ErrSwarmAPI, true, "could not join the swarm of %s (%s): %s", m.Name, strings.Join(remote, ", "), msg)
		}
	}
	st, err = s.waitReady(ctx, h, cli, m, mcli)
	if err != nil {
		return SwarmChange{}, err
	}
	notes = append(notes, fmt.Sprintf("joined swarm %s as %s through %s", short(mst.ClusterID), req.Role, strings.Join(remote, ", ")))
	return SwarmChange{Changed: true, Message: strings.Join(notes, "; "), State: st}, nil
}

// waitReady waits until the node's own engine says active and the manager lists
// the node as ready.
func (s *Swarm) waitReady(ctx context.Context, h playbooks.Host, cli *client.Client, m playbooks.Host, mcli *client.Client) (SwarmNodeState, error) {
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for {
		st, err := s.state(ctx, h, cli)
		if err != nil {
			return st, err
		}
		last = "state " + st.State + errSuffix(st.Error)
		if st.State == string(swarm.LocalNodeStateActive) && st.NodeID != "" {
			actx, cancel := context.WithTimeout(ctx, apiTimeout)
			n, _, err := mcli.NodeInspectWithRaw(actx, st.NodeID)
			cancel()
			if err == nil && n.Status.State == swarm.NodeStateReady {
				return st, nil
			}
			if err == nil {
				last = "manager sees it " + string(n.Status.State)
			}
		}
		if time.Now().After(deadline) {
			return st, hostError(h, ErrSwarmAPI, true, "joined, but not ready after 90 s (%s)", last)
		}
		activity.RecordHeartbeat(ctx, "wait ready: "+last)
		if err := sleepCtx(ctx, s.poll); err != nil {
			return st, err
		}
	}
}

// nodeKnown reports whether the manager's swarm has a node with this ID.
func (s *Swarm) nodeKnown(ctx context.Context, m playbooks.Host, mcli *client.Client, id string) (bool, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	_, _, err := mcli.NodeInspectWithRaw(actx, id)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	default:
		return false, apiFailure(ctx, m, "look up node "+short(id), err)
	}
}

// leaveHalfJoin deals with a host whose engine is neither out of a swarm nor a
// working member: a locked swarm is refused (a person must unlock it); a join left
// pending or in error is abandoned, so that the host can join again. It returns
// what it did, for the result's message.
func (s *Swarm) leaveHalfJoin(ctx context.Context, h playbooks.Host, cli *client.Client, st SwarmNodeState) (string, error) {
	if st.State == string(swarm.LocalNodeStateLocked) {
		return "", hostError(h, ErrSwarmConflict, false, "its swarm is locked (autolock): unlock it with `docker swarm unlock` first")
	}
	if err := s.leave(ctx, h, cli); err != nil {
		return "", err
	}
	return fmt.Sprintf("left a half-finished join (state %s%s)", st.State, errSuffix(st.Error)), nil
}

// leave takes the host out of its swarm (forced: it may be half-joined).
func (s *Swarm) leave(ctx context.Context, h playbooks.Host, cli *client.Client) error {
	activity.RecordHeartbeat(ctx, "leave")
	actx, cancel := context.WithTimeout(ctx, 2*apiTimeout)
	defer cancel()
	if err := cli.SwarmLeave(actx, true); err != nil && !strings.Contains(err.Error(), "not part of a swarm") {
		return apiFailure(ctx, h, "leave the swarm", err)
	}
	return nil
}

// SwarmNode is one node of the swarm as a manager lists it.
type SwarmNode struct {
	ID           string            `json:"id"`
	Hostname     string            `json:"hostname"`
	Addr         string            `json:"addr"`
	Role         string            `json:"role"`         // manager, worker
	Availability string            `json:"availability"` // active, pause, drain
	State        string            `json:"state"`        // ready, down, unknown, disconnected
	Reachability string            `json:"reachability,omitempty"`
	Leader       bool              `json:"leader,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// SwarmManagerRequest names the manager to ask.
type SwarmManagerRequest struct {
	Manager playbooks.Host `json:"manager"`
}

// SwarmNodes lists the swarm's nodes, through the manager.
func (s *Swarm) ListSwarmNodes(ctx context.Context, req SwarmManagerRequest) ([]SwarmNode, error) {
	cli, err := s.api(req.Manager)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	nodes, err := s.nodes(ctx, req.Manager, cli)
	if err != nil {
		return nil, err
	}
	out := make([]SwarmNode, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, summarise(n))
	}
	return out, nil
}

func (s *Swarm) nodes(ctx context.Context, m playbooks.Host, cli *client.Client) ([]swarm.Node, error) {
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	nodes, err := cli.NodeList(actx, swarm.NodeListOptions{})
	if err != nil {
		return nil, apiFailure(ctx, m, "list the swarm's nodes", err)
	}
	slices.SortFunc(nodes, func(a, b swarm.Node) int { return strings.Compare(a.Description.Hostname, b.Description.Hostname) })
	return nodes, nil
}

func summarise(n swarm.Node) SwarmNode {
	sn := SwarmNode{
		ID: n.ID, Hostname: n.Description.Hostname, Addr: n.Status.Addr,
		Role: string(n.Spec.Role), Availability: string(n.Spec.Availability),
		State: string(n.Status.State), Labels: n.Spec.Labels,
	}
	if n.ManagerStatus != nil {
		sn.Reachability = string(n.ManagerStatus.Reachability)
		sn.Leader = n.ManagerStatus.Leader
	}
	return sn
}

// FindManagerRequest lists candidate hosts, in order of preference.
type FindManagerRequest struct {
	Candidates []playbooks.Host `json:"candidates"`
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
	return "", temporal.NewApplicationError("no reachable swarm manager among the inventory's hosts ("+strings.Join(seen, "; ")+")", ErrNoManager)
}

// UpdateNodeRequest changes one node through a manager. Empty fields are left as
// they are; Labels are merged (a key with an empty value is removed).
type UpdateNodeRequest struct {
	Manager playbooks.Host `json:"manager"`
	// Node is the node's host; NodeID, when known, saves the look-up.
	Node         playbooks.Host    `json:"node"`
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
	cli, err := s.api(m)
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
func (s *Swarm) editNode(ctx context.Context, m playbooks.Host, cli *client.Client, node playbooks.Host, id, what string,
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
func (s *Swarm) waitRole(ctx context.Context, m playbooks.Host, cli *client.Client, id, role string) error {
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
			return hostError(m, ErrSwarmAPI, true, "node %s did not settle as %s within 90 s", describeNode(n), role)
		}
		activity.RecordHeartbeat(ctx, "waiting for role "+role)
		if err := sleepCtx(ctx, s.poll); err != nil {
			return err
		}
	}
}

// findNode picks the swarm node of host h: by ID when given, else by asking h's own
// engine, else by address, else by hostname.
func (s *Swarm) findNode(ctx context.Context, nodes []swarm.Node, h playbooks.Host, id string) (swarm.Node, error) {
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
	return swarm.Node{}, hostError(h, ErrSwarmConflict, false, "is not a node of the swarm (no node with its engine's ID, address %s or hostname %s)", h.Address, h.Name)
}

// DrainRequest asks to wait until a drained node's tasks run elsewhere.
type DrainRequest struct {
	Manager playbooks.Host     `json:"manager"`
	Node    playbooks.Host     `json:"node"`
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
	cli, err := s.api(m)
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
			return st, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: drained, but after %s %d task(s) still run on it and these services are short of replicas: %s",
				hostLabel(req.Node), timeout, st.Running, strings.Join(st.Short, ", ")), ErrDrainTimeout, nil)
		}
		activity.RecordHeartbeat(ctx, st)
		if err := sleepCtx(ctx, s.poll); err != nil {
			return st, err
		}
	}
}

func (s *Swarm) drainStatus(ctx context.Context, m playbooks.Host, cli *client.Client, nodeID string) (DrainStatus, error) {
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
	Manager playbooks.Host `json:"manager"`
	Node    playbooks.Host `json:"node"`
	// Force removes a node that cannot leave by itself (down, unreachable).
	Force bool `json:"force,omitempty"`
}

// RemoveNode makes the node leave the swarm and removes it from the manager's list.
// A manager is demoted first (quorum checked). A node that is gone already is
// unchanged.
func (s *Swarm) RemoveNode(ctx context.Context, req RemoveNodeRequest) (SwarmChange, error) {
	m, h := req.Manager, req.Node
	cli, err := s.api(m)
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
	if hcli, err := s.api(h); err == nil {
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
			return SwarmChange{}, hostError(h, ErrSwarmConflict, false, "could not be removed from the swarm: %s (set force: true to remove a node that is down)", engineMessage(err))
		}
		activity.RecordHeartbeat(ctx, "waiting for the node to be down")
		if err := sleepCtx(ctx, s.poll); err != nil {
			return SwarmChange{}, err
		}
	}
	did = append(did, "removed")
	return SwarmChange{Changed: true, Message: strings.Join(did, ", ")}, nil
}

// EnsureNetworkRequest asks for an overlay network.
type EnsureNetworkRequest struct {
	Manager playbooks.Host           `json:"manager"`
	Network playbooks.OverlayNetwork `json:"network"`
}

// EnsureNetwork creates the overlay network unless one of that name exists. An
// existing network with other options is refused: networks cannot change in place.
func (s *Swarm) EnsureNetwork(ctx context.Context, req EnsureNetworkRequest) (SwarmChange, error) {
	m, want := req.Manager, req.Network
	cli, err := s.api(m)
	if err != nil {
		return SwarmChange{}, err
	}
	defer cli.Close()
	actx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	got, err := cli.NetworkInspect(actx, want.Name, network.InspectOptions{Scope: "swarm"})
	switch {
	case err == nil:
		_, enc := got.Options["encrypted"]
		var diff []string
		if got.Driver != "overlay" {
			diff = append(diff, "driver "+got.Driver)
		}
		if got.Attachable != want.Attachable {
			diff = append(diff, fmt.Sprintf("attachable %t", got.Attachable))
		}
		if enc != want.Encrypted {
			diff = append(diff, fmt.Sprintf("encrypted %t", enc))
		}
		if want.Subnet != "" && !slices.ContainsFunc(got.IPAM.Config, func(c network.IPAMConfig) bool { return c.Subnet == want.Subnet }) {
			diff = append(diff, "another subnet")
		}
		if len(diff) > 0 {
			return SwarmChange{}, hostError(m, ErrSwarmConflict, false, "network %s exists with %s; a network cannot be changed in place: remove it (docker network rm %s) or choose another name",
				want.Name, strings.Join(diff, ", "), want.Name)
		}
		return SwarmChange{Message: "network " + want.Name + " exists"}, nil
	case !cerrdefs.IsNotFound(err):
		return SwarmChange{}, apiFailure(ctx, m, "look up network "+want.Name, err)
	}
	opts := network.CreateOptions{Driver: "overlay", Scope: "swarm", Attachable: want.Attachable, Labels: want.Labels}
	if want.Encrypted {
		opts.Options = map[string]string{"encrypted": ""}
	}
	if want.Subnet != "" {
		opts.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: want.Subnet}}}
	}
	if _, err := cli.NetworkCreate(actx, want.Name, opts); err != nil {
		if cerrdefs.IsConflict(err) || strings.Contains(err.Error(), "already exists") {
			return SwarmChange{Message: "network " + want.Name + " exists"}, nil
		}
		return SwarmChange{}, apiFailure(ctx, m, "create network "+want.Name, err)
	}
	return SwarmChange{Changed: true, Message: "network " + want.Name + " created"}, nil
}

// quorumNode is what the quorum arithmetic needs of a node.
type quorumNode struct {
	ID, Name  string
	Manager   bool
	Reachable bool
}

func nodesOf(nodes []swarm.Node) []quorumNode {
	out := make([]quorumNode, 0, len(nodes))
	for _, n := range nodes {
		q := quorumNode{ID: n.ID, Name: n.Description.Hostname}
		if n.ManagerStatus != nil {
			q.Manager = true
			q.Reachable = n.ManagerStatus.Reachability == swarm.ReachabilityReachable
		}
		out = append(out, q)
	}
	return out
}

// checkQuorum refuses an operation on node id that would leave fewer reachable
// managers than Raft quorum needs. what describes the operation ("demoting
// slave01"). With stays, the node stays a manager but goes away for a while (an
// engine upgrade); otherwise it stops being a manager (demotion, removal).
func checkQuorum(nodes []quorumNode, id, what string, stays bool) error {
	total, reachable := 0, 0
	var down []string
	target := false
	for _, n := range nodes {
		if !n.Manager {
			continue
		}
		if n.ID == id {
			target = true
			if stays {
				total++
			}
			continue
		}
		total++
		if n.Reachable {
			reachable++
		} else {
			down = append(down, n.Name)
		}
	}
	if !target {
		return nil // not a manager: Raft is not concerned
	}
	quorum := total/2 + 1
	if total > 0 && reachable >= quorum {
		return nil
	}
	msg := fmt.Sprintf("%s would leave %d manager(s), %d of them reachable", what, total, reachable)
	if len(down) > 0 {
		slices.Sort(down)
		msg += fmt.Sprintf(" (%s unreachable)", strings.Join(down, ", "))
	}
	if total == 0 {
		msg += "; a swarm needs at least one manager"
	} else {
		msg += fmt.Sprintf("; Raft needs a quorum of %d of %d (more than half), so the swarm could no longer be managed", quorum, total)
	}
	return temporal.NewNonRetryableApplicationError("refused: "+msg+". Bring the unreachable managers back, or promote another node first", ErrQuorum, nil)
}

// QuorumText explains a manager count: "3 managers: Raft quorum is 2; 1 may be lost".
func QuorumText(managers int) string {
	if managers <= 0 {
		return "no managers"
	}
	q := managers/2 + 1
	s := fmt.Sprintf("%d manager(s): Raft quorum is %d; %d may be lost without losing control of the swarm", managers, q, managers-q)
	if managers%2 == 0 {
		s += fmt.Sprintf(" (an even count tolerates no more losses than %d managers: use an odd number)", managers-1)
	}
	return s
}

// advertise resolves an advertise setting for host h.
func advertise(h playbooks.Host, v string) string {
	if v == "address" {
		return h.Address
	}
	return v
}

// managerAddrs are the addresses a joining node contacts: the manager's own.
func managerAddrs(st SwarmNodeState) []string {
	return []string{net.JoinHostPort(st.NodeAddr, "2377")}
}

// apiFailure classifies an Engine API error: one already classified (the SSH
// dial) passes as is, a cancelled context ends the attempt, and anything else is a
// retryable swarm error carrying the engine's message.
func apiFailure(ctx context.Context, h playbooks.Host, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae
	}
	if client.IsErrConnectionFailed(err) || errors.Is(err, context.DeadlineExceeded) {
		return hostUnreachable(h, "could not %s: the engine API over SSH did not answer: %s", what, engineMessage(err))
	}
	return hostError(h, ErrSwarmAPI, true, "could not %s: %s", what, engineMessage(err))
}

// engineMessage is the engine's own message without the client's prefixes.
func engineMessage(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "Error response from daemon: ")
	return msg
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return ": " + e
}

// errorText is the message of an error, without Temporal's decorations.
func errorText(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Message()
	}
	return err.Error()
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func describeNode(n swarm.Node) string {
	return fmt.Sprintf("%s: %s, %s, %s", n.Description.Hostname, n.Spec.Role, n.Spec.Availability, n.Status.State)
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

func cloneLabels(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
