#!/usr/bin/env bash
# demo.sh: the background parts of `make demo`, run from the repository root.
#
#   lab/demo.sh worker    start the demo worker (bin/worker: the embedded Temporal server,
#                         its Web UI and a worker) in the background, or reuse the one
#                         that runs; wait until it polls
#   lab/demo.sh summary   print where to look: the Web UI link of the last cluster run,
#                         the lab commands, and how to stop what the demo started
#   lab/demo.sh stop      stop what the demo started: the demo worker (only the one this
#                         script started), the demo's lab (`lab down`), and the Docker
#                         engine if `make demo` started it (lab/prereqs.sh --owner demo)
#
# The worker's pid and log are in the state directory: .clusterflow/worker.pid and
# .clusterflow/worker.log ($CLUSTERFLOW_STATE_DIR instead of .clusterflow). Its history
# is .clusterflow/temporal.db, kept by `stop`: the next demo worker serves it again.
# When another process already answers on the embedded server's port (a `worker` of
# yours), the demo uses it and `stop` leaves it alone.
set -euo pipefail

state=${CLUSTERFLOW_STATE_DIR:-.clusterflow}
pid_file=$state/worker.pid
log_file=$state/worker.log
lab_name=clusterflow-lab # the demo's lab: the playbook includes its inventory
grpc=127.0.0.1:7233      # the embedded server's defaults (internal/config)
ui=http://127.0.0.1:8233
wait_s=${CLUSTERFLOW_DEMO_WAIT:-180}

say() { printf 'demo: %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

# answers HOST:PORT: true when something accepts a TCP connection there.
# shellcheck disable=SC2016 # the inner shell expands $1
answers() { timeout 2 bash -c 'exec 3<>"/dev/tcp/${1%:*}/${1##*:}"' _ "$1" 2>/dev/null; }

# demo_pid prints the pid of the demo worker this script started, when it still runs.
demo_pid() {
	local pid
	pid=$(cat "$pid_file" 2>/dev/null) || return 1
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'bin/worker' || return 1
	printf '%s\n' "$pid"
}

start_worker() {
	local pid i
	mkdir -p "$state"
	if pid=$(demo_pid); then
		if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == *" (deleted)" ]]; then
			say "the demo worker (pid $pid) runs an older build of bin/worker: restarting it"
			stop_worker
		else
			say "the demo worker runs (pid $pid, log $log_file): using it"
			return
		fi
	fi
	rm -f "$pid_file"
	if answers "$grpc"; then
		say "a Temporal server already answers on $grpc (not started by the demo): using it; \`make demo-stop\` leaves it alone"
		return
	fi
	[ -x bin/worker ] || die "no bin/worker: run make build"
	say "starting the demo worker: bin/worker (embedded Temporal server, Web UI $ui; log $log_file)"
	: >>"$log_file"
	# setsid, no terminal, no inherited descriptors: the worker outlives `make demo`
	# and holds no pipe a caller (a CI runner) waits on.
	(
		for fd in /proc/self/fd/*; do
			fd=${fd##*/}
			[ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
		done
		exec setsid bin/worker >>"$log_file" 2>&1 </dev/null
	) &
	pid=$!
	printf '%s\n' "$pid" >"$pid_file"
	for ((i = 0; i < wait_s * 2; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pid_file"
			tail -n 20 "$log_file" >&2 || true
			die "the demo worker exited at start; see $log_file"
		fi
		# It prints this line once it polls the task queue.
		if tail -n 50 "$log_file" | grep -q '^worker polling task queue' && answers "${ui#http://}"; then
			say "the demo worker polls (pid $pid) after $((i / 2)) s"
			return
		fi
		sleep 0.5
	done
	die "the demo worker did not come up within ${wait_s}s; see $log_file (stop it: lab/demo.sh stop)"
}

stop_worker() {
	local pid
	if ! pid=$(demo_pid); then
		[ -e "$pid_file" ] && rm -f "$pid_file"
		say "no demo worker runs"
		return
	fi
	say "stopping the demo worker (pid $pid)"
	kill -TERM "$pid"
	# tail --pid returns when the process has exited.
	if ! timeout 20 tail --pid="$pid" -f /dev/null; then
		say "the demo worker still runs after 20 s: killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$pid_file"
}

summary() {
	local run link who pid
	run=$(bin/starter list --limit 1 --query 'WorkflowId = "playbook/cluster"' 2>/dev/null | awk 'NR == 2 { print $NF }') || true
	link="$ui/namespaces/default/workflows"
	[ -n "$run" ] && link="$link/playbook%2Fcluster/$run/history"
	if pid=$(demo_pid); then
		who="the demo worker, pid $pid, log $log_file"
	else
		who="the Temporal server that was already running on $grpc"
	fi
	cat <<EOF

The demo's cluster stays up for you to look at:
  Web UI:  $link
           (served by $who; all runs: $ui/namespaces/default/workflows)
  runs:    bin/starter list; bin/starter status cluster
  lab:     go run ./lab status; go run ./lab ssh master -- docker node ls
  again:   make demo (every step reports unchanged)
  stop:    make demo-stop (the demo worker, the lab $lab_name, and the Docker engine if make demo started it)
EOF
}

stop_all() {
	stop_worker
	if timeout 10 docker info >/dev/null 2>&1; then
		go run ./lab --name "$lab_name" down
	else
		say "no Docker engine answers: no lab to take down"
	fi
	bash lab/prereqs.sh --stop --owner demo
}

case ${1:-} in
worker) start_worker ;;
summary) summary ;;
stop) stop_all ;;
*) die "usage: lab/demo.sh worker|summary|stop" ;;
esac
