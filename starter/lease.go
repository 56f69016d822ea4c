package main

import (
	"context"
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/clusterflow/clusterflow/workflows"
)

// clusterHolder names the run that holds the lease on a cluster ("playbook/NAME (run
// ID)"), or returns "" when the cluster is free. RunPlaybook takes the lease itself
// and refuses a busy cluster too; asking first lets a refused run start nothing at all.
func clusterHolder(ctx context.Context, c client.Client, cluster string) (string, error) {
	if cluster == "" {
		return "", nil
	}
	d, err := c.DescribeWorkflowExecution(ctx, workflows.ClusterLockID(cluster), "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the lease on cluster %s: %w", cluster, err)
	}
	info := d.GetWorkflowExecutionInfo()
	if info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return "", nil
	}
	p := info.GetParentExecution()
	if p == nil {
		return workflows.ClusterLockID(cluster), nil
	}
	return fmt.Sprintf("%s (run %s)", p.GetWorkflowId(), p.GetRunId()), nil
}
