"""VAE encode/decode between PIL images and latents, with the NaN guard and a cheap preview."""
from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

# Published linear approximations of latent -> RGB (A1111's "Approx cheap" previews).
PREVIEW_FACTORS = {
    "sd": [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]],
    "sdxl": [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
             [-0.3165, -0.2492, -0.2188]],
}


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
def encode(vae, images: list[Image.Image], seeds: list[int] | None = None) -> torch.Tensor:
    """Scaled latents of images (the distribution's mean: deterministic, as for img2img)."""
    param = next(vae.parameters())
    pixels = images_to_tensor(images, param.device, param.dtype)
    latents = vae.encode(pixels).latent_dist.mean
    if not torch.isfinite(latents).all() and param.dtype != torch.float32:
        latents = vae.float().encode(pixels.float()).latent_dist.mean
        vae.to(param.dtype)
    return latents.float() * vae.config.scaling_factor


@torch.no_grad()
def decode(vae, latents: torch.Tensor) -> tuple[list[Image.Image], bool]:
    """Images from scaled latents; if half precision gives NaNs, retry in float32 (returns upcast flag)."""
    param = next(vae.parameters())
    scaled = latents / vae.config.scaling_factor
    pixels = vae.decode(scaled.to(param.dtype)).sample
    upcast = False
    if not torch.isfinite(pixels).all() and param.dtype != torch.float32:
        log.warning("VAE produced NaNs in %s; decoding again in float32", param.dtype)
        vae.float()
        try:
            pixels = vae.decode(scaled.float()).sample
        finally:
            vae.to(param.dtype)
        upcast = True
    return tensor_to_images(pixels), upcast


def cheap_preview(latents: torch.Tensor, family: str) -> Image.Image:
    """A small RGB image from the first latent of a batch, by a fixed linear map (no VAE)."""
    factors = torch.tensor(PREVIEW_FACTORS["sdxl" if family.startswith("sdxl") else "sd"], dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latents[0, :4].float().cpu(), factors)
    array = ((rgb.clamp(-1, 1) + 1) * 127.5).byte().numpy()
    return Image.fromarray(array)
