#!/bin/sh
# service-wait.sh TRIES PROBE ARG...: waits up to TRIES half-seconds until a daemon
# answers; exit 1 when it does not. PROBE is how to ask:
#   docker SOCKET        the engine answers on SOCKET (or, without a docker CLI,
#                        SOCKET exists)
#   consul BINARY ADDR   the agent answers on its HTTP API at ADDR
answers() {
  case $1 in
  docker)
    if command -v docker >/dev/null 2>&1; then
      docker -H "unix://$2" version --format '{{.Server.Version}}' >/dev/null 2>&1
    else
      [ -S "$2" ]
    fi ;;
  consul) "$2" members -http-addr="http://$3" >/dev/null 2>&1 ;;
  *) echo "unknown probe $1" >&2; exit 2 ;;
  esac
}
tries=$1; shift
i=0
while [ "$i" -lt "$tries" ]; do
  answers "$@" && exit 0
  sleep 0.5; i=$((i+1))
done
exit 1
