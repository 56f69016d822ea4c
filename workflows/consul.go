package workflows

import (
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// ConsulBootstrapName is the registered name of ConsulBootstrap: stable, histories use it.
const ConsulBootstrapName = "ConsulBootstrap"

// ConsulBootstrapInput is the one argument of ConsulBootstrap: the hosts (resolved,
// as in a plan) and the playbook's consulBootstrap step. It names the gossip key's
// file, never the key. From the Web UI:
//
//	{"hosts": [{"name": "master", "address": "10.211.73.11", "port": 22, "user": "root",
//	  "identityFile": "/path/id_ed25519", "knownHostsFile": "/path/known_hosts"}, ...],
//	 "consul": {"servers": ["master", "slave01", "slave02"], "source": "file",
//	  "binary": "/path/consul", "sha256": "...", "datacenter": "dc1",
//	  "gossipKeyFile": "/root/.config/clusterflow/consul-gossip.key"}}
type ConsulBootstrapInput struct {
	Hosts  []remote.Host        `json:"hosts"`
	Consul playbooks.ConsulStep `json:"consul"`
	// Parallel is how many hosts are worked on at once; 0 means all of them.
	Parallel int `json:"parallel,omitempty"`
}

// ConsulBootstrapResult is what ConsulBootstrap did and what the cluster reported.
type ConsulBootstrapResult struct {
	Hosts   []HostOutcome `json:"hosts"`
	Leader  string        `json:"leader,omitempty"`  // address:port of the Raft leader
	Peers   []string      `json:"peers,omitempty"`   // Raft peers, address:port
	Members []string      `json:"members,omitempty"` // "name address status"
}

func (r *ConsulBootstrapResult) hostOutcomes() []HostOutcome { return r.Hosts }

// Phases of a host in ConsulBootstrap, in order, as the progress query shows them.
const (
	ConsulPhasePending   = "pending"
	ConsulPhaseInstall   = "install"
	ConsulPhaseConfigure = "configure"
	ConsulPhaseStart     = "start"
	ConsulPhaseVerify    = "verify"
	ConsulPhaseDone      = "done"
)

// ConsulBootstrapProgress is the result of ConsulBootstrap's "progress" query: each
// host with its role (server or client).
type ConsulBootstrapProgress struct {
	Source string `json:"source"`
	// KeyID identifies the gossip key in use (a hash; the key is never shown).
	KeyID string         `json:"keyId,omitempty"`
	Hosts []HostProgress `json:"hosts"`
}

// ErrGossipKeyFailed is the error type of a ConsulBootstrap run that could not make
// or read the gossip key on the worker: not a per-host problem.
const ErrGossipKeyFailed = "GossipKeyFailed"

// ConsulBootstrap installs, configures and starts Consul agents on the hosts and
// checks the cluster they form:
//
//  1. the gossip encryption key exists on the worker (made on first use; only its
//     path and an ID travel, never the key);
//  2. every host, at most Parallel at a time: InstallConsul, ConfigureConsul
//     (servers with bootstrap_expect, clients; retry_join the servers) and
//     StartConsul (restarting a running agent whose binary or configuration
//     changed);
//  3. every host that got that far: VerifyConsul asks its agent's HTTP API, over
//     SSH, for a leader, the Raft peers (exactly the servers) and the members (all
//     alive).
//
// The first activity that fails stops that host only; it is reported failed in the
// result, not as an error, and the caller (RunPlaybook) applies the step's failure
// budget. Invalid input fails the run with InvalidInput before any host is touched; a
// gossip key that cannot be made or read fails it with GossipKeyFailed. Every
// activity checks before it acts, so a second run reports every host unchanged.
// Per-host phase and state are readable through the "progress" query.
func ConsulBootstrap(ctx workflow.Context, in ConsulBootstrapInput) (*ConsulBootstrapResult, error) {
	// Step 1. Check the input before touching anything.
	spec, err := checkConsulBootstrap(in)
	if err != nil {
		return nil, invalidInput(err.Error())
	}
	r := newConsulRun(in, spec)

	// Step 2. Publish progress.
	if err := workflow.SetQueryHandlerWithOptions(ctx, ProgressQuery, func() (*ConsulBootstrapProgress, error) {
		return &ConsulBootstrapProgress{Source: spec.Source, KeyID: r.keyID, Hosts: r.hosts.hosts}, nil
	}, workflow.QueryHandlerOptions{Description: "per-host role, phase and state of the Consul bootstrap"}); err != nil {
		return nil, err
	}
	r.publish(ctx)

	// Step 3. The gossip key, on the worker.
	var key activities.GossipKeyInfo
	kctx := workflow.WithActivityOptions(ctx, workerFileOptions)
	if err := workflow.ExecuteActivity(kctx, consulActs.EnsureGossipKey, activities.GossipKeyRequest{Path: spec.GossipKeyFile}).Get(ctx, &key); err != nil {
		if temporal.IsCanceledError(err) || ctx.Err() != nil {
			return nil, temporal.NewCanceledError()
		}
		return nil, temporal.NewNonRetryableApplicationError("cannot make or read the gossip key "+spec.GossipKeyFile+": "+errorMessage(err), ErrGossipKeyFailed, nil)
	}
	r.keyID = key.KeyID

	// Step 4. Install, configure and start, host by host.
	r.eachHost(ctx, func(ctx workflow.Context, i int) { r.setUpHost(ctx, i) }, nil)

	// Step 5. Verify through every agent that got this far.
	var servers, clients []string
	for i, h := range in.Hosts {
		if r.started[i] {
			if r.server[i] {
				servers = append(servers, h.Name)
			} else {
				clients = append(clients, h.Name)
			}
		}
	}
	if len(servers) == 0 {
		for i := range in.Hosts {
			if r.started[i] {
				r.fail(ctx, i, ConsulPhaseVerify, "no server agent was started (every server failed), so there is no cluster to join")
			}
		}
	} else {
		r.eachHost(ctx, func(ctx workflow.Context, i int) { r.verifyHost(ctx, i, servers, clients) }, r.started)
	}

	// Step 6. Report.
	res := r.result()
	if ctx.Err() != nil {
		return res, temporal.NewCanceledError("ConsulBootstrap cancelled")
	}
	return res, nil
}

// checkConsulBootstrap validates the input and returns the step with its defaults
// applied (ConsulStep.Normalize).
func checkConsulBootstrap(in ConsulBootstrapInput) (playbooks.ConsulStep, error) {
	spec := in.Consul
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return spec, err
	}
	if in.Parallel < 0 {
		return spec, fmt.Errorf("parallel must not be negative (0 means all hosts at once), not %d", in.Parallel)
	}
	return spec, spec.Normalize(playbooks.Scope{Hosts: names}).Err("consul")
}

