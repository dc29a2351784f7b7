"""Dynamic thresholding as sd-dynamic-thresholding does it in latent space.

CFG runs at two scales: the real one and a "mimic" one. The real result is
recentred on its per-channel mean, clamped at a percentile of its spread, and
renormalised to the mimic result's spread, so a high CFG keeps its prompt
adherence without burning the colours.
"""
from __future__ import annotations

import math

import torch


def scheduled(value: float, mode: str, minimum: float, frac: float, sched_val: float) -> float:
    """A scale under one of the extension's schedules, between ``minimum`` and ``value``."""
    span = value - minimum
    factor = {
        "Constant": lambda: 1.0,
        "Linear Down": lambda: 1.0 - frac,
        "Half Cosine Down": lambda: math.cos(frac),
        "Cosine Down": lambda: math.cos(frac * 1.5707),
        "Linear Up": lambda: frac,
        "Half Cosine Up": lambda: 1.0 - math.cos(frac),
        "Cosine Up": lambda: 1.0 - math.cos(frac * 1.5707),
        "Power Up": lambda: math.pow(frac, sched_val),
        "Power Down": lambda: 1.0 - math.pow(frac, sched_val),
        "Linear Repeating": lambda: _triangle((frac * sched_val) % 1.0),
        "Cosine Repeating": lambda: math.cos(frac * 6.28318 * sched_val) * 0.5 + 0.5,
        "Sawtooth": lambda: (frac * sched_val) % 1.0,
    }[mode]()
    return span * factor + minimum


def _triangle(portion: float) -> float:
    return (0.5 - portion) * 2 if portion < 0.5 else (portion - 0.5) * 2


class DynThresh:
    """One run's dynamic-thresholding settings (the add-on's validated values)."""

    def __init__(self, values: dict):
        self.v = values

    def combine(self, uncond: torch.Tensor, pulls: torch.Tensor, cfg_scale: float, step: int,
                total_steps: int) -> torch.Tensor:
        """x0 of CFG at ``cfg_scale`` thresholded to the spread of CFG at the mimic scale.

        ``uncond`` [B,C,h,w] is the negative prediction, ``pulls`` the weighted sum of
        (positive - negative) per image, both in x0 terms.
        """
        v = self.v
        frac = step / (total_steps - 1) if total_steps > 1 else 0.0
        mimic = scheduled(v["mimic_scale"], v["mimic_mode"], v["mimic_scale_min"], frac, v["sched_val"])
        scale = scheduled(cfg_scale, v["cfg_mode"], v["cfg_scale_min"], frac, v["sched_val"])
        mimic_target = uncond + pulls * mimic
        cfg_target = uncond + pulls * scale
        mim = mimic_target.flatten(2)
        cfg = cfg_target.flatten(2)
        cfg_means = cfg.mean(dim=2, keepdim=True)
        mim_centered = mim - mim.mean(dim=2, keepdim=True)
        cfg_centered = cfg - cfg_means
        quantile = v["threshold_percentile"] / 100.0
        std = v["variability_measure"] == "STD"
        if v["separate_feature_channels"]:
            if std:
                mim_ref = mim_centered.std(dim=2, keepdim=True)
                cfg_ref = cfg_centered.std(dim=2, keepdim=True)
            else:
                mim_ref = mim_centered.abs().amax(dim=2, keepdim=True)
                cfg_ref = torch.quantile(cfg_centered.abs(), quantile, dim=2, keepdim=True)
        elif std:
            mim_ref, cfg_ref = mim_centered.std(), cfg_centered.std()
        else:
            mim_ref, cfg_ref = mim_centered.abs().max(), torch.quantile(cfg_centered.abs(), quantile)
        if v["scaling_startpoint"] == "ZERO":
            result = cfg * (mim_ref / cfg_ref)
        else:
            if std:
                renormalised = cfg_centered / cfg_ref * mim_ref
            else:
                top = torch.maximum(mim_ref, cfg_ref)
                renormalised = cfg_centered.clamp(-top, top) / top * mim_ref
            result = renormalised + cfg_means
        result = result.unflatten(2, cfg_target.shape[2:])
        phi = v["interpolate_phi"]
        if phi != 1.0:
            result = result * phi + cfg_target * (1.0 - phi)
        return result
