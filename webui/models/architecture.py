"""Diffusers configs inferred from a single-file checkpoint's shapes (ComfyUI-style detection).

Channel widths, depths, attention placement and text-encoder sizes are read from
the tensors' shapes, so distilled and small variants load as well as the
published sizes. What shapes cannot show (attention heads, activations, VAE
scaling) comes from the family rule in ``families.py`` or from the file's
``webui.architecture`` metadata (which the shipped demo model carries).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from webui.detection.detect import Shapes, count_indexed, noise_schedule_markers
from webui.detection.families import (
    FAMILIES, TEXT_ENCODER_ACT, TEXT_ENCODER_PREFIXES, UNET_PREFIX, VAE_PREFIX, Family,
)
from webui.schemas import ModelLoadError

ARCHITECTURE_METADATA_KEY = "webui.architecture"


@dataclass
class TextEncoderSpec:
    """One text encoder: where its keys live, its layout and its transformers config."""

    kind: str  # clip_l, clip_g, openclip_h
    prefix: str
    layout: str  # "hf" (cond_stage_model.transformer.text_model.*) or "openclip" (resblocks)
    config: dict
    with_projection: bool


@dataclass
class Architecture:
    """Everything needed to build the diffusers components of one checkpoint."""

    family: Family
    unet: dict
    vae: dict
    text_encoders: list[TextEncoderSpec]
    scheduler: dict
    prediction_from_metadata: bool = False


def _shape(shapes: Shapes, key: str) -> tuple[int, ...]:
    if key not in shapes:
        raise ModelLoadError(f"checkpoint is missing {key}")
    return shapes[key]


def _attention_depth(shapes: Shapes, prefix: str) -> int:
    return count_indexed(shapes, prefix + "transformer_blocks.")


def infer_unet_config(shapes: Shapes, family: Family) -> dict:
    """UNet2DConditionModel config from the LDM UNet's shapes."""
    p = UNET_PREFIX
    conv_in = _shape(shapes, p + "input_blocks.0.0.weight")
    n_input = count_indexed(shapes, p + "input_blocks.")
    levels: list[dict] = [{"channels": [], "attn": []}]
    for i in range(1, n_input):
        if p + f"input_blocks.{i}.0.op.weight" in shapes:
            levels.append({"channels": [], "attn": []})
            continue
        out = _shape(shapes, p + f"input_blocks.{i}.0.out_layers.3.weight")[0]
        levels[-1]["channels"].append(out)
        attn_prefix = p + f"input_blocks.{i}.1."
        levels[-1]["attn"].append(_attention_depth(shapes, attn_prefix))
    layer_counts = {len(level["channels"]) for level in levels}
    if len(layer_counts) != 1 or 0 in layer_counts:
        raise ModelLoadError("UNet levels with different numbers of layers are not supported")
    layers_per_block = layer_counts.pop()
    block_out = [level["channels"][-1] for level in levels]
    depths = [max(level["attn"]) for level in levels]
    has_attn = [d > 0 for d in depths]

    mid_depth = _attention_depth(shapes, p + "middle_block.1.")
    proj_in = next((shapes[k] for k in shapes if k.startswith(p) and k.endswith("proj_in.weight")), None)
    if family.fixed_heads is not None:
        heads: int | list[int] = family.fixed_heads
    else:
        heads = [max(1, c // family.head_dim) for c in block_out]
    config = {
        "sample_size": family.default_size // 8,
        "in_channels": conv_in[1],
        "out_channels": _shape(shapes, p + "out.2.weight")[0],
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(has_attn)],
        "block_out_channels": block_out,
        "layers_per_block": layers_per_block,
        "cross_attention_dim": _context_dim(shapes),
        "attention_head_dim": heads,
        "use_linear_projection": bool(proj_in is not None and len(proj_in) == 2),
        "transformer_layers_per_block": [max(d, 1) for d in depths],
        "mid_block_type": "UNetMidBlock2DCrossAttn" if mid_depth else None,
        "upcast_attention": family.name == "sd2",
    }
    if mid_depth and mid_depth != 1:
        # diffusers takes the mid block's depth from the last level's value.
        config["transformer_layers_per_block"][-1] = mid_depth
    if family.adm_in_channels is not None:
        adm = _shape(shapes, p + "label_emb.0.0.weight")[1]
        # adm = pooled text width + (6 or 5 size/crop/score numbers) x the time-id embedding width.
        pooled = next((s[1] for k, s in shapes.items() if k.endswith("model.text_projection")), 1280)
        numbers = 6 if family.name == "sdxl" else 5
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=(adm - pooled) // numbers,
            projection_class_embeddings_input_dim=adm,
        )
    return config


def _context_dim(shapes: Shapes) -> int:
    for name, shape in shapes.items():
        if name.startswith(UNET_PREFIX) and name.endswith("attn2.to_k.weight"):
            return shape[1]
    raise ModelLoadError("UNet has no cross-attention layers")


def _norm_groups(channels: list[int]) -> int:
    return 32 if all(c % 32 == 0 for c in channels) else math.gcd(*channels)


