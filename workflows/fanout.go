package workflows

import "go.temporal.io/sdk/workflow"

// fanOut is the one way the workflows fan out over hosts. It starts items 0..n-1 in
// order, at most limit at a time (limit < 1: all at once), and returns once every
// started item is done. start schedules item k and returns its future; done receives
// that future when it is ready. Before each start, more must hold (failure budget
// left, run not cancelled; nil: always). It returns how many items were started, so
// the caller can account for the rest.
//
// It uses a selector: items start, and their results are handled, in a
// deterministic order. An item that runs several activities in a row starts a
// coroutine for them with inCoroutine.
func fanOut(ctx workflow.Context, n, limit int, more func() bool,
	start func(k int) workflow.Future, done func(k int, f workflow.Future)) int {
	if limit < 1 {
		limit = n
	}
	if more == nil {
		more = func() bool { return true }
	}
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

// inCoroutine runs fn in a coroutine of its own and returns a future that is ready
// when fn has returned: an item of fanOut that is a sequence of activities.
func inCoroutine(ctx workflow.Context, fn func(ctx workflow.Context)) workflow.Future {
	f, set := workflow.NewFuture(ctx)
	workflow.Go(ctx, func(ctx workflow.Context) {
		defer set.Set(nil, nil)
		fn(ctx)
	})
	return f
}

// eachHost runs fn for items 0..n-1, each in its own coroutine, at most limit at a
// time (limit < 1: all at once), and waits for all of them. The first limit items
// always start (each sees a cancellation itself); the later ones only while the run
// is not cancelled. It returns how many were started: the caller accounts for the
// rest.
func eachHost(ctx workflow.Context, n, limit int, fn func(ctx workflow.Context, k int)) int {
	if limit < 1 || limit > n {
		limit = n
	}
	started := 0
	return fanOut(ctx, n, limit, func() bool { return started < limit || ctx.Err() == nil },
		func(k int) workflow.Future {
			started++
			return inCoroutine(ctx, func(ctx workflow.Context) { fn(ctx, k) })
		},
		func(int, workflow.Future) {})
}
