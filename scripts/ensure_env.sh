#!/usr/bin/env bash
# Set up .venv (create it, install the right torch and requirements when they changed): launch.py's set-up step.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
exec "$PYTHON" launch.py --prepare-only "$@"
