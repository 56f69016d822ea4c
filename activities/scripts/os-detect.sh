#!/bin/sh
# os-detect.sh: prints the os-release file, a separator line, the dpkg
# architecture, a separator line and "apt" when apt-get and dpkg-query exist.
for f in /etc/os-release /usr/lib/os-release; do
  if [ -r "$f" ]; then cat "$f"; break; fi
done
echo
echo @@clusterflow@@
dpkg --print-architecture 2>/dev/null || :
echo @@clusterflow@@
if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then echo apt; fi
