package workflows

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/playbooks"
)

// These tests check SwarmInit's and SwarmNodes' logic against a fake swarm. The
// activities themselves run against real engines in internal/e2e (-tags lab).

// fakeSwarm keeps node roles by host name and logs calls as "activity host".
type fakeSwarm struct {
	mu      sync.Mutex
	members map[string]string // host -> manager | worker
	calls   []string
	fail    map[string]error // "activity host" -> error
}

func newFakeSwarm() *fakeSwarm {
	return &fakeSwarm{members: map[string]string{}, fail: map[string]error{}}
}

func (f *fakeSwarm) log(act, host string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, act+" "+host)
	return f.fail[act+" "+host]
}

func (f *fakeSwarm) register(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(swarmActs.InitSwarm, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.InitSwarmRequest) (activities.SwarmChange, error) {
			if err := f.log("InitSwarm", r.Host.Name); err != nil {
				return activities.SwarmChange{}, err
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			st := activities.SwarmNodeState{Host: r.Host.Name, State: "active", NodeID: "id-" + r.Host.Name, ClusterID: "c1", Manager: true}
			if f.members[r.Host.Name] == "manager" {
				return activities.SwarmChange{State: st, Message: "already"}, nil
			}
			f.members[r.Host.Name] = "manager"
			return activities.SwarmChange{Changed: true, State: st}, nil
		})
	env.OnActivity(swarmActs.JoinSwarm, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.JoinSwarmRequest) (activities.SwarmChange, error) {
			if err := f.log("JoinSwarm", r.Host.Name); err != nil {
				return activities.SwarmChange{}, err
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			st := activities.SwarmNodeState{Host: r.Host.Name, State: "active", NodeID: "id-" + r.Host.Name, ClusterID: "c1"}
			if _, ok := f.members[r.Host.Name]; ok {
				return activities.SwarmChange{State: st}, nil
			}
			f.members[r.Host.Name] = r.Role
			return activities.SwarmChange{Changed: true, State: st}, nil
		})
	env.OnActivity(swarmActs.UpdateNode, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.UpdateNodeRequest) (activities.SwarmChange, error) {
			if err := f.log("UpdateNode", r.Node.Name); err != nil {
				return activities.SwarmChange{}, err
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			ch := activities.SwarmChange{State: activities.SwarmNodeState{Host: r.Node.Name, NodeID: "id-" + r.Node.Name}}
			if r.Role != "" && f.members[r.Node.Name] != r.Role {
				f.members[r.Node.Name] = r.Role
				ch.Changed = true
			}
			if len(r.Labels) > 0 || r.Availability != "" {
				ch.Changed = true
			}
			return ch, nil
		})
	env.OnActivity(swarmActs.EnsureNetwork, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.EnsureNetworkRequest) (activities.SwarmChange, error) {
			err := f.log("EnsureNetwork", r.Network.Name)
			f.mu.Lock()
			defer f.mu.Unlock()
			_, had := f.members["net:"+r.Network.Name]
			f.members["net:"+r.Network.Name] = "network"
			return activities.SwarmChange{Changed: !had}, err
		})
	env.OnActivity(swarmActs.ListSwarmNodes, mock.Anything, mock.Anything).Return(
		func(_ context.Context, _ activities.SwarmManagerRequest) ([]activities.SwarmNode, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			var out []activities.SwarmNode
			for _, h := range slices.Sorted(func(yield func(string) bool) {
				for k := range f.members {
					if !yield(k) {
						return
					}
				}
			}) {
				if !strings.HasPrefix(h, "net:") {
					out = append(out, activities.SwarmNode{ID: "id-" + h, Hostname: h, Role: f.members[h]})
				}
			}
			return out, nil
		})
	env.OnActivity(swarmActs.FindManager, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.FindManagerRequest) (string, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, h := range r.Candidates {
				if f.members[h.Name] == "manager" {
					return h.Name, nil
				}
			}
			return "", temporal.NewNonRetryableApplicationError("no manager", activities.ErrNoManager, nil)
		})
	env.OnActivity(swarmActs.WaitDrained, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.DrainRequest) (activities.DrainStatus, error) {
			return activities.DrainStatus{}, f.log("WaitDrained", r.Node.Name)
		})
}

func runSwarmInit(t *testing.T, f *fakeSwarm, in SwarmInitInput) *SwarmInitResult {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f.register(env)
	env.ExecuteWorkflow(SwarmInit, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("SwarmInit: %v", err)
	}
	var res SwarmInitResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return &res
}

