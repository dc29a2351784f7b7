"""Learned live-preview decoders (A1111's "TAESD" preview): small networks from latents to a full-size picture.

Files live in ``models/VAE-approx/`` (A1111's folder) and are never downloaded:

- ``<checkpoint name>.safetensors``: a decoder made for that checkpoint's VAE (the
  demo model's ships with the project, trained by ``tools/train_demo_preview_decoder.py``);
- ``taesd_decoder.pth`` / ``.safetensors`` for SD 1.x/2.x and ``taesdxl_decoder.*`` for
  SDXL: madebyollin's TAESD decoders, as A1111 keeps them.

Both are diffusers' ``DecoderTiny``; the TAESD files number its layers from a leading
clamp (one more than diffusers' ``layers.N``). Widths, block counts and the number of
upsamplings are read from the tensors.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from webui.schemas import ModelLoadError

SUFFIXES = (".safetensors", ".pth", ".pt")
FAMILY_FILES = {"sd": "taesd_decoder", "sdxl": "taesdxl_decoder"}


def find_decoder_file(folder: Path, checkpoint_stem: str, family: str) -> Path | None:
    """The decoder for this checkpoint: one named after it first, else the family's TAESD file."""
    stems = [checkpoint_stem, FAMILY_FILES["sdxl" if family.startswith("sdxl") else "sd"]]
    for stem in stems:
        for suffix in SUFFIXES:
            path = Path(folder) / f"{stem}{suffix}"
            if path.is_file():
                return path
    return None


def to_diffusers_layout(state: dict) -> dict:
    """TAESD's ``N.…`` keys as DecoderTiny's ``layers.(N-1).…``; diffusers-layout keys unchanged."""
    if any(k.startswith(("layers.", "decoder.layers.")) for k in state):
        return {k.removeprefix("decoder."): v for k, v in state.items() if k.startswith(("layers.", "decoder."))}
    out = {}
    for key, value in state.items():
        index, rest = key.split(".", 1)
        out[f"layers.{int(index) - 1}.{rest}"] = value
    return out


def infer_decoder_config(state: dict) -> dict:
    """DecoderTiny's arguments from its tensors: a stage is blocks then a 3x3 convolution (an upsampling
    between stages); the last convolution has a bias and gives the picture."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"layers\.(\d+)\.", k))})
    first = state["layers.0.weight"]
    blocks, widths, count = [], [], 0
    for index in indices[1:]:
        if f"layers.{index}.conv.0.weight" in state:
            count += 1
            continue
        widths.append(state[f"layers.{index}.weight"].shape[1])
        blocks.append(count)
        count = 0
    if not blocks:
        raise ModelLoadError("not a preview decoder: no stages")
    return {"in_channels": first.shape[1], "out_channels": state[f"layers.{indices[-1]}.weight"].shape[0],
            "num_blocks": tuple(blocks), "block_out_channels": tuple(widths), "upsampling_scaling_factor": 2,
            "act_fn": "relu", "upsample_fn": "nearest"}


def load_decoder(path: Path, device, dtype) -> torch.nn.Module:
    """The DecoderTiny in ``path`` (weights read safely), ready on ``device``."""
    from diffusers.models.autoencoders.vae import DecoderTiny

    from webui.models.loader import read_state_dict

    state = to_diffusers_layout(read_state_dict(Path(path))[0])
    config = infer_decoder_config(state)
    with torch.device("meta"):
        decoder = DecoderTiny(**config)
    try:
        decoder.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{Path(path).name} is not a preview decoder this server reads: {str(exc)[:300]}") \
            from None
    return decoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
