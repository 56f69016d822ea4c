package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/spf13/cobra"

	"github.com/clusterflow/clusterflow/internal/config"
	"github.com/clusterflow/clusterflow/workflows"
)

func runCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var detach, preview bool
	var output string
	cmd := &cobra.Command{
		Use:   "run PLAYBOOK",
		Short: "Validate a playbook, start it as a durable run and follow it",
		Long: `run validates the playbook (nothing starts if it is invalid), starts RunPlaybook under the
workflow ID playbook/NAME (a second run of the same playbook while one is open is
refused, and so is a run on a cluster (metadata.cluster) that another run holds),
prints the run's ID and Web UI link, and follows it with a live per-host,
per-step table until it ends. Interrupting the starter does not stop the run: follow
it again with "starter status NAME --follow", or stop it with "starter cancel NAME".`,
		Example: `  starter run playbooks/hello.yaml
  starter run --detach playbooks/hello.yaml
  starter run --output json playbooks/hello.yaml | jq .outcome
  starter run --dry-run playbooks/upgrade.yaml
  starter run --address temporal.internal:7233 playbooks/hello.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			// Step 1. Load, validate and resolve: bad input starts nothing.
			plan, err := loadPlaybook(cmd, environ, args[0])
			if err != nil {
				fmt.Fprintln(stderr, err)
				return withCode(exitRefused, fmt.Errorf("%s is invalid; nothing was started: %w", args[0], errReported))
			}
			// Step 2. Reach Temporal, with a worker in this process if none polls.
			s, err := connect(cmd, environ, stderr, !detach || preview)
			if err != nil {
				return err
			}
			defer s.close()
			if preview {
				return dryRun(cmd.Context(), s, plan, stdout)
			}
			// Step 3. Start under the playbook's business ID; refuse a duplicate, and a
			// run while another one holds the cluster.
			id := workflows.WorkflowID(plan.Name)
			if holder, err := clusterHolder(cmd.Context(), s.t.Client, plan.Cluster); err != nil {
				return withCode(exitNotReady, err)
			} else if holder != "" && holder != id && !strings.HasPrefix(holder, id+" ") {
				return withCode(exitNotReady, fmt.Errorf("refused: cluster %s is in use by %s; nothing was started. "+
					"Wait for that run to end, or stop it with `starter cancel`", plan.Cluster, holder))
			}
			run, err := s.t.Client.ExecuteWorkflow(cmd.Context(), client.StartWorkflowOptions{
				ID:                       id,
				TaskQueue:                workflows.TaskQueue,
				WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
				WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
				// Without this the SDK quietly hands back the run already open.
				WorkflowExecutionErrorWhenAlreadyStarted: true,
				StaticSummary:                            fmt.Sprintf("playbook %s (%d hosts, %d steps)", plan.Name, len(plan.Hosts), len(plan.Steps)),
			}, workflows.RunPlaybook, workflows.RunPlaybookInput{Plan: plan})
			if err != nil {
				var started *serviceerror.WorkflowExecutionAlreadyStarted
				if errors.As(err, &started) {
					return withCode(exitNotReady, fmt.Errorf("playbook %s is already running (workflow %s, run %s); "+
						"follow it with `starter status %s --follow` or stop it with `starter cancel %s`",
						plan.Name, id, started.RunId, plan.Name, plan.Name))
				}
				return withCode(exitNotReady, fmt.Errorf("starting %s: %w", id, err))
			}
			f := newFollower(s, id, run.GetRunID(), output, stdout)
			if detach {
				return f.started()
			}
			f.announce()
			return f.follow(cmd.Context(), run)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "start the run and return; a worker must be running")
	cmd.Flags().BoolVar(&preview, "dry-run", false, "print the plan (per node for rollingNodeUpgrade steps) and change nothing")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text (live table) or json (the final result)")
	config.AddFlags(cmd.Flags())
	return cmd
}

// started prints the IDs of a detached run.
func (f *follower) started() error {
	if f.output == "json" {
		return json.NewEncoder(f.out).Encode(map[string]string{
			"workflowId": f.id, "runId": f.runID, "link": f.s.t.RunLink(f.id, f.runID),
		})
	}
	f.announce()
	if !hasPollers(f.ctxOrBackground(), f.s.t.Client) {
		fmt.Fprintln(f.out, "note: no worker polls the clusterflow task queue yet; the run waits until one starts (`worker`)")
	}
	return nil
}
