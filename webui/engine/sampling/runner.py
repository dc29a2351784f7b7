"""One sampling run as A1111 does it: schedule -> sigmas (or timesteps), noise, the sampler, infotext.

The caller gives a ``guide(x_in, t, sigma=None)`` function: the UNet with classifier-free
guidance for a model input and a (continuous) timestep, returning raw model
outputs (eps or v) as ``Guided(guided, uncond, positive)``. This module turns
it into k-diffusion's denoiser or the timesteps samplers' eps model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, NamedTuple

import torch

from webui import vocabulary
from webui.engine.sampling import ksamplers, schedules, timesteps
from webui.engine.sampling.denoiser import DiscreteSchedule, LCMSchedule, scalings
from webui.engine.sampling.schedules import ScheduleContext
from webui.vocabulary import SamplerSettings, ScheduleSpec, find_schedule

CFGPP_SCALE = 1 / 12.5  # DDIM CFG++ maps CFG 0..12.5 onto its guidance 0..1


class Guided(NamedTuple):
    """What one guided model call returns, in the model's own output space (eps or v)."""

    guided: torch.Tensor  # uncond + scale * sum(w * (cond - uncond))
    uncond: torch.Tensor
    positive: torch.Tensor  # the same combination with scale 1 (for CFG rescale)




@dataclass
class Plan:
    """What to run: the sampler, the schedule type, settings, and the model's schedule."""

    sampler: vocabulary.SamplerSpec
    schedule: ScheduleSpec
    settings: SamplerSettings
    alphas_cumprod: torch.Tensor  # float32 [T]
    prediction: str = "epsilon"  # or v_prediction
    is_sdxl: bool = False
    infotext: dict = field(default_factory=dict)

    @cached_property
    def model_schedule(self) -> DiscreteSchedule:
        return DiscreteSchedule(self.alphas_cumprod)

    def call_multiplier(self) -> int:
        """Model calls per step for prompt-editing schedules (A1111 doubles them for second-order samplers)."""
        return 2 if self.sampler.second_order else 1

    # ------------------------------------------------------------ schedules
    def sigmas(self, steps: int) -> torch.Tensor:
        """The sigma schedule of a k-diffusion sampler for ``steps`` (A1111's get_sigmas)."""
        s, spec = self.settings, self.sampler
        discard = bool(spec.options.get("discard_next_to_last_sigma"))
        if s.always_discard_next_to_last_sigma and not discard:
            discard = True
            self.infotext["Discard penultimate sigma"] = True
        steps += 1 if discard else 0
        if spec.kind == "lcm":
            sigmas = LCMSchedule(self.alphas_cumprod).uniform(steps)
        else:
            sigmas = self._schedule_sigmas(steps)
        if discard:
            sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
        return sigmas

    def _schedule_sigmas(self, steps: int) -> torch.Tensor:
        s, model = self.settings, self.model_schedule
        schedule = self.schedule
        if schedule.name == "automatic" and self.sampler.default_schedule:
            schedule = find_schedule(self.sampler.default_schedule)
        if schedule.function is None:
            return model.uniform_sigmas(steps)
        if schedule.name != "automatic":
            self.infotext["Schedule type"] = schedule.label
        m_min, m_max = model.sigma_min.item(), model.sigma_max.item()
        sigma_min, sigma_max = m_min, m_max
        if s.sigma_min != 0 and s.sigma_min != m_min:
            sigma_min = s.sigma_min
            self.infotext["Schedule min sigma"] = s.sigma_min
        if s.sigma_max != 0 and s.sigma_max != m_max:
            sigma_max = s.sigma_max
            self.infotext["Schedule max sigma"] = s.sigma_max
        rho = None
        if schedule.default_rho != -1 and s.rho != 0:
            rho = s.rho
            self.infotext["Schedule rho"] = s.rho
        if schedule.label == "Beta":
            self.infotext["Beta schedule alpha"] = s.beta_dist_alpha
            self.infotext["Beta schedule beta"] = s.beta_dist_beta
        ctx = ScheduleContext(model, self.is_sdxl, rho, s.beta_dist_alpha, s.beta_dist_beta)
        function = getattr(schedules, schedule.function)
        return function(steps, sigma_min, sigma_max, ctx).to(torch.float32)

    def img2img_steps(self, steps: int, strength: float, fixed: bool) -> tuple[int, int]:
        """(schedule steps, steps to run) for img2img (A1111's setup_img2img_steps)."""
        if fixed or self.settings.img2img_fix_steps:
            return (int(steps / min(strength, 0.999)) if strength > 0 else 0), steps - 1
        return steps, int(min(strength, 0.999) * steps)

    # ------------------------------------------------------------ eta and friends
    def eta(self) -> float:
        s, spec = self.settings, self.sampler
        if "eta" in spec.options:
            return spec.options["eta"]
        if spec.kind == "timesteps":
            value = s.eta if s.eta is not None else s.eta_ddim
            if value != 0.0 and spec.name != "PLMS" and spec.name != "UniPC":
                self.infotext["Eta DDIM"] = value
            return value
        value = s.eta if s.eta is not None else s.eta_ancestral
        if spec.name in vocabulary.ETA_SAMPLERS and value != 1.0:
            self.infotext["Eta"] = value
        return value

    def sampler_run(self, noise, callback) -> ksamplers.SamplerRun:
        s, name = self.settings, self.sampler.name
        run = ksamplers.SamplerRun(noise=noise, callback=callback, eta=self.eta())
        if name in vocabulary.CHURN_PARAMS:
            for key, label, default in (("s_churn", "Sigma churn", 0.0), ("s_tmin", "Sigma tmin", 0.0),
                                        ("s_tmax", "Sigma tmax", 0.0), ("s_noise", "Sigma noise", 1.0)):
                value = getattr(s, key)
                if value != default:
                    self.infotext[label] = value
            run.s_churn, run.s_tmin, run.s_noise = s.s_churn, s.s_tmin, s.s_noise
            run.s_tmax = s.s_tmax or float("inf")
        elif name in vocabulary.NOISE_PARAMS:
            if s.s_noise != 1.0:
                self.infotext["Sigma noise"] = s.s_noise
            run.s_noise = s.s_noise
        run.solver_type = self.sampler.options.get("solver_type", "midpoint")
        return run


