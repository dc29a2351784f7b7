"""Load a single-file checkpoint (A1111/LDM layout) into diffusers components, fully offline.

The one place where model files become modules: read the state dict safely,
detect the family, infer configs from shapes, map keys with diffusers' own
LDM converters, and build the modules without random initialisation.
"""
from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from webui.detection.detect import detect_model
from webui.models.architecture import Architecture, TextEncoderSpec, infer_architecture
from webui.models.ldm_names import OPENCLIP_NAMES
from webui.schemas import ModelLoadError
from webui.tensor_files import read_tensor_file

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]


# ---------------------------------------------------------------- reading files
def read_state_dict(path: Path) -> tuple[StateDict, dict]:
    """Tensors and metadata of a .safetensors or .ckpt/.pt checkpoint (through the one safe reader)."""
    path = Path(path)
    data, metadata = read_tensor_file(path, mmap=True)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path.name}: not a state dict")
    tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
    return tensors, metadata


# ---------------------------------------------------------------- key mapping
def convert_to_diffusers(state: StateDict, arch: Architecture) -> dict[str, StateDict]:
    """Split an LDM state dict into diffusers state dicts: unet, vae, text_encoder_0..n."""
    from diffusers.loaders import single_file_utils as sfu

    result = {
        "unet": sfu.convert_ldm_unet_checkpoint(state, arch.unet),
        "vae": sfu.convert_ldm_vae_checkpoint(state, arch.vae),
    }
    for index, spec in enumerate(arch.text_encoders):
        result[f"text_encoder_{index}"] = _convert_text_encoder(state, spec)
    return result


def _convert_text_encoder(state: StateDict, spec: TextEncoderSpec) -> StateDict:
    if spec.layout == "hf":
        prefix = spec.prefix
        out = {}
        for key, value in state.items():
            if key.startswith(prefix) and not key.endswith("position_ids"):
                key = key[len(prefix):]
                out[key if key.startswith(("text_model.", "text_projection")) else "text_model." + key] = value
        return out
    return _convert_openclip(state, spec)


def fit_text_encoder_keys(state: StateDict, module: torch.nn.Module) -> StateDict:
    """Checkpoints name CLIP weights ``text_model.*``; some transformers classes drop that prefix."""
    if any(k.startswith("text_model.") for k in module.state_dict()):
        return state
    return {k.removeprefix("text_model."): v for k, v in state.items()}


def _convert_openclip(state: StateDict, spec: TextEncoderSpec) -> StateDict:
    """OpenCLIP resblocks -> transformers CLIP names (split qkv), for the layers the config keeps."""
    p = spec.prefix
    hidden = spec.config["hidden_size"]
    layers = spec.config["num_hidden_layers"]
    out: StateDict = {
        "text_model.embeddings.token_embedding.weight": state[p + "token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": state[p + "positional_embedding"],
        "text_model.final_layer_norm.weight": state[p + "ln_final.weight"],
        "text_model.final_layer_norm.bias": state[p + "ln_final.bias"],
    }
    if spec.with_projection:
        out["text_projection.weight"] = state[p + "text_projection"].T.contiguous()
    for i in range(layers):
        src, dst = f"{p}transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for new, old in OPENCLIP_NAMES.items():
            for kind in ("weight", "bias"):
                out[f"{dst}{new}.{kind}"] = state[f"{src}{old}.{kind}"]
        for kind in ("weight", "bias"):
            qkv = state[f"{src}attn.in_proj_{kind}"]
            for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
                out[f"{dst}self_attn.{name}.{kind}"] = qkv[j * hidden:(j + 1) * hidden]
    return out


# ---------------------------------------------------------------- building modules
def build_module(cls, config: dict, state: StateDict, what: str):
    """Instantiate ``cls`` from ``config`` without random init and load ``state`` strictly."""
    with torch.device("meta"):
        module = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    if what.startswith("text encoder"):
        state = fit_text_encoder_keys(state, module)
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{what} weights do not fit the inferred architecture: {str(exc)[:500]}") from None
    _materialise_buffers(module)
    return module.eval().requires_grad_(False)


def _materialise_buffers(module: torch.nn.Module) -> None:
    """Non-persistent buffers are not in state dicts; rebuild the ones left on the meta device."""
    for name, buffer in list(module.named_buffers()):
        if buffer.device.type != "meta":
            continue
        if name.endswith("position_ids"):
            owner = module.get_submodule(name.rsplit(".", 1)[0])
            owner.register_buffer("position_ids", torch.arange(buffer.shape[-1]).expand((1, -1)), persistent=False)
        else:
            raise ModelLoadError(f"cannot initialise buffer {name}")


def _text_encoder_class(spec: TextEncoderSpec):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel

    def make(config: dict):
        return cls(CLIPTextConfig(**config))

    return make


@dataclass
class LoadedComponents:
    """The diffusers modules of one checkpoint, plus what is needed to run and describe it."""

    family: str
    inpainting: bool
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: list
    tokenizers: list
    scheduler_config: dict
    architecture: Architecture
    timings: dict = field(default_factory=dict)

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet, self.vae, *self.text_encoders]