func TestSwarmInitFormsAndIsIdempotent(t *testing.T) {
	f := newFakeSwarm()
	in := SwarmInitInput{
		Hosts: dockerHosts("m1", "m2", "m3", "w1", "w2"),
		Swarm: playbooks.SwarmInitStep{
			Managers: []string{"m1", "m2", "m3"},
			Labels:   map[string]map[string]string{"w1": {"zone": "a"}},
			Networks: []playbooks.OverlayNetwork{{Name: "backend", Attachable: true}},
		},
	}
	res := runSwarmInit(t, f, in)
	if !slices.Equal(res.Managers, []string{"m1", "m2", "m3"}) || !slices.Equal(res.Workers, []string{"w1", "w2"}) {
		t.Fatalf("managers %v workers %v", res.Managers, res.Workers)
	}
	if !strings.Contains(res.Quorum, "Raft quorum is 2") || len(res.Warnings) != 0 {
		t.Errorf("quorum %q warnings %v", res.Quorum, res.Warnings)
	}
	for _, o := range res.Hosts {
		if o.State != HostChanged {
			t.Errorf("%s: %s %s", o.Host, o.State, o.Message)
		}
	}
	// Everyone joins as a worker; the managers are promoted afterwards, in order.
	var promotions []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, "UpdateNode m") {
			promotions = append(promotions, c)
		}
	}
	if !slices.Equal(promotions, []string{"UpdateNode m2", "UpdateNode m3"}) {
		t.Errorf("promotions %v (calls %v)", promotions, f.calls)
	}

	// Second run: nothing changes (labels aside, which the fake always reports).
	in.Swarm.Labels = nil
	res = runSwarmInit(t, f, in)
	for _, o := range res.Hosts {
		if o.State != HostUnchanged {
			t.Errorf("second run %s: %s %s", o.Host, o.State, o.Message)
		}
	}
}

func TestSwarmInitEvenManagersWarns(t *testing.T) {
	res := runSwarmInit(t, newFakeSwarm(), SwarmInitInput{
		Hosts: dockerHosts("m1", "m2"), Swarm: playbooks.SwarmInitStep{Managers: []string{"m1", "m2"}},
	})
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "odd number") {
		t.Errorf("warnings %v", res.Warnings)
	}
}

func TestSwarmInitFirstManagerFails(t *testing.T) {
	f := newFakeSwarm()
	f.fail["InitSwarm m1"] = temporal.NewNonRetryableApplicationError("cannot choose an address", activities.ErrInvalidInput, nil)
	res := runSwarmInit(t, f, SwarmInitInput{Hosts: dockerHosts("m1", "w1"), Swarm: playbooks.SwarmInitStep{Managers: []string{"m1"}}})
	for _, o := range res.Hosts {
		if o.State != HostFailed {
			t.Errorf("%s: %s", o.Host, o.State)
		}
	}
	if slices.ContainsFunc(f.calls, func(c string) bool { return strings.HasPrefix(c, "JoinSwarm") }) {
		t.Errorf("joined without a swarm: %v", f.calls)
	}
}

func TestSwarmInitWorkerJoinFailsAlone(t *testing.T) {
	f := newFakeSwarm()
	f.fail["JoinSwarm w1"] = temporal.NewNonRetryableApplicationError("belongs to another swarm", activities.ErrSwarmConflict, nil)
	res := runSwarmInit(t, f, SwarmInitInput{Hosts: dockerHosts("m1", "w1", "w2"), Swarm: playbooks.SwarmInitStep{Managers: []string{"m1"}}})
	want := map[string]string{"m1": HostChanged, "w1": HostFailed, "w2": HostChanged}
	for _, o := range res.Hosts {
		if o.State != want[o.Host] {
			t.Errorf("%s: %s (%s), want %s", o.Host, o.State, o.Message, want[o.Host])
		}
	}
}

func TestSwarmInitRefusesBadInput(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.ExecuteWorkflow(SwarmInit, SwarmInitInput{Hosts: dockerHosts("m1"), Swarm: playbooks.SwarmInitStep{Managers: []string{"nope"}}})
	requireInvalidInput(t, env.GetWorkflowError(), `managers must be among the step's hosts; "nope" is not`)
}

func TestSwarmNodesDrainOneAtATimeAndStopsAtFailure(t *testing.T) {
	f := newFakeSwarm()
	f.members = map[string]string{"m1": "manager", "w1": "worker", "w2": "worker", "w3": "worker"}
	f.fail["WaitDrained w2"] = temporal.NewNonRetryableApplicationError("short of replicas", activities.ErrDrainTimeout, nil)
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f.register(env)
	env.ExecuteWorkflow(SwarmNodes, SwarmNodesInput{
		Hosts: dockerHosts("w1", "w2", "w3"), Cluster: dockerHosts("m1", "w1", "w2", "w3"),
		Node: playbooks.NodeStep{Op: playbooks.KindDrain},
	})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res SwarmNodesResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(res.Hosts[0].State, " ", res.Hosts[1].State, " ", res.Hosts[2].State)
	if res.Manager != "m1" || got != "changed failed failed" || !strings.Contains(res.Hosts[2].Message, "not started") {
		t.Errorf("manager %s, states %s: %+v", res.Manager, got, res.Hosts)
	}
	if slices.Contains(f.calls, "UpdateNode w3") {
		t.Errorf("w3 was drained after w2 failed: %v", f.calls)
	}
}
