"""Folder batches, as A1111's img2img Batch tab: list a folder's images, pair masks, read PNG info, write results.

Shared by the ``/api/v1/img2img-batch`` route and the img2img tab's Batch sub-tab,
so both follow the same rules; no HTTP or UI code here. Folders must lie inside
an allowed root (webui.security.folders); errors are InvalidRequest naming the field.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from webui.images import read_infotext, write_image
from webui.schemas import InvalidRequest
from webui.security.folders import checked_folder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_BATCH_FILES = 1000


@dataclass(frozen=True)
class FolderBatch:
    """The checked folders of one batch: its input images, the mask files, where results go (None: saved as usual)."""

    inputs: list[Path]
    masks: list[Path]
    output: Path | None


def images_in(folder: Path) -> list[Path]:
    """The image files of ``folder``, by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def mask_for(image: Path, masks: list[Path]) -> Path | None:
    """The mask of the same file name, else of the same stem (A1111's rule)."""
    by_name = {p.name: p for p in masks}
    return by_name.get(image.name) or next((p for p in masks if p.stem == image.stem), None)


def plan_folder_batch(settings, input_dir: str, inpaint_mask_dir: str = "", output_dir: str = "") -> FolderBatch:
    """Check the three folders against the allowed roots and list the work; an empty input folder is an error."""
    inputs = images_in(checked_folder(settings, input_dir, "input_dir"))
    if not inputs:
        raise InvalidRequest("input_dir holds no images", field="input_dir")
    if len(inputs) > MAX_BATCH_FILES:
        raise InvalidRequest(f"input_dir holds over {MAX_BATCH_FILES} images", field="input_dir")
    masks = images_in(checked_folder(settings, inpaint_mask_dir, "inpaint_mask_dir")) \
        if inpaint_mask_dir and str(inpaint_mask_dir).strip() else []
    output = checked_folder(settings, output_dir, "output_dir", must_exist=False) \
        if output_dir and str(output_dir).strip() else None
    return FolderBatch(inputs, masks, output)


def read_image(path: Path, field: str, max_pixels: int) -> tuple[Image.Image, str | None]:
    """A file of the batch, loaded, and its infotext (PNG info); too large or unreadable is an InvalidRequest."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > max_pixels:
                raise InvalidRequest(f"{field}: {path.name} is over the limit of {max_pixels} pixels", field=field)
            image.load()
            return image.copy(), read_infotext(image)
    except OSError:
        raise InvalidRequest(f"{field}: {path.name} is not a readable image", field=field) from None


def write_results(source: Path, images, infotexts, output: Path, opts: dict) -> list[str]:
    """Write one input's results into ``output`` under the input's stem (``stem-1``... for the others)."""
    return [str(write_image(image, output, source.stem if index == 0 else f"{source.stem}-{index}",
                            fmt=str(opts["samples_format"]), infotext=text, add_number=False,
                            quality=int(opts["jpeg_quality"]), lossless=bool(opts["webp_lossless"])))
            for index, (image, text) in enumerate(zip(images, infotexts))]
