#!/bin/sh
# file-write.sh PATH CONTENT: replaces PATH with CONTENT atomically, keeping the old
# file's mode and owner (0644 root for a new file).
set -eu
umask 022
mkdir -p -- "$(dirname -- "$1")"
tmp="$1.clusterflow-tmp"
trap 'rm -f -- "$tmp"' EXIT
printf '%s' "$2" >"$tmp"
if [ -e "$1" ]; then chmod --reference="$1" -- "$tmp"; chown --reference="$1" -- "$tmp" 2>/dev/null || :; fi
sync -- "$tmp" 2>/dev/null || :
mv -f -- "$tmp" "$1"
