package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// These tests check InstallDocker's logic with faked activities. The activities
// themselves run on real lab nodes in internal/e2e (-tags lab).

func dockerHosts(names ...string) []remote.Host {
	var hosts []remote.Host
	for _, n := range names {
		hosts = append(hosts, remote.Host{Name: n, Address: "127.0.0.1", Port: 22, User: "root"})
	}
	return hosts
}

// fakeDocker fakes the six Docker activities and logs every call as "host:activity".
// fail maps "host:activity" to the error that call returns; installed lists hosts
// that already have everything (every activity reports no change there).
type fakeDocker struct {
	mu        sync.Mutex
	calls     []string
	fail      map[string]error
	failOnce  map[string]error // like fail, for the first call only
	installed map[string]bool
	restart   map[string]bool // StartDockerEngine's Restart, per host
}

func newFakeDocker() *fakeDocker {
	return &fakeDocker{fail: map[string]error{}, failOnce: map[string]error{}, installed: map[string]bool{}, restart: map[string]bool{}}
}

func (f *fakeDocker) record(h remote.Host, act string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := h.Name + ":" + act
	f.calls = append(f.calls, key)
	if err, ok := f.failOnce[key]; ok {
		delete(f.failOnce, key)
		return err
	}
	return f.fail[key]
}

func (f *fakeDocker) callsOf(host string) []string {
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

func (f *fakeDocker) register(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(dockerActs.DetectOS, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.DockerHostRequest) (activities.OSInfo, error) {
			if err := f.record(req.Host, "DetectOS"); err != nil {
				return activities.OSInfo{}, err
			}
			return activities.OSInfo{ID: "debian", Family: "debian", Codename: "bookworm", Arch: "amd64", Name: "Debian 12"}, nil
		})
	env.OnActivity(dockerActs.InstallDockerPackages, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.PackagesRequest) (activities.PackagesResult, error) {
			if err := f.record(req.Host, "InstallDockerPackages"); err != nil {
				return activities.PackagesResult{}, err
			}
			if req.OS.Codename != "bookworm" {
				return activities.PackagesResult{}, errors.New("OS info not passed on")
			}
			pkgs := []activities.PackageVersion{{Name: "docker.io", Version: "20.10.24+dfsg1-1+deb12u1+b6"}}
			if f.installed[req.Host.Name] {
				return activities.PackagesResult{Installed: pkgs, Message: "docker.io 20.10.24+dfsg1-1+deb12u1+b6 already installed"}, nil
			}
			return activities.PackagesResult{Changed: true, Installed: pkgs, Message: "installed docker.io 20.10.24+dfsg1-1+deb12u1+b6 (" + req.Source + ")"}, nil
		})
	env.OnActivity(dockerActs.ConfigureDockerDaemon, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.DaemonConfigRequest) (activities.DaemonConfigResult, error) {
			if err := f.record(req.Host, "ConfigureDockerDaemon"); err != nil {
				return activities.DaemonConfigResult{}, err
			}
			if f.installed[req.Host.Name] || len(req.Config) == 0 {
				return activities.DaemonConfigResult{Path: "/etc/docker/daemon.json"}, nil
			}
			return activities.DaemonConfigResult{Changed: true, Keys: []string{"log-driver"}, Path: "/etc/docker/daemon.json"}, nil
		})
	env.OnActivity(dockerActs.AddDockerUsers, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.DockerUsersRequest) (activities.DockerUsersResult, error) {
			if err := f.record(req.Host, "AddDockerUsers"); err != nil {
				return activities.DockerUsersResult{}, err
			}
			if f.installed[req.Host.Name] || len(req.Users) == 0 {
				return activities.DockerUsersResult{}, nil
			}
			return activities.DockerUsersResult{Changed: true, Added: req.Users}, nil
		})
	env.OnActivity(dockerActs.StartDockerEngine, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.StartEngineRequest) (activities.StartEngineResult, error) {
			if err := f.record(req.Host, "StartDockerEngine"); err != nil {
				return activities.StartEngineResult{}, err
			}
			f.mu.Lock()
			f.restart[req.Host.Name] = req.Restart
			f.mu.Unlock()
			if f.installed[req.Host.Name] {
				return activities.StartEngineResult{Manager: activities.EngineBySupervisor}, nil
			}
			return activities.StartEngineResult{Changed: true, Manager: activities.EngineBySupervisor, Action: "started"}, nil
		})
	env.OnActivity(dockerActs.VerifyDockerEngine, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.DockerHostRequest) (activities.EngineVersion, error) {
			if err := f.record(req.Host, "VerifyDockerEngine"); err != nil {
				return activities.EngineVersion{}, err
			}
			return activities.EngineVersion{Version: "20.10.24+dfsg1", APIVersion: "1.41"}, nil
		})
}

