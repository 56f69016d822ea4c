#!/bin/sh
# engine-package.sh: prints the installed engine package (pkg=, version=) and
# stale=yes when the running dockerd's binary was replaced since it started.
for p in docker-ce docker.io; do
  v=$(dpkg-query -W -f '${Status}|${Version}' "$p" 2>/dev/null) || continue
  case $v in "install ok installed|"*) echo "pkg=$p"; echo "version=${v#*|}"; break ;; esac
done
if pid=$(cat /var/run/docker.pid 2>/dev/null); then
  case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in *" (deleted)") echo "stale=yes" ;; esac
fi
exit 0
