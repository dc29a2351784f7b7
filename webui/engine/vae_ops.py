"""VAE encode/decode between PIL images and latents, with the NaN guard and tiling for large images."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from webui.engine.vae_tiles import SharedNormStats, downscaled, run_tiled
from webui.models.placement import execution_device

log = logging.getLogger(__name__)

DEFAULT_TILING_MIN_PIXELS = 1024 * 1024  # images larger than 1024x1024 are tiled unless the options say otherwise


# Peak bytes an untiled VAE pass holds per image pixel and per channel of its full-size stage, per byte of
# its dtype: bench/bench_vae_tiling.py measured 484 MiB per megapixel for the demo VAE's decode (16 channels,
# fp32), that is 7.6; 8 leaves a margin.
UNTILED_BYTES_FACTOR = 8
MEMORY_SHARE = 0.5  # tile when an untiled pass would need more than this share of the free memory


def untiled_bytes(vae, height: int, width: int) -> int:
    """About how much memory an untiled VAE pass over a height x width image needs at its peak."""
    param = next(vae.parameters())
    return int(height * width * vae.config.block_out_channels[0] * param.element_size() * UNTILED_BYTES_FACTOR)


@dataclass(frozen=True)
class Tiling:
    """When and how to run the VAE tile by tile: above ``min_pixels`` (0: never), in ``tile_size`` px squares,
    and (unless ``min_pixels`` is 0) whenever an untiled pass would take more than half the memory
    ``free_bytes()`` says is free."""

    min_pixels: int = 0
    tile_size: int = 512
    free_bytes: Callable[[], int] | None = None  # free memory of the VAE's device (None: not checked)
    planned: bool = False  # the job's memory plan asks for tiles (webui.models.memory_plan)

    def applies(self, height: int, width: int, vae=None) -> bool:
        """Whether an image of height x width pixels is to be tiled (large, or memory short for ``vae``)."""
        if self.min_pixels <= 0 or max(height, width) <= self.tile_size:
            return False
        if height * width > self.min_pixels or self.planned:
            return True
        return vae is not None and self.short_of_memory(vae, height, width) is not None

    def short_of_memory(self, vae, height: int, width: int) -> tuple[int, int] | None:
        """(bytes needed untiled, bytes free) when only memory makes this image tiled, else None."""
        if self.free_bytes is None or self.min_pixels <= 0 or max(height, width) <= self.tile_size:
            return None
        if height * width > self.min_pixels:
            return None
        needed, free = untiled_bytes(vae, height, width), int(self.free_bytes())
        return (needed, free) if needed > MEMORY_SHARE * free else None


def tiling_from_options(options, free_bytes: Callable[[], int] | None = None, planned: bool = False) -> Tiling:
    """The Tiling that the runtime options ``vae_tiling_min_pixels`` and ``vae_tile_size`` ask for, checking
    free memory with ``free_bytes`` too (``planned``: the memory plan asks for tiles)."""
    if options is None:
        return Tiling(min_pixels=DEFAULT_TILING_MIN_PIXELS, free_bytes=free_bytes, planned=planned)
    return Tiling(min_pixels=int(options.get("vae_tiling_min_pixels", DEFAULT_TILING_MIN_PIXELS)),
                  tile_size=max(64, int(options.get("vae_tile_size", 512))), free_bytes=free_bytes, planned=planned)


def memory_note(tiling: Tiling, vae, height: int, width: int, what: str = "decodes") -> str | None:
    """What a job's warnings say when memory, not size, makes the VAE work in tiles (None otherwise)."""
    short = tiling.short_of_memory(vae, height, width)
    if short is None:
        return None
    needed, free = (value / 2 ** 30 for value in short)
    return (f"the VAE {what} this {width}x{height} image in {tiling.tile_size} px tiles: untiled it needs about "
            f"{needed:.1f} GiB, and {free:.1f} GiB is free")


