package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func TestEndpoint(t *testing.T) {
	m, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, stop, err := m.Serve("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	h := m.Handler.WithTags(map[string]string{"outcome": "completed"})
	h.Counter("clusterflow_runs").Inc(2)
	m.Handler.WithTags(map[string]string{"kind": "run"}).Timer("clusterflow_step_duration").Record(1500 * time.Millisecond)

	if got := scrape(t, "http://"+addr+"/healthz"); got != "ok\n" {
		t.Fatalf("healthz: %q", got)
	}
	body := scrape(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		"# TYPE clusterflow_runs_total counter",
		`clusterflow_runs_total{outcome="completed"} 2`,
		"# TYPE clusterflow_step_duration_seconds histogram",
		`clusterflow_step_duration_seconds_bucket{kind="run",le="2.5"} 1`,
		`clusterflow_step_duration_seconds_sum{kind="run"} 1.5`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %q in:\n%s", want, body)
		}
	}
}

func TestRetryInterceptor(t *testing.T) {
	m, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	s.SetMetricsHandler(m.Handler)
	env := s.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{RetryInterceptor()}})
	env.RegisterActivityWithOptions(func(ctx context.Context) error {
		if activity.GetInfo(ctx).Attempt < 3 {
			return errors.New("flaky")
		}
		return nil
	}, activity.RegisterOptions{Name: "Flaky"})
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
		ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumAttempts: 5},
		})
		return workflow.ExecuteActivity(ctx, "Flaky").Get(ctx, nil)
	}, workflow.RegisterOptions{Name: "wf"})
	env.ExecuteWorkflow("wf")
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	rr := httptest.NewRecorder()
	m.HTTPHandler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	if want := `clusterflow_activity_retries_total{activity_type="Flaky",task_queue="default-test-taskqueue",workflow_type="wf"} 2`; !strings.Contains(rr.Body.String(), want) {
		t.Fatalf("missing %q in:\n%s", want, rr.Body.String())
	}
}
