"""k-diffusion 0.1.1 with A1111 1.10's wrapping: the reference our sampler module must reproduce.

k-diffusion is installed for tests only (scripts/ensure_env.sh). Its package
``__init__`` imports training code, so ``sampling``, ``external`` and ``utils``
are loaded under a bare stand-in package. The wrapping follows A1111: the
CompVis(V)Denoiser over the model's alphas_cumprod, CFG rows [cond; uncond],
initial noise from a CPU generator seeded with the image's seed times
sigmas[0], ancestral noise from the same generator (A1111's randn_like
hijack), Brownian-tree noise seeded with the image's seed.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
import types

import shutil

import numpy as np
import pytest
import torch

from webui.catalog import Catalog
from webui.config import PROJECT_ROOT, Settings
from webui.engine.engine import Engine
from webui.models.manager import ModelManager


def load_kdiffusion():
    """(sampling, external) modules of the installed k-diffusion, without running its ``__init__``."""
    if "k_diffusion.sampling" not in sys.modules:
        found = importlib.util.find_spec("k_diffusion")
        if found is None:
            raise RuntimeError("k-diffusion is not installed: run scripts/ensure_env.sh (test-only dependency)")
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(found.submodule_search_locations)
        sys.modules["k_diffusion"] = package
        for name in ("utils", "sampling", "external"):
            setattr(package, name, importlib.import_module(f"k_diffusion.{name}"))
    return sys.modules["k_diffusion.sampling"], sys.modules["k_diffusion.external"]


class CompVisUNet(torch.nn.Module):
    """What k-diffusion's CompVis denoisers wrap: ``apply_model(x, t, cond)`` and ``alphas_cumprod``."""

    def __init__(self, unet, alphas_cumprod):
        super().__init__()
        self.unet = unet
        self.register_buffer("alphas_cumprod", alphas_cumprod)

    def apply_model(self, x, t, cond):
        return self.unet(x, t, encoder_hidden_states=cond).sample.float()


class _RandnFromGenerator:
    """A1111's TorchHijack: k-diffusion's ``torch.randn_like`` continues the image's generator."""

    def __init__(self, generator):
        self.generator = generator

    def randn_like(self, x):
        return torch.randn(x.shape, generator=self.generator, dtype=torch.float32)

    def __getattr__(self, item):
        return getattr(torch, item)


