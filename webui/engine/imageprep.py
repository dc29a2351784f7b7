"""Pixel-space preparation for img2img and inpaint, with A1111's meanings (pure PIL/numpy)."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps



def resize_image(image: Image.Image, mode: int, width: int, height: int, upscale=None) -> Image.Image:
    """Resize to width x height: 0 stretch, 1 crop to fill, 2 fit and fill the borders, 3 stretch (latent).

    ``upscale(image, scale)`` (A1111's ``upscaler_for_img2img``) first enlarges an image smaller
    than it needs to be in modes 0-2; Lanczos then gives the exact size. Without it, Lanczos only.
    """
    image = image.convert("RGB")
    if upscale is not None and mode in (0, 1, 2):
        fill = max(width / image.width, height / image.height)
        scale = min(width / image.width, height / image.height) if mode == 2 else fill
        if scale > 1.0:
            image = upscale(image, scale).convert("RGB")
    if mode in (0, 3):
        return image.resize((width, height), Image.LANCZOS)
    ratio, src_ratio = width / height, image.width / image.height
    if mode == 1:
        return ImageOps.fit(image, (width, height), Image.LANCZOS)
    # Resize and fill: fit inside, then stretch the edge pixels into the empty border.
    if ratio < src_ratio:
        fit_w, fit_h = width, max(1, round(width / src_ratio))
    else:
        fit_w, fit_h = max(1, round(height * src_ratio)), height
    inner = image.resize((fit_w, fit_h), Image.LANCZOS)
    canvas = inner.resize((width, height), Image.LANCZOS)
    canvas.paste(inner, ((width - fit_w) // 2, (height - fit_h) // 2))
    return canvas


def prepare_mask(mask: Image.Image, size: tuple[int, int], invert: bool) -> Image.Image:
    """A single-channel 0/255 mask of the image's size (alpha masks and colour masks accepted)."""
    if mask.mode in ("RGBA", "LA") and mask.getextrema()[-1][0] < 255:
        mask = mask.getchannel("A")
    mask = mask.convert("L")
    if mask.size != size:
        mask = mask.resize(size, Image.NEAREST)
    mask = mask.point(lambda v: 255 if v >= 128 else 0)
    return ImageOps.invert(mask) if invert else mask


def blur_mask(mask: Image.Image, radius: int) -> Image.Image:
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius > 0 else mask


def blur_mask_xy(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    """A1111's mask blur with its own strength across (x) and down (y); equal strengths blur as ``blur_mask``."""
    if blur_x == blur_y:
        return blur_mask(mask, blur_x)
    array = np.asarray(mask, dtype=np.float32)
    for axis, sigma in ((1, blur_x), (0, blur_y)):
        if sigma > 0:
            array = _gaussian_1d(array, float(sigma), axis)
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def _gaussian_1d(array: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian blur along one axis with OpenCV's kernel size for A1111's mask blur (2*int(2.5*s+0.5)+1)."""
    radius = int(2.5 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(offsets ** 2) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(array, pad, mode="reflect")
    out = np.zeros_like(array)
    length = array.shape[axis]
    for weight, start in zip(kernel, range(2 * radius + 1)):
        out += weight * np.take(padded, range(start, start + length), axis=axis)
    return out


def mask_box(mask: Image.Image, padding: int, target_w: int, target_h: int) -> tuple[int, int, int, int]:
    """The masked area's box plus padding, grown to the target's aspect ratio and clipped to the image."""
    box = mask.getbbox()
    if box is None:
        return (0, 0, mask.width, mask.height)
    x1, y1, x2, y2 = box
    x1, y1, x2, y2 = x1 - padding, y1 - padding, x2 + padding, y2 + padding
    w, h = x2 - x1, y2 - y1
    ratio = target_w / target_h
    if w / h < ratio:
        grow = round(h * ratio) - w
        x1, x2 = x1 - grow // 2, x2 + grow - grow // 2
    else:
        grow = round(w / ratio) - h
        y1, y2 = y1 - grow // 2, y2 + grow - grow // 2
    # Shift inside the image where possible, then clip.
    for lo, hi, limit in ((0, 2, mask.width), (1, 3, mask.height)):
        coords = [x1, y1, x2, y2]
        if coords[lo] < 0:
            coords[hi] -= coords[lo]
            coords[lo] = 0
        if coords[hi] > limit:
            coords[lo] -= coords[hi] - limit
            coords[hi] = limit
        x1, y1, x2, y2 = coords
    return (max(0, x1), max(0, y1), min(mask.width, x2), min(mask.height, y2))


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's "fill": the masked area painted with colours smeared in from around it."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    keep = (np.asarray(mask) < 128)[..., None]
    if not keep.any():
        return Image.new("RGB", image.size, tuple(int(v) for v in rgb.reshape(-1, 3).mean(0)))
    filled = np.where(keep, rgb, rgb[keep[..., 0]].mean(0))
    result = Image.fromarray(filled.astype(np.uint8))
    for radius in (64, 32, 16, 8, 4, 2):
        blurred = result.filter(ImageFilter.GaussianBlur(radius))
        result = Image.composite(result, blurred, Image.fromarray((keep[..., 0] * 255).astype(np.uint8)))
    return result


def composite_original(generated: Image.Image, original: Image.Image, soft_mask: Image.Image) -> Image.Image:
    """Keep the original's pixels where the (blurred) mask is black; generated ones where it is white."""
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), soft_mask)


def round_to_multiple(value: int, multiple: int = 8) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)
