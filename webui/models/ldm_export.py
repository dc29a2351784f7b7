"""Write diffusers components as an A1111/LDM single-file checkpoint.

The inverse of the loader's key mapping, by the names of ``ldm_names``. Used by the
demo-model trainer, by test fixtures (tiny random checkpoints in the real on-disk layout) and by benchmarks
(full-size random checkpoints). A round-trip test against diffusers' own
LDM-to-diffusers converter keeps the two directions in agreement.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from webui.detection.families import TEXT_ENCODER_PREFIXES, UNET_PREFIX, VAE_PREFIX
from webui.models.ldm_names import OPENCLIP_NAMES, VAE_ATTENTION_NAMES, layers_per_block, ldm_unet_name


def _rename(state: dict, old: str, new: str, out: dict, renames: dict | None = None) -> None:
    for key, value in state.items():
        if key.startswith(old + "."):
            rest = key[len(old) + 1:]
            if renames:
                head, _, tail = rest.partition(".")
                rest = f"{renames.get(head, head)}.{tail}"
            out[new + "." + rest] = value


def unet_to_ldm(state: dict, config: dict) -> dict:
    """diffusers UNet2DConditionModel state dict -> LDM ``model.diffusion_model`` keys (without prefix)."""
    layers = layers_per_block(config["layers_per_block"], len(config["block_out_channels"]))
    attended = {int(k.split(".")[1]) for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    out: dict = {}
    for key, value in state.items():
        module, _, parameter = key.rpartition(".")
        name = ldm_unet_name(module, layers, attended.__contains__)
        if name is not None:
            out[f"{name}.{parameter}"] = value
    return out


def vae_to_ldm(state: dict, config: dict) -> dict:
    """diffusers AutoencoderKL state dict -> LDM ``first_stage_model`` keys (without prefix)."""
    n = len(config["block_out_channels"])
    out: dict = {}
    for part in ("encoder", "decoder"):
        _rename(state, f"{part}.conv_in", f"{part}.conv_in", out)
        _rename(state, f"{part}.conv_out", f"{part}.conv_out", out)
        _rename(state, f"{part}.conv_norm_out", f"{part}.norm_out", out)
        for k in range(2):
            _rename(state, f"{part}.mid_block.resnets.{k}", f"{part}.mid.block_{k + 1}", out,
                    {"conv_shortcut": "nin_shortcut"})
        for key, value in state.items():
            prefix = f"{part}.mid_block.attentions.0."
            if key.startswith(prefix):
                rest = key[len(prefix):].replace("to_out.0", "to_out")
                head, _, tail = rest.partition(".")
                if head != "group_norm" and value.ndim == 2:
                    value = value[:, :, None, None]
                out[f"{part}.mid.attn_1.{VAE_ATTENTION_NAMES[head]}.{tail}"] = value
    for i in range(n):
        _rename(state, f"encoder.down_blocks.{i}.resnets", f"encoder.down.{i}.block", out)
        _rename(state, f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv", out)
        _rename(state, f"decoder.up_blocks.{i}.resnets", f"decoder.up.{n - 1 - i}.block", out)
        _rename(state, f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{n - 1 - i}.upsample.conv", out)
    for key in list(out):
        if "conv_shortcut" in key:
            out[key.replace("conv_shortcut", "nin_shortcut")] = out.pop(key)
    _rename(state, "quant_conv", "quant_conv", out)
    _rename(state, "post_quant_conv", "post_quant_conv", out)
    return out


def openclip_to_ldm(state: dict, num_layers: int) -> dict:
    """transformers CLIP text model state dict -> OpenCLIP layout (merged qkv), without prefix."""
    out = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
    }
    if "text_projection.weight" in state:
        out["text_projection"] = state["text_projection.weight"].T.contiguous()
    for i in range(num_layers):
        src, dst = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for new, old in OPENCLIP_NAMES.items():
            for kind in ("weight", "bias"):
                out[f"{dst}{old}.{kind}"] = state[f"{src}{new}.{kind}"]
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{src}self_attn.{n}.{kind}"] for n in ("q_proj", "k_proj", "v_proj")])
    return out


def checkpoint_state_dict(family: str, unet, vae, text_encoders: list) -> dict:
    """The full LDM single-file state dict for a family's components."""
    out = {UNET_PREFIX + k: v for k, v in unet_to_ldm(unet.state_dict(), dict(unet.config)).items()}
    out.update({VAE_PREFIX + k: v for k, v in vae_to_ldm(vae.state_dict(), dict(vae.config)).items()})
    for prefix, encoder in zip(TEXT_ENCODER_PREFIXES[family], text_encoders):
        state = {k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v
                 for k, v in encoder.state_dict().items() if not k.endswith("position_ids")}
        if prefix.endswith("transformer."):
            out.update({prefix + k: v for k, v in state.items()})
        else:
            layers = encoder.config.num_hidden_layers
            out.update({prefix + k: v for k, v in openclip_to_ldm(state, layers).items()})
    return out


def save_ldm_checkpoint(path: str | Path, family: str, unet, vae, text_encoders: list,
                        metadata: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write components as one ``.safetensors`` in the A1111 layout; metadata values must be strings."""
    from safetensors.torch import save_file

    state = checkpoint_state_dict(family, unet, vae, text_encoders)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
             for k, v in state.items()}
    meta = {str(k): (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=meta)
    return path


def controlnet_to_ldm(state: dict, config: dict) -> dict:
    """diffusers ControlNetModel state dict -> the original ``control_model.*`` single-file keys."""
    out = unet_to_ldm(state, config)
    for key, value in state.items():
        if key.startswith("controlnet_down_blocks."):
            index, part = key.split(".")[1], key.split(".")[-1]
            out[f"zero_convs.{index}.0.{part}"] = value
    _rename(state, "controlnet_mid_block", "middle_block_out.0", out)
    blocks = len({k.split(".")[2] for k in state if k.startswith("controlnet_cond_embedding.blocks.")})
    _rename(state, "controlnet_cond_embedding.conv_in", "input_hint_block.0", out)
    for i in range(blocks):
        _rename(state, f"controlnet_cond_embedding.blocks.{i}", f"input_hint_block.{2 * (i + 1)}", out)
    _rename(state, "controlnet_cond_embedding.conv_out", f"input_hint_block.{2 * (blocks + 1)}", out)
    return {"control_model." + k: v for k, v in out.items()}
