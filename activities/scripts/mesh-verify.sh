#!/bin/sh
# mesh-verify.sh USER [NAME ADDRESS PORT]...: logs in from this host, with
# ~USER/.ssh/id_ed25519 and only ~USER/.ssh/known_hosts, to each NAME ADDRESS PORT
# triple, and prints "ok NAME" or "fail NAME RC MESSAGE" for each. Up to 8 logins
# run at once (each costs a TCP and SSH handshake, ~0.1-0.2 s of CPU at both
# ends); their results go to files in a private temporary directory and are
# printed at the end. The ssh processes are in the wrapper's process group, so a
# cancelled activity kills them. Exit 3: no such user; 4: no temporary directory.
set -u
pw=$(getent passwd "$1") || { echo "user $1 does not exist on this host" >&2; exit 3; }
IFS=: read -r _ _ _ _ _ home _ <<EOF
$pw
EOF
user=$1; shift
out=$(mktemp -d) || exit 4
trap 'rm -rf "$out"' EXIT
trap 'exit 143' TERM INT
login() {
  if err=$(ssh -n -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=10 \
      -o IdentitiesOnly=yes -i "$home/.ssh/id_ed25519" \
      -o "UserKnownHostsFile=\"$home/.ssh/known_hosts\"" -o GlobalKnownHostsFile=/dev/null \
      -o LogLevel=ERROR -p "$3" -l "$user" -- "$2" true 2>&1 >/dev/null); then
    echo "ok $1"
  else
    rc=$?
    printf 'fail %s %s %s\n' "$1" "$rc" "$(printf '%s' "$err" | tr '\r\n' '  ' | cut -c1-300)"
  fi
}
n=0
while [ $# -ge 3 ]; do
  n=$((n+1))
  login "$1" "$2" "$3" >"$out/$n" &
  shift 3
  [ $((n % 8)) -ne 0 ] || wait
done
wait
[ "$n" -eq 0 ] || cat "$out"/*
