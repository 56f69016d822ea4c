package workflows

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/playbooks"
)

// These tests check RollingNodeUpgrade's plan, gates and failure handling against a
// fake swarm; the activities run against real engines in internal/e2e (-tags lab).

type fakeUpgrade struct {
	mu     sync.Mutex
	state  activities.UpgradeState
	calls  []string
	failed map[string]bool // hosts whose engine upgrade fails
}

func (f *fakeUpgrade) log(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeUpgrade) callsOf(prefix string) []string {
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, strings.TrimPrefix(c, prefix))
		}
	}
	return out
}

func newFakeUpgrade(managers, workers []string, leader string) *fakeUpgrade {
	f := &fakeUpgrade{failed: map[string]bool{}}
	for _, m := range managers {
		f.state.Nodes = append(f.state.Nodes, activities.UpgradeNode{Host: m, NodeID: "id-" + m, Role: "manager", Leader: m == leader,
			Availability: "active", State: "ready", Reachability: "reachable", Package: "docker.io", Installed: "20.10.24"})
		f.state.Managers++
	}
	for _, w := range workers {
		f.state.Nodes = append(f.state.Nodes, activities.UpgradeNode{Host: w, NodeID: "id-" + w, Role: "worker",
			Availability: "active", State: "ready", Package: "docker.io", Installed: "20.10.24"})
		f.state.Workers++
	}
	f.state.Services = []activities.ServiceCount{{Name: "web", Mode: "replicated", Running: 3, Desired: 3}}
	return f
}

func (f *fakeUpgrade) register(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(swarmActs.FindManager, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.FindManagerRequest) (string, error) {
			for _, h := range r.Candidates {
				for _, n := range f.state.Nodes {
					if n.Host == h.Name && n.Role == "manager" {
						return h.Name, nil
					}
				}
			}
			return "", nil
		})
	env.OnActivity(swarmActs.UpgradeState, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ activities.UpgradeStateRequest) (activities.UpgradeState, error) {
			return f.state, nil
		})
	env.OnActivity(swarmActs.DrainForUpgrade, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.UpgradeNodeRequest) (activities.SwarmChange, error) {
			f.log("drain " + r.Node.Name + " via " + r.Manager.Name)
			return activities.SwarmChange{Changed: true, Message: "drained"}, nil
		})
	env.OnActivity(swarmActs.WaitDrained, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.DrainRequest) (activities.DrainStatus, error) {
			f.log("drained " + r.Node.Name)
			return activities.DrainStatus{}, nil
		})
	env.OnActivity(swarmActs.BackupSwarmState, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.BackupRequest) (activities.BackupResult, error) {
			f.log("backup " + r.Host.Name)
			return activities.BackupResult{Host: r.Host.Name, Path: r.Path, Bytes: 100, Changed: true, Live: r.Live}, nil
		})
	env.OnActivity(swarmActs.WaitNodeReady, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.UpgradeNodeRequest) (string, error) {
			f.log("ready " + r.Node.Name)
			return "20.10.25", nil
		})
	env.OnActivity(swarmActs.UpdateNode, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.UpdateNodeRequest) (activities.SwarmChange, error) {
			f.log("update " + r.Node.Name + " " + r.Availability)
			return activities.SwarmChange{Changed: true}, nil
		})
	env.OnActivity(swarmActs.WaitConverged, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ activities.UpgradeNodeRequest) ([]activities.ServiceCount, error) {
			f.log("converged")
			return f.state.Services, nil
		})
	env.OnWorkflow(InstallDocker, mock.Anything, mock.Anything).Return(
		func(_ workflow.Context, in InstallDockerInput) (*InstallDockerResult, error) {
			res := &InstallDockerResult{}
			var names []string
			for _, h := range in.Hosts {
				names = append(names, h.Name)
				o := HostOutcome{Host: h.Name, State: HostChanged}
				if f.failed[h.Name] {
					o = HostOutcome{Host: h.Name, State: HostFailed, Message: "packages: dpkg failed"}
				}
				res.Hosts = append(res.Hosts, o)
			}
			f.log("engine " + strings.Join(names, ","))
			return res, nil
		})
}

func runUpgrade(t *testing.T, f *fakeUpgrade, in RollingUpgradeInput, during func(env *testsuite.TestWorkflowEnvironment)) *RollingUpgradeResult {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(InstallDocker, workflow.RegisterOptions{Name: InstallDockerName})
	f.register(env)
	if during != nil {
		during(env)
	}
	env.ExecuteWorkflow(RollingNodeUpgrade, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("RollingNodeUpgrade: %v", err)
	}
	var res RollingUpgradeResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return &res
}

func upgradeInput(hosts []string, pct int) RollingUpgradeInput {
	return RollingUpgradeInput{
		Hosts: dockerHosts(hosts...), Cluster: dockerHosts(hosts...),
		Upgrade: playbooks.RollingUpgradeStep{Docker: playbooks.InstallDockerStep{Source: "offline", Packages: "/debs", Version: "20.10.25"}, MaxUnavailable: pct},
	}
}

