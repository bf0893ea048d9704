#!/usr/bin/env bash
# Installs headless Chromium and its driver from Debian for the browser end-to-end test
# (tests/e2e/browser.mjs). Does nothing when /usr/bin/chromium already exists.
#
#   scripts/e2e/install-browser.sh
#
# Needs root (apt-get). Never downloads a browser build of its own: Chromium comes
# from Debian's `chromium` package, and Playwright is only ever pointed at it.
set -euo pipefail

if [[ -x /usr/bin/chromium ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-browser.sh: /usr/bin/chromium is missing; install the Debian packages with" \
    "'apt-get install -y chromium chromium-driver' as root, or run this script as root" >&2
  exit 1
fi
echo "install-browser.sh: installing chromium from Debian (apt-get install -y chromium chromium-driver)" >&2
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver fonts-liberation
[[ -x /usr/bin/chromium ]] || { echo "install-browser.sh: chromium installed but /usr/bin/chromium is missing" >&2; exit 1; }