// consulRun is the state of one ConsulBootstrap execution. Host coroutines each
// write only their own index.
type consulRun struct {
	in        ConsulBootstrapInput
	spec      playbooks.ConsulStep
	keyID     string
	retryJoin []string // the servers' inventory addresses
	hosts     *hostTracker
	server    []bool
	started   []bool                           // the agent runs (install, configure and start succeeded)
	states    []*activities.ConsulClusterState // what each host's agent reported
}

func newConsulRun(in ConsulBootstrapInput, spec playbooks.ConsulStep) *consulRun {
	n := len(in.Hosts)
	r := &consulRun{
		in: in, spec: spec,
		hosts:   newHostTracker(in.Hosts, ConsulPhasePending),
		server:  make([]bool, n),
		started: make([]bool, n),
		states:  make([]*activities.ConsulClusterState, n),
	}
	for i, h := range in.Hosts {
		r.server[i] = slices.Contains(spec.Servers, h.Name)
		r.hosts.hosts[i].Role = "client"
		if r.server[i] {
			r.retryJoin = append(r.retryJoin, h.Address)
			r.hosts.hosts[i].Role = "server"
		}
	}
	return r
}

// eachHost runs fn for every host (only those with only[i], when only is given), at
// most in.Parallel at a time, each in its own coroutine, and waits for all of them.
func (r *consulRun) eachHost(ctx workflow.Context, fn func(ctx workflow.Context, i int), only []bool) {
	var hosts []int
	for i := range r.in.Hosts {
		if only == nil || only[i] {
			hosts = append(hosts, i)
		}
	}
	started := eachHost(ctx, len(hosts), r.in.Parallel, func(ctx workflow.Context, k int) { fn(ctx, hosts[k]) })
	for _, i := range hosts[started:] {
		r.stop(ctx, i, HostSkipped, "not started: the run was cancelled")
	}
}

