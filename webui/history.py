"""The images under the output folder, newest first, searchable by what their infotext says.

Every ``.png``, ``.jpg``/``.jpeg`` and ``.webp`` below ``outdir`` is listed with
its folder (A1111's ``txt2img-images/2024-05-01``), its time and its parsed
infotext, so the History tab can filter by day, prompt words, model and seed.
Infotext is read once per file version (path, size, mtime). Deleting accepts
only a file this listing returned: a name a user sends is never joined to a path.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


@dataclass(frozen=True)
class HistoryEntry:
    """One saved image and the generation parameters it carries."""

    path: Path
    folder: str  # relative to the output folder, with "/" separators
    modified: float
    infotext: str = ""
    parameters: dict = field(default_factory=dict, compare=False)

    @property
    def day(self) -> str:
        """``YYYY-MM-DD`` of the file's time (what the date filter lists)."""
        return datetime.fromtimestamp(self.modified).strftime("%Y-%m-%d")

    @property
    def prompt(self) -> str:
        return str(self.parameters.get("Prompt", ""))

    @property
    def seed(self) -> int | None:
        try:
            return int(float(self.parameters["Seed"]))
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def model(self) -> str:
        """The model name and hash as the infotext records them."""
        return " ".join(str(self.parameters[k]) for k in ("Model", "Model hash") if self.parameters.get(k))

    def caption(self) -> str:
        """A short label for a gallery tile: seed and the start of the prompt."""
        prompt = " ".join(self.prompt.split())
        prompt = prompt if len(prompt) <= 60 else prompt[:59] + "…"
        seed = f"seed {self.seed}" if self.seed is not None else self.path.name
        return f"{seed}: {prompt}" if prompt else seed


def _read_infotext(path: Path) -> str:
    from PIL import Image

    from webui.images import read_infotext

    try:
        with Image.open(path) as image:
            return read_infotext(image) or ""
    except Exception:  # a damaged or half-written file is listed without parameters
        return ""


class OutputHistory:
    """Lists and searches the images under one output folder."""

    def __init__(self, outdir: Path):
        self.outdir = Path(outdir)
        self._cache: dict[Path, tuple[tuple[int, float], HistoryEntry]] = {}
        self._lock = threading.Lock()

    def _entry(self, path: Path) -> HistoryEntry | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        version = (stat.st_size, stat.st_mtime)
        with self._lock:
            cached = self._cache.get(path)
        if cached and cached[0] == version:
            return cached[1]
        from webui.infotext import parse_infotext

        text = _read_infotext(path)
        folder = path.parent.relative_to(self.outdir).as_posix()
        entry = HistoryEntry(path, "" if folder == "." else folder, stat.st_mtime, text,
                             parse_infotext(text) if text else {})
        with self._lock:
            self._cache[path] = (version, entry)
        return entry

    def entries(self) -> list[HistoryEntry]:
        """Every image under the output folder, newest first."""
        if not self.outdir.is_dir():
            return []
        paths = [p for p in self.outdir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        entries = [e for e in (self._entry(p) for p in paths) if e is not None]
        with self._lock:  # forget files that are gone
            self._cache = {p: v for p, v in self._cache.items() if p in set(paths)}
        return sorted(entries, key=lambda e: (e.modified, e.path.name), reverse=True)

    def days(self) -> list[str]:
        """The days that have images, newest first."""
        return sorted({entry.day for entry in self.entries()}, reverse=True)

    def search(self, text: str = "", *, seed: int | None = None, model: str = "", day: str = "",
               folder: str = "") -> list[HistoryEntry]:
        """Images whose prompt or negative prompt contains every word of ``text`` (any case),
        made with ``seed``, whose model name or hash contains ``model``, saved on ``day`` and
        under ``folder`` (each filter ignored when empty)."""
        words = text.lower().split()
        model = model.strip().lower()
        found = []
        for entry in self.entries():
            haystack = f"{entry.prompt}\n{entry.parameters.get('Negative prompt', '')}".lower()
            if words and not all(word in haystack for word in words):
                continue
            if seed is not None and entry.seed != seed:
                continue
            if model and model not in entry.model.lower():
                continue
            if day and entry.day != day:
                continue
            if folder and not (entry.folder == folder or entry.folder.startswith(folder + "/")):
                continue
            found.append(entry)
        return found

    def latest(self) -> HistoryEntry | None:
        """The newest image that carries generation parameters (A1111's "last parameters")."""
        return next((entry for entry in self.entries() if entry.infotext), None)

    def delete(self, path: str | Path) -> HistoryEntry:
        """Delete one listed image (and its ``.txt`` beside it); raises FileNotFoundError for anything else."""
        wanted = Path(path)
        entry = next((e for e in self.entries() if e.path == wanted), None)
        if entry is None:
            raise FileNotFoundError(f"{wanted.name} is not an image in the output folder")
        entry.path.unlink()
        entry.path.with_suffix(".txt").unlink(missing_ok=True)
        with self._lock:
            self._cache.pop(entry.path, None)
        return entry
