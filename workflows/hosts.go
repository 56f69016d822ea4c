package workflows

import (
	"fmt"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// HostProgress is one host's state in a procedure, as its progress query shows it:
// the phase it is in (or stopped in) and HostPending, HostRunning, HostChanged,
// HostUnchanged, HostFailed or HostSkipped.
type HostProgress struct {
	Host    string `json:"host"`
	Role    string `json:"role,omitempty"` // ConsulBootstrap: server or client
	Phase   string `json:"phase"`
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

// hostTracker is the per-host bookkeeping of a procedure: the progress its query
// shows, what each host's activities changed and said, and which hosts are finished.
// Slices are indexed like the procedure's hosts; coroutines each write only their
// own host.
type hostTracker struct {
	hosts   []HostProgress
	changed []bool
	notes   [][]string
	final   []bool
}

// newHostTracker tracks hosts, every one pending in phase.
func newHostTracker(hosts []remote.Host, phase string) *hostTracker {
	t := &hostTracker{
		hosts:   make([]HostProgress, len(hosts)),
		changed: make([]bool, len(hosts)),
		notes:   make([][]string, len(hosts)),
		final:   make([]bool, len(hosts)),
	}
	for i, h := range hosts {
		t.hosts[i] = HostProgress{Host: h.Name, Phase: phase, State: HostPending}
	}
	return t
}

// index is the index of the named host; -1 when it is not tracked.
func (t *hostTracker) index(name string) int {
	for i := range t.hosts {
		if t.hosts[i].Host == name {
			return i
		}
	}
	return -1
}

// begin records that host i entered phase.
func (t *hostTracker) begin(i int, phase string) {
	t.hosts[i].Phase, t.hosts[i].State = phase, HostRunning
}

// note records what an activity did on host i: whether it changed the host, and
// what it said ("" says nothing).
func (t *hostTracker) note(i int, changed bool, msg string) {
	t.changed[i] = t.changed[i] || changed
	if msg != "" {
		t.notes[i] = append(t.notes[i], msg)
	}
}

// message is what host i's activities said, in order.
func (t *hostTracker) message(i int) string { return strings.Join(t.notes[i], "; ") }

// result is host i's state once all went well: changed or unchanged.
func (t *hostTracker) result(i int) string {
	if t.changed[i] {
		return HostChanged
	}
	return HostUnchanged
}

// finish records host i's final state.
func (t *hostTracker) finish(i int, state, msg string) {
	t.hosts[i].State, t.hosts[i].Message, t.final[i] = state, msg, true
}

// succeed finishes host i in phase with its result and message.
func (t *hostTracker) succeed(i int, phase string) {
	t.hosts[i].Phase = phase
	t.finish(i, t.result(i), t.message(i))
}

// fail finishes host i as failed in phase, the message prefixed with the phase.
func (t *hostTracker) fail(i int, phase, msg string) {
	t.hosts[i].Phase = phase
	t.finish(i, HostFailed, phase+": "+msg)
}

func (t *hostTracker) done(i int) bool   { return t.final[i] }
func (t *hostTracker) failed(i int) bool { return t.final[i] && t.hosts[i].State == HostFailed }

func (t *hostTracker) anyFailed() bool {
	for i := range t.hosts {
		if t.failed(i) {
			return true
		}
	}
	return false
}

// outcomes are the hosts' outcomes for the procedure's result. HostOutcome knows
// changed, unchanged and failed: a skipped host failed; one not finished is pending.
func (t *hostTracker) outcomes() []HostOutcome {
	out := make([]HostOutcome, len(t.hosts))
	for i, h := range t.hosts {
		switch {
		case !t.final[i]:
			out[i] = HostOutcome{Host: h.Host, State: HostPending}
		case h.State == HostSkipped:
			out[i] = HostOutcome{Host: h.Host, State: HostFailed, Message: h.Message}
		default:
			out[i] = HostOutcome{Host: h.Host, State: h.State, Message: h.Message}
		}
	}
	return out
}

// table is the hosts as the Markdown table of the Web UI's details, with a role
// column when roles is set.
func (t *hostTracker) table(roles bool) string {
	var b strings.Builder
	if roles {
		b.WriteString("| host | role | phase | state | message |\n|---|---|---|---|---|\n")
	} else {
		b.WriteString("| host | phase | state | message |\n|---|---|---|---|\n")
	}
	for _, h := range t.hosts {
		msg := strings.ReplaceAll(h.Message, "|", "\\|")
		if roles {
			b.WriteString(fmt.Sprintf("| %s | %s | %s | %s | %s |\n", h.Host, h.Role, h.Phase, h.State, msg))
		} else {
			b.WriteString(fmt.Sprintf("| %s | %s | %s | %s |\n", h.Host, h.Phase, h.State, msg))
		}
	}
	return b.String()
}
