"""The progress bar under Generate: percent, step, image and ETA as text, state and title as data for the page's script.

The page script (assets/progress.js) reads ``data-state`` to turn Generate into
Interrupt/Skip while a job runs, ``data-title`` to show progress in the
browser tab's title and ``data-notify`` to beep or notify when a job ends.
"""
from __future__ import annotations

import html

from webui.ui import common

IDLE = "<div class='webui-progress' data-state='idle'></div>"


def format_eta(seconds: float | None) -> str:
    """``ETA 7s`` / ``ETA 2m 05s`` / ``ETA 1h 02m``; empty while the step time is not measured yet."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"ETA {seconds}s"
    if seconds < 3600:
        return f"ETA {seconds // 60}m {seconds % 60:02d}s"
    return f"ETA {seconds // 3600}h {seconds % 3600 // 60:02d}m"


def progress_parts(job) -> tuple[str, int, str]:
    """(state, percent, text) of a job: ``running``, 42, ``42% · image 1/2 · step 9/20 · ETA 6s``."""
    state = common.job_status(job)
    if state == "queued":
        position = getattr(job, "position", None)
        return state, 0, f"Queued (position {position})" if position is not None else "Queued"
    progress = getattr(job, "progress", None)
    if state == "running":
        if progress is None or not getattr(progress, "steps", 0):
            return state, 0, "Starting…"
        percent = int(progress.fraction * 100)
        parts = [f"{percent}%"]
        if progress.image_count > 1:
            parts.append(f"image {progress.image_index + 1}/{progress.image_count}")
        parts.append(f"step {min(progress.step, progress.steps)}/{progress.steps}")
        eta = format_eta(progress.eta_seconds)
        parts.append(eta or "ETA: measuring…")
        return state, percent, " · ".join(parts)
    return state, 100 if state == "succeeded" else 0, ""


def progress_html(job, *, notify: bool = False) -> str:
    """The bar for ``job``: a <progress> element and its text, with the state for the page script."""
    state, percent, text = progress_parts(job)
    title = f"[{percent}%] " if state == "running" else ("[queued] " if state == "queued" else "")
    bar = f"<progress max='100' value='{percent}'></progress>" if state in ("queued", "running") else ""
    return (
        f"<div class='webui-progress' data-state='{html.escape(state, quote=True)}' data-percent='{percent}'"
        f" data-title='{html.escape(title, quote=True)}' data-notify='{1 if notify else 0}'"
        f" data-job='{html.escape(str(getattr(job, 'id', '')), quote=True)}'>"
        f"{bar}<span class='webui-progress-text'>{html.escape(text)}</span></div>"
    )


def notify_when_done(services) -> bool:
    """A1111's ``notification_audio`` option: beep (and notify, where allowed) when a job ends."""
    options = getattr(services, "options", None)
    try:
        return bool(options.get("notification_audio")) if options is not None else False
    except Exception:
        return False
