#!/usr/bin/env bash
# Set up the browser tests (tests/browser): Debian's chromium and the playwright Python package.
# Playwright's own browser download is not used; the tests launch /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null; then SUDO="sudo"; else
            echo "browser-setup: cannot install chromium without root; the browser tests will be skipped" >&2
            SUDO="skip"
        fi
    fi
    if [ "$SUDO" != "skip" ]; then
        $SUDO apt-get update
        $SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core
    fi
fi

PYTHON=".venv/bin/python"
[ -x "$PYTHON" ] || PYTHON="python3"
"$PYTHON" -m pip install --quiet "playwright>=1.40"
"$PYTHON" -c "import playwright; print('playwright ready; chromium at /usr/bin/chromium')"
