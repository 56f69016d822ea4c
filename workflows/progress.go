package workflows

import (
	"fmt"
	"strings"
	"time"
)

// ProgressQuery is the query that returns a run's per-step, per-host state. The
// starter polls it to draw its table; the Web UI's Queries tab runs it too.
const ProgressQuery = "progress"

// Run outcomes (also the ClusterflowOutcome search attribute).
const (
	OutcomeRunning   = "running"
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
	OutcomeCancelled = "cancelled"
)

// States of one host within one step.
const (
	HostPending   = "pending"
	HostRunning   = "running"
	HostChanged   = "changed"   // the step changed the host
	HostUnchanged = "unchanged" // nothing to do: a guard held or the content matched
	HostFailed    = "failed"
	HostSkipped   = "skipped" // not attempted: earlier failure, budget spent or run cancelled
)

// States of a step.
const (
	StepPending = "pending"
	StepRunning = "running"
	StepDone    = "done"
	StepFailed  = "failed"
	StepSkipped = "skipped"
)

// Progress is the state of a run: the result of the progress query and the body of
// the workflow's result.
type Progress struct {
	Playbook string      `json:"playbook"`
	Cluster  string      `json:"cluster,omitempty"`
	Outcome  string      `json:"outcome"`
	Current  int         `json:"current"` // index of the step running, or -1
	Steps    []StepState `json:"steps"`
	Error    string      `json:"error,omitempty"`
}

// StepState is one step's state with its hosts'.
type StepState struct {
	Name   string      `json:"name"`
	Kind   string      `json:"kind"`
	Status string      `json:"status"`
	Hosts  []HostState `json:"hosts"`
}

// HostState is one host's state within a step.
type HostState struct {
	Host     string    `json:"host"`
	State    string    `json:"state"`
	Message  string    `json:"message,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}

// Counts tallies host states over all steps.
type Counts struct {
	Changed, Unchanged, Failed, Skipped, Pending int
}

// Counts adds up the host states of every step.
func (p *Progress) Counts() Counts {
	var c Counts
	for _, s := range p.Steps {
		for _, h := range s.Hosts {
			switch h.State {
			case HostChanged:
				c.Changed++
			case HostUnchanged:
				c.Unchanged++
			case HostFailed:
				c.Failed++
			case HostSkipped:
				c.Skipped++
			default:
				c.Pending++
			}
		}
	}
	return c
}

// Summary is a one-line account of the run, for logs, the UI and the terminal.
func (p *Progress) Summary() string {
	c := p.Counts()
	return fmt.Sprintf("%s %s: %d steps, %d changed, %d unchanged, %d failed, %d skipped",
		p.Playbook, p.Outcome, len(p.Steps), c.Changed, c.Unchanged, c.Failed, c.Skipped)
}

// details renders the progress as the short Markdown the Web UI shows as the
// run's current details.
func (p *Progress) details() string {
	var b strings.Builder
	b.WriteString(fmt.Sprintf("**%s**: %s\n\n", p.Playbook, p.Outcome))
	for i, s := range p.Steps {
		done := 0
		for _, h := range s.Hosts {
			if h.State != HostPending && h.State != HostRunning {
				done++
			}
		}
		b.WriteString(fmt.Sprintf("%d. %s (%s): %s, %d/%d hosts\n", i+1, s.Name, s.Kind, s.Status, done, len(s.Hosts)))
	}
	return b.String()
}