var dockerSequence = []string{"DetectOS", "InstallDockerPackages", "ConfigureDockerDaemon", "AddDockerUsers", "StartDockerEngine", "VerifyDockerEngine"}

func newDockerEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *fakeDocker) {
	t.Helper()
	env := newEnv(t)
	env.RegisterActivity(dockerActs)
	f := newFakeDocker()
	f.register(env)
	return env, f
}

func dockerResult(t *testing.T, env *testsuite.TestWorkflowEnvironment) InstallDockerResult {
	t.Helper()
	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow did not complete: %v", env.GetWorkflowError())
	}
	var res InstallDockerResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestInstallDockerRunsEveryPhaseInOrder(t *testing.T) {
	env, f := newDockerEnv(t)
	in := InstallDockerInput{
		Hosts: dockerHosts("a", "b", "c"),
		Docker: playbooks.InstallDockerStep{
			DaemonConfig: map[string]any{"log-driver": "local"}, Users: []string{"alice"},
		},
	}
	env.ExecuteWorkflow(InstallDocker, in)
	res := dockerResult(t, env)

	for _, h := range []string{"a", "b", "c"} {
		if got := f.callsOf(h); strings.Join(got, ",") != strings.Join(dockerSequence, ",") {
			t.Errorf("host %s: calls %v", h, got)
		}
		if !f.restart[h] {
			t.Errorf("host %s: daemon.json changed but no restart asked for", h)
		}
	}
	if len(res.Hosts) != 3 || len(res.Engines) != 3 {
		t.Fatalf("result %+v", res)
	}
	for i, o := range res.Hosts {
		if o.Host != in.Hosts[i].Name || o.State != HostChanged {
			t.Errorf("outcome %+v", o)
		}
		for _, want := range []string{"installed docker.io 20.10.24+dfsg1-1+deb12u1+b6 (distro)", "/etc/docker/daemon.json: set log-driver",
			"docker group: added alice", "engine started (clusterflow-service)", "engine 20.10.24+dfsg1 answers over SSH (API 1.41)"} {
			if !strings.Contains(o.Message, want) {
				t.Errorf("%s: message %q lacks %q", o.Host, o.Message, want)
			}
		}
	}
	if e := res.Engines[1]; e.Host != "b" || e.Version != "20.10.24+dfsg1" || e.APIVersion != "1.41" {
		t.Errorf("engine %+v", e)
	}
}

func TestInstallDockerSecondRunUnchanged(t *testing.T) {
	env, f := newDockerEnv(t)
	f.installed["a"], f.installed["b"] = true, true
	env.ExecuteWorkflow(InstallDocker, InstallDockerInput{Hosts: dockerHosts("a", "b"),
		Docker: playbooks.InstallDockerStep{DaemonConfig: map[string]any{"log-driver": "local"}}})
	res := dockerResult(t, env)
	for _, o := range res.Hosts {
		if o.State != HostUnchanged || !strings.Contains(o.Message, "already installed") {
			t.Errorf("outcome %+v", o)
		}
		if f.restart[o.Host] {
			t.Errorf("%s: restart asked for without a change", o.Host)
		}
	}
	if len(res.Engines) != 2 {
		t.Errorf("engines %+v", res.Engines)
	}
}

