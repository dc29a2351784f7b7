"""The one safe reader of tensor files (.safetensors, .ckpt, .pt, .pth, .bin), with one pickle policy.

safetensors files are read as they are; pickles only with ``torch.load(weights_only=True)``,
so a pickle that needs code to load is refused with a ModelLoadError naming the file and
never executes. Checkpoints, LoRAs, embeddings, VAEs, diffusers folders and the spandrel
upscalers and face restorers all read their files here.
"""
from __future__ import annotations

import pickle
from pathlib import Path

from webui.schemas import ModelLoadError

_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}


def _label(path: Path, what: str) -> str:
    return f"{what} {path.name}" if what else path.name


def read_tensor_file(path: str | Path, what: str = "", *, mmap: bool = False) -> tuple[object, dict]:
    """Raw content and safetensors metadata (``{}`` for pickles) of a tensor file.

    ``what`` ("LoRA file", "embedding"...) starts the error messages; ``mmap=True`` memory-maps
    pickles where their format allows it (legacy pre-zip files are read whole).
    """
    import torch

    path = Path(path)
    label = _label(path, what)
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                metadata = dict(handle.metadata() or {})
            return load_file(str(path), device="cpu"), metadata
        except Exception as exc:  # safetensors raises its own error types
            raise ModelLoadError(f"{label}: cannot read safetensors file: {exc}") from None
    try:
        if mmap:
            try:
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True), {}
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
        return torch.load(str(path), map_location="cpu", weights_only=True), {}
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"{label} was refused: it is a pickle that needs code to load "
            f"(only plain tensors are accepted; convert it to .safetensors). Detail: {exc}"
        ) from None
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{label}: cannot read file ({detail})") from None


def read_tensor_shapes(path: str | Path) -> dict:
    """A .safetensors file's tensors as data-less ``meta`` tensors (names, shapes, dtypes), reading no weights."""
    import torch
    from safetensors import safe_open

    state = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        for key in handle.keys():
            piece = handle.get_slice(key)
            dtype = getattr(torch, _SAFETENSORS_DTYPES.get(piece.get_dtype(), "float32"))
            state[key] = torch.empty(piece.get_shape(), dtype=dtype, device="meta")
    return state
