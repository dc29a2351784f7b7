"""Benchmark: LoRA add / remove / reweight between jobs on a full-size SD1.5-architecture UNet.

The UNet has SD1.5's diffusers config with random weights; the LoRA is a rank-16
kohya file over every attention projection (to_q, to_k, to_v, to_out.0 of attn1
and attn2: 128 layers), written by this script. Goal: each operation <= 0.3 s on CPU.

    python bench/bench_lora.py [--device cpu|cuda] [--dtype fp32|fp16|bf16] [--threads 1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webui.models.lora import LoraPatcher  # noqa: E402

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
GOAL_S = 0.3


def build_unet(device: str, dtype: torch.dtype):
    """SD1.5's UNet with random weights, built without diffusers' slow initialisation."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
    unet = unet.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for param in unet.parameters():
            param.normal_(0.0, 0.02, generator=gen)
    if dtype != torch.float32:
        unet = unet.to(dtype)
    return unet.eval().requires_grad_(False)


def write_lora(unet, path: Path, rank: int = 16, alpha: float = 8.0, seed: int = 0) -> int:
    """A kohya-format LoRA (fp16, as kohya saves) over all attention projections; returns the layer count."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and (".attn1." in name or ".attn2." in name):
            key = "lora_unet_" + name.replace(".", "_")
            out_f, in_f = module.weight.shape
            tensors[f"{key}.lora_down.weight"] = (torch.randn(rank, in_f, generator=gen) * 0.01).half()
            tensors[f"{key}.lora_up.weight"] = (torch.randn(out_f, rank, generator=gen) * 0.01).half()
            tensors[f"{key}.alpha"] = torch.tensor(alpha).half()
    save_file(tensors, str(path))
    return len(tensors) // 3


def timed(fn, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]

    start = time.perf_counter()
    unet = build_unet(args.device, dtype)
    print(f"UNet built: {sum(p.numel() for p in unet.parameters()) / 1e6:.0f}M parameters, "
          f"{args.device} {args.dtype}, {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        style, detail = Path(tmp) / "style.safetensors", Path(tmp) / "detail.safetensors"
        layers = write_lora(unet, style, seed=1)
        write_lora(unet, detail, seed=2)
        print(f"LoRA: rank 16 over {layers} attention layers ({style.stat().st_size / 1e6:.1f} MB)")
        patcher = LoraPatcher(unet, [], "sd1")
        results: dict[str, list[float]] = {}

        def record(label, fn):
            results.setdefault(label, []).append(timed(fn, args.device))

        record("add (first use: read + parse + patch)", lambda: patcher.apply([("style", style, 1.0, 1.0)]))
        record("remove", lambda: patcher.apply([]))
        for _ in range(args.repeats):
            record("add (file cached)", lambda: patcher.apply([("style", style, 1.0, 1.0)]))
            record("reweight 1.0 -> 0.6", lambda: patcher.apply([("style", style, 0.6, 0.6)]))
            record("same LoRAs again (no change)", lambda: patcher.apply([("style", style, 0.6, 0.6)]))
            record("add second LoRA (both on all layers)", lambda: patcher.apply([("style", style, 0.6, 0.6), ("detail", detail, 1.0, 1.0)]))
            record("remove both", lambda: patcher.apply([]))
        record("clear() after add", lambda: (patcher.apply([("style", style, 1.0, 1.0)]), patcher.clear()))

    print(f"\n{'operation':44s} {'median s':>9s} {'max s':>8s}  goal <= {GOAL_S} s")
    for label, values in results.items():
        median = statistics.median(values)
        flag = "ok" if median <= GOAL_S or label.startswith(("add (first", "clear")) else "SLOW"
        print(f"{label:44s} {median:9.3f} {max(values):8.3f}  {flag}")


if __name__ == "__main__":
    main()
