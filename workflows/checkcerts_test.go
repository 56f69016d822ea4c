package workflows

import (
	"context"
	"errors"
	"fmt"
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

// These tests check RotateCA's and CheckCertificates' logic against a fake swarm
// CA. The activities run against real engines in internal/e2e (-tags lab).

// caHosts are hosts with addresses of their own (nodes are matched by address).
func caHosts(names ...string) []remote.Host {
	var hosts []remote.Host
	for i, n := range names {
		hosts = append(hosts, remote.Host{Name: n, Address: fmt.Sprintf("10.0.0.%d", i+1), Port: 22, User: "root"})
	}
	return hosts
}

// fakeCA is a swarm whose rotation moves one step per watch.
type fakeCA struct {
	mu       sync.Mutex
	hosts    []remote.Host
	root     string
	force    uint64
	rotating bool
	// certs, roots: how many nodes (in host order) have the new certificate and root.
	certs, roots int
	down         map[string]bool // host -> node down (never converges)
	calls        []string
	starts       []activities.StartCARotationRequest
	// notAfter is each host's certificate expiry, before and after a rotation.
	notAfter map[string]time.Time
	renewed  time.Time
}

func newFakeCA(hosts []remote.Host) *fakeCA {
	return &fakeCA{hosts: hosts, root: "aaaaaaaaaaaaaaaa", certs: len(hosts), roots: len(hosts),
		down: map[string]bool{}, notAfter: map[string]time.Time{}}
}

func (f *fakeCA) status() activities.CAStatus {
	st := activities.CAStatus{RootFingerprint: f.root, InProgress: f.rotating, ForceRotate: f.force,
		RootNotAfter: time.Date(2045, 1, 1, 0, 0, 0, 0, time.UTC), Nodes: []activities.CANode{}}
	for i, h := range f.hosts {
		n := activities.CANode{ID: "id-" + h.Name, Hostname: h.Name, Addr: h.Address, Role: "manager", State: "ready",
			CertOK: i < f.certs, RootOK: i < f.roots}
		if f.down[h.Name] {
			n.State, n.CertOK, n.RootOK = "down", false, false
		}
		if n.CertOK {
			st.Certs++
		}
		if n.RootOK {
			st.Roots++
		}
		st.Nodes = append(st.Nodes, n)
	}
	return st
}

// step advances a rotation as swarm does: certificates from the new key first
// (the old root still trusted), then the root switches and nodes trust it.
func (f *fakeCA) step() {
	live := len(f.hosts) - len(f.down)
	switch {
	case f.rotating && f.certs < live:
		f.certs++
	case f.rotating && len(f.down) == 0:
		f.rotating, f.root, f.roots = false, "bbbbbbbbbbbbbbbb", 0
	case !f.rotating && f.roots < live:
		f.roots++
	}
}

func (f *fakeCA) register(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(swarmActs.FindManager, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.FindManagerRequest) (string, error) {
			return r.Candidates[0].Name, nil
		})
	env.OnActivity(swarmActs.InspectSwarmCA, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ activities.SwarmManagerRequest) (activities.CAStatus, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.calls = append(f.calls, "InspectSwarmCA")
			return f.status(), nil
		})
	env.OnActivity(swarmActs.StartCARotation, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.StartCARotationRequest) (activities.CARotationStart, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.calls = append(f.calls, "StartCARotation")
			f.starts = append(f.starts, r)
			if f.rotating || f.force > r.ForceRotate {
				return activities.CARotationStart{Message: "started already", Status: f.status()}, nil
			}
			f.rotating, f.force, f.certs = true, r.ForceRotate+1, 0
			return activities.CARotationStart{Started: true, Message: "started", Status: f.status()}, nil
		})
	env.OnActivity(swarmActs.WatchCARotation, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.WatchCARotationRequest) (activities.CAStatus, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.calls = append(f.calls, "WatchCARotation")
			f.step()
			return f.status(), nil
		}).After(5 * time.Second)
	env.OnActivity(swarmActs.ReadNodeCertificate, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.SwarmHostRequest) (activities.NodeCertificate, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			na := f.notAfter[r.Host.Name]
			if f.root != "aaaaaaaaaaaaaaaa" {
				na = f.renewed
			}
			return activities.NodeCertificate{Host: r.Host.Name, NodeID: "id-" + r.Host.Name, Role: "swarm-manager",
				NotAfter: na, Root: f.root}, nil
		})
}

