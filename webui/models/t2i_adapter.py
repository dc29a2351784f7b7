"""T2I-Adapter files: layout detection, conversion to diffusers' T2IAdapter, config from shapes, fit check.

A T2I-Adapter turns the control image into one feature map per UNet down block,
once per pass, and the UNet adds them inside its encoder (diffusers'
``down_intrablock_additional_residuals``). Three on-disk layouts are read:

- TencentARC's original full adapter (``conv_in``, ``body.N.block1``, ``body.N.in_conv``;
  the ``t2iadapter_*_sd14v1`` files and the SDXL ones): N counts the resnet
  blocks of every level in a row;
- the original light adapter (``body.L.in_conv``, ``body.L.body.J.block1``,
  ``body.L.out_conv``: the colour adapter);
- diffusers' layout (``adapter.*``), full, SDXL or light.

The pixel-unshuffle factor shows in the first convolution's input width (64 or
256 times the image channels: 8 for SD 1.x adapters, 16 for SDXL ones). Which
UNet an adapter fits is checked by the feature maps it gives against those the
UNet takes, so one made for another family is refused with a message.
"""
from __future__ import annotations

import re

import torch

from webui.schemas import InvalidRequest, ModelLoadError

DIFFUSERS_PREFIX = "adapter."
STYLE_MARKERS = ("style_embedding", "ln_post.weight", "transformer_layes.0.attn.in_proj_weight")


def _indices(keys, pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := regex.match(k))})


def detect_adapter_layout(keys) -> str | None:
    """"diffusers", "original", "original_light", "style" (not runnable here), or None: not a T2I-Adapter."""
    keys = set(keys)
    if any(k.startswith(DIFFUSERS_PREFIX + "body.") for k in keys):
        return "diffusers"
    if any(marker in k for k in keys for marker in STYLE_MARKERS):
        return "style"
    if "body.0.out_conv.weight" in keys and "body.0.body.0.block1.weight" in keys:
        return "original_light"
    if "conv_in.weight" in keys and "body.0.block1.weight" in keys and "body.0.block2.weight" in keys:
        return "original"
    return None


def _unsupported_original(state: dict) -> str | None:
    """Why these original full-adapter tensors do not fit diffusers' adapter, or None when they do."""
    if any(".skep." in k for k in state):
        return "it has skip convolutions (sk=False)"
    if any(".down_opt." in k for k in state):
        return "it downsamples by convolution (use_conv=True)"
    block2 = state["body.0.block2.weight"]
    if block2.dim() != 4 or block2.shape[-1] != 1:
        return "its second resnet convolutions are not 1x1"
    return None


def original_to_diffusers(state: dict, levels: int) -> dict:
    """An original full adapter's tensors in diffusers' layout, its ``levels`` levels of equally many blocks."""
    why = _unsupported_original(state)
    if why is not None:
        raise ModelLoadError(f"this T2I-Adapter variant is not supported: {why}")
    blocks = _indices(state, r"body\.(\d+)\.block1\.")
    if levels <= 0 or len(blocks) % levels:
        raise ModelLoadError(f"a T2I-Adapter with {len(blocks)} resnet blocks cannot serve a UNet of {levels} levels")
    per_level = len(blocks) // levels
    out = {}
    for key, value in state.items():
        match = re.match(r"body\.(\d+)\.(.+)$", key)
        if match is None:
            out[DIFFUSERS_PREFIX + key] = value
            continue
        index, rest = int(match.group(1)), match.group(2)
        level, block = divmod(index, per_level)
        if rest.startswith("in_conv."):
            out[f"{DIFFUSERS_PREFIX}body.{level}.{rest}"] = value
        else:
            out[f"{DIFFUSERS_PREFIX}body.{level}.resnets.{block}.{rest}"] = value
    return out


def light_to_diffusers(state: dict) -> dict:
    """An original light adapter's tensors in diffusers' layout (its inner ``body`` are the resnets)."""
    out = {}
    for key, value in state.items():
        out[DIFFUSERS_PREFIX + re.sub(r"^body\.(\d+)\.body\.", r"body.\1.resnets.", key)] = value
    return out


def diffusers_to_original(state: dict, config: dict) -> dict:
    """diffusers-layout adapter tensors in TencentARC's original layout (full or light), for writing test files."""
    out = {}
    per_level = config["num_res_blocks"]
    for key, value in state.items():
        key = key[len(DIFFUSERS_PREFIX):]
        if config["adapter_type"] == "light_adapter":
            out[re.sub(r"^body\.(\d+)\.resnets\.", r"body.\1.body.", key)] = value
            continue
        match = re.match(r"body\.(\d+)\.(?:resnets\.(\d+)\.)?(.+)$", key)
        if match is None:
            out[key] = value
            continue
        level, block, rest = int(match.group(1)), int(match.group(2) or 0), match.group(3)
        out[f"body.{level * per_level + block}.{rest}"] = value
    return out


def _unshuffle_factor(input_width: int) -> tuple[int, int]:
    """(pixel-unshuffle factor, image channels) from the first convolution's input width."""
    for factor in (8, 16):
        channels, rest = divmod(input_width, factor * factor)
        if rest == 0 and channels in (1, 3):
            return factor, channels
    raise ModelLoadError(f"a T2I-Adapter whose first layer reads {input_width} channels is not one this server knows")


