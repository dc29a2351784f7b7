"""Train the demo ControlNet: a white silhouette on black says where the demo model draws its shape.

Phases, each timed:

1. ``train``  - a diffusers ``ControlNetModel`` made by ``from_unet`` from the demo UNet (loaded from
                the single-file checkpoint through the app's loader), hint embedding 16/32/96 with two
                stride-2 convs (64x64 control image -> the 16x16 latent), zero convolutions starting at
                zero. UNet, VAE and text encoder stay frozen; only the ControlNet learns, on the
                dataset's images with their own silhouettes as control images. Captions: a share are
                emptied (so it works with any prompt and with CFG) and a share name another shape (so
                the silhouette, not the prompt, decides the shape).
2. ``eval``   - plain diffusers ``StableDiffusionControlNetPipeline`` on held-out positions and sizes:
                distance between the drawn shape's centroid and the silhouette's, with the scene's own
                caption, with a caption naming another shape and other colours, and without ControlNet.
3. ``export`` - ``models/ControlNet/demo-silhouette.safetensors``: the diffusers ControlNetModel keys in
                fp16, with its config, the recipe, the seed and the evaluation in the metadata.

Held out of training (the test and the evaluation use them): centres within ``HELD_OUT_RADIUS`` px of
``HELD_OUT_CENTRES`` and half-sizes in ``HELD_OUT_HALF``; no training scene has either.

The defaults are the recipe of the shipped file (bench/TRAINING.md: about 55 minutes on one CPU core; the
ControlNet ignores the silhouette for the first thousand steps, then follows it)::

    python tools/train_demo_controlnet.py
    python tools/train_demo_controlnet.py --device cuda --batch 64

``--stop-after N`` keeps the ``--steps`` learning-rate schedule and the seeded data stream, so it stops
where the step-N ``--save-every`` snapshot was taken; a snapshot is evaluated and exported with
``--phases eval,export --controlnet-dir DIR --stop-after N``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_demo_model as base  # noqa: E402

from webui.demo import classify, shapes  # noqa: E402

PHASES = ("train", "eval", "export")
#: Hint embedding channels: three levels, so two stride-2 convs take 64x64 down to the 16x16 latent.
CONDITIONING_OUT_CHANNELS = (16, 32, 96)
#: Shape centres (x, y) at 64x64 kept out of training, and the radius around each.
HELD_OUT_CENTRES = ((40.0, 24.0), (24.0, 40.0))
HELD_OUT_RADIUS = 5.0
#: Half-sizes (a circle's radius) kept out of training: [low, high).
HELD_OUT_HALF = (13.0, 14.5)


# ---------------------------------------------------------------- data
def is_held_out(scene: shapes.Scene) -> bool:
    """True when a scene's centre or size falls in a held-out region (never seen in training)."""
    scale = 64 / shapes.IMAGE_SIZE
    near = any(np.hypot(scene.cx * scale - x, scene.cy * scale - y) <= HELD_OUT_RADIUS for x, y in HELD_OUT_CENTRES)
    return near or HELD_OUT_HALF[0] <= scene.half * scale < HELD_OUT_HALF[1]


def training_scenes(seed: int, count: int) -> list[shapes.Scene]:
    """``count`` dataset scenes from one seeded stream, skipping every held-out one."""
    rng = np.random.default_rng(seed)
    scenes = []
    while len(scenes) < count:
        scene = shapes.random_scene(rng)
        if not is_held_out(scene):
            scenes.append(scene)
    return scenes


