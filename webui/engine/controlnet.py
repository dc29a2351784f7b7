"""ControlNet units at work in the one denoising loop.

Each unit's control image is preprocessed once per job, then fitted to the size
of each pass (the hires pass gets it resized, as the extension does). Per model
call the ControlNets run on the same rows as the UNet ([negatives; positive
parts]) and their residuals, weighted, feed the UNet's down and middle blocks.
Control modes follow sd-webui-controlnet: "My prompt is more important" scales
residual i of n by ``weight * 0.825 ** (n - 1 - i)`` (soft injection), "ControlNet
is more important" does that and feeds only the conditional rows (CFG injection).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from webui.controlnet.preprocessors import effective_settings, pixel_perfect_resolution, run_module
from webui.controlnet.units import CONTROL_MODES, RESIZE_MODES, ControlUnit
from webui.engine import imageprep

SOFT_INJECTION_BASE = 0.825
HIRES_SOFT_MODULES = ("canny", "mlsd")


@dataclass
class PreparedUnit:
    """A unit with its loaded ControlNet and its preprocessed control image."""

    unit: ControlUnit
    model: torch.nn.Module
    title: str  # the model as the infotext names it, "name [hash]"
    detected: Image.Image


def prepare_unit(unit: ControlUnit, model, title: str, width: int, height: int, annotators_dir=None,
                 seed: int = 0) -> PreparedUnit:
    """Run the unit's preprocessor (pixel perfect picks the resolution from the generated size)."""
    resolution = unit.processor_res
    if unit.pixel_perfect:
        resolution = pixel_perfect_resolution(unit.image, width, height, unit.resize_mode)
    detected = run_module(unit.module, unit.image, resolution, unit.threshold_a, unit.threshold_b,
                          annotators_dir=annotators_dir, seed=seed)
    # The infotext records what ran (the extension writes resolved values, not -1).
    resolution, a, b = effective_settings(unit.module, resolution, unit.threshold_a, unit.threshold_b)
    unit = dataclasses.replace(unit, processor_res=resolution, threshold_a=a, threshold_b=b)
    return PreparedUnit(unit, model, title, detected)


def fit_control_image(image: Image.Image, resize_mode: str, width: int, height: int,
                      crop: tuple | None = None) -> torch.Tensor:
    """The control image at width x height as a [1,3,H,W] tensor in 0..1 (the resize modes of img2img).

    ``crop`` = (box, (full_w, full_h)) for inpainting "Only masked": the image is fitted to the
    whole picture, then the same box as the init image is cut out and scaled to the work size.
    """
    if crop is not None:
        box, (full_w, full_h) = crop
        whole = imageprep.resize_image(image, RESIZE_MODES.index(resize_mode), full_w, full_h)
        fitted = whole.crop(box).resize((width, height), Image.LANCZOS)
    else:
        fitted = imageprep.resize_image(image, RESIZE_MODES.index(resize_mode), width, height)
    pixels = np.asarray(fitted.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)


def guidance_active(unit: ControlUnit, step: int, total: int) -> bool:
    """Whether the unit acts at this step: start <= step/total and (step+1)/total <= end (0..1 of the steps)."""
    if total <= 0:
        return True
    return step / total >= unit.guidance_start and (step + 1) / total <= unit.guidance_end + 1e-9


def residual_scales(unit: ControlUnit, count: int, hires: bool = False) -> list[float]:
    """The weight of each of ``count`` residuals (down blocks, then the middle one) for the unit's mode.

    As the extension, canny and MLSD units use the soft scales in the hires pass whatever their mode
    (it says this reduces artefacts there).
    """
    forced = hires and any(word in unit.module for word in HIRES_SOFT_MODULES)
    if unit.control_mode == CONTROL_MODES[0] and not forced:
        return [unit.weight] * count
    return [unit.weight * SOFT_INJECTION_BASE ** float(count - 1 - i) for i in range(count)]


class ControlRun:
    """The units of one sampling pass at its size; gives the UNet its extra residual inputs per call."""

    def __init__(self, units: list[PreparedUnit], width: int, height: int, device, dtype, crop: tuple | None = None,
                 hires: bool = False):
        self.units, self.hires = units, hires
        self.hints = [fit_control_image(u.detected, u.unit.resize_mode, width, height, crop).to(device, dtype)
                      for u in units]
        self.dtype = dtype

    def unet_inputs(self, sample, timestep, context, added, image_rows, conditional, step: int, total: int) -> dict:
        """``down_block_additional_residuals`` / ``mid_block_additional_residual`` for one UNet call, or {}.

        ``image_rows[r]``: the image of model row r; ``conditional[r]``: 1 for a positive row.
        """
        down, mid = None, None
        for prepared, hint in zip(self.units, self.hints):
            unit = prepared.unit
            if unit.weight == 0 or not guidance_active(unit, step, total):
                continue
            rows_hint = hint.expand(len(image_rows), -1, -1, -1)
            res_down, res_mid = prepared.model(sample[:, :prepared.model.config.in_channels].to(self.dtype),
                                               timestep, encoder_hidden_states=context, controlnet_cond=rows_hint,
                                               added_cond_kwargs=added, return_dict=False)
            scales = residual_scales(unit, len(res_down) + 1, self.hires)
            mark = conditional.view(-1, 1, 1, 1).to(res_mid.dtype) if unit.control_mode == CONTROL_MODES[2] else None
            res_down = [r * s if mark is None else r * s * mark for r, s in zip(res_down, scales)]
            res_mid = res_mid * scales[-1] if mark is None else res_mid * scales[-1] * mark
            down = res_down if down is None else [a + b for a, b in zip(down, res_down)]
            mid = res_mid if mid is None else mid + res_mid
        if down is None:
            return {}
        return {"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid}
