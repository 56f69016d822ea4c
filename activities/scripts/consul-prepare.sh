#!/bin/sh
# consul-prepare.sh CONFIGDIR DATADIR NAME: creates the configuration directory
# and the data directory, and resolves NAME (a DNS name; "" for none) on the host.
# Prints KEY=VALUE lines: group (the group the configuration file belongs to:
# consul when the apt package made that group, else root), created=yes when it
# made a directory, and bind (the address NAME resolved to).
set -eu
user=root; group=root
if getent passwd consul >/dev/null 2>&1; then user=consul; fi
if getent group consul >/dev/null 2>&1; then group=consul; fi
echo "group=$group"
# shellcheck disable=SC2174 # the mode is for the last directory only: its parents exist or are not ours
if [ ! -d "$1" ]; then mkdir -p -m 0755 "$1"; echo created=yes; fi
# shellcheck disable=SC2174 # the mode is for the last directory only: its parents exist or are not ours
if [ ! -d "$2" ]; then mkdir -p -m 0750 "$2"; chown "$user:$group" "$2"; echo created=yes; fi
if [ -n "$3" ]; then echo "bind=$(getent ahosts "$3" | awk 'NR == 1 {print $1}')"; fi
