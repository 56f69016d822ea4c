#!/bin/sh
# consul-url-state.sh BINARY RECORD: prints the record of the release zip that
# made BINARY (RECORD holds "ZIPSHA BINSHA"; "none" when missing), then the
# binary's SHA-256 (or "absent").
cat -- "$2" 2>/dev/null || echo none
if [ -f "$1" ]; then sha256sum <"$1" | cut -d' ' -f1; else echo absent; fi
