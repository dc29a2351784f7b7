#!/usr/bin/env python
"""Peak memory of the two big jobs the README states figures for: a 2048x2048 img2img and an upscale to 4096x4096.

Each runs in a fresh child process through the app's real code (the engine with its memory plan and
default VAE tiling; the Extras upscaler with its default tiles), so the operating system's peak resident
set size belongs to that one job; the figure is that peak minus the process's size just before the job
(model loaded, a small warm-up job done). On a GPU the CUDA allocator's own peak is printed too.

- img2img: the shipped demo model (or ``--checkpoint``), Euler, 4 steps at denoising 0.5, batch 1.
- upscale: a 1024x1024 picture made 4x by a Real-ESRGAN Compact network (realesr-animevideov3's shape,
  random weights: the same memory and speed as the real file), the app's default 192 px tiles.

Usage::

    python bench/bench_large_images.py [--device cpu|cuda] [--threads 1] [--only img2img|upscale]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _picture(side: int):
    """A photo-like test picture: scikit-image's astronaut, resized."""
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((side, side), Image.LANCZOS)


def _cuda_peak(device: str):
    import torch

    return round(torch.cuda.max_memory_allocated() / 2 ** 20) if device == "cuda" else None


def measure_img2img(checkpoint: str, device: str, side: int) -> dict:
    """One img2img job of side x side pixels: seconds, peak MiB above the start, the memory plan's line."""
    import torch

    from webui.catalog import Catalog
    from webui.config import PROJECT_ROOT, Settings
    from webui.engine.engine import Engine
    from webui.models.manager import ModelManager
    from webui.schemas import GenerationRequest

    settings = Settings(models_dir=PROJECT_ROOT / "models", device=device, save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog))

    def job(size: int) -> GenerationRequest:
        return GenerationRequest(prompt="a photo of an astronaut", seed=1, steps=4, width=size, height=size,
                                 sampler_name="Euler", init_image=_picture(size), denoising_strength=0.5,
                                 checkpoint=checkpoint, save_images=False)

    engine.generate(job(64))  # load and warm up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    request = job(side)
    before = _rss_mib()
    start = time.perf_counter()
    result = engine.generate(request)
    seconds = time.perf_counter() - start
    return {"job": f"img2img {side}x{side}", "seconds": round(seconds, 1),
            "peak_mib": round(_rss_mib() - before), "cuda_peak_mib": _cuda_peak(device),
            "plan": result.memory_plan, "warnings": result.warnings}


def measure_upscale(device: str, side: int) -> dict:
    """A side x side picture upscaled 4x through the Extras upscaler registry with its default tiles."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    from webui.config import Settings
    from webui.postprocess.upscalers import UpscalerRegistry

    root = Path(tempfile.mkdtemp())
    (root / "RealESRGAN").mkdir()
    torch.manual_seed(0)
    network = Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4)
    save_file(network.state_dict(), str(root / "RealESRGAN" / "realesr-animevideov3.safetensors"))
    settings = Settings(models_dir=root, device=device)
    registry = UpscalerRegistry(settings)
    picture = _picture(side)
    registry.upscale(_picture(64), "realesr-animevideov3", 4)  # load and warm up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mib()
    start = time.perf_counter()
    out = registry.upscale(picture, "realesr-animevideov3", 4)
    seconds = time.perf_counter() - start
    return {"job": f"upscale {side}x{side} to {out.width}x{out.height}", "seconds": round(seconds, 1),
            "peak_mib": round(_rss_mib() - before), "cuda_peak_mib": _cuda_peak(device),
            "tile": settings.upscaler_tile_size}


def _child(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    if args.child == "img2img":
        return measure_img2img(args.checkpoint, args.device, 2048)
    return measure_upscale(args.device, 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", default="demo-shapes")
    parser.add_argument("--only", choices=("img2img", "upscale"))
    parser.add_argument("--child", choices=("img2img", "upscale"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args)))
        return
    for what in [args.only] if args.only else ["upscale", "img2img"]:
        command = [sys.executable, __file__, "--child", what, "--device", args.device, "--threads",
                   str(args.threads), "--checkpoint", args.checkpoint]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        print(done.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
