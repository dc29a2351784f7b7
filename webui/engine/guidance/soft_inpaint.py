"""Soft inpainting (differential diffusion) as A1111's built-in extension does it.

During sampling the original latents are blended in with a per-pixel weight
that depends on the soft mask and the noise level: a half-masked pixel is
repainted late rather than only half way, and the blend interpolates vector
magnitudes separately so contrast survives ("transition contrast boost").
Afterwards the original pixels are composited back only where the result
differs little from them ("difference threshold/contrast"), so no hard seam
follows the mask's edge.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter


class SoftInpaintRun:
    """One inpainting run's soft-inpainting settings (the add-on's validated values)."""

    def __init__(self, values: dict):
        self.v = values
        self.sigma = None  # noise level of the model call in progress (the k-diffusion samplers' blend has none)

    def note_level(self, sigma: torch.Tensor | None) -> None:
        if sigma is not None:
            self.sigma = float(sigma.reshape(-1)[0])

    def blend(self, original: torch.Tensor, current: torch.Tensor, repaint: torch.Tensor,
              alpha_bar: torch.Tensor | None) -> torch.Tensor:
        """The current latents with the original blended in, weighted by mask and noise level."""
        sigma = float(((1 - alpha_bar) / alpha_bar).sqrt()) if alpha_bar is not None else (self.sigma or 0.0)
        exponent = (sigma ** self.v["mask_blend_power"]) * self.v["mask_blend_scale"]
        weight = repaint.clamp(0, 1) ** exponent  # weight of the current latents; 1 - weight of the original
        return latent_blend(original, current, weight, self.v["inpaint_detail_preservation"])

    def final_blend(self, original: torch.Tensor, current: torch.Tensor, repaint: torch.Tensor) -> torch.Tensor:
        """A1111 keeps the sampler's last latents as they are; the pixels are composited afterwards."""
        return current

    def composite_masks(self, repaint: torch.Tensor, original: torch.Tensor, result: torch.Tensor,
                        size: tuple[int, int]) -> list[Image.Image]:
        """Per image, where the generated pixels are kept (white) when pasting onto the original.

        Pixels that changed little from the original take the original back; the
        mask influence biases that threshold by the soft mask.
        """
        v = self.v
        mask = repaint[:, 0].float().clamp(0, 1)
        scalar = 1 - mask ** (v["mask_blend_scale"] / 2)
        scalar = 0.5 * (1 - v["composite_mask_influence"]) + scalar * v["composite_mask_influence"]
        scalar = scalar / (1.00001 - scalar)
        distance = torch.linalg.vector_norm(result.float() - original.float(), dim=1)
        # A1111 smooths with weighted-histogram filters: a local top-10% (about a max) then a local
        # interquartile mean; a 5x5 max and a Gaussian of the same radius stand in for them.
        distance = _gaussian_blur(F.max_pool2d(distance[:, None], 5, stride=1, padding=2)[:, 0], sigma=1.5)
        ratio = distance / (v["composite_difference_threshold"] * scalar).clamp_min(1e-6)
        keep_original = _smootherstep(1 / (1 + ratio ** v["composite_difference_contrast"]))
        masks = []
        for weight in (1 - keep_original).cpu().numpy():
            image = Image.fromarray((weight * 255).clip(0, 255).astype(np.uint8), "L")
            image = image.resize(size, Image.LANCZOS).filter(ImageFilter.GaussianBlur(radius=4))
            masks.append(image)
        return masks


def latent_blend(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, preservation: float) -> torch.Tensor:
    """Interpolate latent vectors from ``a`` to ``b`` by ``t``, their magnitudes separately.

    The magnitudes are interpolated as p-th powers (p = ``preservation``), which
    favours the larger one, so partly blended pixels keep their contrast.
    """
    t = t.expand_as(a[:, :1])
    mixed = a * (1 - t) + b * t
    current = torch.linalg.vector_norm(mixed, dim=1, keepdim=True).double() + 1e-5
    a_mag = torch.linalg.vector_norm(a, dim=1, keepdim=True).double() ** preservation * (1 - t).double()
    b_mag = torch.linalg.vector_norm(b, dim=1, keepdim=True).double() ** preservation * t.double()
    wanted = (a_mag + b_mag) ** (1 / preservation)
    return mixed * (wanted / current).to(mixed.dtype)


def _smootherstep(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return x * x * x * (x * (6 * x - 15) + 10)


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur [B,h,w] maps with a small Gaussian (radius 2), edges replicated."""
    offsets = torch.arange(-2, 3, dtype=torch.float32, device=images.device)
    kernel = torch.exp(-(offsets ** 2) / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    x = F.pad(images[:, None], (2, 2, 2, 2), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, 5))
    x = F.conv2d(x, kernel.view(1, 1, 5, 1))
    return x[:, 0]