func (f *fakeCA) count(call string) int {
	n := 0
	for _, c := range f.calls {
		if c == call {
			n++
		}
	}
	return n
}

func TestRotateCAStartsAndFollowsToTheEnd(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f := newFakeCA(caHosts("m1", "m2", "m3"))
	f.force = 4
	f.register(env)
	// Halfway through, the progress query answers with the counts.
	var mid *RotateCAProgress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(ProgressQuery)
		if err != nil {
			t.Errorf("query: %v", err)
			return
		}
		_ = v.Get(&mid)
	}, 12*time.Second)
	env.ExecuteWorkflow(RotateCA, RotateCAInput{Hosts: caHosts("m1", "m2", "m3"), CA: playbooks.RotateCAStep{NodeCertExpiry: playbooks.Duration(48 * time.Hour)}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res RotateCAResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.OldRoot != "aaaaaaaaaaaaaaaa" || res.NewRoot != "bbbbbbbbbbbbbbbb" || res.Attached || res.Manager != "m1" {
		t.Errorf("result %+v", res)
	}
	if res.Counts != "TLS certificates 3/3 nodes, trust root 3/3" {
		t.Errorf("counts %q", res.Counts)
	}
	for _, o := range res.Hosts {
		if o.State != HostChanged || !strings.Contains(o.Message, "root bbbbbbbbbbbb") {
			t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
		}
	}
	if len(f.starts) != 1 || f.starts[0].ForceRotate != 4 || f.starts[0].OldRoot != "aaaaaaaaaaaaaaaa" || f.starts[0].NodeCertExpiry.Std() != 48*time.Hour {
		t.Errorf("starts %+v", f.starts)
	}
	if mid == nil || mid.Phase != CAPhaseRotating || !strings.HasPrefix(mid.Counts, "TLS certificates ") || !mid.InProgress {
		t.Errorf("progress halfway: %+v", mid)
	} else {
		t.Logf("progress halfway: %s", mid.Counts)
	}
	// One watch per change: 3 certificates, the root switch, 3 trust roots.
	if n := f.count("WatchCARotation"); n != 7 {
		t.Errorf("%d watches, want 7: %v", n, f.calls)
	}
}

func TestRotateCAAttachesToARotationInProgress(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f := newFakeCA(caHosts("m1", "w1"))
	f.rotating, f.certs = true, 1 // someone else's rotation, halfway
	f.register(env)
	env.ExecuteWorkflow(RotateCA, RotateCAInput{Hosts: caHosts("m1", "w1"), CA: playbooks.RotateCAStep{RotateWorkerToken: true}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res RotateCAResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if f.count("StartCARotation") != 0 {
		t.Errorf("a second rotation was started: %v", f.calls)
	}
	if !res.Attached || res.NewRoot != "bbbbbbbbbbbbbbbb" || !strings.Contains(strings.Join(res.Notes, "\n"), "not applied") {
		t.Errorf("result %+v", res)
	}
}

func TestRotateCAHeldUpByADownNode(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	hosts := caHosts("m1", "w1", "w2")
	f := newFakeCA(hosts)
	f.down["w2"] = true
	f.register(env)
	env.ExecuteWorkflow(RotateCA, RotateCAInput{Hosts: hosts, Timeout: playbooks.Duration(time.Hour)})
	err := env.GetWorkflowError()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrRotationIncomplete {
		t.Fatalf("want %s, got %v", ErrRotationIncomplete, err)
	}
	for _, want := range []string{"stands still", "waiting for w2 (down: certificate, trust root)", "removeNode", "bring w2 back"} {
		if !strings.Contains(ae.Message(), want) {
			t.Errorf("message lacks %q: %s", want, ae.Message())
		}
	}
	// The details carry the per-host outcomes RunPlaybook reports.
	var res RotateCAResult
	if !detailsInto(err, &res) {
		t.Fatal("no per-host outcomes in the error's details")
	}
	if res.Hosts[2].State != HostFailed || !strings.Contains(res.Hosts[2].Message, "holds the rotation up (node down") {
		t.Errorf("w2: %+v", res.Hosts[2])
	}
	if res.Hosts[0].State != HostFailed || !strings.HasSuffix(res.Hosts[0].Message, "the rotation is not: it waits for w2 (down: certificate, trust root)") {
		t.Errorf("m1: %+v", res.Hosts[0])
	}
}

func TestRotateCARefusesHalfAProvidedCA(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.ExecuteWorkflow(RotateCA, RotateCAInput{Hosts: caHosts("m1"), CA: playbooks.RotateCAStep{CACert: "/ca.pem"}})
	requireInvalidInput(t, env.GetWorkflowError(), "ca: caCert: needs caKey too")
}

// TestCheckCertificatesThresholds runs the same certificates at different workflow
// start times: the remaining validity, and so the verdict, follows workflow time.
func TestCheckCertificatesThresholds(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	hosts := caHosts("m1", "w1", "w2")
	tests := []struct {
		name  string
		start time.Time
		below []string
	}{
		{"all above", t0, nil},
		{"w1 just below after 31 days", t0.Add(31 * 24 * time.Hour), []string{"w1"}},
		{"everyone below after 61 days", t0.Add(61 * 24 * time.Hour), []string{"m1", "w1", "w2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.SetStartTime(tt.start)
			f := newFakeCA(hosts)
			f.notAfter = map[string]time.Time{"m1": t0.Add(90 * 24 * time.Hour), "w1": t0.Add(60 * 24 * time.Hour), "w2": t0.Add(89 * 24 * time.Hour)}
			f.register(env)
			env.ExecuteWorkflow(CheckCertificates, CheckCertificatesInput{Hosts: hosts,
				Check: playbooks.CheckCertificatesStep{MinValidity: playbooks.Duration(30 * 24 * time.Hour)}})
			err := env.GetWorkflowError()
			var res CheckCertificatesResult
			if tt.below == nil {
				if err != nil {
					t.Fatal(err)
				}
				if err := env.GetWorkflowResult(&res); err != nil {
					t.Fatal(err)
				}
				if res.Certificates[1].Remaining.Std() != 60*24*time.Hour || !res.Checked.Equal(t0) {
					t.Errorf("w1 remaining %s, checked %s", res.Certificates[1].Remaining, res.Checked)
				}
				for _, o := range res.Hosts {
					if o.State != HostUnchanged || !strings.Contains(o.Message, "left") {
						t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
					}
				}
				if res.Root != "aaaaaaaaaaaaaaaa" {
					t.Errorf("root %q", res.Root)
				}
				return
			}
			var ae *temporal.ApplicationError
			if !errors.As(err, &ae) || ae.Type() != ErrCertificatesExpiring {
				t.Fatalf("want %s, got %v", ErrCertificatesExpiring, err)
			}
			if !detailsInto(err, &res) {
				t.Fatal("no details")
			}
			if strings.Join(res.Below, ",") != strings.Join(tt.below, ",") {
				t.Errorf("below %v, want %v", res.Below, tt.below)
			}
			for _, o := range res.Hosts {
				if want := strings.Contains(strings.Join(tt.below, ","), o.Host); (o.State == HostFailed) != want {
					t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
				}
			}
			t.Logf("%s", ae.Message())
			if f.count("StartCARotation") != 0 {
				t.Error("action fail started a rotation")
			}
		})
	}
}

func TestCheckCertificatesRotatesWhenBelow(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	hosts := caHosts("m1", "w1", "w2")
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	env.RegisterWorkflow(RotateCA)
	f := newFakeCA(hosts)
	f.notAfter = map[string]time.Time{"m1": t0.Add(80 * 24 * time.Hour), "w1": t0.Add(10 * 24 * time.Hour), "w2": t0.Add(80 * 24 * time.Hour)}
	f.renewed = t0.Add(90 * 24 * time.Hour)
	f.register(env)
	env.ExecuteWorkflow(CheckCertificates, CheckCertificatesInput{Hosts: hosts,
		Check: playbooks.CheckCertificatesStep{MinValidity: playbooks.Duration(30 * 24 * time.Hour), Action: playbooks.CertActionRotate,
			Rotate: &playbooks.RotateCAStep{NodeCertExpiry: playbooks.Duration(2160 * time.Hour)}}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res CheckCertificatesResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Rotation == nil || res.Rotation.NewRoot != "bbbbbbbbbbbbbbbb" || res.Root != "bbbbbbbbbbbbbbbb" || len(res.Below) != 0 {
		t.Fatalf("result %+v", res)
	}
	if len(f.starts) != 1 || f.starts[0].NodeCertExpiry.Std() != 2160*time.Hour || f.starts[0].Manager.Name != "m1" {
		t.Errorf("starts %+v", f.starts)
	}
	for _, o := range res.Hosts {
		if o.State != HostChanged || !strings.Contains(o.Message, "renewed by a root CA rotation") {
			t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
		}
	}
}

// TestRunPlaybookCheckCertificatesStep runs the step kind through RunPlaybook: the
// failed check's per-host outcomes become the step's host states.
func TestRunPlaybookCheckCertificatesStep(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	hosts := caHosts("m1", "w1")
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(t0)
	env.RegisterWorkflow(CheckCertificates)
	f := newFakeCA(hosts)
	f.notAfter = map[string]time.Time{"m1": t0.Add(80 * 24 * time.Hour), "w1": t0.Add(10 * 24 * time.Hour)}
	f.register(env)
	var inventory []playbooks.Host
	for _, h := range hosts {
		inventory = append(inventory, playbooks.Host{Name: h.Name, Address: h.Address, Port: h.Port, User: h.User, IdentityFile: "/k/id", KnownHostsFile: "/k/known_hosts", HostKeyPolicy: playbooks.HostKeyStrict})
	}
	plan := &playbooks.Plan{Name: "cert-check", Hosts: inventory, Steps: []playbooks.Step{{
		Name: "certificates", Kind: playbooks.KindCheckCertificates, Hosts: []string{"m1", "w1"},
		Parallel: 10, Attempts: 3, Timeout: playbooks.Duration(10 * time.Minute),
		CheckCertificates: &playbooks.CheckCertificatesStep{MinValidity: playbooks.Duration(30 * 24 * time.Hour), Action: playbooks.CertActionFail},
	}}}
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: plan})
	err := env.GetWorkflowError()
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) || ae.Type() != ErrPlaybookFailed {
		t.Fatalf("want %s, got %v", ErrPlaybookFailed, err)
	}
	// The failure's details name the failed host; the progress query has them all.
	var fs FailureSummary
	if err := ae.Details(&fs); err != nil || fs.FailedStep != "certificates" || len(fs.FailedHosts) != 1 || fs.FailedHosts[0].Host != "w1" {
		t.Fatalf("failure summary %+v (%v)", fs, err)
	}
	v, err := env.QueryWorkflow(ProgressQuery)
	if err != nil {
		t.Fatal(err)
	}
	var p Progress
	if err := v.Get(&p); err != nil {
		t.Fatal(err)
	}
	st := p.Steps[0].Hosts
	if st[0].State != HostUnchanged || st[1].State != HostFailed || !strings.Contains(st[1].Message, "below minValidity 30d") {
		t.Errorf("hosts %+v", st)
	}
}
