package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// These tests check ConsulBootstrap's logic with faked activities. The activities
// run over a loopback sshd in the activities package, and on real lab nodes in
// internal/e2e (-tags lab).

// consulHosts are hosts named a, b, c... at 192.0.2.1, .2, ...
func consulHosts(names ...string) []remote.Host {
	var hosts []remote.Host
	for i, n := range names {
		hosts = append(hosts, remote.Host{Name: n, Address: fmt.Sprintf("192.0.2.%d", i+1), Port: 22, User: "root"})
	}
	return hosts
}

func consulInput(names ...string) ConsulBootstrapInput {
	return ConsulBootstrapInput{
		Hosts: consulHosts(names...),
		Consul: playbooks.ConsulStep{Source: playbooks.ConsulFromFile, Binary: "/cache/consul", SHA256: strings.Repeat("ab", 32),
			Datacenter: "dc1", GossipKeyFile: "/home/op/.config/clusterflow/consul-gossip.key"},
	}
}

// fakeConsul fakes the Consul activities and logs every host call as
// "host:activity". fail maps "host:activity" to the error that call returns;
// installed lists hosts where everything is in place already.
type fakeConsul struct {
	mu        sync.Mutex
	calls     []string
	keyCalls  int
	keyErr    error
	fail      map[string]error
	installed map[string]bool
	configs   map[string]activities.ConsulConfigRequest
	starts    map[string]activities.StartConsulRequest
	verifies  map[string]activities.VerifyConsulRequest
	requests  []string // every request, as JSON
}

func newFakeConsul() *fakeConsul {
	return &fakeConsul{fail: map[string]error{}, installed: map[string]bool{}, configs: map[string]activities.ConsulConfigRequest{},
		starts: map[string]activities.StartConsulRequest{}, verifies: map[string]activities.VerifyConsulRequest{}}
}

func (f *fakeConsul) record(h remote.Host, act string, req any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := h.Name + ":" + act
	f.calls = append(f.calls, key)
	b, _ := json.Marshal(req)
	f.requests = append(f.requests, string(b))
	return f.fail[key]
}

func (f *fakeConsul) callsOf(host string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if h, act, _ := strings.Cut(c, ":"); h == host {
			out = append(out, act)
		}
	}
	return out
}

func (f *fakeConsul) register(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(consulActs.EnsureGossipKey, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.GossipKeyRequest) (activities.GossipKeyInfo, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.keyCalls++
			if f.keyErr != nil {
				return activities.GossipKeyInfo{}, f.keyErr
			}
			return activities.GossipKeyInfo{Path: req.Path, KeyID: "sha256:0123456789abcdef"}, nil
		})
	env.OnActivity(consulActs.InstallConsul, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.InstallConsulRequest) (activities.InstallConsulResult, error) {
			if err := f.record(req.Host, "InstallConsul", req); err != nil {
				return activities.InstallConsulResult{}, err
			}
			res := activities.InstallConsulResult{Path: "/usr/local/bin/consul", Version: "1.22.7"}
			if f.installed[req.Host.Name] {
				res.Message = "consul 1.22.7 already installed"
			} else {
				res.Changed, res.Message = true, "installed consul 1.22.7 (file)"
			}
			return res, nil
		})
	env.OnActivity(consulActs.ConfigureConsul, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.ConsulConfigRequest) (activities.ConsulConfigResult, error) {
			if err := f.record(req.Host, "ConfigureConsul", req); err != nil {
				return activities.ConsulConfigResult{}, err
			}
			f.mu.Lock()
			f.configs[req.Host.Name] = req
			f.mu.Unlock()
			return activities.ConsulConfigResult{Changed: !f.installed[req.Host.Name], Path: "/etc/consul.d/clusterflow.json", BindAddr: req.Host.Address}, nil
		})
	env.OnActivity(consulActs.StartConsul, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.StartConsulRequest) (activities.StartConsulResult, error) {
			if err := f.record(req.Host, "StartConsul", req); err != nil {
				return activities.StartConsulResult{}, err
			}
			f.mu.Lock()
			f.starts[req.Host.Name] = req
			f.mu.Unlock()
			if f.installed[req.Host.Name] {
				return activities.StartConsulResult{Manager: activities.ConsulBySupervisor}, nil
			}
			return activities.StartConsulResult{Changed: true, Manager: activities.ConsulBySupervisor, Action: "started"}, nil
		})
	env.OnActivity(consulActs.VerifyConsul, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.VerifyConsulRequest) (activities.ConsulClusterState, error) {
			if err := f.record(req.Host, "VerifyConsul", req); err != nil {
				return activities.ConsulClusterState{}, err
			}
			f.mu.Lock()
			f.verifies[req.Host.Name] = req
			f.mu.Unlock()
			st := activities.ConsulClusterState{Leader: "192.0.2.1:8300"}
			for i, n := range append(slices.Clone(req.Servers), req.Clients...) {
				addr := fmt.Sprintf("192.0.2.%d", n[0]-'a'+1)
				role := "client"
				if i < len(req.Servers) {
					role = "server"
					st.Peers = append(st.Peers, addr+":8300")
				}
				st.Members = append(st.Members, activities.ConsulMember{Name: n, Addr: addr, Role: role, Status: "alive"})
			}
			return st, nil
		})
}

