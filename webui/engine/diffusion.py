"""The denoising loop shared by txt2img, img2img, inpaint and the hires-fix second pass.

No threads, no UI: the caller passes conditioning, noise seeds, a sampling plan
(``webui.engine.sampling``) and a JobControl. This module is the model side of
A1111's CFGDenoiser: it runs the UNet on [negatives; positive parts], applies
classifier-free guidance with composable (AND) weights, inpainting masks,
prompt editing per model call, and reports progress and previews.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch

from webui.engine.controlnet import unet_residuals
from webui.engine.guidance import GuideCall, GuidanceHooks
from webui.engine.noise import ImageRNG
from webui.engine.sampling.runner import CFGPP_SCALE, Guided, Latents, Plan, run
from webui.models.placement import execution_device
from webui.schemas import JobControl, JobInterrupted, Progress


@dataclass
class Conditioning:
    """Text conditioning: embeddings [R, T, D] and (SDXL) pooled [R, P].

    For the positive side of a batch, each row is one AND-part of one image:
    ``part_index[r]`` is that image and ``part_weight[r]`` the part's weight
    (None: one part of weight 1 per image).
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    part_index: torch.Tensor | None = None
    part_weight: torch.Tensor | None = None


@dataclass
class ModelSwitch:
    """A1111's refiner: once ``at`` of the way through, the rest of the sampling runs on another model.

    "Of the way" is by noise level (A1111's default: ``(999 - timestep) / 1000``), or by the
    share of steps done when ``by_steps``. ``load`` returns the other model's
    (unet, positive_at, negative_at, time_ids); ``done`` says whether the switch happened.
    """

    at: float
    load: Callable[[], tuple]
    by_steps: bool = False
    done: bool = False
    model: object = None  # the loaded refiner, once switched (to decode with)
    infotext: dict = field(default_factory=dict)  # A1111's "Refiner", "Refiner switch at", once switched

    def due(self, t: torch.Tensor, step: int, total: int) -> bool:
        """Whether the sampler has come far enough to switch, at timestep ``t`` of step ``step`` of ``total``."""
        if self.done:
            return False
        if self.by_steps:
            done = step / max(total, 1)
        else:
            done = (999 - round(float(t.reshape(-1)[0]))) / 1000
        return done >= self.at


@dataclass
class SamplingJob:
    """Everything one denoising run needs besides the model."""

    seeds: list[int]
    latent_size: tuple[int, int]  # (h, w) in latent pixels
    steps: int
    cfg_scale: float
    positive_at: Callable[[int], Conditioning]  # model call -> conditioning of the batch (prompt editing)
    negative_at: Callable[[int], Conditioning]
    plan: Plan | None = None  # sampler, schedule type, settings and the model's noise schedule
    time_ids: torch.Tensor | None = None  # SDXL size/crop ids for [negative; positive]
    init_latents: torch.Tensor | None = None  # img2img / inpaint start (already scaled)
    strength: float = 1.0
    noise_multiplier: float = 1.0  # img2img: A1111's initial_noise_multiplier scales the noise added to the init
    fixed_steps: bool = False  # hires second pass: exactly ``steps`` steps on a longer schedule (A1111)
    mask: torch.Tensor | None = None  # [B,1,h,w] 1 = repaint (inpaint), latent resolution
    masked_image_latents: torch.Tensor | None = None  # for 9-channel inpainting UNets
    noise_fill: str = "original"  # original | latent noise | latent nothing (what the masked latents start as)
    make_rng: Callable[[tuple[int, ...], list[int], torch.device], ImageRNG] | None = None
    addons: dict = field(default_factory=dict)  # enabled guidance add-ons {key: values} (webui.addons)
    controlnet: object | None = None  # webui.engine.controlnet.ControlRun: the ControlNet units of this pass
    progress: Progress = field(default_factory=Progress)
    switch: ModelSwitch | None = None  # a refiner taking over part way
    stopped: str | None = None  # set by denoise: "interrupt" or "skip" when the user stopped this run early


class _Skipped(Exception):
    """The user pressed Skip: drop this batch."""


