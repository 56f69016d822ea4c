#!/usr/bin/env bash
# prereqs.sh: make this machine able to run the clusterflow lab.
#
#   lab/prereqs.sh [--owner NAME]         install what is missing, start a Docker engine
#                                         if none answers, recorded as started for NAME
#   lab/prereqs.sh --stop [--owner NAME]  stop the Docker engine, but only if this script
#                                         started it, and for the same NAME
#   lab/prereqs.sh --check                report what is missing; change nothing (exit 1
#                                         if anything is)
#
# Idempotent: a second run finds everything in place and changes nothing. Packages come
# from Debian's archive through apt (Debian and derivatives only). An engine that was
# already running, or one managed by systemd that this script did not start, is never
# stopped by --stop.
#
# One owner per engine: the owner is whoever made this script start it. `make test`
# passes an owner of its own (make-test-PID) and stops only an engine it started;
# `make demo` passes `demo`, so its engine stays up after a `make test` and
# `make demo-stop` stops it. NAME defaults to none; --stop without --owner stops only
# an engine started without one.
#
# Environment:
#   CLUSTERFLOW_DOCKERD_LOG   log file of a dockerd started here (/var/log/clusterflow-dockerd.log)
#   CLUSTERFLOW_RUN_DIR       where the pid file of that dockerd lives (/run/clusterflow)
#   CLUSTERFLOW_DOCKER_WAIT   seconds to wait for a started engine to answer (60)
set -euo pipefail

log_file=${CLUSTERFLOW_DOCKERD_LOG:-/var/log/clusterflow-dockerd.log}
run_dir=${CLUSTERFLOW_RUN_DIR:-/run/clusterflow}
pid_file=$run_dir/dockerd.pid
wait_s=${CLUSTERFLOW_DOCKER_WAIT:-60}
owner=
action=install

say() { printf 'prereqs: %s\n' "$*"; }
die() { printf 'prereqs: error: %s\n' "$*" >&2; exit 1; }

# need CMD PACKAGE: prints PACKAGE when CMD is not on PATH (or in an sbin dir).
need() {
	if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; then
		printf '%s\n' "$2"
	fi
}

missing_packages() {
	need dockerd docker.io       # any dockerd will do (docker-ce too)
	need docker-compose docker-compose
	need debootstrap debootstrap
	need ssh openssh-client
	need sshd openssh-server
	need ip iproute2
	need pgrep procps            # tests look for leftover remote processes
	need sudo sudo               # the upload activity's sudo path is tested
	need chromium chromium       # the Web UI test drives Debian's headless Chromium
	need shellcheck shellcheck   # make lint checks the scripts the activities run on hosts
	need /usr/lib/postgresql/15/bin/initdb postgresql  # TestServerCluster's database (internal/pgtest)
}

# engine_answers: true when a Docker engine answers on the default socket (or DOCKER_HOST).
engine_answers() {
	command -v docker >/dev/null 2>&1 || return 1
	timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

# The pid file: the pid (or "systemd") on the first line, the owner on the second.
recorded_pid() { sed -n 1p "$pid_file" 2>/dev/null; }
recorded_owner() { sed -n 2p "$pid_file" 2>/dev/null; }
owner_text() { if [ -n "$1" ]; then printf 'for %s' "$1"; else printf 'without an owner'; fi; }

# our_dockerd_pid prints the pid recorded by this script when that process is still a dockerd.
our_dockerd_pid() {
	[ -r "$pid_file" ] || return 1
	local pid
	pid=$(recorded_pid)
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
	printf '%s\n' "$pid"
}

install_packages() {
	local pkgs
	pkgs=$(missing_packages | tr '\n' ' ')
	if [ -z "${pkgs// /}" ]; then
		say "packages: all present (dockerd, docker-compose, debootstrap, ssh, sshd, ip, shellcheck)"
		return
	fi
	[ "$(id -u)" = 0 ] || die "missing packages ($pkgs) and not root: run as root"
	command -v apt-get >/dev/null 2>&1 || die "missing packages ($pkgs) and no apt-get: install them by hand"
	# Chromium only recommends its fonts; the screenshots want them.
	case " $pkgs " in *" chromium "*) pkgs="$pkgs fonts-liberation" ;; esac
	say "installing: $pkgs"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
	say "installed: $pkgs"
}

