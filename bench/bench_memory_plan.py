#!/usr/bin/env python
"""Each offload mode of the memory planner: seconds, peak device memory and whether the image is the same.

One process, the real engine, one job per mode (after a warm-up job in the same mode), forced through
the ``memory_offload`` setting; the image of every mode is compared with "Keep on device". On CUDA the
peak is the allocator's; on the CPU the modes move nothing, so only the hooks' overhead shows. The
planner's own choice ("Automatic") and its line are printed last.

Usage::

    python bench/bench_memory_plan.py --device cuda --checkpoint my-sd15 --size 512
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODES = ("Keep on device", "Model offload", "Group offload", "Sequential offload", "Automatic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default="demo-shapes")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch

    from webui.catalog import Catalog
    from webui.config import PROJECT_ROOT, Settings
    from webui.engine.engine import Engine
    from webui.models.manager import ModelManager
    from webui.options import Options
    from webui.schemas import GenerationRequest

    torch.set_num_threads(args.threads)
    settings = Settings(models_dir=PROJECT_ROOT / "models", device=args.device, save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog), options=Options())

    def job(mode: str, size: int):
        return GenerationRequest(prompt="a red circle on a white background", seed=1, steps=args.steps, width=size,
                                 height=size, sampler_name="Euler", checkpoint=args.checkpoint, save_images=False,
                                 override_settings={"memory_offload": mode})

    print(f"| mode | seconds | peak device MiB | same image as on the device |\n|---|---|---|---|")
    reference = None
    for mode in MODES:
        engine.generate(job(mode, 64))  # place the weights and warm up
        if args.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = engine.generate(job(mode, args.size))
        seconds = time.perf_counter() - start
        peak = f"{torch.cuda.max_memory_allocated() / 2 ** 20:.0f}" if args.device == "cuda" else "-"
        image = np.asarray(result.images[0])
        reference = image if reference is None else reference
        largest = np.abs(image.astype(int) - reference).max()
        same = "yes" if largest == 0 else f"largest difference {largest}"
        print(f"| {mode} | {seconds:.2f} | {peak} | {same} |", flush=True)
    print(result.memory_plan)


if __name__ == "__main__":
    main()
