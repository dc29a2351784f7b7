"""Run an image model over tiles so memory depends on the tile size, not the image size.

Each tile is a core square of ``tile`` pixels; the model sees the core plus
``overlap`` pixels of real image context on every side, and only the core of
its output is kept. With an overlap at least as large as the model's receptive
field the result equals the untiled one; with less it is still seam-free in
practice because every kept pixel had context on all sides.
"""
from __future__ import annotations

from typing import Callable

import torch


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(core_start, core_end, context_start, context_end)`` along one axis."""
    spans = []
    for start in range(0, length, tile):
        end = min(start + tile, length)
        spans.append((start, end, max(0, start - overlap), min(length, end + overlap)))
    return spans


def run_tiled(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """Apply ``model`` (1xCxHxW -> 1xC'x(H*scale)x(W*scale)) tile by tile; result on the CPU in float32.

    ``tile <= 0`` or an image no larger than one tile runs in one piece.
    """
    _, _, height, width = image.shape
    if tile <= 0 or (height <= tile and width <= tile):
        return model(image).float().cpu()
    output = None
    for y0, y1, cy0, cy1 in tile_spans(height, tile, overlap):
        for x0, x1, cx0, cx1 in tile_spans(width, tile, overlap):
            if should_stop is not None and should_stop():
                raise InterruptedError("tiled upscale stopped")
            piece = model(image[:, :, cy0:cy1, cx0:cx1])
            expected = ((cy1 - cy0) * scale, (cx1 - cx0) * scale)
            if tuple(piece.shape[-2:]) != expected:
                raise RuntimeError(f"model gave a {tuple(piece.shape[-2:])} tile, expected {expected}")
            if output is None:
                output = torch.empty((1, piece.shape[1], height * scale, width * scale), dtype=torch.float32)
            core = piece[:, :, (y0 - cy0) * scale:(y1 - cy0) * scale, (x0 - cx0) * scale:(x1 - cx0) * scale]
            output[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] = core.float().cpu()
    return output
