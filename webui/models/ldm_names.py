"""The one table of layer names between A1111/LDM single-file checkpoints and diffusers/transformers modules.

The checkpoint writer (``ldm_export``), the loader's OpenCLIP text-encoder conversion and the LoRA
matcher (kohya names SDXL layers by their LDM/SGM names) all read it, so both directions agree.
"""
from __future__ import annotations

import re
from typing import Callable

# diffusers ResnetBlock2D child -> LDM ResBlock child.
UNET_RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
# diffusers UNet modules outside the down/mid/up blocks -> LDM names.
UNET_TOP_NAMES = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
# diffusers VAE mid-block attention child -> LDM AttnBlock child.
VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
# transformers CLIP encoder layer child -> OpenCLIP resblock child (q/k/v are merged into attn.in_proj there).
OPENCLIP_NAMES = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
                  "self_attn.out_proj": "attn.out_proj"}


def layers_per_block(value, count: int) -> list[int]:
    """A UNet config's ``layers_per_block`` (one number or one per block) as one number per down block."""
    if isinstance(value, int):
        return [value] * count
    return [int(v) for v in value]


def ldm_unet_name(path: str, layers: list[int], up_has_attention: Callable[[int], bool]) -> str | None:
    """The LDM/SGM name of a diffusers UNet module path, or None for paths outside the table.

    ``down_blocks.1.attentions.0.proj_in`` -> ``input_blocks.4.1.proj_in`` with two layers per block;
    ``layers`` is ``layers_per_block(...)``; ``up_has_attention(i)`` tells whether up block ``i`` has
    attentions (its upsampler is then the third child of the LDM output block).
    """
    if path in UNET_TOP_NAMES:
        return UNET_TOP_NAMES[path]

    def resnet_rest(rest: str) -> str:
        head, _, tail = rest.partition(".")
        head = UNET_RESNET_NAMES.get(head, head)
        return f"{head}.{tail}" if tail else head

    match = re.match(r"^down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)$", path)
    if match:
        block, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        start = 1 + sum(n + 1 for n in layers[:block])
        if kind == "downsamplers":
            return f"input_blocks.{start + layers[block]}.0.{rest.replace('conv', 'op', 1)}"
        if kind == "resnets":
            return f"input_blocks.{start + index}.0.{resnet_rest(rest)}"
        return f"input_blocks.{start + index}.1.{rest}"
    match = re.match(r"^mid_block\.(resnets|attentions)\.(\d+)\.(.+)$", path)
    if match:
        kind, index, rest = match[1], int(match[2]), match[3]
        if kind == "attentions":
            return f"middle_block.1.{rest}"
        return f"middle_block.{0 if index == 0 else 2}.{resnet_rest(rest)}"
    match = re.match(r"^up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)$", path)
    if match:
        block, kind, index, rest = int(match[1]), match[2], int(match[3]), match[4]
        up_layers = list(reversed(layers))
        start = sum(n + 1 for n in up_layers[:block])
        if kind == "upsamplers":
            return f"output_blocks.{start + up_layers[block]}.{2 if up_has_attention(block) else 1}.{rest}"
        if kind == "resnets":
            return f"output_blocks.{start + index}.0.{resnet_rest(rest)}"
        return f"output_blocks.{start + index}.1.{rest}"
    return None
