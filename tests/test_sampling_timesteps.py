"""A1111's "timesteps" samplers (DDIM, DDIM CFG++, PLMS, UniPC) and LCM against references of A1111's formulas.

k-diffusion has no reference for these. DDIM, CFG++ and PLMS are restated here
from A1111 1.10's sd_samplers_timesteps_impl in a few plain lines; UniPC is
checked against diffusers' UniPC (same algorithm) on a grid where A1111's
continuous times fall on whole training steps; LCM against k-diffusion's
discrete eps denoiser with A1111's LCM changes.
"""
from __future__ import annotations

import pytest
import torch

from kdiffusion_reference import (  # noqa: F401  (engine is a fixture)
    TOLERANCE, engine, request_for, ldm_alphas_cumprod, load_kdiffusion, mean_difference,
)
from webui.engine import vae_ops
from webui.engine.prompting import encode_plans, plan_prompts
from webui.schemas import GenerationRequest


class Reference:
    """The model, conditioning and first noise of a request, as the references need them."""

    def __init__(self, engine, request: GenerationRequest):
        self.model = engine.models.ensure(None)
        plans = plan_prompts(request, [request.seed])
        positive_at, negative_at = encode_plans(self.model, None, plans, request.steps, 1)
        self.context = torch.cat([positive_at(0).embeds, negative_at(0).embeds])
        factor = vae_ops.scale_factor(self.model.vae)
        shape = (4, request.height // factor, request.width // factor)
        self.generator = torch.Generator("cpu").manual_seed(request.seed)
        self.noise = torch.randn(shape, generator=self.generator)[None]
        self.scale = request.cfg_scale

    @torch.no_grad()
    def eps(self, x, t, scale=None):
        """(guided eps, unguided eps) at timestep t, CFG rows [cond; uncond]."""
        out = self.model.unet(torch.cat([x, x]), torch.tensor([float(t)] * 2), encoder_hidden_states=self.context)
        positive, negative = out.sample.float().chunk(2)
        return negative + (positive - negative) * (self.scale if scale is None else scale), negative

    def image(self, latents):
        return vae_ops.decode(self.model.vae, latents)[0][0]


def a1111_timesteps(steps):
    return [min(t + 1, 999) for t in range(0, 1000, 1000 // steps)]


def ddim_reference(ref: Reference, steps, cfgpp=False):
    ac = ldm_alphas_cumprod().double()
    ts = a1111_timesteps(steps)
    x = ref.noise
    for index in range(len(ts) - 1, 0, -1):
        guided, uncond = ref.eps(x, ts[index], ref.scale / 12.5 if cfgpp else None)
        a_t, a_prev = ac[ts[index]].item(), ac[ts[index - 1]].item()
        pred_x0 = (x - (1 - a_t) ** 0.5 * guided) / a_t ** 0.5
        x = a_prev ** 0.5 * pred_x0 + (1 - a_prev) ** 0.5 * (uncond if cfgpp else guided)
    return x


def plms_reference(ref: Reference, steps):
    ac = ldm_alphas_cumprod().double()
    ts = a1111_timesteps(steps)
    x, history = ref.noise, []

    def move(x, e, index):
        a_t, a_prev = ac[ts[index]].item(), ac[ts[index - 1]].item()
        return a_prev ** 0.5 * (x - (1 - a_t) ** 0.5 * e) / a_t ** 0.5 + (1 - a_prev) ** 0.5 * e

    for index in range(len(ts) - 1, 0, -1):
        e = ref.eps(x, ts[index])[0]
        if not history:
            e_next = ref.eps(move(x, e, index), ts[index - 1])[0]
            e_used = (e + e_next) / 2
        elif len(history) == 1:
            e_used = (3 * e - history[-1]) / 2
        elif len(history) == 2:
            e_used = (23 * e - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            e_used = (55 * e - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        x = move(x, e_used, index)
        history = (history + [e])[-3:]
    return x


def unipc_reference(ref: Reference, steps):
    """diffusers' UniPC (bh1, order 3, data prediction) on A1111's time-uniform grid (whole steps when 999 % steps == 0)."""
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        solver_order=3, solver_type="bh1", predict_x0=True, lower_order_final=True,
                                        timestep_spacing="linspace", final_sigmas_type="sigma_min")
    scheduler.set_timesteps(steps)
    assert [int(t) for t in scheduler.timesteps] == [999 - 999 // steps * i for i in range(steps)]
    x = ref.noise
    for t in scheduler.timesteps:
        x = scheduler.step(ref.eps(x, int(t))[0], t, x).prev_sample
    return x


@pytest.mark.parametrize("sampler", ["DDIM", "DDIM CFG++", "PLMS"])
def test_ddim_family_matches_a1111_formulas(engine, sampler):
    request = request_for(engine, sampler)
    ours = engine.generate(request).images[0]
    ref = Reference(engine, request)
    latents = plms_reference(ref, request.steps) if sampler == "PLMS" else \
        ddim_reference(ref, request.steps, cfgpp=sampler == "DDIM CFG++")
    assert mean_difference(ours, ref.image(latents)) < TOLERANCE


def test_unipc_matches_the_unipc_algorithm(engine):
    # A1111 runs UniPC over len(range(0, 1000, 1000 // steps)) points: 27 for 26 steps, and 999 / 27 is whole.
    request = request_for(engine, "UniPC", steps=26)
    ours = engine.generate(request).images[0]
    ref = Reference(engine, request)
    assert mean_difference(ours, ref.image(unipc_reference(ref, 27))) < TOLERANCE


def test_lcm_matches_a1111s_lcm_denoiser(engine):
    sampling, external = load_kdiffusion()
    request = request_for(engine, "LCM", steps=4)
    ours = engine.generate(request).images[0]
    ref = Reference(engine, request)
    ac = ldm_alphas_cumprod()
    skip = 1000 // 50
    picked = torch.stack([ac[999 - x * skip] for x in range(50)]).flip(0)  # A1111's 50 "original" LCM steps

    class LCMDenoiser(external.DiscreteEpsDDPMDenoiser):
        def sigma_to_t(self, sigma, quantize=None):
            return (sigma.log() - self.log_sigmas[:, None]).abs().argmin(dim=0).view(sigma.shape) * skip + skip - 1

        def t_to_sigma(self, t):
            return super().t_to_sigma(torch.clamp(((t - (skip - 1)) / skip).float(), 0, len(self.sigmas) - 1))

        def forward(self, x, sigma, **kwargs):
            c_out, c_in = self.get_scalings(sigma)
            t = self.sigma_to_t(sigma)
            denoised = x + ref.eps(x * c_in, float(t[0]))[0] * c_out
            scaled_t = t.float() * 10.0
            return scaled_t / (scaled_t ** 2 + 0.25) ** 0.5 * denoised + 0.25 / (scaled_t ** 2 + 0.25) * x

    denoiser = LCMDenoiser(None, picked, quantize=None)
    start, end = denoiser.sigma_to_t(denoiser.sigma_max), denoiser.sigma_to_t(denoiser.sigma_min)
    sigmas = sampling.append_zero(denoiser.t_to_sigma(torch.linspace(start, end, 4)))
    x = ref.noise * sigmas[0]
    for i in range(len(sigmas) - 1):
        x = denoiser(x, sigmas[i:i + 1])
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * torch.randn(x.shape[1:], generator=ref.generator)[None]
    assert mean_difference(ours, ref.image(x)) < TOLERANCE