def scale_factor(vae) -> int:
    """Pixels per latent pixel: 8 for every published SD VAE, less for tiny ones."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def images_to_tensor(images: list[Image.Image], device, dtype) -> torch.Tensor:
    arrays = [np.asarray(img.convert("RGB"), dtype=np.float32) / 127.5 - 1.0 for img in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(device=device, dtype=dtype)


def tensor_to_images(tensor: torch.Tensor) -> list[Image.Image]:
    array = ((tensor.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in array]


@torch.no_grad()
def encode(vae, images: list[Image.Image], seeds: list[int] | None = None, tiling: Tiling | None = None,
           control=None) -> torch.Tensor:
    """Scaled latents of images (the distribution's mean: deterministic, as for img2img).

    Large images are encoded tile by tile when ``tiling`` applies; JobInterrupted is
    raised between tiles once ``control.interrupted()``.
    """
    param = next(vae.parameters())
    pixels = images_to_tensor(images, execution_device(vae), param.dtype)
    latents = _encode_mean(vae, pixels, tiling, control)
    if not torch.isfinite(latents).all() and param.dtype != torch.float32:
        latents = _encode_mean(vae.float(), pixels.float(), tiling, control)
        vae.to(param.dtype)
    return latents.float() * vae.config.scaling_factor


@torch.no_grad()
def decode(vae, latents: torch.Tensor, tiling: Tiling | None = None,
           control=None) -> tuple[list[Image.Image], bool]:
    """Images from scaled latents; if half precision gives NaNs, retry in float32 (returns upcast flag).

    Large images are decoded tile by tile when ``tiling`` applies; JobInterrupted is
    raised between tiles once ``control.interrupted()``.
    """
    param = next(vae.parameters())
    scaled = latents / vae.config.scaling_factor
    pixels = _decode_pixels(vae, scaled.to(param.dtype), tiling, control)
    upcast = False
    if not torch.isfinite(pixels).all() and param.dtype != torch.float32:
        log.warning("VAE produced NaNs in %s; decoding again in float32", param.dtype)
        vae.float()
        try:
            pixels = _decode_pixels(vae, scaled.float(), tiling, control)
        finally:
            vae.to(param.dtype)
        upcast = True
    return tensor_to_images(pixels), upcast


def _stopper(control):
    return control.interrupted if control is not None else None


def _encode_mean(vae, pixels: torch.Tensor, tiling: Tiling | None, control) -> torch.Tensor:
    """The latent distribution's mean, tile by tile when ``tiling`` applies to this image."""
    if tiling is None or not tiling.applies(pixels.shape[-2], pixels.shape[-1], vae):
        return vae.encode(pixels).latent_dist.mean
    factor = scale_factor(vae)
    log.info("VAE encodes a %dx%d image in %d px tiles", pixels.shape[-1], pixels.shape[-2], tiling.tile_size)
    norms = SharedNormStats(vae.encoder)
    with norms.recording():
        vae.encode(downscaled(pixels, tiling.tile_size))
    with norms.applying():
        return run_tiled(lambda tile: vae.encode(tile).latent_dist.mean, pixels, tiling.tile_size, 1 / factor,
                         vae.config.latent_channels, _stopper(control)).to(pixels.dtype)


def _decode_pixels(vae, latents: torch.Tensor, tiling: Tiling | None, control) -> torch.Tensor:
    """Pixels in [-1, 1] from unscaled latents, tile by tile when ``tiling`` applies to the image."""
    factor = scale_factor(vae)
    height, width = latents.shape[-2] * factor, latents.shape[-1] * factor
    if tiling is None or not tiling.applies(height, width, vae):
        return vae.decode(latents).sample
    log.info("VAE decodes a %dx%d image in %d px tiles", width, height, tiling.tile_size)
    tile = max(1, tiling.tile_size // factor)
    norms = SharedNormStats(vae.decoder)
    with norms.recording():
        vae.decode(downscaled(latents, tile))
    with norms.applying():
        return run_tiled(lambda part: vae.decode(part).sample, latents, tile, factor, vae.config.out_channels,
                         _stopper(control))
