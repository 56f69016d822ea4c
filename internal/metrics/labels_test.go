package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBounded: values outside a closed set, and values of other labels beyond the
// first maxLabelValues, are counted as "other"; nothing else changes.
func TestBounded(t *testing.T) {
	m, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := Bounded(m.Handler, map[string][]string{"workflow_type": {"RunPlaybook"}, "activity_type": {"RunRemoteCommand"}})
	base := h.WithTags(map[string]string{"namespace": "default", "task_queue": "clusterflow"})
	base.WithTags(map[string]string{"workflow_type": "RunPlaybook"}).Counter("wf_tasks").Inc(1)
	base.WithTags(map[string]string{"workflow_type": "none"}).Counter("wf_tasks").Inc(1)
	for i := range 500 {
		base.WithTags(map[string]string{"workflow_type": fmt.Sprintf("Attacker%d", i)}).Counter("wf_tasks").Inc(1)
		base.WithTags(map[string]string{"activity_type": fmt.Sprintf("Evil%d", i), "workflow_type": "RunPlaybook"}).Counter("act_tasks").Inc(1)
		base.WithTags(map[string]string{"kind": fmt.Sprintf("kind%d", i)}).Counter("steps").Inc(1)
	}
	w := httptest.NewRecorder()
	m.HTTPHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := w.Body.String()
	series := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(line, "{"); ok && !strings.HasPrefix(line, "#") {
			series[name]++
		}
	}
	for _, want := range []string{
		`wf_tasks_total{namespace="default",task_queue="clusterflow",workflow_type="RunPlaybook"} 1`,
		`wf_tasks_total{namespace="default",task_queue="clusterflow",workflow_type="none"} 1`,
		`wf_tasks_total{namespace="default",task_queue="clusterflow",workflow_type="other"} 500`,
		`act_tasks_total{activity_type="other",namespace="default",task_queue="clusterflow",workflow_type="RunPlaybook"} 500`,
		`steps_total{kind="other",namespace="default",task_queue="clusterflow"} 436`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Attacker") || strings.Contains(out, "Evil") {
		t.Errorf("an unknown type name became a label value:\n%s", out)
	}
	if series["wf_tasks_total"] != 3 || series["act_tasks_total"] != 1 || series["steps_total"] != maxLabelValues+1 {
		t.Errorf("series %v", series)
	}
}
