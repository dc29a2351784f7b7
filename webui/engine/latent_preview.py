"""Live previews: latents -> RGB by a fixed linear map per latent channel (A1111's "Approx cheap"),
or by a small learned decoder (A1111's "TAESD"; webui.models.preview_decoder loads it).

Published SD1/SD2 and SDXL VAEs use A1111's coefficients. A VAE whose latent space
they do not describe (the demo model's own VAE, a fine-tuned one) gets a map fitted
once from solid colours it encodes, so its preview still shows the right colours.
The same solid colours, drawn by the VAE itself, tell whether a learned decoder was made for this VAE.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

# A1111's "Approx cheap" coefficients for scaled latents -> RGB in [-1, 1]: one row per latent
# channel, one column per colour (facts from A1111's sd_vae_approx.cheap_approximation).
PUBLISHED_FACTORS = {
    "sd": [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]],
    "sdxl": [[0.3448, 0.4168, 0.4395], [-0.1953, -0.0290, 0.0250], [0.1074, 0.0886, -0.0163],
             [-0.3730, -0.2499, -0.2088]],
}
# Colours the fitted map is calibrated on: primaries, secondaries, greys and a few mixed ones.
CALIBRATION_COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
                       (255, 255, 255), (0, 0, 0), (128, 128, 128), (64, 64, 64), (192, 192, 192),
                       (255, 128, 0), (128, 0, 255), (0, 128, 64), (200, 150, 100), (60, 90, 160)]
MAX_PUBLISHED_ERROR = 0.2  # mean error (of the [-1, 1] range) on the calibration colours above which we fit


def family_key(family: str) -> str:
    """Which published table a model family uses: "sdxl" for SDXL and its refiner, "sd" for SD1/SD2."""
    return "sdxl" if family.startswith("sdxl") else "sd"


def published_factors(family: str) -> torch.Tensor:
    """A1111's map for ``family`` as a (5, 3) tensor: 4 channel rows and a zero bias row."""
    weights = torch.tensor(PUBLISHED_FACTORS[family_key(family)], dtype=torch.float32)
    return torch.cat([weights, torch.zeros(1, 3)])


def fit_factors(latents: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
    """Least-squares (channels + 1, 3) map from per-image mean latents (N, C) to colours (N, 3) in [-1, 1]."""
    design = torch.cat([latents, torch.ones(latents.shape[0], 1)], dim=1).double()
    return torch.linalg.lstsq(design, colours.double()).solution.float()


def apply_factors(latents: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """RGB in about [-1, 1], (..., H, W, 3), of latents (..., C, H, W) by a (C + 1, 3) map."""
    channels = factors.shape[0] - 1
    rgb = torch.einsum("...chw,cr->...hwr", latents[..., :channels, :, :].float().cpu(), factors[:channels])
    return rgb + factors[channels]


def preview_factors(vae, family: str, encode) -> torch.Tensor:
    """The (C + 1, 3) map previews of this VAE use: A1111's when it fits this VAE's latents, else a fitted one.

    ``encode(vae, images)`` gives scaled latents (vae_ops.encode); a few 64 px solid colours are encoded once.
    """
    images = [Image.new("RGB", (64, 64), colour) for colour in CALIBRATION_COLOURS]
    means = encode(vae, images).float().mean(dim=(2, 3)).cpu()
    targets = torch.tensor(CALIBRATION_COLOURS, dtype=torch.float32) / 127.5 - 1
    if means.shape[1] == 4:
        published = published_factors(family)
        error = (apply_factors(means[:, :, None, None], published)[:, 0, 0] - targets).abs().mean()
        if error <= MAX_PUBLISHED_ERROR:
            return published
    return fit_factors(means, targets)


def cheap_preview(latents: torch.Tensor, factors: torch.Tensor) -> Image.Image:
    """A small RGB image (one pixel per latent pixel) of the first latent of a batch."""
    rgb = apply_factors(latents[0], factors)
    array = ((rgb.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def decoder_preview(latents: torch.Tensor, decoder) -> Image.Image:
    """The first latent of a batch through a learned preview decoder (full size, RGB)."""
    param = next(decoder.parameters())
    with torch.no_grad():
        rgb = decoder(latents[:1].to(device=param.device, dtype=param.dtype)).float()[0]
    array = ((rgb.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def decoder_matches(decoder, vae, encode, decode) -> bool:
    """Whether ``decoder`` draws this VAE's latents of the calibration colours as the VAE itself does
    (mean colours within MAX_PUBLISHED_ERROR of the [-1, 1] range).

    ``encode(vae, images)`` gives scaled latents, ``decode(vae, latents)`` (images, upcast) as vae_ops does.
    """
    images = [Image.new("RGB", (64, 64), colour) for colour in CALIBRATION_COLOURS]
    latents = encode(vae, images)
    reference = torch.tensor(np.stack([np.asarray(image, dtype=np.float32).mean(axis=(0, 1))
                                       for image in decode(vae, latents)[0]])) / 127.5 - 1
    param = next(decoder.parameters())
    with torch.no_grad():
        drawn = decoder(latents.to(device=param.device, dtype=param.dtype)).float().mean(dim=(2, 3)).cpu()
    return bool((drawn.clamp(-1, 1) - reference).abs().mean() <= MAX_PUBLISHED_ERROR)


class PreviewPeriod:
    """A job control whose live previews come every ``every`` steps (A1111's ``show_progress_every_n_steps``).

    Everything else (progress, interrupt, skip) goes to the wrapped control.
    """

    def __init__(self, control, every: int):
        self._control = control
        self._every = max(0, int(every))

    def wants_preview(self, step: int) -> bool:
        return self._every > 0 and step > 0 and step % self._every == 0

    def __getattr__(self, name):
        return getattr(self._control, name)
