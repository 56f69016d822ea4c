package workflows

import (
	"fmt"
	"unicode/utf8"

	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/playbooks"
)

// boundedFailureChange guards the failure of RunPlaybook: runs from before it failed
// with the whole Progress as the error's details and the whole failure list as its
// message, both growing with hosts x steps; a large playbook could make a failure
// too big for Temporal to record, leaving the run stuck Running. Runs after it fail
// with a FailureSummary and a clipped message.
const boundedFailureChange = "bounded-failure-details"

// clipHostMessagesChange guards the clipping of each host's message in the progress
// to the run's hostMessageLimit, which keeps the progress (the query's answer, the
// run's result) within Temporal's payload limit at playbooks' maxHostSteps. The
// version is asked only for a message that needs clipping: other runs record no
// marker.
const clipHostMessagesChange = "clip-host-messages"

// hostMessage is a host's message as the progress keeps it.
func (r *run) hostMessage(ctx workflow.Context, msg string) string {
	if jsonSize(msg) <= r.msgLimit {
		return msg
	}
	if workflow.GetVersion(ctx, clipHostMessagesChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return msg
	}
	return clipJSON(msg, r.msgLimit)
}

// Bounds of a failure.
const (
	maxFailureMessage   = 2000 // bytes of the error message (and Progress.Error)
	maxFailedHostsShown = 10   // failed hosts named in a FailureSummary
	// maxHostMessage is the least a host's message may keep, in bytes as JSON:
	// 4000 host-steps (playbooks' maxHostSteps) of at most about 430 bytes each
	// (name, state, times and message) make a progress under 1.8 MB.
	maxHostMessage = 240
	// fullHostMessage is the most: a message this long keeps the hint at its end
	// (what to set, which step to run) that operators act on.
	fullHostMessage = 2000
	// hostMessageBudget is what all the messages of a run share.
	hostMessageBudget = 960_000
)

// hostMessageLimit is how many bytes each host's message of the plan's run may take:
// an even share of hostMessageBudget over its host-steps, between maxHostMessage
// (at playbooks' maxHostSteps) and fullHostMessage (small playbooks).
func hostMessageLimit(p *playbooks.Plan) int {
	n := 0
	for _, s := range p.Steps {
		n += len(s.Hosts)
	}
	return min(max(hostMessageBudget/max(n, 1), maxHostMessage), fullHostMessage)
}

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
		h.Message = clipJSON(h.Message, r.msgLimit)
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

// jsonSize is how many bytes s takes in a JSON string (encoding/json escapes control
// characters, <, >, & and U+2028/9 as \uXXXX, and " and \ with a backslash).
func jsonSize(s string) int {
	n := 0
	for _, r := range s {
		n += jsonRuneSize(r)
	}
	return n
}

func jsonRuneSize(r rune) int {
	switch {
	case r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == 0x2028 || r == 0x2029:
		return 6
	case r == '"' || r == '\\':
		return 2
	case r == utf8.RuneError:
		return 6 // an invalid byte becomes \ufffd
	}
	return utf8.RuneLen(r)
}

// clipJSON shortens s to at most n bytes as a JSON string, marking the cut.
func clipJSON(s string, n int) string {
	if jsonSize(s) <= n {
		return s
	}
	const mark = " …(clipped)"
	budget := n - jsonSize(mark)
	for i, r := range s {
		if budget -= jsonRuneSize(r); budget < 0 {
			return s[:i] + mark
		}
	}
	return s
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
