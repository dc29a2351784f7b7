"""Sampler overhead per step against the UNet's time (goal: under 1%).

The overhead is everything the denoising loop does besides the UNet: schedule,
noise draws (ancestral streams, Brownian trees), denoiser scalings, sigma->t,
CFG with composable weights, progress callbacks. It is measured by running
``webui.engine.diffusion.denoise`` with an instant stand-in UNet, and divided
by the time of one real UNet call on the same [negative; positive] batch.

    python bench/bench_sampler_overhead.py                         # full-size SD1 UNet (random weights), 512x512
    python bench/bench_sampler_overhead.py --size 256 --device cuda
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from webui import vocabulary  # noqa: E402
from webui.engine.diffusion import Conditioning, SamplingJob, denoise  # noqa: E402
from webui.engine.sampling.denoiser import alphas_cumprod_from_config  # noqa: E402
from webui.engine.sampling.runner import Plan  # noqa: E402
from webui.schemas import NullControl  # noqa: E402

SAMPLERS = ("Euler a", "Euler", "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "LMS", "Heun", "UniPC", "DDIM", "LCM")


class InstantUNet(torch.nn.Module):
    """Returns a fixed output at once: what is left of a step's time is the sampler's."""

    def __init__(self, latent_shape, device, dtype):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1, device=device, dtype=dtype))
        self.out = torch.randn(latent_shape, device=device, dtype=dtype) * 0.1

    def forward(self, sample, timestep, encoder_hidden_states=None, added_cond_kwargs=None):
        return SimpleNamespace(sample=self.out[:1].expand(sample.shape[0], -1, -1, -1))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def make_job(sampler: str, steps: int, latent: int, context: torch.Tensor) -> SamplingJob:
    spec, schedule, _ = vocabulary.resolve(sampler, "Automatic")
    plan = Plan(spec, schedule, vocabulary.SamplerSettings(), alphas_cumprod_from_config({}))
    cond = Conditioning(context)
    return SamplingJob(seeds=[1], latent_size=(latent, latent), steps=steps, cfg_scale=7.0,
                       positive_at=lambda step: cond, negative_at=lambda step: cond, plan=plan)


def unet_call_seconds(unet, latent: int, context, device: str, repeats: int) -> float:
    x = torch.randn(2, 4, latent, latent, device=device, dtype=next(unet.parameters()).dtype)
    t = torch.tensor([500.0, 500.0], device=device)
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            sync(device)
            start = time.perf_counter()
            unet(x, t, encoder_hidden_states=torch.cat([context, context]))
            sync(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512, help="image size in pixels (latents are size/8)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--unet-repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from tests.random_checkpoint import build_random_components

    unet, _, _ = build_random_components("sd1", full_size=True, seed=0)
    dtype = torch.float16 if args.device == "cuda" else torch.float32
    unet = unet.to(args.device, dtype).eval()
    latent = args.size // 8
    context = torch.randn(1, 77, 768, device=args.device, dtype=dtype)
    unet_s = unet_call_seconds(unet, latent, context, args.device, args.unet_repeats)
    print(f"UNet call ({args.size}x{args.size}, cond+uncond, {args.device}): {unet_s * 1000:.1f} ms")
    instant = InstantUNet((1, 4, latent, latent), args.device, dtype)
    print(f"| sampler | model calls | sampler overhead per call (ms) | share of a UNet call |")
    print("|---|---|---|---|")
    for name in SAMPLERS:
        job = make_job(name, args.steps, latent, context)
        calls = [0]
        original = instant.forward

        def counting(*a, **k):
            calls[0] += 1
            return original(*a, **k)

        instant.forward = counting
        denoise(instant, job, NullControl())  # warm-up (imports, scipy, torchsde)
        calls[0] = 0
        sync(args.device)
        start = time.perf_counter()
        denoise(instant, make_job(name, args.steps, latent, context), NullControl())
        sync(args.device)
        per_call = (time.perf_counter() - start) / max(calls[0], 1)
        instant.forward = original
        print(f"| {name} | {calls[0]} | {per_call * 1000:.2f} | {per_call / unet_s * 100:.2f}% |")


if __name__ == "__main__":
    main()
