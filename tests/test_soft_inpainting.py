"""Soft inpainting's pieces: the blend keeps contrast, follows the noise level, and composites by difference."""
import numpy as np
import torch

from webui.addons import find_addon
from webui.engine.guidance.soft_inpaint import SoftInpaintRun, latent_blend


def run(**values) -> SoftInpaintRun:
    return SoftInpaintRun(find_addon("soft_inpainting").from_named({"enabled": True, **values}, "soft_inpainting"))


def test_a_half_blended_pixel_keeps_its_contrast_instead_of_greying_out():
    a = torch.tensor([1.0, 0, 0, 0]).view(1, 4, 1, 1)
    b = torch.tensor([0, 1.0, 0, 0]).view(1, 4, 1, 1)
    half = torch.full((1, 1, 1, 1), 0.5)
    linear = torch.linalg.vector_norm(a * 0.5 + b * 0.5)
    blended = torch.linalg.vector_norm(latent_blend(a, b, half, 4.0))
    assert abs(float(linear) - 0.7071) < 1e-3 and abs(float(blended) - 1.0) < 1e-3
    assert torch.allclose(latent_blend(a, b, torch.zeros_like(half), 4.0), a, atol=1e-4)
    assert torch.allclose(latent_blend(a, b, torch.ones_like(half), 4.0), b, atol=1e-4)


def test_a_half_masked_pixel_keeps_the_original_early_and_follows_the_sampler_late():
    soft = run()
    original = torch.tensor([1.0, 0, 0, 0]).view(1, 4, 1, 1)
    current = torch.tensor([0, 1.0, 0, 0]).view(1, 4, 1, 1)
    mask = torch.full((1, 1, 1, 1), 0.5)

    def towards_current(result):  # 0: the original, 1: the sampler's latents
        return float(result[0, 1, 0, 0] / (result[0, 0, 0, 0] + result[0, 1, 0, 0]))

    soft.note_level(torch.tensor(14.0))
    early = towards_current(soft.blend(original, current, mask, None))
    soft.note_level(torch.tensor(0.05))
    late = towards_current(soft.blend(original, current, mask, None))
    assert early < 0.01 and late > 0.9
    full = torch.ones(1, 1, 1, 1)
    assert towards_current(soft.blend(original, current, full, None)) == 1.0  # fully masked: the sampler's own
    alpha_bar = torch.tensor(1 / (1 + 14.0 ** 2))  # the timesteps samplers pass alpha-bar instead of sigma
    assert towards_current(soft.blend(original, current, mask, alpha_bar)) < 0.01


def test_the_composite_keeps_original_pixels_where_nothing_changed():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 6:10, 6:10] = 1
    original = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    changed = original.clone()
    changed[..., 6:10, 6:10] += 3
    [composite] = run().composite_masks(mask, original, changed, (128, 128))
    weights = np.asarray(composite)
    assert weights[56:72, 56:72].min() > 240  # the changed middle keeps the generated pixels
    assert weights[:12, :12].max() < 16 and weights[-12:, -12:].max() < 16  # untouched corners: the original
    [unchanged] = run().composite_masks(mask, original, original.clone(), (128, 128))
    assert np.asarray(unchanged).max() == 0
