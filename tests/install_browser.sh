#!/bin/sh
# Install Debian's Chromium for tests/integration/test_browser.py and tools/screenshot.py (idempotent; needs root).
# Playwright drives this system browser; its own browser download (`playwright install`) is never used.
set -eu

CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    echo "chromium already installed: $CHROMIUM"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium
"$CHROMIUM" --version 2>/dev/null || true
