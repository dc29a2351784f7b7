"""The denoising loop shared by txt2img, img2img, inpaint and the hires-fix second pass.

No threads, no UI: the caller passes conditioning, noise seeds and a JobControl;
the loop reports progress after each step and stops when asked to.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import torch

from webui.engine.noise import ImageRNG
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
class SamplingJob:
    """Everything one denoising run needs besides the model and scheduler."""

    seeds: list[int]
    latent_size: tuple[int, int]  # (h, w) in latent pixels
    steps: int
    cfg_scale: float
    positive_at: Callable[[int], Conditioning]  # step -> conditioning of the batch (prompt editing)
    negative_at: Callable[[int], Conditioning]
    time_ids: torch.Tensor | None = None  # SDXL size/crop ids for [negative; positive]
    init_latents: torch.Tensor | None = None  # img2img / inpaint start (already scaled)
    strength: float = 1.0
    mask: torch.Tensor | None = None  # [B,1,h,w] 1 = repaint (inpaint), latent resolution
    masked_image_latents: torch.Tensor | None = None  # for 9-channel inpainting UNets
    noise_fill: str = "original"  # original | latent noise | latent nothing (what the masked latents start as)
    progress: Progress = field(default_factory=Progress)
    rng: ImageRNG | None = None  # the batch's noise (noise.make_image_rng); None: plain CPU noise of the seeds


def _timesteps(scheduler, steps: int, strength: float, device):
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    if strength >= 1.0:
        return timesteps
    order = getattr(scheduler, "order", 1)
    init = min(int(steps * strength), steps)
    start = max(steps - init, 0)
    timesteps = timesteps[start * order:]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start * order)
    return timesteps


@torch.no_grad()
def denoise(unet, scheduler, job: SamplingJob, control: JobControl, preview: Callable | None = None) -> torch.Tensor:
    """Run the sampler; returns the final latents [B,4,h,w] (unscaled by the VAE factor)."""
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    batch = len(job.seeds)
    shape = (4, *job.latent_size)
    rng = job.rng if job.rng is not None else ImageRNG(shape, job.seeds, device)
    noise = rng.first().to(device=device, dtype=torch.float32)
    if hasattr(scheduler, "noise_sampler_seed"):  # Brownian-tree SDE noise: seeded by the images' seeds, as A1111
        scheduler.noise_sampler_seed = list(job.seeds)
    timesteps = _timesteps(scheduler, job.steps, job.strength if job.init_latents is not None else 1.0, device)

    if job.init_latents is None:
        latents = noise * scheduler.init_noise_sigma
    else:
        init = job.init_latents.to(device=device, dtype=torch.float32)
        if job.mask is not None and job.noise_fill != "original":
            fill = noise if job.noise_fill == "latent noise" else torch.zeros_like(init)
            init = init * (1 - job.mask) + fill * job.mask
        latents = scheduler.add_noise(init, noise, timesteps[:1].repeat(batch)) if len(timesteps) else init

    total = len(timesteps)
    job.progress.steps = total
    contexts: dict[int, tuple] = {}
    mask_extra = None
    if job.masked_image_latents is not None:
        mask_extra = torch.cat([job.mask, job.masked_image_latents], dim=1).to(torch.float32)
    for index, t in enumerate(timesteps):
        if control.interrupted():
            raise JobInterrupted()
        if control.take_skip():
            return None  # caller drops this image batch
        step = index * job.steps // total  # prompt editing counts sampler steps
        positive, negative = job.positive_at(step), job.negative_at(step)
        key = (id(positive), id(negative))
        if key not in contexts:  # built once per distinct conditioning, not per step
            contexts[key] = _unet_context(positive, negative, job, batch, device, dtype)
        context, added, rows, weights = contexts[key]
        model_in = torch.cat([latents, latents[rows]])
        model_in = scheduler.scale_model_input(model_in, t)
        if mask_extra is not None:
            model_in = torch.cat([model_in, torch.cat([mask_extra, mask_extra[rows]])], dim=1)
        out = unet(model_in.to(dtype), t, encoder_hidden_states=context, added_cond_kwargs=added).sample.float()
        out_neg, out_pos = out[:batch], out[batch:]
        # Composable diffusion: each part pulls its image away from the negative by its weight.
        pulls = (out_pos - out_neg[rows]) * weights.view(-1, 1, 1, 1)
        guided = out_neg + job.cfg_scale * torch.zeros_like(out_neg).index_add_(0, rows, pulls)
        latents = _step(scheduler, guided, t, latents, rng)
        if job.mask is not None and job.masked_image_latents is None and job.init_latents is not None:
            # Ordinary checkpoints inpaint by keeping the unmasked area on the original's noise path.
            keep = job.init_latents.to(torch.float32)
            if index + 1 < total:
                keep = scheduler.add_noise(keep, noise, timesteps[index + 1: index + 2].repeat(batch))
            latents = keep * (1 - job.mask) + latents * job.mask
        job.progress.step = index + 1
        if preview is not None and control.wants_preview(index + 1):
            job.progress.preview = preview(latents)
        control.report(job.progress)
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


def _step(scheduler, guided, t, latents, rng: ImageRNG):
    """One scheduler step whose random draws continue the images' own streams (``rng.next()``).

    diffusers' stochastic schedulers draw through their module's ``randn_tensor``;
    for the step it is pointed at the batch's streams (as A1111 points
    k-diffusion's ``torch.randn_like`` at its ImageRNG), any other shape falls
    back to diffusers' own draw. The swap is safe because one worker thread
    runs the engine.
    """
    module = sys.modules.get(type(scheduler).__module__)
    original = getattr(module, "randn_tensor", None)
    if original is None:
        return scheduler.step(guided, t, latents, return_dict=False)[0]

    def draw(shape, *args, **kwargs):
        if tuple(shape) != tuple(latents.shape):
            return original(shape, *args, **kwargs)
        return rng.next().to(device=kwargs.get("device") or latents.device, dtype=kwargs.get("dtype") or latents.dtype)

    module.randn_tensor = draw
    try:
        return scheduler.step(guided, t, latents, return_dict=False)[0]
    finally:
        module.randn_tensor = original
