#!/bin/sh
# docker-socket.sh SOCKET: reports, as the login user, whether SOCKET exists and
# can be opened (socket=yes|no, access=yes|no), and the user's groups (groups=).
if [ -S "$1" ]; then echo socket=yes; else echo socket=no; fi
if [ -r "$1" ] && [ -w "$1" ]; then echo access=yes; else echo access=no; fi
echo "groups=$(id -nG)"
