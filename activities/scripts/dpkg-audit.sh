#!/bin/sh
# dpkg-audit.sh: prints "repair" and dpkg's complaints when a dpkg run was
# interrupted: packages left unpacked, half-installed or half-configured, or
# journal entries not yet merged into the status file.
out=$(dpkg --audit 2>&1)
pending=$(ls -A /var/lib/dpkg/updates 2>/dev/null)
if [ -n "$out" ] || [ -n "$pending" ]; then echo repair; printf '%s\n' "$out" | head -n 20; fi
