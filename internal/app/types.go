package app

import (
	"reflect"
	"runtime"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/internal/metrics"
	"github.com/clusterflow/clusterflow/workflows"
)

// boundedMetrics holds h's label values to closed sets: the workflow and activity
// types this worker registers, so that a run of any other type (anyone who can reach
// the task queue may start one) is counted as "other" instead of adding series.
func boundedMetrics(h client.MetricsHandler) client.MetricsHandler {
	if h == client.MetricsNopHandler {
		return h
	}
	var r typeRecorder
	workflows.Register(&r)
	activities.Register(&r, nil, "", nil)
	return metrics.Bounded(h, map[string][]string{
		"workflow_type": r.workflows,
		"activity_type": r.activities,
	})
}

// typeRecorder is a worker registry that only notes the type names registered on
// it, named as the SDK names them: the option's name or the function's, and for a
// struct of activities, each exported method's.
type typeRecorder struct {
	workflows, activities []string
}

func (r *typeRecorder) RegisterWorkflow(w any) { r.workflows = append(r.workflows, funcName(w)) }

func (r *typeRecorder) RegisterWorkflowWithOptions(w any, o workflow.RegisterOptions) {
	if o.Name == "" {
		o.Name = funcName(w)
	}
	r.workflows = append(r.workflows, o.Name)
}

func (r *typeRecorder) RegisterDynamicWorkflow(any, workflow.DynamicRegisterOptions) {}

func (r *typeRecorder) RegisterActivity(a any) {
	r.RegisterActivityWithOptions(a, activity.RegisterOptions{})
}

func (r *typeRecorder) RegisterActivityWithOptions(a any, o activity.RegisterOptions) {
	t := reflect.TypeOf(a)
	if t.Kind() == reflect.Func {
		if o.Name == "" {
			o.Name = funcName(a)
		}
		r.activities = append(r.activities, o.Name)
		return
	}
	for m := range t.Methods() {
		r.activities = append(r.activities, o.Name+m.Name) // Name is a prefix for a struct
	}
}

func (r *typeRecorder) RegisterDynamicActivity(any, activity.DynamicRegisterOptions) {}

// funcName is a function's name without its package (and method value suffix).
func funcName(fn any) string {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	name = strings.TrimSuffix(name, "-fm")
	return name[strings.LastIndexByte(name, '.')+1:]
}
