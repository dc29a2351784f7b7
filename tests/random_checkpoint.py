"""Random-weight checkpoints in the real single-file layout, tiny or full size.

Tests load these through the same code path as a user's file; benchmarks use the
full-size ones (real SD1.5/SDXL shapes) since real weights cannot be fetched.
"""
from __future__ import annotations

from pathlib import Path

import torch

from webui.detection.families import FAMILIES
from webui.models.ldm_export import save_ldm_checkpoint

# Small but structurally faithful: 2 levels with attention at the lower one, mid attention.
TINY_UNET = {"block_out_channels": (32, 64), "layers_per_block": 1,
             "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
             "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"), "norm_num_groups": 32}
FULL_UNET = {"block_out_channels": (320, 640, 1280, 1280), "layers_per_block": 2,
             "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
             "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3}
FULL_SDXL_UNET = {"block_out_channels": (320, 640, 1280), "layers_per_block": 2,
                  "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                  "transformer_layers_per_block": (1, 2, 10)}
TINY_VAE = {"block_out_channels": (32, 32, 32, 32), "layers_per_block": 1, "norm_num_groups": 32}
FULL_VAE = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2}
TINY_TEXT = {"num_hidden_layers": 2}
FULL_TEXT = {"clip_l": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12},
             "clip_g": {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32},
             "openclip_h": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24}}


def build_random_components(family: str, *, full_size: bool = False, inpainting: bool = False, seed: int = 0):
    """(unet, vae, text_encoders) with random weights for ``family`` in the family's real structure."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    fam = FAMILIES[family]
    torch.manual_seed(seed)
    sdxl = fam.adm_in_channels is not None
    # Text encoder widths; their sum is the UNet's cross-attention width.
    if full_size:
        widths = {k: FULL_TEXT[k]["hidden_size"] for k in fam.text_encoders}
    else:
        widths = {k: 64 // len(fam.text_encoders) for k in fam.text_encoders}
    context_dim = sum(widths.values())
    pooled_dim = widths.get("clip_g", 0)
    time_id_width = 256 if full_size else 8

    unet_cfg = dict(FULL_SDXL_UNET if (full_size and sdxl) else FULL_UNET if full_size else TINY_UNET)
    channels = unet_cfg["block_out_channels"]
    heads = fam.fixed_heads if fam.fixed_heads else [max(1, c // fam.head_dim) for c in channels]
    unet_cfg.update(
        in_channels=9 if inpainting else 4, out_channels=4, cross_attention_dim=context_dim,
        attention_head_dim=heads, use_linear_projection=fam.name != "sd1", sample_size=fam.default_size // 8,
    )
    if sdxl:
        numbers = 6 if family == "sdxl" else 5
        unet_cfg.update(addition_embed_type="text_time", addition_time_embed_dim=time_id_width,
                        projection_class_embeddings_input_dim=pooled_dim + numbers * time_id_width)
        if not full_size:
            unet_cfg["transformer_layers_per_block"] = (1, 2)
    unet = UNet2DConditionModel(**unet_cfg)
    vae_cfg = FULL_VAE if full_size else TINY_VAE
    levels = len(vae_cfg["block_out_channels"])
    vae = AutoencoderKL(**vae_cfg, down_block_types=("DownEncoderBlock2D",) * levels,
                        up_block_types=("UpDecoderBlock2D",) * levels,
                        latent_channels=4, scaling_factor=fam.vae_scaling_factor)
    encoders = []
    for kind in fam.text_encoders:
        sizes = dict(FULL_TEXT[kind]) if full_size else dict(TINY_TEXT, hidden_size=widths[kind],
                                                             intermediate_size=2 * widths[kind])
        config = CLIPTextConfig(
            vocab_size=49408, max_position_embeddings=77, num_attention_heads=max(1, sizes["hidden_size"] // 64),
            hidden_act="quick_gelu" if kind == "clip_l" else "gelu", bos_token_id=49406, eos_token_id=49407,
            pad_token_id=49407 if kind == "clip_l" else 0, projection_dim=max(pooled_dim, 1), **sizes,
        )
        encoders.append(CLIPTextModelWithProjection(config) if (kind == "clip_g" and sdxl) else CLIPTextModel(config))
    return unet.eval(), vae.eval(), [e.eval() for e in encoders]


def write_random_checkpoint(path: str | Path, family: str = "sd1", *, full_size: bool = False,
                            inpainting: bool = False, seed: int = 0, dtype: torch.dtype | None = None,
                            metadata: dict | None = None) -> Path:
    """Build random components and save them as a single-file checkpoint at ``path``."""
    unet, vae, encoders = build_random_components(family, full_size=full_size, inpainting=inpainting, seed=seed)
    return save_ldm_checkpoint(path, family, unet, vae, encoders, metadata=metadata, dtype=dtype)
