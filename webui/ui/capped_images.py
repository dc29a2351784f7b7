"""Image inputs that refuse pictures over a pixel limit before decoding them (PNG bombs).

A PNG of a few hundred kilobytes may hold 12000x12000 pixels, gigabytes once
decoded. ``capped`` makes a gradio image input read the size from the file's
header (PIL opens lazily) and refuse the upload with a message before any
pixel is decoded.
"""
from __future__ import annotations

import warnings

import gradio as gr
from PIL import Image

from webui.schemas import MAX_SIDE

DEFAULT_PIXEL_LIMIT = MAX_SIDE * MAX_SIDE


def check_image_pixels(path, limit: int = DEFAULT_PIXEL_LIMIT) -> None:
    """gr.Error unless the image file at ``path`` has at most ``limit`` pixels (reads only its header)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise gr.Error(f"The image is too large: over {limit} pixels.") from None
    except Exception:  # not an image: gradio's own decoding reports it
        return
    if width * height > limit:
        raise gr.Error(f"The image is {width}x{height} pixels, over this server's limit of {limit} pixels.")


def _paths(payload) -> list:
    if payload is None:
        return []
    found = []
    for name in ("path", "background", "composite"):
        value = getattr(payload, name, None)
        if isinstance(value, str):
            found.append(value)
        elif getattr(value, "path", None):
            found.append(value.path)
    for layer in getattr(payload, "layers", None) or []:
        if getattr(layer, "path", None):
            found.append(layer.path)
    return found


def capped(component, limit: int = DEFAULT_PIXEL_LIMIT):
    """``component`` (a gr.Image or gr.ImageEditor) made to refuse images over ``limit`` pixels before decoding.

    The component's own preprocess runs after the check; wrapping the instance
    (not subclassing) keeps gradio's component as it is in the page.
    """
    preprocess = component.preprocess

    def checked(payload):
        for path in _paths(payload):
            check_image_pixels(path, limit)
        return preprocess(payload)

    component.preprocess = checked
    return component
