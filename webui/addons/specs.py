"""The guidance add-ons we ship, declared as their original extensions present them.

Titles, positional argument order, UI defaults and infotext keys follow:
sd-dynamic-thresholding (mcmonkeyprojects), the CFG Rescale extension, Forge's
FreeU and PerturbedAttentionGuidance "Integrated" scripts, and A1111's built-in
soft inpainting.
"""
from __future__ import annotations

from webui.addons.base import AddonSpec, Param

DYNTHRES_MODES = ("Constant", "Linear Down", "Cosine Down", "Half Cosine Down", "Linear Up", "Cosine Up",
                  "Half Cosine Up", "Power Up", "Power Down", "Linear Repeating", "Cosine Repeating", "Sawtooth")
DYNTHRES_MODES_WITH_VALUE = ("Power Up", "Power Down", "Linear Repeating", "Cosine Repeating", "Sawtooth")


class DynamicThresholding(AddonSpec):
    """Imagen-style dynamic thresholding in latent space: CFG at one scale, spread of another."""

    key = "dynamic_thresholding"
    title = "Dynamic Thresholding (CFG Scale Fix)"
    hooks = ("combine",)
    params = (
        Param("enabled", "Enable Dynamic Thresholding (CFG Scale Fix)", False, infotext="Dynamic thresholding enabled"),
        Param("mimic_scale", "Mimic CFG Scale", 7.0, 0.0, 100.0, infotext="Mimic scale", step=0.5),
        Param("threshold_percentile", "Top percentile of latents to clamp", 100.0, 0.0, 100.0,
              infotext="Threshold percentile", step=0.05),
        Param("mimic_mode", "Mimic Scale Scheduler", "Constant", choices=DYNTHRES_MODES, infotext="Mimic mode"),
        Param("mimic_scale_min", "Minimum value of the Mimic Scale Scheduler", 0.0, 0.0, 100.0,
              infotext="Mimic scale minimum", step=0.5),
        Param("cfg_mode", "CFG Scale Scheduler", "Constant", choices=DYNTHRES_MODES, infotext="CFG mode"),
        Param("cfg_scale_min", "Minimum value of the CFG Scale Scheduler", 0.0, 0.0, 100.0,
              infotext="CFG scale minimum", step=0.5),
        Param("sched_val", "Scheduler Value", 4.0, 0.0, 100.0, infotext="Scheduler value", step=0.5),
        Param("separate_feature_channels", "Separate Feature Channels", True, infotext="Separate Feature Channels"),
        Param("scaling_startpoint", "Scaling Startpoint", "MEAN", choices=("MEAN", "ZERO"),
              infotext="Scaling Startpoint"),
        Param("variability_measure", "Variability Measure", "AD", choices=("AD", "STD"),
              infotext="Variability Measure"),
        Param("interpolate_phi", "Interpolate Phi", 1.0, 0.0, 1.0, infotext="Interpolate Phi", step=0.01),
    )

    @classmethod
    def infotext(cls, values: dict) -> dict:
        """As the extension writes it: schedule keys only when a schedule is not Constant."""
        fields = super().infotext(values)
        if values["mimic_mode"] == "Constant":
            fields.pop("Mimic mode"), fields.pop("Mimic scale minimum")
        if values["cfg_mode"] == "Constant":
            fields.pop("CFG mode"), fields.pop("CFG scale minimum")
        if not {values["mimic_mode"], values["cfg_mode"]} & set(DYNTHRES_MODES_WITH_VALUE):
            fields.pop("Scheduler value")
        return fields


class CFGRescale(AddonSpec):
    """CFG rescale (Lin et al. 2023): the sampler's own ``cfg_rescale_phi``, reachable as an add-on.

    The extension has no enable box: phi above 0 turns it on. Its colour-fix
    arguments after phi are not supported and are ignored with a warning.
    """

    key = "cfg_rescale"
    title = "CFG Rescale Extension"
    hooks = ("combine",)
    params = (Param("phi", "CFG Rescale", 0.0, 0.0, 1.0, infotext="CFG Rescale phi", step=0.01),)

    @classmethod
    def is_enabled(cls, values: dict) -> bool:
        return values["phi"] > 0

    @classmethod
    def infotext(cls, values: dict) -> dict:
        return {}  # the sampler writes "CFG Rescale phi" itself

    @classmethod
    def from_infotext(cls, parsed: dict) -> dict | None:
        if "CFG Rescale phi" not in parsed:
            return None
        values = cls.from_named({"phi": parsed["CFG Rescale phi"]}, "CFG Rescale phi")
        return values if values["phi"] > 0 else None


