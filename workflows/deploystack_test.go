package workflows

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/internal/compose"
	"github.com/clusterflow/clusterflow/playbooks"
)

// fakeStack answers the DeployStack activities: ApplyStackService with applied
// (by service name), WatchService with the statuses of the service (by ID, the
// last one repeating), and records the rollbacks and cleanups asked for.
type fakeStack struct {
	mu        sync.Mutex
	applied   map[string]activities.StackServiceApplied
	statuses  map[string][]activities.ServiceStatus
	watches   map[string]int
	objects   []activities.StackObject
	rollbacks []string
	cleanups  []activities.StackCleanupRequest
	removed   []string // the secrets cleanups remove
	calls     []string
}

func (f *fakeStack) call(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

func stackPlan() activities.StackPlan {
	svc := func(key string) compose.Service {
		return compose.Service{Key: key, Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "demo_" + key},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "web:1"}}}}
	}
	return activities.StackPlan{
		Stack: compose.Stack{Name: "demo", Files: []string{"stacks/demo/compose.yaml"},
			Services: []compose.Service{svc("agent"), svc("db"), svc("web")},
			Networks: []compose.Network{{Key: "front", Name: "demo_front"}},
			Secrets:  []compose.Object{{Key: "pw", Name: "demo_pw", Source: compose.Source{Env: "PW"}}}},
		Objects: []activities.ObjectPlan{{Kind: activities.ObjectSecret, Key: "pw", Name: "demo_pw", Digest: "sha256:ab", EngineName: "demo_pw-ab"}},
	}
}

func (f *fakeStack) register(env *testsuite.TestWorkflowEnvironment) {
	env.OnActivity(swarmActs.FindManager, mock.Anything, mock.Anything).Return("master", nil)
	env.OnActivity(swarmActs.LoadStack, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.LoadStackRequest) (activities.StackPlan, error) {
			f.call("LoadStack")
			return stackPlan(), nil
		})
	env.OnActivity(swarmActs.EnsureStackNetworks, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.StackNetworksRequest) (activities.StackNetworks, error) {
			f.call("EnsureStackNetworks")
			return activities.StackNetworks{IDs: map[string]string{"demo_front": "net1"}}, nil
		})
	env.OnActivity(swarmActs.EnsureStackObjects, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.StackObjectsRequest) ([]activities.StackObject, error) {
			f.call("EnsureStackObjects")
			if len(r.Objects) != 1 || r.Kinds[0] != activities.ObjectSecret || r.Plans[0].Digest != "sha256:ab" {
				return nil, errors.New("objects request: " + r.Stack)
			}
			return f.objects, nil
		})
	env.OnActivity(swarmActs.ApplyStackService, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.ApplyStackServiceRequest) (activities.StackServiceApplied, error) {
			f.call("ApplyStackService " + r.Service.Spec.Name)
			if r.Networks["demo_front"] != "net1" || len(r.Objects) != len(f.objects) {
				return activities.StackServiceApplied{}, errors.New("apply without the stack's networks and objects")
			}
			return f.applied[r.Service.Spec.Name], nil
		})
	env.OnActivity(swarmActs.WatchService, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.WatchServiceRequest) (activities.ServiceStatus, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			st := f.statuses[r.ServiceID]
			n := f.watches[r.ServiceID]
			f.watches[r.ServiceID]++
			return st[min(n, len(st)-1)], nil
		})
	env.OnActivity(swarmActs.RollbackStackService, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.RollbackStackServiceRequest) (activities.ServiceApplied, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.rollbacks = append(f.rollbacks, r.Name)
			if r.Before == nil {
				return activities.ServiceApplied{ServiceID: r.ServiceID, Changed: true, Message: "removed (the step created it)"}, nil
			}
			// the engine rolled web back itself; the others go back now
			changed := r.Name != "demo_web"
			f.statuses[r.ServiceID] = []activities.ServiceStatus{{Replicas: 3, Running: 3, Outcome: activities.ServiceCompleted}}
			return activities.ServiceApplied{ServiceID: r.ServiceID, Changed: changed, Message: "rolled back: image"}, nil
		})
	env.OnActivity(swarmActs.CleanupStack, mock.Anything, mock.Anything).Return(
		func(_ context.Context, r activities.StackCleanupRequest) (activities.StackCleanup, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.cleanups = append(f.cleanups, r)
			return activities.StackCleanup{Secrets: f.removed}, nil
		})
}

