"""Image files with infotext: encoding, atomic numbered writes, and the one reader of infotext.

``write_image`` puts an image in a folder under A1111's names (``NNNNN-...``,
``grid-NNNN-...``), never overwriting: the image goes to a hidden temporary
file in the same folder and appears under its final name only when complete.
The infotext travels in the PNG text chunk ``parameters``, or in the EXIF
UserComment (UNICODE, as piexif writes it for A1111) for JPEG and WebP;
``read_infotext`` reads either, so PNG Info and the API read every format
written. Which folder and name pattern to use is :mod:`webui.saving`'s job.
"""
from __future__ import annotations

import base64
import datetime
import hashlib
import io
import os
import tempfile
from pathlib import Path

from PIL import Image, PngImagePlugin

from webui.fileio import atomic_write_bytes, replace_file
from webui.filenames import fit_file_name, replace_forbidden, safe_name, utf8_length

FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"
_ASCII_PREFIX = b"ASCII\x00\x00\x00"
# Image.info keys that are format details, not the user's metadata (left out of "items").
_FORMAT_KEYS = frozenset({
    "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
    "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity",
    "photoshop", "transparency", "gamma", "srgb", "aspect",
})


# ---------------------------------------------------------------- metadata
def _pnginfo(infotext: str | None, chunks: dict | None = None) -> PngImagePlugin.PngInfo | None:
    chunks = {k: v for k, v in (chunks or {}).items() if v}
    if not infotext and not chunks:
        return None
    info = PngImagePlugin.PngInfo()
    if infotext:
        info.add_text("parameters", infotext)  # becomes iTXt by itself when not Latin-1
    for key, value in chunks.items():  # more text chunks, e.g. extras' "postprocessing"
        info.add_text(key, value)
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
    return encode_image_base64(image, infotext, "png")


def encode_image_base64(image: Image.Image, infotext: str | None, fmt: str = "png", *, quality: int = 80,
                        lossless: bool = False, chunks: dict | None = None) -> str:
    """Base64 image (no ``data:`` prefix) in ``fmt`` (png, jpg, webp) carrying ``infotext`` where that format keeps it.

    A1111's API encodes its images in the ``samples_format`` option, with the
    infotext in the PNG chunk or the EXIF UserComment; so does this.
    """
    return base64.b64encode(encode_image(image, fmt, infotext, quality=quality, lossless=lossless,
                                         chunks=chunks)).decode("ascii")


def check_format(fmt: str) -> str:
    """The normalised format name (``png``, ``jpg``, ``jpeg``, ``webp``); ValueError for anything else."""
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"unsupported image format {fmt!r}; use one of {', '.join(sorted(FORMATS))}")
    return fmt


def fitting_format(image: Image.Image, fmt: str) -> str:
    """``fmt``, or ``png`` when the image is too large for it (JPEG: 65535 px a side, WebP: 16383), as A1111."""
    limit = {"JPEG": 65535, "WEBP": 16383}.get(FORMATS[fmt])
    if limit is not None and max(image.size) > limit:
        return "png"
    return fmt


def encode_image(image: Image.Image, fmt: str, infotext: str | None, *, quality: int = 80,
                 lossless: bool = False, chunks: dict | None = None) -> bytes:
    """The file bytes of ``image`` in ``fmt`` with ``infotext``: PNG ``parameters`` chunk, else EXIF UserComment.

    ``chunks`` are more PNG text chunks (name -> text); other formats keep only the infotext, or
    the first chunk's text when there is no infotext.
    """
    kind = FORMATS[check_format(fmt)]
    buffer = io.BytesIO()
    # PIL keeps save options on the image object (``encoderinfo``); two threads saving one
    # image (the job store and an API reply) can leave the other's options behind, and those
    # then override ours (pnginfo=None: no chunk). A private copy starts clean.
    image = image.copy()
    if kind == "PNG":
        image.save(buffer, format="PNG", pnginfo=_pnginfo(infotext, chunks))
        return buffer.getvalue()
    if not infotext and chunks:
        infotext = next((v for v in chunks.values() if v), None)
    if image.mode not in ("RGB", "L") and not (kind == "WEBP" and image.mode == "RGBA"):
        image = image.convert("RGB")
    extra = {"lossless": bool(lossless)} if kind == "WEBP" else {}
    image.save(buffer, format=kind, exif=_exif_bytes(infotext), quality=int(quality), **extra)
    return buffer.getvalue()


# ---------------------------------------------------------------- saving
_CLAIM_NUMBER = ".claim-n-"
_CLAIM_NAME = ".claim-h-"
NAME_RESERVE = 8  # bytes kept free in every saved name: a "-NNN" clash number, the .txt twin


def _sequence_number(name: str, prefix: str) -> int | None:
    """A1111's sequence number of a file name: the first ``-`` part after ``prefix`` (``grid-``), if a number."""
    if not name.startswith(prefix):
        return None
    head = os.path.splitext(name[len(prefix):])[0].split("-")[0]
    return int(head) if head.isascii() and head.isdigit() else None


def _numbers(folder: Path, prefix: str = "") -> tuple[set[int], set[int]]:
    """(numbers of visible files, numbers of pending claims) for names starting with ``prefix``."""
    visible: set[int] = set()
    claimed: set[int] = set()
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return visible, claimed
    for name in names:
        if name.startswith(_CLAIM_NUMBER):
            number = _sequence_number(name[len(_CLAIM_NUMBER):], prefix)
            if number is not None:
                claimed.add(number)
        elif not name.startswith("."):
            number = _sequence_number(name, prefix)
            if number is not None:
                visible.add(number)
    return visible, claimed


