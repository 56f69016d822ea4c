package workflows

import (
	"context"
	"errors"
	"slices"
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

// fakeService answers ApplyService with applied and WatchService with the
// statuses in turn (the last one repeats). The activities themselves run against
// real engines in internal/e2e (-tags lab).
type fakeService struct {
	mu       sync.Mutex
	applied  activities.ServiceApplied
	applyErr error
	statuses []activities.ServiceStatus
	watches  int
	lasts    []activities.ServiceStatus
	onWatch  func(n int) // called at each watch, with the number of watches before it
}

func (f *fakeService) register(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(swarmActs.FindManager, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.FindManagerRequest) (string, error) {
			return r.Candidates[0].Name, nil
		})
	env.OnActivity(swarmActs.ApplyService, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.ApplyServiceRequest) (activities.ServiceApplied, error) {
			return f.applied, f.applyErr
		})
	env.OnActivity(swarmActs.WatchService, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.WatchServiceRequest) (activities.ServiceStatus, error) {
			f.mu.Lock()
			n := f.watches
			f.lasts = append(f.lasts, r.Last)
			f.watches++
			f.mu.Unlock()
			if f.onWatch != nil {
				f.onWatch(n)
			}
			return f.statuses[min(n, len(f.statuses)-1)], nil
		})
}

func serviceInput() DeployServiceInput {
	three := uint64(3)
	return DeployServiceInput{
		Hosts: []remote.Host{{Name: "master"}},
		Service: playbooks.ServiceStep{Create: true, Service: "web", Image: "web:2", Replicas: &three,
			Update: &playbooks.UpdatePolicy{Parallelism: 1, Monitor: playbooks.Duration(5 * time.Second), FailureAction: "rollback", Order: "stop-first"}},
	}
}

func nodesRunning(n int) []activities.ServiceOnNode {
	var out []activities.ServiceOnNode
	for i, name := range []string{"master", "slave01", "slave02"} {
		r := 0
		if i < n {
			r = 1
		}
		out = append(out, activities.ServiceOnNode{Node: name, Desired: 1, Running: r})
	}
	return out
}

