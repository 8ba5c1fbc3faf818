#!/usr/bin/env bash
# Browser tests drive Debian's chromium. Install it when missing (needs root + apt).
set -euo pipefail
if [ -x /usr/bin/chromium ] || [ -n "${TL_CHROMIUM:-}" ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests..."
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
else
  echo "chromium is missing: install it (apt-get install chromium) or set TL_CHROMIUM to a Chromium binary." >&2
  [ "${CI:-}" = "true" ] && exit 1 || exit 0
fi