def infer_vae_config(shapes: Shapes, family: Family) -> dict:
    """AutoencoderKL config from the LDM first_stage_model shapes."""
    p = VAE_PREFIX
    n_levels = count_indexed(shapes, p + "encoder.down.")
    if n_levels == 0:
        raise ModelLoadError("checkpoint has no VAE (first_stage_model.*)")
    block_out = [_shape(shapes, p + f"encoder.down.{i}.block.0.conv2.weight")[0] for i in range(n_levels)]
    return {
        "in_channels": _shape(shapes, p + "encoder.conv_in.weight")[1],
        "out_channels": _shape(shapes, p + "decoder.conv_out.weight")[0],
        "down_block_types": ["DownEncoderBlock2D"] * n_levels,
        "up_block_types": ["UpDecoderBlock2D"] * n_levels,
        "block_out_channels": block_out,
        "layers_per_block": count_indexed(shapes, p + "encoder.down.0.block."),
        "latent_channels": _shape(shapes, p + "post_quant_conv.weight")[0],
        "norm_num_groups": _norm_groups(block_out),
        "sample_size": family.default_size,
        "scaling_factor": family.vae_scaling_factor,
    }


def _clip_config(kind: str, hidden: int, vocab: int, positions: int, layers: int, inter: int, proj: int | None) -> dict:
    config = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64),
        "max_position_embeddings": positions,
        "hidden_act": TEXT_ENCODER_ACT[kind],
        "layer_norm_eps": 1e-5,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": 49407 if kind == "clip_l" else 0,
    }
    if proj is not None:
        config["projection_dim"] = proj
    return config


def infer_text_encoders(shapes: Shapes, family: Family) -> list[TextEncoderSpec]:
    """Text encoder specs for the family's encoders, sized from their shapes."""
    specs = []
    for kind, prefix in zip(family.text_encoders, TEXT_ENCODER_PREFIXES[family.name]):
        with_projection = family.name in ("sdxl", "sdxl_refiner") and kind == "clip_g"
        if kind == "clip_l":
            tm = prefix + "text_model."
            vocab, hidden = _shape(shapes, tm + "embeddings.token_embedding.weight")
            positions = _shape(shapes, tm + "embeddings.position_embedding.weight")[0]
            layers = count_indexed(shapes, tm + "encoder.layers.")
            inter = _shape(shapes, tm + "encoder.layers.0.mlp.fc1.weight")[0]
            config = _clip_config(kind, hidden, vocab, positions, layers, inter, None)
            specs.append(TextEncoderSpec(kind, prefix, "hf", config, False))
        else:
            vocab, hidden = _shape(shapes, prefix + "token_embedding.weight")
            positions = _shape(shapes, prefix + "positional_embedding")[0]
            layers = count_indexed(shapes, prefix + "transformer.resblocks.")
            inter = _shape(shapes, prefix + "transformer.resblocks.0.mlp.c_fc.weight")[0]
            proj = shapes.get(prefix + "text_projection")
            if family.name == "sd2":
                # SD2 conditions on the penultimate layer; like diffusers, drop the last one.
                layers -= 1
            config = _clip_config(kind, hidden, vocab, positions, layers, inter, proj[1] if with_projection and proj else None)
            specs.append(TextEncoderSpec(kind, prefix, "openclip", config, with_projection))
    return specs


def infer_architecture(shapes: Shapes, family_name: str, metadata: dict | None = None) -> Architecture:
    """Configs for every component; ``webui.architecture`` metadata overrides inferred values."""
    family = FAMILIES[family_name]
    unet = infer_unet_config(shapes, family)
    vae = infer_vae_config(shapes, family)
    encoders = infer_text_encoders(shapes, family)
    scheduler = dict(family.scheduler)
    override = _architecture_metadata(metadata or {})
    unet.update(override.get("unet", {}))
    vae.update(override.get("vae", {}))
    for spec, extra in zip(encoders, override.get("text_encoders", [])):
        spec.config.update(extra)
    markers = noise_schedule_markers(shapes, metadata)  # v_pred / ztsnr keys, modelspec.prediction_type
    scheduler.update(markers)
    scheduler.update(override.get("scheduler", {}))
    if "prediction_type" in override:
        scheduler["prediction_type"] = override["prediction_type"]
    declared = "prediction_type" in override or "prediction_type" in markers
    return Architecture(family, unet, vae, encoders, scheduler, declared)


SAFE_OVERRIDE_KEYS = {
    "unet": {"attention_head_dim", "sample_size", "upcast_attention", "norm_num_groups", "act_fn", "norm_eps",
             "time_embedding_type", "flip_sin_to_cos", "freq_shift", "only_cross_attention", "dual_cross_attention"},
    "vae": {"norm_num_groups", "scaling_factor", "sample_size", "act_fn", "shift_factor"},
    "text_encoders": {"num_attention_heads", "hidden_act", "layer_norm_eps"},
    "scheduler": {"prediction_type", "beta_start", "beta_end", "beta_schedule", "num_train_timesteps",
                  "timestep_spacing", "steps_offset"},
}


def _architecture_metadata(metadata: dict) -> dict:
    """The part of a file's ``webui.architecture`` JSON that shapes cannot show; everything else is ignored."""
    raw = metadata.get(ARCHITECTURE_METADATA_KEY)
    result: dict = {}
    prediction = metadata.get("modelspec.prediction_type")
    if prediction in ("epsilon", "v"):
        result["prediction_type"] = "v_prediction" if prediction == "v" else "epsilon"
    if not raw:
        return result
    try:
        data = json.loads(raw)
    except ValueError:
        return result
    for part in ("unet", "vae", "scheduler"):
        if isinstance(data.get(part), dict):
            result[part] = {k: v for k, v in data[part].items() if k in SAFE_OVERRIDE_KEYS[part]}
    if isinstance(data.get("text_encoders"), list):
        result["text_encoders"] = [
            {k: v for k, v in te.items() if k in SAFE_OVERRIDE_KEYS["text_encoders"]}
            for te in data["text_encoders"] if isinstance(te, dict)
        ]
    if data.get("prediction_type") in ("epsilon", "v_prediction"):
        result["prediction_type"] = data["prediction_type"]
    return result
