package workflows

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// consulActs is the typed nil pointer ConsulBootstrap calls its activities through.
var consulActs *activities.Consul

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

// Phases of a host in ConsulBootstrap, in order, as the progress query shows them.
const (
	ConsulPhasePending   = "pending"
	ConsulPhaseInstall   = "install"
	ConsulPhaseConfigure = "configure"
	ConsulPhaseStart     = "start"
	ConsulPhaseVerify    = "verify"
	ConsulPhaseDone      = "done"
)

// ConsulBootstrapProgress is the result of ConsulBootstrap's "progress" query.
type ConsulBootstrapProgress struct {
	Source string `json:"source"`
	// KeyID identifies the gossip key in use (a hash; the key is never shown).
	KeyID string               `json:"keyId,omitempty"`
	Hosts []ConsulHostProgress `json:"hosts"`
}

// ConsulHostProgress is one host's state: its role (server or client), the phase it
// is in (or stopped in) and HostPending, HostRunning, HostChanged, HostUnchanged,
// HostFailed or HostSkipped.
type ConsulHostProgress struct {
	Host    string `json:"host"`
	Role    string `json:"role"`
	Phase   string `json:"phase"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

// ErrGossipKeyFailed is the error type of a ConsulBootstrap run that could not make
// or read the gossip key on the worker: not a per-host problem.
const ErrGossipKeyFailed = "GossipKeyFailed"

// Activity option presets of ConsulBootstrap.
var (
	// consulKeyOptions serve EnsureGossipKey, on the worker's own files.
	consulKeyOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: []string{activities.ErrInvalidInput},
		},
	}
	// consulInstallOptions serve InstallConsul: a binary of over 100 MiB over a slow
	// link, or apt on a slow mirror, takes minutes.
	consulInstallOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 20 * time.Minute,
		// Heartbeats come every few seconds whatever the transfer does.
		HeartbeatTimeout:    30 * time.Second,
		WaitForCancellation: true,
		RetryPolicy:         consulRetry(6, time.Minute),
	}
	// consulQuickOptions serve ConfigureConsul and StartConsul (which waits up to a
	// minute for the agent).
	consulQuickOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 3 * time.Minute,
		HeartbeatTimeout:    hostHeartbeat,
		WaitForCancellation: true,
		RetryPolicy:         consulRetry(5, 30*time.Second),
	}
	// consulVerifyOptions serve VerifyConsul, which polls the API for up to two
	// minutes: one more try after that is enough.
	consulVerifyOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 4 * time.Minute,
		HeartbeatTimeout:    hostHeartbeat,
		WaitForCancellation: true,
		RetryPolicy:         consulRetry(2, 30*time.Second),
	}
)

// consulRetry is the retry policy of the Consul host activities. Errors that the
// same input would hit again are final.
func consulRetry(attempts int32, maxInterval time.Duration) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:    2 * time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    maxInterval,
		MaximumAttempts:    attempts,
		NonRetryableErrorTypes: []string{
			activities.ErrInvalidInput, activities.ErrAuthFailed,
			activities.ErrHostKeyMismatch, activities.ErrHostKeyUnknown,
			activities.ErrRemoteFailed, activities.ErrUnsupportedOS,
			activities.ErrPackageUnavailable, activities.ErrGossipKeyMismatch,
		},
	}
}

var (
	// consulDCRE is a Consul datacenter name, as the playbook format accepts it.
	consulDCRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	// consulIfaceRE is a Linux interface name.
	consulIfaceRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.@-]{0,14}$`)
	// sha256RE is a SHA-256 in lower-case hex.
	sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

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
		return r.progress, nil
	}, workflow.QueryHandlerOptions{Description: "per-host role, phase and state of the Consul bootstrap"}); err != nil {
		return nil, err
	}
	r.publish(ctx)

	// Step 3. The gossip key, on the worker.
	var key activities.GossipKeyInfo
	kctx := workflow.WithActivityOptions(ctx, consulKeyOptions)
	if err := workflow.ExecuteActivity(kctx, consulActs.EnsureGossipKey, activities.GossipKeyRequest{Path: spec.GossipKeyFile}).Get(ctx, &key); err != nil {
		if temporal.IsCanceledError(err) || ctx.Err() != nil {
			return nil, temporal.NewCanceledError()
		}
		return nil, temporal.NewNonRetryableApplicationError("cannot make or read the gossip key "+spec.GossipKeyFile+": "+errorMessage(err), ErrGossipKeyFailed, nil)
	}
	r.keyID = key.KeyID
	r.progress.KeyID = key.KeyID

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

