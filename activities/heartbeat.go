package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// defaultHeartbeat is the longest gap between two heartbeats of a long activity;
// shorter when the activity's heartbeat timeout asks for it (heartbeatInterval).
const defaultHeartbeat = 5 * time.Second

// heartbeatInterval is def, or a third of the activity's heartbeat timeout when that
// is shorter, so that a heartbeat always lands in time.
func heartbeatInterval(ctx context.Context, def time.Duration) time.Duration {
	if !activity.IsActivity(ctx) {
		return def
	}
	if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 && hb/3 < def {
		return max(hb/3, 100*time.Millisecond)
	}
	return def
}

// heartbeats records details() every heartbeatInterval(ctx, every) until the
// returned stop is called, so that an activity made of several remote steps never
// goes silent. Outside an activity context (direct calls in tests) it does nothing.
func heartbeats(ctx context.Context, every time.Duration, details func() any) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	return remote.Tick(ctx, heartbeatInterval(ctx, every), func() { activity.RecordHeartbeat(ctx, details()) })
}

// recordHeartbeat records one heartbeat, when in an activity.
func recordHeartbeat(ctx context.Context, details any) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, details)
	}
}

// commandProgress is a remote.Cmd progress callback that heartbeats a
// CommandProgress of phase every heartbeatInterval(ctx, every). Outside an
// activity it does nothing.
func commandProgress(ctx context.Context, c remote.Cmd, every time.Duration, phase string) remote.Cmd {
	if activity.IsActivity(ctx) {
		c.ProgressEvery = heartbeatInterval(ctx, every)
		c.Progress = func(elapsed time.Duration, last string) {
			activity.RecordHeartbeat(ctx, CommandProgress{Phase: phase, ElapsedMs: elapsed.Milliseconds(), LastLine: last})
		}
	}
	return c
}

// attemptNote names the activity attempt when it is not the first.
func attemptNote(ctx context.Context) string {
	if !activity.IsActivity(ctx) {
		return ""
	}
	if n := activity.GetInfo(ctx).Attempt; n > 1 {
		return fmt.Sprintf("; attempt %d", n)
	}
	return ""
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