func TestInstallDockerFailingHostStopsOnlyItself(t *testing.T) {
	env, f := newDockerEnv(t)
	f.fail["b:DetectOS"] = temporal.NewNonRetryableApplicationError(
		`host b (127.0.0.1:22): unsupported operating system "Fedora Linux 40" (ID=fedora)`, activities.ErrUnsupportedOS, nil)
	f.fail["c:InstallDockerPackages"] = temporal.NewNonRetryableApplicationError(
		"host c (127.0.0.1:22): docker.io version 1.0 is not available", activities.ErrPackageUnavailable, nil)
	env.ExecuteWorkflow(InstallDocker, InstallDockerInput{Hosts: dockerHosts("a", "b", "c", "d"), Parallel: 2})
	res := dockerResult(t, env) // failed hosts are a result, not an error

	if got := f.callsOf("b"); len(got) != 1 {
		t.Errorf("b went on after DetectOS failed: %v", got)
	}
	if got := f.callsOf("c"); len(got) != 2 {
		t.Errorf("c went on after InstallDockerPackages failed: %v", got)
	}
	for _, h := range []string{"a", "d"} {
		if got := f.callsOf(h); len(got) != len(dockerSequence) {
			t.Errorf("%s: calls %v", h, got)
		}
	}
	states := map[string]HostOutcome{}
	for _, o := range res.Hosts {
		states[o.Host] = o
	}
	if o := states["b"]; o.State != HostFailed || !strings.HasPrefix(o.Message, "detect-os: ") || !strings.Contains(o.Message, "Fedora") {
		t.Errorf("b: %+v", o)
	}
	if o := states["c"]; o.State != HostFailed || !strings.HasPrefix(o.Message, "packages: ") {
		t.Errorf("c: %+v", o)
	}
	if states["a"].State != HostChanged || states["d"].State != HostChanged {
		t.Errorf("a, d: %+v %+v", states["a"], states["d"])
	}
	if len(res.Engines) != 2 || res.Engines[0].Host != "a" || res.Engines[1].Host != "d" {
		t.Errorf("engines %+v", res.Engines)
	}

	// The progress query tells where each host stopped.
	v, err := env.QueryWorkflow(ProgressQuery)
	if err != nil {
		t.Fatal(err)
	}
	var p InstallDockerProgress
	if err := v.Get(&p); err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		"a": {DockerPhaseDone, HostChanged}, "b": {DockerPhaseDetectOS, HostFailed},
		"c": {DockerPhasePackages, HostFailed}, "d": {DockerPhaseDone, HostChanged},
	}
	for _, h := range p.Hosts {
		if w := want[h.Host]; h.Phase != w[0] || h.State != w[1] {
			t.Errorf("progress of %s: %s/%s, want %s/%s", h.Host, h.Phase, h.State, w[0], w[1])
		}
	}
	if p.Source != playbooks.DockerFromDistro {
		t.Errorf("progress source %q", p.Source)
	}
}

func TestInstallDockerRetriesRetryableErrors(t *testing.T) {
	env, f := newDockerEnv(t)
	f.failOnce["a:InstallDockerPackages"] = temporal.NewApplicationError("dpkg lock held", activities.ErrPackageManagerBusy)
	env.ExecuteWorkflow(InstallDocker, InstallDockerInput{Hosts: dockerHosts("a")})
	res := dockerResult(t, env)
	if got := f.callsOf("a"); len(got) != len(dockerSequence)+1 || got[1] != "InstallDockerPackages" || got[2] != "InstallDockerPackages" {
		t.Fatalf("calls %v", got)
	}
	if res.Hosts[0].State != HostChanged {
		t.Fatalf("outcome %+v", res.Hosts[0])
	}
}

func TestInstallDockerParallelBound(t *testing.T) {
	env, f := newDockerEnv(t)
	env.ExecuteWorkflow(InstallDocker, InstallDockerInput{Hosts: dockerHosts("a", "b", "c"), Parallel: 1})
	dockerResult(t, env)
	// One host at a time: each host's calls form one unbroken run, in input order.
	f.mu.Lock()
	defer f.mu.Unlock()
	var order []string
	for _, c := range f.calls {
		h, _, _ := strings.Cut(c, ":")
		if len(order) == 0 || order[len(order)-1] != h {
			order = append(order, h)
		}
	}
	if strings.Join(order, "") != "abc" {
		t.Fatalf("hosts interleaved with parallel 1: %v", f.calls)
	}
}

