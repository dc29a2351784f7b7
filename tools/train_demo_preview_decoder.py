"""Train the demo model's live-preview decoder (its "TAESD"): demo latents -> a full-size 64x64 picture.

Phases, each timed:

1. ``data``   - demo-world pictures (``webui.demo.shapes``) through the demo checkpoint's VAE, loaded
                through the app's own loader: their latents, plus copies with Gaussian noise of a random
                strength (a preview shows the sampler's current estimate, which is not always clean), and
                as targets what the VAE itself decodes from each latent (the "Full" preview).
2. ``train``  - diffusers' ``DecoderTiny`` (the TAESD decoder's architecture), 32 channels, two
                upsamplings (the demo VAE's latents are 1/4 of the picture), L1 loss, Adam.
3. ``eval``   - on held-out pictures (another seed): the mean difference from the VAE's own decode, for
                this decoder and for the Approx cheap preview (one pixel per latent pixel, enlarged).
4. ``export`` - ``models/VAE-approx/demo-shapes.safetensors`` (named after the checkpoint it serves): the
                decoder's keys in fp16, the recipe and the evaluation in the metadata.

The defaults are the shipped file's recipe::

    python tools/train_demo_preview_decoder.py
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webui.demo import shapes  # noqa: E402

PHASES = ("data", "train", "eval", "export")
DECODER = {"in_channels": 4, "out_channels": 3, "num_blocks": (2, 2, 1), "block_out_channels": (32, 32, 32),
           "upsampling_scaling_factor": 2, "act_fn": "relu", "upsample_fn": "nearest"}


def load_vae(path: str):
    """The demo checkpoint's VAE in float32, through the app's loader."""
    from webui.models.loader import load_checkpoint_file

    return load_checkpoint_file(Path(path), "cpu", torch.float32).vae


def pictures(seed: int, count: int) -> torch.Tensor:
    """``count`` demo pictures as a float tensor Nx3x64x64 in [-1, 1]."""
    images, _ = shapes.batch(seed, count)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


@torch.no_grad()
def latents_and_targets(vae, images: torch.Tensor, noisy_share: float, max_noise: float, seed: int):
    """Scaled latents of the pictures (a share with added noise) and the VAE's decode of each latent."""
    generator = torch.Generator().manual_seed(seed)
    latents, targets = [], []
    for part in images.split(256):
        lat = vae.encode(part).latent_dist.mean * vae.config.scaling_factor
        noisy = torch.rand(len(lat), generator=generator) < noisy_share
        strength = torch.rand(len(lat), 1, 1, 1, generator=generator) * max_noise
        lat = torch.where(noisy.view(-1, 1, 1, 1), lat + strength * torch.randn(lat.shape, generator=generator), lat)
        latents.append(lat)
        targets.append(vae.decode(lat / vae.config.scaling_factor).sample.clamp(-1, 1))
    return torch.cat(latents), torch.cat(targets)


def train(latents, targets, steps: int, batch: int, lr: float, seed: int, log_every: int):
    from diffusers.models.autoencoders.vae import DecoderTiny

    torch.manual_seed(seed)
    decoder = DecoderTiny(**DECODER)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    generator = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        pick = torch.randint(0, len(latents), (batch,), generator=generator)
        loss = F.l1_loss(decoder(latents[pick]), targets[pick])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % log_every == 0 or step == steps:
            print(f"step {step}/{steps}  L1 {loss.item():.4f}", flush=True)
    return decoder.eval()


@torch.no_grad()
def evaluate(decoder, vae, seed: int, count: int) -> dict:
    """Mean absolute difference (0-255 levels) from the VAE's decode: this decoder and Approx cheap."""
    from webui.engine import latent_preview, vae_ops

    latents, full = latents_and_targets(vae, pictures(seed, count), noisy_share=0.0, max_noise=0.0, seed=seed)
    learned = decoder(latents).clamp(-1, 1)
    factors = latent_preview.preview_factors(vae, "sd", vae_ops.encode)
    cheap = latent_preview.apply_factors(latents, factors).permute(0, 3, 1, 2).clamp(-1, 1)
    cheap = F.interpolate(cheap, size=full.shape[-2:], mode="nearest")
    to_levels = 127.5
    return {"held_out_pictures": count, "seed": seed,
            "learned_mean_levels": round(float((learned - full).abs().mean() * to_levels), 2),
            "cheap_mean_levels": round(float((cheap - full).abs().mean() * to_levels), 2)}


def export(decoder, path: Path, recipe: dict, evaluation: dict) -> None:
    from safetensors.torch import save_file

    state = {f"layers.{k.split('.', 1)[1]}": v.half().contiguous() for k, v in decoder.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"kind": "preview decoder (diffusers DecoderTiny)", "config": json.dumps(DECODER),
                "recipe": json.dumps(recipe), "evaluation": json.dumps(evaluation)}
    save_file(state, str(path), metadata=metadata)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="models/Stable-diffusion/demo-shapes.safetensors")
    p.add_argument("--output", default="models/VAE-approx/demo-shapes.safetensors")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset-size", type=int, default=6000)
    p.add_argument("--noisy-share", type=float, default=0.5)
    p.add_argument("--max-noise", type=float, default=0.6)
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--eval-count", type=int, default=256)
    p.add_argument("--log-every", type=int, default=250)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    times = {}

    def timed(name, fn, *a, **k):
        start = time.perf_counter()
        out = fn(*a, **k)
        times[name] = round(time.perf_counter() - start, 1)
        print(f"[{name}] {times[name]} s", flush=True)
        return out

    vae = load_vae(args.checkpoint).requires_grad_(False)
    latents, targets = timed("data", lambda: latents_and_targets(
        vae, pictures(args.seed, args.dataset_size), args.noisy_share, args.max_noise, args.seed))
    decoder = timed("train", train, latents, targets, args.steps, args.batch, args.lr, args.seed, args.log_every)
    evaluation = timed("eval", evaluate, decoder, vae, args.seed + 1_000_003, args.eval_count)
    print(json.dumps(evaluation))
    recipe = {k: v for k, v in vars(args).items() if k not in ("output", "checkpoint")}
    recipe["seconds"] = times
    timed("export", export, decoder, Path(args.output), recipe, evaluation)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
