"""Saving images the way A1111 does, and reading their infotext back.

Files land in ``<outdir>/<category>/YYYY-MM-DD/NNNNN-SEED.png`` (category as
A1111's folders: ``txt2img-images``, ``img2img-images``, ``extras-images``).
Writes are atomic: the image goes to a hidden temporary file in the same folder
and appears under its final name only when complete. The infotext travels in
the PNG text chunk ``parameters``, or in EXIF UserComment for JPEG and WebP.
"""
from __future__ import annotations

import base64
import datetime
import io
import os
import re
import tempfile
from pathlib import Path

from PIL import Image, PngImagePlugin

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"
_ASCII_PREFIX = b"ASCII\x00\x00\x00"
_NUMBERED = re.compile(r"^(\d+)(?:\D|$)")
_UNSAFE = re.compile(r"[^\w\-. \[\]()+,=@]")
# Image.info keys that are format details, not the user's metadata (left out of "items").
_FORMAT_KEYS = frozenset({
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
    "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity",
    "photoshop", "transparency", "gamma", "srgb", "aspect",
})


# ---------------------------------------------------------------- metadata
def _pnginfo(infotext: str | None) -> PngImagePlugin.PngInfo | None:
    if not infotext:
        return None
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext)  # becomes iTXt by itself when not Latin-1
    return info


def _exif_bytes(infotext: str | None) -> bytes:
    exif = Image.Exif()
    if infotext:
        exif.get_ifd(EXIF_IFD)[USER_COMMENT] = _UNICODE_PREFIX + infotext.encode("utf-16-be")
    return exif.tobytes()


def _decode_user_comment(raw) -> str | None:
    if isinstance(raw, str):
        return raw.strip("\x00") or None
    if not isinstance(raw, (bytes, bytearray)):
        return None
    raw = bytes(raw)
    if raw.startswith(_UNICODE_PREFIX):
        body = raw[len(_UNICODE_PREFIX):]
        # The standard says big-endian; some writers used little-endian. ASCII text
        # in UTF-16 has its zero bytes first in big-endian, so look at where they are.
        le = len(body) >= 2 and body[1:2] == b"\x00" and body[0:1] != b"\x00"
        text = body.decode("utf-16-le" if le else "utf-16-be", errors="replace")
    elif raw.startswith(_ASCII_PREFIX):
        text = raw[len(_ASCII_PREFIX):].decode("ascii", errors="replace")
    else:
        body = raw[8:] if raw[:8] in (b"\x00" * 8, b"JIS\x00\x00\x00\x00\x00") else raw
        text = body.decode("utf-8", errors="ignore")
    return text.strip("\x00") or None


def read_infotext(image: Image.Image) -> str | None:
    """The infotext an image carries: PNG chunk ``parameters``, else EXIF UserComment; None if neither."""
    text = (image.info or {}).get("parameters")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if isinstance(text, str) and text:
        return text
    try:
        exif = image.getexif()
        comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Exception:  # damaged EXIF must not break reading the image
        comment = None
    return _decode_user_comment(comment) if comment is not None else None


def read_image_info(image: Image.Image) -> tuple[str | None, dict]:
    """(infotext, items): items are the image's other text metadata, as A1111's PNG Info shows them."""
    infotext = read_infotext(image)
    items = {}
    for key, value in (image.info or {}).items():
        if not isinstance(key, str) or key.lower() in _FORMAT_KEYS:
            continue
        if isinstance(value, bytes):
            continue
        if isinstance(value, (str, int, float, bool)):
            items[key] = value
    if infotext is not None:
        items["parameters"] = infotext
        if "parameters" not in (image.info or {}):
            items["exif comment"] = infotext
    return infotext, items


def encode_png_base64(image: Image.Image, infotext: str | None) -> str:
    """Base64 PNG (no ``data:`` prefix) carrying ``infotext`` in its ``parameters`` chunk, for API replies."""
    buffer = io.BytesIO()
    # PIL keeps save options on the image object (``encoderinfo``); two threads saving one
    # image (the job store and this reply) can leave the other's options behind, and those
    # then override ours (pnginfo=None: no chunk). A private copy starts clean.
    image.copy().save(buffer, format="PNG", pnginfo=_pnginfo(infotext))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------- saving
def _numbers(folder: Path) -> tuple[set[int], set[int]]:
    """(numbers of visible files, numbers of claims) in ``folder``."""
    visible: set[int] = set()
    claimed: set[int] = set()
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return visible, claimed
    for name in names:
        if name.startswith(".") and name.endswith(".claim"):
            match = _NUMBERED.match(name[1:])
            if match:
                claimed.add(int(match.group(1)))
            continue
        match = _NUMBERED.match(name)
        if match:
            visible.add(int(match.group(1)))
    return visible, claimed


def next_number(folder: Path) -> int:
    """One past the highest ``NNNNN`` prefix in ``folder``, counting pending saves (0 when none)."""
    visible, claimed = _numbers(folder)
    return max(visible | claimed, default=-1) + 1


def _claim_number(folder: Path) -> tuple[int, Path]:
    """Reserve the next free number with a hidden claim file; (number, claim path).

    Creating a claim is exclusive, and a number a visible file already has is never
    taken, so threads and processes saving into one folder never share a number.
    """
    number = next_number(folder)
    while True:
        claim = folder / f".{number:05d}.claim"
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            number += 1
            continue
        # Another saver may have published this number and dropped its claim just before ours.
        if number in _numbers(folder)[0]:
            claim.unlink()
            number = next_number(folder)
            continue
        return number, claim


def _safe_suffix(text: str) -> str:
    """Keep a file-name fragment to harmless characters (never a path)."""
    return _UNSAFE.sub("_", text.replace(os.sep, "_").replace("/", "_"))[:80]


def _encode(image: Image.Image, fmt: str, infotext: str | None) -> bytes:
    kind = FORMATS[fmt]
    buffer = io.BytesIO()
    image = image.copy()  # a private copy: see encode_png_base64
    if kind == "PNG":
        image.save(buffer, format="PNG", pnginfo=_pnginfo(infotext))
    else:
        if image.mode not in ("RGB", "L") and not (kind == "WEBP" and image.mode == "RGBA"):
            image = image.convert("RGB")
        image.save(buffer, format=kind, exif=_exif_bytes(infotext), quality=95)
    return buffer.getvalue()


def save_image(image: Image.Image, outdir: Path, category: str, *, seed: int | None, infotext: str | None,
               fmt: str = "png", name_suffix: str = "", date: datetime.date | None = None) -> Path:
    """Save ``image`` as ``outdir/category/YYYY-MM-DD/NNNNN[-SEED][suffix].fmt`` and return the path.

    The number continues the highest one in that folder; concurrent savers (threads
    or processes) never get the same number. The file appears only when complete
    (temporary file, then ``os.replace``). Raises ValueError for an unknown format
    or a category that is not a plain folder name.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}; use one of {', '.join(sorted(FORMATS))}")
    if not category or _safe_suffix(category) != category or set(category) <= {"."}:
        raise ValueError(f"bad image category {category!r}")
    folder = Path(outdir) / category / (date or datetime.date.today()).isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    data = _encode(image, fmt, infotext)
    stem_tail = (f"-{int(seed)}" if seed is not None else "") + _safe_suffix(name_suffix)
    handle, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=f".{fmt}", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        number, claim = _claim_number(folder)
        try:
            final = folder / f"{number:05d}{stem_tail}.{fmt}"
            os.replace(tmp, final)
        finally:
            claim.unlink(missing_ok=True)
        return final
    finally:
        tmp.unlink(missing_ok=True)
