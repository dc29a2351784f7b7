"""ControlNet files: layout detection, config from tensor shapes, conversion and a small cache.

Two single-file layouts are read: the original one (``control_model.*`` keys, as
lllyasviel's control_v11 files; ``.pth`` ones often without the prefix) and the
diffusers one (``controlnet_cond_embedding.*``, ``controlnet_down_blocks.*``...).
What the shapes show (widths, depths, attention, hint embedding and its number
of stride-2 convolutions, SDXL's size embedding) is read from them; what they
cannot show (attention heads, norm groups, activation) comes from the UNet of
the checkpoint the ControlNet runs with, as a ControlNet is a copy of that
UNet's encoder. A ControlNet for another family is refused with a message.
T2I-Adapters in the same folder are told apart by their keys (webui.models.t2i_adapter).
"""
from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path

import torch

from webui.detection.families import family_for_context_dim
from webui.models.loaded_lru import LoadedLRU
from webui.models.loader import build_module, read_state_dict
from webui.schemas import InvalidRequest, ModelLoadError

log = logging.getLogger(__name__)

ORIGINAL_PREFIX = "control_model."
DIFFUSERS_MARKER = "controlnet_cond_embedding.conv_in.weight"
ORIGINAL_MARKER = "input_hint_block.0.weight"


def detect_layout(keys) -> str:
    """"diffusers", "original" (control_model.* or bare ldm keys) or "unknown"."""
    keys = set(keys)
    if DIFFUSERS_MARKER in keys:
        return "diffusers"
    if ORIGINAL_PREFIX + ORIGINAL_MARKER in keys or ORIGINAL_MARKER in keys:
        return "original"
    return "unknown"


def _strip_original(state: dict) -> dict:
    if any(k.startswith(ORIGINAL_PREFIX) for k in state):
        return {k[len(ORIGINAL_PREFIX):]: v for k, v in state.items() if k.startswith(ORIGINAL_PREFIX)}
    return dict(state)


def _indices(keys, pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := regex.match(k))})


def original_to_diffusers(state: dict) -> dict:
    """Original-layout ControlNet tensors as a diffusers ControlNetModel state dict."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    ldm = _strip_original(state)
    levels = _indices(ldm, r"input_blocks\.(\d+)\.0\.op\.weight")  # downsamplers end each level but the last
    first_down = levels[0] if levels else len(_indices(ldm, r"input_blocks\.(\d+)\."))
    layers_per_block = first_down - 1
    converted = convert_controlnet_checkpoint({ORIGINAL_PREFIX + k: v for k, v in ldm.items()},
                                              {"layers_per_block": layers_per_block})
    # diffusers' converter assumes three stride-2 hint convolutions; map the hint block from its own indices.
    converted = {k: v for k, v in converted.items() if not k.startswith("controlnet_cond_embedding.") and v is not None}
    hint = _indices(ldm, r"input_hint_block\.(\d+)\.weight")
    names = ["conv_in"] + [f"blocks.{i}" for i in range(len(hint) - 2)] + ["conv_out"]
    for index, name in zip(hint, names):
        for part in ("weight", "bias"):
            converted[f"controlnet_cond_embedding.{name}.{part}"] = ldm[f"input_hint_block.{index}.{part}"]
    for old, new in (("label_emb.0.0", "add_embedding.linear_1"), ("label_emb.0.2", "add_embedding.linear_2")):
        for part in ("weight", "bias"):
            if f"{old}.{part}" in ldm:
                converted[f"{new}.{part}"] = ldm[f"{old}.{part}"]
    return converted


def _count(keys, prefix: str) -> int:
    found = _indices(keys, re.escape(prefix) + r"(\d+)\.")
    return found[-1] + 1 if found else 0


def infer_controlnet_config(state: dict) -> dict:
    """The ControlNetModel config fields its diffusers-layout tensors show."""
    keys = list(state)
    levels = _count(keys, "down_blocks.")
    if not levels:
        raise ModelLoadError("not a ControlNet: no down blocks")
    block_out = [state[f"down_blocks.{i}.resnets.0.conv2.weight"].shape[0] for i in range(levels)]
    depths = [_count(keys, f"down_blocks.{i}.attentions.0.transformer_blocks.") for i in range(levels)]
    cond_blocks = _count(keys, "controlnet_cond_embedding.blocks.")
    embedding = [state["controlnet_cond_embedding.conv_in.weight"].shape[0]]
    embedding += [state[f"controlnet_cond_embedding.blocks.{2 * j + 1}.weight"].shape[0]
                  for j in range(cond_blocks // 2)]
    context = next((v.shape[1] for k, v in state.items() if k.endswith("attn2.to_k.weight")), None)
    proj_in = next((v for k, v in state.items() if k.endswith("proj_in.weight")), None)
    mid_depth = _count(keys, "mid_block.attentions.0.transformer_blocks.")
    config = {
        "in_channels": state["conv_in.weight"].shape[1],
        "conditioning_channels": state[DIFFUSERS_MARKER].shape[1],
        "conditioning_embedding_out_channels": embedding,
        "block_out_channels": block_out,
        "layers_per_block": _count(keys, "down_blocks.0.resnets."),
        "down_block_types": ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths],
        "transformer_layers_per_block": [max(d, 1) for d in depths],
        "use_linear_projection": bool(proj_in is not None and proj_in.dim() == 2),
        "mid_block_type": "UNetMidBlock2DCrossAttn" if mid_depth else "UNetMidBlock2D",
    }
    if context is not None:
        config["cross_attention_dim"] = context
    if mid_depth and mid_depth != config["transformer_layers_per_block"][-1]:
        config["transformer_layers_per_block"][-1] = mid_depth
    if "add_embedding.linear_1.weight" in state:
        config["addition_embed_type"] = "text_time"
        config["projection_class_embeddings_input_dim"] = state["add_embedding.linear_1.weight"].shape[1]
    return config


def describe_family(context_dim: int | None, adm: int | None) -> str:
    """A family label for messages: "Stable Diffusion XL", or the kind of model when the widths are unusual."""
    family = family_for_context_dim(context_dim, adm) if context_dim else None
    if family is not None:
        return family.label
    kind = "an SDXL-type model" if adm else "an SD 1.x/2.x-type model"
    return f"{kind} with {context_dim}-wide text conditioning"


def check_family(name: str, config: dict, unet_config: dict, checkpoint: str) -> None:
    """Raise InvalidRequest (a 422 from the API) when the ControlNet does not fit the checkpoint's UNet."""
    mine = (config.get("cross_attention_dim"), config.get("projection_class_embeddings_input_dim"))
    theirs = (unet_config.get("cross_attention_dim"), unet_config.get("projection_class_embeddings_input_dim"))
    if mine != theirs:
        raise InvalidRequest(
            f"ControlNet {name} is for {describe_family(*mine)}, but the checkpoint {checkpoint} is "
            f"{describe_family(*theirs)}: choose a ControlNet made for this checkpoint's family",
            field="alwayson_scripts.controlnet.model")


