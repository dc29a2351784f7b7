"""Atomic file writes that work on Windows too.

A file is written next to its target under a unique temporary name, flushed to
disk, then moved over the target with ``os.replace`` (which, unlike
``os.rename``, replaces an existing file on Windows). Windows refuses the
replace while another process (an antivirus scan, an editor, a second reader)
holds the target open, so a refused replace is retried for a short while.
Readers see either the old file or the new one, never half of one.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

REPLACE_ATTEMPTS = 20
REPLACE_DELAY_S = 0.05


def replace_file(source: str | os.PathLike, target: str | os.PathLike, *,
                 attempts: int = REPLACE_ATTEMPTS, delay_s: float = REPLACE_DELAY_S) -> None:
    """``os.replace(source, target)``, retried while the OS says the target is in use (Windows)."""
    for attempt in range(attempts):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay_s * (attempt + 1))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating the folder if needed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A short fixed prefix: the target name itself may already use the 255-byte limit.
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        replace_file(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (UTF-8 whatever the system's locale, as on Windows)."""
    atomic_write_bytes(path, text.encode(encoding))
