#!/bin/sh
# apt-repo.sh KEY_URL SOURCES_LINE KEYRING SOURCES_LIST: makes a vendor's
# repository an apt source: the signing key fetched from KEY_URL (armored) into
# KEYRING, the line SOURCES_LINE in SOURCES_LIST, each written only when it differs
# from what is there; prints "changed" if it wrote anything. The key is fetched
# with curl or wget when present, else with apt's own downloader (apt-helper),
# which every apt system has. Exit 3: KEY_URL is not a key. Docker's and
# HashiCorp's repositories both use it.
set -eu
key=$3
list=$4
install -d -m 0755 "$(dirname "$key")" "$(dirname "$list")"
tmp=$(mktemp "$key.XXXXXX")
trap 'rm -f "$tmp" "$list.clusterflow-tmp"' EXIT
if command -v curl >/dev/null 2>&1; then
  curl -fsSL --retry 3 -o "$tmp" "$1"
elif command -v wget >/dev/null 2>&1; then
  wget -q -O "$tmp" "$1"
else
  /usr/lib/apt/apt-helper download-file "$1" "$tmp" >/dev/null
fi
if ! grep -q 'BEGIN PGP PUBLIC KEY BLOCK' "$tmp"; then
  echo "the file at $1 is not an armored OpenPGP public key" >&2; exit 3
fi
changed=
if ! cmp -s "$tmp" "$key"; then chmod 0644 "$tmp"; mv -f "$tmp" "$key"; changed=1; fi
if [ "$(cat "$list" 2>/dev/null || :)" != "$(printf '%s' "$2")" ]; then
  printf '%s' "$2" >"$list.clusterflow-tmp"; chmod 0644 "$list.clusterflow-tmp"
  mv -f "$list.clusterflow-tmp" "$list"; changed=1
fi
if [ -n "$changed" ]; then echo changed; fi