func TestInstallDockerRefusesBadInput(t *testing.T) {
	hosts := dockerHosts("a", "b")
	cases := map[string]struct {
		in   InstallDockerInput
		want string
	}{
		"no hosts":        {InstallDockerInput{}, "no hosts"},
		"duplicate host":  {InstallDockerInput{Hosts: dockerHosts("a", "a")}, `host "a" is listed twice`},
		"unknown source":  {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Source: "snap"}}, `source: unknown source "snap"`},
		"offline no dir":  {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Source: "offline"}}, "packages: is required; source: offline needs"},
		"offline rel dir": {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Source: "offline", Packages: "debs"}}, "must be an absolute path"},
		"packages distro": {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Packages: "/debs"}}, "packages is only used with source"},
		"mirror scheme":   {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Source: "docker-repo", Mirror: "ftp://mirror/linux"}}, "must be an http or https URL"},
		"mirror no host":  {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Source: "docker-repo", Mirror: "https:///linux"}}, "must be an http or https URL"},
		"mirror creds":    {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Source: "docker-repo", Mirror: "https://u:p@mirror/linux"}}, "without credentials"},
		"mirror distro":   {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Mirror: "https://mirror/linux"}}, "mirror is only used with source"},
		"version":         {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Version: "20.10 || true"}}, "version: must be a Debian package version"},
		"user":            {InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{Users: []string{"-rf"}}}, `users[0]: must be a user name`},
		"negative":        {InstallDockerInput{Hosts: hosts, Parallel: -1}, "parallel must not be negative"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			env, f := newDockerEnv(t)
			env.ExecuteWorkflow(InstallDocker, c.in)
			requireInvalidInput(t, env.GetWorkflowError(), c.want)
			if len(f.calls) != 0 {
				t.Fatalf("activities ran on bad input: %v", f.calls)
			}
		})
	}

	// A good docker-repo mirror is accepted, without its trailing slash.
	spec, err := checkInstallDocker(InstallDockerInput{Hosts: hosts, Docker: playbooks.InstallDockerStep{
		Source: "docker-repo", Mirror: "http://10.0.0.5:8081/repository/docker/linux/", Version: "5:27.3.1-1~debian.12~bookworm"}})
	if err != nil || spec.Mirror != "http://10.0.0.5:8081/repository/docker/linux" {
		t.Fatalf("mirror: %q %v", spec.Mirror, err)
	}
	if spec, err := checkInstallDocker(InstallDockerInput{Hosts: hosts}); err != nil || spec.Source != playbooks.DockerFromDistro {
		t.Fatalf("default source: %q %v", spec.Source, err)
	}
}

// TestInstallDockerProgressWhileRunning queries the run while one host waits for
// the retry of a busy package manager and the other is done.
func TestInstallDockerProgressWhileRunning(t *testing.T) {
	env, f := newDockerEnv(t)
	f.failOnce["b:InstallDockerPackages"] = temporal.NewApplicationError("dpkg lock held", activities.ErrPackageManagerBusy)
	var mid InstallDockerProgress
	var queryErr error
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(ProgressQuery)
		if err == nil {
			err = v.Get(&mid)
		}
		queryErr = err
	}, time.Second) // the retry comes 2 s after the failure
	env.ExecuteWorkflow(InstallDocker, InstallDockerInput{Hosts: dockerHosts("a", "b")})
	dockerResult(t, env)
	if queryErr != nil {
		t.Fatal(queryErr)
	}
	if len(mid.Hosts) != 2 {
		t.Fatalf("progress %+v", mid)
	}
	if a := mid.Hosts[0]; a.Phase != DockerPhaseDone || a.State != HostChanged {
		t.Errorf("a mid-run: %+v", a)
	}
	if b := mid.Hosts[1]; b.Phase != DockerPhasePackages || b.State != HostRunning {
		t.Errorf("b mid-run: %+v", b)
	}
}
