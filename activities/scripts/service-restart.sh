#!/bin/sh
# service-restart.sh NAME: restarts the node supervisor's service NAME (the
# supervisor starts a new one when the old one exits), through clusterflow-service
# when it is installed; waits until the new one runs.
set -eu
name=$1
if command -v clusterflow-service >/dev/null 2>&1; then exec clusterflow-service restart "$name"; fi
pid=$(cat "/run/clusterflow/services/$name.pid")
kill -TERM "$pid"
for _ in $(seq 60); do
  new=$(cat "/run/clusterflow/services/$name.pid" 2>/dev/null) && [ "$new" != "$pid" ] && kill -0 "$new" 2>/dev/null && exit 0
  sleep 0.5
done
echo "$name did not come back within 30 s" >&2; exit 1
