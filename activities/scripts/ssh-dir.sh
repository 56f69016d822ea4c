#!/bin/sh
# ssh-dir.sh DIR OWNER: makes DIR (a user's ~/.ssh) exist, 0700, owned by OWNER
# (UID:GID).
# shellcheck disable=SC2174 # the mode is for the last directory only: its parents exist or are not ours
mkdir -p -m 0700 -- "$1" && chown "$2" -- "$1" && chmod 0700 -- "$1"
