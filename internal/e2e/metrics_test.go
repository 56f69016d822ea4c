//go:build integration

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/clusterflow/clusterflow/workflows"
)

// TestMetricsEndpoint runs a playbook on a worker with its Prometheus endpoint on a
// free port, then scrapes /metrics for clusterflow's counters and the SDK's metrics.
func TestMetricsEndpoint(t *testing.T) {
	c := newCluster(t, 2)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	w := c.start("worker-metrics", "worker", "--address", c.addr, "--state-dir", filepath.Join(c.dir, "state"),
		"--metrics-address", addr)
	get := func(path string) (string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return string(b), err
	}
	waitFor(t, 30*time.Second, "metrics endpoint", func() bool {
		_, err := get("/healthz")
		return err == nil
	})
	// The starter runs a worker of its own when none polls yet: wait for this one.
	waitFor(t, 30*time.Second, "the worker to poll", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := c.client.DescribeTaskQueue(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
		return err == nil && len(resp.GetPollers()) > 0
	})

	out := t.TempDir()
	pb := c.playbook("e2e-metrics", fmt.Sprintf(`    - name: touch
      kind: run
      hosts: all-hosts
      command: [sh, -c, 'set -- $SSH_CONNECTION; touch %[1]s/m-$3']
    - name: again
      kind: run
      hosts: all-hosts
      command: [touch, %[1]s/marker]
      creates: %[1]s/marker
`, out))
	if stdout, code := c.starter("run", pb); code != 0 {
		t.Fatalf("starter run exit %d:\n%s\nworker:\n%s", code, stdout, c.logOf(w))
	}

	body, err := get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	// sum adds the values of the series of metric name whose labels include all of
	// the given name="value" pairs.
	sum := func(name string, labels ...string) (total float64, n int) {
		for _, line := range strings.Split(body, "\n") {
			if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
				continue
			}
			ok := true
			for _, l := range labels {
				ok = ok && strings.Contains(line, l)
			}
			if !ok {
				continue
			}
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("bad sample %q: %v", line, err)
			}
			total, n = total+v, n+1
		}
		return total, n
	}
	for _, check := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"clusterflow_runs_total", []string{`outcome="completed"`}, 1},
		{"clusterflow_steps_total", []string{`kind="run"`, `outcome="done"`}, 2},
		{"clusterflow_host_steps_total", []string{`kind="run"`, `state="changed"`}, 2},
		{"clusterflow_step_duration_seconds_count", []string{`kind="run"`}, 2},
		{"clusterflow_ssh_connections_total", []string{`result="ok"`}, 2},
		{"temporal_workflow_completed_total", nil, 1},
		{"temporal_activity_execution_latency_seconds_count", nil, 1},
	} {
		if v, n := sum(check.name, check.labels...); n == 0 || v < check.min {
			t.Errorf("%s%v = %v over %d series, want >= %v", check.name, check.labels, v, n, check.min)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "clusterflow_") && !strings.Contains(line, "_bucket") {
			t.Log(line)
		}
	}
}
