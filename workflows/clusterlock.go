package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/playbooks"
)

// ErrClusterBusy: another run holds the cluster's lease; nothing was started on its hosts.
const ErrClusterBusy = "ClusterBusy"

// clusterLockChange versions RunPlaybook's lease on its cluster: runs recorded before
// it took no lease and replay without one.
const clusterLockChange = "cluster-lock"

// ClusterLockID is the fixed workflow ID of the lease on a cluster. While a
// ClusterLock runs under it, no other run can start one: the server refuses a second
// open workflow with the same ID.
func ClusterLockID(cluster string) string { return "cluster-lock/" + cluster }

// ClusterLockInput names the cluster and the run that holds its lease.
type ClusterLockInput struct {
	Cluster string `json:"cluster"`
	Holder  string `json:"holder"` // the holding run's workflow ID
}

// ClusterLock is a run's lease on its cluster, started as the run's child. It does
// nothing but stay open: the run releases it by cancelling it before it ends, and if
// the run is terminated instead, the server terminates the lease with it (parent
// close policy TERMINATE), so a lease never outlives its run.
func ClusterLock(ctx workflow.Context, in ClusterLockInput) error {
	if in.Cluster == "" || in.Holder == "" {
		return invalidInput("ClusterLock needs cluster and holder")
	}
	err := workflow.Await(ctx, func() bool { return false })
	if temporal.IsCanceledError(err) {
		return nil // released
	}
	return err
}

// lease is a run's hold on its cluster; nil when the run holds none.
type lease struct {
	release workflow.CancelFunc
	lock    workflow.ChildWorkflowFuture
}

// acquireLease takes the lease on the plan's cluster (metadata.cluster) before any
// host is touched. A cluster whose lease another run holds is refused at once,
// non-retryable, naming the lease; `starter run` checks the same lease before it
// starts anything and names the holding run. Plans without a cluster name take no
// lease.
func acquireLease(ctx workflow.Context, plan *playbooks.Plan) (*lease, error) {
	if plan.Cluster == "" {
		return nil, nil
	}
	if workflow.GetVersion(ctx, clusterLockChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return nil, nil
	}
	holder := workflow.GetInfo(ctx).WorkflowExecution.ID
	lctx, release := workflow.WithCancel(ctx)
	lctx = leaseOptions(lctx, plan.Cluster, holder)
	lock := workflow.ExecuteChildWorkflow(lctx, ClusterLock, ClusterLockInput{Cluster: plan.Cluster, Holder: holder})
	if err := lock.GetChildWorkflowExecution().Get(ctx, nil); err != nil {
		release()
		var busy *temporal.ChildWorkflowExecutionAlreadyStartedError
		if errors.As(err, &busy) {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf(
				"refused: cluster %s is in use by another run (its lease %s is open); nothing was started on its hosts. "+
					"`starter list` shows the open runs; wait for that one to end or cancel it",
				plan.Cluster, ClusterLockID(plan.Cluster)), ErrClusterBusy, nil)
		}
		return nil, fmt.Errorf("taking the lease on cluster %s: %w", plan.Cluster, err)
	}
	return &lease{release: release, lock: lock}, nil
}

// end releases the lease and waits until it is closed, so that a run started right
// after this one ends finds the cluster free.
func (l *lease) end(ctx workflow.Context) {
	if l == nil {
		return
	}
	l.release()
	if err := l.lock.Get(ctx, nil); err != nil && !temporal.IsCanceledError(err) {
		workflow.GetLogger(ctx).Warn("cluster lease not released cleanly", "error", err)
	}
}
