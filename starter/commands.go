package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/spf13/cobra"

	"github.com/clusterflow/clusterflow/internal/app"
	"github.com/clusterflow/clusterflow/internal/config"
	"github.com/clusterflow/clusterflow/playbooks"
	"github.com/clusterflow/clusterflow/workflows"
)

// session is what a command that talks to Temporal holds: config, logger, the
// connection and, when needed, an in-process worker.
type session struct {
	cfg        config.Config
	log        *slog.Logger
	t          *app.Temporal
	stopWorker func()
}

func (s *session) close() {
	if s.stopWorker != nil {
		s.stopWorker()
	}
	if s.t != nil {
		s.t.Close()
	}
}

// connect loads the config and reaches Temporal. With needWorker, it also runs a
// worker in this process when no other worker polls the task queue, so that runs on
// the embedded server make progress with nothing else started.
func connect(cmd *cobra.Command, environ []string, stderr io.Writer, needWorker bool) (*session, error) {
	cfg, err := config.Load(cmd.Flags(), environ)
	if err != nil {
		return nil, withCode(exitRefused, err)
	}
	// The starter's own output is the table; keep the SDK's routine logs out of it
	// unless a log level was asked for.
	if !cmd.Flags().Changed("log-level") && !hasEnv(environ, "CLUSTERFLOW_LOG_LEVEL") {
		cfg.LogLevel = "warn"
	}
	s := &session{cfg: cfg, log: app.NewLogger(cfg, stderr)}
	if s.t, err = app.Connect(cmd.Context(), cfg, s.log); err != nil {
		return nil, withCode(exitNotReady, err)
	}
	if needWorker && (s.t.Mode == "embedded" || !hasPollers(cmd.Context(), s.t.Client)) {
		if s.stopWorker, err = app.StartWorker(s.t, cfg, s.log); err != nil {
			s.close()
			return nil, withCode(exitNotReady, err)
		}
	}
	return s, nil
}

