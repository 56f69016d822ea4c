package activities

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// VerifyConsulRequest is the input of VerifyConsul: the host whose agent is asked,
// and the nodes (inventory names) that must be in the cluster.
type VerifyConsulRequest struct {
	Host    remote.Host `json:"host"`
	Servers []string    `json:"servers"`
	Clients []string    `json:"clients,omitempty"`
}

// ConsulMember is one member of the cluster as /v1/agent/members reports it.
type ConsulMember struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Role   string `json:"role"`   // server or client
	Status string `json:"status"` // alive, leaving, left, failed
}

// ConsulClusterState is what an agent's HTTP API said, once the cluster was as
// expected.
type ConsulClusterState struct {
	Leader  string         `json:"leader"` // address:port of the Raft leader
	Peers   []string       `json:"peers"`  // Raft peers, address:port, sorted
	Members []ConsulMember `json:"members"`
	// WaitedMs is how long the cluster took to get there.
	WaitedMs int64 `json:"waitedMs"`
}

// VerifyConsul asks the host's agent, through its HTTP API on 127.0.0.1:8500 reached
// over the host's SSH connection (a direct-tcpip channel; the host's sshd must allow
// AllowTcpForwarding local or yes), until the cluster is as expected: a leader is
// elected, the Raft peers are exactly the servers' addresses (port 8300, as the
// members report them), every expected node is a member in its role, and every
// member is alive. It polls every second, heartbeating, for up to two minutes, then
// fails with a retryable ErrConsulNotReady naming what is still wrong.
func (c *Consul) VerifyConsul(ctx context.Context, req VerifyConsulRequest) (ConsulClusterState, error) {
	h := req.Host
	if len(req.Servers) == 0 {
		return ConsulClusterState{}, hostInvalid(h, "no servers to expect")
	}
	op, done := c.begin(ctx, h)
	defer done()
	op.setPhase("api")
	hc := &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.rem.r.DialTCP(ctx, h, c.httpAddr)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}}
	defer hc.CloseIdleConnections()

	start := time.Now()
	deadline := start.Add(c.verifyTimeout)
	for {
		st, problem, err := c.clusterState(ctx, hc, req)
		if err != nil {
			return st, err
		}
		if problem == "" {
			st.WaitedMs = time.Since(start).Milliseconds()
			return st, nil
		}
		op.note(problem)
		if time.Now().After(deadline) {
			return st, consulNotReady(h, "the cluster is not as expected after %s: %s", c.verifyTimeout, problem)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(c.pollEvery):
		}
	}
}

// memberStatus names Serf's member status codes.
var memberStatus = map[int]string{0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}

// clusterState reads leader, peers and members once. problem says what is not as
// expected ("" when all is well); err is set only for what waiting cannot fix.
func (c *Consul) clusterState(ctx context.Context, hc *http.Client, req VerifyConsulRequest) (st ConsulClusterState, problem string, err error) {
	h := req.Host
	get := func(p string, v any) string {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		hr, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+c.httpAddr+p, nil)
		resp, e := hc.Do(hr)
		if e != nil {
			if _, prohibited := remote.ChannelRefused(e); prohibited {
				err = remoteFailed(h, "sshd refused to forward to %s (%v): the host's sshd_config needs AllowTcpForwarding local (or yes) and no PermitOpen line that excludes it", c.httpAddr, e)
			}
			if _, ok := remote.KindOf(e); ok && err == nil && ctx.Err() == nil {
				err = typed(e) // the pool could not connect
			}
			return fmt.Sprintf("GET %s: the agent does not answer (%v)", p, e)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return fmt.Sprintf("GET %s: %s: %s", p, resp.Status, lastOutputLine(string(body)))
		}
		if e := json.Unmarshal(body, v); e != nil {
			return fmt.Sprintf("GET %s: %v", p, e)
		}
		return ""
	}
	var members []struct {
		Name   string
		Addr   string
		Status int
		Tags   map[string]string
	}
	if p := get("/v1/status/leader", &st.Leader); p != "" {
		return st, p, err
	}
	if p := get("/v1/status/peers", &st.Peers); p != "" {
		return st, p, err
	}
	if p := get("/v1/agent/members", &members); p != "" {
		return st, p, err
	}
	if ctx.Err() != nil {
		return st, "cancelled", ctx.Err()
	}
	slices.Sort(st.Peers)
	var problems []string
	byName := map[string]int{}
	for i, m := range members {
		byName[m.Name] = i
		role := "client"
		if m.Tags["role"] == "consul" {
			role = "server"
		}
		status := memberStatus[m.Status]
		if status == "" {
			status = strconv.Itoa(m.Status)
		}
		st.Members = append(st.Members, ConsulMember{Name: m.Name, Addr: m.Addr, Role: role, Status: status})
		if status != "alive" {
			problems = append(problems, fmt.Sprintf("member %s (%s) is %s", m.Name, m.Addr, status))
		}
	}
	slices.SortFunc(st.Members, func(a, b ConsulMember) int { return strings.Compare(a.Name, b.Name) })
	var wantPeers, missing []string
	for _, name := range req.Servers {
		i, ok := byName[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		m := members[i]
		if m.Tags["role"] != "consul" {
			problems = append(problems, fmt.Sprintf("%s is a member but not a server", name))
			continue
		}
		port := m.Tags["port"]
		if port == "" {
			port = "8300"
		}
		wantPeers = append(wantPeers, net.JoinHostPort(m.Addr, port))
	}
	for _, name := range req.Clients {
		if i, ok := byName[name]; !ok {
			missing = append(missing, name)
		} else if members[i].Tags["role"] == "consul" {
			problems = append(problems, fmt.Sprintf("%s is a server, not a client", name))
		}
	}
	if len(missing) > 0 {
		problems = append(problems, "not members yet: "+strings.Join(missing, ", "))
	}
	slices.Sort(wantPeers)
	switch {
	case st.Leader == "":
		problems = append([]string{"no leader elected yet"}, problems...)
	case len(missing) == 0 && !slices.Equal(st.Peers, wantPeers):
		problems = append(problems, fmt.Sprintf("Raft peers are [%s], want [%s]", strings.Join(st.Peers, " "), strings.Join(wantPeers, " ")))
	}
	return st, strings.Join(problems, "; "), nil
}
