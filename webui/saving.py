"""Where and how generated images are saved: A1111's saving options turned into files.

The options keep A1111's names and defaults (``samples_format``,
``samples_filename_pattern``, ``directories_filename_pattern``, ``grid_save``,
``n_rows``, ``save_txt``, ``outdir_txt2img_samples``...). Output folders are
always relative to the server's output root (``--outdir``): an option can
name a subfolder, never a place outside it.
"""
from __future__ import annotations

import datetime
import math
import ntpath
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image, ImageColor

from webui.filename_patterns import NameContext, apply_pattern
from webui.filenames import safe_relative_path
from webui.images import FORMATS, write_image
from webui.schemas import InvalidRequest


# A1111 1.10's saving options and defaults; output folders are relative to --outdir.
SAVING_OPTIONS: dict = {
    "samples_save": True,
    "samples_format": "png",
    "samples_filename_pattern": "",
    "save_images_add_number": True,
    "grid_save": True,
    "grid_format": "png",
    "grid_extended_filename": False,
    "grid_only_if_multiple": True,
    "grid_prevent_empty_spots": False,
    "n_rows": -1,
    "grid_background_color": "#ffffff",
    "save_txt": False,
    "jpeg_quality": 80,
    "webp_lossless": False,
    "save_to_dirs": True,
    "grid_save_to_dirs": True,
    "directories_filename_pattern": "[date]",
    "directories_max_prompt_words": 8,
    "outdir_samples": "",
    "outdir_txt2img_samples": "txt2img-images",
    "outdir_img2img_samples": "img2img-images",
    "outdir_extras_samples": "extras-images",
    "outdir_grids": "",
    "outdir_txt2img_grids": "txt2img-grids",
    "outdir_img2img_grids": "img2img-grids",
}
OUTDIR_OPTIONS = frozenset(k for k in SAVING_OPTIONS if k.startswith("outdir_"))
_RANGES = {"jpeg_quality": (1, 100), "n_rows": (-1, 64), "directories_max_prompt_words": (1, 64)}
_MAX_PATTERN_LENGTH = 1000


def check_saving_option(key: str, value) -> None:
    """Raise InvalidRequest (naming ``key``) when ``value`` is not allowed for a saving option.

    Types are checked by the options store; this checks meaning: known image
    formats, ranges, a colour Pillow understands, and output folders that are
    relative and never climb out (``..``) of the output root.
    """
    if key in ("samples_format", "grid_format"):
        if str(value).lower() not in FORMATS:
            raise InvalidRequest(f"{key} must be one of png, jpg, webp (got {value!r})", field=key)
    elif key in _RANGES:
        low, high = _RANGES[key]
        if not low <= int(value) <= high:
            raise InvalidRequest(f"{key} must be from {low} to {high}", field=key)
    elif key == "grid_background_color":
        try:
            ImageColor.getrgb(str(value))
        except ValueError:
            raise InvalidRequest(f"{key} is not a colour: {value!r}", field=key) from None
    elif key in ("samples_filename_pattern", "directories_filename_pattern"):
        if len(str(value)) > _MAX_PATTERN_LENGTH:
            raise InvalidRequest(f"{key} is longer than {_MAX_PATTERN_LENGTH} characters", field=key)
    elif key in OUTDIR_OPTIONS:
        check_relative_folder(key, str(value))


def check_relative_folder(key: str, value: str) -> None:
    """Refuse an output folder that is absolute (``/x``, ``C:\\x``, ``\\\\server``) or climbs out with ``..``."""
    if posixpath.isabs(value) or ntpath.isabs(value) or ntpath.splitdrive(value)[0]:
        raise InvalidRequest(f"{key} must be a folder inside the output folder, not an absolute path", field=key)
    if ".." in value.replace("\\", "/").split("/"):
        raise InvalidRequest(f"{key} must not contain '..': folders stay inside the output folder", field=key)


def effective_options(options, overrides: Mapping | None = None) -> dict:
    """The saving options for one job: the server's values, then the job's ``override_settings``."""
    values = dict(SAVING_OPTIONS)
    if options is not None:
        stored = options.as_dict() if hasattr(options, "as_dict") else dict(options)
        values.update({k: v for k, v in stored.items() if k in SAVING_OPTIONS})
    for key, value in (overrides or {}).items():
        if key in SAVING_OPTIONS:
            values[key] = value
    return values


def output_folder(root: Path, opts: Mapping, tab: str, *, grid: bool = False) -> Path:
    """The folder a tab's samples (or grids) go to: ``outdir_samples``/``outdir_grids`` first, then the tab's own."""
    kind = "grids" if grid else "samples"
    chosen = opts.get(f"outdir_{kind}") or opts.get(f"outdir_{tab}_{kind}") or SAVING_OPTIONS.get(
        f"outdir_{tab}_{kind}") or f"{tab}-{'grids' if grid else 'images'}"
    return Path(root) / (safe_relative_path(str(chosen)) or f"{tab}-{kind}")


