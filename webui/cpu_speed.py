"""Which precision is fastest on the CPU the app runs on: measured once per machine, kept in a small file.

bf16 pays on the CPU only where the processor computes it natively (AVX512-BF16 or AMX, which
``/proc/cpuinfo`` lists as ``avx512_bf16`` / ``amx_bf16``); elsewhere torch emulates it and it is
slower than fp32 in every form (bench/RESULTS.md). So on other CPUs nothing is measured and fp32
stays. Where bf16 is native, a UNet-like block (a ResNet block, self-attention and a GEGLU
feed-forward at SD's first level) is timed in fp32 and in bf16 with channels_last; bf16 is chosen
when it takes at most ``MAX_TIME_RATIO`` of fp32's time and its output differs from fp32's by at
most ``MAX_DIFFERENCE`` of the output's mean magnitude. The answer is cached per CPU model, torch
version and thread count, so the measurement (a few seconds) runs once.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

MAX_TIME_RATIO = 0.9  # bf16 must save at least a tenth of the time to be worth its rounding
MAX_DIFFERENCE = 0.02  # mean |bf16 - fp32| over mean |fp32| of the block's output


@dataclass(frozen=True)
class CpuPrecision:
    """The measured choice: ``dtype`` ("fp32" or "bf16"), whether convolutions run channels_last, and why."""

    dtype: str
    channels_last: bool
    reason: str
    fp32_seconds: float = 0.0
    bf16_seconds: float = 0.0
    difference: float = 0.0


@dataclass(frozen=True)
class Timing:
    """One variant's median seconds for the probe block and its output's difference from fp32's."""

    seconds: float
    difference: float


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model(cpuinfo: str) -> str:
    """The processor's model name in a /proc/cpuinfo text ("" when it gives none)."""
    for line in cpuinfo.splitlines():
        if line.split(":")[0].strip() == "model name":
            return line.split(":", 1)[1].strip()
    return ""


def native_bf16(flags: set[str]) -> bool:
    """Whether the CPU computes bfloat16 itself (AVX512-BF16 or AMX)."""
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def decide(fp32: Timing, bf16: Timing) -> CpuPrecision:
    """bf16 with channels_last when it is clearly faster and keeps the output; fp32 otherwise (pure)."""
    ratio = bf16.seconds / fp32.seconds if fp32.seconds > 0 else float("inf")
    figures = dict(fp32_seconds=fp32.seconds, bf16_seconds=bf16.seconds, difference=bf16.difference)
    if bf16.difference > MAX_DIFFERENCE:
        return CpuPrecision("fp32", False, f"bf16 differs from fp32 by {bf16.difference:.1%} here "
                                           f"(more than {MAX_DIFFERENCE:.0%}): fp32", **figures)
    if ratio > MAX_TIME_RATIO:
        return CpuPrecision("fp32", False, f"bf16 takes {ratio:.2f}x fp32's time here: fp32", **figures)
    return CpuPrecision("bf16", True, f"bf16 with channels_last takes {ratio:.2f}x fp32's time here and differs "
                                      f"by {bf16.difference:.2%}: bf16", **figures)


def measure(repeat: int = 5, side: int = 32, channels: int = 320) -> tuple[Timing, Timing]:
    """Time the probe block in fp32 and in bf16 with channels_last (median of ``repeat`` calls each)."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)

    def weight(*shape):
        return torch.randn(*shape, generator=generator) / shape[-1] ** 0.5

    conv1, conv2 = weight(channels, channels, 3, 3) / 3, weight(channels, channels, 3, 3) / 3
    qkv, out = weight(3 * channels, channels), weight(channels, channels)
    ff_in, ff_out = weight(8 * channels, channels), weight(channels, 4 * channels)
    x = torch.randn(2, channels, side, side, generator=generator)

    def block(h, dtype, channels_last):
        w1, w2, wqkv, wout, wff1, wff2 = (t.to(dtype) for t in (conv1, conv2, qkv, out, ff_in, ff_out))
        if channels_last:
            h, w1, w2 = (t.contiguous(memory_format=torch.channels_last) for t in (h, w1, w2))
        r = F.conv2d(F.silu(F.group_norm(h, 32)), w1, padding=1)
        h = h + F.conv2d(F.silu(F.group_norm(r, 32)), w2, padding=1)
        tokens = h.flatten(2).transpose(1, 2)
        q, k, v = F.linear(F.layer_norm(tokens, (channels,)), wqkv).chunk(3, dim=-1)
        heads = [t.unflatten(-1, (8, channels // 8)).transpose(1, 2) for t in (q, k, v)]
        tokens = tokens + F.linear(F.scaled_dot_product_attention(*heads).transpose(1, 2).flatten(2), wout)
        gate_in, gate = F.linear(F.layer_norm(tokens, (channels,)), wff1).chunk(2, dim=-1)
        return (tokens + F.linear(gate_in * F.gelu(gate), wff2)).float()

    def timed(dtype, channels_last):
        with torch.no_grad():
            result = block(x.to(dtype), dtype, channels_last)
            seconds = []
            for _ in range(repeat):
                start = time.perf_counter()
                block(x.to(dtype), dtype, channels_last)
                seconds.append(time.perf_counter() - start)
        return sorted(seconds)[len(seconds) // 2], result

    fp32_time, reference = timed(torch.float32, False)
    bf16_time, output = timed(torch.bfloat16, True)
    difference = float((output - reference).abs().mean() / reference.abs().mean())
    return Timing(fp32_time, 0.0), Timing(bf16_time, difference)


def fastest_cpu_precision(cache_file: Path, cpuinfo: str | None = None,
                          measure_fn: Callable[[], tuple[Timing, Timing]] = measure) -> CpuPrecision:
    """The precision ``--precision auto`` uses on this CPU: from ``cache_file`` when this machine was measured
    before, else measured now (only where bf16 is native) and written there."""
    import torch

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    if not native_bf16(cpu_flags(cpuinfo)):
        return CpuPrecision("fp32", False, "this CPU has no native bf16 (AVX512-BF16 or AMX): fp32")
    key = f"{cpu_model(cpuinfo) or 'cpu'} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    cached = _read(cache_file).get(key)
    if cached is not None:
        return CpuPrecision(**cached)
    choice = decide(*measure_fn())
    log.info("CPU precision measured: %s", choice.reason)
    _write(cache_file, {**_read(cache_file), key: asdict(choice)})
    return choice


def _read(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1))
        os.replace(temporary, path)
    except OSError as exc:  # a read-only output folder: measured again next start, nothing else lost
        log.warning("could not keep the CPU precision measurement in %s: %s", path, exc)
