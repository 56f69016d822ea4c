package playbooks

import (
	"encoding/json"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Limits on the size of a plan. A plan travels as one Temporal payload (the
// RunPlaybook input, or the LoadPlaybook result), and every host of every step becomes
// one HostState in the run's Progress: the progress query's answer and the run's
// result, also single payloads. Temporal refuses payloads over 2 MB (and warns over
// 512 KB), and a workflow history over 51,200 events; a run that hits either limit
// fails forever or stays stuck, so a plan that would is refused before it starts.
const (
	// maxHostSteps bounds the sum over steps of the step's hosts. A host-step is one
	// HostState in the Progress (about 150 bytes, up to about 400 with a long name
	// and message: 4,000 of them stay under 1.6 MB) and, for run and upload steps,
	// one activity (three history events: 12,000 events, with the workflow tasks
	// between them well under 51,200). 1000 hosts (maxHosts) with 4 steps each, or
	// 50 hosts with 80 steps, fit.
	maxHostSteps = 4000
	// maxPlanJSON bounds the plan's JSON encoding: the size of the RunPlaybook
	// input, and of the LoadPlaybook activity's result. A quarter of Temporal's 2 MB
	// payload limit, under its 512 KB warning; a large hand-written playbook with
	// its inventory is a few tens of KB.
	maxPlanJSON = 512 << 10
)

// limitError is a plan over one of the limits above. step is the index of the step
// at which the limit is crossed, or -1 for the plan as a whole; field is the field
// of the step (or of the plan) that holds too much.
type limitError struct {
	step  int
	name  string // the step's name, when step >= 0
	field string
	msg   string
}

func (e *limitError) Error() string {
	if e.step >= 0 {
		return fmt.Sprintf("plan.steps[%d] (%s).%s: %s", e.step, e.name, e.field, e.msg)
	}
	if e.field == "" {
		return "plan: " + e.msg
	}
	return fmt.Sprintf("plan.%s: %s", e.field, e.msg)
}

// IsLimitError reports whether err is Plan.Normalize's error for a plan that breaks
// only the limits of this file (maxHosts, maxSteps, maxHostSteps, maxPlanJSON): the
// workflow lets runs from before the limits go on (see workflows' planLimitsChange).
func IsLimitError(err error) bool {
	var le *limitError
	return errors.As(err, &le)
}

// checkLimits checks the plan against maxHosts, maxSteps, maxHostSteps and
// maxPlanJSON. The parser calls it on the plan it has read, and Plan.Normalize on a
// plan sent as JSON: it runs inside workflow code and is deterministic (no I/O, no
// map ranging; json.Marshal sorts map keys). The error, when not nil, is a
// *limitError.
func (p *Plan) checkLimits() error {
	if len(p.Hosts) > maxHosts {
		return &limitError{step: -1, field: "hosts", msg: fmt.Sprintf("has %d hosts; the limit is %d", len(p.Hosts), maxHosts)}
	}
	if len(p.Steps) > maxSteps {
		return &limitError{step: -1, field: "steps", msg: fmt.Sprintf("has %d steps; the limit is %d", len(p.Steps), maxSteps)}
	}
	total := 0
	for i, s := range p.Steps {
		total += len(s.Hosts)
		if total > maxHostSteps {
			return &limitError{step: i, name: s.Name, field: "hosts", msg: fmt.Sprintf(
				"the steps so far run on %d hosts in all (each step's hosts added up); the limit is %d per playbook, "+
					"so that the run's progress and history stay within Temporal's limits: split the playbook, or give fewer steps or hosts",
				total, maxHostSteps)}
		}
	}
	// Counted, not kept: a plan within the limits above is at most a few MB.
	var c countWriter
	//workflowcheck:ignore encoding/json's output is deterministic (map keys sorted); only its type cache is not
	if err := json.NewEncoder(&c).Encode(p); err != nil {
		return &limitError{step: -1, field: "", msg: "cannot be encoded as JSON: " + err.Error()}
	}
	if c.n > maxPlanJSON {
		return &limitError{step: -1, field: "", msg: fmt.Sprintf(
			"the plan is %d KiB as JSON; the limit is %d KiB (it travels as one Temporal payload): give fewer hosts, steps or vars",
			(c.n+1023)>>10, maxPlanJSON>>10)}
	}
	return nil
}

// countWriter counts what is written to it.
type countWriter struct{ n int }

func (w *countWriter) Write(b []byte) (int, error) {
	w.n += len(b)
	return len(b), nil
}

// checkLimits reports a plan over the limits (Plan.checkLimits) at the step where the
// limit is crossed, or at spec.steps or spec.inventory; steps is the spec.steps list
// (nil if absent). It is called once the whole playbook has been read without error.
func (f *file) checkLimits(p *Plan, spec *fields, steps *yaml.Node) {
	err := p.checkLimits()
	le, ok := err.(*limitError)
	if !ok {
		return
	}
	switch {
	case le.step >= 0 && steps != nil && steps.Kind == yaml.SequenceNode && le.step < len(steps.Content):
		item := steps.Content[le.step]
		path := indexPath("spec.steps", le.step) + "." + le.field
		n := item
		if m, ok := mappingValue(item, le.field); ok {
			n = m
		}
		f.errorAt(n, path, "%s", le.msg)
	case le.field == "steps" && steps != nil:
		f.errorAt(steps, "spec.steps", "%s", le.msg)
	case le.field == "hosts":
		if n, p := spec.get("inventory"); n != nil {
			f.errorAt(n, p, "%s", le.msg)
			return
		}
		f.fileError("%s", le.msg)
	default:
		f.fileError("%s", le.msg)
	}
}

// mappingValue is the value under key in a mapping node.
func mappingValue(n *yaml.Node, key string) (*yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		return nil, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1], true
		}
	}
	return nil, false
}
