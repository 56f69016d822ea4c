#!/bin/sh
# service-log.sh MANAGER UNIT SUPERVISED LOGFILE: prints the end of a daemon's log,
# wherever its manager keeps it (LOGFILE: under SysV).
case $1 in
systemd) journalctl -u "$2" -n 15 --no-pager 2>&1 ;;
clusterflow-service) tail -n 15 "/var/log/clusterflow/$3.log" 2>&1 ;;
*) if [ -n "$4" ]; then tail -n 15 "$4" 2>&1; fi ;;
esac
