"""ControlNet units at work in the one denoising loop.

Each unit's control image is preprocessed once per job, then fitted to the size
of each pass (the hires pass gets it resized, as the extension does). Per model
call the ControlNets run on the same rows as the UNet ([negatives; positive
parts]) and their residuals, weighted, feed the UNet's down and middle blocks.
Control modes follow sd-webui-controlnet: "My prompt is more important" scales
residual i of n by ``weight * 0.825 ** (n - 1 - i)`` (soft injection), "ControlNet
is more important" does that and feeds only the conditional rows (CFG injection).

T2I-Adapters in a unit run once per pass on its control image; their feature
maps, weighted the same way (soft scales 0.25, 0.62, 0.825, 1.0 as the
extension has them), go in as ``down_intrablock_additional_residuals``.
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
ADAPTER_SOFT_SCALES = (0.25, 0.62, 0.825, 1.0)
INTRABLOCK = "down_intrablock_additional_residuals"
HIRES_SOFT_MODULES = ("canny", "mlsd")


@dataclass
class PreparedUnit:
    """A unit with its loaded ControlNet and its preprocessed control image."""

    unit: ControlUnit
    model: torch.nn.Module
    title: str  # the model as the infotext names it, "name [hash]"
    detected: Image.Image


def prepare_unit(unit: ControlUnit, model, title: str, width: int, height: int, network=None,
                 seed: int = 0) -> PreparedUnit:
    """Run the unit's preprocessor (pixel perfect picks the resolution from the generated size)."""
    resolution = unit.processor_res
    if unit.pixel_perfect:
        resolution = pixel_perfect_resolution(unit.image, width, height, unit.resize_mode)
    detected = run_module(unit.module, unit.image, resolution, unit.threshold_a, unit.threshold_b,
                          network=network, seed=seed)
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


def residual_scales(unit: ControlUnit, count: int, hires: bool = False, adapter: bool = False) -> list[float]:
    """The weight of each of ``count`` residuals (down blocks, then the middle one) for the unit's mode.

    As the extension, canny and MLSD units use the soft scales in the hires pass whatever their mode
    (it says this reduces artefacts there). A T2I-Adapter's feature maps get their own soft scales.
    """
    forced = hires and any(word in unit.module for word in HIRES_SOFT_MODULES)
    if unit.control_mode == CONTROL_MODES[0] and not forced:
        return [unit.weight] * count
    if adapter:
        soft = list(ADAPTER_SOFT_SCALES[:count]) + [1.0] * max(0, count - len(ADAPTER_SOFT_SCALES))
        return [unit.weight * x for x in soft]
    return [unit.weight * SOFT_INJECTION_BASE ** float(count - 1 - i) for i in range(count)]


def is_adapter(model) -> bool:
    """Whether a unit's model is a T2I-Adapter (its features do not depend on the step)."""
    return getattr(getattr(model, "config", None), "adapter_type", None) is not None


def adapter_hint(model, hint: torch.Tensor) -> torch.Tensor:
    """The control image as the adapter reads it: grey for one-channel (sketch) adapters, and stretched to
    whole cells of its pixel unshuffle (SDXL adapters read 16x16 cells; their maps then have the sizes the
    UNet's rounding-up downsamplers give)."""
    if model.config.in_channels == 1:
        hint = (hint * torch.tensor([0.299, 0.587, 0.114], dtype=hint.dtype, device=hint.device)
                .view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    cell = int(model.config.downscale_factor)
    height, width = hint.shape[-2:]
    if height % cell or width % cell:
        size = (-(-height // cell) * cell, -(-width // cell) * cell)
        hint = torch.nn.functional.interpolate(hint, size=size, mode="bilinear", align_corners=False)
    return hint


def unet_residuals(control_in: dict, last_rows: int | None = None) -> dict:
    """The UNet keyword arguments for ``control_in``, on its last ``last_rows`` rows when given.

    The UNet consumes the adapter features' list as it goes, so each call gets a fresh one.
    """
    def rows(tensor):
        return tensor if last_rows is None else tensor[-last_rows:]

    kwargs = {}
    if "down_block_additional_residuals" in control_in:
        kwargs["down_block_additional_residuals"] = tuple(rows(r) for r in
                                                          control_in["down_block_additional_residuals"])
        kwargs["mid_block_additional_residual"] = rows(control_in["mid_block_additional_residual"])
    if INTRABLOCK in control_in:
        kwargs[INTRABLOCK] = [rows(r) for r in control_in[INTRABLOCK]]
    return kwargs


class ControlRun:
    """The units of one sampling pass at its size; gives the UNet its extra residual inputs per call."""

    def __init__(self, units: list[PreparedUnit], width: int, height: int, device, dtype, crop: tuple | None = None,
                 hires: bool = False):
        self.units, self.hires = units, hires
        self.hints = [fit_control_image(u.detected, u.unit.resize_mode, width, height, crop).to(device, dtype)
                      for u in units]
        self.dtype = dtype
        with torch.no_grad():  # an adapter's feature maps depend on the image only: once per pass
            self.features = [u.model(adapter_hint(u.model, hint)) if is_adapter(u.model) else None
                             for u, hint in zip(units, self.hints)]

    def unet_inputs(self, sample, timestep, context, added, image_rows, conditional, step: int, total: int) -> dict:
        """``down_block_additional_residuals`` / ``mid_block_additional_residual`` (ControlNets) and
        ``down_intrablock_additional_residuals`` (T2I-Adapters) for one UNet call, or {}.

        ``image_rows[r]``: the image of model row r; ``conditional[r]``: 1 for a positive row.
        Pass the result through :func:`unet_residuals`.
        """
        down, mid, intrablock = None, None, None
        for prepared, hint, features in zip(self.units, self.hints, self.features):
            unit = prepared.unit
            if unit.weight == 0 or not guidance_active(unit, step, total):
                continue
            if features is not None:
                scales = residual_scales(unit, len(features), self.hires, adapter=True)
                mark = conditional.view(-1, 1, 1, 1).to(self.dtype) if unit.control_mode == CONTROL_MODES[2] \
                    else torch.ones(len(image_rows), 1, 1, 1, dtype=self.dtype, device=conditional.device)
                scaled = [f * s * mark for f, s in zip(features, scales)]
                intrablock = scaled if intrablock is None else [a + b for a, b in zip(intrablock, scaled)]
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
        found = {}
        if down is not None:
            found.update({"down_block_additional_residuals": tuple(down), "mid_block_additional_residual": mid})
        if intrablock is not None:
            found[INTRABLOCK] = tuple(intrablock)
        return found
