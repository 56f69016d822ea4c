package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"go.temporal.io/sdk/temporal"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/compose"
)

// The activities of the SwarmInit and SwarmNodes procedures (swarm_*.go). They
// speak the Docker Engine API over SSH (DockerAPI), never a TCP port of the engine.
// Each reads the swarm's state first and acts only when it differs from what is
// asked, so a retry or a second run finds the work done. Join tokens are read and
// used inside JoinSwarm: they are never an input, a result, a heartbeat or a log line.

// Swarm holds the activities of the SwarmInit and SwarmNodes procedures.
type Swarm struct {
	rem typedRemote
	// poll is how often waits re-read the swarm.
	poll time.Duration
	// env is the worker's environment, which secrets, configs and registry
	// passwords may be read from.
	env compose.LookupEnv
}

// NewSwarm returns the swarm activities, reaching hosts through r.
func NewSwarm(r remote.Remote) *Swarm {
	return &Swarm{rem: typedRemote{r}, poll: time.Second, env: osEnv}
}

// SwarmHostRequest names one host.
type SwarmHostRequest struct {
	Host remote.Host `json:"host"`
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
func (s *Swarm) open(ctx context.Context, h remote.Host) (*client.Client, SwarmNodeState, error) {
	cli, err := s.rem.dockerAPI(h)
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

func (s *Swarm) state(ctx context.Context, h remote.Host, cli *client.Client) (SwarmNodeState, error) {
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

// SwarmChange is what an activity did to one node.
type SwarmChange struct {
	Changed bool           `json:"changed"`
	Message string         `json:"message"`
	State   SwarmNodeState `json:"state"`
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
	Manager remote.Host `json:"manager"`
}

// SwarmNodes lists the swarm's nodes, through the manager.
func (s *Swarm) ListSwarmNodes(ctx context.Context, req SwarmManagerRequest) ([]SwarmNode, error) {
	cli, err := s.rem.dockerAPI(req.Manager)
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

func (s *Swarm) nodes(ctx context.Context, m remote.Host, cli *client.Client) ([]swarm.Node, error) {
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

// apiFailure classifies an Engine API error: one already classified (the SSH
// dial) passes, typed, a cancelled context ends the attempt, and anything else is a
// retryable swarm error carrying the engine's message.
func apiFailure(ctx context.Context, h remote.Host, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if _, ok := remote.KindOf(err); ok {
		return typed(err)
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae
	}
	if client.IsErrConnectionFailed(err) || errors.Is(err, context.DeadlineExceeded) {
		return hostUnreachable(h, "could not %s: the engine API over SSH did not answer: %s", what, engineMessage(err))
	}
	return swarmAPI(h, "could not %s: %s", what, engineMessage(err))
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