start_engine() {
	if engine_answers; then
		local v
		v=$(docker info --format '{{.ServerVersion}}' 2>/dev/null || true)
		if pid=$(our_dockerd_pid); then
			say "docker engine $v answers (started earlier by this script $(owner_text "$(recorded_owner)"), pid $pid)"
		else
			say "docker engine $v answers (not started by this script; --stop leaves it alone)"
		fi
		return
	fi
	[ "$(id -u)" = 0 ] || die "no Docker engine answers and not root: start one (dockerd) as root"
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 &&
		systemctl cat docker.service >/dev/null 2>&1; then
		say "starting docker.service with systemctl"
		systemctl start docker.service
		mkdir -p "$run_dir"
		printf 'systemd\n%s\n' "$owner" >"$pid_file"
	else
		local dockerd
		dockerd=$(PATH="$PATH:/usr/sbin:/sbin" command -v dockerd)
		mkdir -p "$run_dir" "$(dirname "$log_file")"
		say "starting $dockerd (log: $log_file)"
		# setsid: the engine must outlive this script and its terminal, and keep no file
		# the caller had open (a `flock` lock held around the tests, a pipe a CI runner
		# waits on), or the caller would wait for the engine.
		(
			for fd in /proc/self/fd/*; do
				fd=${fd##*/}
				[ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
			done
			exec setsid "$dockerd" >>"$log_file" 2>&1 </dev/null
		) &
		printf '%s\n%s\n' "$!" "$owner" >"$pid_file"
	fi
	local i
	for ((i = 0; i < wait_s * 2; i++)); do
		if engine_answers; then
			say "docker engine $(docker info --format '{{.ServerVersion}}') answers after $((i / 2)).$((i % 2 * 5))s, started $(owner_text "$owner") (pid file: $pid_file)"
			return
		fi
		if pid=$(recorded_pid) && [ "$pid" != systemd ] && ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pid_file"
			tail -n 20 "$log_file" >&2 || true
			die "dockerd exited at start; see $log_file"
		fi
		sleep 0.5
	done
	die "dockerd did not answer within ${wait_s}s; see $log_file"
}

stop_engine() {
	if [ ! -e "$pid_file" ]; then
		say "no Docker engine was started by this script; nothing to stop"
		return
	fi
	local recorded pid i
	recorded=$(recorded_owner)
	if [ "$(recorded_pid)" != systemd ] && ! pid=$(our_dockerd_pid); then
		say "recorded dockerd is gone; removing stale $pid_file"
		rm -f "$pid_file"
		return
	fi
	if [ "$recorded" != "$owner" ]; then
		local caller="--owner $owner"
		[ -n "$owner" ] || caller="no --owner"
		say "the Docker engine was started by this script $(owner_text "$recorded"), not for this caller ($caller): left running"
		return
	fi
	if [ "$(recorded_pid)" = systemd ]; then
		say "stopping docker.service (started by this script $(owner_text "$owner"))"
		systemctl stop docker.service docker.socket 2>/dev/null || systemctl stop docker.service
		rm -f "$pid_file"
		return
	fi
	say "stopping dockerd pid $pid (started by this script $(owner_text "$owner"))"
	kill -TERM "$pid"
	for ((i = 0; i < 60; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	if kill -0 "$pid" 2>/dev/null; then
		die "dockerd pid $pid still runs after 30s; see $log_file"
	fi
	rm -f "$pid_file"
	say "dockerd stopped"
}

check() {
	local pkgs rc=0
	pkgs=$(missing_packages | tr '\n' ' ')
	if [ -n "${pkgs// /}" ]; then
		say "missing packages: $pkgs"
		rc=1
	else
		say "packages: all present"
	fi
	if engine_answers; then
		say "docker engine answers"
	else
		say "no docker engine answers"
		rc=1
	fi
	return $rc
}

while [ $# -gt 0 ]; do
	case $1 in
	--owner)
		[ $# -ge 2 ] || die "--owner needs a name"
		owner=$2
		shift
		;;
	--owner=*) owner=${1#--owner=} ;;
	--stop) action=stop ;;
	--check) action=check ;;
	-h | --help) action=help ;;
	*) die "unknown argument $1; use --stop, --check, --owner NAME or no argument" ;;
	esac
	shift
done
case $owner in *[!A-Za-z0-9_.-]*) die "--owner $owner: use letters, digits, '.', '_' and '-'" ;; esac

case $action in
install) install_packages; start_engine ;;
stop) stop_engine ;;
check) check ;;
help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
esac
