package activities

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// This file makes hosts members of a swarm: the first manager (InitSwarm), then
// the others (JoinSwarm).

// InitSwarmRequest asks for a swarm initialised on Host.
type InitSwarmRequest struct {
	Host remote.Host `json:"host"`
	// AdvertiseAddr: "" (the engine chooses), "address" (the inventory address),
	// an interface name or an IP[:port].
	AdvertiseAddr string `json:"advertiseAddr,omitempty"`
	ListenAddr    string `json:"listenAddr,omitempty"`
	DataPathAddr  string `json:"dataPathAddr,omitempty"`
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
			return SwarmChange{}, swarmConflict(h,
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
	Manager       remote.Host `json:"manager"`
	Host          remote.Host `json:"host"`
	Role          string      `json:"role"` // manager or worker
	AdvertiseAddr string      `json:"advertiseAddr,omitempty"`
	ListenAddr    string      `json:"listenAddr,omitempty"`
	DataPathAddr  string      `json:"dataPathAddr,omitempty"`
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
		return SwarmChange{}, noManager(about(m, "is not a reachable swarm manager (state %s)", mst.State))
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
			return SwarmChange{}, swarmConflict(h,
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
			return SwarmChange{}, swarmAPI(h, "could not join the swarm of %s (%s): %s", m.Name, strings.Join(remote, ", "), msg)
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
func (s *Swarm) waitReady(ctx context.Context, h remote.Host, cli *client.Client, m remote.Host, mcli *client.Client) (SwarmNodeState, error) {
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
			return st, swarmAPI(h, "joined, but not ready after 90 s (%s)", last)
		}
		activity.RecordHeartbeat(ctx, "wait ready: "+last)
		if err := sleepCtx(ctx, s.poll); err != nil {
			return st, err
		}
	}
}

// nodeKnown reports whether the manager's swarm has a node with this ID.
func (s *Swarm) nodeKnown(ctx context.Context, m remote.Host, mcli *client.Client, id string) (bool, error) {
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
func (s *Swarm) leaveHalfJoin(ctx context.Context, h remote.Host, cli *client.Client, st SwarmNodeState) (string, error) {
	if st.State == string(swarm.LocalNodeStateLocked) {
		return "", swarmConflict(h, "its swarm is locked (autolock): unlock it with `docker swarm unlock` first")
	}
	if err := s.leave(ctx, h, cli); err != nil {
		return "", err
	}
	return fmt.Sprintf("left a half-finished join (state %s%s)", st.State, errSuffix(st.Error)), nil
}

// leave takes the host out of its swarm (forced: it may be half-joined).
func (s *Swarm) leave(ctx context.Context, h remote.Host, cli *client.Client) error {
	activity.RecordHeartbeat(ctx, "leave")
	actx, cancel := context.WithTimeout(ctx, 2*apiTimeout)
	defer cancel()
	if err := cli.SwarmLeave(actx, true); err != nil && !strings.Contains(err.Error(), "not part of a swarm") {
		return apiFailure(ctx, h, "leave the swarm", err)
	}
	return nil
}

// advertise resolves an advertise setting for host h.
func advertise(h remote.Host, v string) string {
	if v == "address" {
		return h.Address
	}
	return v
}

// managerAddrs are the addresses a joining node contacts: the manager's own.
func managerAddrs(st SwarmNodeState) []string {
	return []string{net.JoinHostPort(st.NodeAddr, "2377")}
}
