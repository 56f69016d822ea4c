package activities

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/activities/remote/remotetest"
)

// These tests run StartDockerEngine's and StartConsul's decisions on a fake
// remote: the host's state is what service-state.sh would print, and the test
// checks the commands sent and the result. The scripts themselves run on the lab
// nodes (internal/e2e, -tags lab).

// state is service-state.sh's output.
type state struct {
	manager, path, unit, service string
	enabled, active, stale       bool
}

func (s state) String() string {
	yn := map[bool]string{true: "yes", false: "no"}
	return fmt.Sprintf("manager=%s\npath=%s\nunit=%s\nservice=%s\nenabled=%s\nactive=%s\nstale=%s\n",
		s.manager, s.path, or(s.unit, "none"), or(s.service, "none"), yn[s.enabled], yn[s.active], yn[s.stale])
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// daemonHost is a fake host in state st whose commands all succeed, unless fail
// names one (by the start of its line), which then exits 1.
func daemonHost(t *testing.T, st state, fail string) *remotetest.Fake {
	f := remotetest.New(t)
	ok := func(_ remote.Host, c remote.Cmd) remotetest.Reply {
		if fail != "" && strings.HasPrefix(remotetest.Line(c), fail) {
			return remotetest.Reply{Exit: 1, Stderr: "it failed"}
		}
		return remotetest.Reply{}
	}
	for _, m := range []remotetest.Match{
		remotetest.Argv("systemctl"), remotetest.Argv("service"),
		remotetest.Script("service-start.sh"), remotetest.Script("service-restart.sh"), remotetest.Script("service-wait.sh"),
	} {
		f.OnFunc(m, ok)
	}
	f.On(remotetest.Script("service-log.sh"), remotetest.Reply{Stdout: "log line 1\nlog line 2\n"})
	f.On(remotetest.Script("service-state.sh"), remotetest.Reply{Stdout: st.String()})
	return f
}

// sent is what the fake host was asked, the state and unit scripts by name only.
func sent(f *remotetest.Fake) []string {
	var out []string
	for _, l := range f.Lines() {
		if name, _, _ := strings.Cut(l, " "); name == "service-state.sh" || name == "consul-unit.sh" {
			l = name
		}
		out = append(out, l)
	}
	return out
}

// checkStart checks what a start did and what it sent.
func checkStart(t *testing.T, f *remotetest.Fake, res daemonStarted, err error, want daemonStarted, wantSent []string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	if got := sent(f); !slices.Equal(got, wantSent) {
		t.Errorf("sent\n  %q\nwant\n  %q", got, wantSent)
	}
}

var testHost = remote.Host{Name: "n1", Address: "192.0.2.1", User: "root"}

func TestStartDockerEngineDecisions(t *testing.T) {
	const wait = "service-wait.sh 120 docker /var/run/docker.sock"
	systemd := state{manager: BySystemd, path: "/usr/sbin/dockerd", enabled: true, active: true}
	supervised := state{manager: BySupervisor, path: "/usr/sbin/dockerd", service: "current", enabled: true, active: true}
	sysv := state{manager: BySysv, path: "/usr/sbin/dockerd", enabled: true, active: true}
	with := func(s state, edit func(*state)) state { edit(&s); return s }
	for _, c := range []struct {
		name    string
		st      state
		restart bool
		sent    []string
		res     StartEngineResult
	}{
		{"systemd running", systemd, false,
			[]string{"service-state.sh", wait}, StartEngineResult{Manager: BySystemd}},
		{"systemd neither enabled nor running", with(systemd, func(s *state) { s.enabled, s.active = false, false }), false,
			[]string{"service-state.sh", "systemctl enable docker", "systemctl start docker", wait},
			StartEngineResult{Changed: true, Manager: BySystemd, Action: "started"}},
		{"systemd running, not enabled", with(systemd, func(s *state) { s.enabled = false }), false,
			[]string{"service-state.sh", "systemctl enable docker", wait},
			StartEngineResult{Changed: true, Manager: BySystemd, Action: "enabled"}},
		{"systemd stale", with(systemd, func(s *state) { s.stale = true }), false,
			[]string{"service-state.sh", "systemctl restart docker", wait},
			StartEngineResult{Changed: true, Manager: BySystemd, Action: "restarted"}},
		{"systemd restart asked", systemd, true,
			[]string{"service-state.sh", "systemctl restart docker", wait},
			StartEngineResult{Changed: true, Manager: BySystemd, Action: "restarted"}},
		{"systemd not running, restart asked: a start does", with(systemd, func(s *state) { s.active = false }), true,
			[]string{"service-state.sh", "systemctl start docker", wait},
			StartEngineResult{Changed: true, Manager: BySystemd, Action: "started"}},
		{"supervised running", supervised, false,
			[]string{"service-state.sh", wait}, StartEngineResult{Manager: BySupervisor}},
		{"supervised, no service file", with(supervised, func(s *state) { s.service, s.enabled, s.active = "none", false, false }), false,
			[]string{"service-state.sh", "service-start.sh dockerd /usr/sbin/dockerd", wait},
			StartEngineResult{Changed: true, Manager: BySupervisor, Action: "started"}},
		{"supervised, file there, not running yet: wait", with(supervised, func(s *state) { s.active = false }), false,
			[]string{"service-state.sh", wait}, StartEngineResult{Manager: BySupervisor, Action: "waited"}},
		{"supervised stale", with(supervised, func(s *state) { s.stale = true }), false,
			[]string{"service-state.sh", "service-restart.sh dockerd", wait},
			StartEngineResult{Changed: true, Manager: BySupervisor, Action: "restarted"}},
		{"sysv running", sysv, false, []string{"service-state.sh", wait}, StartEngineResult{Manager: BySysv}},
		{"sysv stopped", with(sysv, func(s *state) { s.active = false }), false,
			[]string{"service-state.sh", "service docker start", wait},
			StartEngineResult{Changed: true, Manager: BySysv, Action: "started"}},
		{"sysv restart asked", sysv, true,
			[]string{"service-state.sh", "service docker restart", wait},
			StartEngineResult{Changed: true, Manager: BySysv, Action: "restarted"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := daemonHost(t, c.st, "")
			res, err := NewDocker(f).StartDockerEngine(context.Background(), StartEngineRequest{Host: testHost, Restart: c.restart})
			checkStart(t, f, daemonStarted(res), err, daemonStarted(c.res), c.sent)
		})
	}

	// What the state script is told: the engine's names, its pid file, its program,
	// and daemon.json as what makes a running engine stale.
	f := daemonHost(t, systemd, "")
	if _, err := NewDocker(f).StartDockerEngine(context.Background(), StartEngineRequest{Host: testHost}); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Calls()[0].Cmd.Argv[4:], []string{"docker", "dockerd", "yes", "/var/run/docker.pid", "", "", "dockerd", "/etc/docker/daemon.json"}; !slices.Equal(got, want) {
		t.Errorf("state script arguments %q, want %q", got, want)
	}
}

func TestStartDockerEngineFailures(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name, fail string
		st         state
		typ        string
		retryable  bool
		msg        string
	}{
		{"no manager", "", state{manager: "none", path: "/usr/sbin/dockerd"}, ErrRemoteFailed, false, "no systemd, no clusterflow node supervisor"},
		{"no dockerd", "", state{manager: BySystemd}, ErrRemoteFailed, false, "dockerd is not installed"},
		{"start fails", "systemctl start", state{manager: BySystemd, path: "/usr/sbin/dockerd", enabled: true}, ErrEngineNotReady, true,
			"systemctl start docker failed (exit 1): it failed; engine log: log line 1 | log line 2"},
		{"never answers", "service-wait.sh", state{manager: BySupervisor, path: "/usr/sbin/dockerd", service: "current", enabled: true, active: true},
			ErrEngineNotReady, true, "the engine (clusterflow-service) did not answer on /var/run/docker.sock within 60 s; engine log: log line 1"},
		{"supervisor refuses", "service-start.sh", state{manager: BySupervisor, path: "/usr/sbin/dockerd"}, ErrEngineNotReady, true,
			"service-start.sh dockerd /usr/sbin/dockerd failed (exit 1)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewDocker(daemonHost(t, c.st, c.fail)).StartDockerEngine(ctx, StartEngineRequest{Host: testHost})
			if msg := requireAppErr(t, err, c.typ, c.retryable).Message(); !strings.Contains(msg, c.msg) || !strings.HasPrefix(msg, "host n1 (192.0.2.1:22): ") {
				t.Errorf("message %q, want it to contain %q", msg, c.msg)
			}
		})
	}
}