# FreeU's published settings per model family (b1, b2, s1, s2); Forge's UI default first.
FREEU_PRESETS = {
    "Forge default": (1.01, 1.02, 0.99, 0.95),
    "SD 1.4": (1.3, 1.4, 0.9, 0.2),
    "SD 1.5": (1.5, 1.6, 0.9, 0.2),
    "SD 2.1": (1.4, 1.6, 0.9, 0.2),
    "SDXL": (1.3, 1.4, 0.9, 0.2),
}
FREEU_FAMILY_PRESET = {"sd1": "SD 1.5", "sd2": "SD 2.1", "sdxl": "SDXL"}


class FreeU(AddonSpec):
    """FreeU: backbone features scaled by b1/b2, skip features' low frequencies by s1/s2."""

    key = "freeu"
    title = "FreeU Integrated (SD 1.x, SD 2.x, SDXL)"
    hooks = ("unet",)
    aliases = ("FreeU Integrated",)
    params = (
        Param("enabled", "FreeU", False, infotext="freeu_enabled"),
        Param("b1", "B1", 1.01, 0.0, 2.0, infotext="freeu_b1", step=0.01),
        Param("b2", "B2", 1.02, 0.0, 2.0, infotext="freeu_b2", step=0.01),
        Param("s1", "S1", 0.99, 0.0, 4.0, infotext="freeu_s1", step=0.01),
        Param("s2", "S2", 0.95, 0.0, 4.0, infotext="freeu_s2", step=0.01),
        Param("start", "Start step", 0.0, 0.0, 1.0, infotext="freeu_start", step=0.01),
        Param("end", "End step", 1.0, 0.0, 1.0, infotext="freeu_end", step=0.01),
    )


PAG_LAYERS = ("middle", "down", "up", "all")


class PerturbedAttention(AddonSpec):
    """Perturbed-attention guidance: the positive rows again with self-attention replaced by identity."""

    key = "perturbed_attention"
    title = "PerturbedAttentionGuidance Integrated"
    hooks = ("unet", "combine")
    aliases = ("PerturbedAttentionGuidance Integrated (SD1.x, SD2.x, SDXL)",)
    params = (
        Param("enabled", "PerturbedAttentionGuidance", False, infotext="pagi_enabled"),
        Param("scale", "Scale", 3.0, 0.0, 100.0, infotext="pagi_scale", step=0.1),
        Param("attenuation", "Attenuation (linear, % of scale)", 0.0, 0.0, 100.0, infotext="pagi_attenuation",
              step=0.1),
        Param("start", "Start step", 0.0, 0.0, 1.0, infotext="pagi_start_step", step=0.01),
        Param("end", "End step", 1.0, 0.0, 1.0, infotext="pagi_end_step", step=0.01),
        # Ours, after the extension's arguments: which UNet blocks' self-attention is perturbed.
        Param("layers", "Applied layers", "middle", choices=PAG_LAYERS, infotext="pagi_layers"),
    )

    @classmethod
    def infotext(cls, values: dict) -> dict:
        fields = super().infotext(values)
        if values["layers"] == "middle":
            fields.pop("pagi_layers")
        return fields


class SoftInpainting(AddonSpec):
    """A1111's soft inpainting (differential diffusion): a soft mask gives each pixel its own strength."""

    key = "soft_inpainting"
    title = "Soft Inpainting"
    hooks = ("mask_blend",)
    modes = ("inpaint",)
    params = (
        Param("enabled", "Soft inpainting", False, infotext="Soft inpainting enabled"),
        Param("mask_blend_power", "Schedule bias", 1.0, 0.0, 8.0, infotext="Soft inpainting schedule bias",
              step=0.1),
        Param("mask_blend_scale", "Preservation strength", 0.5, 0.0, 8.0,
              infotext="Soft inpainting preservation strength", step=0.05),
        Param("inpaint_detail_preservation", "Transition contrast boost", 4.0, 1.0, 32.0,
              infotext="Soft inpainting transition contrast boost", step=0.5),
        Param("composite_mask_influence", "Mask influence", 0.0, 0.0, 1.0, infotext="Soft inpainting mask influence",
              step=0.05),
        Param("composite_difference_threshold", "Difference threshold", 0.5, 0.0, 8.0,
              infotext="Soft inpainting difference threshold", step=0.25),
        Param("composite_difference_contrast", "Difference contrast", 2.0, 0.0, 8.0,
              infotext="Soft inpainting difference contrast", step=0.25),
    )