func stackInput() DeployStackInput {
	return DeployStackInput{Hosts: []remote.Host{{Name: "master"}},
		Stack: playbooks.StackStep{Stack: "demo", Compose: []string{"stacks/demo/compose.yaml"}, Dir: "/pb"}}
}

func changed(id, msg string, before bool) activities.StackServiceApplied {
	a := activities.StackServiceApplied{ServiceApplied: activities.ServiceApplied{ServiceID: id, Changed: true, Message: msg, Replicas: 3}}
	if before {
		a.Before = &swarm.ServiceSpec{Annotations: swarm.Annotations{Name: id}}
	} else {
		a.Created = true
	}
	return a
}

func runStack(t *testing.T, f *fakeStack, in DeployStackInput, after func(env *testsuite.TestWorkflowEnvironment)) DeployStackResult {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	if f.watches == nil {
		f.watches = map[string]int{}
	}
	f.register(env)
	env.ExecuteWorkflow(DeployStack, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if after != nil {
		after(env)
	}
	var res DeployStackResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestDeployStackDeploys(t *testing.T) {
	running := activities.ServiceStatus{Replicas: 3, Running: 3, Outcome: activities.ServiceCompleted}
	f := &fakeStack{
		removed: []string{"demo_pw-00"},
		objects: []activities.StackObject{{Kind: activities.ObjectSecret, Key: "pw", Name: "demo_pw", EngineName: "demo_pw-ab", ID: "sec2", Created: true}},
		applied: map[string]activities.StackServiceApplied{
			"demo_agent": changed("a", "created", false),
			"demo_db":    changed("d", "updated: secrets", true),
			"demo_web":   {ServiceApplied: activities.ServiceApplied{ServiceID: "w", Message: "unchanged", Replicas: 3}},
		},
		statuses: map[string][]activities.ServiceStatus{
			"a": {{Replicas: 3, Running: 1}, running},
			"d": {{UpdateState: "updating", Replicas: 1}, {UpdateState: "completed", Replicas: 1, Running: 1, Outcome: activities.ServiceCompleted}},
			"w": {{Replicas: 3, Running: 3, Outcome: activities.ServiceUnchanged}},
		},
	}
	var end DeployStackProgress
	res := runStack(t, f, stackInput(), func(env *testsuite.TestWorkflowEnvironment) {
		v, err := env.QueryWorkflow(ProgressQuery)
		if err != nil || v.Get(&end) != nil {
			t.Errorf("query: %v", err)
		}
	})
	if res.Outcome != activities.ServiceCompleted || res.Hosts[0].State != HostChanged || res.RolledBack {
		t.Fatalf("result %+v", res)
	}
	for _, want := range []string{"agent completed (created", "db completed (secrets", "web unchanged", "created secret demo_pw-ab", "removed secret demo_pw-00"} {
		if !strings.Contains(res.Message, want) {
			t.Errorf("message %q lacks %q", res.Message, want)
		}
	}
	if len(res.Services) != 3 || res.Services[0].Outcome != activities.ServiceCompleted || res.Services[2].Outcome != activities.ServiceUnchanged {
		t.Errorf("services %+v", res.Services)
	}
	// In order: load, networks, objects, each service; then one cleanup keeping the new secret.
	wantCalls := []string{"LoadStack", "EnsureStackNetworks", "EnsureStackObjects", "ApplyStackService demo_agent", "ApplyStackService demo_db", "ApplyStackService demo_web"}
	if !slices.Equal(f.calls, wantCalls) {
		t.Errorf("calls %v", f.calls)
	}
	if len(f.cleanups) != 1 || !slices.Equal(f.cleanups[0].Keep, []string{"sec2"}) || f.cleanups[0].Prune ||
		!slices.Equal(f.cleanups[0].Services, []string{"demo_agent", "demo_db", "demo_web"}) {
		t.Errorf("cleanups %+v", f.cleanups)
	}
	if len(f.rollbacks) != 0 {
		t.Errorf("rollbacks %v", f.rollbacks)
	}
	if end.Stack != "demo" || end.Manager != "master" || end.Phase != StackPhaseDone || len(end.Services) != 3 ||
		end.Services[1].Status.UpdateState != "completed" || end.Services[0].Status.Running != 3 {
		t.Errorf("progress %+v", end)
	}
}

func TestDeployStackUnchanged(t *testing.T) {
	unchanged := func(id string) activities.StackServiceApplied {
		return activities.StackServiceApplied{ServiceApplied: activities.ServiceApplied{ServiceID: id, Message: "unchanged", Replicas: 1}}
	}
	same := []activities.ServiceStatus{{Replicas: 1, Running: 1, Outcome: activities.ServiceUnchanged}}
	f := &fakeStack{
		objects:  []activities.StackObject{{Kind: activities.ObjectSecret, Name: "demo_pw", ID: "sec1"}},
		applied:  map[string]activities.StackServiceApplied{"demo_agent": unchanged("a"), "demo_db": unchanged("d"), "demo_web": unchanged("w")},
		statuses: map[string][]activities.ServiceStatus{"a": same, "d": same, "w": same},
	}
	res := runStack(t, f, stackInput(), nil)
	if res.Outcome != activities.ServiceUnchanged || res.Hosts[0].State != HostUnchanged ||
		res.Message != "services: agent unchanged, db unchanged, web unchanged" {
		t.Fatalf("result %+v", res)
	}
}

// rollbackStack is a stack whose web update fails (the engine rolls it back),
// while agent was updated and db created by the same step.
func rollbackStack() *fakeStack {
	return &fakeStack{
		objects: []activities.StackObject{{Kind: activities.ObjectSecret, Name: "demo_pw", EngineName: "demo_pw-ab", ID: "sec2", Created: true},
			{Kind: activities.ObjectConfig, Name: "demo_conf", EngineName: "demo_conf-cd", ID: "cfg1"}},
		applied: map[string]activities.StackServiceApplied{
			"demo_agent": changed("a", "updated: env", true),
			"demo_db":    changed("d", "created", false),
			"demo_web":   changed("w", "updated: image", true),
		},
		statuses: map[string][]activities.ServiceStatus{
			"a": {{Replicas: 3, Running: 3, Outcome: activities.ServiceCompleted}},
			"d": {{Replicas: 1, Running: 1, Outcome: activities.ServiceCompleted}},
			"w": {{UpdateState: "rollback_started", Replicas: 3, Running: 2, RollbackReason: "task x: non-zero exit (3)"},
				{UpdateState: "rollback_completed", Replicas: 3, Running: 3, RollbackReason: "task x: non-zero exit (3)", Outcome: activities.ServiceRolledBack}},
		},
	}
}

func TestDeployStackRollsBackTheStack(t *testing.T) {
	f := rollbackStack()
	in := stackInput()
	in.Stack.RollbackOnFailure = true
	res := runStack(t, f, in, nil)
	if res.Outcome != ServiceFailed || res.Hosts[0].State != HostFailed || !res.RolledBack {
		t.Fatalf("result %+v", res)
	}
	for _, want := range []string{"service web: rolled back: task x: non-zero exit (3)", "the stack was rolled back:",
		"agent rolled back: image", "db removed (the step created it)", "web back to its spec already"} {
		if !strings.Contains(res.Message, want) {
			t.Errorf("message %q lacks %q", res.Message, want)
		}
	}
	slices.Sort(f.rollbacks)
	if !slices.Equal(f.rollbacks, []string{"demo_agent", "demo_db", "demo_web"}) {
		t.Errorf("rollbacks %v", f.rollbacks)
	}
	// The secret the step made goes (nothing uses it after the rollback); the config stays.
	if len(f.cleanups) != 1 || !slices.Equal(f.cleanups[0].Keep, []string{"cfg1"}) || f.cleanups[0].Prune ||
		!slices.Equal(f.cleanups[0].Names, []string{"secret/demo_pw", "config/demo_conf"}) {
		t.Errorf("cleanups %+v", f.cleanups)
	}
}

func TestDeployStackFailsWithoutRollback(t *testing.T) {
	f := rollbackStack()
	res := runStack(t, f, stackInput(), nil)
	if res.Outcome != ServiceFailed || res.RolledBack || len(f.rollbacks) != 0 || len(f.cleanups) != 0 ||
		res.Message != "service web: rolled back: task x: non-zero exit (3)" {
		t.Fatalf("result %+v, rollbacks %v, cleanups %d", res, f.rollbacks, len(f.cleanups))
	}
}

func TestDeployStackJobsCountAsDone(t *testing.T) {
	done := func(id string) activities.StackServiceApplied {
		a := changed(id, "created", false)
		a.RunsOnce = true
		return a
	}
	f := &fakeStack{
		applied: map[string]activities.StackServiceApplied{"demo_agent": done("a"), "demo_db": done("d"), "demo_web": done("w")},
		statuses: map[string][]activities.ServiceStatus{
			"a": {{Replicas: 3, Completed: 3, Outcome: activities.ServiceCompleted}},
			"d": {{Replicas: 1, Completed: 1, Outcome: activities.ServiceCompleted}},
			"w": {{Replicas: 2, Failed: 1, Outcome: activities.ServiceTaskFailed, Message: "task y on slave01: non-zero exit (1)"}},
		},
	}
	res := runStack(t, f, stackInput(), nil)
	if res.Outcome != ServiceFailed || !strings.Contains(res.Message, "service web: a task failed: task y on slave01: non-zero exit (1)") {
		t.Fatalf("result %+v", res)
	}
	if res.Services[0].Outcome != activities.ServiceCompleted || !strings.Contains(res.Services[0].Message, "3/3 completed") {
		t.Errorf("agent %+v", res.Services[0])
	}
}

func TestDeployStackApplyRefused(t *testing.T) {
	f := rollbackStack()
	in := stackInput()
	in.Stack.RollbackOnFailure = true
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	f.watches = map[string]int{}
	// db's spec is refused: agent, applied before it, goes back; web is never sent.
	env.OnActivity(swarmActs.ApplyStackService, mock.Anything, mock.MatchedBy(func(r activities.ApplyStackServiceRequest) bool {
		return r.Service.Key == "db"
	})).Return(activities.StackServiceApplied{}, temporal.NewNonRetryableApplicationError("host master: network x does not exist", activities.ErrServiceSpec, nil))
	f.register(env)
	env.ExecuteWorkflow(DeployStack, in)
	var res DeployStackResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != ServiceFailed || !strings.Contains(res.Message, "service db: host master: network x does not exist") ||
		!slices.Equal(f.rollbacks, []string{"demo_agent"}) || res.Services[2].Applied != "" {
		t.Fatalf("result %+v, rollbacks %v", res, f.rollbacks)
	}
}

func TestDeployStackInvalidInput(t *testing.T) {
	ok := stackInput().Stack
	for name, in := range map[string]DeployStackInput{
		"no hosts":     {Stack: ok},
		"bad name":     {Hosts: []remote.Host{{Name: "m"}}, Stack: playbooks.StackStep{Stack: "Demo!", Compose: ok.Compose, Dir: ok.Dir}},
		"no compose":   {Hosts: []remote.Host{{Name: "m"}}, Stack: playbooks.StackStep{Stack: "demo", Dir: ok.Dir}},
		"outside dir":  {Hosts: []remote.Host{{Name: "m"}}, Stack: playbooks.StackStep{Stack: "demo", Compose: []string{"../x.yaml"}, Dir: ok.Dir}},
		"relative dir": {Hosts: []remote.Host{{Name: "m"}}, Stack: playbooks.StackStep{Stack: "demo", Compose: ok.Compose, Dir: "pb"}},
		"bad auth": {Hosts: []remote.Host{{Name: "m"}}, Stack: playbooks.StackStep{Stack: "demo", Compose: ok.Compose, Dir: ok.Dir,
			RegistryAuth: &playbooks.RegistryAuth{Server: "r.example", Username: "u"}}},
	} {
		t.Run(name, func(t *testing.T) {
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			env.ExecuteWorkflow(DeployStack, in)
			var ae *temporal.ApplicationError
			if err := env.GetWorkflowError(); err == nil || !errors.As(err, &ae) || !ae.NonRetryable() || ae.Type() != ErrInvalidInput {
				t.Fatalf("want a non-retryable InvalidInput, got %v", err)
			}
		})
	}
}