def held_out_scenes(count: int, seed: int) -> list[shapes.Scene]:
    """Evaluation scenes with a held-out centre AND a held-out size; shapes and colours in turn."""
    rng = np.random.default_rng(seed)
    names = list(shapes.COLOURS)
    scenes = []
    for i in range(count):
        x, y = HELD_OUT_CENTRES[i % len(HELD_OUT_CENTRES)]
        angle, radius = rng.uniform(0, 2 * np.pi), HELD_OUT_RADIUS * np.sqrt(rng.uniform())
        colour = names[(i // len(shapes.SHAPES)) % len(names)]
        background = str(rng.choice([n for n in names if n != colour]))
        scenes.append(shapes.Scene(shapes.SHAPES[i % len(shapes.SHAPES)], colour, background,
                                   float(x + radius * np.cos(angle)), float(y + radius * np.sin(angle)),
                                   float(rng.uniform(*HELD_OUT_HALF))))
    return scenes


def other_caption(scene: shapes.Scene, rng: np.random.Generator) -> str:
    """A caption naming another shape, another colour and another background than the scene's."""
    names = list(shapes.COLOURS)
    shape = str(rng.choice([s for s in shapes.SHAPES if s != scene.shape]))
    colour = str(rng.choice([n for n in names if n not in (scene.colour, scene.background)]))
    background = str(rng.choice([n for n in names if n not in (colour, scene.colour, scene.background)]))
    return shapes.caption_for(shape, colour, background)


def swapped_shape_caption(scene: shapes.Scene, rng: np.random.Generator) -> str:
    """The scene's caption with another shape named (colours kept: they are the prompt's to decide)."""
    shape = str(rng.choice([s for s in shapes.SHAPES if s != scene.shape]))
    return shapes.caption_for(shape, scene.colour, scene.background)


def control_tensor(scenes) -> torch.Tensor:
    """Silhouettes as float Nx3xHxW in [0, 1] (what diffusers' pipeline makes of an RGB control image)."""
    images = np.stack([shapes.silhouette(s) for s in scenes])
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)


# ---------------------------------------------------------------- model
def build_controlnet(unet):
    """The demo ControlNet's architecture, copied (weights too) from the demo UNet."""
    from diffusers import ControlNetModel

    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_OUT_CHANNELS,
                                     conditioning_channels=3)


