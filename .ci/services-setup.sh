#!/usr/bin/env bash
# Set up the services some tests start themselves: Debian's redis-server (the Redis queue tests).
# The tests launch their own redis-server on a free port; nothing is left running.
set -euo pipefail

if ! command -v redis-server >/dev/null; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null; then SUDO="sudo"; else
            echo "services-setup: cannot install redis-server without root; the Redis queue tests will be skipped" >&2
            exit 0
        fi
    fi
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends redis-server
fi
# The package's own service is not needed (tests start their own); stop it where it auto-started.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    ${SUDO:-} systemctl stop redis-server || true
fi
redis-server --version
