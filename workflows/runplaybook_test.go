package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/playbooks"
)

// These tests check RunPlaybook's logic with faked activities. That the activities
// work over real SSH is proven in the activities package and the integration tests.

func testPlan(hosts ...string) *playbooks.Plan {
	p := &playbooks.Plan{Name: "t", Cluster: "lab"}
	for _, h := range hosts {
		p.Hosts = append(p.Hosts, playbooks.Host{Name: h, Address: "127.0.0.1", Port: 22, User: "root", IdentityFile: "/k/id", KnownHostsFile: "/k/known_hosts", HostKeyPolicy: playbooks.HostKeyStrict})
	}
	step := func(name, kind string) playbooks.Step {
		s := playbooks.Step{Name: name, Kind: kind, Hosts: hosts, Parallel: 2, Attempts: 1, Timeout: playbooks.Duration(time.Minute)}
		if kind == playbooks.KindRun {
			s.Run = &playbooks.RunStep{Command: []string{"echo", name}}
		} else {
			s.Upload = &playbooks.UploadStep{Src: "/tmp/src", Dest: "/tmp/dst", Mode: 0o644}
		}
		return s
	}
	p.Steps = []playbooks.Step{step("one", playbooks.KindRun), step("two", playbooks.KindUpload), step("three", playbooks.KindRun)}
	return p
}

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	env.RegisterActivity(sshActs)
	env.RegisterActivity(fileActs)
	env.RegisterActivity(playbookActs)
	return env
}

func TestRunPlaybookCompletes(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.CommandRequest) (activities.CommandResult, error) {
			if req.Command[1] == "three" {
				return activities.CommandResult{Skipped: true, SkipReason: "/x exists"}, nil
			}
			return activities.CommandResult{ExitCode: 0, Stdout: "hi from " + req.Host.Name + "\n"}, nil
		})
	env.OnActivity(fileActs.UploadFile, mock.Anything, mock.Anything).Return(activities.UploadResult{Changed: false}, nil)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: testPlan("a", "b", "c")})

	if !env.IsWorkflowCompleted() || env.GetWorkflowError() != nil {
		t.Fatalf("workflow did not complete: %v", env.GetWorkflowError())
	}
	var p Progress
	if err := env.GetWorkflowResult(&p); err != nil {
		t.Fatal(err)
	}
	if p.Outcome != OutcomeCompleted {
		t.Fatalf("outcome %s", p.Outcome)
	}
	c := p.Counts()
	if c.Changed != 3 || c.Unchanged != 6 || c.Failed != 0 {
		t.Fatalf("counts %+v", c)
	}
	if got := p.Steps[0].Hosts[1].Message; got != "exit 0: hi from b" {
		t.Fatalf("message %q", got)
	}
	env.AssertNumberOfCalls(t, "RunRemoteCommand", 6)
	env.AssertNumberOfCalls(t, "UploadFile", 3)
}

func TestRunPlaybookFailureBudget(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.CommandRequest) (activities.CommandResult, error) {
			if req.Host.Name == "b" {
				return activities.CommandResult{ExitCode: 3, Stderr: "boom\n"}, nil
			}
			return activities.CommandResult{}, nil
		})
	env.OnActivity(fileActs.UploadFile, mock.Anything, mock.Anything).Return(activities.UploadResult{Changed: true, Bytes: 5}, nil)
	plan := testPlan("a", "b", "c", "d")
	plan.Steps[0].MaxFailPercent = 25 // one host of four may fail
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: plan})

	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("one failure within a 25%% budget must not fail the run: %v", err)
	}
	var p Progress
	if err := env.GetWorkflowResult(&p); err != nil {
		t.Fatal(err)
	}
	if h := p.Steps[0].Hosts[1]; h.State != HostFailed || h.Message != "exit 3: boom" {
		t.Fatalf("host b in step one: %+v", h)
	}
	// The failed host sits out the later steps; the others go on.
	if h := p.Steps[1].Hosts[1]; h.State != HostSkipped {
		t.Fatalf("host b in step two: %+v", h)
	}
	env.AssertNumberOfCalls(t, "UploadFile", 3)
}