def prepare_components(state: StateDict, metadata: dict, name: str = "checkpoint") -> tuple[Architecture, dict[str, StateDict], bool]:
    """Detect, infer and convert: the CPU part of loading, whose output a RAM cache can keep."""
    detection = detect_model({k: tuple(v.shape) for k, v in state.items()})
    if detection.kind != "checkpoint":
        raise ModelLoadError(f"{name} is not a Stable Diffusion checkpoint ({detection.kind}): {detection.reason}")
    arch = infer_architecture({k: tuple(v.shape) for k, v in state.items()}, detection.family, metadata)
    return arch, convert_to_diffusers(state, arch), detection.inpainting


def build_components(arch: Architecture, converted: dict[str, StateDict], inpainting: bool,
                     device: str, dtype: torch.dtype, place=None) -> LoadedComponents:
    """Modules on ``device`` in ``dtype`` from converted state dicts (tensors are shared when no cast is needed).

    ``place`` (optional) then puts the components where they run (the model manager's offload), before the
    one forward pass that tells SD2's two kinds apart.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from webui.models.tokenizers import load_clip_tokenizer

    unet = build_module(UNet2DConditionModel, arch.unet, converted["unet"], "UNet")
    vae = build_module(AutoencoderKL, arch.vae, converted["vae"], "VAE")
    encoders, tokenizers = [], []
    for index, spec in enumerate(arch.text_encoders):
        encoder = build_module(_text_encoder_class(spec), spec.config, converted[f"text_encoder_{index}"],
                               f"text encoder {spec.kind}")
        encoders.append(encoder)
        tokenizers.append(load_clip_tokenizer("clip_l" if spec.kind == "clip_l" else "open_clip"))
    components = LoadedComponents(arch.family.name, inpainting, unet, vae, encoders, tokenizers,
                                  dict(arch.scheduler), arch)
    for module in components.modules():
        if next(module.parameters()).dtype != dtype:
            module.to(dtype=dtype)
        module.to(device=device)
    if place is not None:
        place(components)
    if arch.family.name == "sd2" and not arch.prediction_from_metadata:
        components.scheduler_config["prediction_type"] = guess_sd2_prediction(unet)
    return components


@torch.no_grad()
def guess_sd2_prediction(unet) -> str:
    """SD2 768-v and 512-base share shapes; A1111's probe tells them apart by one tiny forward pass."""
    from webui.models.placement import execution_device

    device, dtype = execution_device(unet), next(unet.parameters()).dtype
    x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, device=device, dtype=dtype)
    cond = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, device=device, dtype=dtype)
    out = unet(x, torch.tensor([999], device=device), encoder_hidden_states=cond).sample
    return "v_prediction" if float((out - x[:, : out.shape[1]]).float().mean()) < -1 else "epsilon"


def load_checkpoint_file(path: Path, device: str, dtype: torch.dtype) -> LoadedComponents:
    """Read, convert and build one checkpoint file (no caching; see ModelManager for that)."""
    start = time.perf_counter()
    state, metadata = read_state_dict(path)
    read_done = time.perf_counter()
    arch, converted, inpainting = prepare_components(state, metadata, Path(path).name)
    del state
    components = build_components(arch, converted, inpainting, device, dtype)
    del converted
    gc.collect()
    components.timings = {"read": read_done - start, "total": time.perf_counter() - start}
    log.info("loaded %s (%s) in %.2fs", Path(path).name, arch.family.label, components.timings["total"])
    return components
