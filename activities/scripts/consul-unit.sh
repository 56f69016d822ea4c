#!/bin/sh
# consul-unit.sh PATH CONTENT: writes the systemd unit PATH with CONTENT when it
# differs, then reloads systemd; prints "changed" when it wrote the unit.
set -eu
if [ "$(cat "$1" 2>/dev/null || :)" != "$(printf '%s' "$2")" ]; then
  printf '%s' "$2" >"$1.clusterflow-tmp"; chmod 0644 "$1.clusterflow-tmp"
  mv -f "$1.clusterflow-tmp" "$1"
  systemctl daemon-reload
  echo changed
fi
