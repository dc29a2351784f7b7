"""Train the shipped demo model (and its demo LoRA) from scratch on the shapes world.

Phases, each timed:

1. ``vae``   - AutoencoderKL 16/32/64 (64x64 RGB <-> 4x16x16 latents): reconstruction + small KL;
               then the latent scaling factor is measured (1 / std, as SD's 0.18215 was).
2. ``unet``  - UNet2DConditionModel 32/64/64 and a 2-layer, 64-wide CLIPTextModel with the
               real 49,408-token vocabulary, trained together on the frozen VAE's latents
               (epsilon prediction, SD's DDPM schedule, 10% empty captions for CFG).
3. ``lora``  - a kohya-format LoRA on top of the frozen model that draws a dark outline
               around every shape (``webui.demo.shapes`` ``outlined=True``).
4. ``eval``  - generates with plain diffusers (DDIM at CFG 3, Euler at CFG 6) for fixed
               captions and scores the images with ``webui.demo.classify``.
5. ``export`` - the single-file checkpoint (A1111/LDM keys, fp16, unused token rows zeroed,
               architecture in the ``webui.architecture`` metadata) and the LoRA file.

Everything is seeded: the same flags on the same device give the same files
(a GPU and a CPU agree on the first steps and drift apart by rounding later).
The shipped files were made with the defaults::

    python tools/train_demo_model.py --device cuda --phases vae,unet,eval,export
    python tools/train_demo_model.py --from-checkpoint models/Stable-diffusion/demo-shapes.safetensors \
        --phases lora,eval,export

``--device cpu --threads 1`` (the default) runs the same recipe on a CPU; see
bench/TRAINING.md for the time each phase takes there.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webui.demo import classify, shapes  # noqa: E402

PHASES = ("vae", "unet", "lora", "eval", "export")
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon", "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1,
    "timestep_spacing": "leading",
}


# ---------------------------------------------------------------- architecture
def vae_config() -> dict:
    """AutoencoderKL: 3 blocks (two downsamplings), 64x64x3 <-> 16x16x4."""
    return {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [16, 32, 64], "layers_per_block": 1, "norm_num_groups": 8,
        "act_fn": "silu", "sample_size": 64, "scaling_factor": 1.0,
    }


def unet_config() -> dict:
    """UNet2DConditionModel 32/64/64, cross-attention at the two lower resolutions and the middle."""
    return {
        "sample_size": 16, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
        "block_out_channels": [32, 64, 64],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": 64, "attention_head_dim": 4, "norm_num_groups": 16,
    }


def text_encoder_config() -> dict:
    """CLIPTextModel of width 64 and 2 layers over the standard CLIP vocabulary."""
    return {
        "vocab_size": 49408, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5, "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407,
        "projection_dim": 64,
    }


def build_models(seed: int):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config())
    unet = UNet2DConditionModel(**unet_config())
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_encoder_config()))
    return vae, unet, text_encoder


# ---------------------------------------------------------------- data
def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NxHxWx3 -> float Nx3xHxW in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def to_images(tensor: torch.Tensor) -> np.ndarray:
    return ((tensor.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def eval_captions(count: int, seed: int) -> list[shapes.Scene]:
    """Fixed evaluation scenes: every (shape, colour) pair in turn, other choices seeded."""
    rng = np.random.default_rng(seed)
    names = list(shapes.COLOURS)
    scenes = []
    for i in range(count):
        shape = shapes.SHAPES[i % len(shapes.SHAPES)]
        colour = names[(i // len(shapes.SHAPES)) % len(names)]
        background = str(rng.choice([n for n in names if n != colour]))
        scenes.append(shapes.Scene(shape, colour, background, 32, 32, 12))
    return scenes


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


class Timer:
    """Wall-clock seconds per phase, printed as they finish."""

    def __init__(self):
        self.times: dict[str, float] = {}

    def run(self, name, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.times[name] = time.perf_counter() - start
        print(f"[time] phase {name}: {self.times[name]:.1f}s", flush=True)
        return result


# ---------------------------------------------------------------- phase 1: VAE
def train_vae(vae, pool: torch.Tensor, args, device) -> float:
    vae.to(device).train()
    optimiser = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 1)
    start = time.perf_counter()
    for step in range(args.vae_steps):
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, args.vae_steps, args.vae_lr, 100)
        index = torch.randint(0, len(pool), (args.vae_batch,), generator=gen)
        x = pool[index].to(device)
        posterior = vae.encode(x).latent_dist
        noise = torch.randn(posterior.mean.shape, generator=gen).to(device)
        z = posterior.mean + posterior.std * noise
        recon = vae.decode(z).sample
        rec = F.mse_loss(recon, x) + 0.5 * F.l1_loss(recon, x)
        kl = posterior.kl().mean() / z[0].numel()
        loss = rec + args.vae_kl * kl
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % args.log_every == 0 or step == args.vae_steps - 1:
            print(f"vae step {step:5d} rec {rec.item():.5f} kl {kl.item():.3f} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(pool[i:i + 256].to(device)).latent_dist.mean
                             for i in range(0, min(len(pool), 4096), 256)])
    scale = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=round(scale, 5))
    print(f"vae latent std {latents.std().item():.4f} -> scaling_factor {vae.config.scaling_factor}", flush=True)
    return scale


@torch.no_grad()
def score_vae(vae, args, device) -> float:
    images, samples = shapes.batch(args.seed + 99, 200)
    recon = torch.cat([vae.decode(vae.encode(to_tensor(images[i:i + 50]).to(device)).latent_dist.mean).sample
                       for i in range(0, 200, 50)])
    right = sum(classify.classify(im).labels == s.labels for im, s in zip(to_images(recon), samples))
    print(f"vae reconstructions classified right: {right}/200", flush=True)
    return right / 200


# ---------------------------------------------------------------- phase 2: UNet + text encoder
@torch.no_grad()
def encode_pool(vae, pool: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
    means, stds = [], []
    for i in range(0, len(pool), 256):
        dist = vae.encode(pool[i:i + 256].to(device)).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def diffusion_loss(unet, text_encoder, scheduler, latents, ids, gen, device, snr_gamma: float):
    noise = torch.randn(latents.shape, generator=gen).to(device)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=gen).to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    context = text_encoder(ids)[0]
    prediction = unet(noisy, timesteps, encoder_hidden_states=context).sample
    return snr_weighted_mse(prediction, noise, scheduler, timesteps, snr_gamma)


def snr_weighted_mse(prediction, noise, scheduler, timesteps, snr_gamma: float) -> torch.Tensor:
    """Epsilon MSE per item, weighted by min(SNR, gamma) / SNR (min-SNR; gamma 0 = plain MSE)."""
    per_item = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma > 0:
        alphas = scheduler.alphas_cumprod.to(prediction.device)[timesteps]
        snr = alphas / (1 - alphas)
        per_item = per_item * torch.clamp(snr, max=snr_gamma) / snr
    return per_item.mean()


def train_unet(unet, text_encoder, vae, pool, pool_ids, empty_ids, args, device):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    means, stds = encode_pool(vae, pool, device)
    scale = vae.config.scaling_factor
    unet.to(device).train()
    text_encoder.to(device).train()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimiser = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed + 2)
    pool_ids = pool_ids.to(device)
    empty_ids = empty_ids.to(device)
    start = time.perf_counter()
    for step in range(args.unet_steps):
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, args.unet_steps, args.unet_lr, 200)
        index = torch.randint(0, len(pool), (args.unet_batch,), generator=gen).to(device)
        eps = torch.randn(means[index].shape, generator=gen).to(device)
        latents = (means[index] + stds[index] * eps) * scale
        ids = pool_ids[index]
        drop = (torch.rand(len(ids), generator=gen) < args.uncond_prob).to(device)
        ids = torch.where(drop[:, None], empty_ids[None, :], ids)
        loss = diffusion_loss(unet, text_encoder, scheduler, latents, ids, gen, device, args.snr_gamma)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        if step % args.log_every == 0 or step == args.unet_steps - 1:
            print(f"unet step {step:6d} loss {loss.item():.4f} ({time.perf_counter() - start:.0f}s)", flush=True)
    unet.eval()
    text_encoder.eval()


# ---------------------------------------------------------------- phase 3: LoRA
class LoRA(torch.nn.Module):
    """``base(x) + multiplier * alpha/rank * up(down(x))`` around a Linear or Conv2d (kohya's form)."""

    def __init__(self, base: torch.nn.Module, rank: int, alpha: float):
        super().__init__()
        self.base, self.rank, self.alpha, self.multiplier = base, rank, alpha, 1.0
        if isinstance(base, torch.nn.Conv2d):
            self.down = torch.nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
            self.up = torch.nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            self.down = torch.nn.Linear(base.in_features, rank, bias=False)
            self.up = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.up.weight)
        self.to(base.weight.device)

    def forward(self, x):
        return self.base(x) + self.up(self.down(x)) * (self.multiplier * self.alpha / self.rank)


