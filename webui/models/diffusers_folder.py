"""Checkpoints saved as diffusers folders (``model_index.json`` + ``unet/``, ``vae/``, ``text_encoder*/``).

Read with their own config files, offline: the result has the same shape as a
converted single-file checkpoint (an Architecture and per-component state
dicts), so the ModelManager caches and builds both the same way.
"""
from __future__ import annotations

from pathlib import Path

from webui.detection.families import FAMILIES
from webui.detection.folders import family_of, read_config, weights_file
from webui.models.architecture import Architecture, TextEncoderSpec
from webui.schemas import ModelLoadError
from webui.tensor_files import read_tensor_file


def _weights(component: Path) -> dict:
    data, _ = read_tensor_file(weights_file(component))
    if not isinstance(data, dict):
        raise ModelLoadError(f"{component.parent.name}/{component.name}: not a state dict")
    return data


def read_diffusers_folder(folder: Path) -> tuple[Architecture, dict, bool]:
    """(architecture, state dicts by component, inpainting) of a diffusers pipeline folder."""
    folder = Path(folder)
    unet_config = read_config(folder / "unet")
    family = FAMILIES[family_of(folder, unet_config)]
    converted = {"unet": _weights(folder / "unet"), "vae": _weights(folder / "vae")}
    encoders = []
    folders = [name for name in ("text_encoder", "text_encoder_2") if (folder / name).is_dir()]
    for index, (name, kind) in enumerate(zip(folders, family.text_encoders)):
        config = read_config(folder / name)
        config = {k: v for k, v in config.items() if k not in ("architectures", "torch_dtype", "transformers_version")}
        with_projection = family.name in ("sdxl", "sdxl_refiner") and kind == "clip_g"
        encoders.append(TextEncoderSpec(kind, name, "hf", config, with_projection))
        converted[f"text_encoder_{index}"] = {k: v for k, v in _weights(folder / name).items()
                                              if not k.endswith("position_ids")}
    scheduler = dict(family.scheduler)
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    if scheduler_file.is_file():
        scheduler.update(read_config(folder / "scheduler", "scheduler_config.json"))
    arch = Architecture(family, unet_config, read_config(folder / "vae"), encoders, scheduler,
                        prediction_from_metadata=scheduler_file.is_file())
    return arch, converted, unet_config.get("in_channels", 4) == 9
