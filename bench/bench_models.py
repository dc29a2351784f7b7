"""Checkpoint switching: cold load, switch from the RAM cache, and resident memory over 20 switches.

Uses full-size SD1.5-architecture checkpoints with random weights written by this
script (real weights cannot be fetched). Goals: a cached switch <= 0.1x a cold
load on CPU (<= 1 s on a GPU); RSS flat within 5% from the first round to the last.

    python bench/bench_models.py --device cpu
    python bench/bench_models.py --device cuda --limit 3
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--limit", type=int, default=2, help="sd_checkpoints_limit for the cached runs")
    parser.add_argument("--rounds", type=int, default=7, help="rounds over the 3 checkpoints (7 x 3 >= 20 switches)")
    parser.add_argument("--tiny", action="store_true", help="tiny checkpoints (a quick smoke run)")
    args = parser.parse_args()

    from webui.catalog import Catalog
    from webui.config import Settings
    from webui.models.manager import ModelManager
    from tests.random_checkpoint import write_random_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = root / "models" / "Stable-diffusion"
        folder.mkdir(parents=True)
        for seed in range(3):
            write_random_checkpoint(folder / f"sd15-{seed}.safetensors", "sd1", full_size=not args.tiny,
                                    seed=seed, dtype=torch.float16)
        for limit in (1, args.limit):
            settings = Settings(models_dir=root / "models", outdir=root / "out", device=args.device,
                                precision=args.precision, checkpoints_limit=limit)
            catalog = Catalog(settings)
            catalog.refresh()
            names = [c.name for c in catalog.checkpoints()]
            manager = ModelManager(settings, catalog)
            start = time.perf_counter()
            manager.select_checkpoint(names[0])
            cold = time.perf_counter() - start
            print(f"[limit {limit}] cold load: {cold:.2f}s")
            if limit > 1:
                manager.select_checkpoint(names[1])
                start = time.perf_counter()
                manager.select_checkpoint(names[0])
                cached = time.perf_counter() - start
                print(f"[limit {limit}] switch from RAM cache: {cached:.2f}s = {cached / cold:.3f}x cold (goal <= 0.1x)")
            rss = []
            for _ in range(args.rounds):
                for name in names:
                    manager.select_checkpoint(name)
                rss.append(rss_mb())
            growth = (rss[-1] - rss[0]) / rss[0] * 100
            print(f"[limit {limit}] RSS after each round of 3 switches (MB): {[round(r) for r in rss]}; "
                  f"last vs first {growth:+.1f}% (goal within 5%); file reads {manager.load_count}; "
                  f"cache {len(manager.cached_checkpoints())}/{limit}")
            manager.unload()
            del manager


if __name__ == "__main__":
    main()
