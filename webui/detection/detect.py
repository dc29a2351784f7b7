"""What a model file is, from its tensor names and shapes alone (no weights read).

A pure function over ``{name: shape}``: checkpoints get a family (SD1, SD2,
SDXL, SDXL refiner) and an inpainting flag; LoRAs, VAEs and embeddings are
recognised so they are never loaded as a checkpoint.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from webui.detection.families import FAMILIES, UNET_PREFIX, Family, family_for_context_dim

Shapes = dict[str, tuple[int, ...]]

LORA_MARKERS = (
    "lora_down.weight", "lora_up.weight", "lora_A.weight", "lora_B.weight",
    ".lora.down.weight", "hada_w1_a", "lokr_w1", "lora_A.default.weight",
)


@dataclass(frozen=True)
class Detection:
    """Result of looking at a file's keys: ``kind`` is checkpoint, lora, vae, embedding or unknown."""

    kind: str
    family: str | None = None
    inpainting: bool = False
    unet_in_channels: int = 4
    reason: str = ""

    @property
    def label(self) -> str:
        if self.kind != "checkpoint":
            return self.kind
        fam = FAMILIES[self.family].label if self.family in FAMILIES else "unknown family"
        return fam + (" inpainting" if self.inpainting else "")


def _cross_attention_dim(shapes: Shapes) -> int | None:
    for name, shape in shapes.items():
        if name.startswith(UNET_PREFIX) and name.endswith("attn2.to_k.weight") and len(shape) == 2:
            return shape[1]
    return None


def detect_model(shapes: Shapes) -> Detection:
    """Classify a state dict by its key names and shapes."""
    names = list(shapes)
    if not names:
        return Detection("unknown", reason="the file holds no tensors")
    if any(name.startswith(UNET_PREFIX) for name in names):
        return _detect_checkpoint(shapes)
    if any(name.startswith(("lora_unet_", "lora_te")) or name.endswith(LORA_MARKERS) for name in names):
        return Detection("lora", reason="LoRA keys (lora_unet_/lora_te/lora_down)")
    vae_markers = ("encoder.conv_in.weight", "decoder.conv_in.weight")
    if any(name.endswith(vae_markers) for name in names):
        return Detection("vae", reason="autoencoder keys only")
    if "string_to_param.*" in names or "emb_params" in names or {"clip_l", "clip_g"} & set(names):
        return Detection("embedding", reason="textual inversion keys")
    if len(names) == 1 and len(next(iter(shapes.values()))) == 2:
        return Detection("embedding", reason="a single 2-D tensor")
    return Detection("unknown", reason="no Stable Diffusion UNet keys (model.diffusion_model.*)")


# Families told apart by where their text encoders live (works for any width);
# the cross-attention width table is the fallback for files without text encoders.
LAYOUT_MARKERS = (
    ("sdxl", "conditioner.embedders.1.model."),
    ("sdxl_refiner", "conditioner.embedders.0.model."),
    ("sd2", "cond_stage_model.model."),
    ("sd1", "cond_stage_model.transformer."),
)


def _family_by_layout(shapes: Shapes) -> str | None:
    for family, prefix in LAYOUT_MARKERS:
        if any(name.startswith(prefix) for name in shapes):
            return family
    return None


def _detect_checkpoint(shapes: Shapes) -> Detection:
    conv_in = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    if conv_in is None or len(conv_in) != 4:
        return Detection("unknown", reason="UNet without input_blocks.0.0.weight")
    in_channels = conv_in[1]
    context = _cross_attention_dim(shapes)
    adm = shapes.get(UNET_PREFIX + "label_emb.0.0.weight")
    family_name = _family_by_layout(shapes)
    if family_name is None:
        by_width: Family | None = family_for_context_dim(context, adm[1] if adm else None) if context else None
        reason = f"cross-attention width {context}" if by_width is None else f"{by_width.label} UNet"
        return Detection("unknown", family=by_width.name if by_width else None, unet_in_channels=in_channels,
                         reason=f"no text encoder in the file ({reason}); only full checkpoints are supported")
    if (adm is not None) != (FAMILIES[family_name].adm_in_channels is not None):
        return Detection("unknown", unet_in_channels=in_channels,
                         reason=f"text encoders of {family_name} but a UNet of another family")
    if in_channels not in (4, 9):
        return Detection(
            "unknown", family=family_name, unet_in_channels=in_channels,
            reason=f"{in_channels}-channel UNet input is not supported (4 = normal, 9 = inpainting)",
        )
    return Detection("checkpoint", family=family_name, inpainting=in_channels == 9, unet_in_channels=in_channels)


def count_indexed(shapes: Shapes, prefix: str) -> int:
    """Number of distinct integer indices N in keys ``prefix + N + .*``."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for name in shapes if (m := pattern.match(name))}
    return max(found) + 1 if found else 0


# Marker tensors that v-prediction / zero-terminal-SNR checkpoints carry (NoobAI-XL, Illustrious v-pred).
V_PREDICTION_KEY = "v_pred"
ZERO_TERMINAL_SNR_KEY = "ztsnr"


def noise_schedule_markers(shapes: Shapes, metadata: dict | None = None) -> dict:
    """Scheduler settings a file declares: v-prediction and zero terminal SNR (marker keys or modelspec metadata).

    >>> noise_schedule_markers({"v_pred": (0,), "ztsnr": (0,)})
    {'prediction_type': 'v_prediction', 'rescale_betas_zero_snr': True}
    >>> noise_schedule_markers({}, {"modelspec.prediction_type": "v"})
    {'prediction_type': 'v_prediction'}
    """
    metadata = metadata or {}
    found: dict = {}
    prediction = str(metadata.get("modelspec.prediction_type", "")).lower().replace("-", "_")
    if V_PREDICTION_KEY in shapes or prediction in ("v", "v_prediction"):
        found["prediction_type"] = "v_prediction"
    elif prediction in ("epsilon", "eps"):
        found["prediction_type"] = "epsilon"
    if ZERO_TERMINAL_SNR_KEY in shapes or str(metadata.get("modelspec.zero_terminal_snr", "")).lower() == "true":
        found["rescale_betas_zero_snr"] = True
    return found
