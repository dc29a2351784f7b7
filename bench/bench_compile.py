#!/usr/bin/env python
"""torch.compile of the UNet (Settings > Speed > torch_compile): whole-job time plain and compiled.

One process, the real engine: a plain job, then a job with the option on (it runs plain and starts the
background compilation), the wait for the graph, then compiled jobs. Prints seconds per job, the
compiled/plain ratio, the background compile time and the largest pixel difference. Inductor keeps its
kernels in outputs/cache/torchinductor, so a second run of this script compiles faster ("warm cache").

Usage::

    python bench/bench_compile.py [--device cuda] [--checkpoint demo-shapes] [--size 512] [--steps 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default="demo-shapes")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="inductor")
    args = parser.parse_args()

    import os

    from webui.config import PROJECT_ROOT, Settings

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(PROJECT_ROOT / "outputs" / "cache" / "torchinductor"))
    import numpy as np
    import torch

    from webui.catalog import Catalog
    from webui.engine.engine import Engine
    from webui.models.manager import ModelManager
    from webui.options import Options
    from webui.schemas import GenerationRequest

    torch.set_num_threads(args.threads)
    settings = Settings(models_dir=PROJECT_ROOT / "models", device=args.device, save_images=False,
                        compile_backend=args.backend)
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog), options=Options())

    def job(compiled: bool):
        request = GenerationRequest(prompt="a red circle on a white background", seed=1, steps=args.steps,
                                    width=args.size, height=args.size, sampler_name="Euler",
                                    checkpoint=args.checkpoint, save_images=False,
                                    override_settings={"torch_compile": compiled})
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = engine.generate(request)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, result

    job(False)  # load and warm up
    plain = [job(False) for _ in range(args.repeat)]
    first_seconds, first = job(True)
    start = time.perf_counter()
    engine.models.compiled_unet(True).wait()
    compile_seconds = time.perf_counter() - start
    compiled = [job(True) for _ in range(args.repeat)]
    plain_median = statistics.median(s for s, _ in plain)
    compiled_median = statistics.median(s for s, _ in compiled)
    difference = np.abs(np.asarray(compiled[-1][1].images[0]).astype(int)
                        - np.asarray(plain[-1][1].images[0]).astype(int))
    print(f"{args.device} {args.checkpoint} {args.size}px {args.steps} steps, backend {args.backend}")
    print(f"plain job {plain_median:.2f} s; first job with compile on {first_seconds:.2f} s "
          f"(compiling in the background); compile finished {compile_seconds:.1f} s after it")
    print(f"compiled job {compiled_median:.2f} s = {compiled_median / plain_median:.2f}x plain; "
          f"pixels differ by at most {difference.max()} (mean {difference.mean():.3f}) of 255")
    print(compiled[-1][1].notes)


if __name__ == "__main__":
    main()
