#!/usr/bin/env python
"""Seconds per UNet step on the CPU in fp32, bf16 and bf16 with channels_last, and how far bf16 moves the output.

Uses the demo model's UNet (models/Stable-diffusion/demo-shapes.safetensors) at 64x64
with a batch of 2 (cond and uncond rows, as CFG runs it). Each variant runs ``--repeat``
timed calls after a warm-up, interleaved so that load from other processes hits all alike;
the median is reported with the ratio to fp32. Also prints what torch says of the CPU
(AVX512-BF16 or AMX are what make bf16 fast).

Usage: python bench/bench_cpu_precision.py [--size 64] [--repeat 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from webui.catalog import Catalog
    from webui.config import PROJECT_ROOT, Settings
    from webui.models.manager import ModelManager

    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"avx512_bf16={'avx512_bf16' in flags} amx_bf16={'amx_bf16' in flags}, threads {args.threads}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    settings = Settings(models_dir=PROJECT_ROOT / "models", device="cpu", precision="fp32", save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    model = ModelManager(settings, catalog).ensure("demo-shapes.safetensors")
    unet = model.unet.eval()
    factor = 2 ** (len(model.vae.config.block_out_channels) - 1)
    side = args.size // factor
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, unet.config.in_channels, side, side, generator=generator)
    context = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator)
    timestep = torch.tensor([500.0])

    variants = {"fp32": (unet, torch.float32, False)}
    bf16 = copy.deepcopy(unet).to(torch.bfloat16)
    variants["bf16"] = (bf16, torch.bfloat16, False)
    variants["bf16 + channels_last"] = (copy.deepcopy(bf16).to(memory_format=torch.channels_last), torch.bfloat16,
                                        True)

    def call(name):
        net, dtype, channels_last = variants[name]
        x = latents.to(dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return net(x, timestep, encoder_hidden_states=context.to(dtype)).sample.float()

    outputs = {name: call(name) for name in variants}  # warm-up, and the outputs compared
    times = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name in variants:
            start = time.perf_counter()
            call(name)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["fp32"])
    scale = outputs["fp32"].abs().mean().item()
    print("| variant | ms per step (median) | vs fp32 | mean abs difference from fp32 (of mean abs output) |")
    print("|---|---|---|---|")
    for name in variants:
        median = statistics.median(times[name])
        diff = (outputs[name] - outputs["fp32"]).abs().mean().item() / scale
        print(f"| {name} | {median * 1000:.1f} | {median / base:.2f}x | {diff:.2%} |")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
