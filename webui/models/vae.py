"""External VAE files (models/VAE): read one into a new AutoencoderKL shaped like the loaded one.

Accepted layouts: LDM (``encoder.down.0.block.0...``, what A1111 users download),
the same under ``first_stage_model.`` (a VAE cut from a checkpoint, or a whole
checkpoint), and diffusers (``encoder.down_blocks.0.resnets.0...``). The key
mapping is diffusers' own ``convert_ldm_vae_checkpoint``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from webui.schemas import ModelLoadError
from webui.tensor_files import read_tensor_file

VAE_FILE_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")
_PREFIXES = ("first_stage_model.", "vae.")
_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


def read_vae_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The VAE tensors of a file, prefix removed, in whichever layout the file uses."""
    path = Path(path)
    if path.suffix.lower() not in VAE_FILE_SUFFIXES:
        raise ModelLoadError(f"VAE file {path.name} was refused: only {', '.join(VAE_FILE_SUFFIXES)} files are read")
    data, _ = read_tensor_file(path, "VAE file")
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelLoadError(f"VAE file {path.name} does not hold a state dict")
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    for prefix in _PREFIXES:
        if any(k.startswith(prefix + "decoder.") for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            break
    state = {k: v for k, v in tensors.items() if k.startswith(_PARTS)}
    if not any(k.startswith("decoder.") for k in state):
        raise ModelLoadError(f"VAE file {path.name} holds no VAE decoder weights; is it a VAE?")
    return state


def _is_ldm_layout(state: dict) -> bool:
    return any(k.startswith(("encoder.down.", "decoder.up.", "decoder.mid.block_", "encoder.mid.block_")) for k in state)


def load_vae_file(path: Path, like) -> "AutoencoderKL":  # noqa: F821 - diffusers is imported lazily
    """A new AutoencoderKL with ``like``'s config, device and dtype, holding the weights of ``path``.

    Raises ``ModelLoadError`` naming the file when it cannot be read or its
    weights do not fit ``like`` (for example an SDXL VAE on an SD1 model whose
    VAE config differs, or a file that is not a VAE).
    """
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    path = Path(path)
    state = read_vae_state_dict(path)
    config = dict(like.config)
    if _is_ldm_layout(state):
        try:
            state = convert_ldm_vae_checkpoint(state, config)
        except (KeyError, IndexError, ValueError) as exc:
            raise ModelLoadError(f"VAE file {path.name}: its LDM layout could not be mapped: {exc}") from None
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(config)
    try:
        vae.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()][:4]
        raise ModelLoadError(
            f"VAE file {path.name} does not fit the loaded model's VAE: {' '.join(lines)[:400]}"
        ) from None
    leftovers = [name for name, t in [*vae.named_parameters(), *vae.named_buffers()] if t.device.type == "meta"]
    if leftovers:
        raise ModelLoadError(f"VAE file {path.name} misses weights: {', '.join(leftovers[:5])}")
    reference = next(like.parameters())
    return vae.to(device=reference.device, dtype=reference.dtype).eval().requires_grad_(False)


def vae_short_hash(path: Path, hashes=None) -> str:
    """A1111's ``VAE hash``: the first 10 hex digits of the file's sha256.

    ``hashes`` may be the catalog's ``HashCache`` (anything with ``sha256(path)``),
    so a file already hashed is not read again.
    """
    path = Path(path)
    if hashes is not None:
        return hashes.sha256(path)[:10]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


__all__ = ["VAE_FILE_SUFFIXES", "load_vae_file", "read_vae_state_dict", "vae_short_hash"]
