package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// fanOutForks is the parallelism of every contender: Ansible's forks, xargs -P and
// the clusterflow step's parallel.
const fanOutForks = 50

// benchFanOut runs one trivial command on n hosts, rounds times, interleaving the
// contenders within each round so that machine noise hits all of them alike.
func benchFanOut(ctx context.Context, e *env, f *fleet, a *ansible, n, rounds int, profile string, t *table) error {
	dir := filepath.Join(e.dir, fmt.Sprintf("fanout-%d", n))
	pb := filepath.Join(dir, "fanout.yaml")
	inv := filepath.Join(dir, "hosts.ini")
	sshList := filepath.Join(dir, "ssh-args")
	if err := mkdir(dir); err != nil {
		return err
	}
	steps := fmt.Sprintf("    - {name: trivial, kind: run, hosts: all, command: [\"true\"], parallel: %d, timeout: 2m}\n", fanOutForks)
	if err := f.playbook(pb, fmt.Sprintf("fanout-%d", n), n, steps); err != nil {
		return err
	}
	if err := f.ansibleInventory(inv, n); err != nil {
		return err
	}
	if err := f.sshArgsFile(sshList, n); err != nil {
		return err
	}
	xargs := append([]string{"-a", sshList, "-P", fmt.Sprint(fanOutForks), "-n", "4", "ssh"}, sshOpts(f.key, f.knownHosts)...)
	warm := a.warm(fmt.Sprintf("fanout%d", n))
	defer a.stopMasters()

	var cfCold, cfWarm, sshCold, ansCold, ansWarm []time.Duration
	var rss, peak float64
	// Ansible's warm runs need masters: one run first, not measured.
	if _, err := a.adhoc(warm, inv, fanOutForks, "true"); err != nil {
		return err
	}
	for r := range rounds {
		w, err := e.startWorker()
		if err != nil {
			return err
		}
		d, _, err := e.runPlaybook(ctx, pb)
		if err != nil {
			stopProc(w)
			return err
		}
		cfCold = append(cfCold, d)
		// The same worker again: its pool holds a connection per host.
		d, _, err = e.runPlaybook(ctx, pb)
		if err != nil {
			stopProc(w)
			return err
		}
		cfWarm = append(cfWarm, d)
		c, p := rssMiB(w.Process.Pid)
		rss, peak = max(rss, c), max(peak, p)
		if profile != "" && r == rounds-1 {
			if err := e.profileWarm(ctx, pb, profile); err != nil {
				stopProc(w)
				return err
			}
		}
		stopProc(w)

		if d, err = timed(filepath.Join(dir, "ssh.log"), "xargs", xargs...); err != nil {
			return err
		}
		sshCold = append(sshCold, d)
		if d, err = a.adhoc(a.cold(), inv, fanOutForks, "true"); err != nil {
			return err
		}
		ansCold = append(ansCold, d)
		if d, err = a.adhoc(warm, inv, fanOutForks, "true"); err != nil {
			return err
		}
		ansWarm = append(ansWarm, d)
		fmt.Fprintf(e.log, "  fan-out %d hosts, round %d/%d: clusterflow cold %s warm %s | ssh %s | ansible cold %s warm %s\n",
			n, r+1, rounds, ms(cfCold[r]), ms(cfWarm[r]), ms(sshCold[r]), ms(ansCold[r]), ms(ansWarm[r]))
	}

	sec := fmt.Sprintf("1. fan-out, %d hosts", n)
	t.add(sec, "clusterflow cold (new worker, fresh connections)", msStat(cfCold), "", "")
	t.add(sec, "raw ssh cold (xargs -P 50 ssh)", msStat(sshCold), "", "")
	t.add(sec, "ansible -m raw cold (forks 50, no ControlMaster)", msStat(ansCold), "", "")
	t.add(sec, "clusterflow warm (pooled connections)", msStat(cfWarm), "", "")
	t.add(sec, "ansible -m raw warm (ControlPersist)", msStat(ansWarm), "", "")
	target := n == 100
	t.ratio(sec, "clusterflow cold / raw ssh", ratios(cfCold, sshCold), 1.0, target, false)
	t.ratio(sec, "clusterflow cold / ansible cold", ratios(cfCold, ansCold), 0.5, target, false)
	t.ratio(sec, "clusterflow warm / ansible warm", ratios(cfWarm, ansWarm), 0.1, target, false)
	if n >= 500 {
		t.add(sec, "worker memory (RSS after the runs / peak)", fmt.Sprintf("%.0f MiB / %.0f MiB", rss, peak), "", "")
	}
	return nil
}

// profileWarm takes 15 s CPU profiles of the running worker and of the server while it runs the
// playbook again and again (warm), and writes it to path.
func (e *env) profileWarm(ctx context.Context, pb, path string) error {
	done := make(chan error, 2)
	go func() { done <- fetch("http://"+e.pprof+"/debug/pprof/profile?seconds=15", path) }()
	go func() {
		done <- fetch("http://"+e.serverPprof+"/debug/pprof/profile?seconds=15", strings.TrimSuffix(path, ".pprof")+"-server.pprof")
	}()
	runs := 0
	for {
		select {
		case err := <-done:
			if err == nil {
				err = <-done
			}
			fmt.Fprintf(e.log, "  CPU profiles of the worker and the server over %d warm runs: %s and *-server.pprof (go tool pprof -top FILE)\n", runs, path)
			return err
		default:
		}
		if _, _, err := e.runPlaybook(ctx, pb); err != nil {
			return err
		}
		runs++
	}
}