# ---------------------------------------------------------------- running
@dataclass
class Latents:
    """Where the run starts: txt2img noise only, or img2img init latents with a strength."""

    noise: torch.Tensor  # [B,C,h,w], first draw of each image's stream
    init: torch.Tensor | None = None
    strength: float = 1.0
    fixed_steps: bool = False  # hires second pass: A1111 runs exactly ``steps`` on a longer schedule
    blend: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor] | None = None  # (denoised, x_t) -> blended


def run(plan: Plan, guide: Callable[[torch.Tensor, torch.Tensor], Guided], start: Latents, steps: int,
        next_noise: Callable[[], torch.Tensor], seeds: list[int], callback: Callable[[int, torch.Tensor], None],
        on_total: Callable[[int], None] = lambda n: None) -> torch.Tensor:
    """Sample; returns the final latents. ``next_noise`` is the images' noise streams (ImageRNG.next)."""
    if plan.settings.s_min_uncond:
        plan.infotext["NGMS"] = plan.settings.s_min_uncond
    if plan.settings.cfg_rescale_phi:
        plan.infotext["CFG Rescale phi"] = plan.settings.cfg_rescale_phi
    if start.init is not None and start.strength <= 0:
        on_total(0)  # nothing to denoise (A1111 would still take one step from its smallest sigma)
        return start.init
    if plan.sampler.kind == "timesteps":
        return _run_timesteps(plan, guide, start, steps, next_noise, callback, on_total)
    return _run_sigmas(plan, guide, start, steps, next_noise, seeds, callback, on_total)


