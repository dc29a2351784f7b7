"""Safe reading of model files and architecture detection through spandrel.

spandrel's own ``ModelLoader`` unpickles ``.pth`` with a restricted unpickler and
tries TorchScript first for ``.pt``; we read every pickle with
``torch.load(weights_only=True)`` instead and hand spandrel only the state dict.
"""
from __future__ import annotations

from pathlib import Path

from webui.schemas import ModelLoadError

MODEL_EXTENSIONS = (".pth", ".pt", ".safetensors")


def make_registry():
    """A private spandrel registry: the main architectures plus spandrel-extra-arches when installed.

    CodeFormer lives in spandrel-extra-arches; we copy instead of calling its
    ``install()`` so spandrel's global registry is never changed.
    """
    from spandrel import MAIN_REGISTRY

    registry = MAIN_REGISTRY.copy()
    try:
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        return registry
    registry.add(*EXTRA_REGISTRY, ignore_duplicates=True)
    return registry


def read_state_dict(path: Path, *, meta: bool = False) -> dict:
    """The canonical state dict of a model file (``params_ema``/``params`` wrappers removed).

    ``meta=True`` is for architecture detection without reading the weights:
    safetensors give data-less meta tensors, pickles are memory-mapped.
    """
    from spandrel import canonicalize_state_dict

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            if meta:
                state = _safetensors_meta(path)
            else:
                from safetensors.torch import load_file

                state = load_file(str(path), device="cpu")
        elif suffix in (".pth", ".pt", ".ckpt"):
            state = _torch_load(path, mmap=meta)
        else:
            raise ModelLoadError(f"{path.name}: unsupported model file type {suffix!r}")
    except ModelLoadError:
        raise
    except Exception as exc:  # corrupt files and refused pickles raise many types
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise ModelLoadError(f"{path.name}: cannot read model file ({type(exc).__name__}: {detail})") from None
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path.name}: file holds {type(state).__name__}, not a state dict")
    return canonicalize_state_dict(state)


def _torch_load(path: Path, mmap: bool):
    import torch

    if mmap:
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):  # legacy (pre-zip) files cannot be memory-mapped
                raise
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _safetensors_meta(path: Path) -> dict:
    import torch
    from safetensors import safe_open

    state = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        for key in handle.keys():
            piece = handle.get_slice(key)
            dtype = getattr(torch, _SAFETENSORS_DTYPES.get(piece.get_dtype(), "float32"))
            state[key] = torch.empty(piece.get_shape(), dtype=dtype, device="meta")
    return state


_SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}


def detect_architecture(path: Path, registry) -> str | None:
    """The spandrel architecture id of a model file, or None when spandrel does not know it."""
    state = read_state_dict(path, meta=True)
    for support in registry.architectures("detection"):
        try:
            if support.detect(state):
                return str(support.architecture.id)
        except Exception:  # a detector choking on an odd file means "not this one"
            continue
    return None


def load_model(path: Path, registry):
    """Build the spandrel model descriptor of a file (weights on the CPU, eval mode)."""
    from spandrel import UnsupportedModelError

    state = read_state_dict(path)
    try:
        descriptor = registry.load(state)
    except UnsupportedModelError:
        raise ModelLoadError(f"{Path(path).name}: spandrel does not recognise this model's architecture") from None
    except Exception as exc:
        raise ModelLoadError(f"{Path(path).name}: cannot build the model ({type(exc).__name__}: {exc})") from None
    return descriptor.eval()
