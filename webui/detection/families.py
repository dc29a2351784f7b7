"""The model families we know, as data: what tells them apart and the rules shapes cannot show.

Shapes give channel widths, depths and which levels have attention; they do not
give attention head counts, activation functions, VAE scaling or the prediction
type. Those come from the family's rule here (or from a file's own metadata).
Numbers are the published Stable Diffusion configurations.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Shared by every SD family: the DDPM training schedule (diffusers' scheduler config keys).
SD_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


@dataclass(frozen=True)
class Family:
    """One model family: how to recognise it and the rules for what shapes do not tell."""

    name: str  # our id: sd1, sd2, sdxl, sdxl_refiner
    label: str  # for people
    context_dim: int  # width of the cross-attention context
    adm_in_channels: int | None  # SDXL's size/crop embedding input, None for SD1/2
    # Attention heads: either a fixed count per block (SD1) or a fixed width per head.
    fixed_heads: int | None
    head_dim: int | None
    text_encoders: tuple[str, ...]  # "clip_l" (OpenAI layout) / "clip_g" / "openclip_h" (OpenCLIP layout)
    vae_scaling_factor: float
    default_size: int
    default_prediction: str = "epsilon"
    scheduler: dict = field(default_factory=lambda: dict(SD_SCHEDULER_CONFIG))


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd1", "Stable Diffusion 1.x", 768, None, 8, None, ("clip_l",), 0.18215, 512),
        Family("sd2", "Stable Diffusion 2.x", 1024, None, None, 64, ("openclip_h",), 0.18215, 768),
        Family("sdxl", "Stable Diffusion XL", 2048, 2816, None, 64, ("clip_l", "clip_g"), 0.13025, 1024),
        Family("sdxl_refiner", "SDXL refiner", 1280, 2560, None, 64, ("clip_g",), 0.13025, 1024),
    )
}

# Where each text encoder lives in a single-file checkpoint, per family.
TEXT_ENCODER_PREFIXES: dict[str, tuple[str, ...]] = {
    "sd1": ("cond_stage_model.transformer.",),
    "sd2": ("cond_stage_model.model.",),
    "sdxl": ("conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."),
    "sdxl_refiner": ("conditioner.embedders.0.model.",),
}

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."

# Text encoder activation functions (not visible in shapes).
TEXT_ENCODER_ACT = {"clip_l": "quick_gelu", "clip_g": "gelu", "openclip_h": "gelu"}


def family_for_context_dim(context_dim: int, adm_in_channels: int | None) -> Family | None:
    """The family whose cross-attention width (and SDXL embedding input) matches."""
    for family in FAMILIES.values():
        if family.context_dim == context_dim and family.adm_in_channels == adm_in_channels:
            return family
    return None
