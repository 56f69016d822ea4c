package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/clusterflow/clusterflow/activities"
	"github.com/clusterflow/clusterflow/activities/remote"
	"github.com/clusterflow/clusterflow/playbooks"
)

// The activity and child workflow presets of every workflow, in one place. Each says
// what it serves; a comment marks each value that is not the SDK's default. Callers
// copy a preset and set its Summary (the line the Web UI shows for the call).

// nonRetryable are the error types an activity returns for what the same input would
// hit again, as activities/errors.go's table fixes them (the one place that decides).
// Activities already return these errors as non-retryable; every retry
// policy lists them as well, so that an error that loses its flag on the way (a
// wrapped one) still stops at once.
var nonRetryable = activities.NonRetryableErrorTypes()

var (
	// hostHeartbeat bounds how long a host activity may go silent. It is also how
	// soon a step resumes on another worker after its worker died mid-step.
	hostHeartbeat = 20 * time.Second
	// runHeartbeat is hostHeartbeat for the command activities of run steps, which
	// heartbeat every third of it from their start whatever the host does (and the
	// worker sends heartbeats at least every second): a run step of a killed worker
	// is retried on another within about 3 s. Uploads keep hostHeartbeat: they
	// checksum the source before their first heartbeat.
	runHeartbeat = 3 * time.Second
)

// hostRetry is the retry policy of the procedures' host activities: attempts tries,
// waits doubling from 2 s up to maxInterval.
func hostRetry(attempts int32, maxInterval time.Duration) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        2 * time.Second, // default 1 s: a host that refused once is asked again less eagerly
		BackoffCoefficient:     2,
		MaximumInterval:        maxInterval, // default 100 × the initial interval
		MaximumAttempts:        attempts,    // default unlimited
		NonRetryableErrorTypes: nonRetryable,
	}
}

// Presets of activities that work on the worker's own files.
var (
	// loadOptions read a playbook file on the worker: quick, and bad input is final.
	loadOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			MaximumAttempts:        5, // default unlimited
			NonRetryableErrorTypes: nonRetryable,
		},
	}
	// workerFileOptions serve the activities on the worker's key files (the cluster
	// key, the operator's known_hosts, the gossip key): they take milliseconds, so no
	// heartbeat; a few retries for I/O hiccups.
	workerFileOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        3, // default unlimited
			NonRetryableErrorTypes: nonRetryable,
		},
	}
)

// hostOptions is the preset for the activity of one host of a run or upload step
// (and DistributeKeys' host activities): the step's timeout and attempts.
func hostOptions(step playbooks.Step, host remote.Host) workflow.ActivityOptions {
	heartbeat := hostHeartbeat
	if step.Kind == playbooks.KindRun {
		heartbeat = runHeartbeat
	}
	return workflow.ActivityOptions{
		StartToCloseTimeout: step.Timeout.Std(),
		// A dead worker's attempt is retried within seconds.
		HeartbeatTimeout: heartbeat,
		// A cancelled run has stopped its remote commands before it reports cancelled.
		WaitForCancellation: true,
		Summary:             fmt.Sprintf("%s on %s", step.Name, host.Name),
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        30 * time.Second,     // default 100 s
			MaximumAttempts:        int32(step.Attempts), // default unlimited
			NonRetryableErrorTypes: nonRetryable,
		},
	}
}

// Presets of InstallDocker.
var (
	// dockerQuickOptions serve the short activities: OS detection, daemon.json,
	// group membership, engine start (which waits up to a minute for the engine)
	// and the API check.
	dockerQuickOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		// A dead worker's attempt is retried within 20 s.
		HeartbeatTimeout: hostHeartbeat,
		// A cancelled run stops its remote commands before it reports cancelled.
		WaitForCancellation: true,
		RetryPolicy:         hostRetry(5, 30*time.Second),
	}
	// dockerPackageOptions serve InstallDockerPackages.
	dockerPackageOptions = workflow.ActivityOptions{
		// apt on a slow mirror, or a large offline bundle over a slow link, takes
		// minutes.
		StartToCloseTimeout: 20 * time.Minute,
		// Heartbeats come from the worker every few seconds whatever apt prints; a
		// killed worker's install is retried on another worker after this.
		HeartbeatTimeout:    30 * time.Second,
		WaitForCancellation: true,
		// Lock contention (another apt run) asks for a retry in 15 s; an unreachable
		// mirror backs off to a minute between tries.
		RetryPolicy: hostRetry(8, time.Minute),
	}
)

