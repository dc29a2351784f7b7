"""What a worker holds (for its heartbeat and job affinity) and which checkpoint a job needs.

Checkpoints are named by their short hash, so the same file has the same name
on every machine whatever its path there.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from webui.schemas import NotFound

TITLE_HASH = re.compile(r"\[([0-9a-fA-F]{10})\]\s*$")


def worker_holdings(device: str, catalog, models) -> Callable[[], dict]:
    """``holdings()`` for a worker: its device, the checkpoint it has loaded and the checkpoint files it has."""

    def holdings() -> dict:
        current = models.current_checkpoint
        return {"device": device, "loaded": [current.short_hash] if current is not None else [],
                "files": sorted({info.short_hash for info in catalog.checkpoints()})}

    return holdings


def checkpoint_needed(catalog) -> Callable[[str, Any], str]:
    """``checkpoint_of(kind, request)``: the short hash of the checkpoint a job names ("" = any will do)."""

    def checkpoint_of(kind: str, request: Any) -> str:
        name = getattr(request, "checkpoint", None)
        if not name:
            return ""
        try:
            return catalog.find_checkpoint(name).short_hash
        except NotFound:  # not on this machine: an A1111 title "name [hash]" still names it
            found = TITLE_HASH.search(name)
            return found.group(1).lower() if found else ""

    return checkpoint_of