def controlnet_config(shape_config: dict, unet_config: dict) -> dict:
    """The full ControlNetModel config: the UNet's values for what shapes cannot show, then the shapes'."""
    accepted = set(inspect.signature(_controlnet_class().__init__).parameters) - {"self"}
    config = {k: v for k, v in dict(unet_config).items() if k in accepted}
    unet_widths = list(unet_config.get("block_out_channels", []))
    config.update(shape_config)
    if list(shape_config["block_out_channels"]) != unet_widths:
        heads = unet_config.get("attention_head_dim", 8)
        if isinstance(heads, (list, tuple)):  # a narrower ControlNet: heads of the same width as the UNet's
            width = unet_widths[0] // heads[0] if unet_widths and heads[0] else 64
            config["attention_head_dim"] = [max(1, c // width) for c in shape_config["block_out_channels"]]
    if isinstance(config.get("attention_head_dim"), (list, tuple)):
        config["attention_head_dim"] = list(config["attention_head_dim"])[:len(config["block_out_channels"])]
    if config.get("num_attention_heads") is None:
        config.pop("num_attention_heads", None)
    return config


def _controlnet_class():
    from diffusers import ControlNetModel

    return ControlNetModel


def _controlnet_state(state: dict, name: str) -> dict:
    layout = detect_layout(state)
    if layout == "unknown":
        raise ModelLoadError(f"{name} is neither a ControlNet (original control_model.* or diffusers layout) "
                             "nor a T2I-Adapter this server reads")
    return original_to_diffusers(state) if layout == "original" else state


def load_control_model(path: Path, unet_config: dict, checkpoint: str, title: str, device, dtype):
    """The ControlNet or T2I-Adapter in ``path``, checked against the UNet of ``unet_config`` and built."""
    from webui.models import t2i_adapter

    state, _ = read_state_dict(Path(path))
    adapter_layout = t2i_adapter.detect_adapter_layout(state)
    if adapter_layout is not None:
        state = t2i_adapter.adapter_state(state, adapter_layout, unet_config)
        config = t2i_adapter.infer_adapter_config(state)
        t2i_adapter.check_adapter_fits(title, config, unet_config, checkpoint)
        return t2i_adapter.build_adapter(state, config, device, dtype)
    state = _controlnet_state(state, Path(path).name)
    shapes = infer_controlnet_config(state)
    check_family(title, shapes, unet_config, checkpoint)
    return build_controlnet(state, controlnet_config(shapes, unet_config), device, dtype)


def build_controlnet(state: dict, config: dict, device, dtype):
    """A ControlNetModel with these weights (built without random initialisation, loaded strictly)."""
    model = build_module(_controlnet_class(), config, state, "ControlNet")
    return torch.nn.Module.to(model, device=device, dtype=dtype)  # no diffusers fp32-module warning: none to keep


class ControlNetCache(LoadedLRU):
    """Loaded ControlNets and T2I-Adapters, by file hash and the UNet they fit; the model manager owns one.

    ``limit`` models stay loaded (LRU), so a job using the same units again does
    not read the files again.
    """

    def __init__(self, device, dtype, limit: int = 2):
        super().__init__(limit)
        self.device, self.dtype = device, dtype

    def get(self, info, unet_config: dict, checkpoint: str):
        """The ControlNet of catalog entry ``info`` ready to run beside a UNet of ``unet_config``."""
        key = (info.sha256, unet_config.get("cross_attention_dim"), repr(unet_config.get("attention_head_dim")),
               unet_config.get("norm_num_groups"), repr(unet_config.get("down_block_types")))
        return super().get(key, lambda: load_control_model(info.path, unet_config, checkpoint, info.title,
                                                           self.device, self.dtype))
