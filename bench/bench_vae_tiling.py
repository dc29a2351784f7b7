#!/usr/bin/env python
"""Peak memory and time of a VAE decode and encode, with and without tiling, against image size.

Each measurement runs in a fresh child process so the operating system's peak
resident set size (ru_maxrss) belongs to that one decode or encode; the figure
reported is the peak minus the process's size just before the call (model loaded,
latents made). Uses the demo model's VAE (models/Stable-diffusion/demo-shapes.safetensors).

The demo VAE has 4 pixels per latent pixel (SD's has 8), so its 256 px tile is the same
64x64 latent tile as a 512 px tile of an SD VAE; untiled runs are given up after
``--limit`` seconds (the VAE's mid-block attention over every latent pixel grows with
the square of the pixel count).

Usage: python bench/bench_vae_tiling.py [--sizes 1024 2048] [--tile 256] [--threads 1] [--limit 90]
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


def measure(op: str, size: int, tile: int, tiled: bool, threads: int) -> dict:
    """One decode or encode of a size x size image in this process: seconds and MiB above the start."""
    import torch

    from webui.catalog import Catalog
    from webui.config import PROJECT_ROOT, Settings
    from webui.engine import vae_ops
    from webui.models.manager import ModelManager
    from PIL import Image

    torch.set_num_threads(threads)
    settings = Settings(models_dir=PROJECT_ROOT / "models", device="cpu", precision="fp32", save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    vae = ModelManager(settings, catalog).ensure("demo-shapes.safetensors").vae
    factor = vae_ops.scale_factor(vae)
    tiling = vae_ops.Tiling(min_pixels=1, tile_size=tile) if tiled else None
    image = Image.new("RGB", (size, size), (200, 40, 40))
    latents = torch.randn(1, 4, size // factor, size // factor, generator=torch.Generator().manual_seed(0))
    before = _rss_mib()
    start = time.perf_counter()
    if op == "decode":
        vae_ops.decode(vae, latents, tiling=tiling)
    else:
        vae_ops.encode(vae, [image], tiling=tiling)
    seconds = time.perf_counter() - start
    return {"op": op, "size": size, "tiled": tiled, "seconds": seconds, "peak_mib": _rss_mib() - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--limit", type=float, default=90.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", nargs=3, metavar=("OP", "SIZE", "TILED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        op, size, tiled = args.child
        print(json.dumps(measure(op, int(size), args.tile, tiled == "1", args.threads)))
        return
    print(f"load average before: {' '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}")
    print("| op | size | tiled | seconds | peak MiB above start | MiB per megapixel |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        for op in ("decode", "encode"):
            for tiled in (False, True):
                command = [sys.executable, __file__, "--tile", str(args.tile), "--threads", str(args.threads),
                           "--child", op, str(size), "1" if tiled else "0"]
                try:
                    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=args.limit)
                except subprocess.TimeoutExpired:
                    print(f"| {op} | {size} | {'yes' if tiled else 'no'} | over {args.limit:.0f} | - | - |",
                          flush=True)
                    continue
                row = json.loads(out.stdout.strip().splitlines()[-1])
                mpx = size * size / 1e6
                print(f"| {op} | {size} | {'yes' if tiled else 'no'} | {row['seconds']:.1f} | "
                      f"{row['peak_mib']:.0f} | {row['peak_mib'] / mpx:.0f} |", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}")


if __name__ == "__main__":
    main()