// checkConsulBootstrap validates the input and returns the step with defaults
// applied (source file, datacenter dc1, every host a server).
func checkConsulBootstrap(in ConsulBootstrapInput) (playbooks.ConsulStep, error) {
	spec := in.Consul
	names, err := checkHosts(in.Hosts)
	if err != nil {
		return spec, err
	}
	if in.Parallel < 0 {
		return spec, fmt.Errorf("parallel must not be negative (0 means all hosts at once), not %d", in.Parallel)
	}
	if len(spec.Servers) == 0 {
		spec.Servers = names
	}
	var seen []string
	for _, s := range spec.Servers {
		switch {
		case !slices.Contains(names, s):
			return spec, fmt.Errorf("server %q is not one of the hosts (%s)", s, strings.Join(names, ", "))
		case slices.Contains(seen, s):
			return spec, fmt.Errorf("server %q is listed twice", s)
		}
		seen = append(seen, s)
	}
	if spec.Source == "" {
		spec.Source = playbooks.ConsulFromFile
	}
	if spec.Datacenter == "" {
		spec.Datacenter = "dc1"
	}
	httpURL := func(what, v string) error {
		u, err := url.Parse(v)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return fmt.Errorf("%s %q must be an http:// or https:// URL", what, v)
		case u.User != nil || strings.ContainsAny(v, " \t\n'\"\\"):
			return fmt.Errorf("%s %q must be a plain URL, without credentials, quotes or spaces", what, v)
		}
		return nil
	}
	switch spec.Source {
	case playbooks.ConsulFromFile:
		switch {
		case spec.Binary == "" || !path.IsAbs(spec.Binary):
			return spec, fmt.Errorf("source file needs \"binary\": the absolute path of the consul executable on the worker, not %q", spec.Binary)
		case spec.URL != "":
			return spec, errors.New("url is used only with source url or apt")
		}
	case playbooks.ConsulFromURL:
		if err := httpURL("url", spec.URL); err != nil {
			return spec, fmt.Errorf("source url needs the release zip: %v", err)
		}
	case playbooks.ConsulFromApt:
		if spec.URL != "" {
			if err := httpURL("url", spec.URL); err != nil {
				return spec, err
			}
		}
		if spec.Binary != "" || spec.SHA256 != "" {
			return spec, errors.New("binary and sha256 are used only with source file or url")
		}
	default:
		return spec, fmt.Errorf("unknown consul source %q: use %q, %q or %q", spec.Source,
			playbooks.ConsulFromFile, playbooks.ConsulFromURL, playbooks.ConsulFromApt)
	}
	if spec.Source != playbooks.ConsulFromApt && !sha256RE.MatchString(spec.SHA256) {
		return spec, fmt.Errorf("source %s needs \"sha256\": 64 lower-case hex digits, not %q", spec.Source, spec.SHA256)
	}
	if spec.Version != "" && !debVersionRE.MatchString(spec.Version) {
		return spec, fmt.Errorf("version %q is not a version such as 1.22.7", spec.Version)
	}
	if !consulDCRE.MatchString(spec.Datacenter) {
		return spec, fmt.Errorf("datacenter %q must be lower-case letters, digits, _ and -", spec.Datacenter)
	}
	if spec.GossipKeyFile == "" || !path.IsAbs(spec.GossipKeyFile) {
		return spec, fmt.Errorf("gossipKeyFile %q must be an absolute path on the worker", spec.GossipKeyFile)
	}
	if spec.BindInterface != "" && !consulIfaceRE.MatchString(spec.BindInterface) {
		return spec, fmt.Errorf("bindInterface %q is not an interface name", spec.BindInterface)
	}
	return spec, nil
}

// consulRun is the state of one ConsulBootstrap execution. Host coroutines each
// write only their own index.
type consulRun struct {
	in        ConsulBootstrapInput
	spec      playbooks.ConsulStep
	keyID     string
	retryJoin []string // the servers' inventory addresses
	progress  *ConsulBootstrapProgress
	outcomes  []HostOutcome
	server    []bool
	started   []bool                           // the agent runs (install, configure and start succeeded)
	changed   []bool                           // some activity changed the host
	notes     [][]string                       // what each host's activities did, for its message
	states    []*activities.ConsulClusterState // what each host's agent reported
}

