"""Sizes the user sees: an uploaded image sets the tab's size, "Resize by" scales it, hires fix and img2img
say "from WxH to WxH"."""
from __future__ import annotations

SLIDER_MAX = 2048  # the size sliders' range (webui/ui/params.py)


def size_of_image(image, current_width, current_height) -> tuple[int, int]:
    """The image's size rounded to multiples of 8 (A1111's sliders), within the sliders' range; no image: unchanged."""
    if image is None:
        return current_width, current_height
    if isinstance(image, dict):  # an ImageEditor value
        image = image.get("background")
        if image is None:
            return current_width, current_height
    width, height = image.size
    return tuple(min(SLIDER_MAX, max(64, int(round(side / 8)) * 8)) for side in (width, height))


def image_size(image) -> tuple[int, int] | None:
    """(width, height) of a PIL image or of an ImageEditor value's background; None without an image."""
    if isinstance(image, dict):
        image = image.get("background")
    return None if image is None else image.size


def scaled_size(image, scale, current_width, current_height) -> tuple[int, int]:
    """A1111's "Resize by": the image's size times ``scale``, in multiples of 8 within the sliders' range."""
    size = image_size(image)
    if size is None:
        return current_width, current_height
    factor = float(scale or 1)
    return tuple(min(SLIDER_MAX, max(64, int(round(side * factor / 8)) * 8)) for side in size)


def resize_readout(image, width, height) -> str:
    """The line under img2img's size: ``Resize: from 640x480 to 512x384`` (or what is missing)."""
    size = image_size(image)
    if size is None:
        return "Resize: drop an image first"
    return f"Resize: from {size[0]}x{size[1]} to {int(width or 0)}x{int(height or 0)}"


def hires_target(width, height, scale, resize_x, resize_y) -> tuple[int, int]:
    """The second pass's size as A1111 works it out: "Resize to" wins, one side 0 keeps the aspect."""
    width, height = int(width or 0), int(height or 0)
    resize_x, resize_y = int(resize_x or 0), int(resize_y or 0)
    if resize_x == 0 and resize_y == 0:
        return int(width * float(scale or 1)), int(height * float(scale or 1))
    if resize_y == 0:
        return resize_x, int(round(height * resize_x / max(width, 1) / 8)) * 8
    if resize_x == 0:
        return int(round(width * resize_y / max(height, 1) / 8)) * 8, resize_y
    return resize_x, resize_y


def hires_readout(enabled, width, height, scale, resize_x, resize_y) -> str:
    """A1111's line under the hires settings: ``from 512x512 to 1024x1024``."""
    target_w, target_h = hires_target(width, height, scale, resize_x, resize_y)
    text = f"from {int(width or 0)}x{int(height or 0)} to {target_w}x{target_h}"
    return text if enabled else f"{text} (when enabled)"


def wire_size_from_image(image, fields: dict) -> None:
    """Dropping or uploading an image sets the tab's width and height to its size."""
    width, height = fields["width"], fields["height"]
    image.upload(size_of_image, inputs=[image, width, height], outputs=[width, height], show_progress="hidden")


def wire_resize_by(image, scale, readout, fields: dict) -> None:
    """Moving "Resize by" sets width and height from the image; the readout follows every size change."""
    width, height = fields["width"], fields["height"]
    scale.input(scaled_size, inputs=[image, scale, width, height], outputs=[width, height], show_progress="hidden")
    for comp in (image, width, height):
        comp.change(resize_readout, inputs=[image, width, height], outputs=[readout], show_progress="hidden",
                    queue=False)


def wire_hires_readout(readout, fields: dict) -> None:
    """Keep the hires readout current while any size input changes."""
    names = ["enable_hr", "width", "height", "hr_scale", "hr_resize_x", "hr_resize_y"]
    inputs = [fields[name] for name in names]
    for comp in inputs:
        comp.change(hires_readout, inputs=inputs, outputs=[readout], show_progress="hidden", queue=False)
