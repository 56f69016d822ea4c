package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/spf13/cobra"

	"github.com/clusterflow/clusterflow/internal/config"
	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

// dryRun previews a playbook: every step's hosts, and for rollingNodeUpgrade steps
// the plan per node as the swarm stands (RollingNodeUpgrade with DryRun, which
// reads and changes nothing). It returns exitRefused when an upgrade would be
// refused.
func dryRun(ctx context.Context, s *session, plan *playbooks.Plan, out io.Writer) error {
	fmt.Fprintf(out, "dry run of playbook %s: nothing is changed\n", plan.Name)
	refused := false
	for i, step := range plan.Steps {
		fmt.Fprintf(out, "\nstep %d %q (%s) on %s\n", i+1, step.Name, step.Kind, strings.Join(step.Hosts, ", "))
		if step.Kind != playbooks.KindRollingNodeUpgrade {
			fmt.Fprintln(out, "  not previewed: runs as written on these hosts")
			continue
		}
		hosts := make([]playbooks.Host, 0, len(step.Hosts))
		for _, n := range step.Hosts {
			h, _ := plan.HostByName(n)
			hosts = append(hosts, h)
		}
		id := fmt.Sprintf("dry-run/%s/%d-%s", plan.Name, i+1, step.Kind)
		run, err := s.t.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
			ID: id, TaskQueue: workflows.TaskQueue,
			WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
			StaticSummary:            fmt.Sprintf("dry run of %s step %d", plan.Name, i+1),
		}, workflows.RollingNodeUpgrade, workflows.RollingUpgradeInput{
			Hosts: workflows.HostsOf(hosts), Cluster: workflows.HostsOf(plan.Hosts), Upgrade: *step.Upgrade, Timeout: step.Timeout, DryRun: true,
		})
		if err != nil {
			return withCode(exitNotReady, fmt.Errorf("starting %s: %w", id, err))
		}
		var res workflows.RollingUpgradeResult
		if err := run.Get(ctx, &res); err != nil {
			return withCode(exitFailed, fmt.Errorf("%s: %s", id, resultText(err)))
		}
		if printUpgradePlan(out, &res) {
			refused = true
		}
	}
	if refused {
		return withCode(exitRefused, errors.New("the upgrade would be refused as the swarm stands"))
	}
	return nil
}

// printUpgradePlan prints a RollingNodeUpgrade plan and reports whether it would
// be refused.
func printUpgradePlan(out io.Writer, res *workflows.RollingUpgradeResult) (refused bool) {
	fmt.Fprintf(out, "  engine %s, %d batch(es), asked through %s\n", res.Version, res.Batches, res.Manager)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  BATCH\tNODE\tROLE\tAVAILABILITY\tINSTALLED\tENGINE\tACTION\tNOTE")
	for _, p := range res.Plan {
		batch := "-"
		if p.Batch > 0 {
			batch = fmt.Sprint(p.Batch)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", batch, p.Host, p.Role, p.Availability, p.Installed, p.Engine, p.Action, p.Note)
	}
	tw.Flush()
	for _, b := range res.Boundaries {
		fmt.Fprintf(out, "  services now: %s\n", strings.Join(b.Services, ", "))
	}
	for _, h := range res.Hosts {
		if h.State == workflows.HostFailed {
			fmt.Fprintf(out, "  refused: %s: %s\n", h.Host, h.Message)
			refused = true
		}
	}
	return refused
}

func approveCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var batch int
	cmd := &cobra.Command{
		Use:   "approve PLAYBOOK|WORKFLOW_ID",
		Short: "Let a rolling upgrade that waits for approval go on to its next batch",
		Long: `approve sends the "approve" signal to the RollingNodeUpgrade run of the playbook (or to
the workflow named) for the batch it waits for, as its progress shows it. Without
the CLI, send the same from the Web UI: open the RollingNodeUpgrade run (a child
of the playbook's run), choose "Send a Signal", name "approve", input {"batch": N}.`,
		Example: `  starter approve upgrade
  starter approve playbook/upgrade/1-rollingNodeUpgrade --batch 3`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := connect(cmd, environ, stderr, false)
			if err != nil {
				return err
			}
			defer s.close()
			ctx := cmd.Context()
			id, err := upgradeRunOf(ctx, s.t.Client, workflowIDFor(args[0]))
			if err != nil {
				return err
			}
			v, err := s.t.Client.QueryWorkflow(ctx, id, "", workflows.ProgressQuery)
			if err != nil {
				return withCode(exitNotReady, fmt.Errorf("reading the progress of %s: %w", id, err))
			}
			var p workflows.RollingUpgradeProgress
			if err := v.Get(&p); err != nil {
				return fmt.Errorf("reading the progress of %s: %w", id, err)
			}
			if batch == 0 {
				if p.Waiting == 0 {
					return withCode(exitRefused, fmt.Errorf("%s is not waiting for approval (batch %d of %d in progress)", id, p.Batch, p.Batches))
				}
				batch = p.Waiting
			}
			if err := s.t.Client.SignalWorkflow(ctx, id, "", workflows.ApproveSignal, workflows.UpgradeApproval{Batch: batch, By: whoami()}); err != nil {
				return withCode(exitNotReady, fmt.Errorf("signalling %s: %w", id, err))
			}
			fmt.Fprintf(stdout, "approved batch %d of %d of %s\n", batch, p.Batches, id)
			return nil
		},
	}
	cmd.Flags().IntVar(&batch, "batch", 0, "the batch to approve; default: the one the run waits for")
	config.AddFlags(cmd.Flags())
	return cmd
}

// upgradeRunOf returns the ID of the open RollingNodeUpgrade run: id itself when it
// is one, else its pending child of that type.
func upgradeRunOf(ctx context.Context, c client.Client, id string) (string, error) {
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return "", withCode(exitRefused, fmt.Errorf("no run %s", id))
		}
		return "", withCode(exitNotReady, fmt.Errorf("describing %s: %w", id, err))
	}
	if d.GetWorkflowExecutionInfo().GetType().GetName() == workflows.RollingNodeUpgradeName {
		return id, nil
	}
	for _, ch := range d.GetPendingChildren() {
		if ch.GetWorkflowTypeName() == workflows.RollingNodeUpgradeName {
			return ch.GetWorkflowId(), nil
		}
	}
	return "", withCode(exitRefused, fmt.Errorf("%s has no rolling upgrade in progress", id))
}

// whoami names the approver for the run's record: user@host.
func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return name
}
