"""Reproduce an image from its infotext: the request to run again, what cannot be honoured, and the pixel difference.

``plan_reproduction(infotext, catalog)`` turns an image's parameters into a
GenerationRequest, finding the model, LoRAs, embeddings and VAE by the hashes
the text records, and lists every field it could not honour (a file missing or
with another hash, an unknown sampler, a setting this server does not have).
The UI and the API run the request through the normal job queue and compare
the new image with the original with ``pixel_difference``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from webui.infotext import infotext_to_request_fields, parse_infotext, request_field_keys
from webui.schemas import GenerationRequest, InvalidRequest

# Infotext keys a reproduction honours (besides those infotext_to_request_fields maps to request fields).
_HANDLED_KEYS = frozenset({
    "Prompt", "Negative prompt", "Model hash", "Model", "VAE hash", "VAE", "Lora hashes", "TI hashes", "Version",
    "Template", "Negative Template", "Size-1", "Size-2", "Hires resize-1", "Hires resize-2", "Face restoration",
})
# Keys that only an img2img or inpaint job writes: its source image is not in the PNG.
_IMG2IMG_KEYS = ("Mask blur", "Inpaint area", "Masked area padding", "Masked content", "Mask mode")
_LORA_TAG = re.compile(r"<(lora|lyco):([^:>]+)")


@dataclass
class ReproducePlan:
    """The request that repeats an image, and the fields it could not honour (each a sentence)."""

    request: GenerationRequest
    unmet: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)  # the parsed infotext


def _pairs(text: str) -> list[tuple[str, str]]:
    """``"a: 1234, b: 5678"`` (Lora hashes, TI hashes) as [(name, hash)]."""
    pairs = []
    for item in (text or "").split(","):
        name, _, value = item.rpartition(":")
        if name.strip():
            pairs.append((name.strip(), value.strip()))
    return pairs


def _checkpoint(catalog, parsed: dict, unmet: list[str]) -> str | None:
    recorded_hash, name = parsed.get("Model hash", ""), parsed.get("Model", "")
    checkpoints = catalog.checkpoints()
    if recorded_hash:
        for info in checkpoints:
            if info.sha256.startswith(recorded_hash.lower()):
                return info.title
    for info in checkpoints:
        if name and name in (info.model_name, info.name, Path(info.name).stem):
            if recorded_hash:
                unmet.append(f"Model: {name} is here with hash {info.short_hash}, the image was made with "
                             f"{recorded_hash}")
            return info.title
    if recorded_hash or name:
        label = " ".join(part for part in (name, f"[{recorded_hash}]" if recorded_hash else "") if part)
        unmet.append(f"Model: {label} is not here; the current model was used")
    return None


def _loras(catalog, parsed: dict, prompt: str, unmet: list[str]) -> str:
    """Check the recorded LoRAs; a LoRA found by its hash under another name is renamed in the prompt."""
    loras = catalog.loras()
    recorded = dict(_pairs(parsed.get("Lora hashes", "")))
    for _, tag_name in _LORA_TAG.findall(prompt):
        wanted = recorded.get(tag_name)
        by_name = next((info for info in loras if tag_name in (info.alias, info.name, Path(info.name).stem)), None)
        if wanted is None:
            if by_name is None:
                unmet.append(f"LoRA {tag_name} is not here")
            continue
        if by_name is not None and by_name.sha256.startswith(wanted.lower()):
            continue
        by_hash = next((info for info in loras if info.sha256.startswith(wanted.lower())), None)
        if by_hash is not None:
            prompt = prompt.replace(f":{tag_name}:", f":{by_hash.alias}:").replace(f":{tag_name}>", f":{by_hash.alias}>")
        elif by_name is not None:
            unmet.append(f"LoRA {tag_name} is here with hash {by_name.short_hash}, the image was made with {wanted}")
        else:
            unmet.append(f"LoRA {tag_name} [{wanted}] is not here")
    return prompt


def _vae(catalog, parsed: dict, unmet: list[str]) -> str:
    from webui.models.vae import vae_short_hash

    recorded_hash, name = parsed.get("VAE hash", ""), parsed.get("VAE", "")
    if not recorded_hash and not name:
        return "None"  # the checkpoint's own VAE
    hashes = getattr(catalog, "hashes", None)
    for info in catalog.vaes():
        if recorded_hash and vae_short_hash(info.path, hashes).startswith(recorded_hash.lower()):
            return info.name
    label = name or recorded_hash
    for info in catalog.vaes():
        if name and name in (info.name, info.stem):
            unmet.append(f"VAE: {label} is here with another hash than {recorded_hash}" if recorded_hash
                         else f"VAE: {label} has no recorded hash to check")
            return info.name
    unmet.append(f"VAE: {label} is not here; the checkpoint's own VAE was used")
    return "None"


def _embeddings(catalog, parsed: dict, unmet: list[str]) -> None:
    hashes = getattr(catalog, "hashes", None)
    files = {info.stem: info for info in catalog.embeddings()}
    for name, recorded_hash in _pairs(parsed.get("TI hashes", "")):
        info = files.get(name)
        if info is None:
            unmet.append(f"Embedding {name} is not here")
        elif hashes is not None and recorded_hash and not hashes.sha256(info.path).startswith(recorded_hash.lower()):
            unmet.append(f"Embedding {name} is here with another hash than {recorded_hash}")


def _sampler(fields: dict, unmet: list[str]) -> None:
    from webui.vocabulary import resolve

    spec, schedule, warnings = resolve(fields.get("sampler_name", "Euler a"), fields.get("scheduler", "Automatic"))
    unmet.extend(warnings)  # an unknown sampler or schedule type: the fallback was used
    fields["sampler_name"], fields["scheduler"] = spec.name, schedule.label


def plan_reproduction(infotext: str, catalog, *, version: str | None = None) -> ReproducePlan:
    """The GenerationRequest that makes the image described by ``infotext`` again, and what it cannot honour.

    Raises InvalidRequest when the text holds no generation parameters.
    ``version`` is this server's infotext ``Version``: an image from other
    software is reproduced as closely as this server can, and says so.
    """
    parsed = parse_infotext(infotext or "")
    if "Steps" not in parsed or "Seed" not in parsed:
        raise InvalidRequest("the image carries no generation parameters to reproduce", field="image")
    fields = infotext_to_request_fields(parsed)
    unmet: list[str] = []
    known = set(_HANDLED_KEYS) | request_field_keys()
    if any(key in parsed for key in _IMG2IMG_KEYS) or ("Denoising strength" in parsed and not fields.get("enable_hr")):
        unmet.append("img2img/inpaint: the source image is not stored in the PNG; reproduced as txt2img")
        known.update(_IMG2IMG_KEYS)
        fields.pop("denoising_strength", None)
    for key, value in parsed.items():
        if key.startswith("ControlNet ") and key[len("ControlNet "):].isdigit():
            unmet.append(f"{key}: the control image is not stored in the PNG; reproduced without this unit")
        elif key not in known:
            unmet.append(f"{key}: {value} is not supported here")
    fields.pop("checkpoint", None)
    fields["checkpoint"] = _checkpoint(catalog, parsed, unmet)
    fields["prompt"] = _loras(catalog, parsed, fields.get("prompt", ""), unmet)
    fields["vae"] = _vae(catalog, parsed, unmet)
    _embeddings(catalog, parsed, unmet)
    _sampler(fields, unmet)
    made_by = parsed.get("Version", "")
    if version and made_by != version:
        unmet.append(f"Version: made by {made_by or 'unknown software'}, reproduced by {version}: other kernels "
                     "and precision can change pixels slightly")
    fields.setdefault("randn_source", "GPU")  # A1111 leaves its default out of the text
    fields.setdefault("eta_noise_seed_delta", 0)
    fields.update(batch_size=1, n_iter=1, save_images=False)
    return ReproducePlan(GenerationRequest(**fields), unmet, parsed)


@dataclass
class PixelDifference:
    """How far a reproduction is from the original, in levels of 255."""

    mean_abs: float
    max: int
    same_size: bool

    def as_dict(self) -> dict:
        return {"mean_abs": self.mean_abs, "max": self.max, "same_size": self.same_size}


def pixel_difference(original: Image.Image, new: Image.Image) -> tuple[PixelDifference, Image.Image]:
    """Mean and largest absolute difference of the RGB pixels, and a difference image (brightened 4x).

    Images of different sizes are compared after resizing the new one to the
    original's size (and reported as not the same size).
    """
    same_size = original.size == new.size
    a = np.asarray(original.convert("RGB"), dtype=np.int16)
    b = np.asarray((new if same_size else new.resize(original.size, Image.LANCZOS)).convert("RGB"), dtype=np.int16)
    diff = np.abs(a - b)
    picture = Image.fromarray(np.clip(diff * 4, 0, 255).astype(np.uint8))
    return PixelDifference(float(diff.mean()), int(diff.max()), same_size), picture