// setUpHost installs, configures and starts the agent of host i.
func (r *consulRun) setUpHost(ctx workflow.Context, i int) {
	h := r.in.Hosts[i]
	r.hosts.hosts[i].State = HostRunning

	var inst activities.InstallConsulResult
	if !r.call(ctx, i, ConsulPhaseInstall, consulInstallOptions, consulActs.InstallConsul, activities.InstallConsulRequest{
		Host: h, Source: r.spec.Source, Binary: r.spec.Binary, SHA256: r.spec.SHA256, URL: r.spec.URL, Version: r.spec.Version,
	}, &inst) {
		return
	}
	r.hosts.note(i, inst.Changed, inst.Message)

	expect := 0
	if r.server[i] {
		expect = len(r.retryJoin)
	}
	var conf activities.ConsulConfigResult
	if !r.call(ctx, i, ConsulPhaseConfigure, consulQuickOptions, consulActs.ConfigureConsul, activities.ConsulConfigRequest{
		Host: h, Server: r.server[i], Datacenter: r.spec.Datacenter, BootstrapExpect: expect, RetryJoin: r.retryJoin,
		BindInterface: r.spec.BindInterface, GossipKeyFile: r.spec.GossipKeyFile, KeyID: r.keyID,
	}, &conf) {
		return
	}
	role := "client"
	if r.server[i] {
		role = fmt.Sprintf("server, bootstrap_expect %d", expect)
	}
	if conf.Changed {
		r.hosts.note(i, true, fmt.Sprintf("%s written (%s, bind %s)", conf.Path, role, conf.BindAddr))
	}

	var start activities.StartConsulResult
	if !r.call(ctx, i, ConsulPhaseStart, consulQuickOptions, consulActs.StartConsul, activities.StartConsulRequest{
		Host: h, Binary: inst.Path, Restart: inst.Changed || conf.Changed,
	}, &start) {
		return
	}
	if start.Changed {
		r.hosts.note(i, true, fmt.Sprintf("agent %s (%s)", start.Action, start.Manager))
	}
	r.started[i] = true
	r.publish(ctx)
}

// verifyHost asks host i's agent about the cluster and records the host's outcome.
func (r *consulRun) verifyHost(ctx workflow.Context, i int, servers, clients []string) {
	var st activities.ConsulClusterState
	if !r.call(ctx, i, ConsulPhaseVerify, consulVerifyOptions, consulActs.VerifyConsul, activities.VerifyConsulRequest{
		Host: r.in.Hosts[i], Servers: servers, Clients: clients,
	}, &st) {
		return
	}
	r.states[i] = &st
	alive := 0
	for _, m := range st.Members {
		if m.Status == "alive" {
			alive++
		}
	}
	r.hosts.note(i, false, fmt.Sprintf("leader %s, %d peers, %d members alive", st.Leader, len(st.Peers), alive))
	r.hosts.succeed(i, ConsulPhaseDone)
	r.publish(ctx)
}

// call runs one activity of host i in the given phase. On failure it records the
// host's outcome and returns false: the host's sequence stops there.
func (r *consulRun) call(ctx workflow.Context, i int, phase string, opts workflow.ActivityOptions, activity, req, res any) bool {
	r.hosts.hosts[i].Phase = phase
	r.publish(ctx)
	err := workflow.ExecuteActivity(withSummary(ctx, opts, fmt.Sprintf("%s on %s", phase, r.in.Hosts[i].Name)), activity, req).Get(ctx, res)
	if err == nil {
		return true
	}
	if temporal.IsCanceledError(err) || ctx.Err() != nil {
		r.stop(ctx, i, HostSkipped, "cancelled during "+phase)
		return false
	}
	r.fail(ctx, i, phase, errorMessage(err))
	return false
}

// fail records host i as failed in phase.
func (r *consulRun) fail(ctx workflow.Context, i int, phase, msg string) {
	r.hosts.fail(i, phase, msg)
	r.publish(ctx)
}

// stop records host i's final state.
func (r *consulRun) stop(ctx workflow.Context, i int, state, msg string) {
	r.hosts.finish(i, state, msg)
	r.publish(ctx)
}

func (r *consulRun) result() *ConsulBootstrapResult {
	res := &ConsulBootstrapResult{Hosts: r.hosts.outcomes()}
	for _, st := range r.states { // the first host's view, in input order
		if st == nil {
			continue
		}
		res.Leader, res.Peers = st.Leader, st.Peers
		for _, m := range st.Members {
			res.Members = append(res.Members, m.Name+" "+m.Addr+" "+m.Status)
		}
		break
	}
	return res
}

// publish refreshes the Markdown the Web UI shows as the run's current details.
func (r *consulRun) publish(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, fmt.Sprintf("**ConsulBootstrap** (source %s, datacenter %s)\n\n", r.spec.Source, r.spec.Datacenter)+r.hosts.table(true))
}
