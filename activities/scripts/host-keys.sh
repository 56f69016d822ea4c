#!/bin/sh
# host-keys.sh USER MODE: prints "hostkey LINE" for every
# /etc/ssh/ssh_host_*_key.pub and, when MODE is "mesh", ensures ~USER/.ssh/id_ed25519
# (made by ssh-keygen when missing, mode 0600, owned by USER) and prints "nodekey
# LINE". Lines "note ..." say what it changed. The private key never leaves the
# host. Exit 3: no such user; 4: cannot fix ~/.ssh; 5: ssh-keygen failed.
set -u
pw=$(getent passwd "$1") || { echo "user $1 does not exist on this host" >&2; exit 3; }
IFS=: read -r _ _ uid gid _ home _ <<EOF
$pw
EOF
for f in /etc/ssh/ssh_host_*_key.pub; do
  [ -f "$f" ] && printf 'hostkey %s\n' "$(head -n 1 "$f")"
done
[ "$2" = mesh ] || exit 0
d=$home/.ssh k=$home/.ssh/id_ed25519
if [ ! -d "$d" ]; then
  # shellcheck disable=SC2174 # the mode is for the last directory only: its parents exist or are not ours
  mkdir -p -m 0700 "$d" && chown "$uid:$gid" "$d" || exit 4
  echo "note created $d"
fi
if [ ! -e "$k" ]; then
  ssh-keygen -q -t ed25519 -N '' -C "$1@$(hostname)" -f "$k" </dev/null >&2 || exit 5
  chown "$uid:$gid" "$k" "$k.pub" || exit 4
  echo "note generated $k"
fi
if [ "$(stat -c '%a %u' "$k")" != "600 $uid" ]; then
  chown "$uid:$gid" "$k" && chmod 0600 "$k" || exit 4
  echo "note fixed mode and owner of $k"
fi
if [ ! -s "$k.pub" ]; then
  ssh-keygen -y -f "$k" </dev/null >"$k.pub" && chown "$uid:$gid" "$k.pub" || exit 5
  echo "note wrote $k.pub"
fi
printf 'nodekey %s\n' "$(head -n 1 "$k.pub")"
