"""The one hook of the denoising loop: around the UNet call and where CFG combines the predictions.

Add-ons work in x0 terms (the denoised latents), as A1111's CFGDenoiser combines
them. Every sampler's raw model output (eps or v) is an affine function of x0
for a given model input, so the loop's outputs are turned into x0, combined,
and turned back: ``x0 = a * x_in + b * out``. For the k-diffusion samplers
``a, b`` come from the denoiser's scalings at sigma; for the timesteps samplers
(DDIM, PLMS, UniPC) from alpha-bar at the timestep.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from webui.engine.guidance.dynthres import DynThresh
from webui.engine.guidance.freeu import FreeURun
from webui.engine.guidance.pag import PerturbedAttentionRun
from webui.engine.guidance.soft_inpaint import SoftInpaintRun
from webui.engine.sampling.denoiser import scalings
from webui.engine.sampling.runner import Guided, Plan, _rescale


@dataclass
class GuideCall:
    """One model call of the loop, as the add-ons see it (raw outputs, [negatives; positive parts] rows)."""

    x_in: torch.Tensor  # [B,C,h,w] model input of each image
    t: torch.Tensor
    sigma: torch.Tensor | None  # None for the timesteps samplers
    out_neg: torch.Tensor  # [B] raw outputs
    out_pos: torch.Tensor  # [R] raw outputs of the positive parts
    rows: torch.Tensor  # [R] image of each part
    weights: torch.Tensor  # [R] part weights
    scale: float  # the CFG scale used for this call
    step: int
    positive_again: Callable[[], torch.Tensor]  # the positive rows through the UNet once more (raw outputs)

    def pulls(self, out_pos: torch.Tensor) -> torch.Tensor:
        """sum over parts of weight * (part - negative), per image (composable prompts)."""
        delta = (out_pos - self.out_neg[self.rows]) * self.weights.view(-1, 1, 1, 1)
        return torch.zeros_like(self.out_neg).index_add_(0, self.rows, delta)


def x0_affine(plan: Plan, t: torch.Tensor, sigma: torch.Tensor | None) -> tuple[float, float]:
    """(a, b) with x0 = a * model_input + b * raw_output for this call of the loop."""
    if sigma is not None:
        prediction = "epsilon" if plan.sampler.kind == "lcm" else plan.prediction
        c_skip, c_out, c_in = scalings(sigma.reshape(-1)[0].float(), prediction)
        return float(c_skip / c_in), float(c_out)
    alpha_bar = plan.alphas_cumprod[int(t.reshape(-1)[0])].double()
    if plan.prediction == "v_prediction":
        return float(alpha_bar.sqrt()), float(-(1 - alpha_bar).sqrt())
    return float(1 / alpha_bar.sqrt()), float(-((1 - alpha_bar) / alpha_bar).sqrt())


class GuidanceHooks:
    """The enabled add-ons of one sampling run (``{key: values}`` from ``webui.addons.resolve_addons``)."""

    IMPLEMENTED = frozenset({"dynamic_thresholding", "cfg_rescale", "freeu", "perturbed_attention", "soft_inpainting"})

    def __init__(self, active: dict[str, dict], unet, plan: Plan, total_steps: Callable[[], int]):
        missing = set(active) - self.IMPLEMENTED
        if missing:  # a declared add-on the engine cannot run must not pass silently
            raise NotImplementedError(f"no engine hook for add-on(s): {', '.join(sorted(missing))}")
        self.plan, self.unet, self.total_steps = plan, unet, total_steps
        self.dynthres = DynThresh(active["dynamic_thresholding"]) if "dynamic_thresholding" in active else None
        self.freeu = FreeURun(active["freeu"], unet) if "freeu" in active else None
        self.pag = PerturbedAttentionRun(active["perturbed_attention"], unet) if "perturbed_attention" in active \
            else None
        self.soft_inpaint = SoftInpaintRun(active["soft_inpainting"]) if "soft_inpainting" in active else None
        self.rescale_phi = 0.0
        if "cfg_rescale" in active:
            phi = active["cfg_rescale"]["phi"]
            if plan.sampler.kind == "timesteps":
                self.rescale_phi = phi  # the k-diffusion path rescales in the runner; these samplers here
            plan.settings.cfg_rescale_phi = phi

    def fraction(self, step: int) -> float:
        """How far sampling is, step / (steps - 1), as the extensions gate their schedules."""
        total = self.total_steps()
        return step / (total - 1) if total > 1 else 0.0

    @contextlib.contextmanager
    def session(self):
        """Around the whole run: whatever an add-on patched into the UNet is undone afterwards."""
        try:
            yield self
        finally:
            if self.freeu is not None:
                self.freeu.off()

    def before_unet(self, step: int, sigma: torch.Tensor | None) -> None:
        """Before each UNet call: step-gated patches (FreeU) on or off; the noise level noted."""
        if self.soft_inpaint is not None:
            self.soft_inpaint.note_level(sigma)
        if self.freeu is not None:
            self.freeu.gate(self.fraction(step))

    def combine(self, guided: Guided, call: GuideCall) -> Guided:
        """The guided prediction with the add-ons applied (x0 terms inside, raw outputs out)."""
        pag_on = self.pag is not None and self.pag.active(self.fraction(call.step))
        if self.dynthres is None and not pag_on and not self.rescale_phi:
            return guided
        a, b = x0_affine(self.plan, call.t, call.sigma)
        base = a * call.x_in
        uncond0 = base + b * call.out_neg
        if self.dynthres is not None:
            pulls0 = b * call.pulls(call.out_pos)
            denoised = self.dynthres.combine(uncond0, pulls0, call.scale, call.step, self.total_steps())
        else:
            denoised = base + b * guided.guided
        if pag_on:
            perturbed = self.pag.perturbed(call.positive_again)
            denoised = denoised + self.pag.scale_now() * b * (call.pulls(call.out_pos) - call.pulls(perturbed))
        if self.rescale_phi:
            denoised = _rescale(denoised, base + b * guided.positive, self.rescale_phi)
        return Guided((denoised - base) / b, guided.uncond, guided.positive)
