#!/usr/bin/env python
"""Upscale throughput (megapixels of output per second) for Real-ESRGAN x4plus and Compact, tiled and
untiled, and seconds per face for GFPGAN.

Uses the real converted weights in models/RealESRGAN when present (see
tools/convert_realesrgan_ncnn.py), otherwise random weights in the same
architectures (same speed). GFPGAN uses random weights in the v1.4 layout unless
models/GFPGAN holds a GFPGAN file. Face timing uses scikit-image's astronaut photo.

Usage: python bench/bench_upscale.py [--device cpu|cuda] [--size 128] [--tile 192] [--repeat 3] [--face-image PHOTO]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from webui.config import PROJECT_ROOT, Settings  # noqa: E402
from webui.postprocess.faces import FaceRestorers  # noqa: E402
from webui.postprocess.upscalers import UpscalerRegistry  # noqa: E402


def random_models(root: Path) -> None:
    """x4plus-shaped RRDBNet (23 blocks) and realesr-animevideov3-shaped Compact with random weights."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    (root / "RealESRGAN").mkdir(parents=True, exist_ok=True)
    save_file(ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4).state_dict(), str(root / "RealESRGAN" / "RealESRGAN_x4plus.safetensors"))
    save_file(Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4).state_dict(), str(root / "RealESRGAN" / "realesr-animevideov3.safetensors"))


def random_gfpgan(root: Path) -> None:
    from spandrel.architectures.GFPGAN import GFPGAN

    (root / "GFPGAN").mkdir(parents=True, exist_ok=True)
    model = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None, fix_decoder=False,
                   num_mlp=8, input_is_latent=True, different_w=True, narrow=1, sft_half=True)
    torch.save({"params_ema": model.state_dict()}, root / "GFPGAN" / "GFPGANv1.4.pth")


def timed(fn, repeat: int) -> float:
    fn()  # warm-up: loading, cudnn autotune
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    parser.add_argument("--size", type=int, default=128, help="input side in pixels (output is 4x)")
    parser.add_argument("--tile", type=int, default=192, help="tile size for the tiled runs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--face-image", type=Path, help="photo for the face timing (default: scikit-image's astronaut)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        models = PROJECT_ROOT / "models"
        real = (models / "RealESRGAN" / "RealESRGAN_x4plus.safetensors").is_file() and (models / "RealESRGAN" / "realesr-animevideov3.safetensors").is_file()
        upscale_root = models if real else Path(tmp)
        if not real:
            random_models(upscale_root)
        settings = Settings(models_dir=upscale_root, device=args.device, precision=args.precision, upscaler_tile_overlap=16)
        registry = UpscalerRegistry(settings)
        print(f"device={settings.torch_device()} dtype={settings.torch_dtype()} weights={'real' if real else 'random'} "
              f"input={args.size}x{args.size} tile={args.tile}")
        rng = np.random.default_rng(0)
        image = Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
        out_mp = (args.size * 4) ** 2 / 1e6
        for name in ("RealESRGAN_x4plus", "realesr-animevideov3"):
            for tile in (0, args.tile):
                seconds = timed(lambda: registry.upscale(image, name, 4, tile_size=tile), args.repeat)
                label = "untiled" if tile == 0 else f"tile {tile}"
                print(f"{name:24s} {label:10s} {out_mp / seconds:8.3f} MP/s  ({seconds:.3f} s per image)")
        registry.unload()

        face_root = models if FaceRestorers(Settings(models_dir=models)).names().count("GFPGAN") else Path(tmp)
        if face_root != models:
            random_gfpgan(face_root)
        faces = FaceRestorers(Settings(models_dir=face_root, device=args.device, precision=args.precision))
        if args.face_image is not None:
            photo = Image.open(args.face_image).convert("RGB")
        else:
            from skimage import data

            photo = Image.fromarray(data.astronaut())
        count = len(faces.detect(photo))
        seconds = timed(lambda: faces.restore(photo, "GFPGAN", 1.0), args.repeat)
        print(f"GFPGAN                   {seconds / max(count, 1):8.3f} s per face ({count} face(s), detection included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
