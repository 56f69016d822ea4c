package workflows

import "go.temporal.io/sdk/workflow"

// boundedFanOut starts items 0..n-1 in order, at most limit at a time, and returns once
// every started item is done. start schedules item k and returns its future; done
// receives that future when it is ready. Before each start, more must hold (failure
// budget left, run not cancelled). It returns how many items were started, so the
// caller can account for the rest.
//
// It uses a selector, no coroutines: items start, and their results are handled, in a
// deterministic order.
func boundedFanOut(ctx workflow.Context, n, limit int, more func() bool,
	start func(k int) workflow.Future, done func(k int, f workflow.Future)) int {
	sel := workflow.NewSelector(ctx)
	running, next := 0, 0
	for next < n || running > 0 {
		for next < n && running < limit && more() {
			k := next
			sel.AddFuture(start(k), func(f workflow.Future) { done(k, f) })
			running++
			next++
		}
		if running == 0 {
			break
		}
		sel.Select(ctx)
		running--
	}
	return next
}
