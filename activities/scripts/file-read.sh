#!/bin/sh
# file-read.sh PATH: prints the file on stdout and, last on stderr, "absent" or
# "present SIZE" (stderr, because a command's stdout keeps only a tail of a large
# file).
if [ -e "$1" ]; then cat -- "$1" && echo "present $(wc -c <"$1")" >&2; else echo absent >&2; fi