# ---------------------------------------------------------------- phase 1: train
def train_controlnet(controlnet, unet, vae, text_encoder, tokenizer, args, device, work: Path):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler.from_config(base.SCHEDULER_CONFIG)
    scenes = training_scenes(args.seed + 10, args.dataset_size)
    pool = base.to_tensor(np.stack([shapes.render(s) for s in scenes]))
    means, stds = base.encode_pool(vae, pool, device)
    controls = control_tensor(scenes).to(device)
    caption_rng = np.random.default_rng(args.seed + 11)
    ids = base.token_ids(tokenizer, [s.caption for s in scenes]).to(device)
    swapped = base.token_ids(tokenizer, [swapped_shape_caption(s, caption_rng) for s in scenes]).to(device)
    empty = base.token_ids(tokenizer, [""])[0].to(device)
    for module in (unet, vae, text_encoder):
        module.requires_grad_(False).eval()
    controlnet.to(device).train()
    params = list(controlnet.parameters())
    optimiser = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(args.seed + 12)
    scale = vae.config.scaling_factor
    start = time.perf_counter()
    for step in range(min(args.steps, args.stop_after or args.steps)):
        for group in optimiser.param_groups:
            group["lr"] = base.lr_at(step, args.steps, args.lr, args.warmup)
        index = torch.randint(0, len(pool), (args.batch,), generator=gen).to(device)
        eps = torch.randn(means[index].shape, generator=gen).to(device)
        latents = (means[index] + stds[index] * eps) * scale
        roll = torch.rand(len(index), generator=gen).to(device)
        batch_ids = torch.where((roll < args.swap_prob)[:, None], swapped[index], ids[index])
        batch_ids = torch.where((roll >= 1 - args.uncond_prob)[:, None], empty[None, :], batch_ids)
        noise = torch.randn(latents.shape, generator=gen).to(device)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),), generator=gen).to(device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with torch.no_grad():
            context = text_encoder(batch_ids)[0]
        down, mid = controlnet(noisy, timesteps, encoder_hidden_states=context, controlnet_cond=controls[index],
                               return_dict=False)
        prediction = unet(noisy, timesteps, encoder_hidden_states=context, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample
        loss = base.snr_weighted_mse(prediction, noise, scheduler, timesteps, args.snr_gamma)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        if step % args.log_every == 0 or step == args.steps - 1:
            print(f"controlnet step {step:5d} loss {loss.item():.4f} ({time.perf_counter() - start:.0f}s)", flush=True)
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            controlnet.save_pretrained(work / f"controlnet-step{step + 1}")
    controlnet.eval()


# ---------------------------------------------------------------- phase 2: eval
def make_controlnet_pipeline(unet, vae, text_encoder, tokenizer, controlnet):
    from diffusers import DDIMScheduler, StableDiffusionControlNetPipeline

    pipe = StableDiffusionControlNetPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=controlnet,
        scheduler=DDIMScheduler.from_config(base.SCHEDULER_CONFIG), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate_controlled(pipe, captions, scenes, cfg: float, steps: int, seed: int) -> np.ndarray:
    from PIL import Image

    generators = [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(len(captions))]
    controls = [Image.fromarray(shapes.silhouette(s)) for s in scenes]
    result = pipe(captions, image=controls, height=64, width=64, num_inference_steps=steps, guidance_scale=cfg,
                  generator=generators, output_type="np")
    return (result.images * 255).round().astype(np.uint8)


def centroid_errors(images: np.ndarray, scenes) -> list[float]:
    """Pixel distance between each image's shape centroid and its silhouette's (64 when nothing is drawn)."""
    errors = []
    for image, scene in zip(images, scenes):
        drawn = classify.shape_centroid(image)
        target = classify.mask_centroid(shapes.shape_mask(scene.shape, scene.cx, scene.cy, scene.half))
        errors.append(64.0 if drawn is None else float(np.hypot(drawn[0] - target[0], drawn[1] - target[1])))
    return errors


def summarise(name: str, images: np.ndarray, scenes, prompt_shapes) -> dict:
    errors = np.array(centroid_errors(images, scenes))
    results = [classify.classify(im) for im in images]
    report = {
        "n": len(scenes), "centroid_error_mean": float(errors.mean()), "centroid_error_median": float(np.median(errors)),
        "centroid_error_max": float(errors.max()), "within_4px": float((errors <= 4).mean()),
        "shape_as_silhouette": float(np.mean([r.shape == s.shape for r, s in zip(results, scenes)])),
        "shape_as_prompt": float(np.mean([r.shape == p for r, p in zip(results, prompt_shapes)])),
    }
    print(f"eval {name}: centroid error mean {report['centroid_error_mean']:.2f} median "
          f"{report['centroid_error_median']:.2f} max {report['centroid_error_max']:.2f} px, within 4 px "
          f"{report['within_4px']:.0%}, shape as silhouette {report['shape_as_silhouette']:.0%}, as prompt "
          f"{report['shape_as_prompt']:.0%}", flush=True)
    return report


def evaluate(controlnet, unet, vae, text_encoder, tokenizer, args, device, out_dir: Path) -> dict:
    scenes = held_out_scenes(args.eval_count, args.seed + 20)
    rng = np.random.default_rng(args.seed + 21)
    others = [other_caption(s, rng) for s in scenes]
    other_shapes = [c.split()[2] for c in others]
    pipe = make_controlnet_pipeline(unet, vae, text_encoder, tokenizer, controlnet)
    plain = base.make_pipeline(unet, vae, text_encoder, tokenizer, "ddim")
    plain.set_progress_bar_config(disable=True)
    report = {}
    for run in range(args.eval_seeds):
        seed = args.seed + 1000 + 100 * run
        own = generate_controlled(pipe, [s.caption for s in scenes], scenes, args.eval_cfg, args.eval_steps, seed)
        other = generate_controlled(pipe, others, scenes, args.eval_cfg, args.eval_steps, seed)
        bare = base.generate(plain, [s.caption for s in scenes], args.eval_cfg, args.eval_steps, seed, device)
        report[f"seed{run}_own_caption"] = summarise(f"seed {run} own caption", own, scenes, [s.shape for s in scenes])
        report[f"seed{run}_other_caption"] = summarise(f"seed {run} other shape and colours", other, scenes, other_shapes)
        report[f"seed{run}_no_controlnet"] = summarise(f"seed {run} no ControlNet", bare, scenes,
                                                       [s.shape for s in scenes])
        colours = [classify.classify(im).colour == c.split()[1] for im, c in zip(other, others)]
        report[f"seed{run}_other_caption"]["colour_as_prompt"] = float(np.mean(colours))
        controls = np.stack([shapes.silhouette(s) for s in scenes])
        base.save_grid(np.concatenate([controls, own, other, bare]), out_dir / f"controlnet_eval_seed{run}.png")
    return report


# ---------------------------------------------------------------- phase 3: export
def export_controlnet(path: Path, controlnet, args, report: dict, timings: dict) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in controlnet.state_dict().items()}
    metadata = {
        "modelspec.title": "demo-silhouette",
        "modelspec.description": "Demo ControlNet for demo-shapes, trained by this project: the control image is "
                                 "a white silhouette on black (a segmentation mask); the shape is drawn where the "
                                 "silhouette is. Preprocessor 'none'. 64x64.",
        "modelspec.architecture": "stable-diffusion-v1/controlnet",
        "modelspec.implementation": "diffusers",
        "modelspec.resolution": "64x64",
        "modelspec.license": "same as this project",
        "webui.controlnet.layout": "diffusers",
        # the config without where it was read from (a path of the training machine)
        "webui.controlnet.config": json.dumps({k: v for k, v in dict(controlnet.config).items()
                                               if k != "_name_or_path"}, default=list),
        "webui.demo.base_model": "demo-shapes.safetensors",
        "webui.demo.recipe": json.dumps({
            "from_unet": {"conditioning_embedding_out_channels": list(CONDITIONING_OUT_CHANNELS),
                          "conditioning_channels": 3},
            "control_image": "white silhouette of the shape on black, RGB, scaled to 0..1",
            "frozen": ["unet", "vae", "text_encoder"], "seed": args.seed, "steps": args.steps, "batch": args.batch,
            "stop_after": args.stop_after, "lr": args.lr, "warmup": args.warmup, "dataset_size": args.dataset_size,
            "uncond_prob": args.uncond_prob, "swap_shape_prob": args.swap_prob, "snr_gamma": args.snr_gamma,
            "held_out": {"centres": [list(c) for c in HELD_OUT_CENTRES], "radius": HELD_OUT_RADIUS,
                         "half": list(HELD_OUT_HALF)},
            "device": str(args.device), "threads": args.threads,
            "seconds": {k: round(v, 1) for k, v in timings.items()}}),
        "webui.demo.eval": json.dumps(report),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    return path


# ---------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)}")
    p.add_argument("--from-checkpoint", default="models/Stable-diffusion/demo-shapes.safetensors",
                   help="the demo checkpoint whose UNet the ControlNet copies and steers")
    p.add_argument("--output", default="models/ControlNet/demo-silhouette.safetensors")
    p.add_argument("--work-dir", default="outputs/demo-train-controlnet", help="trained weights, grids, report")
    p.add_argument("--dataset-size", type=int, default=4000)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--uncond-prob", type=float, default=0.4, help="share of empty captions")
    p.add_argument("--swap-prob", type=float, default=0.2, help="share of captions naming another shape")
    p.add_argument("--snr-gamma", type=float, default=5.0, help="min-SNR loss weighting (0 = plain MSE)")
    p.add_argument("--eval-count", type=int, default=12)
    p.add_argument("--eval-seeds", type=int, default=2)
    p.add_argument("--eval-steps", type=int, default=20)
    p.add_argument("--eval-cfg", type=float, default=3.0)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--save-every", type=int, default=500, help="keep the weights every N steps in --work-dir (0: never)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many steps of the --steps schedule (what a --save-every snapshot holds)")
    p.add_argument("--controlnet-dir", default=None,
                   help="without the train phase: the weights to evaluate and export (default WORK_DIR/controlnet)")
    args = p.parse_args(argv)
    args.phases = base.split_phases(p, args.phases, PHASES)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = base.prepare_torch(args)
    torch.manual_seed(args.seed)
    from diffusers import ControlNetModel

    from webui.models.tokenizers import load_clip_tokenizer

    tokenizer = load_clip_tokenizer("clip_l")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    timer = base.Timer()
    vae, unet, text_encoder = timer.run("load", base.load_single_file, args.from_checkpoint)
    for module in (vae, unet, text_encoder):
        module.to(device).eval().requires_grad_(False)
    if "train" in args.phases:
        controlnet = build_controlnet(unet)
        print(f"controlnet parameters: {sum(p.numel() for p in controlnet.parameters())}", flush=True)
        timer.run("train", train_controlnet, controlnet, unet, vae, text_encoder, tokenizer, args, device, work)
        controlnet.save_pretrained(work / "controlnet")
    else:
        controlnet = ControlNetModel.from_pretrained(args.controlnet_dir or work / "controlnet")
    controlnet.to(device).eval()

    report: dict = {}
    if "eval" in args.phases:
        report = timer.run("eval", evaluate, controlnet, unet, vae, text_encoder, tokenizer, args, device, work)
    if "export" in args.phases:
        path = export_controlnet(Path(args.output), controlnet, args, report, timer.times)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)
    (work / "report.json").write_text(json.dumps({"eval": report, "seconds": timer.times}, indent=2))
    print("[time] " + ", ".join(f"{k} {v:.1f}s" for k, v in timer.times.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