@torch.no_grad()
def denoise(unet, job: SamplingJob, control: JobControl, preview: Callable | None = None) -> torch.Tensor | None:
    """Run the sampler; returns the final latents [B,4,h,w] (unscaled by the VAE factor).

    When the user interrupts or skips, ``job.stopped`` says which and the latents are the
    sampler's latest prediction of the clean image (A1111 decodes its last ``denoised``);
    None when no step had finished yet.
    """
    device, dtype = execution_device(unet), next(unet.parameters()).dtype
    batch = len(job.seeds)
    shape = (4, *job.latent_size)
    make_rng = job.make_rng or (lambda shape, seeds, device: ImageRNG(shape, seeds, device))
    rng = make_rng(shape, job.seeds, device)
    noise = rng.first().to(device=device, dtype=torch.float32)
    plan = job.plan

    hooks = GuidanceHooks(job.addons, unet, plan, lambda: job.progress.steps) if job.addons else None
    soft = hooks.soft_inpaint if hooks is not None else None
    init = None
    if job.init_latents is not None:
        init = job.init_latents.to(device=device, dtype=torch.float32)
        if job.noise_multiplier != 1.0:
            noise = noise * job.noise_multiplier
        if job.mask is not None and job.noise_fill != "original":
            fill = noise if job.noise_fill == "latent noise" else torch.zeros_like(init)
            init = init * (1 - job.mask) + fill * job.mask
    blend = None
    if job.mask is not None and job.masked_image_latents is None and init is not None:
        mask = job.mask.to(device=device, dtype=torch.float32)

        def blend(latents, alpha_bar=None):
            # Ordinary checkpoints inpaint by keeping the unmasked area on the original (A1111's CFGDenoiser mask):
            # the k-diffusion samplers blend the prediction, the timesteps samplers their noisy latents.
            keep = init if alpha_bar is None else init * alpha_bar.sqrt() + noise * (1 - alpha_bar).sqrt()
            if soft is not None:
                return soft.blend(keep, latents, mask, alpha_bar)
            return keep * (1 - mask) + latents * mask

    mask_extra = None
    if job.masked_image_latents is not None:
        mask_extra = torch.cat([job.mask, job.masked_image_latents], dim=1).to(device=device, dtype=torch.float32)

    contexts: dict[tuple, tuple] = {}
    calls = [0]
    model = [unet]  # the refiner replaces it part way (job.switch)
    scale = job.cfg_scale * (CFGPP_SCALE if plan.sampler.options.get("cfgpp") else 1.0)
    s_min_uncond = plan.settings.s_min_uncond
    multiplier = plan.call_multiplier()

    def guide(x_in: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor | None = None) -> Guided:
        if control.interrupted():
            raise JobInterrupted()
        if control.take_skip():
            raise _Skipped()
        step = calls[0] // multiplier  # prompt editing counts model calls, as A1111's CFGDenoiser
        calls[0] += 1
        if job.switch is not None and job.switch.due(t, step, job.progress.steps):
            model[0], job.positive_at, job.negative_at, job.time_ids = job.switch.load()
            job.switch.done = True
            contexts.clear()
        positive, negative = job.positive_at(step), job.negative_at(step)
        key = (id(positive), id(negative))
        if key not in contexts:  # built once per distinct conditioning, not per call
            contexts[key] = _unet_context(positive, negative, job, batch, device, dtype)
        context, added, rows, weights = contexts[key]
        level = sigma if sigma is not None else t
        skip_uncond = bool(calls[0] % 2 == 0 and s_min_uncond > 0 and float(level.reshape(-1)[0]) < s_min_uncond)
        model_in = torch.cat([x_in, x_in[rows]])
        if mask_extra is not None:
            model_in = torch.cat([model_in, torch.cat([mask_extra, mask_extra[rows]])], dim=1)
        if skip_uncond:  # A1111's NGMS: every other call late in sampling runs the positive rows only
            model_in, context = model_in[batch:], context[batch:]
            added = {k: v[batch:] for k, v in added.items()} if added else None
        timestep = t.to(device=device, dtype=torch.float32).reshape(-1)[:1].expand(model_in.shape[0])
        if hooks is not None:
            hooks.before_unet(step, sigma)
        control_in = {}
        if job.controlnet is not None:  # the ControlNets on the same rows: negatives, then positive parts
            conditional = torch.cat([torch.zeros(batch, device=device), torch.ones(len(rows), device=device)])
            image_rows = torch.cat([torch.arange(batch, device=device), rows])
            if skip_uncond:
                conditional, image_rows = conditional[batch:], image_rows[batch:]
            control_in = job.controlnet.unet_inputs(model_in.to(dtype), timestep, context, added, image_rows,
                                                    conditional, step, job.progress.steps)
        out = model[0](model_in.to(dtype), timestep, encoder_hidden_states=context, added_cond_kwargs=added,
                   **unet_residuals(control_in)).sample.float()
        out_pos = out[-len(rows):]
        if skip_uncond:
            first_part = [int((rows == i).nonzero()[0]) for i in range(batch)]
            out_neg = out_pos[first_part]
        else:
            out_neg = out[:batch]
        # Composable diffusion: each part pulls its image away from the negative by its weight.
        pulls = torch.zeros_like(out_neg).index_add_(0, rows, (out_pos - out_neg[rows]) * weights.view(-1, 1, 1, 1))
        used_scale = 1.0 if skip_uncond else scale
        guided = Guided(out_neg + used_scale * pulls, out_neg, out_neg + pulls)
        if hooks is None:
            return guided

        def positive_again():  # the positive rows once more, for add-ons that perturb the UNet (PAG)
            n = len(rows)
            extra = {k: v[-n:] for k, v in added.items()} if added else None
            residuals = unet_residuals(control_in, n)
            return model[0](model_in[-n:].to(dtype), timestep[-n:], encoder_hidden_states=context[-n:],
                        added_cond_kwargs=extra, **residuals).sample.float()
        return hooks.combine(guided, GuideCall(x_in, t, sigma, out_neg, out_pos, rows, weights, used_scale, step,
                                               positive_again))

    latest: list[torch.Tensor | None] = [None]

    def on_step(index: int, denoised: torch.Tensor) -> None:
        latest[0] = denoised
        job.progress.step = index + 1
        if preview is not None and control.wants_preview(index + 1):
            job.progress.preview = preview(denoised)
        control.report(job.progress)

    def on_total(total: int) -> None:
        job.progress.steps = total

    start = Latents(noise=noise, init=init, strength=job.strength if init is not None else 1.0,
                    fixed_steps=job.fixed_steps, blend=blend)
    try:
        with hooks.session() if hooks is not None else contextlib.nullcontext():
            latents = run(plan, guide, start, job.steps, rng.next, job.seeds, on_step, on_total)
    except (_Skipped, JobInterrupted) as stop:
        job.stopped = "skip" if isinstance(stop, _Skipped) else "interrupt"
        if latest[0] is None:
            return None
        latents = latest[0].clone()
    if blend is not None:
        latents = soft.final_blend(init, latents, mask) if soft is not None else init * (1 - mask) + latents * mask
    return latents


def _unet_context(positive: Conditioning, negative: Conditioning, job: SamplingJob, batch: int, device, dtype):
    """UNet inputs for rows [negatives of the batch; positive parts]: context, SDXL extras, row map, weights."""
    rows = positive.part_index if positive.part_index is not None else torch.arange(batch)
    weights = positive.part_weight if positive.part_weight is not None else torch.ones(batch)
    rows, weights = rows.to(device), weights.to(device=device, dtype=torch.float32)
    added = None
    if positive.pooled is not None:
        time_ids = job.time_ids.to(device=device, dtype=dtype)
        added = {"text_embeds": torch.cat([negative.pooled, positive.pooled]).to(device, dtype),
                 "time_ids": torch.cat([time_ids[:batch], time_ids[batch:][rows]])}
    context = torch.cat([negative.embeds, positive.embeds]).to(device, dtype)
    return context, added, rows, weights
