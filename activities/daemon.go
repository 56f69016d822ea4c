package activities

import (
	"context"
	"strconv"
	"strings"

	"github.com/clusterflow/clusterflow/activities/remote"
)

// Ways a daemon is kept running, as StartEngineResult.Manager and
// StartConsulResult.Manager report them.
const (
	BySystemd    = "systemd"             // systemctl enable, start, restart
	BySupervisor = "clusterflow-service" // /etc/clusterflow/services.d/NAME (lab nodes)
	BySysv       = "sysv"                // service NAME start (/etc/init.d/NAME)
)

// daemon is a long-running program that an activity makes sure runs and starts at
// boot (the Docker engine, the Consul agent): how the host's service managers know
// it, and how to tell that it answers.
type daemon struct {
	unit       string   // systemd unit and SysV init script: docker, consul
	supervised string   // the node supervisor's service name: dockerd, consul
	sysv       bool     // an /etc/init.d script may run it
	pidFile    string   // the daemon's own pid file; "": the manager's main pid
	program    string   // its executable: a name on root's PATH or a path
	args       []string // its arguments under the supervisor
	// matchArgs: the supervisor's service file must run program with args (it is
	// rewritten otherwise); without it, any service file is the daemon's.
	matchArgs  bool
	staleFiles []string // a running daemon older than one of these is restarted
	probe      []string // how service-wait.sh asks whether it answers
	endpoint   string   // what it answers on, for messages
	sysvLog    string   // its log under SysV
	what       string   // "the engine", "the agent"
	missing    string   // the error when program is not on the host
	noManager  string   // the error when the host has no way to keep it running
	notReady   func(h remote.Host, format string, args ...any) error
	// ownUnit is the systemd unit file clusterflow writes when no package brought
	// one, with writeUnit writing it (reporting whether it changed); "" for none.
	ownUnit   string
	writeUnit func(ctx context.Context, op *hostOp) (bool, error)
}

// daemonState is what service-state.sh reports.
type daemonState struct {
	manager string // BySystemd, BySupervisor, BySysv or none
	path    string // the program's path; "" when it is not installed
	unit    string // systemd: ours, packaged or none
	service string // supervisor: current, other or none
	enabled bool
	active  bool
	stale   bool
}

func parseDaemonState(out string) daemonState {
	kv := parseKeyValues(out)
	return daemonState{
		manager: kv["manager"], path: kv["path"], unit: kv["unit"], service: kv["service"],
		enabled: kv["enabled"] == "yes", active: kv["active"] == "yes", stale: kv["stale"] == "yes",
	}
}

// daemonStarted is what ensureRunning did: the fields of StartEngineResult and
// StartConsulResult.
type daemonStarted struct {
	Changed bool
	Manager string
	Action  string
}

// ensureRunning makes sure d runs and starts at boot, restarting it when restart
// is set or it is older than its configuration (see plan), then waits up to a
// minute until it answers. A daemon that runs as wanted is left alone.
func ensureRunning(ctx context.Context, op *hostOp, d daemon, restart bool) (daemonStarted, error) {
	h := op.host
	args := []string{d.unit, d.supervised, yesNo(d.sysv), d.pidFile, d.ownUnit, "", d.program}
	if d.matchArgs {
		args[5] = strings.Join(append([]string{d.program}, d.args...), " ")
	}
	r, err := op.run(ctx, "check", serviceStateScript.cmd(append(args, d.staleFiles...)...))
	if err != nil {
		return daemonStarted{}, err
	}
	st := parseDaemonState(r.Stdout)
	res := daemonStarted{Manager: st.manager}
	if r.ExitCode != 0 || st.manager == "" {
		return res, remoteFailed(h, "checking how %s runs failed (exit %d): %s", d.what, r.ExitCode, lastOutputLine(r.Stderr))
	}
	if st.path == "" {
		return res, remoteFailed(h, "%s", d.missing)
	}
	restart = restart || st.stale
	if st.manager == BySystemd && d.writeUnit != nil && st.unit != "packaged" {
		changed, err := d.writeUnit(ctx, op)
		if err != nil {
			return res, err
		}
		if changed {
			op.acting("unit")
			res.Changed, res.Action = true, "unit written"
			restart = restart || st.active
		}
	}
	cmds, action, ok := d.plan(st, restart)
	if !ok {
		return res, remoteFailed(h, "%s", d.noManager)
	}
	if action != "" {
		res.Action = action
	}
	if len(cmds) > 0 {
		op.acting(res.Action)
		res.Changed = true
	}
	for _, c := range cmds {
		r, err := op.run(ctx, res.Action, c)
		if err != nil {
			return res, err
		}
		if r.ExitCode != 0 {
			return res, d.notReady(h, "%s failed (exit %d): %s%s", describeCmd(c), r.ExitCode,
				lastOutputLine(r.Stderr+"\n"+r.Stdout), d.log(ctx, op, res.Manager))
		}
	}
	r, err = op.run(ctx, "wait", serviceWaitScript.cmd(append([]string{waitTries(60)}, d.probe...)...))
	if err != nil {
		return res, err
	}
	if r.ExitCode != 0 {
		return res, d.notReady(h, "%s (%s) did not answer on %s within 60 s%s", d.what, res.Manager, d.endpoint, d.log(ctx, op, res.Manager))
	}
	return res, nil
}