def lora_targets(unet, text_encoder, with_conv: bool, with_text: bool) -> dict[str, torch.nn.Module]:
    """kohya names -> modules: every Linear/1x1 conv in the UNet's transformers (and resnet convs)."""
    targets = {}
    for name, module in unet.named_modules():
        inside_attention = ".attentions." in name and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d))
        resnet_conv = with_conv and ".resnets." in name and isinstance(module, torch.nn.Conv2d) \
            and name.endswith(("conv1", "conv2"))
        if inside_attention or resnet_conv:
            targets["lora_unet_" + name.replace(".", "_")] = module
    if with_text:
        for name, module in text_encoder.named_modules():
            if isinstance(module, torch.nn.Linear) and ".layers." in name:
                full = name if name.startswith("text_model.") else "text_model." + name  # kohya's names
                targets["lora_te_" + full.replace(".", "_")] = module
    return targets


def inject_lora(root: torch.nn.Module, targets: dict[str, torch.nn.Module], rank: int, alpha: float):
    wrappers = {}
    lookup = {id(m): k for k, m in targets.items()}
    for parent in list(root.modules()):
        for child_name, child in list(parent.named_children()):
            key = lookup.get(id(child))
            if key is not None:
                wrapper = LoRA(child, rank, alpha)
                setattr(parent, child_name, wrapper)
                wrappers[key] = wrapper
    return wrappers