func TestStartConsulDecisions(t *testing.T) {
	const bin = "/usr/local/bin/consul"
	const wait = "service-wait.sh 120 consul " + bin + " 127.0.0.1:8500"
	systemd := state{manager: BySystemd, path: bin, unit: "ours", enabled: true, active: true}
	packaged := state{manager: BySystemd, path: bin, unit: "packaged", enabled: true, active: true}
	supervised := state{manager: BySupervisor, path: bin, service: "current", enabled: true, active: true}
	with := func(s state, edit func(*state)) state { edit(&s); return s }
	for _, c := range []struct {
		name        string
		st          state
		unitChanged bool
		restart     bool
		sent        []string
		res         StartConsulResult
	}{
		{"systemd, our unit as it is, running", systemd, false, false,
			[]string{"service-state.sh", "consul-unit.sh", wait}, StartConsulResult{Manager: BySystemd}},
		{"systemd, packaged unit: not written", packaged, false, false,
			[]string{"service-state.sh", wait}, StartConsulResult{Manager: BySystemd}},
		{"systemd, no unit yet, nothing running", with(systemd, func(s *state) { s.unit, s.enabled, s.active = "none", false, false }), true, false,
			[]string{"service-state.sh", "consul-unit.sh", "systemctl enable consul", "systemctl start consul", wait},
			StartConsulResult{Changed: true, Manager: BySystemd, Action: "started"}},
		{"systemd, unit changed under a running agent", systemd, true, false,
			[]string{"service-state.sh", "consul-unit.sh", "systemctl restart consul", wait},
			StartConsulResult{Changed: true, Manager: BySystemd, Action: "restarted"}},
		{"systemd, unit changed, agent stopped and enabled", with(systemd, func(s *state) { s.active = false }), true, false,
			[]string{"service-state.sh", "consul-unit.sh", "systemctl start consul", wait},
			StartConsulResult{Changed: true, Manager: BySystemd, Action: "started"}},
		{"systemd, configuration newer than the agent", with(packaged, func(s *state) { s.stale = true }), false, false,
			[]string{"service-state.sh", "systemctl restart consul", wait},
			StartConsulResult{Changed: true, Manager: BySystemd, Action: "restarted"}},
		{"systemd, restart asked", packaged, false, true,
			[]string{"service-state.sh", "systemctl restart consul", wait},
			StartConsulResult{Changed: true, Manager: BySystemd, Action: "restarted"}},
		{"supervised running", supervised, false, false,
			[]string{"service-state.sh", wait}, StartConsulResult{Manager: BySupervisor}},
		{"supervised, no service file", with(supervised, func(s *state) { s.service, s.enabled, s.active = "none", false, false }), false, false,
			[]string{"service-state.sh", "service-start.sh consul " + bin + " agent -config-dir=/etc/consul.d", wait},
			StartConsulResult{Changed: true, Manager: BySupervisor, Action: "started"}},
		{"supervised, the file runs another agent, which still runs", with(supervised, func(s *state) { s.service, s.enabled = "other", false }), false, false,
			[]string{"service-state.sh", "service-start.sh consul " + bin + " agent -config-dir=/etc/consul.d", "service-restart.sh consul", wait},
			StartConsulResult{Changed: true, Manager: BySupervisor, Action: "restarted"}},
		{"supervised, not running yet: wait", with(supervised, func(s *state) { s.active = false }), false, false,
			[]string{"service-state.sh", wait}, StartConsulResult{Manager: BySupervisor, Action: "waited"}},
		{"supervised stale", with(supervised, func(s *state) { s.stale = true }), false, false,
			[]string{"service-state.sh", "service-restart.sh consul", wait},
			StartConsulResult{Changed: true, Manager: BySupervisor, Action: "restarted"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := daemonHost(t, c.st, "")
			out := ""
			if c.unitChanged {
				out = "changed\n"
			}
			f.On(remotetest.Script("consul-unit.sh"), remotetest.Reply{Stdout: out})
			res, err := NewConsul(f).StartConsul(context.Background(), StartConsulRequest{Host: testHost, Binary: bin, Restart: c.restart})
			checkStart(t, f, daemonStarted(res), err, daemonStarted(c.res), c.sent)
		})
	}

	// The state script knows the agent by its command line and its unit file; the
	// configuration and the binary make a running agent stale.
	f := daemonHost(t, packaged, "")
	if _, err := NewConsul(f).StartConsul(context.Background(), StartConsulRequest{Host: testHost, Binary: bin}); err != nil {
		t.Fatal(err)
	}
	want := []string{"consul", "consul", "no", "", "/etc/systemd/system/consul.service", bin + " agent -config-dir=/etc/consul.d", bin,
		"/etc/consul.d/clusterflow.json", bin}
	if got := f.Calls()[0].Cmd.Argv[4:]; !slices.Equal(got, want) {
		t.Errorf("state script arguments %q, want %q", got, want)
	}
}

