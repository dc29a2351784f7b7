"""File and folder names that are valid and safe on Windows, macOS and Linux.

Pure functions, standard library only. Every name the app makes from user text
(prompts, patterns, option values) goes through here, so that:

* a name never leaves its folder: separators, ``..`` and absolute paths are
  stripped, never followed;
* a name is valid on all three systems: no ``<>:"/\\|?*`` or control
  characters, no trailing dots or spaces, no Windows device name (``CON``,
  ``NUL.txt``, ``com1.png``...);
* a name fits: at most 255 bytes of UTF-8 per component (the common limit of
  ext4, APFS and NTFS), cut without splitting a character.
"""
from __future__ import annotations

import re
import unicodedata

MAX_NAME_BYTES = 255
# Characters Windows forbids in names (the separators among them), plus the control characters.
FORBIDDEN_CHARS = '<>:"/\\|?*'
_FORBIDDEN = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_SEPARATORS = re.compile(r"[\\/]+")
# Windows device names: reserved with any extension and in any case ("con.txt", "Com1.tar.gz").
_DEVICES = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
_DEVICES |= {f"{kind}{n}" for kind in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"]}


def truncate_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` bytes of UTF-8, never inside a character.

    Combining marks left dangling at the cut are dropped too, so an accent never
    ends up alone.
    """
    if max_bytes <= 0:
        return ""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    cut = data[:max_bytes].decode("utf-8", errors="ignore")
    while cut and unicodedata.combining(cut[-1]):
        cut = cut[:-1]
    return cut


def utf8_length(text: str) -> int:
    """Length of ``text`` in bytes of UTF-8 (what file systems count)."""
    return len(text.encode("utf-8"))


def is_reserved_name(name: str) -> bool:
    """True for a Windows device name, whatever its extension or case (``CON``, ``nul.png``, ``COM1.a.b``)."""
    stem = name.split(".", 1)[0].rstrip(" ").upper()
    return stem in _DEVICES


def replace_forbidden(text: str, replacement: str = "_") -> str:
    """``text`` with every character forbidden in a file name (separators included) replaced."""
    return _FORBIDDEN.sub(replacement, text)


def safe_name(text: str, *, max_bytes: int = MAX_NAME_BYTES, fallback: str = "_") -> str:
    """One valid file or folder name made from ``text`` (never a path, never empty).

    Forbidden and control characters become ``_``; leading spaces and trailing
    dots and spaces go; a name made only of dots (``.``, ``..``) becomes
    ``fallback``; a Windows device name gets a ``_`` in front; the result fits
    in ``max_bytes`` bytes of UTF-8.
    """
    name = replace_forbidden(text).lstrip(" ")
    name = truncate_utf8(name, max_bytes).rstrip(". ")
    if not name.strip("."):
        name = fallback
    if is_reserved_name(name):
        name = truncate_utf8("_" + name, max_bytes).rstrip(". ")
    return name


def safe_relative_path(text: str, *, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A relative folder path (``/``-separated) made from ``text`` that stays inside its root.

    Both separators split components; empty components, ``.`` and ``..`` are
    dropped (so ``../../x`` and ``/etc`` become ``x`` and ``etc``), a drive
    prefix such as ``C:`` loses its colon, leading dots go (no hidden folders)
    and each component is made a :func:`safe_name`. Returns ``""`` when
    nothing is left.
    """
    parts = []
    for part in _SEPARATORS.split(text):
        part = part.strip(" ")
        if not part.strip("."):
            continue
        part = part.lstrip(".")
        parts.append(safe_name(part, max_bytes=max_bytes))
    return "/".join(parts)


def fit_file_name(stem: str, extension: str, *, reserve: int = 0, max_bytes: int = MAX_NAME_BYTES) -> str:
    """``stem.extension`` with the stem cut so the whole name, plus ``reserve`` spare bytes, fits ``max_bytes``.

    ``reserve`` leaves room for what may be added later (a ``-2`` clash number,
    a hidden ``.claim`` twin). The stem is made a :func:`safe_name` first.
    """
    suffix = f".{extension}" if extension else ""
    budget = max_bytes - reserve - utf8_length(suffix)
    stem = safe_name(stem, max_bytes=max(1, budget))
    return stem + suffix