def _rescale(guided: torch.Tensor, positive: torch.Tensor, phi: float) -> torch.Tensor:
    """CFG rescale (Lin et al. 2023): match the guided prediction's spread to the positive one's."""
    dims = list(range(1, guided.ndim))
    rescaled = guided * (positive.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return phi * rescaled + (1 - phi) * guided


def _run_sigmas(plan, guide, start: Latents, steps, next_noise, seeds, callback, on_total):
    spec, settings = plan.sampler, plan.settings
    lcm = spec.kind == "lcm"
    model_schedule = LCMSchedule(plan.alphas_cumprod) if lcm else plan.model_schedule
    prediction = plan.prediction
    phi = settings.cfg_rescale_phi

    def denoise(x, sigma):
        c_skip, c_out, c_in = scalings(sigma, "epsilon" if lcm else prediction)
        t = model_schedule.sigma_to_t(sigma.reshape(1))
        out = guide(x * c_in, t, sigma)
        if lcm:
            denoised = _lcm_scaled(model_schedule, sigma, x + out.guided * c_out, x)
        else:
            denoised = x * c_skip + out.guided * c_out
            if phi:
                positive = x * c_skip + out.positive * c_out
                denoised = _rescale(denoised, positive, phi)
        if start.blend is not None:
            denoised = start.blend(denoised, None)
        return denoised

    if start.init is None:
        sigmas = plan.sigmas(steps)
        if settings.sgm_noise_multiplier:
            plan.infotext["SGM noise multiplier"] = True
            x = start.noise * torch.sqrt(1.0 + sigmas[0] ** 2.0)
        else:
            x = start.noise * sigmas[0]
        schedule_sigmas, run_sigmas = sigmas, sigmas
        sigma_lo, sigma_hi, n = model_schedule.sigma_min.item(), model_schedule.sigma_max.item(), steps
    else:
        total, t_enc = plan.img2img_steps(steps, start.strength, start.fixed_steps)
        sigmas = plan.sigmas(total)
        run_sigmas = sigmas[total - t_enc - 1:]
        x = start.init + start.noise * run_sigmas[0]
        schedule_sigmas = sigmas
        sigma_lo, sigma_hi, n = run_sigmas[-2].item(), run_sigmas[0].item(), len(run_sigmas) - 1
    noise = lambda sigma, sigma_next: next_noise()  # noqa: E731
    if spec.options.get("brownian_noise"):
        positive = schedule_sigmas[schedule_sigmas > 0]
        noise = ksamplers.BrownianNoise(x, positive.min(), schedule_sigmas.max(), seeds)
    sampler_run = plan.sampler_run(noise, callback)
    sampler_run.sigma_min, sampler_run.sigma_max, sampler_run.n = sigma_lo, sigma_hi, n
    on_total(n if spec.name in ("DPM fast", "DPM adaptive") else len(run_sigmas) - 1)
    return getattr(ksamplers, spec.function)(denoise, x, run_sigmas, sampler_run)


def _lcm_scaled(schedule: LCMSchedule, sigma, output, x):
    """A1111's LCM output scaling: consistency-model c_skip/c_out on the quantised timestep (sigma_data 0.5)."""
    sigma_data = 0.5
    scaled_t = float(schedule.sigma_to_t(sigma.reshape(1))) * 10.0
    c_skip = sigma_data ** 2 / (scaled_t ** 2 + sigma_data ** 2)
    c_out = scaled_t / (scaled_t ** 2 + sigma_data ** 2) ** 0.5
    return c_out * output + c_skip * x


class _EpsModel:
    """The guided UNet as the timesteps samplers see it: eps for (x, t), with the unguided eps kept."""

    def __init__(self, plan: Plan, guide, start: Latents):
        self.plan, self.guide, self.start = plan, guide, start
        self.alphas = plan.alphas_cumprod
        self.last_uncond = None

    def __call__(self, x, t):
        t_tensor = torch.tensor([float(t)])
        a_t = self.alphas[int(t)]
        if self.start.blend is not None:
            x = self.start.blend(x, a_t)
        out = self.guide(x, t_tensor)
        guided, uncond = out.guided, out.uncond
        if self.plan.prediction == "v_prediction":
            guided = a_t.sqrt() * guided + (1 - a_t).sqrt() * x
            uncond = a_t.sqrt() * uncond + (1 - a_t).sqrt() * x
        self.last_uncond = uncond
        return guided


def _run_timesteps(plan: Plan, guide, start: Latents, steps, next_noise, callback, on_total):
    spec, settings = plan.sampler, plan.settings
    alphas = plan.alphas_cumprod
    train_steps = len(alphas)
    discard = settings.always_discard_next_to_last_sigma
    if discard:
        plan.infotext["Discard penultimate sigma"] = True
    sampler_run = ksamplers.SamplerRun(noise=lambda a, b: next_noise(), callback=callback, eta=plan.eta())
    model = _EpsModel(plan, guide, start)
    if start.init is None:
        grid = timesteps.timestep_grid(steps + (1 if discard else 0), train_steps)
        x, is_img2img = start.noise, False
    else:
        total, t_enc = plan.img2img_steps(steps, start.strength, start.fixed_steps)
        full = timesteps.timestep_grid(total + (1 if discard else 0), train_steps)
        grid = full[:t_enc]
        a = alphas[full[t_enc]]
        x, is_img2img = start.init * a.sqrt() + start.noise * (1 - a).sqrt(), True
    on_total(len(grid) if spec.function == "unipc" else max(len(grid) - 1, 0))
    if spec.function == "unipc":
        uni = timesteps.UniPCSettings(settings.uni_pc_variant, settings.uni_pc_skip_type, settings.uni_pc_order,
                                      settings.uni_pc_lower_order_final)
        return timesteps.unipc(model, x, grid, alphas, sampler_run, uni, is_img2img)
    if spec.function == "plms":
        return timesteps.plms(model, x, grid, alphas, sampler_run)
    return timesteps.ddim(model, x, grid, alphas, sampler_run, cfgpp=bool(spec.options.get("cfgpp")))