# ------------------------------------------------------------ A1111 1.10's schedule functions, restated
def a1111_sigmas(kind: str, n: int, denoiser, sampling, is_sdxl=False) -> torch.Tensor:
    """The sigmas A1111's sd_schedulers gives for a schedule type, from its published formulas."""
    smin, smax = denoiser.sigmas[0].item(), denoiser.sigmas[-1].item()
    if kind in ("automatic", "uniform"):
        return denoiser.get_sigmas(n)
    if kind == "karras":
        return sampling.get_sigmas_karras(n, smin, smax)
    if kind == "exponential":
        return sampling.get_sigmas_exponential(n, smin, smax)
    if kind == "polyexponential":
        return sampling.get_sigmas_polyexponential(n, smin, smax)
    if kind in ("sgm_uniform", "normal"):
        start, end = denoiser.sigma_to_t(torch.tensor(smax)), denoiser.sigma_to_t(torch.tensor(smin))
        ts = torch.linspace(start, end, n + 1)[:-1] if kind == "sgm_uniform" else torch.linspace(start, end, n)
        return torch.FloatTensor([denoiser.t_to_sigma(t).item() for t in ts] + [0.0])
    if kind == "kl_optimal":
        lo, hi = math.atan(smin), math.atan(smax)
        return torch.FloatTensor([math.tan(i / n * lo + (1 - i / n) * hi) for i in range(n + 1)])
    if kind == "simple":
        values = denoiser.sigmas
        return torch.FloatTensor([values[-(1 + int(i * len(values) / n))].item() for i in range(n)] + [0.0])
    if kind == "ddim":
        values = denoiser.sigmas
        picked = [values[i].item() for i in range(1, len(values), max(len(values) // n, 1))]
        return torch.FloatTensor(list(reversed(picked)) + [0.0])
    if kind == "align_your_steps":
        table = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029] if is_sdxl else \
            [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
        logs = np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(table)), np.log(table[::-1]))
        return torch.FloatTensor(list(np.exp(logs)[::-1]) + [0.0])
    if kind == "beta":
        from scipy.stats import beta

        return torch.FloatTensor([smin + beta.ppf(1 - q, 0.6, 0.6) * (smax - smin) for q in np.linspace(0, 1, n)]
                                 + [0.0])
    raise ValueError(kind)


# A1111 1.10: sampler -> (k-diffusion function, default schedule, discard penultimate sigma, extra kwargs)
A1111_KDIFFUSION = {
    "Euler a": ("sample_euler_ancestral", None, False, {}),
    "Euler": ("sample_euler", None, False, {}),
    "LMS": ("sample_lms", None, False, {}),
    "Heun": ("sample_heun", None, False, {}),
    "DPM2": ("sample_dpm_2", "karras", True, {}),
    "DPM2 a": ("sample_dpm_2_ancestral", "karras", True, {}),
    "DPM++ 2S a": ("sample_dpmpp_2s_ancestral", "karras", False, {}),
    "DPM++ 2M": ("sample_dpmpp_2m", "karras", False, {}),
    "DPM++ SDE": ("sample_dpmpp_sde", "karras", False, {"brownian": True}),
    "DPM++ 2M SDE": ("sample_dpmpp_2m_sde", "exponential", False, {"brownian": True}),
    "DPM++ 2M SDE Heun": ("sample_dpmpp_2m_sde", "exponential", False, {"brownian": True, "solver_type": "heun"}),
    "DPM++ 3M SDE": ("sample_dpmpp_3m_sde", "exponential", True, {"brownian": True}),
    "DPM fast": ("sample_dpm_fast", None, False, {}),
    "DPM adaptive": ("sample_dpm_adaptive", None, False, {}),
    # A1111's Restart below 20 steps has no restart segments: Heun over Karras sigmas.
    "Restart": ("sample_heun", "karras", False, {}),
}


@torch.no_grad()
def kdiffusion_latents(unet, alphas_cumprod, prediction, cond, uncond, cfg_scale, seed, shape, sampler, steps,
                       schedule="automatic", is_sdxl=False, rescale_phi=0.0, init=None, strength=0.75,
                       function=None) -> torch.Tensor:
    """Final latents [1,C,h,w] of one image as A1111 1.10 samples it with k-diffusion (img2img with ``init``)."""
    sampling, external = load_kdiffusion()
    inner = CompVisUNet(unet, alphas_cumprod)
    wrapper = external.CompVisVDenoiser if prediction == "v_prediction" else external.CompVisDenoiser
    denoiser = wrapper(inner, quantize=False)
    default_function, default_schedule, discard, extra = A1111_KDIFFUSION[sampler]
    function = function or default_function
    kind = default_schedule if schedule == "automatic" and default_schedule else schedule
    n = steps + 1 if discard else steps
    sigmas = a1111_sigmas(kind, n, denoiser, sampling, is_sdxl)
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    context = torch.cat([cond, uncond])

    def cfg(x, sigma):
        out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), cond=context)
        positive, negative = out.chunk(2)
        guided = negative + (positive - negative) * cfg_scale
        if rescale_phi:  # CFG rescale (Lin et al. 2023) on the denoised prediction
            dims = list(range(1, guided.ndim))
            rescaled = guided * positive.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
            guided = rescale_phi * rescaled + (1 - rescale_phi) * guided
        return guided

    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)[None]
    kwargs = {}
    if init is not None:  # A1111's sample_img2img: the last t_enc + 1 sigmas, noise added at the first of them
        t_enc = int(min(strength, 0.999) * steps)
        schedule = sigmas
        sigmas = sigmas[steps - t_enc - 1:]
        x = init + noise * sigmas[0]
    else:
        schedule = sigmas
        x = noise * sigmas[0]
    if function in ("sample_dpm_fast", "sample_dpm_adaptive") and init is not None:
        kwargs.update(sigma_min=sigmas[-2].item(), sigma_max=sigmas[0].item())
        if function == "sample_dpm_fast":
            kwargs["n"] = len(sigmas) - 1
    elif function in ("sample_dpm_fast", "sample_dpm_adaptive"):
        kwargs.update(sigma_min=denoiser.sigmas[0].item(), sigma_max=denoiser.sigmas[-1].item())
        if function == "sample_dpm_fast":
            kwargs["n"] = steps
    else:
        kwargs["sigmas"] = sigmas
    if extra.get("brownian"):
        kwargs["noise_sampler"] = sampling.BrownianTreeNoiseSampler(x, schedule[schedule > 0].min(),
                                                                    schedule.max(), seed=[seed])
    if hasattr(sampling, function) and "eta" in inspect.signature(getattr(sampling, function)).parameters:
        kwargs["eta"] = 1.0  # A1111 passes eta_ancestral (1.0) to every sampler that takes eta
    if "solver_type" in extra:
        kwargs["solver_type"] = extra["solver_type"]
    sampling.torch = _RandnFromGenerator(generator)
    try:
        if function == "restart":  # not in k-diffusion: A1111's own sampler, restated in the test module
            from test_sampling_kdiffusion import restart_reference

            return restart_reference(cfg, x, sigmas, sampling, generator)
        return getattr(sampling, function)(cfg, x, disable=True, **kwargs)
    finally:
        sampling.torch = torch


