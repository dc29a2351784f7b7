"""Checkpoints saved as diffusers folders (``model_index.json`` + ``unet/``, ``vae/``, ``text_encoder*/``).

Read with their own config files, offline: the result has the same shape as a
converted single-file checkpoint (an Architecture and per-component state
dicts), so the ModelManager caches and builds both the same way.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from webui.models.architecture import Architecture, TextEncoderSpec
from webui.models.families import FAMILIES
from webui.schemas import ModelLoadError

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "model.safetensors",
                "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
                "diffusion_pytorch_model.bin", "pytorch_model.bin")


def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and (path / "model_index.json").is_file() and (path / "unet").is_dir()


def weights_file(component: Path) -> Path:
    """The weights of one component folder (safetensors preferred)."""
    for name in WEIGHT_NAMES:
        if (component / name).is_file():
            return component / name
    raise ModelLoadError(f"{component.parent.name}/{component.name} has no weights file")


def _config(component: Path, file_name: str = "config.json") -> dict:
    try:
        data = json.loads((component / file_name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{component.parent.name}/{component.name}/{file_name} unreadable: {exc}") from None
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _weights(component: Path) -> dict:
    path = weights_file(component)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelLoadError(f"{path} refused: only plain tensors are accepted ({exc})") from None


def family_of(folder: Path, unet_config: dict) -> str:
    """sd1/sd2/sdxl/sdxl_refiner from which text encoders exist and how they are configured."""
    has_first = (folder / "text_encoder").is_dir()
    has_second = (folder / "text_encoder_2").is_dir()
    if unet_config.get("addition_embed_type") == "text_time":
        return "sdxl" if has_first and has_second else "sdxl_refiner"
    if not has_first:
        raise ModelLoadError(f"{folder.name}: no text_encoder folder")
    act = _config(folder / "text_encoder").get("hidden_act", "quick_gelu")
    return "sd1" if act == "quick_gelu" else "sd2"


def read_diffusers_folder(folder: Path) -> tuple[Architecture, dict, bool]:
    """(architecture, state dicts by component, inpainting) of a diffusers pipeline folder."""
    folder = Path(folder)
    unet_config = _config(folder / "unet")
    family = FAMILIES[family_of(folder, unet_config)]
    converted = {"unet": _weights(folder / "unet"), "vae": _weights(folder / "vae")}
    encoders = []
    folders = [name for name in ("text_encoder", "text_encoder_2") if (folder / name).is_dir()]
    for index, (name, kind) in enumerate(zip(folders, family.text_encoders)):
        config = _config(folder / name)
        config = {k: v for k, v in config.items() if k not in ("architectures", "torch_dtype", "transformers_version")}
        with_projection = family.name in ("sdxl", "sdxl_refiner") and kind == "clip_g"
        encoders.append(TextEncoderSpec(kind, name, "hf", config, with_projection))
        converted[f"text_encoder_{index}"] = {k: v for k, v in _weights(folder / name).items()
                                              if not k.endswith("position_ids")}
    scheduler = dict(family.scheduler)
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    if scheduler_file.is_file():
        scheduler.update(_config(folder / "scheduler", "scheduler_config.json"))
    arch = Architecture(family, unet_config, _config(folder / "vae"), encoders, scheduler,
                        prediction_from_metadata=scheduler_file.is_file())
    return arch, converted, unet_config.get("in_channels", 4) == 9