func TestRollingUpgradeOrderAndBoundaries(t *testing.T) {
	f := newFakeUpgrade([]string{"m1", "m2", "m3"}, []string{"w1", "w2", "w3", "w4", "w5"}, "m1")
	f.state.Nodes[7].Installed, f.state.Nodes[7].Current = "20.10.25", true // w5 is done already
	res := runUpgrade(t, f, upgradeInput([]string{"m1", "m2", "m3", "w1", "w2", "w3", "w4", "w5"}, 50), nil)

	// Managers one at a time, the leader last; workers two at a time (50% of 5).
	if got := f.callsOf("engine "); !slices.Equal(got, []string{"m2", "m3", "m1", "w1,w2", "w3,w4"}) {
		t.Errorf("engine upgrades %v", got)
	}
	// Each manager is drained through another manager.
	for _, c := range f.callsOf("drain ") {
		if node, via, _ := strings.Cut(c, " via "); strings.HasPrefix(node, "m") && node == via {
			t.Errorf("%s drained through itself", node)
		}
	}
	// One backup, from the first manager, before its engine changed, engine stopped.
	if got := f.callsOf("backup "); !slices.Equal(got, []string{"m2"}) || res.Backup == nil || res.Backup.Live {
		t.Errorf("backups %v %+v", got, res.Backup)
	}
	if i, j := slices.Index(f.calls, "backup m2"), slices.Index(f.calls, "engine m2"); i < 0 || i > j {
		t.Errorf("backup after the first engine: %v", f.calls)
	}
	if res.Batches != 5 || len(res.Boundaries) != 6 {
		t.Errorf("batches %d boundaries %d", res.Batches, len(res.Boundaries))
	}
	for _, o := range res.Hosts {
		want := HostChanged
		if o.Host == "w5" {
			want = HostUnchanged
		}
		if o.State != want {
			t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
		}
	}
}

func TestRollingUpgradeRefusesBrokenQuorum(t *testing.T) {
	f := newFakeUpgrade([]string{"m1", "m2", "m3"}, nil, "m1")
	f.state.Nodes[1].Refusal = "refused: upgrading m2 would leave 3 manager(s), 1 of them reachable"
	res := runUpgrade(t, f, upgradeInput([]string{"m1", "m2", "m3"}, 25), nil)
	if len(f.callsOf("drain ")) > 0 || len(f.callsOf("engine ")) > 0 {
		t.Errorf("refused run changed nodes: %v", f.calls)
	}
	for _, o := range res.Hosts {
		if o.State != HostFailed || (o.Host == "m2") != strings.HasPrefix(o.Message, "refused: upgrading m2") {
			t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
		}
	}
}

func TestRollingUpgradeDryRunChangesNothing(t *testing.T) {
	f := newFakeUpgrade([]string{"m1"}, []string{"w1", "w2"}, "m1")
	in := upgradeInput([]string{"m1", "w1", "w2"}, 25)
	in.DryRun = true
	res := runUpgrade(t, f, in, nil)
	if len(f.calls) != 0 {
		t.Errorf("dry run called %v", f.calls)
	}
	if len(res.Plan) != 3 || res.Plan[0].Host != "m1" || res.Plan[2].Batch != 3 || !res.DryRun {
		t.Errorf("plan %+v", res.Plan)
	}
	for _, o := range res.Hosts {
		if o.State != HostUnchanged || !strings.HasPrefix(o.Message, "dry run: upgrade in batch") {
			t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
		}
	}
}

func TestRollingUpgradeWaitsForApproval(t *testing.T) {
	f := newFakeUpgrade([]string{"m1"}, []string{"w1"}, "m1")
	in := upgradeInput([]string{"m1", "w1"}, 100)
	in.Upgrade.Approval = true
	res := runUpgrade(t, f, in, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(func() {
			// An approval of another batch is ignored; batch 2 has not started.
			env.SignalWorkflow(ApproveSignal, UpgradeApproval{Batch: 3})
		}, time.Hour)
		env.RegisterDelayedCallback(func() {
			if got := f.callsOf("engine "); !slices.Equal(got, []string{"m1"}) {
				t.Errorf("before the approval: %v", got)
			}
			env.SignalWorkflow(ApproveSignal, UpgradeApproval{Batch: 2, By: "ops"})
		}, 2*time.Hour)
	})
	if got := f.callsOf("engine "); !slices.Equal(got, []string{"m1", "w1"}) {
		t.Errorf("engine upgrades %v", got)
	}
	if len(res.Approvals) != 1 || res.Approvals[0].By != "ops" {
		t.Errorf("approvals %+v", res.Approvals)
	}
}

func TestRollingUpgradeFailedBatchStops(t *testing.T) {
	f := newFakeUpgrade([]string{"m1"}, []string{"w1", "w2", "w3", "w4"}, "m1")
	f.failed["w2"] = true
	res := runUpgrade(t, f, upgradeInput([]string{"m1", "w1", "w2", "w3", "w4"}, 50), nil)
	if got := f.callsOf("engine "); !slices.Equal(got, []string{"m1", "w1,w2"}) {
		t.Errorf("engine upgrades %v", got)
	}
	if got := f.callsOf("update "); !slices.Equal(got, []string{"m1 active"}) {
		t.Errorf("activated %v: the failed batch's nodes must stay drained", got)
	}
	want := map[string]string{"m1": HostChanged, "w1": HostFailed, "w2": HostFailed, "w3": HostFailed, "w4": HostFailed}
	for _, o := range res.Hosts {
		if o.State != want[o.Host] {
			t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
		}
		t.Logf("%s: %s %s", o.Host, o.State, o.Message)
	}
	if m := res.Hosts[2].Message; !strings.Contains(m, "dpkg failed") || !strings.Contains(m, "left drained") {
		t.Errorf("w2: %s", m)
	}
}
