package activities

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// HostProgress is the heartbeat detail of the Docker and Consul activities.
// Changed survives into the next attempt (it is read back from the last
// heartbeat), so that an attempt that finds the work done by a killed predecessor
// still reports a change.
type HostProgress struct {
	Phase      string `json:"phase"`
	Changed    bool   `json:"changed,omitempty"`
	ElapsedMs  int64  `json:"elapsedMs"`
	LastLine   string `json:"lastLine,omitempty"`
	BytesDone  int64  `json:"bytesDone,omitempty"`
	BytesTotal int64  `json:"bytesTotal,omitempty"`
}

// hostOp is one activity execution on one host, made of several remote steps: its
// phase and whether it changed the host, shared with the heartbeat goroutine.
type hostOp struct {
	rem   typedRemote
	host  remote.Host
	start time.Time

	mu       sync.Mutex
	phase    string
	changed  bool
	lastLine string
	sent     *atomic.Int64 // bytes of the upload in progress; nil when none
	total    int64
	record   func() // records a heartbeat now; nil outside activities
}

// beginOp starts an activity's bookkeeping and its heartbeat goroutine (a heartbeat
// at least every `every`). A change recorded by the previous attempt (heartbeat
// details) is carried over. Call the returned function when the activity ends.
func beginOp(ctx context.Context, rem typedRemote, h remote.Host, every time.Duration) (*hostOp, func()) {
	op := &hostOp{rem: rem, host: h, start: time.Now(), phase: "start"}
	if !activity.IsActivity(ctx) {
		return op, func() {}
	}
	if activity.HasHeartbeatDetails(ctx) {
		var prev HostProgress
		if err := activity.GetHeartbeatDetails(ctx, &prev); err == nil && prev.Changed {
			op.changed = true
		}
	}
	op.record = func() { activity.RecordHeartbeat(ctx, op.snapshot()) }
	return op, remote.Tick(ctx, heartbeatInterval(ctx, every), op.record)
}

func (op *hostOp) snapshot() HostProgress {
	op.mu.Lock()
	defer op.mu.Unlock()
	p := HostProgress{Phase: op.phase, Changed: op.changed, ElapsedMs: time.Since(op.start).Milliseconds(), LastLine: op.lastLine}
	if op.sent != nil {
		p.BytesDone, p.BytesTotal = op.sent.Load(), op.total
	}
	return p
}

// acting marks the start of a change to the host. The heartbeat goes out at once,
// so that an attempt killed from here on leaves Changed for the next one.
func (op *hostOp) acting(phase string) {
	op.mu.Lock()
	op.phase, op.changed = phase, true
	op.mu.Unlock()
	if op.record != nil {
		op.record()
	}
}

func (op *hostOp) setPhase(phase string) {
	op.mu.Lock()
	op.phase = phase
	op.mu.Unlock()
}

// note shows line as the last line of the heartbeats.
func (op *hostOp) note(line string) {
	op.mu.Lock()
	op.lastLine = line
	op.mu.Unlock()
}

func (op *hostOp) changedSoFar() bool {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.changed
}

// sending shows an upload of total bytes in the heartbeats until stop is called;
// the transfer counts into sent.
func (op *hostOp) sending(total int64) (sent *atomic.Int64, stop func()) {
	sent = new(atomic.Int64)
	op.mu.Lock()
	op.sent, op.total = sent, total
	op.mu.Unlock()
	return sent, func() {
		op.mu.Lock()
		op.sent, op.total = nil, 0
		op.mu.Unlock()
	}
}

// run executes c on the op's host, with sudo when the host asks for it, keeping
// the output's last line for heartbeats.
func (op *hostOp) run(ctx context.Context, phase string, c remote.Cmd) (remote.Result, error) {
	return op.runAs(ctx, phase, c, op.host.Sudo)
}

// runAs is run with an explicit choice of sudo.
func (op *hostOp) runAs(ctx context.Context, phase string, c remote.Cmd, sudo bool) (remote.Result, error) {
	op.setPhase(phase)
	c.Sudo = sudo
	c.ProgressEvery = time.Second
	c.Progress = func(_ time.Duration, last string) { op.note(last) }
	return op.rem.run(ctx, op.host, c)
}

// filePhase follows ensureFile's phases: sending content is a change.
func (op *hostOp) filePhase(phase string) {
	if phase == "upload" {
		op.acting(phase)
		return
	}
	op.setPhase(phase)
}
