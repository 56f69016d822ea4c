package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/spf13/cobra"

	"github.com/clusterflow/clusterflow/internal/config"
	"github.com/clusterflow/clusterflow/workflows"
)

// Memo keys of the schedules the starter creates: what `schedule list` shows without
// describing each schedule.
const (
	memoPlaybook = "playbook" // the playbook's name
	memoInput    = "input"    // where each run reads its playbook from
	memoSpec     = "spec"     // when it runs, as the flags said it
)

func scheduleCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Run playbooks on a timetable (Temporal Schedules)",
		Long: `schedule manages Temporal Schedules that start RunPlaybook: on cron expressions or at a
fixed interval, with an overlap policy (skip by default: no second run while one is
open), a catch-up window for firings missed while Temporal was down, and jitter.

Each firing starts a run under the workflow ID playbook/NAME-<time>, and reads the
playbook file afresh on the worker, from the worker's playbook directory
(--playbook-dir): edits to the file apply from the next firing. Schedules fire only
while Temporal runs, and their runs progress only while a worker runs: on the
embedded server, keep "worker" running. They also appear on the Web UI's Schedules
page.`,
		Example: `  starter schedule create playbooks/cert-check.yaml --cron '0 6 * * MON' --jitter 10m
  starter schedule create playbooks/rotate-ca.yaml --every 90d --overlap skip --catchup-window 24h
  starter schedule list
  starter schedule describe cert-check
  starter schedule trigger cert-check
  starter schedule pause cert-check --note 'CA maintenance'
  starter schedule delete cert-check`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withCode(exitRefused, errors.New("name a subcommand: create, list, describe, pause, unpause, trigger or delete"))
		},
	}
	cmd.AddCommand(
		scheduleCreateCommand(environ, stdout, stderr),
		scheduleListCommand(environ, stdout, stderr),
		scheduleDescribeCommand(environ, stdout, stderr),
		schedulePauseCommand(environ, stdout, stderr, true),
		schedulePauseCommand(environ, stdout, stderr, false),
		scheduleTriggerCommand(environ, stdout, stderr),
		scheduleDeleteCommand(environ, stdout, stderr),
	)
	return cmd
}

func scheduleCreateCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var t timing
	var id, note string
	var paused, snapshot bool
	cmd := &cobra.Command{
		Use:   "create PLAYBOOK",
		Short: "Validate a playbook and schedule its runs",
		Long: `create validates the playbook (nothing is created if it is invalid) and creates a schedule,
named after the playbook unless --id is given, whose firings start RunPlaybook.

The schedule stores the playbook's name relative to the playbook directory
(--playbook-dir, default playbooks/), and each run loads that file on the worker,
so the file must lie in that directory and the worker must use the same one. With
--snapshot it stores the plan as resolved now instead: later edits to the file
are then ignored.

Durations take Go's units (s, m, h) and days: 30s, 15m, 6h, 90d, 1d12h. Cron
expressions are evaluated in UTC unless --timezone is given.`,
		Example: `  starter schedule create playbooks/cert-check.yaml --cron '0 6 * * MON'
  starter schedule create playbooks/cert-check.yaml --cron '0 6 * * MON' --cron '0 6 1 * *' --jitter 10m
  starter schedule create playbooks/rotate-ca.yaml --every 90d --offset 6h --catchup-window 24h
  starter schedule create playbooks/hello.yaml --every 1h --id hello-hourly --paused --note 'enable after review'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Step 1. Check the flags and the playbook: bad input creates nothing.
			times, err := t.resolve()
			if err != nil {
				return withCode(exitRefused, err)
			}
			plan, err := loadPlaybook(cmd, environ, args[0])
			if err != nil {
				fmt.Fprintln(stderr, err)
				return withCode(exitRefused, fmt.Errorf("%s is invalid; no schedule was created: %w", args[0], errReported))
			}
			cfg, err := config.Load(cmd.Flags(), environ)
			if err != nil {
				return withCode(exitRefused, err)
			}
			in := workflows.RunPlaybookInput{Plan: plan}
			if !snapshot {
				ref, err := playbookRef(args[0], cfg.PlaybookDir)
				if err != nil {
					return withCode(exitRefused, err)
				}
				in = workflows.RunPlaybookInput{Playbook: ref}
			}
			if id == "" {
				id = plan.Name
			}

			// Step 2. Reach Temporal; the schedule needs no worker to be created.
			s, err := connect(cmd, environ, stderr, false)
			if err != nil {
				return err
			}
			defer s.close()

			// Step 3. Create the schedule; refuse to replace one of the same ID.
			if paused && note == "" {
				note = "paused at creation"
			}
			h, err := s.t.Client.ScheduleClient().Create(cmd.Context(), client.ScheduleOptions{
				ID:            id,
				Spec:          times.spec,
				Overlap:       times.overlap,
				CatchupWindow: times.catchup,
				Paused:        paused,
				Note:          note,
				Memo:          map[string]any{memoPlaybook: plan.Name, memoInput: inputText(in), memoSpec: times.text},
				Action: &client.ScheduleWorkflowAction{
					// Temporal appends the firing's time: playbook/NAME-2025-01-06T06:00:00Z.
					ID:            workflows.WorkflowID(plan.Name),
					Workflow:      workflows.RunPlaybook,
					Args:          []any{in},
					TaskQueue:     workflows.TaskQueue,
					StaticSummary: fmt.Sprintf("playbook %s, started by schedule %s", plan.Name, id),
				},
			})
			if err != nil {
				return scheduleError(id, "creating", err)
			}

			// Step 4. Say what was created and when it runs first.
			fmt.Fprintf(stdout, "created schedule %s: playbook %s, %s, overlap %s\n", id, plan.Name, times.text, overlapName(times.overlap))
			fmt.Fprintf(stdout, "  input: %s\n", inputText(in))
			fmt.Fprintf(stdout, "  runs:  %s-<time of the firing>\n", workflows.WorkflowID(plan.Name))
			if desc, err := h.Describe(cmd.Context()); err == nil {
				if paused {
					fmt.Fprintf(stdout, "  state: paused (%s); start it with `starter schedule unpause %s`\n", note, id)
				} else if len(desc.Info.NextActionTimes) > 0 {
					fmt.Fprintf(stdout, "  next:  %s\n", timeText(desc.Info.NextActionTimes[0]))
				}
			}
			if link := scheduleLink(s, id); link != "" {
				fmt.Fprintf(stdout, "Web UI: %s\n", link)
			}
			workerNote(cmd.Context(), s, stdout)
			return nil
		},
	}
	f := cmd.Flags()
	// StringArray, not StringSlice: cron expressions contain commas.
	f.StringArrayVar(&t.cron, "cron", nil, "cron expression (UTC unless --timezone), e.g. '0 6 * * MON'; repeatable")
	f.StringVar(&t.every, "every", "", "run at this interval, e.g. 6h or 90d")
	f.StringVar(&t.offset, "offset", "", "shift the --every grid by this much, e.g. 6h: every 1d at 06:00 UTC")
	f.StringVar(&t.jitter, "jitter", "", "delay each firing by a random amount up to this, e.g. 10m")
	f.StringVar(&t.catchup, "catchup-window", "", "how late a firing missed while Temporal was down may still run (default: the server's, one year)")
	f.StringVar(&t.timezone, "timezone", "", "IANA time zone for --cron, e.g. Europe/Berlin (default UTC)")
	f.StringVar(&t.overlap, "overlap", "skip", "when a firing comes while a run is open: "+overlapNames())
	f.StringVar(&id, "id", "", "schedule ID (default: the playbook's name)")
	f.StringVar(&note, "note", "", "a note shown with the schedule, e.g. why it is paused")
	f.BoolVar(&paused, "paused", false, "create the schedule paused")
	f.BoolVar(&snapshot, "snapshot", false, "store the plan resolved now instead of reading the file at each run")
	config.AddFlags(f)
	return cmd
}

func scheduleListCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the schedules that run playbooks",
		Example: `  starter schedule list
  starter schedule list --output json | jq '.[].id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			s, err := connect(cmd, environ, stderr, false)
			if err != nil {
				return err
			}
			defer s.close()
			it, err := s.t.Client.ScheduleClient().List(cmd.Context(), client.ScheduleListOptions{PageSize: 100})
			if err != nil {
				return withCode(exitNotReady, fmt.Errorf("listing schedules: %w", err))
			}
			views, dc := []scheduleView{}, dataConverter(s)
			for it.HasNext() {
				e, err := it.Next()
				if err != nil {
					return withCode(exitNotReady, fmt.Errorf("listing schedules: %w", err))
				}
				// Other schedules may share the namespace; show those that run playbooks.
				if e.WorkflowType.Name != workflows.RunPlaybookName {
					continue
				}
				views = append(views, listView(dc, e))
			}
			if output == "json" {
				return json.NewEncoder(stdout).Encode(views)
			}
			tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SCHEDULE\tPLAYBOOK\tSTATE\tSPEC\tNEXT\tLAST RUN")
			for _, v := range views {
				next, last := "-", "-"
				if len(v.NextActionTimes) > 0 {
					next = timeText(v.NextActionTimes[0])
				}
				if n := len(v.RecentActions); n > 0 {
					last = v.RecentActions[n-1].WorkflowID
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.ID, v.Playbook, v.State, v.Spec, next, last)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	config.AddFlags(cmd.Flags())
	return cmd
}

func scheduleDescribeCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "describe SCHEDULE",
		Short: "Show a schedule: its state, next firings and recent runs",
		Example: `  starter schedule describe cert-check
  starter schedule describe cert-check --output json | jq '.recentActions[-1].workflowId'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			s, err := connect(cmd, environ, stderr, false)
			if err != nil {
				return err
			}
			defer s.close()
			id := args[0]
			desc, err := s.t.Client.ScheduleClient().GetHandle(cmd.Context(), id).Describe(cmd.Context())
			if err != nil {
				return scheduleError(id, "describing", err)
			}
			v := describeView(cmd.Context(), s, id, desc)
			if output == "json" {
				return json.NewEncoder(stdout).Encode(v)
			}
			v.print(stdout)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	config.AddFlags(cmd.Flags())
	return cmd
}

// schedulePauseCommand is `schedule pause` or, with pause false, `schedule unpause`.
func schedulePauseCommand(environ []string, stdout, stderr io.Writer, pause bool) *cobra.Command {
	var note string
	verb, done := "unpause", "unpaused"
	short := "Resume a paused schedule's firings"
	if pause {
		verb, done = "pause", "paused"
		short = "Stop a schedule's firings until it is unpaused (open runs go on)"
	}
	cmd := &cobra.Command{
		Use:     verb + " SCHEDULE",
		Short:   short,
		Example: fmt.Sprintf("  starter schedule %s cert-check\n  starter schedule %s cert-check --note 'CA maintenance window'", verb, verb),
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := connect(cmd, environ, stderr, false)
			if err != nil {
				return err
			}
			defer s.close()
			id := args[0]
			h := s.t.Client.ScheduleClient().GetHandle(cmd.Context(), id)
			if note == "" {
				note = done + " with starter"
			}
			if pause {
				err = h.Pause(cmd.Context(), client.SchedulePauseOptions{Note: note})
			} else {
				err = h.Unpause(cmd.Context(), client.ScheduleUnpauseOptions{Note: note})
			}
			if err != nil {
				return scheduleError(id, verb+"ing", err)
			}
			fmt.Fprintf(stdout, "schedule %s %s\n", id, done)
			if !pause {
				if desc, err := h.Describe(cmd.Context()); err == nil && len(desc.Info.NextActionTimes) > 0 {
					fmt.Fprintf(stdout, "  next: %s\n", timeText(desc.Info.NextActionTimes[0]))
				}
				workerNote(cmd.Context(), s, stdout)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&note, "note", "", "why (shown with the schedule)")
	config.AddFlags(cmd.Flags())
	return cmd
}

func scheduleTriggerCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var overlap string
	cmd := &cobra.Command{
		Use:   "trigger SCHEDULE",
		Short: "Start a schedule's playbook now, outside its timetable",
		Long: `trigger takes the schedule's action now, under its overlap policy (skip: nothing starts
while a run of the schedule is open) unless --overlap says otherwise, and prints the
workflow ID of the run it started. It works on paused schedules too.`,
		Example: `  starter schedule trigger cert-check
  starter schedule trigger cert-check --overlap allow-all`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policy, err := parseOverlap(overlap)
			if err != nil {
				return withCode(exitRefused, err)
			}
			s, err := connect(cmd, environ, stderr, false)
			if err != nil {
				return err
			}
			defer s.close()
			ctx, id := cmd.Context(), args[0]
			h := s.t.Client.ScheduleClient().GetHandle(ctx, id)
			before, err := h.Describe(ctx)
			if err != nil {
				return scheduleError(id, "triggering", err)
			}
			if err := h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: policy}); err != nil {
				return scheduleError(id, "triggering", err)
			}
			// The server takes the action asynchronously: wait briefly to name the run.
			if run := awaitAction(ctx, h, before.Info.NumActions); run != nil {
				fmt.Fprintf(stdout, "triggered schedule %s: started %s (run %s)\n", id, run.WorkflowID, run.FirstExecutionRunID)
				if link := s.t.RunLink(run.WorkflowID, run.FirstExecutionRunID); link != "" {
					fmt.Fprintf(stdout, "Web UI: %s\n", link)
				}
				workerNote(ctx, s, stdout)
				return nil
			}
			fmt.Fprintf(stdout, "triggered schedule %s; no run has started yet", id)
			if p := before.Schedule.Policy; p != nil && policy == enumspb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED && len(before.Info.RunningWorkflows) > 0 {
				fmt.Fprintf(stdout, " (a run is open and the overlap policy is %s; try --overlap allow-all)", overlapName(p.Overlap))
			}
			fmt.Fprintf(stdout, "; see `starter schedule describe %s`\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&overlap, "overlap", "", "override the schedule's overlap policy for this run: "+overlapNames())
	config.AddFlags(cmd.Flags())
	return cmd
}

func scheduleDeleteCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "delete SCHEDULE",
		Short:   "Delete a schedule; runs it started go on",
		Example: `  starter schedule delete cert-check`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := connect(cmd, environ, stderr, false)
			if err != nil {
				return err
			}
			defer s.close()
			id := args[0]
			if err := s.t.Client.ScheduleClient().GetHandle(cmd.Context(), id).Delete(cmd.Context()); err != nil {
				return scheduleError(id, "deleting", err)
			}
			fmt.Fprintf(stdout, "deleted schedule %s; runs it started are not affected (stop one with `starter cancel WORKFLOW_ID`)\n", id)
			return nil
		},
	}
	config.AddFlags(cmd.Flags())
	return cmd
}

// playbookRef is the name a run uses to load path on the worker: path relative to
// the playbook directory, which it must lie in.
func playbookRef(path, dir string) (string, error) {
	file, err := realPath(path)
	if err != nil {
		return "", err
	}
	base, err := realPath(dir)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(base, file)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s is not in the playbook directory %s, where scheduled runs read their playbook on the worker; "+
			"move it there, point --playbook-dir (CLUSTERFLOW_PLAYBOOK_DIR) at its directory for the starter and the worker, "+
			"or pass --snapshot to store the plan as resolved now", path, dir)
	}
	return filepath.ToSlash(rel), nil
}

// realPath is path made absolute, with symbolic links resolved when it exists.
func realPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", path, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	return abs, nil
}

// inputText says where a schedule's runs get their playbook.
func inputText(in workflows.RunPlaybookInput) string {
	switch {
	case in.Playbook != "":
		return in.Playbook + " in the worker's playbook directory, read at each run"
	case in.Plan != nil && in.Plan.Source != "":
		return fmt.Sprintf("plan %s as resolved from %s at creation", in.Plan.Name, in.Plan.Source)
	case in.Plan != nil:
		return fmt.Sprintf("plan %s as resolved at creation", in.Plan.Name)
	case in.Inline != "":
		return "inline playbook YAML"
	}
	return "-"
}

// scheduleError maps a schedule call's error to the exit codes: a schedule that does
// not exist or input the server refuses is bad input, anything else is Temporal's.
func scheduleError(id, doing string, err error) error {
	var notFound *serviceerror.NotFound
	var invalid *serviceerror.InvalidArgument
	switch {
	case errors.Is(err, temporal.ErrScheduleAlreadyRunning):
		return withCode(exitNotReady, fmt.Errorf("schedule %s already exists; delete it first (`starter schedule delete %s`) or pick another --id", id, id))
	case errors.As(err, &notFound):
		return withCode(exitRefused, fmt.Errorf("no schedule %s (see `starter schedule list`)", id))
	case errors.As(err, &invalid):
		return withCode(exitRefused, fmt.Errorf("%s schedule %s: %s", doing, id, invalid.Message))
	}
	return withCode(exitNotReady, fmt.Errorf("%s schedule %s: %w", doing, id, err))
}

// awaitAction waits a few seconds for a schedule to have taken more than n actions
// and returns the newest run it started, or nil.
func awaitAction(ctx context.Context, h client.ScheduleHandle, n int) *client.ScheduleWorkflowExecution {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if desc, err := h.Describe(ctx); err == nil && desc.Info.NumActions > n {
			if k := len(desc.Info.RecentActions); k > 0 && desc.Info.RecentActions[k-1].StartWorkflowResult != nil {
				return desc.Info.RecentActions[k-1].StartWorkflowResult
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// workerNote warns when nothing will run what the schedule starts.
func workerNote(ctx context.Context, s *session, out io.Writer) {
	switch {
	case s.t.Mode == "embedded":
		fmt.Fprintln(out, "note: this starter hosted the embedded server only for this command; the schedule fires while `worker` runs (it hosts the embedded server)")
	case !hasPollers(ctx, s.t.Client):
		fmt.Fprintln(out, "note: no worker polls the clusterflow task queue yet; scheduled runs wait until one starts (`worker`)")
	}
}

// scheduleLink is the Web UI page of a schedule, or "" when the UI address is unknown.
func scheduleLink(s *session, id string) string {
	if s.t.UIURL == "" {
		return ""
	}
	return fmt.Sprintf("%s/namespaces/%s/schedules/%s", s.t.UIURL, url.PathEscape(s.t.Namespace), url.PathEscape(id))
}

// scheduleView is a schedule as list and describe show it (their JSON output).
type scheduleView struct {
	ID              string       `json:"id"`
	Playbook        string       `json:"playbook"`
	Input           string       `json:"input,omitempty"`
	State           string       `json:"state"` // active or paused
	Note            string       `json:"note,omitempty"`
	Spec            string       `json:"spec"`
	Overlap         string       `json:"overlap,omitempty"`
	CatchupWindow   string       `json:"catchupWindow,omitempty"`
	WorkflowID      string       `json:"workflowId,omitempty"` // runs: this, then "-" and the firing's time
	Actions         int          `json:"actions"`
	SkippedOverlap  int          `json:"skippedOverlap"`
	MissedCatchup   int          `json:"missedCatchupWindow"`
	Running         []string     `json:"running,omitempty"`
	NextActionTimes []time.Time  `json:"nextActionTimes"`
	RecentActions   []actionView `json:"recentActions"`
	Link            string       `json:"link,omitempty"`
}

// actionView is one run a schedule started.
type actionView struct {
	ScheduledAt time.Time `json:"scheduledAt"`
	StartedAt   time.Time `json:"startedAt"`
	WorkflowID  string    `json:"workflowId"`
	RunID       string    `json:"runId"`
	Status      string    `json:"status,omitempty"` // describe only
}

func listView(dc converter.DataConverter, e *client.ScheduleListEntry) scheduleView {
	v := scheduleView{
		ID: e.ID, Playbook: memoString(dc, e.Memo, memoPlaybook), Input: memoString(dc, e.Memo, memoInput),
		State: stateText(e.Paused), Note: e.Note, Spec: memoString(dc, e.Memo, memoSpec),
		NextActionTimes: e.NextActionTimes, RecentActions: actionViews(e.RecentActions),
	}
	if v.Spec == "-" {
		v.Spec = specText(e.Spec)
	}
	return v
}

func describeView(ctx context.Context, s *session, id string, d *client.ScheduleDescription) scheduleView {
	dc := dataConverter(s)
	v := scheduleView{
		ID: id, Playbook: memoString(dc, d.Memo, memoPlaybook), Input: memoString(dc, d.Memo, memoInput),
		State: "active", Spec: memoString(dc, d.Memo, memoSpec),
		Actions: d.Info.NumActions, SkippedOverlap: d.Info.NumActionsSkippedOverlap, MissedCatchup: d.Info.NumActionsMissedCatchupWindow,
		NextActionTimes: d.Info.NextActionTimes, RecentActions: actionViews(d.Info.RecentActions),
		Link: scheduleLink(s, id),
	}
	if v.Spec == "-" {
		v.Spec = specText(d.Schedule.Spec)
	}
	if st := d.Schedule.State; st != nil {
		v.State, v.Note = stateText(st.Paused), st.Note
	}
	if p := d.Schedule.Policy; p != nil {
		v.Overlap = overlapName(p.Overlap)
		if p.CatchupWindow > 0 {
			v.CatchupWindow = spanText(p.CatchupWindow)
		}
	}
	if a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); ok {
		v.WorkflowID = a.ID
		// The input, read back: the memo may be missing on a schedule made elsewhere.
		if len(a.Args) == 1 {
			if p, ok := a.Args[0].(*commonpb.Payload); ok {
				var in workflows.RunPlaybookInput
				if dc.FromPayload(p, &in) == nil {
					v.Input = inputText(in)
					if v.Playbook == "-" && in.Plan != nil {
						v.Playbook = in.Plan.Name
					}
				}
			}
		}
	}
	for _, r := range d.Info.RunningWorkflows {
		v.Running = append(v.Running, r.WorkflowID)
	}
	for i := range v.RecentActions {
		a := &v.RecentActions[i]
		a.Status = "-"
		if resp, err := s.t.Client.DescribeWorkflowExecution(ctx, a.WorkflowID, a.RunID); err == nil {
			a.Status = statusName(resp.GetWorkflowExecutionInfo().GetStatus())
		}
	}
	return v
}

func (v scheduleView) print(out io.Writer) {
	state := v.State
	if v.Note != "" {
		state += " (" + v.Note + ")"
	}
	fmt.Fprintf(out, "schedule %s: %s\n", v.ID, state)
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  playbook:\t%s\n", v.Playbook)
	fmt.Fprintf(tw, "  input:\t%s\n", v.Input)
	fmt.Fprintf(tw, "  spec:\t%s\n", v.Spec)
	catchup := v.CatchupWindow
	if catchup == "" {
		catchup = "server default"
	}
	fmt.Fprintf(tw, "  policy:\toverlap %s, catch-up window %s\n", v.Overlap, catchup)
	if v.WorkflowID != "" {
		fmt.Fprintf(tw, "  runs as:\t%s-<time of the firing>\n", v.WorkflowID)
	}
	fmt.Fprintf(tw, "  actions:\t%d taken, %d skipped (overlap), %d missed (catch-up window)\n", v.Actions, v.SkippedOverlap, v.MissedCatchup)
	if len(v.Running) > 0 {
		fmt.Fprintf(tw, "  running:\t%s\n", strings.Join(v.Running, ", "))
	}
	if v.Link != "" {
		fmt.Fprintf(tw, "  Web UI:\t%s\n", v.Link)
	}
	tw.Flush()
	fmt.Fprintln(out, "next firings:")
	if len(v.NextActionTimes) == 0 {
		fmt.Fprintln(out, "  none")
	}
	for i, t := range v.NextActionTimes {
		if i == 5 {
			break
		}
		fmt.Fprintf(out, "  %s\n", timeText(t))
	}
	fmt.Fprintln(out, "recent runs:")
	if len(v.RecentActions) == 0 {
		fmt.Fprintln(out, "  none yet")
		return
	}
	tw = tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STARTED\tWORKFLOW ID\tSTATUS\tRUN ID")
	for i := len(v.RecentActions) - 1; i >= 0; i-- { // newest first, as `starter list`
		a := v.RecentActions[i]
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", timeText(a.StartedAt), a.WorkflowID, a.Status, a.RunID)
	}
	tw.Flush()
}

func actionViews(results []client.ScheduleActionResult) []actionView {
	views := []actionView{}
	for _, r := range results {
		a := actionView{ScheduledAt: r.ScheduleTime, StartedAt: r.ActualTime}
		if w := r.StartWorkflowResult; w != nil {
			a.WorkflowID, a.RunID = w.WorkflowID, w.FirstExecutionRunID
		}
		views = append(views, a)
	}
	return views
}

// dataConverter decodes what Temporal hands back as stored, memo fields and workflow
// arguments, as the client encoded them (through the payload codec when it is on).
func dataConverter(s *session) converter.DataConverter {
	if opts, err := s.cfg.ClientOptions(s.t.HostPort); err == nil && opts.DataConverter != nil {
		return opts.DataConverter
	}
	return converter.GetDefaultDataConverter()
}

func memoString(dc converter.DataConverter, m *commonpb.Memo, key string) string {
	var text string
	p := m.GetFields()[key]
	if p == nil || dc.FromPayload(p, &text) != nil || text == "" {
		return "-"
	}
	return text
}

func stateText(paused bool) string {
	if paused {
		return "paused"
	}
	return "active"
}

func timeText(t time.Time) string {
	return t.Local().Format("2006-01-02 15:04:05")
}