func TestStartConsulFailures(t *testing.T) {
	ctx := context.Background()
	f := remotetest.New(t) // no rules: nothing may be sent
	_, err := NewConsul(f).StartConsul(ctx, StartConsulRequest{Host: testHost, Binary: "consul; reboot"})
	requireAppErr(t, err, ErrInvalidInput, false)
	if len(f.Calls()) != 0 {
		t.Errorf("sent %q for a bad binary path", f.Lines())
	}

	_, err = NewConsul(daemonHost(t, state{manager: "none", path: "/usr/bin/consul"}, "")).StartConsul(ctx, StartConsulRequest{Host: testHost, Binary: "/usr/bin/consul"})
	requireAppErr(t, err, ErrRemoteFailed, false)

	f = daemonHost(t, state{manager: BySystemd, path: "/usr/bin/consul", unit: "packaged", enabled: true, active: true}, "service-wait.sh")
	_, err = NewConsul(f).StartConsul(ctx, StartConsulRequest{Host: testHost, Binary: "/usr/bin/consul"})
	msg := requireAppErr(t, err, ErrConsulNotReady, true).Message()
	if !strings.Contains(msg, "the agent (systemd) did not answer on 127.0.0.1:8500 within 60 s; agent log: log line 1 | log line 2") {
		t.Errorf("message %q", msg)
	}
}
