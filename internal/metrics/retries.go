package metrics

import (
	"context"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
)

// ActivityRetries is the counter of activity attempts after the first (exported as
// clusterflow_activity_retries_total). The SDK's activity metrics handler labels it
// with activity_type, workflow_type, task_queue and namespace.
const ActivityRetries = "clusterflow_activity_retries"

// RetryInterceptor counts, as each activity attempt starts, the attempts after the
// first: one increment per retry. Put it in
// worker.Options.Interceptors.
func RetryInterceptor() interceptor.WorkerInterceptor { return &retryInterceptor{} }

type retryInterceptor struct {
	interceptor.WorkerInterceptorBase
}

func (*retryInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &retryActivity{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}}
}

type retryActivity struct {
	interceptor.ActivityInboundInterceptorBase
}

func (a *retryActivity) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	if info := activity.GetInfo(ctx); info.Attempt > 1 {
		activity.GetMetricsHandler(ctx).Counter(ActivityRetries).Inc(1)
	}
	return a.Next.ExecuteActivity(ctx, in)
}
