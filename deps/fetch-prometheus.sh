#!/usr/bin/env bash
# Prometheus from Debian's package, unpacked into $TIDESCALE_CACHE/deb/prometheus (no system service is installed
# or started). Skipped when the binary is already there.
set -euo pipefail
cache="${TIDESCALE_CACHE:?set TIDESCALE_CACHE}"
binary="$cache/deb/prometheus/usr/bin/prometheus"
if [ -x "$binary" ]; then
  exit 0
fi
mkdir -p "$cache/deb"
cd "$cache/deb"
apt-get download prometheus 2>/dev/null || (apt-get update -qq && apt-get download prometheus)
rm -rf "$cache/deb/prometheus"
dpkg -x "$(ls -t "$cache"/deb/prometheus_*.deb | head -1)" "$cache/deb/prometheus"
test -x "$binary"