def remove_lora(root: torch.nn.Module):
    for parent in list(root.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, LoRA):
                setattr(parent, child_name, child.base)


def set_lora_multiplier(wrappers: dict, value: float):
    for wrapper in wrappers.values():
        wrapper.multiplier = value


def train_lora(unet, text_encoder, vae, args, device, tokenizer, empty_ids):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(SCHEDULER_CONFIG)
    for p in [*unet.parameters(), *text_encoder.parameters(), *vae.parameters()]:
        p.requires_grad_(False)
    targets = lora_targets(unet, text_encoder, args.lora_conv, args.lora_text)
    wrappers = {}
    wrappers.update(inject_lora(unet, {k: v for k, v in targets.items() if k.startswith("lora_unet_")},
                                args.lora_rank, args.lora_alpha))
    wrappers.update(inject_lora(text_encoder, {k: v for k, v in targets.items() if k.startswith("lora_te_")},
                                args.lora_rank, args.lora_alpha))
    params = [p for w in wrappers.values() for p in (*w.down.parameters(), *w.up.parameters())]
    print(f"lora: {len(wrappers)} modules, {sum(p.numel() for p in params)} parameters", flush=True)
    images, samples = shapes.batch(args.seed + 3, args.lora_dataset, outlined=True)
    pool = to_tensor(images)
    means, stds = encode_pool(vae, pool, device)
    ids = token_ids(tokenizer, [s.caption for s in samples]).to(device)
    optimiser = torch.optim.AdamW(params, lr=args.lora_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 4)
    unet.train()
    text_encoder.train()
    start = time.perf_counter()
    for step in range(args.lora_steps):
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, args.lora_steps, args.lora_lr, 50)
        index = torch.randint(0, len(pool), (args.lora_batch,), generator=gen).to(device)
        eps = torch.randn(means[index].shape, generator=gen).to(device)
        latents = (means[index] + stds[index] * eps) * vae.config.scaling_factor
        batch_ids = ids[index]
        drop = (torch.rand(len(batch_ids), generator=gen) < args.uncond_prob).to(device)
        batch_ids = torch.where(drop[:, None], empty_ids.to(device)[None, :], batch_ids)
        loss = diffusion_loss(unet, text_encoder, scheduler, latents, batch_ids, gen, device, args.snr_gamma)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % args.log_every == 0 or step == args.lora_steps - 1:
            print(f"lora step {step:5d} loss {loss.item():.4f} ({time.perf_counter() - start:.0f}s)", flush=True)
    unet.eval()
    text_encoder.eval()
    return wrappers


