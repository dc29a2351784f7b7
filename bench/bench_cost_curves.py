#!/usr/bin/env python
"""Cost curves of a whole generation: time and peak memory against pixels, batch size and steps.

Each point runs in a fresh child process through the real engine (prompt encoding, sampling,
VAE decode with the app's default tiling), so the operating system's peak resident set size
belongs to that one job; the figure is the peak minus the process's size just before the job
(model loaded, one warm-up job at the smallest size run). Default model: the shipped demo model;
``--checkpoint`` takes any other file in models/Stable-diffusion.

Usage::

    python bench/bench_cost_curves.py                       # sizes 256 512 1024, batch 1 2 4, steps 4 8 16
    python bench/bench_cost_curves.py --device cuda --sizes 512 1024 2048
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(checkpoint: str, device: str, size: int, batch: int, steps: int, threads: int) -> dict:
    """One txt2img job in this process: seconds, peak MiB above the start (RSS; CUDA's own peak too)."""
    import torch

    from webui.catalog import Catalog
    from webui.config import PROJECT_ROOT, Settings
    from webui.engine.engine import Engine
    from webui.models.manager import ModelManager
    from webui.schemas import GenerationRequest

    torch.set_num_threads(threads)
    settings = Settings(models_dir=PROJECT_ROOT / "models", device=device, precision="auto", save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog))

    def job(side: int, count: int, n: int):
        return GenerationRequest(prompt="a red circle on a white background", negative_prompt="", seed=1,
                                 steps=n, width=side, height=side, batch_size=count, sampler_name="Euler",
                                 cfg_scale=7.0, checkpoint=checkpoint, save_images=False)

    engine.generate(job(64, 1, 1))  # load and warm up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mib()
    start = time.perf_counter()
    result = engine.generate(job(size, batch, steps))
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    point = {"size": size, "batch": batch, "steps": steps, "seconds": round(seconds, 2),
             "seconds_per_image": round(seconds / batch, 2), "peak_mib": round(_rss_mib() - before, 1),
             "warnings": result.warnings}
    if device == "cuda":
        point["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return point


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="demo-shapes.safetensors")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--base-size", type=int, default=256, help="size of the batch and steps curves")
    p.add_argument("--base-steps", type=int, default=4, help="steps of the size and batch curves")
    p.add_argument("--limit", type=int, default=900, help="seconds before a point is given up")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child mode: a JSON point to measure
    args = p.parse_args(argv)
    if args.one:
        spec = json.loads(args.one)
        print(json.dumps(measure(args.checkpoint, args.device, spec["size"], spec["batch"], spec["steps"],
                                 args.threads)))
        return 0
    points = [{"curve": "pixels", "size": s, "batch": 1, "steps": args.base_steps} for s in args.sizes]
    points += [{"curve": "batch", "size": args.base_size, "batch": b, "steps": args.base_steps} for b in args.batches]
    points += [{"curve": "steps", "size": args.base_size, "batch": 1, "steps": n} for n in args.steps]
    print("| curve | size | batch | steps | seconds | s/image | peak MiB above start | notes |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in points:
        command = [sys.executable, __file__, "--checkpoint", args.checkpoint, "--device", args.device,
                   "--threads", str(args.threads), "--one", json.dumps(spec)]
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=args.limit, check=True)
            point = json.loads(out.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            print(f"| {spec['curve']} | {spec['size']} | {spec['batch']} | {spec['steps']} | over {args.limit} "
                  "| - | - | given up |", flush=True)
            continue
        except subprocess.CalledProcessError as exc:
            print(f"| {spec['curve']} | {spec['size']} | {spec['batch']} | {spec['steps']} | failed | - | - | "
                  f"{exc.stderr.strip().splitlines()[-1][:120] if exc.stderr.strip() else exc.returncode} |")
            continue
        notes = "; ".join(point["warnings"]) or ""
        if "cuda_peak_mib" in point:
            notes = f"CUDA peak {point['cuda_peak_mib']} MiB" + (f"; {notes}" if notes else "")
        print(f"| {spec['curve']} | {point['size']} | {point['batch']} | {point['steps']} | {point['seconds']} | "
              f"{point['seconds_per_image']} | {point['peak_mib']} | {notes} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
