"""Our engine against a plain diffusers pipeline on the same weights, settings and process.

Prints the time ratio (goal <= 1.03), peak RSS, and the load time of a
full-size SD1.5-architecture checkpoint (random weights written by this script).

    python bench/bench_engine.py                  # tiny checkpoint, CPU
    python bench/bench_engine.py --full-size --device cuda --steps 20 --size 512
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from webui.config import Settings  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full-size", action="store_true", help="SD1.5-sized UNet/VAE/CLIP (random weights)")
    parser.add_argument("--checkpoint", type=Path, help="use this checkpoint instead of writing one")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--through-app", action="store_true",
                        help="also time POST /sdapi/v1/txt2img through the queue and HTTP layer (in-process client)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from webui.catalog import Catalog
    from webui.engine.engine import Engine
    from webui.models.manager import ModelManager
    from tests.random_checkpoint import write_random_checkpoint
    from webui.schemas import GenerationRequest

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ckpt_dir = root / "models" / "Stable-diffusion"
        ckpt_dir.mkdir(parents=True)
        if args.checkpoint:
            (ckpt_dir / args.checkpoint.name).symlink_to(args.checkpoint.resolve())
        else:
            start = time.perf_counter()
            write_random_checkpoint(ckpt_dir / "bench.safetensors", "sd1", full_size=args.full_size,
                                    dtype=torch.float16)
            print(f"wrote checkpoint in {time.perf_counter() - start:.1f}s")
        settings = Settings(models_dir=root / "models", outdir=root / "out", device=args.device,
                            precision=args.precision, save_images=False)
        catalog = Catalog(settings)
        catalog.refresh()
        models = ModelManager(settings, catalog)
        start = time.perf_counter()
        model = models.ensure(None)
        sync(args.device)
        print(f"checkpoint load ({'full-size SD1.5' if args.full_size else 'tiny'}): "
              f"{time.perf_counter() - start:.2f}s")
        engine = Engine(settings, catalog, models)

        pipe = StableDiffusionPipeline(
            vae=model.vae, text_encoder=model.text_encoders[0], tokenizer=model.tokenizers[0], unet=model.unet,
            scheduler=EulerDiscreteScheduler.from_config(model.scheduler_config), safety_checker=None,
            feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        prompt, negative = "a red circle on a blue background", "green"

        def run_pipeline(seed: int):
            generator = torch.Generator("cpu").manual_seed(seed)
            pipe(prompt, negative_prompt=negative, num_inference_steps=args.steps, guidance_scale=7.0,
                 width=args.size, height=args.size, generator=generator)

        def run_engine(seed: int):
            engine.generate(GenerationRequest(prompt=prompt, negative_prompt=negative, steps=args.steps,
                                              cfg_scale=7.0, width=args.size, height=args.size, seed=seed,
                                              sampler_name="Euler", save_images=False))

        runs = [("diffusers", run_pipeline), ("engine", run_engine)]
        if args.through_app:
            from fastapi.testclient import TestClient

            from webui.server import build_services, create_app

            services = build_services(settings, engine=engine)
            services.queue.start()
            client = TestClient(create_app(services, with_ui=False))

            def run_app(seed: int):
                body = {"prompt": prompt, "negative_prompt": negative, "steps": args.steps, "cfg_scale": 7.0,
                        "width": args.size, "height": args.size, "seed": seed, "sampler_name": "Euler"}
                response = client.post("/sdapi/v1/txt2img", json=body)
                assert response.status_code == 200, response.text

            runs.append(("app", run_app))
        for _, fn in runs:
            fn(0)  # warm-up
        timings = {}
        for name, fn in runs * 2:
            sync(args.device)
            start = time.perf_counter()
            for seed in range(args.images):
                fn(seed)
            sync(args.device)
            timings.setdefault(name, []).append((time.perf_counter() - start) / args.images)
        base, ours = min(timings["diffusers"]), min(timings["engine"])
        print(f"diffusers pipeline: {base:.3f}s/image   engine: {ours:.3f}s/image   ratio {ours / base:.3f} "
              f"(goal <= 1.03)   {args.steps} steps {args.size}x{args.size} on {args.device}")
        if args.through_app:
            app = min(timings["app"])
            print(f"through the app (HTTP + queue + engine, PNG encoding): {app:.3f}s/image, "
                  f"ratio {app / base:.3f} against the bare pipeline")
            services.queue.stop()
        print(f"peak RSS: {peak_rss_mb():.0f} MB")
        if args.device == "cuda":
            print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB "
                  f"({torch.cuda.get_device_name()})")


if __name__ == "__main__":
    main()