func TestRunPlaybookStopsOverBudget(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).Return(
		func(_ context.Context, req activities.CommandRequest) (activities.CommandResult, error) {
			if req.Host.Name == "a" {
				return activities.CommandResult{}, temporal.NewNonRetryableApplicationError(
					"host a (127.0.0.1:22): host key mismatch", activities.ErrHostKeyMismatch, nil)
			}
			return activities.CommandResult{}, nil
		})
	plan := testPlan("a", "b", "c")
	plan.Steps[0].Parallel = 1 // a fails first; b and c must then never start
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: plan})

	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrPlaybookFailed {
		t.Fatalf("want PlaybookFailed, got %v", err)
	}
	if !strings.Contains(appErr.Message(), `step "one" failed on 1 of 3 hosts`) || !strings.Contains(appErr.Message(), "host key mismatch") {
		t.Fatalf("message: %s", appErr.Message())
	}
	var fs FailureSummary
	if err := appErr.Details(&fs); err != nil {
		t.Fatal(err)
	}
	if fs.Outcome != OutcomeFailed || fs.FailedStep != "one" || fs.StepCount != 3 || fs.Counts.Failed != 1 || fs.Counts.Skipped != 8 ||
		len(fs.FailedHosts) != 1 || fs.FailedHosts[0].Host != "a" {
		t.Fatalf("failure summary: %+v", fs)
	}
	env.AssertNumberOfCalls(t, "RunRemoteCommand", 1)
	env.AssertNumberOfCalls(t, "UploadFile", 0)
}

func TestRunPlaybookProgressQuery(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).After(time.Minute).Return(activities.CommandResult{}, nil)
	env.OnActivity(fileActs.UploadFile, mock.Anything, mock.Anything).Return(activities.UploadResult{}, nil)
	var mid Progress
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(ProgressQuery)
		if err != nil {
			t.Errorf("query: %v", err)
			return
		}
		if err := v.Get(&mid); err != nil {
			t.Errorf("decode: %v", err)
		}
	}, 30*time.Second)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: testPlan("a", "b", "c")})
	if env.GetWorkflowError() != nil {
		t.Fatal(env.GetWorkflowError())
	}
	// Parallel 2: at 30 s, a and b are running and c waits.
	if mid.Current != 0 || mid.Steps[0].Hosts[0].State != HostRunning || mid.Steps[0].Hosts[2].State != HostPending {
		t.Fatalf("progress mid-run: %+v", mid.Steps[0])
	}
}

func TestRunPlaybookRefusesBadInput(t *testing.T) {
	for name, in := range map[string]RunPlaybookInput{
		"empty":        {},
		"two sources":  {Playbook: "a.yaml", Inline: "x"},
		"unknown host": {Plan: func() *playbooks.Plan { p := testPlan("a"); p.Steps[0].Hosts = []string{"zz"}; return p }()},
		"bad kind":     {Plan: func() *playbooks.Plan { p := testPlan("a"); p.Steps[0].Kind = "shell"; return p }()},
	} {
		t.Run(name, func(t *testing.T) {
			env := newEnv(t)
			env.ExecuteWorkflow(RunPlaybook, in)
			requireInvalidInput(t, env.GetWorkflowError(), "")
		})
	}
}

func TestRunPlaybookLoadsNamedPlaybook(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(playbookActs.LoadPlaybook, mock.Anything, activities.LoadPlaybookRequest{Playbook: "hello.yaml"}).Return(testPlan("a"), nil)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).Return(activities.CommandResult{}, nil)
	env.OnActivity(fileActs.UploadFile, mock.Anything, mock.Anything).Return(activities.UploadResult{}, nil)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Playbook: "hello.yaml"})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
}

func TestRunPlaybookCancel(t *testing.T) {
	env := newEnv(t)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).After(time.Hour).Return(activities.CommandResult{}, nil)
	env.RegisterDelayedCallback(env.CancelWorkflow, time.Minute)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: testPlan("a", "b")})
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("want cancelled, got %v", err)
	}
}