def next_number(folder: Path, basename: str = "") -> int:
    """One past the highest sequence number in ``folder`` (``NNNNN-...`` or ``basename-NNNN-...``), 0 when none."""
    visible, claimed = _numbers(folder, f"{basename}-" if basename else "")
    return max(visible | claimed, default=-1) + 1


def _claim(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _claim_number(folder: Path, basename: str = "") -> tuple[int, Path]:
    """Reserve the next free number with a hidden claim file; (number, claim path).

    Creating a claim is exclusive, and a number a visible file already has is never
    taken, so threads and processes saving into one folder never share a number.
    """
    prefix = f"{basename}-" if basename else ""
    number = next_number(folder, basename)
    while True:
        claim = folder / f"{_CLAIM_NUMBER}{prefix}{number}"
        if not _claim(claim):
            number += 1
            continue
        # Another saver may have published this number and dropped its claim just before ours.
        if number in _numbers(folder, prefix)[0]:
            claim.unlink()
            number = next_number(folder, basename)
            continue
        return number, claim


def _publish(tmp: Path, final: Path, text: str | None) -> bool:
    """Move ``tmp`` to ``final`` (and write ``text`` beside it as ``.txt``) unless either name is taken."""
    key = hashlib.sha1(final.name.encode("utf-8")).hexdigest()[:24]
    claim = final.parent / f"{_CLAIM_NAME}{key}"
    if not _claim(claim):
        return False
    try:
        sidecar = final.with_name(final.stem + ".txt")
        if final.exists() or (text is not None and sidecar.exists()):
            return False
        replace_file(tmp, final)
        if text is not None:
            atomic_write_bytes(sidecar, (text + "\n").encode("utf-8"))
        return True
    finally:
        claim.unlink(missing_ok=True)


def write_image(image: Image.Image, folder: Path, decoration: str, *, fmt: str = "png", infotext: str | None = None,
                basename: str = "", add_number: bool = True, quality: int = 80, lossless: bool = False,
                save_txt: bool = False, chunks: dict | None = None) -> Path:
    """Write ``image`` into ``folder`` under a new name, atomically, and return its path.

    Names follow A1111: ``NNNNN-decoration.fmt`` (``basename-NNNN-decoration.fmt``
    when a basename such as ``grid`` is given) while ``add_number`` is on, else
    ``decoration.fmt``. A name already taken is never overwritten: numbers move on,
    and an unnumbered clash gets ``-1``, ``-2``... The file appears only when
    complete (temporary file in the same folder, then ``os.replace``); with
    ``save_txt`` the infotext goes beside it as ``.txt``. ``decoration`` is made a
    safe name (forbidden characters, device names, 255-byte limit).
    """
    fmt = fitting_format(image, check_format(fmt))
    add_number = add_number or not decoration
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = encode_image(image, fmt, infotext, quality=quality, lossless=lossless, chunks=chunks)
    text = infotext if save_txt and infotext else None
    handle, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=f".{fmt}", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if add_number:
            return _publish_numbered(tmp, folder, decoration, fmt, basename, text)
        stem = fit_file_name(decoration, "", reserve=NAME_RESERVE + utf8_length(f".{fmt}"))
        for attempt in range(100000):
            final = folder / (f"{stem}.{fmt}" if attempt == 0 else f"{stem}-{attempt}.{fmt}")
            if _publish(tmp, final, text):
                return final
        raise FileExistsError(f"no free file name for {stem!r} in {folder}")
    finally:
        tmp.unlink(missing_ok=True)


def _publish_numbered(tmp: Path, folder: Path, decoration: str, fmt: str, basename: str, text: str | None) -> Path:
    while True:
        number, claim = _claim_number(folder, basename)
        try:
            head = f"{number:05d}" if not basename else f"{basename}-{number:04d}"
            stem = head + (f"-{decoration}" if decoration else "")
            final = folder / fit_file_name(stem, fmt, reserve=NAME_RESERVE)
            if _publish(tmp, final, text):
                return final
        finally:
            claim.unlink(missing_ok=True)


def save_image(image: Image.Image, outdir: Path, category: str, *, seed: int | None, infotext: str | None,
               fmt: str = "png", name_suffix: str = "", date: datetime.date | None = None) -> Path:
    """Save ``image`` as ``outdir/category/YYYY-MM-DD/NNNNN[-SEED][suffix].fmt`` and return the path.

    The default layout (A1111's defaults); :mod:`webui.saving` applies the saving
    options. The number continues the highest one in that folder; concurrent savers
    (threads or processes) never get the same number. Raises ValueError for an
    unknown format or a category that is not a plain folder name.
    """
    fmt = check_format(fmt)
    if not category or safe_name(category) != category or set(category) <= {"."}:
        raise ValueError(f"bad image category {category!r}")
    folder = Path(outdir) / category / (date or datetime.date.today()).isoformat()
    decoration = (str(int(seed)) if seed is not None else "") + replace_forbidden(name_suffix)
    return write_image(image, folder, decoration.lstrip("-") if seed is None else decoration, fmt=fmt,
                       infotext=infotext, quality=95)