# ------------------------------------------------------------ shared by the sampling tests
DEMO = PROJECT_ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
# The issue asks for under 1 level of 255; exact arithmetic gives about 0.0001, and a sampler that is only
# slightly off (another UniPC variant, a 1% error in one term) lands between 0.1 and 1, so hold it tighter.
TOLERANCE = 0.1


def ldm_alphas_cumprod() -> torch.Tensor:
    """alphas_cumprod as the LDM code registers it: betas linear in sqrt, float64 cumprod, stored as float32."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    return torch.tensor(np.cumprod(1.0 - betas, axis=0), dtype=torch.float32)


def make_engine(root, checkpoint) -> Engine:
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(checkpoint, root / "models" / "Stable-diffusion")
    settings = Settings(models_dir=root / "models", outdir=root / "outputs", device="cpu", precision="fp32",
                        save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog))


@pytest.fixture(scope="module", params=["tiny-sd1", "demo"])
def engine(request, tmp_path_factory, tiny_checkpoint_dir):
    """The real engine on a tiny random SD1 checkpoint and on the shipped demo model."""
    checkpoint = DEMO if request.param == "demo" else tiny_checkpoint_dir / "tiny-sd1.safetensors"
    engine = make_engine(tmp_path_factory.mktemp(request.param), checkpoint)
    engine.test_size = 64 if request.param == "demo" else 32  # the demo model draws at 64x64 only
    return engine


def request_for(engine, sampler: str, schedule: str = "Automatic", steps: int = 8, seed: int = 1234):
    """A small txt2img request of the size the engine's model draws at."""
    from webui.schemas import GenerationRequest

    size = getattr(engine, "test_size", 32)
    return GenerationRequest(prompt="a red circle on a blue background", negative_prompt="green", seed=seed,
                             steps=steps, cfg_scale=5.0, width=size, height=size, sampler_name=sampler,
                             scheduler=schedule, save_images=False)


def mean_difference(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


def reference_image(engine, request, alphas_cumprod=None, prediction="epsilon", rescale_phi=0.0, init=None,
                    function=None):
    """The image A1111 1.10 would make for a txt2img request with k-diffusion (same text encoder and VAE)."""
    from webui.engine import vae_ops
    from webui.engine.prompting import encode_plans, plan_prompts

    model = engine.models.ensure(None)
    plans = plan_prompts(request, [request.seed])
    positive_at, negative_at = encode_plans(model, None, plans, request.steps, 1)
    factor = vae_ops.scale_factor(model.vae)
    shape = (4, request.height // factor, request.width // factor)
    latents = kdiffusion_latents(model.unet, ldm_alphas_cumprod() if alphas_cumprod is None else alphas_cumprod,
                                 prediction, positive_at(0).embeds, negative_at(0).embeds, request.cfg_scale,
                                 request.seed, shape, request.sampler_name, request.steps,
                                 schedule=request.scheduler.lower().replace(" ", "_"), rescale_phi=rescale_phi,
                                 init=init, strength=request.denoising_strength, function=function)
    images, _ = vae_ops.decode(model.vae, latents)
    return images[0]