func TestRunPlaybookProcedureSteps(t *testing.T) {
	env := newEnv(t)
	plan := testPlan("a", "b", "c")
	plan.Steps = []playbooks.Step{
		{Name: "keys", Kind: playbooks.KindDistributeKeys, Hosts: []string{"a", "b", "c"}, Parallel: 10, Attempts: 1,
			Timeout: playbooks.Duration(time.Minute), DistributeKeys: &playbooks.DistributeKeysStep{ClusterKey: "/k", Mesh: true}},
		{Name: "docker", Kind: playbooks.KindInstallDocker, Hosts: []string{"a", "b", "c"}, Parallel: 10, Attempts: 3,
			MaxFailPercent: 50, Timeout: playbooks.Duration(10 * time.Minute), InstallDocker: &playbooks.InstallDockerStep{Source: playbooks.DockerFromDistro}},
	}
	env.OnWorkflow(DistributeKeys, mock.Anything, mock.Anything).Return(
		func(_ workflow.Context, in DistributeKeysInput) (*DistributeKeysResult, error) {
			if len(in.Hosts) != 3 || !in.Keys.Mesh || in.Hosts[1].Name != "b" {
				return nil, errors.New("unexpected input")
			}
			return &DistributeKeysResult{Hosts: []HostOutcome{
				{Host: "a", State: HostChanged}, {Host: "b", State: HostUnchanged}, {Host: "c", State: HostChanged},
			}}, nil
		})
	env.OnWorkflow(InstallDocker, mock.Anything, mock.Anything).Return(&InstallDockerResult{Hosts: []HostOutcome{
		{Host: "a", State: HostChanged, Message: "docker 20.10.24"}, {Host: "b", State: HostFailed, Message: "apt failed"},
		{Host: "c", State: HostUnchanged},
	}}, nil)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: plan})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("one failure of three is within a 50%% budget: %v", err)
	}
	var p Progress
	if err := env.GetWorkflowResult(&p); err != nil {
		t.Fatal(err)
	}
	if got := p.Steps[0].Hosts[1].State; got != HostUnchanged {
		t.Fatalf("keys on b: %s", got)
	}
	if h := p.Steps[1].Hosts[1]; h.State != HostFailed || h.Message != "apt failed" {
		t.Fatalf("docker on b: %+v", h)
	}
	if h := p.Steps[1].Hosts[0]; h.State != HostChanged || h.Message != "docker 20.10.24" {
		t.Fatalf("docker on a: %+v", h)
	}
}

// requireInvalidInput fails the test unless err is a non-retryable InvalidInput
// application error whose message contains want.
func requireInvalidInput(t *testing.T, err error, want string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != activities.ErrInvalidInput || !appErr.NonRetryable() || !strings.Contains(appErr.Message(), want) {
		t.Fatalf("want a non-retryable InvalidInput error containing %q, got %v", want, err)
	}
}

// TestRunPlaybookFailureBounded: a run that fails on many hosts with long messages
// fails with bounded details and message, whatever the plan's size; every host's
// state stays in the progress query.
func TestRunPlaybookFailureBounded(t *testing.T) {
	env := newEnv(t)
	long := strings.Repeat("x", 5000)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).Return(activities.CommandResult{}, temporal.NewNonRetryableApplicationError(
		"host unreachable: "+long, activities.ErrInvalidInput, nil))
	hosts := make([]string, 400)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("host-%03d", i)
	}
	plan := testPlan(hosts...)
	plan.Steps[0].Parallel = 400
	var final Progress
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: plan})

	var appErr *temporal.ApplicationError
	if !errors.As(env.GetWorkflowError(), &appErr) || appErr.Type() != ErrPlaybookFailed {
		t.Fatalf("want PlaybookFailed, got %v", env.GetWorkflowError())
	}
	if n := len(appErr.Message()); n > maxFailureMessage {
		t.Fatalf("message is %d bytes", n)
	}
	var fs FailureSummary
	if err := appErr.Details(&fs); err != nil {
		t.Fatal(err)
	}
	if len(fs.FailedHosts) != maxFailedHostsShown || fs.MoreFailed != 390 || fs.Counts.Failed != 400 || fs.Counts.Skipped != 800 {
		t.Fatalf("summary: %d hosts shown, %d more, counts %+v", len(fs.FailedHosts), fs.MoreFailed, fs.Counts)
	}
	b, _ := json.Marshal(fs)
	if len(b) > maxFailedHostsShown*fullHostMessage+4<<10 {
		t.Fatalf("summary is %d bytes", len(b))
	}
	t.Logf("failure: message %d bytes, details %d bytes", len(appErr.Message()), len(b))
	v, err := env.QueryWorkflow(ProgressQuery)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Get(&final); err != nil {
		t.Fatal(err)
	}
	if final.Outcome != OutcomeFailed || final.Counts().Failed != 400 || len(final.Error) > maxFailureMessage {
		t.Fatalf("progress: outcome %s, counts %+v, error %d bytes", final.Outcome, final.Counts(), len(final.Error))
	}
	if m := final.Steps[0].Hosts[7].Message; len(m) > fullHostMessage || !strings.HasPrefix(m, "host unreachable: xxx") {
		t.Fatalf("host message in the progress: %d bytes: %.40s", len(m), m)
	}
	pb, _ := json.Marshal(final)
	t.Logf("progress of 400 hosts x 3 steps: %d bytes", len(pb))
}