// plan is the decision table: the commands that make the daemon run as wanted in
// state st, in order, and the action to report. ok is false when the host has no
// way to keep it running.
//
//   - systemd: enable when not enabled; start when not active, else restart when
//     a restart is due;
//   - the node supervisor (lab nodes): a service file that is missing or runs
//     something else is (re)written, and a daemon that still runs the old one is
//     restarted; a service file in place with the daemon not running means the
//     supervisor is (re)starting it: wait; else restart when due;
//   - SysV: start when not active, else restart when due.
func (d daemon) plan(st daemonState, restart bool) (cmds []remote.Cmd, action string, ok bool) {
	switch st.manager {
	case BySystemd:
		if !st.enabled {
			cmds = append(cmds, remote.Cmd{Argv: []string{"systemctl", "enable", d.unit}})
			action = "enabled"
		}
		switch {
		case !st.active:
			cmds = append(cmds, remote.Cmd{Argv: []string{"systemctl", "start", d.unit}})
			action = "started"
		case restart:
			cmds = append(cmds, remote.Cmd{Argv: []string{"systemctl", "restart", d.unit}})
			action = "restarted"
		}
	case BySupervisor:
		switch {
		case st.service != "current":
			cmds = append(cmds, serviceStartScript.cmd(append([]string{d.supervised, st.path}, d.args...)...))
			action = "started"
			if st.active { // the old service file's daemon still runs
				cmds = append(cmds, serviceRestartScript.cmd(d.supervised))
				action = "restarted"
			}
		case !st.active:
			action = "waited"
		case restart:
			cmds = append(cmds, serviceRestartScript.cmd(d.supervised))
			action = "restarted"
		}
	case BySysv:
		switch {
		case !st.active:
			cmds = append(cmds, remote.Cmd{Argv: []string{"service", d.unit, "start"}})
			action = "started"
		case restart:
			cmds = append(cmds, remote.Cmd{Argv: []string{"service", d.unit, "restart"}})
			action = "restarted"
		}
	default:
		return nil, "", false
	}
	return cmds, action, true
}

// log is the end of the daemon's log, for an error message ("" when none).
func (d daemon) log(ctx context.Context, op *hostOp, manager string) string {
	r, err := op.run(ctx, "log", serviceLogScript.cmd(manager, d.unit, d.supervised, d.sysvLog))
	if err != nil || strings.TrimSpace(r.Stdout) == "" {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return "; " + strings.TrimPrefix(d.what, "the ") + " log: " + strings.Join(lines, " | ")
}

// describeCmd names a command in messages: a script by its name and arguments,
// another command by its first three words.
func describeCmd(c remote.Cmd) string {
	if len(c.Argv) >= 4 && c.Argv[0] == "/bin/sh" && c.Argv[1] == "-c" {
		return strings.Join(c.Argv[3:], " ")
	}
	return strings.Join(c.Argv[:min(len(c.Argv), 3)], " ")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// waitTries is service-wait.sh's TRIES for a wait of seconds.
func waitTries(seconds int) string { return strconv.Itoa(2 * seconds) }
