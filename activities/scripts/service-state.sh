#!/bin/sh
# service-state.sh UNIT SUPERVISED SYSV PIDFILE OWNUNIT COMMAND PROGRAM [FILE...]:
# how a daemon is kept running on this host (see activities/services.go), as
# KEY=VALUE lines:
#   manager   systemd, clusterflow-service (the lab nodes' supervisor,
#             /etc/clusterflow/services.d), sysv (only when SYSV is yes:
#             /etc/init.d/UNIT) or none;
#   path      where PROGRAM is (command -v), empty when it is not installed;
#   unit      systemd: ours (OWNUNIT, when given, was written by clusterflow),
#             packaged (another UNIT unit) or none;
#   service   supervisor: current (the service file SUPERVISED runs COMMAND, or
#             COMMAND is empty and the file exists), other, or none;
#   enabled   yes or no: starts at boot;
#   active    yes or no: runs now;
#   stale     yes when the running daemon is older than one of the FILEs (its
#             configuration or binary changed since it started: a restart that is
#             due, or that a failed earlier run did not get to), or its binary was
#             replaced under it.
# The daemon's pid is read from PIDFILE, or, when that is empty, from the manager.
unit=$1 svc=$2 sysv=$3 pidfile=$4 ownunit=$5 want=$6 prog=$7
shift 7
m=none
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then m=systemd
elif [ -d /etc/clusterflow/services.d ]; then m=clusterflow-service
elif [ "$sysv" = yes ] && [ -x "/etc/init.d/$unit" ] && command -v service >/dev/null 2>&1; then m=sysv
fi
echo "manager=$m"
echo "path=$(command -v "$prog" 2>/dev/null || :)"
enabled=no; active=no; units=none; service=none; pid=
case $m in
systemd)
  if [ -n "$ownunit" ] && grep -qs 'written by clusterflow' "$ownunit"; then units=ours
  elif systemctl cat "$unit" >/dev/null 2>&1; then units=packaged; fi
  [ "$(systemctl is-enabled "$unit" 2>/dev/null)" = enabled ] && enabled=yes
  systemctl is-active --quiet "$unit" && active=yes
  pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null || :) ;;
clusterflow-service)
  f=/etc/clusterflow/services.d/$svc
  if [ -x "$f" ]; then
    service=other
    # The file is clusterflow-service's ("exec WORD..."), or an older one that
    # quoted every word.
    # shellcheck disable=SC2086 # COMMAND's words are split on purpose
    quoted=$(printf "'%s' " $want)
    if [ -z "$want" ] || grep -qF -- "$want" "$f" || grep -qF -- "${quoted% }" "$f"; then service=current; enabled=yes; fi
  fi
  pid=$(cat "/run/clusterflow/services/$svc.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null && active=yes ;;
sysv)
  enabled=yes
  service "$unit" status >/dev/null 2>&1 && active=yes ;;
esac
echo "unit=$units"; echo "service=$service"; echo "enabled=$enabled"; echo "active=$active"
if [ -n "$pidfile" ]; then pid=$(cat "$pidfile" 2>/dev/null || :); fi
stale=no
if [ "$active" = yes ] && [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/stat" ]; then
  btime=$(awk '/^btime/ {print $2}' /proc/stat)
  ticks=$(awk '{print $22}' "/proc/$pid/stat")
  hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
  # Both clocks are whole seconds and btime may be a second off: 2 s of slack.
  started=$((btime + ticks / hz + 2))
  for f in "$@"; do
    if [ -e "$f" ] && [ "$(stat -c %Y "$f")" -gt "$started" ]; then stale=yes; fi
  done
  # An upgraded package replaced the binary under the running daemon.
  case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in *" (deleted)") stale=yes ;; esac
fi
echo "stale=$stale"