func hasEnv(environ []string, name string) bool {
	for _, kv := range environ {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

func hasPollers(ctx context.Context, c client.Client) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.DescribeTaskQueue(ctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW)
	return err == nil && len(resp.GetPollers()) > 0
}

// loadPlaybook reads a playbook under the file policy of this configuration (the
// worker's, where the starter and the worker share it: --allow-path, --allow-read,
// the state and playbook directories), so that what validate and run accept the
// worker accepts too. The worker checks again what it opens.
func loadPlaybook(cmd *cobra.Command, environ []string, path string) (*playbooks.Plan, error) {
	cfg, err := config.Load(cmd.Flags(), environ)
	if err != nil {
		return nil, err
	}
	files, err := cfg.FilePolicy()
	if err != nil {
		return nil, err
	}
	return playbooks.LoadWith(path, playbooks.Options{Files: files})
}

func validateCommand(environ []string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate PLAYBOOK...",
		Short: "Check playbooks without starting anything",
		Example: `  starter validate playbooks/hello.yaml
  starter validate playbooks/*.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, path := range args {
				plan, err := loadPlaybook(cmd, environ, path)
				if err != nil {
					bad++
					fmt.Fprintln(stdout, err)
					continue
				}
				fmt.Fprintf(stdout, "%s: ok: playbook %s, %d hosts, %d steps\n", path, plan.Name, len(plan.Hosts), len(plan.Steps))
			}
			if bad > 0 {
				return withCode(exitRefused, fmt.Errorf("%d of %d playbooks invalid: %w", bad, len(args), errReported))
			}
			return nil
		},
	}
	config.AddFlags(cmd.Flags())
	return cmd
}

func statusCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var follow bool
	var output string
	cmd := &cobra.Command{
		Use:   "status PLAYBOOK|WORKFLOW_ID",
		Short: "Show the per-host, per-step state of a playbook's latest run",
		Example: `  starter status hello
  starter status hello --follow
  starter status playbook/hello --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			s, err := connect(cmd, environ, stderr, true)
			if err != nil {
				return err
			}
			defer s.close()
			id := workflowIDFor(args[0])
			desc, err := s.t.Client.DescribeWorkflowExecution(cmd.Context(), id, "")
			if err != nil {
				return withCode(exitNotReady, fmt.Errorf("no run %s: %w", id, err))
			}
			runID := desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
			f := newFollower(s, id, runID, output, stdout)
			if follow {
				return f.follow(cmd.Context(), s.t.Client.GetWorkflow(cmd.Context(), id, runID))
			}
			return f.once(cmd.Context(), desc.GetWorkflowExecutionInfo().GetStatus())
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep following until the run ends")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	config.AddFlags(cmd.Flags())
	return cmd
}

func listCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var limit int
	var query string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List playbook runs, newest first",
		Example: `  starter list
  starter list --query 'ClusterflowCluster = "lab" AND ClusterflowOutcome = "failed"'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := connect(cmd, environ, stderr, false)
			if err != nil {
				return err
			}
			defer s.close()
			q := fmt.Sprintf("WorkflowType = %q", workflows.RunPlaybookName)
			if query != "" {
				q += " AND (" + query + ")"
			}
			resp, err := s.t.Client.ListWorkflow(cmd.Context(), &workflowservice.ListWorkflowExecutionsRequest{
				Namespace: s.t.Namespace, Query: q, PageSize: int32(limit),
			})
			if err != nil {
				return withCode(exitNotReady, fmt.Errorf("listing runs (%s): %w", q, err))
			}
			tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORKFLOW ID\tSTATUS\tOUTCOME\tCLUSTER\tSTARTED\tDURATION\tRUN ID")
			for _, e := range resp.GetExecutions() {
				sa := e.GetSearchAttributes().GetIndexedFields()
				start := e.GetStartTime().AsTime()
				dur := "-"
				if e.GetCloseTime() != nil && !e.GetCloseTime().AsTime().IsZero() {
					dur = e.GetCloseTime().AsTime().Sub(start).Round(time.Second).String()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.GetExecution().GetWorkflowId(),
					statusName(e.GetStatus()), payloadString(sa[workflows.SAOutcome.GetName()].GetData()),
					payloadString(sa[workflows.SACluster.GetName()].GetData()),
					start.Local().Format("2006-01-02 15:04:05"), dur, e.GetExecution().GetRunId())
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "how many runs to show")
	cmd.Flags().StringVar(&query, "query", "", "extra visibility query, ANDed with the playbook filter")
	config.AddFlags(cmd.Flags())
	return cmd
}

func cancelCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "cancel PLAYBOOK|WORKFLOW_ID",
		Short: "Cancel a running playbook; its remote commands are stopped",
		Example: `  starter cancel hello
  starter cancel hello --wait=false`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := connect(cmd, environ, stderr, true)
			if err != nil {
				return err
			}
			defer s.close()
			id := workflowIDFor(args[0])
			if err := s.t.Client.CancelWorkflow(cmd.Context(), id, ""); err != nil {
				var nf *serviceerror.NotFound
				if errors.As(err, &nf) {
					return withCode(exitRefused, fmt.Errorf("no open run %s", id))
				}
				return withCode(exitNotReady, fmt.Errorf("cancelling %s: %w", id, err))
			}
			fmt.Fprintf(stdout, "cancellation requested for %s\n", id)
			if !wait {
				return nil
			}
			err = s.t.Client.GetWorkflow(cmd.Context(), id, "").Get(cmd.Context(), nil)
			fmt.Fprintf(stdout, "%s ended: %s\n", id, resultText(err))
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the run has stopped")
	config.AddFlags(cmd.Flags())
	return cmd
}

// workflowIDFor maps a playbook name to its workflow ID; anything with a slash is
// taken as a workflow ID already.
func workflowIDFor(arg string) string {
	if strings.Contains(arg, "/") {
		return arg
	}
	return workflows.WorkflowID(arg)
}

func statusName(s enumspb.WorkflowExecutionStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "WORKFLOW_EXECUTION_STATUS_"))
}

func payloadString(data []byte) string {
	var s string
	if len(data) == 0 || json.Unmarshal(data, &s) != nil {
		return "-"
	}
	return s
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return withCode(exitRefused, fmt.Errorf("--output %q: use text or json", o))
	}
	return nil
}

func resultText(err error) string {
	if err == nil {
		return "completed"
	}
	return err.Error()
}
