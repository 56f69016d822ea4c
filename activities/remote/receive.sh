#!/bin/sh
# receive.sh DEST TMP SIZE SHA256 MODE OWNER GROUP: writes standard input to TMP (a
# new file, created exclusively, private until complete) and hashes it in the same
# pass (tee into openssl, or sha256sum where openssl is missing), so the host never
# reads the file again. It fsyncs TMP, gives it OWNER:GROUP (either may be empty)
# and then MODE (chown first: it clears setuid bits), and prints "size N" and
# "sha256 HEX" for the worker to compare with what it sent.
#
# SIZE is the byte count the worker sends: fewer bytes (the connection was lost,
# the worker gave up) remove TMP and fail. When SHA256 is the content's checksum
# (the worker knew it before sending), a match renames TMP over DEST at once and
# prints "renamed"; "-" leaves TMP for the worker to rename after its own check.
# On any failure TMP is removed. Exit status 3: TMP cannot be created; 4: the
# write or the size failed; 5: mode, owner or the rename failed; 6: the checksum
# is not SHA256 (no checksum is printed then: the content may be a secret).
#
# Needs POSIX sh, tee, stat, and openssl or sha256sum on the host; sync with file
# arguments (coreutils 8.24) is used when there. This header is not sent; see
# ScriptBody.
dest=$1 tmp=$2 size=$3 want=$4 mode=$5 owner=$6 group=$7
umask 077
if command -v openssl >/dev/null 2>&1; then
  hash() { openssl dgst -sha256 -r; }
else
  hash() { sha256sum; }
fi
fail() { rm -f -- "$tmp"; echo "$2" >&2; exit "$1"; }
# noclobber: the redirection creates TMP exclusively (O_EXCL).
set -C
true 2>/dev/null >"$tmp" || { echo "cannot create $tmp" >&2; exit 3; }
set +C
# tee's status and the hash both go to the captured output, in either order.
out=$(exec 4>&1; { tee -- "$tmp" 4>&-; echo "tee=$?" >&4; } | hash 4>&-)
case $out in
  *tee=0*) ;;
  *) fail 4 "writing $tmp failed" ;;
esac
sum=$(printf '%s\n' "$out" | sed -n 's/^\([0-9a-f]\{64\}\).*/\1/p')
got=$(stat -c %s -- "$tmp") || fail 4 "cannot stat $tmp"
[ "$got" = "$size" ] || fail 4 "received $got of $size bytes"
[ -n "$sum" ] || fail 4 "no checksum of $tmp"
{ sync -- "$tmp" 2>/dev/null || :; }
if [ -n "$owner$group" ]; then
  spec=$owner
  [ -z "$group" ] || spec=$owner:$group
  chown -- "$spec" "$tmp" || fail 5 "chown $spec failed"
fi
chmod -- "$mode" "$tmp" || fail 5 "chmod $mode failed"
echo "size $got"
echo "sha256 $sum"
if [ "$want" = "$sum" ]; then
  mv -f -- "$tmp" "$dest" || fail 5 "renaming onto $dest failed"
  echo renamed
elif [ "$want" != - ]; then
  fail 6 "the checksum differs"
fi
