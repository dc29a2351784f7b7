#!/usr/bin/env bash
# Start the web UI: find Python 3.11 and hand over to launch.py (it sets up .venv, then starts app.py; flags pass through).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
exec "$PYTHON" launch.py "$@"
