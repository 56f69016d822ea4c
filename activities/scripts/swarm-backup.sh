#!/bin/sh
# swarm-backup.sh DEST MODE: saves /var/lib/docker/swarm as DEST (a .tar.gz,
# 0600): the engine is stopped for the copy, as Docker's backup procedure asks, and
# started again whatever happens; with MODE "live" it is copied as it runs. A
# backup already at DEST is kept. Prints bytes= and sha256= of DEST (existed=yes
# when it was there). Exit 3: no manager state here, or no way to stop the engine.
set -eu
dest=$1
report() { echo "bytes=$(stat -c %s "$dest")"; echo "sha256=$(sha256sum "$dest" | cut -d' ' -f1)"; }
if [ -s "$dest" ]; then echo "existed=yes"; report; exit 0; fi
[ -d /var/lib/docker/swarm/raft ] || { echo "no /var/lib/docker/swarm/raft: this host holds no swarm manager state" >&2; exit 3; }
dockerd=$(command -v dockerd)
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  stop() { systemctl stop docker.socket docker; }; start() { systemctl start docker; }
elif [ -d /etc/clusterflow/services.d ] && command -v clusterflow-service >/dev/null 2>&1; then
  stop() { clusterflow-service stop dockerd >/dev/null; }; start() { clusterflow-service start dockerd "$dockerd" >/dev/null; }
elif [ -x /etc/init.d/docker ]; then
  stop() { service docker stop; }; start() { service docker start; }
else echo "cannot stop the engine: no systemd, node supervisor or /etc/init.d/docker" >&2; exit 3; fi
umask 077
mkdir -p "$(dirname "$dest")"
if [ "$2" != live ]; then stop; trap start EXIT; fi
tar -C /var/lib/docker -czf "$dest.part" swarm
mv "$dest.part" "$dest"
report
