"""The page's own scripts and styles (webui/ui/assets): keyboard shortcuts, prompt weight editing, progress.

``head_html()`` goes into gradio's ``head=`` and ``stylesheet()`` is added to its
``css=``; both are read when the UI is mounted, never at import time.
"""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).with_name("assets")
SCRIPTS = ("edit_weight.js", "shortcuts.js", "progress.js")
STYLES = ("results.css",)


def head_html() -> str:
    """Every script as an inline <script> element, in load order."""
    return "\n".join(f"<script>\n{(ASSETS / name).read_text(encoding='utf-8')}\n</script>" for name in SCRIPTS)


def stylesheet() -> str:
    """The page's extra CSS."""
    return "\n".join((ASSETS / name).read_text(encoding="utf-8") for name in STYLES)