def infer_adapter_config(state: dict) -> dict:
    """diffusers' T2IAdapter config from its (diffusers-layout) tensors."""
    keys = list(state)
    levels = _indices(keys, r"adapter\.body\.(\d+)\.")
    if not levels:
        raise ModelLoadError("not a T2I-Adapter: no body blocks")
    resnets = _indices(keys, r"adapter\.body\.0\.resnets\.(\d+)\.")
    if "adapter.conv_in.weight" in state:
        factor, channels = _unshuffle_factor(state["adapter.conv_in.weight"].shape[1])
        widths = [state[f"adapter.body.{i}.resnets.0.block1.weight"].shape[0] for i in levels]
        kind = "full_adapter_xl" if factor == 16 else "full_adapter"
    else:
        factor, channels = _unshuffle_factor(state["adapter.body.0.in_conv.weight"].shape[1])
        widths = [state[f"adapter.body.{i}.out_conv.weight"].shape[0] for i in levels[:-1]]
        kind = "light_adapter"
    return {"in_channels": channels, "channels": widths, "num_res_blocks": len(resnets),
            "downscale_factor": factor, "adapter_type": kind}


def adapter_features(config: dict) -> list[tuple[int, int]]:
    """(channels, divisor of the latent size) of each feature map the adapter gives (latents are 1/8)."""
    widths, kind = list(config["channels"]), config["adapter_type"]
    if kind == "light_adapter":
        return [(w, 2 ** i) for i, w in enumerate(widths)] + [(widths[-1], 2 ** len(widths))]
    divisor = config["downscale_factor"] // 8
    features = []
    for i, width in enumerate(widths):
        down = i > 0 if kind == "full_adapter" else i == 2
        divisor *= 2 if down else 1
        features.append((width, divisor))
    return features


def unet_features(unet_config: dict) -> list[tuple[int, int]]:
    """(channels, divisor of the latent size) where the UNet adds adapter features, in order.

    A cross-attention down block takes its feature before its downsampler, a plain one after
    it; one more feature of the last block's shape goes to the middle block (SDXL adapters).
    """
    widths = list(unet_config["block_out_channels"])
    types = list(unet_config["down_block_types"])
    divisor, places = 1, []
    for i, (width, kind) in enumerate(zip(widths, types)):
        last = i == len(types) - 1
        if "CrossAttn" in kind:
            places.append((width, divisor))
            divisor *= 1 if last else 2
        else:
            divisor *= 1 if last else 2
            places.append((width, divisor))
    return places + [(widths[-1], divisor)]


def _describe(features: list[tuple[int, int]]) -> str:
    return ", ".join(f"{c}@1/{d}" for c, d in features)


def adapter_fits(config: dict, unet_config: dict) -> bool:
    """Whether the adapter gives one feature map of the right shape per UNet down block (and maybe the middle)."""
    given, taken = adapter_features(config), unet_features(unet_config)
    blocks = len(unet_config["down_block_types"])
    return len(given) in (blocks, blocks + 1) and given == taken[:len(given)]


def check_adapter_fits(name: str, config: dict, unet_config: dict, checkpoint: str) -> None:
    """Raise InvalidRequest when the adapter's feature maps are not the ones this UNet takes."""
    if adapter_fits(config, unet_config):
        return
    given, taken = adapter_features(config), unet_features(unet_config)
    blocks = len(unet_config["down_block_types"])
    made_for = "SDXL" if config["downscale_factor"] == 16 else "SD 1.x/2.x"
    raise InvalidRequest(
        f"T2I-Adapter {name} looks made for {made_for}: its feature maps ({_describe(given)}, channels@latent "
        f"scale) are not the ones the checkpoint {checkpoint} takes ({_describe(taken[:blocks])}): choose an "
        "adapter made for this checkpoint's family", field="alwayson_scripts.controlnet.model")


def adapter_state(state: dict, layout: str, unet_config: dict) -> dict:
    """The adapter's tensors in diffusers' layout (the original full layout needs the UNet's level count)."""
    if layout == "style":
        raise ModelLoadError("style T2I-Adapters (CLIP vision) are not supported: use a ControlNet "
                             "or a reference-only unit instead")
    if layout == "original":  # levels are not in the tensors: try the counts a UNet of this depth takes
        blocks = len(_indices(state, r"body\.(\d+)\.block1\."))
        depth = len(unet_config["down_block_types"])
        counts = [n for n in dict.fromkeys((depth, depth + 1, 4)) if blocks % n == 0] or [depth]
        for levels in counts:
            converted = original_to_diffusers(state, levels)
            if adapter_fits(infer_adapter_config(converted), unet_config):
                return converted
        return original_to_diffusers(state, counts[0])
    if layout == "original_light":
        return light_to_diffusers(state)
    return dict(state)


def build_adapter(state: dict, config: dict, device, dtype):
    """A diffusers T2IAdapter with these weights (no random init, loaded strictly)."""
    from diffusers import T2IAdapter

    from webui.models.loader import build_module

    model = build_module(T2IAdapter, config, state, "T2I-Adapter")
    return torch.nn.Module.to(model, device=device, dtype=dtype)
