#!/bin/sh
# docker-users.sh USER...: adds the users to the docker group. It checks every user
# first and changes nothing when one is unknown (exit 3, a "missing NAME..." line);
# then it prints "group" if it created the group and "added NAME" for each user
# added.
missing=
for u in "$@"; do id -u "$u" >/dev/null 2>&1 || missing="$missing $u"; done
if [ -n "$missing" ]; then echo "missing$missing"; exit 3; fi
set -e
if ! getent group docker >/dev/null; then groupadd --system docker; echo group; fi
for u in "$@"; do
  case " $(id -nG "$u") " in
    *" docker "*) ;;
    *) usermod -a -G docker "$u"; echo "added $u" ;;
  esac
done