func runService(t *testing.T, f *fakeService, in DeployServiceInput, query func(*testsuite.TestWorkflowEnvironment)) DeployServiceResult {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f.register(env)
	if query != nil {
		query(env)
	}
	env.ExecuteWorkflow(DeployService, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res DeployServiceResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestDeployServiceCompleted(t *testing.T) {
	f := &fakeService{
		applied: activities.ServiceApplied{ServiceID: "svc1", Changed: true, Message: "updated: image", Monitor: playbooks.Duration(5 * time.Second), Replicas: 3},
		statuses: []activities.ServiceStatus{
			{UpdateState: "updating", Replicas: 3, Running: 1, Nodes: nodesRunning(1)},
			{UpdateState: "updating", Replicas: 3, Running: 2, Nodes: nodesRunning(2)},
			{UpdateState: "completed", Message: "update completed", Replicas: 3, Running: 3, Nodes: nodesRunning(3), Outcome: activities.ServiceCompleted},
		},
	}
	var mid DeployServiceProgress
	res := runService(t, f, serviceInput(), func(env *testsuite.TestWorkflowEnvironment) {
		// At the third watch, the query shows what the second one saw: 2 of 3 running.
		f.onWatch = func(n int) {
			if n != 2 {
				return
			}
			v, err := env.QueryWorkflow(ProgressQuery)
			if err != nil {
				t.Errorf("query: %v", err)
			} else if err := v.Get(&mid); err != nil {
				t.Errorf("query result: %v", err)
			}
		}
	})
	if res.Outcome != activities.ServiceCompleted || res.Manager != "master" || res.ServiceID != "svc1" {
		t.Fatalf("result %+v", res)
	}
	if len(res.Hosts) != 1 || res.Hosts[0].State != HostChanged || !strings.Contains(res.Hosts[0].Message, "3/3 running") {
		t.Fatalf("hosts %+v", res.Hosts)
	}
	if mid.Phase != ServicePhaseWatch || mid.Status.Running != 2 || mid.Status.UpdateState != "updating" || len(mid.Status.Nodes) != 3 {
		t.Errorf("progress while updating: %+v", mid)
	}
	// Each watch is given the status seen before it.
	if len(f.lasts) != 3 || f.lasts[2].Running != 2 {
		t.Errorf("watch calls got last statuses %+v", f.lasts)
	}
}

func TestDeployServiceRolledBack(t *testing.T) {
	reason := "update rolled back due to failure or early termination of task abc"
	f := &fakeService{
		applied: activities.ServiceApplied{ServiceID: "svc1", Changed: true, Message: "updated: image", Replicas: 3},
		statuses: []activities.ServiceStatus{
			{UpdateState: "updating", Replicas: 3, Running: 2},
			{UpdateState: "rollback_started", Message: reason, RollbackReason: reason, Replicas: 3, Running: 2},
			{UpdateState: "rollback_completed", Message: "rollback completed", RollbackReason: reason, Replicas: 3, Running: 3, Outcome: activities.ServiceRolledBack},
		},
	}
	res := runService(t, f, serviceInput(), nil)
	if res.Outcome != activities.ServiceRolledBack {
		t.Fatalf("outcome %q", res.Outcome)
	}
	if h := res.Hosts[0]; h.State != HostFailed || h.Message != "rolled back: "+reason {
		t.Fatalf("host outcome %+v", h)
	}
}

func TestDeployServicePaused(t *testing.T) {
	f := &fakeService{
		applied: activities.ServiceApplied{ServiceID: "svc1", Changed: true, Message: "updated: image", Replicas: 3},
		statuses: []activities.ServiceStatus{
			{UpdateState: "paused", Message: "update paused due to failure or early termination of task abc", Replicas: 3, Running: 2, Outcome: activities.ServicePaused},
		},
	}
	res := runService(t, f, serviceInput(), nil)
	if h := res.Hosts[0]; res.Outcome != activities.ServicePaused || h.State != HostFailed || !strings.HasPrefix(h.Message, "update paused: update paused due to failure") {
		t.Fatalf("result %+v", res)
	}
}

func TestDeployServiceUnchanged(t *testing.T) {
	f := &fakeService{
		applied:  activities.ServiceApplied{ServiceID: "svc1", Message: "unchanged", Replicas: 3},
		statuses: []activities.ServiceStatus{{Replicas: 3, Running: 3, Nodes: nodesRunning(3), Outcome: activities.ServiceUnchanged}},
	}
	res := runService(t, f, serviceInput(), nil)
	if h := res.Hosts[0]; res.Outcome != activities.ServiceUnchanged || h.State != HostUnchanged || !strings.HasPrefix(h.Message, "unchanged; 3/3 running") {
		t.Fatalf("result %+v", res)
	}
}

func TestDeployServiceApplyRefused(t *testing.T) {
	f := &fakeService{applyErr: temporal.NewNonRetryableApplicationError("host master: service web does not exist", activities.ErrServiceNotFound, nil)}
	in := serviceInput()
	in.Service.Create = false
	res := runService(t, f, in, nil)
	if res.Outcome != ServiceFailed || res.Hosts[0].State != HostFailed || !strings.Contains(res.Hosts[0].Message, "does not exist") {
		t.Fatalf("result %+v", res)
	}
}

func TestDeployServiceInvalidInput(t *testing.T) {
	for name, in := range map[string]DeployServiceInput{
		"no hosts":      {Service: playbooks.ServiceStep{Service: "web", Image: "x"}},
		"no name":       {Hosts: []remote.Host{{Name: "m"}}, Service: playbooks.ServiceStep{Image: "x"}},
		"create no img": {Hosts: []remote.Host{{Name: "m"}}, Service: playbooks.ServiceStep{Create: true, Service: "web"}},
		"bad action": {Hosts: []remote.Host{{Name: "m"}}, Service: playbooks.ServiceStep{Service: "web",
			Update: &playbooks.UpdatePolicy{FailureAction: "retry"}}},
	} {
		t.Run(name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.ExecuteWorkflow(DeployService, in)
			err := env.GetWorkflowError()
			var ae *temporal.ApplicationError
			if err == nil || !errors.As(err, &ae) || !ae.NonRetryable() {
				t.Fatalf("want a non-retryable error, got %v", err)
			}
		})
	}
}

func TestDeployServiceLoadsTheImage(t *testing.T) {
	f := &fakeService{
		applied:  activities.ServiceApplied{ServiceID: "svc1", Created: true, Changed: true, Message: "created", Replicas: 3},
		statuses: []activities.ServiceStatus{{Replicas: 3, Running: 3, Nodes: nodesRunning(3), Outcome: activities.ServiceCompleted}},
	}
	in := serviceInput()
	in.Service.ImageLoad = "/images/web-2.tar"
	in.Cluster = []remote.Host{{Name: "master", Address: "10.0.0.1"}, {Name: "slave01", Address: "10.0.0.2"}, {Name: "slave02", Address: "10.0.0.3"}}
	var mu sync.Mutex
	var loads []string
	res := runService(t, f, in, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(swarmActs.ListSwarmNodes, mock.Anything, mock.Anything).Return([]activities.SwarmNode{
			{Hostname: "master", Addr: "10.0.0.1", State: "ready", Availability: "active"},
			{Hostname: "node-b", Addr: "10.0.0.2", State: "ready", Availability: "active"}, // found by address
			{Hostname: "slave02", Addr: "10.0.0.3", State: "ready", Availability: "drain"}, // runs no tasks
			{Hostname: "gone", Addr: "10.0.0.9", State: "down", Availability: "active"},
		}, nil)
		env.OnActivity(swarmActs.LoadImage, mock.Anything, mock.Anything).Return(
			func(_ context.Context, r activities.LoadImageRequest) (activities.ImageLoaded, error) {
				mu.Lock()
				defer mu.Unlock()
				loads = append(loads, r.Host.Name+" "+r.Image+" "+r.Tarball)
				return activities.ImageLoaded{Host: r.Host.Name, ImageID: "sha256:1", Changed: r.Host.Name != "master"}, nil
			})
	})
	slices.Sort(loads)
	if !slices.Equal(loads, []string{"master web:2 /images/web-2.tar", "slave01 web:2 /images/web-2.tar"}) {
		t.Errorf("loads %v", loads)
	}
	if res.Outcome != activities.ServiceCompleted || len(res.Images) != 2 || !strings.HasPrefix(res.Hosts[0].Message, "image loaded on 1 of 2 nodes; created") {
		t.Fatalf("result %+v", res)
	}
}

func TestDeployServiceImageNodeNotInInventory(t *testing.T) {
	f := &fakeService{applied: activities.ServiceApplied{ServiceID: "svc1"}}
	in := serviceInput()
	in.Service.ImageLoad = "/images/web-2.tar"
	res := runService(t, f, in, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnActivity(swarmActs.ListSwarmNodes, mock.Anything, mock.Anything).Return([]activities.SwarmNode{
			{Hostname: "stranger", Addr: "10.0.0.7", State: "ready", Availability: "active"},
		}, nil)
	})
	if res.Outcome != ServiceFailed || !strings.Contains(res.Hosts[0].Message, "stranger (10.0.0.7) are not in the inventory") {
		t.Fatalf("result %+v", res)
	}
}
