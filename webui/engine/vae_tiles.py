"""Run a VAE over a large image tile by tile, so peak memory stays flat as images grow.

Tiles overlap by a quarter of their side; each tile's output is weighted by a ramp
that falls to zero towards edges it shares with a neighbour, so overlapping tiles
fade into each other (no seam) and the zero-padded borders of a tile, where a
convolution sees less context, carry almost no weight. A VAE's GroupNorm layers
normalise over the whole image, so a tile on its own would come out brighter or
darker than its neighbours: ``SharedNormStats`` records each layer's statistics on a
downscaled copy of the whole image and makes every tile normalise with those.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from webui.schemas import JobInterrupted

OVERLAP = 0.25  # share of a tile's side that overlaps its neighbour


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` covering ``length``, ``overlap`` apart at least; the last ends flush."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(size: int, fade: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """1-D weights of one tile: rising over ``fade`` samples at a shared start, falling at a shared end."""
    weights = torch.ones(size)
    if fade > 0:
        rise = (torch.arange(fade, dtype=torch.float32) + 0.5) / fade
        if fade_start:
            weights[:fade] = torch.minimum(weights[:fade], rise)
        if fade_end:
            weights[-fade:] = torch.minimum(weights[-fade:], rise.flip(0))
    return weights


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, scale: float,
              out_channels: int, should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
    """``fn`` applied to ``x`` (B, C, H, W) in overlapping ``tile``-sized squares, blended into one output.

    ``scale`` is the output's size per input pixel (8 to decode an SD latent, 1/8 to encode);
    ``should_stop`` is asked before each tile and raises JobInterrupted when it answers True.
    """
    batch, _, height, width = x.shape
    overlap = max(1, int(tile * OVERLAP))
    out_h, out_w = round(height * scale), round(width * scale)
    out = torch.zeros(batch, out_channels, out_h, out_w, dtype=torch.float32, device=x.device)
    total = torch.zeros(1, 1, out_h, out_w, dtype=torch.float32, device=x.device)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    for y0 in ys:
        for x0 in xs:
            if should_stop is not None and should_stop():
                raise JobInterrupted()
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            result = fn(x[:, :, y0:y1, x0:x1]).float()
            oy0, ox0 = round(y0 * scale), round(x0 * scale)
            th, tw = result.shape[-2:]
            fade = round(overlap * scale)
            wy = _ramp(th, fade, y0 > 0, y1 < height)
            wx = _ramp(tw, fade, x0 > 0, x1 < width)
            weight = (wy[:, None] * wx[None, :]).to(out.device)
            out[:, :, oy0:oy0 + th, ox0:ox0 + tw] += result * weight
            total[:, :, oy0:oy0 + th, ox0:ox0 + tw] += weight
    return out / total


def downscaled(x: torch.Tensor, max_side: int) -> torch.Tensor:
    """``x`` shrunk (area average) so that its longer side is at most ``max_side``; unchanged if it fits."""
    height, width = x.shape[-2:]
    ratio = max_side / max(height, width)
    if ratio >= 1:
        return x
    size = (max(1, round(height * ratio)), max(1, round(width * ratio)))
    return torch.nn.functional.interpolate(x.float(), size=size, mode="area").to(x.dtype)


class SharedNormStats:
    """Make every GroupNorm in ``module`` normalise with statistics recorded on another input."""

    def __init__(self, module: torch.nn.Module):
        self.norms = [m for m in module.modules() if isinstance(m, torch.nn.GroupNorm)]
        self.stats: dict[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record each GroupNorm's per-group mean and variance during the forward passes inside."""
        def record(norm, args):
            flat = args[0].float().reshape(args[0].shape[0], norm.num_groups, -1)
            self.stats[norm] = (flat.mean(-1), flat.var(-1, unbiased=False))

        with _hooks(self.norms, lambda m: m.register_forward_pre_hook(record)):
            yield

    @contextmanager
    def applying(self) -> Iterator[None]:
        """Inside, each GroupNorm's output uses the recorded statistics instead of its input's own."""
        def normalise(norm, args, _output):
            x = args[0]
            if norm not in self.stats:
                return None
            mean, var = self.stats[norm]
            flat = x.float().reshape(x.shape[0], norm.num_groups, -1)
            y = ((flat - mean[..., None]) * torch.rsqrt(var[..., None] + norm.eps)).reshape(x.shape)
            if norm.affine:
                shape = (1, -1) + (1,) * (x.ndim - 2)
                y = y * norm.weight.float().reshape(shape) + norm.bias.float().reshape(shape)
            return y.to(x.dtype)

        with _hooks(self.norms, lambda m: m.register_forward_hook(normalise)):
            yield


@contextmanager
def _hooks(modules, register) -> Iterator[None]:
    handles = [register(m) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
