#!/bin/sh
# ssh-file-read.sh USER NAME: prints, for ~USER/.ssh/NAME: "id UID GID", "home
# HOME", "dir MODE USER GROUP UID GID" (or "dir absent", "dir other"), "file ..."
# likewise (or "file symlink"), a "---" line, then the file's content. Exit 3: no
# such user.
set -u
pw=$(getent passwd "$1") || { echo "user $1 does not exist on this host" >&2; exit 3; }
IFS=: read -r _ _ uid gid _ home _ <<EOF
$pw
EOF
d=$home/.ssh f=$home/.ssh/$2
printf 'id %s %s\nhome %s\n' "$uid" "$gid" "$home"
if [ -d "$d" ]; then printf 'dir '; stat -L -c '%a %U %G %u %g' -- "$d"
elif [ -e "$d" ] || [ -L "$d" ]; then echo 'dir other'; else echo 'dir absent'; fi
if [ -L "$f" ]; then echo 'file symlink'
elif [ -f "$f" ]; then printf 'file '; stat -c '%a %U %G %u %g' -- "$f"
elif [ -e "$f" ]; then echo 'file other'; else echo 'file absent'; fi
echo ---
[ -f "$f" ] && [ ! -L "$f" ] && exec cat -- "$f"
exit 0