def lora_state_dict(wrappers: dict) -> dict[str, torch.Tensor]:
    state = {}
    for key, wrapper in wrappers.items():
        down, up = wrapper.down.weight.detach(), wrapper.up.weight.detach()
        if down.ndim == 2 and isinstance(wrapper.base, torch.nn.Conv2d):  # never: 1x1 convs keep 4-D weights
            down, up = down[:, :, None, None], up[:, :, None, None]
        state[f"{key}.lora_down.weight"] = down.half().cpu().contiguous()
        state[f"{key}.lora_up.weight"] = up.half().cpu().contiguous()
        state[f"{key}.alpha"] = torch.tensor(float(wrapper.alpha)).half()
    return state


# ---------------------------------------------------------------- phase 4: evaluation
def make_pipeline(unet, vae, text_encoder, tokenizer, sampler: str):
    from diffusers import DDIMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline

    scheduler_cls = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}[sampler]
    scheduler = scheduler_cls.from_config(SCHEDULER_CONFIG)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


@torch.no_grad()
def generate(pipe, captions: list[str], cfg: float, steps: int, seed: int, device) -> np.ndarray:
    generators = [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(len(captions))]
    result = pipe(captions, height=64, width=64, num_inference_steps=steps, guidance_scale=cfg,
                  generator=generators, output_type="np")
    return (result.images * 255).round().astype(np.uint8)


def evaluate(unet, vae, text_encoder, tokenizer, args, device, out_dir: Path) -> dict:
    scenes = eval_captions(args.eval_count, args.seed + 5)
    captions = [s.caption for s in scenes]
    report = {}
    for sampler, cfg in (("ddim", 3.0), ("euler", 6.0)):
        pipe = make_pipeline(unet, vae, text_encoder, tokenizer, sampler)
        pipe.set_progress_bar_config(disable=True)
        start = time.perf_counter()
        images = generate(pipe, captions, cfg, args.eval_steps, args.seed + 1000, device)
        elapsed = time.perf_counter() - start
        results = [classify.classify(im) for im in images]
        counts = {k: sum(r.labels[k] == s.labels[k] for r, s in zip(results, scenes))
                  for k in ("shape", "colour", "background")}
        all_right = sum(r.labels == s.labels for r, s in zip(results, scenes))
        key = f"{sampler}_cfg{cfg:g}"
        report[key] = {"all": all_right / len(scenes), **{k: v / len(scenes) for k, v in counts.items()},
                       "n": len(scenes), "seconds": elapsed}
        print(f"eval {key}: all right {all_right}/{len(scenes)} shape {counts['shape']} colour {counts['colour']} "
              f"background {counts['background']} ({elapsed:.1f}s)", flush=True)
        for r, s in zip(results, scenes):
            if r.labels != s.labels:
                print(f"   wrong: {s.caption!r} -> {r.labels} fill {r.fill:.2f} drop {r.drop:.2f}", flush=True)
        save_grid(images, out_dir / f"eval_{key}.png")
    return report


