#!/usr/bin/env bash
# Run the web UI: creates .venv on first run, then starts app.py (flags are passed through).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/ensure_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python app.py "$@"