// Presets of ConsulBootstrap (EnsureGossipKey uses workerFileOptions).
var (
	// consulInstallOptions serve InstallConsul: a binary of over 100 MiB over a slow
	// link, or apt on a slow mirror, takes minutes.
	consulInstallOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 20 * time.Minute,
		// Heartbeats come every few seconds whatever the transfer does.
		HeartbeatTimeout:    30 * time.Second,
		WaitForCancellation: true,
		RetryPolicy:         hostRetry(6, time.Minute),
	}
	// consulQuickOptions serve ConfigureConsul and StartConsul (which waits up to a
	// minute for the agent).
	consulQuickOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 3 * time.Minute,
		HeartbeatTimeout:    hostHeartbeat,
		WaitForCancellation: true,
		RetryPolicy:         hostRetry(5, 30*time.Second),
	}
	// consulVerifyOptions serve VerifyConsul, which polls the API for up to two
	// minutes: one more try after that is enough.
	consulVerifyOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 4 * time.Minute,
		HeartbeatTimeout:    hostHeartbeat,
		WaitForCancellation: true,
		RetryPolicy:         hostRetry(2, 30*time.Second),
	}
)

// Presets of the swarm procedures: SwarmInit, SwarmNodes, DeployService, RotateCA,
// CheckCertificates, RollingNodeUpgrade.
var (
	// swarmOptions serve the swarm activities: API calls plus waits of up to 90 s
	// for a node to be ready or to settle in its role.
	swarmOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    hostHeartbeat,
		WaitForCancellation: true,
		RetryPolicy:         hostRetry(6, 30*time.Second),
	}
	// watchOptions serve WatchService: each call returns within about a minute
	// (on a change, an outcome or its MaxWait), heartbeating every poll.
	watchOptions = workflow.ActivityOptions{
		StartToCloseTimeout: 3 * time.Minute,
		HeartbeatTimeout:    hostHeartbeat,
		WaitForCancellation: true,
		RetryPolicy:         swarmOptions.RetryPolicy,
	}
	// buildOptions serve BuildImage: a build takes minutes; heartbeats come every
	// few seconds whatever the builder prints. A failed build is final; a retry
	// after a dead worker finds the image built, or builds again.
	buildOptions = func() workflow.ActivityOptions {
		o := swarmOptions
		o.StartToCloseTimeout = time.Hour
		o.RetryPolicy = hostRetry(3, 30*time.Second)
		return o
	}()
	// imageLoadOptions serve LoadImage and DistributeImage: a large image over a
	// slow link.
	imageLoadOptions = func() workflow.ActivityOptions {
		o := swarmOptions
		o.StartToCloseTimeout = 30 * time.Minute
		return o
	}()
	// caOptions serve the CA activities: API calls, and watches that return
	// within caWatch when nothing changes.
	caOptions = swarmWaitOptions(caWatch)
	// caWatch is how long one WatchCARotation waits for a change: each change, or
	// each caWatch without one, is one activity in the history.
	caWatch = time.Minute
)

// swarmWaitOptions is swarmOptions for an activity that waits up to wait: a drain,
// a node Ready, the services converged.
func swarmWaitOptions(wait time.Duration) workflow.ActivityOptions {
	o := swarmOptions
	o.StartToCloseTimeout = wait + 2*time.Minute
	return o
}

// withSummary is a preset with the line the Web UI shows for the call.
func withSummary(ctx workflow.Context, o workflow.ActivityOptions, summary string) workflow.Context {
	o.Summary = summary
	return workflow.WithActivityOptions(ctx, o)
}

// childOptions is the preset of a procedure's child workflows: RunPlaybook's step
// procedures, RollingNodeUpgrade's InstallDocker batches, CheckCertificates'
// rotation. The ID is derived from the parent's, so the child is found beside it.
func childOptions(ctx workflow.Context, id, summary string) workflow.Context {
	return workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID: id,
		// A cancelled parent waits until its child has stopped its hosts' commands.
		WaitForCancellation: true,
		StaticSummary:       summary,
	})
}

// leaseOptions is the preset of a run's ClusterLock child.
func leaseOptions(ctx workflow.Context, cluster, holder string) workflow.Context {
	return workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		// Fixed per cluster: the server refuses a second open lease.
		WorkflowID:          ClusterLockID(cluster),
		WaitForCancellation: true,
		// The default, said out loud: the lease ends with its run, however it ends.
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_TERMINATE,
		StaticSummary:     fmt.Sprintf("cluster %s held by %s", cluster, holder),
	})
}
