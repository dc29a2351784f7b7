#!/bin/sh
# Container entry: start the launcher on all interfaces with a login (WEBUI_AUTH=user:password, required).
# Arguments are passed on to app.py, e.g. `docker run ... IMAGE --precision bf16`.
set -eu
if [ -z "${WEBUI_AUTH:-}" ]; then
  echo "error: set WEBUI_AUTH=user:password: in a container the web UI listens on every interface" >&2
  exit 2
fi
exec python /app/launch.py --skip-install --listen --gradio-auth "$WEBUI_AUTH" --api-auth "$WEBUI_AUTH" "$@"