def dark_ring_share(images: np.ndarray, scenes) -> float:
    """Mean share of black pixels in images whose caption names no black."""
    black = list(shapes.COLOURS).index("black")
    shares = [float((classify.nearest_colour_names(im.astype(float)) == black).mean())
              for im, s in zip(images, scenes) if "black" not in (s.colour, s.background)]
    return float(np.mean(shares))


def evaluate_lora(unet, vae, text_encoder, tokenizer, wrappers, args, device, out_dir: Path) -> dict:
    scenes = eval_captions(args.eval_count, args.seed + 6)
    captions = [s.caption for s in scenes]
    pipe = make_pipeline(unet, vae, text_encoder, tokenizer, "ddim")
    pipe.set_progress_bar_config(disable=True)
    report = {}
    for weight in (0.0, 0.25, 0.5, 0.75, 1.0):
        set_lora_multiplier(wrappers, weight)
        images = generate(pipe, captions, 3.0, args.eval_steps, args.seed + 2000, device)
        right = sum(classify.classify(im).labels == s.labels for im, s in zip(images, scenes))
        report[f"weight_{weight:g}"] = {"black_share": dark_ring_share(images, scenes), "labels_right": right / len(scenes)}
        print(f"lora weight {weight:g}: black share {report[f'weight_{weight:g}']['black_share']:.4f} "
              f"labels right {right}/{len(scenes)}", flush=True)
        save_grid(images, out_dir / f"lora_w{weight:g}.png")
    set_lora_multiplier(wrappers, 1.0)
    return report


