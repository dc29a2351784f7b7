"""Which server folders a caller may name: batch jobs read and write only inside allowed roots.

The roots are the outputs folder and ``settings.extra["extras_input_dirs"]`` (paths
app.py may add). A path outside them, or one that does not exist, is refused with
InvalidRequest (422) naming the field.
"""
from __future__ import annotations

from pathlib import Path

from webui.schemas import InvalidRequest


def allowed_folders(settings) -> list[Path]:
    """Folders a batch input, mask or output folder may lie in."""
    extra = (getattr(settings, "extra", None) or {}).get("extras_input_dirs", ())
    return [Path(settings.outdir).resolve(), *(Path(p).resolve() for p in extra)]


def checked_folder(settings, folder: str | None, field: str, *, must_exist: bool = True) -> Path:
    """``folder`` resolved, if it lies inside an allowed root (and exists, unless ``must_exist`` is false)."""
    if not folder or not str(folder).strip():
        raise InvalidRequest(f"{field}: enter a folder", field=field)
    path = Path(str(folder).strip()).expanduser().resolve()
    roots = allowed_folders(settings)
    if not any(path == root or root in path.parents for root in roots):
        raise InvalidRequest(f"{field} must be inside {', '.join(str(r) for r in roots)}", field=field)
    if must_exist and not path.is_dir():
        raise InvalidRequest(f"{field}: not a folder: {path}", field=field)
    return path
