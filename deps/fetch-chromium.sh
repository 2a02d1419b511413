#!/usr/bin/env bash
# Headless Chromium for the console's browser tests and `tidescale bench console`: Debian's `chromium` and
# `chromium-driver` (the driver Selenium uses; both from one source package, so their versions match).
# Skipped when both are there. Chromium needs dozens of shared libraries that only dpkg puts in place, so this
# is a system install with apt-get (as root, as the set-up runs; otherwise through sudo), not an unpack into
# the cache like Prometheus. TIDESCALE_SKIP_CHROMIUM=1 skips it (the browser tests then skip, saying why).
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "${TIDESCALE_SKIP_CHROMIUM:-0}" = "1" ]; then
  echo "fetch-chromium: skipped (TIDESCALE_SKIP_CHROMIUM=1)" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
test -x /usr/bin/chromium && test -x /usr/bin/chromedriver
