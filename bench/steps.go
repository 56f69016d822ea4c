package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"

	"github.com/clusterflow/clusterflow/activities"
)

// stepCount is the length of the per-step playbook.
const stepCount = 20

// benchSteps runs a playbook of 20 trivial commands on one host: clusterflow (a
// running worker, as in production), Ansible with its defaults and Ansible with
// pipelining. Each contender runs once unmeasured first (connections, caches).
func benchSteps(ctx context.Context, e *env, f *fleet, a *ansible, rounds int, t *table) error {
	dir := filepath.Join(e.dir, "steps")
	if err := mkdir(dir); err != nil {
		return err
	}
	var cfSteps, ansTasks strings.Builder
	for i := range stepCount {
		fmt.Fprintf(&cfSteps, "    - {name: step %02d, kind: run, hosts: all, command: [\"true\"]}\n", i+1)
		fmt.Fprintf(&ansTasks, "    - name: step %02d\n      ansible.builtin.command: \"true\"\n", i+1)
	}
	pb := filepath.Join(dir, "steps.yaml")
	if err := f.playbook(pb, "steps", 1, cfSteps.String()); err != nil {
		return err
	}
	inv := filepath.Join(dir, "hosts.ini")
	if err := f.ansibleInventory(inv, 1); err != nil {
		return err
	}
	apb := filepath.Join(dir, "steps-ansible.yaml")
	if err := os.WriteFile(apb, []byte("- hosts: all\n  gather_facts: false\n  tasks:\n"+ansTasks.String()), 0o644); err != nil {
		return err
	}
	def, pipe := a.defaults("steps-default", false), a.defaults("steps-pipelining", true)
	defer a.stopMasters()

	w, err := e.startWorker()
	if err != nil {
		return err
	}
	defer stopProc(w)
	if _, _, err := e.runPlaybook(ctx, pb); err != nil {
		return err
	}
	for _, m := range []ansibleMode{def, pipe} {
		if _, err := a.playbook(m, inv, 5, apb); err != nil {
			return err
		}
	}
	var cf, ansDef, ansPipe []time.Duration
	var lastID, lastRun string
	for r := range rounds {
		d, run, err := e.runPlaybook(ctx, pb)
		if err != nil {
			return err
		}
		cf = append(cf, d)
		lastID, lastRun = run.GetID(), run.GetRunID()
		if d, err = a.playbook(def, inv, 5, apb); err != nil {
			return err
		}
		ansDef = append(ansDef, d)
		if d, err = a.playbook(pipe, inv, 5, apb); err != nil {
			return err
		}
		ansPipe = append(ansPipe, d)
		fmt.Fprintf(e.log, "  %d steps, round %d/%d: clusterflow %s | ansible %s, pipelining %s\n",
			stepCount, r+1, rounds, ms(cf[r]), ms(ansDef[r]), ms(ansPipe[r]))
	}
	sec := fmt.Sprintf("2. %d steps, 1 host", stepCount)
	t.add(sec, "clusterflow (running worker)", msStat(cf), "", "")
	t.add(sec, "ansible-playbook (defaults, ControlPersist)", msStat(ansDef), "", "")
	t.add(sec, "ansible-playbook (pipelining)", msStat(ansPipe), "", "")
	t.ratio(sec, "clusterflow / ansible pipelining", ratios(cf, ansPipe), 0.1, true, false)
	t.ratio(sec, "clusterflow / ansible defaults", ratios(cf, ansDef), 0, false, false)
	t.add(sec, "clusterflow per step", fmt.Sprintf("%.1f ms", float64(median(cf))/float64(time.Millisecond)/stepCount), "", "")

	b, err := e.stepBreakdown(ctx, lastID, lastRun)
	if err != nil {
		return err
	}
	t.add(sec, "  of which: workflow task round trip (completed → next scheduled)", b.wft, "", "")
	t.add(sec, "  of which: activity dispatch (scheduled → started)", b.dispatch, "", "")
	t.add(sec, "  of which: activity run (started → completed)", b.exec, "", "")
	t.add(sec, "    inside it: SSH session + remote command (activity's own clock)", b.ssh, "", "")
	return nil
}

// breakdown is where a step's time goes, from the last run's history (medians over
// its steps).
type breakdown struct{ wft, dispatch, exec, ssh string }

func (e *env) stepBreakdown(ctx context.Context, id, runID string) (breakdown, error) {
	events, err := e.history(ctx, id, runID)
	if err != nil {
		return breakdown{}, err
	}
	scheduled := map[int64]time.Time{}
	started := map[int64]time.Time{}
	var wft, dispatch, exec, inside []time.Duration
	var lastCompleted time.Time
	for _, ev := range events {
		at := ev.GetEventTime().AsTime()
		switch ev.GetEventType() {
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
			scheduled[ev.GetEventId()] = at
			if !lastCompleted.IsZero() {
				wft = append(wft, at.Sub(lastCompleted))
			}
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_STARTED:
			a := ev.GetActivityTaskStartedEventAttributes()
			started[a.GetScheduledEventId()] = at
			dispatch = append(dispatch, at.Sub(scheduled[a.GetScheduledEventId()]))
		case enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
			a := ev.GetActivityTaskCompletedEventAttributes()
			exec = append(exec, at.Sub(started[a.GetScheduledEventId()]))
			lastCompleted = at
			var res activities.CommandResult
			if err := converter.GetDefaultDataConverter().FromPayloads(a.GetResult(), &res); err == nil {
				inside = append(inside, time.Duration(res.DurationMs)*time.Millisecond)
			}
		}
	}
	f := func(ds []time.Duration) string {
		return fmt.Sprintf("%.1f ms", float64(median(ds))/float64(time.Millisecond))
	}
	return breakdown{wft: f(wft), dispatch: f(dispatch), exec: f(exec), ssh: f(inside)}, nil
}
