package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/clusterflow/clusterflow/workflows"
)

// benchResume measures how soon a run moves on after its worker was killed: a step's
// command is running when the worker gets SIGKILL; a new worker starts at once, and
// the clock runs from that start until the step's host is done, seen (a) in the
// history (the retried activity completed) and (b) through the progress query (the
// workflow has recorded it). The command finishes at once when retried (a marker
// file says it ran), so what is measured is the resume, not the command. The kill
// lands at a different point of the heartbeat cycle in each round.
func benchResume(ctx context.Context, e *env, f *fleet, rounds int, t *table) error {
	dir := filepath.Join(e.dir, "resume")
	if err := mkdir(dir); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil { // the command runs as benchUser
		return err
	}
	marker := filepath.Join(dir, "marker")
	script := fmt.Sprintf("if [ -e %s ]; then exit 0; fi; : > %s; exec sleep 600", marker, marker)
	steps := fmt.Sprintf("    - {name: long, kind: run, hosts: all, command: [sh, -c, %q], timeout: 15m}\n"+
		"    - {name: after, kind: run, hosts: all, command: [\"true\"]}\n", script)
	pb := filepath.Join(dir, "resume.yaml")
	if err := f.playbook(pb, "resume", 1, steps); err != nil {
		return err
	}
	var hist, query []time.Duration
	for r := range rounds {
		os.Remove(marker)
		a, err := e.startWorker()
		if err != nil {
			return err
		}
		run, err := e.startPlaybook(ctx, pb)
		if err != nil {
			stopProc(a)
			return err
		}
		if err := waitUntil(30*time.Second, func() bool { _, err := os.Stat(marker); return err == nil }); err != nil {
			stopProc(a)
			return fmt.Errorf("the long command did not start: %w", err)
		}
		// Spread the kill over the heartbeat cycle.
		time.Sleep(time.Duration(300+r*700) * time.Millisecond % (4 * time.Second))
		_ = a.Process.Signal(syscall.SIGKILL)
		_ = waitUntil(10*time.Second, func() bool { return !processAlive(a.Process.Pid) })

		t0 := time.Now()
		b, err := e.startWorker()
		if err != nil {
			return err
		}
		var wg sync.WaitGroup
		var dh, dq time.Duration
		var eh, eq error
		wg.Add(2)
		go func() {
			defer wg.Done()
			eh = waitUntil(120*time.Second, func() bool {
				evs, err := e.history(ctx, run.GetID(), run.GetRunID())
				if err != nil {
					return false
				}
				for _, ev := range evs {
					if ev.GetEventType() == enumspb.EVENT_TYPE_ACTIVITY_TASK_COMPLETED {
						return true
					}
				}
				return false
			})
			dh = time.Since(t0)
		}()
		go func() {
			defer wg.Done()
			eq = waitUntil(120*time.Second, func() bool {
				qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				v, err := e.client.QueryWorkflow(qctx, run.GetID(), run.GetRunID(), workflows.ProgressQuery)
				if err != nil {
					return false
				}
				var p workflows.Progress
				if v.Get(&p) != nil || len(p.Steps) == 0 || len(p.Steps[0].Hosts) == 0 {
					return false
				}
				s := p.Steps[0].Hosts[0].State
				return s != workflows.HostRunning && s != workflows.HostPending
			})
			dq = time.Since(t0)
		}()
		wg.Wait()
		err = errors.Join(eh, eq)
		if err == nil {
			err = run.Get(ctx, nil)
		}
		stopProc(b)
		if err != nil {
			return fmt.Errorf("resume round %d: %w", r+1, err)
		}
		hist, query = append(hist, dh), append(query, dq)
		fmt.Fprintf(e.log, "  resume round %d/%d: step done in history %s, in the progress query %s after the new worker started\n",
			r+1, rounds, ms(dh), ms(dq))
	}
	sec := "5. resume after SIGKILL"
	t.add(sec, "new worker start → retried step completed (history)", msStat(hist), "≤ 5 s", pass(median(hist) <= 5*time.Second))
	t.add(sec, "new worker start → host state changed (progress query)", msStat(query), "≤ 5 s", pass(median(query) <= 5*time.Second))
	return nil
}

// waitUntil polls cond every 50 ms until it holds or limit passes.
func waitUntil(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
