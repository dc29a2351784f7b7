"""Diffusers pipeline folders (``model_index.json`` + ``unet/``, ``vae/``, ``text_encoder*/``): recognise one,
find its weights files and read its family from its config files, without reading any weights."""
from __future__ import annotations

import json
from pathlib import Path

from webui.schemas import ModelLoadError

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors",
                "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
                "diffusion_pytorch_model.bin", "pytorch_model.bin")


def is_diffusers_folder(path: Path) -> bool:
    """Whether ``path`` is a diffusers pipeline folder with a UNet."""
    return path.is_dir() and (path / "model_index.json").is_file() and (path / "unet").is_dir()


def weights_file(component: Path) -> Path:
    """The weights of one component folder (safetensors preferred)."""
    for name in WEIGHT_NAMES:
        if (component / name).is_file():
            return component / name
    raise ModelLoadError(f"{component.parent.name}/{component.name} has no weights file")


def read_config(component: Path, file_name: str = "config.json") -> dict:
    """A component's JSON config without diffusers' private ``_`` keys."""
    try:
        data = json.loads((component / file_name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{component.parent.name}/{component.name}/{file_name} unreadable: {exc}") from None
    return {k: v for k, v in data.items() if not k.startswith("_")}


def family_of(folder: Path, unet_config: dict) -> str:
    """sd1/sd2/sdxl/sdxl_refiner from which text encoders exist and how they are configured."""
    has_first = (folder / "text_encoder").is_dir()
    has_second = (folder / "text_encoder_2").is_dir()
    if unet_config.get("addition_embed_type") == "text_time":
        return "sdxl" if has_first and has_second else "sdxl_refiner"
    if not has_first:
        raise ModelLoadError(f"{folder.name}: no text_encoder folder")
    act = read_config(folder / "text_encoder").get("hidden_act", "quick_gelu")
    return "sd1" if act == "quick_gelu" else "sd2"
