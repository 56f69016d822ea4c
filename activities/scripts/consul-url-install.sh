#!/bin/sh
# consul-url-install.sh URL SHA256 BINARY RECORD: downloads the zip at URL,
# checks it against SHA256 (exit 5 when it differs), unpacks consul from it and
# installs it as BINARY (0755, atomically), and writes RECORD. Exit 4: the download
# failed; exit 6: nothing on the host can unpack a zip; exit 7: the zip holds no
# consul.
set -eu
umask 022
tmp=$(mktemp -d /tmp/clusterflow-consul.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
zip="$tmp/consul.zip"
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "$zip" "$1" || exit 4
elif command -v wget >/dev/null 2>&1; then
  wget -q -O "$zip" "$1" || exit 4
else
  /usr/lib/apt/apt-helper download-file "$1" "$zip" >/dev/null || exit 4
fi
got=$(sha256sum <"$zip" | cut -d' ' -f1)
if [ "$got" != "$2" ]; then echo "the download has SHA-256 $got, not $2" >&2; exit 5; fi
mkdir "$tmp/x"
if command -v unzip >/dev/null 2>&1; then unzip -q -o "$zip" consul -d "$tmp/x" || exit 7
elif command -v busybox >/dev/null 2>&1 && busybox unzip >/dev/null 2>&1; then (cd "$tmp/x" && busybox unzip -q -o "$zip" consul) || exit 7
elif command -v python3 >/dev/null 2>&1; then python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("consul", sys.argv[2])' "$zip" "$tmp/x" || exit 7
else echo "no unzip, busybox or python3 on the host" >&2; exit 6
fi
[ -f "$tmp/x/consul" ] || exit 7
mkdir -p "$(dirname "$3")" "$(dirname "$4")"
install -m 0755 "$tmp/x/consul" "$3.clusterflow-tmp"
sync "$3.clusterflow-tmp" 2>/dev/null || :
mv -f "$3.clusterflow-tmp" "$3"
printf '%s %s\n' "$2" "$(sha256sum <"$3" | cut -d' ' -f1)" >"$4"