func newConsulRun(in ConsulBootstrapInput, spec playbooks.ConsulStep) *consulRun {
	n := len(in.Hosts)
	r := &consulRun{
		in: in, spec: spec,
		progress: &ConsulBootstrapProgress{Source: spec.Source},
		outcomes: make([]HostOutcome, n),
		server:   make([]bool, n),
		started:  make([]bool, n),
		changed:  make([]bool, n),
		notes:    make([][]string, n),
		states:   make([]*activities.ConsulClusterState, n),
	}
	for i, h := range in.Hosts {
		r.server[i] = slices.Contains(spec.Servers, h.Name)
		if r.server[i] {
			r.retryJoin = append(r.retryJoin, h.Address)
		}
		role := "client"
		if r.server[i] {
			role = "server"
		}
		r.progress.Hosts = append(r.progress.Hosts, ConsulHostProgress{Host: h.Name, Role: role, Phase: ConsulPhasePending, State: HostPending})
		r.outcomes[i] = HostOutcome{Host: h.Name, State: HostPending}
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
	parallel := r.in.Parallel
	if parallel <= 0 || parallel > len(hosts) {
		parallel = len(hosts)
	}
	if parallel == 0 {
		return
	}
	sem := workflow.NewSemaphore(ctx, int64(parallel))
	wg := workflow.NewWaitGroup(ctx)
	for _, i := range hosts {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			if err := sem.Acquire(ctx, 1); err != nil {
				r.stop(ctx, i, HostSkipped, "not started: the run was cancelled")
				return
			}
			defer sem.Release(1)
			fn(ctx, i)
		})
	}
	wg.Wait(ctx)
}

// setUpHost installs, configures and starts the agent of host i.
func (r *consulRun) setUpHost(ctx workflow.Context, i int) {
	h := r.in.Hosts[i]
	r.progress.Hosts[i].State = HostRunning

	var inst activities.InstallConsulResult
	if !r.call(ctx, i, ConsulPhaseInstall, consulInstallOptions, consulActs.InstallConsul, activities.InstallConsulRequest{
		Host: h, Source: r.spec.Source, Binary: r.spec.Binary, SHA256: r.spec.SHA256, URL: r.spec.URL, Version: r.spec.Version,
	}, &inst) {
		return
	}
	r.note(i, inst.Changed, inst.Message)

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
		r.note(i, true, fmt.Sprintf("%s written (%s, bind %s)", conf.Path, role, conf.BindAddr))
	}

	var start activities.StartConsulResult
	if !r.call(ctx, i, ConsulPhaseStart, consulQuickOptions, consulActs.StartConsul, activities.StartConsulRequest{
		Host: h, Binary: inst.Path, Restart: inst.Changed || conf.Changed,
	}, &start) {
		return
	}
	if start.Changed {
		r.note(i, true, fmt.Sprintf("agent %s (%s)", start.Action, start.Manager))
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
	r.note(i, false, fmt.Sprintf("leader %s, %d peers, %d members alive", st.Leader, len(st.Peers), alive))
	state := HostUnchanged
	if r.changed[i] {
		state = HostChanged
	}
	r.progress.Hosts[i].Phase = ConsulPhaseDone
	r.stop(ctx, i, state, strings.Join(r.notes[i], "; "))
}

// note records what an activity did on host i.
func (r *consulRun) note(i int, changed bool, msg string) {
	r.changed[i] = r.changed[i] || changed
	if msg != "" {
		r.notes[i] = append(r.notes[i], msg)
	}
}

// call runs one activity of host i in the given phase. On failure it records the
// host's outcome and returns false: the host's sequence stops there.
func (r *consulRun) call(ctx workflow.Context, i int, phase string, opts workflow.ActivityOptions, activity, req, res any) bool {
	hp := &r.progress.Hosts[i]
	hp.Phase = phase
	r.publish(ctx)
	opts.Summary = fmt.Sprintf("%s on %s", phase, hp.Host)
	actx := workflow.WithActivityOptions(ctx, opts)
	err := workflow.ExecuteActivity(actx, activity, req).Get(ctx, res)
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
	r.progress.Hosts[i].Phase = phase
	r.stop(ctx, i, HostFailed, phase+": "+msg)
}

// stop records host i's final state.
func (r *consulRun) stop(ctx workflow.Context, i int, state, msg string) {
	hp := &r.progress.Hosts[i]
	hp.State, hp.Message = state, msg
	r.outcomes[i] = HostOutcome{Host: hp.Host, State: state, Message: msg}
	if state == HostSkipped {
		// HostOutcome knows changed, unchanged and failed only.
		r.outcomes[i].State = HostFailed
	}
	r.publish(ctx)
}

func (r *consulRun) result() *ConsulBootstrapResult {
	res := &ConsulBootstrapResult{Hosts: r.outcomes}
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
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**ConsulBootstrap** (source %s, datacenter %s)\n\n| host | role | phase | state | message |\n|---|---|---|---|---|\n", r.spec.Source, r.spec.Datacenter))
	for _, h := range r.progress.Hosts {
		msg := strings.ReplaceAll(h.Message, "|", "\\|")
		b.WriteString(fmt.Sprintf("| %s | %s | %s | %s | %s |\n", h.Host, h.Role, h.Phase, h.State, msg))
	}
	workflow.SetCurrentDetails(ctx, b.String())
}