// TestRunPlaybookRefusesOverLimits: a plan sent as JSON over the host-steps limit is
// refused as invalid input before anything runs.
func TestRunPlaybookRefusesOverLimits(t *testing.T) {
	hosts := make([]string, 1000)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d", i)
	}
	plan := testPlan(hosts...)
	plan.Steps = append(plan.Steps, plan.Steps[0], plan.Steps[0])
	plan.Steps[3].Name, plan.Steps[4].Name = "four", "five"
	env := newEnv(t)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: plan})
	requireInvalidInput(t, env.GetWorkflowError(), "plan.steps[4] (five).hosts: the steps so far run on 5000 hosts in all")
}

// TestRunPlaybookFailureUnversioned: a run from before bounded-failure-details (the
// replayed branch) still fails with the whole progress as its details.
func TestRunPlaybookFailureUnversioned(t *testing.T) {
	env := newEnv(t)
	env.OnGetVersion(boundedFailureChange, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	env.OnGetVersion(clipHostMessagesChange, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	long := strings.Repeat("y", 1000)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).Return(activities.CommandResult{},
		temporal.NewNonRetryableApplicationError(long, activities.ErrInvalidInput, nil))
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: testPlan("a", "b")})
	var appErr *temporal.ApplicationError
	if !errors.As(env.GetWorkflowError(), &appErr) || appErr.Type() != ErrPlaybookFailed {
		t.Fatalf("want PlaybookFailed, got %v", env.GetWorkflowError())
	}
	var p Progress
	if err := appErr.Details(&p); err != nil || len(p.Steps) != 3 || p.Steps[0].Hosts[1].State != HostFailed {
		t.Fatalf("progress %+v (%v)", p, err)
	}
	if m := p.Steps[0].Hosts[0].Message; m != long {
		t.Fatalf("message clipped in a run from before clip-host-messages: %d bytes", len(m))
	}
}

// TestRunPlaybookLimitsVersioned: a plan over the size limits is refused by new runs;
// a run from before plan-limits (replayed) goes on with it.
func TestRunPlaybookLimitsVersioned(t *testing.T) {
	big := func() *playbooks.Plan {
		p := testPlan("a")
		p.Vars = map[string]string{"blob": strings.Repeat("x", 600<<10)}
		return p
	}
	env := newEnv(t)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: big()})
	requireInvalidInput(t, env.GetWorkflowError(), "plan: the plan is 601 KiB as JSON; the limit is 512 KiB")

	env = newEnv(t)
	env.OnGetVersion(planLimitsChange, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	env.OnActivity(sshActs.RunRemoteCommand, mock.Anything, mock.Anything).Return(activities.CommandResult{}, nil)
	env.OnActivity(fileActs.UploadFile, mock.Anything, mock.Anything).Return(activities.UploadResult{}, nil)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: big()})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("a run from before plan-limits: %v", err)
	}
}

// TestRunPlaybookFieldUseVersioned: a plan whose installDocker step carries a timeout
// (which InstallDocker has no place for) is refused by new runs; a run from before
// field-use (replayed) goes on, the timeout ignored as it was then.
func TestRunPlaybookFieldUseVersioned(t *testing.T) {
	plan := func() *playbooks.Plan {
		p := testPlan("a")
		p.Steps = []playbooks.Step{{Name: "docker", Kind: playbooks.KindInstallDocker, Hosts: []string{"a"}, Parallel: 10, Attempts: 3,
			Timeout: playbooks.Duration(30 * time.Minute), InstallDocker: &playbooks.InstallDockerStep{Source: playbooks.DockerFromDistro}}}
		return p
	}
	env := newEnv(t)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: plan()})
	requireInvalidInput(t, env.GetWorkflowError(), "plan.steps[0] (docker): timeout: kind installDocker does not use timeout")

	env = newEnv(t)
	env.OnGetVersion(fieldUseChange, workflow.DefaultVersion, 1).Return(workflow.DefaultVersion)
	env.OnWorkflow(InstallDocker, mock.Anything, mock.Anything).Return(&InstallDockerResult{Hosts: []HostOutcome{{Host: "a", State: HostChanged}}}, nil)
	env.ExecuteWorkflow(RunPlaybook, RunPlaybookInput{Plan: plan()})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("a run from before field-use: %v", err)
	}
}
