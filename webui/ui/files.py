"""What files gradio may serve or accept by path: only uploads and its own outputs, in our own folder.

gradio checks a file path that arrives in a request (a FileData ``path``) only
once ``launch()`` has run; an app mounted on FastAPI never launches, so the
check must be switched on by hand. Its upload and cache folder is the app's
own (not the machine-wide /tmp/gradio), and nothing of the models or outputs
folders can be named.
"""
from __future__ import annotations

import os
from pathlib import Path

UPLOAD_LIMIT_BYTES = 50 << 20


def use_own_temp_dir(folder: Path) -> Path:
    """Point gradio's upload and example caches at ``folder``, unless GRADIO_TEMP_DIR already names one.

    gradio reads the variable when the UI is built and again when it checks a
    path, so one process keeps one folder (the first app's, or the user's own).
    """
    current = os.environ.get("GRADIO_TEMP_DIR")
    if current:
        return Path(current)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder / "examples")
    return folder


def upload_limit(settings) -> int:
    """Largest single upload gradio accepts (Settings.extra["ui_max_upload_bytes"] overrides it)."""
    extra = settings.extra if isinstance(settings.extra, dict) else {}
    return int(extra.get("ui_max_upload_bytes") or UPLOAD_LIMIT_BYTES)


def blocked_paths(settings) -> list[str]:
    """Folders gradio must never serve from, even if a path inside them is named."""
    return [str(settings.models_dir), str(settings.outdir / "config.json"), str(settings.secret_key_path),
            str(settings.queue_db_path)]


def check_paths_like_a_launched_app(demo) -> None:
    """Make gradio check every FileData path in requests (uploads only), as it does after launch()."""
    demo.has_launched = True
