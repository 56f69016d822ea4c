#!/bin/bash
# clusterflow-node-init: the main process of a clusterflow lab node.
#
# It runs under docker's --init (tini as PID 1, which reaps orphans) and also works as
# PID 1 itself (bash reaps the orphans it adopts while it waits). At every boot it
#   1. creates /run/sshd (/run is a tmpfs) and, on first boot only, the node's own
#      ed25519 host key: never baked into the image, so every node has its own;
#   2. runs sshd in the foreground role: restarted if it dies, logs on stderr
#      (`docker logs`);
#   3. supervises services: every executable file /etc/clusterflow/services.d/NAME is
#      started (rescanned every second), its output appended to
#      /var/log/clusterflow/NAME.log, and restarted with backoff when it exits, for as
#      long as the file is there. `clusterflow-service` manages these files;
#   4. touches /run/clusterflow/ready once sshd runs;
#   5. on SIGTERM stops the services, then every other process (dockerd started
#      with setsid included), giving them up to 25 s, and exits.
set -u

svc_dir=/etc/clusterflow/services.d
state_dir=/run/clusterflow/services
log_dir=/var/log/clusterflow
host_key=/etc/ssh/ssh_host_ed25519_key

log() { printf 'clusterflow-node-init: %s\n' "$*" >&2; }

mkdir -p /run/sshd "$state_dir" "$log_dir" "$svc_dir"
chmod 0755 /run/sshd

if [ ! -s "$host_key" ] || [ ! -s "$host_key.pub" ]; then
	rm -f "$host_key" "$host_key.pub"
	ssh-keygen -q -t ed25519 -N '' -C "root@$(hostname)" -f "$host_key"
	log "new host key: $(ssh-keygen -l -f "$host_key.pub")"
fi

# run_service NAME keeps $svc_dir/NAME running while that file exists and is executable.
# It runs in a subshell of its own; the pid of the service is in $state_dir/NAME.pid.
run_service() {
	local name=$1 file=$svc_dir/$1 delay=1 started rc pid
	trap - TERM INT
	while [ -x "$file" ]; do
		started=$SECONDS
		printf '%s clusterflow-node-init: starting %s\n' "$(date -Is)" "$file" >>"$log_dir/$name.log"
		"$file" >>"$log_dir/$name.log" 2>&1 </dev/null &
		pid=$!
		echo "$pid" >"$state_dir/$name.pid"
		wait "$pid"
		rc=$?
		rm -f "$state_dir/$name.pid"
		[ -x "$file" ] || break
		if ((SECONDS - started >= 30)); then delay=1; elif ((delay < 16)); then delay=$((delay * 2)); fi
		log "service $name exited with status $rc; restarting in ${delay}s"
		sleep "$delay"
	done
	log "service $name removed; no longer supervised"
	rm -f "$state_dir/$name.runner"
}

scan_services() {
	local file name runner
	for file in "$svc_dir"/*; do
		[ -f "$file" ] && [ -x "$file" ] || continue
		name=${file##*/}
		case $name in *[!A-Za-z0-9._-]* | .*) continue ;; esac
		runner=$(cat "$state_dir/$name.runner" 2>/dev/null) || runner=
		if [ -n "$runner" ] && kill -0 "$runner" 2>/dev/null; then
			continue
		fi
		log "supervising service $name"
		run_service "$name" &
		echo $! >"$state_dir/$name.runner"
	done
}

sshd_pid=
start_sshd() {
	/usr/sbin/sshd -D -e &
	sshd_pid=$!
}

# count_others sets $others to the number of live processes other than PID 1 and this
# script. Builtins only: a forked helper would count itself.
count_others() {
	local p k v state
	others=0
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" = 1 ] || [ "${p#/proc/}" = $$ ] && continue
		state=
		while read -r k v _; do
			[ "$k" = State: ] && state=$v && break
		done 2>/dev/null <"$p/status"
		# Zombies only wait for their parent to collect them.
		case $state in '' | Z) ;; *) others=$((others + 1)) ;; esac
	done
}

shutdown() {
	local f i
	trap '' TERM INT
	log "stopping"
	for f in "$state_dir"/*.runner; do
		[ -e "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
	done
	for f in "$state_dir"/*.pid; do
		[ -e "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
	done
	# Services first, so a dockerd can stop its containers; then everything else.
	for ((i = 0; i < 40; i++)); do
		ls "$state_dir"/*.pid >/dev/null 2>&1 || break
		for f in "$state_dir"/*.pid; do
			[ -e "$f" ] && ! kill -0 "$(cat "$f")" 2>/dev/null && rm -f "$f"
		done
		sleep 0.5
	done
	kill -TERM -1 2>/dev/null
	for ((i = 0; i < 20; i++)); do
		count_others
		((others == 0)) && break
		sleep 0.5
	done
	log "stopped"
	exit 0
}
trap shutdown TERM INT

start_sshd
touch /run/clusterflow/ready
log "sshd started (pid $sshd_pid); services from $svc_dir"

while :; do
	if ! kill -0 "$sshd_pid" 2>/dev/null; then
		wait "$sshd_pid" 2>/dev/null
		log "sshd exited with status $?; restarting"
		sleep 1
		start_sshd
	fi
	scan_services
	# A background sleep keeps the shell in `wait`, where traps run at once and the
	# orphans adopted by a PID-1 shell are reaped.
	sleep 1 &
	wait $!
done
