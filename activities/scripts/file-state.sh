#!/bin/sh
# file-state.sh PATH: what the host has at an upload's destination. Prints "dir",
# "nodir" (the directory of PATH is missing), "absent", or "file" followed by the
# content's sha256sum line and stat's "MODE USER GROUP UID GID". sha256sum reads
# stdin so that odd file names need no unescaping.
if [ -d "$1" ]; then echo dir; exit 0; fi
if [ ! -e "$1" ]; then
  if [ -d "$(dirname -- "$1")" ]; then echo absent; else echo nodir; fi
  exit 0
fi
echo file
sha256sum <"$1" && stat -c '%a %U %G %u %g' -- "$1"