var consulSequence = []string{"InstallConsul", "ConfigureConsul", "StartConsul", "VerifyConsul"}

func newConsulEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *fakeConsul) {
	t.Helper()
	env := newEnv(t)
	env.RegisterActivity(consulActs)
	f := newFakeConsul()
	f.register(env)
	return env, f
}

func consulResult(t *testing.T, env *testsuite.TestWorkflowEnvironment) ConsulBootstrapResult {
	t.Helper()
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow did not complete: %v", env.GetWorkflowError())
	}
	var res ConsulBootstrapResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

func consulProgress(t *testing.T, env *testsuite.TestWorkflowEnvironment) ConsulBootstrapProgress {
	t.Helper()
	v, err := env.QueryWorkflow(ProgressQuery)
	if err != nil {
		t.Fatal(err)
	}
	var p ConsulBootstrapProgress
	if err := v.Get(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConsulBootstrapRunsEveryPhaseInOrder(t *testing.T) {
	env, f := newConsulEnv(t)
	env.ExecuteWorkflow(ConsulBootstrap, consulInput("a", "b", "c"))
	res := consulResult(t, env)

	if f.keyCalls != 1 {
		t.Errorf("EnsureGossipKey ran %d times", f.keyCalls)
	}
	for _, h := range []string{"a", "b", "c"} {
		if got := f.callsOf(h); !slices.Equal(got, consulSequence) {
			t.Errorf("host %s: calls %v", h, got)
		}
		c := f.configs[h]
		if !c.Server || c.BootstrapExpect != 3 || !slices.Equal(c.RetryJoin, []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}) ||
			c.Datacenter != "dc1" || c.KeyID != "sha256:0123456789abcdef" || c.GossipKeyFile != "/home/op/.config/clusterflow/consul-gossip.key" {
			t.Errorf("config of %s: %+v", h, c)
		}
		if s := f.starts[h]; !s.Restart || s.Binary != "/usr/local/bin/consul" {
			t.Errorf("start of %s: %+v (installed and configured: a running agent must restart)", h, s)
		}
		if v := f.verifies[h]; !slices.Equal(v.Servers, []string{"a", "b", "c"}) || len(v.Clients) != 0 {
			t.Errorf("verify of %s: %+v", h, v)
		}
	}
	for i, o := range res.Hosts {
		if o.Host != string(rune('a'+i)) || o.State != HostChanged {
			t.Errorf("outcome %+v", o)
		}
		for _, want := range []string{"installed consul 1.22.7 (file)", "/etc/consul.d/clusterflow.json written (server, bootstrap_expect 3, bind 192.0.2.",
			"agent started (clusterflow-service)", "leader 192.0.2.1:8300, 3 peers, 3 members alive"} {
			if !strings.Contains(o.Message, want) {
				t.Errorf("%s: message %q lacks %q", o.Host, o.Message, want)
			}
		}
	}
	if res.Leader != "192.0.2.1:8300" || len(res.Peers) != 3 || !slices.Equal(res.Members, []string{"a 192.0.2.1 alive", "b 192.0.2.2 alive", "c 192.0.2.3 alive"}) {
		t.Errorf("cluster %+v", res)
	}
	p := consulProgress(t, env)
	if p.KeyID != "sha256:0123456789abcdef" || p.Source != playbooks.ConsulFromFile {
		t.Errorf("progress %+v", p)
	}
	for _, h := range p.Hosts {
		if h.Phase != ConsulPhaseDone || h.State != HostChanged || h.Role != "server" {
			t.Errorf("progress of %s: %+v", h.Host, h)
		}
	}
	// No activity request carries more than the key's path and ID.
	for _, r := range f.requests {
		if strings.Contains(strings.ToLower(r), `"encrypt"`) || strings.Contains(r, `"key"`) {
			t.Errorf("request with key material? %s", r)
		}
	}
}

func TestConsulBootstrapServersAndClients(t *testing.T) {
	env, f := newConsulEnv(t)
	in := consulInput("a", "b", "c")
	in.Consul.Servers = []string{"a"}
	env.ExecuteWorkflow(ConsulBootstrap, in)
	res := consulResult(t, env)
	if c := f.configs["a"]; !c.Server || c.BootstrapExpect != 1 || !slices.Equal(c.RetryJoin, []string{"192.0.2.1"}) {
		t.Errorf("server config %+v", c)
	}
	for _, h := range []string{"b", "c"} {
		if c := f.configs[h]; c.Server || c.BootstrapExpect != 0 || !slices.Equal(c.RetryJoin, []string{"192.0.2.1"}) {
			t.Errorf("client config of %s: %+v", h, c)
		}
	}
	if v := f.verifies["b"]; !slices.Equal(v.Servers, []string{"a"}) || !slices.Equal(v.Clients, []string{"b", "c"}) {
		t.Errorf("verify %+v", v)
	}
	if !strings.Contains(res.Hosts[1].Message, "written (client, bind 192.0.2.2)") {
		t.Errorf("client message %q", res.Hosts[1].Message)
	}
	if roles := consulProgress(t, env).Hosts; roles[0].Role != "server" || roles[1].Role != "client" {
		t.Errorf("roles %+v", roles)
	}
}

func TestConsulBootstrapSecondRunUnchanged(t *testing.T) {
	env, f := newConsulEnv(t)
	f.installed["a"], f.installed["b"], f.installed["c"] = true, true, true
	env.ExecuteWorkflow(ConsulBootstrap, consulInput("a", "b", "c"))
	res := consulResult(t, env)
	for _, o := range res.Hosts {
		if o.State != HostUnchanged || o.Message != "consul 1.22.7 already installed; leader 192.0.2.1:8300, 3 peers, 3 members alive" {
			t.Errorf("outcome %+v", o)
		}
		if f.starts[o.Host].Restart {
			t.Errorf("%s: restart asked for without a change", o.Host)
		}
	}
}

func TestConsulBootstrapFailingHostStopsOnlyItself(t *testing.T) {
	env, f := newConsulEnv(t)
	f.fail["b:ConfigureConsul"] = temporal.NewNonRetryableApplicationError("host b (192.0.2.2:22): chown failed", activities.ErrRemoteFailed, nil)
	f.fail["d:InstallConsul"] = temporal.NewNonRetryableApplicationError("host d (192.0.2.4:22): /usr/local/bin/consul does not run on the host", activities.ErrRemoteFailed, nil)
	in := consulInput("a", "b", "c", "d")
	in.Consul.Servers = []string{"a", "b", "c"}
	in.Parallel = 2
	env.ExecuteWorkflow(ConsulBootstrap, in)
	res := consulResult(t, env) // failed hosts are a result, not an error

	if got := f.callsOf("b"); !slices.Equal(got, consulSequence[:2]) {
		t.Errorf("b went on after ConfigureConsul failed: %v", got)
	}
	if got := f.callsOf("d"); !slices.Equal(got, consulSequence[:1]) {
		t.Errorf("d went on after InstallConsul failed: %v", got)
	}
	// The servers that run are expected; b, which never started, is not.
	if v := f.verifies["a"]; !slices.Equal(v.Servers, []string{"a", "c"}) || len(v.Clients) != 0 {
		t.Errorf("verify %+v", v)
	}
	// Servers still expect the three servers of the step: bootstrap_expect does not
	// shrink because one failed (the cluster would split otherwise).
	if c := f.configs["c"]; c.BootstrapExpect != 3 {
		t.Errorf("bootstrap_expect %d", c.BootstrapExpect)
	}
	want := map[string]string{"a": HostChanged, "b": HostFailed, "c": HostChanged, "d": HostFailed}
	for _, o := range res.Hosts {
		if o.State != want[o.Host] {
			t.Errorf("%s: %+v", o.Host, o)
		}
	}
	if m := res.Hosts[1].Message; !strings.HasPrefix(m, "configure: ") || !strings.Contains(m, "chown failed") {
		t.Errorf("b: %q", m)
	}
	if m := res.Hosts[3].Message; !strings.HasPrefix(m, "install: ") {
		t.Errorf("d: %q", m)
	}
	p := consulProgress(t, env)
	if p.Hosts[1].Phase != ConsulPhaseConfigure || p.Hosts[3].Phase != ConsulPhaseInstall || p.Hosts[0].Phase != ConsulPhaseDone {
		t.Errorf("progress %+v", p.Hosts)
	}
}

func TestConsulBootstrapVerifyFailure(t *testing.T) {
	env, f := newConsulEnv(t)
	f.fail["c:VerifyConsul"] = temporal.NewApplicationError("host c (192.0.2.3:22): the cluster is not as expected after 2m0s: member b is failed", activities.ErrConsulNotReady)
	env.ExecuteWorkflow(ConsulBootstrap, consulInput("a", "b", "c"))
	res := consulResult(t, env)
	if got := f.callsOf("c"); len(got) != len(consulSequence)+1 {
		t.Errorf("c: VerifyConsul not retried once: %v", got)
	}
	if o := res.Hosts[2]; o.State != HostFailed || !strings.HasPrefix(o.Message, "verify: ") || !strings.Contains(o.Message, "member b is failed") {
		t.Errorf("c: %+v", o)
	}
	if res.Hosts[0].State != HostChanged || res.Leader == "" {
		t.Errorf("a: %+v, leader %q", res.Hosts[0], res.Leader)
	}
}

func TestConsulBootstrapNoServerLeft(t *testing.T) {
	env, f := newConsulEnv(t)
	f.fail["a:StartConsul"] = temporal.NewNonRetryableApplicationError("host a: no systemd", activities.ErrRemoteFailed, nil)
	in := consulInput("a", "b")
	in.Consul.Servers = []string{"a"}
	env.ExecuteWorkflow(ConsulBootstrap, in)
	res := consulResult(t, env)
	if len(f.callsOf("b")) != 3 {
		t.Errorf("b: %v", f.callsOf("b"))
	}
	if o := res.Hosts[1]; o.State != HostFailed || !strings.Contains(o.Message, "verify: no server agent was started") {
		t.Errorf("b: %+v", o)
	}
}

func TestConsulBootstrapGossipKeyFailure(t *testing.T) {
	env, f := newConsulEnv(t)
	f.keyErr = temporal.NewNonRetryableApplicationError("gossip key file /k does not hold a key Consul accepts", activities.ErrInvalidInput, nil)
	env.ExecuteWorkflow(ConsulBootstrap, consulInput("a"))
	var appErr *temporal.ApplicationError
	err := env.GetWorkflowError()
	if !errors.As(err, &appErr) || appErr.Type() != ErrGossipKeyFailed || !strings.Contains(appErr.Message(), "does not hold a key") {
		t.Fatalf("want a %s error, got %v", ErrGossipKeyFailed, err)
	}
	if len(f.calls) != 0 {
		t.Errorf("hosts touched without a key: %v", f.calls)
	}
}

func TestConsulBootstrapRefusesBadInput(t *testing.T) {
	with := func(edit func(*ConsulBootstrapInput)) ConsulBootstrapInput {
		in := consulInput("a", "b")
		edit(&in)
		return in
	}
	cases := map[string]struct {
		in   ConsulBootstrapInput
		want string
	}{
		"no hosts":       {ConsulBootstrapInput{}, "no hosts"},
		"duplicate host": {with(func(in *ConsulBootstrapInput) { in.Hosts[1].Name = "a" }), `host "a" is listed twice`},
		"negative":       {with(func(in *ConsulBootstrapInput) { in.Parallel = -1 }), "parallel must not be negative"},
		"server unknown": {with(func(in *ConsulBootstrapInput) { in.Consul.Servers = []string{"z"} }), `servers must be among the step's hosts; "z" is not`},
		"server twice":   {with(func(in *ConsulBootstrapInput) { in.Consul.Servers = []string{"a", "a"} }), `server "a" is listed twice`},
		"source":         {with(func(in *ConsulBootstrapInput) { in.Consul.Source = "snap" }), `source: unknown source "snap"`},
		"no binary":      {with(func(in *ConsulBootstrapInput) { in.Consul.Binary = "" }), "binary: is required; source: file needs"},
		"relative bin":   {with(func(in *ConsulBootstrapInput) { in.Consul.Binary = "consul" }), "binary: must be an absolute path on the worker"},
		"bad sha256":     {with(func(in *ConsulBootstrapInput) { in.Consul.SHA256 = "ABC" }), "sha256: must be a SHA-256"},
		"url no zip": {with(func(in *ConsulBootstrapInput) {
			in.Consul.Source, in.Consul.Binary = "url", ""
			in.Consul.URL = "ftp://x/c.zip"
		}),
			"url: must be an http or https URL"},
		"apt sha": {with(func(in *ConsulBootstrapInput) { in.Consul.Source, in.Consul.Binary = "apt", "" }), "sha256 is only used with source: file or url"},
		"apt url": {with(func(in *ConsulBootstrapInput) {
			in.Consul.Source, in.Consul.Binary, in.Consul.SHA256, in.Consul.URL = "apt", "", "", "https://u:p@mirror/hc"
		}), "without credentials"},
		"datacenter": {with(func(in *ConsulBootstrapInput) { in.Consul.Datacenter = "DC 1" }), `datacenter: must be lower-case letters, digits, _ and - (at most 63), starting with a letter or digit, got "DC 1"`},
		"key file":   {with(func(in *ConsulBootstrapInput) { in.Consul.GossipKeyFile = "gossip.key" }), `gossipKeyFile: must be an absolute path on the worker, got "gossip.key"`},
		"iface":      {with(func(in *ConsulBootstrapInput) { in.Consul.BindInterface = `eth1" }}` }), "bindInterface: must be a network interface name"},
		"version":    {with(func(in *ConsulBootstrapInput) { in.Consul.Version = "1.22 || true" }), "version: must be a version such as"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			env, f := newConsulEnv(t)
			env.ExecuteWorkflow(ConsulBootstrap, c.in)
			requireInvalidInput(t, env.GetWorkflowError(), c.want)
			if len(f.calls) != 0 || f.keyCalls != 0 {
				t.Fatalf("activities ran on bad input: %v, key %d", f.calls, f.keyCalls)
			}
		})
	}

	// Defaults: every host a server, source file, datacenter dc1.
	in := consulInput("a", "b")
	in.Consul.Source, in.Consul.Datacenter = "", ""
	spec, err := checkConsulBootstrap(in)
	if err != nil || !slices.Equal(spec.Servers, []string{"a", "b"}) || spec.Source != playbooks.ConsulFromFile || spec.Datacenter != "dc1" {
		t.Fatalf("defaults: %+v %v", spec, err)
	}
}