def image_grid(images: list[Image.Image], batch_size: int = 1, *, n_rows: int = -1, prevent_empty: bool = False,
               background: str = "#ffffff") -> Image.Image:
    """A1111's grid: ``n_rows`` rows (0: one row per batch; -1: about square, or with no empty cells when asked)."""
    count = len(images)
    if n_rows > 0:
        rows = n_rows
    elif n_rows == 0:
        rows = batch_size
    elif prevent_empty:
        rows = math.floor(math.sqrt(count))
        while count % rows:
            rows -= 1
    else:
        rows = round(math.sqrt(count))
    rows = max(1, min(rows, count))
    cols = math.ceil(count / rows)
    w, h = (max(sizes) for sizes in zip(*(image.size for image in images)))
    grid = Image.new("RGB", (cols * w, rows * h), ImageColor.getrgb(background)[:3])
    for i, image in enumerate(images):
        dx, dy = (w - image.width) // 2, (h - image.height) // 2
        grid.paste(image.convert("RGB"), (i % cols * w + dx, i // cols * h + dy))
    return grid


@dataclass
class JobSaver:
    """Saves one job's images as the options say, and its grid at the end."""

    root: Path
    tab: str
    opts: dict
    enabled: bool = True
    max_prompt_words: int = 8
    started: datetime.datetime = field(default_factory=lambda: datetime.datetime.now().astimezone())
    _grid_images: list = field(default_factory=list)
    _grid_first: tuple | None = None

    @property
    def job_timestamp(self) -> str:
        """A1111's ``[job_timestamp]``: when the job started, ``YYYYMMDDhhmmss``."""
        return self.started.strftime("%Y%m%d%H%M%S")

    def save(self, image: Image.Image, infotext: str | None, ctx: NameContext,
             chunks: dict | None = None) -> Path | None:
        """Save one image (when saving is on) and keep it for the grid; returns its path or None.

        ``chunks`` are more PNG text chunks beside ``parameters`` (extras' ``postprocessing``)."""
        ctx = replace(ctx, image=image, job_timestamp=ctx.job_timestamp or self.job_timestamp)
        self._grid_images.append(image)
        if self._grid_first is None:
            self._grid_first = (infotext, ctx)
        if not (self.enabled and self.opts.get("samples_save", True)):
            return None
        short = self.tab == "extras"
        to_dirs = bool(self.opts.get("save_to_dirs")) and not short
        return self._write(image, infotext, ctx, grid=False, short=short, to_dirs=to_dirs, chunks=chunks)

    def save_grid(self, batch_size: int) -> Path | None:
        """Save the grid of every image this job saved, when ``grid_save`` asks and there are enough."""
        count = len(self._grid_images)
        if not (self.enabled and self.opts.get("grid_save")) or count == 0 or self.tab == "extras":
            return None
        if count < 2 and self.opts.get("grid_only_if_multiple", True):
            return None
        grid = image_grid(self._grid_images, batch_size, n_rows=int(self.opts.get("n_rows", -1)),
                          prevent_empty=bool(self.opts.get("grid_prevent_empty_spots")),
                          background=str(self.opts.get("grid_background_color") or "#ffffff"))
        infotext, ctx = self._grid_first
        return self.save_grid_image(grid, infotext, ctx)

    def save_grid_image(self, grid: Image.Image, infotext: str | None, ctx: NameContext, *,
                        basename: str = "grid") -> Path | None:
        """Save a grid drawn elsewhere (a script's) in the grids folder, when saving and ``grid_save`` allow."""
        if not (self.enabled and self.opts.get("grid_save")) or self.tab == "extras":
            return None
        ctx = replace(ctx, image=grid, grid=True, job_timestamp=ctx.job_timestamp or self.job_timestamp)
        return self._write(grid, infotext, ctx, grid=True, short=not self.opts.get("grid_extended_filename"),
                           to_dirs=bool(self.opts.get("grid_save_to_dirs")), basename=basename)

    def _write(self, image, infotext, ctx, *, grid: bool, short: bool, to_dirs: bool,
               basename: str = "grid", chunks=None) -> Path:
        opts = self.opts
        folder = output_folder(self.root, opts, self.tab, grid=grid)
        words = int(opts.get("directories_max_prompt_words", self.max_prompt_words))
        if to_dirs:
            pattern = opts.get("directories_filename_pattern") or "[prompt_words]"
            folder = folder / safe_relative_path(apply_pattern(pattern, ctx, max_prompt_words=words))
        decoration = ""
        if not short:
            pattern = opts.get("samples_filename_pattern") or (
                "[seed]" if opts.get("save_to_dirs") else "[seed]-[prompt_spaces]")
            decoration = apply_pattern(pattern, ctx, max_prompt_words=words)
        fmt = str(opts.get("grid_format" if grid else "samples_format") or "png").lower()
        return write_image(image, folder, decoration, fmt=fmt, infotext=infotext, basename=basename if grid else "",
                           add_number=bool(opts.get("save_images_add_number", True)),
                           quality=int(opts.get("jpeg_quality", 80)), lossless=bool(opts.get("webp_lossless")),
                           save_txt=bool(opts.get("save_txt")), chunks=chunks)
