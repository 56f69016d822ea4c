#!/bin/sh
# wrapper.sh: every remote command runs inside this script, started by /bin/sh on
# the host with the real command line as $1. It makes the remote process die with
# the activity:
#
#  - the command runs in a new session and process group (setsid), with stdin from
#    /dev/null, so the whole group can be signalled;
#  - a watcher reads the session's stdin, which the worker keeps open and never
#    writes to. stdin ends when the worker closes it (the activity was cancelled or
#    timed out) or when sshd loses the connection (worker killed, network gone);
#    then the watcher sends TERM to the group, and KILL after 2 s if any is left;
#  - when the command ends first, the watcher is stopped, and the command's exit
#    status is the wrapper's.
#
# Details: stdin is saved on fd 3 because sh gives background jobs /dev/null as
# stdin; setsid does not fork when its caller is not a group leader, which a
# background job of a non-interactive shell never is, so $! is the new group's id.
# stdin may end before the background job has called setsid (a cancel right after
# the start), when there is no group -$pid yet: so the watcher signals the process
# $pid first (which then dies before starting anything) and the group second (which
# by then holds everything started). The watcher ignores TERM once it has started
# killing, so the main shell's clean-up cannot interrupt it. "wait ... 2>/dev/null"
# keeps dash's "Terminated" job notices out of the command's stderr. Zombies count
# as group members, so where init reaps orphans slowly the watcher may take the full
# 2 s. With sudo, sudo is in the group and relays TERM to the command (which sudo's
# use_pty puts in a session of its own); KILL reaches sudo only.
#
# Only POSIX sh, setsid (util-linux or busybox), kill and sleep are needed on the
# host. This header is not sent; see ScriptBody.
exec 3<&0
setsid /bin/sh -c "$1" </dev/null 3<&- &
pid=$!
(
  # shellcheck disable=SC2034 # the lines are read only to notice the end of stdin
  while read -r line; do :; done
  trap '' TERM
  kill -TERM $pid; kill -TERM -$pid
  n=0
  while { kill -0 -$pid || kill -0 $pid; } && [ $n -lt 20 ]; do sleep 0.1; n=$((n+1)); done
  kill -KILL -$pid; kill -KILL $pid
) <&3 >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait $pid 2>/dev/null
rc=$?
kill $watcher 2>/dev/null
wait $watcher 2>/dev/null
exit $rc
