#!/bin/sh
# file-state.sh PATH [SIZE]: what the host has at an upload's destination. Prints
# "dir", "nodir" (the directory of PATH is missing), "absent", or "file" followed by
# the content's checksum line (HEX and a name) and stat's "MODE USER GROUP UID GID".
# With SIZE, a file of another size is not read: its checksum line is "-". The
# checksum reads stdin so that odd file names need no unescaping; openssl (which
# uses the CPU's SHA extensions) is preferred to coreutils' sha256sum.
if [ -d "$1" ]; then echo dir; exit 0; fi
if [ ! -e "$1" ]; then
  if [ -d "$(dirname -- "$1")" ]; then echo absent; else echo nodir; fi
  exit 0
fi
echo file
if [ -n "${2:-}" ] && [ "$2" -ge 0 ] && [ "$(stat -c %s -- "$1")" != "$2" ]; then
  echo -
elif command -v openssl >/dev/null 2>&1; then
  openssl dgst -sha256 -r <"$1"
else
  sha256sum <"$1"
fi && stat -c '%a %U %G %u %g' -- "$1"