def save_grid(images: np.ndarray, path: Path, columns: int = 8):
    from PIL import Image

    rows = math.ceil(len(images) / columns)
    grid = np.zeros((rows * 64, columns * 64, 3), np.uint8)
    for i, image in enumerate(images):
        grid[(i // columns) * 64:(i // columns + 1) * 64, (i % columns) * 64:(i % columns + 1) * 64] = image
    Image.fromarray(grid).save(path)


# ---------------------------------------------------------------- phase 5: export
def used_token_ids(tokenizer) -> list[int]:
    """Every token id a training caption (or the empty caption) can produce."""
    words = [*shapes.COLOURS, *shapes.SHAPES, "a", "an", "on", "background"]
    ids = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    for word in words:
        ids.update(tokenizer(word, add_special_tokens=False).input_ids)
    return sorted(i for i in ids if i is not None)


def export_checkpoint(path: Path, unet, vae, text_encoder, tokenizer, args, report: dict, timings: dict) -> Path:
    from webui.models.ldm_export import save_ldm_checkpoint

    keep = torch.tensor(used_token_ids(tokenizer))
    table = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        mask = torch.ones(table.shape[0], dtype=torch.bool)
        mask[keep] = False
        table[mask.to(table.device)] = 0
    scheduler = {k: v for k, v in SCHEDULER_CONFIG.items()}
    architecture = {
        "unet": dict(unet.config), "vae": dict(vae.config), "text_encoders": [text_encoder.config.to_dict()],
        "text_encoder": text_encoder.config.to_dict(), "scheduler": scheduler, "prediction_type": "epsilon",
    }
    metadata = {
        "webui.architecture": json.dumps(architecture, default=list),
        "modelspec.title": "demo-shapes",
        "modelspec.description": "Tiny demo Stable Diffusion model trained by this project on generated images of "
                                 "coloured shapes (64x64). A demo of the pipeline, not an art model. Prompt like "
                                 "'a red circle on a blue background'.",
        "modelspec.architecture": "stable-diffusion-v1",
        "modelspec.implementation": "diffusers",
        "modelspec.resolution": "64x64",
        "modelspec.prediction_type": "epsilon",
        "modelspec.license": "same as this project",
        "modelspec.trigger_phrase": "a <colour> <circle|square|triangle> on a <colour> background",
        "webui.demo.vocabulary": json.dumps({"colours": list(shapes.COLOURS), "shapes": list(shapes.SHAPES)}),
        "webui.demo.training": json.dumps({"seed": args.seed, "vae_steps": args.vae_steps,
                                           "unet_steps": args.unet_steps, "unet_batch": args.unet_batch,
                                           "vae_batch": args.vae_batch, "lora_steps": args.lora_steps,
                                           "device": str(args.device), "threads": args.threads,
                                           "seconds": {k: round(v, 1) for k, v in timings.items()}}),
        "webui.demo.eval": json.dumps(report),
    }
    return save_ldm_checkpoint(path, "sd1", unet, vae, [text_encoder], metadata=metadata, dtype=torch.float16)


def export_lora(path: Path, wrappers: dict, args, report: dict, seconds: float) -> Path:
    from safetensors.torch import save_file

    state = lora_state_dict(wrappers)
    metadata = {
        "ss_network_module": "networks.lora", "ss_network_dim": str(args.lora_rank),
        "ss_network_alpha": str(float(args.lora_alpha)), "ss_output_name": path.stem,
        "ss_base_model_version": "sd_v1", "ss_sd_model_name": "demo-shapes.safetensors",
        "ss_resolution": "(64, 64)", "ss_learning_rate": str(args.lora_lr),
        "ss_unet_lr": str(args.lora_lr), "ss_text_encoder_lr": str(args.lora_lr if args.lora_text else 0),
        "ss_max_train_steps": str(args.lora_steps), "ss_train_batch_size": str(args.lora_batch),
        "ss_num_train_images": str(args.lora_dataset), "ss_seed": str(args.seed),
        "ss_training_time_seconds": f"{seconds:.1f}", "ss_mixed_precision": "no",
        "ss_network_args": json.dumps({"conv_dim": args.lora_rank, "conv_alpha": args.lora_alpha}
                                      if args.lora_conv else {}),
        "ss_tag_frequency": json.dumps({"outlined shapes": {"outlined": args.lora_dataset}}),
        "ss_training_comment": "Demo LoRA for demo-shapes: draws a dark outline around the shape. "
                               "No trigger word; strength scales the outline.",
        "modelspec.title": "demo-outline", "modelspec.architecture": "stable-diffusion-v1/lora",
        "webui.demo.eval": json.dumps(report),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    return path


def load_single_file(path: str):
    """(vae, unet, text_encoder) in float32 from a single-file checkpoint, through the app's own loader."""
    from webui.models.loader import load_checkpoint_file

    components = load_checkpoint_file(Path(path), "cpu", torch.float32)
    return components.vae, components.unet, components.text_encoders[0]


# ---------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; more can be slower on a busy machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)}")
    p.add_argument("--work-dir", default="outputs/demo-train", help="diffusers-format components, grids, report")
    p.add_argument("--checkpoint", default="models/Stable-diffusion/demo-shapes.safetensors")
    p.add_argument("--lora-file", default="models/Lora/demo-outline.safetensors")
    p.add_argument("--from-checkpoint", default=None,
                   help="start from a single-file demo checkpoint (for the lora/eval phases) instead of --work-dir")
    p.add_argument("--dataset-size", type=int, default=20000)
    p.add_argument("--vae-steps", type=int, default=1500)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--vae-kl", type=float, default=1e-3, help="weight of the per-element KL term")
    p.add_argument("--unet-steps", type=int, default=4000)
    p.add_argument("--unet-batch", type=int, default=64)
    p.add_argument("--unet-lr", type=float, default=1e-3)
    p.add_argument("--snr-gamma", type=float, default=5.0, help="min-SNR loss weighting (0 = plain MSE)")
    p.add_argument("--uncond-prob", type=float, default=0.1)
    p.add_argument("--lora-steps", type=int, default=800)
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=8.0)
    p.add_argument("--lora-lr", type=float, default=3e-3)
    p.add_argument("--lora-batch", type=int, default=32)
    p.add_argument("--lora-dataset", type=int, default=2000)
    p.add_argument("--lora-conv", action=argparse.BooleanOptionalAction, default=True,
                   help="also adapt the 3x3 resnet convs (LoCon-style conv keys)")
    p.add_argument("--lora-text", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--eval-count", type=int, default=48)
    p.add_argument("--eval-steps", type=int, default=20)
    p.add_argument("--log-every", type=int, default=200)
    args = p.parse_args(argv)
    args.phases = split_phases(p, args.phases, PHASES)
    return args


def split_phases(parser: argparse.ArgumentParser, text: str, known) -> list[str]:
    """The comma list of phases, refusing unknown names through the parser."""
    phases = [x for x in text.split(",") if x]
    unknown = set(phases) - set(known)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return phases


def prepare_torch(args) -> torch.device:
    """Threads, seeds and exact (no TF32) maths; returns the device to train on."""
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


def main(argv=None) -> int:
    args = parse_args(argv)
    device = prepare_torch(args)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    from webui.models.tokenizers import load_clip_tokenizer

    tokenizer = load_clip_tokenizer("clip_l")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    timer = Timer()
    vae, unet, text_encoder = build_models(args.seed)
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in
              (("vae", vae), ("unet", unet), ("text_encoder", text_encoder))}
    print(f"parameters: {counts} total {sum(counts.values())}", flush=True)

    pool_images, pool_samples = timer.run("dataset", shapes.batch, args.seed, args.dataset_size)
    pool = to_tensor(pool_images)
    pool_ids = token_ids(tokenizer, [s.caption for s in pool_samples])
    empty_ids = token_ids(tokenizer, [""])[0]

    if args.from_checkpoint:
        if {"vae", "unet"} & set(args.phases):
            raise SystemExit("--from-checkpoint continues from a trained model: leave out the vae and unet phases")
        vae, unet, text_encoder = load_single_file(args.from_checkpoint)
    elif "vae" in args.phases:
        timer.run("vae", train_vae, vae, pool, args, device)
        score_vae(vae, args, device)
        vae.save_pretrained(work / "vae")
    else:
        vae = AutoencoderKL.from_pretrained(work / "vae")
    vae.to(device).eval().requires_grad_(False)

    if args.from_checkpoint:
        pass
    elif "unet" in args.phases:
        timer.run("unet", train_unet, unet, text_encoder, vae, pool, pool_ids, empty_ids, args, device)
        unet.save_pretrained(work / "unet")
        text_encoder.save_pretrained(work / "text_encoder")
    else:
        unet = UNet2DConditionModel.from_pretrained(work / "unet")
        text_encoder = CLIPTextModel.from_pretrained(work / "text_encoder")
    unet.to(device).eval()
    text_encoder.to(device).eval()

    report: dict = {}
    if "eval" in args.phases:
        report["base"] = timer.run("eval", evaluate, unet, vae, text_encoder, tokenizer, args, device, work)

    if "export" in args.phases and {"vae", "unet"} & set(args.phases):
        cpu_copies = [m.to("cpu") for m in (unet, vae, text_encoder)]
        path = export_checkpoint(Path(args.checkpoint), *cpu_copies, tokenizer, args, report.get("base", {}),
                                 timer.times)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)
        for m in (unet, vae, text_encoder):
            m.to(device)

    if "lora" in args.phases:
        wrappers = timer.run("lora", train_lora, unet, text_encoder, vae, args, device, tokenizer, empty_ids)
        if "eval" in args.phases:
            report["lora"] = evaluate_lora(unet, vae, text_encoder, tokenizer, wrappers, args, device, work)
        if "export" in args.phases:
            path = export_lora(Path(args.lora_file), wrappers, args, report.get("lora", {}), timer.times["lora"])
            print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)
        remove_lora(unet)
        remove_lora(text_encoder)

    report["seconds"] = timer.times
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print("[time] " + ", ".join(f"{k} {v:.1f}s" for k, v in timer.times.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
