package workflows

import (
	"fmt"
	"unicode/utf8"
)

// boundedFailureChange guards the failure of RunPlaybook: runs from before it failed
// with the whole Progress as the error's details and the whole failure list as its
// message, both growing with hosts x steps; a large playbook could make a failure
// too big for Temporal to record, leaving the run stuck Running. Runs after it fail
// with a FailureSummary and a clipped message.
const boundedFailureChange = "bounded-failure-details"

// Bounds of a failure.
const (
	maxFailureMessage   = 2000 // bytes of the error message (and Progress.Error)
	maxFailedHostsShown = 10   // failed hosts named in a FailureSummary
	maxHostMessage      = 300  // bytes of each of their messages
)

// FailureSummary is the details of a failed RunPlaybook's PlaybookFailed error: what
// the starter and the Web UI show of a failed run, bounded whatever the playbook's
// size. Every host's state stays readable through the progress query.
type FailureSummary struct {
	Playbook string `json:"playbook"`
	Cluster  string `json:"cluster,omitempty"`
	Outcome  string `json:"outcome"`
	Summary  string `json:"summary"` // Progress.Summary
	// FailedStep is the name of the step that failed, FailedStepIndex its index in
	// the plan; StepCount is how many steps the plan has.
	FailedStep      string `json:"failedStep"`
	FailedStepIndex int    `json:"failedStepIndex"`
	StepCount       int    `json:"stepCount"`
	Counts          Counts `json:"counts"`
	// FailedHosts are the first failed hosts of the step, with their messages
	// clipped; MoreFailed counts the others.
	FailedHosts []HostState `json:"failedHosts"`
	MoreFailed  int         `json:"moreFailed,omitempty"`
}

// failureSummary sums up the run, failed at step i.
func (r *run) failureSummary(i int) *FailureSummary {
	p := r.progress
	st := p.Steps[i]
	fs := &FailureSummary{
		Playbook: p.Playbook, Cluster: p.Cluster, Outcome: p.Outcome, Summary: p.Summary(),
		FailedStep: st.Name, FailedStepIndex: i, StepCount: len(p.Steps), Counts: p.Counts(),
	}
	for _, h := range st.Hosts {
		if h.State != HostFailed {
			continue
		}
		if len(fs.FailedHosts) == maxFailedHostsShown {
			fs.MoreFailed++
			continue
		}
		h.Message = clipText(h.Message, maxHostMessage)
		fs.FailedHosts = append(fs.FailedHosts, h)
	}
	return fs
}

// Lines is the summary as text, one line each: the counts, then the failed hosts.
func (fs *FailureSummary) Lines() []string {
	lines := []string{fs.Summary}
	for _, h := range fs.FailedHosts {
		lines = append(lines, fmt.Sprintf("  %s, %s: %s", h.Host, fs.FailedStep, h.Message))
	}
	if fs.MoreFailed > 0 {
		lines = append(lines, fmt.Sprintf("  ... and %d more failed hosts in step %s (starter status shows them all)", fs.MoreFailed, fs.FailedStep))
	}
	return lines
}

// clipText shortens s to at most n bytes, on a rune boundary, marking the cut.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " …(clipped)"
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
