#!/usr/bin/env bash
# Run the whole test suite: same set-up as webui.sh, the browser for the UI tests, then pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/ensure_env.sh
if [ -f .ci/browser-setup.sh ]; then
  bash .ci/browser-setup.sh
fi
if [ -f .ci/services-setup.sh ]; then
  bash .ci/services-setup.sh
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python -m pytest -q --durations=15 "$@"  # the slowest tests, for whoever keeps CI fast
