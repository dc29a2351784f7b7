"""Safe reading of model files and architecture detection through spandrel.

spandrel's own ``ModelLoader`` unpickles ``.pth`` with a restricted unpickler and
tries TorchScript first for ``.pt``; we read every file through ``webui.tensor_files``
(pickles only with ``torch.load(weights_only=True)``) and hand spandrel only the state dict.
"""
from __future__ import annotations

from pathlib import Path

from webui.schemas import ModelLoadError
from webui.tensor_files import read_tensor_file, read_tensor_shapes

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
    if suffix not in MODEL_EXTENSIONS + (".ckpt",):
        raise ModelLoadError(f"{path.name}: unsupported model file type {suffix!r}")
    if meta and suffix == ".safetensors":
        try:
            state = read_tensor_shapes(path)
        except Exception as exc:  # safetensors raises its own error types
            raise ModelLoadError(f"{path.name}: cannot read model file ({type(exc).__name__}: {exc})") from None
    else:
        state, _ = read_tensor_file(path, mmap=meta)
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path.name}: file holds {type(state).__name__}, not a state dict")
    return canonicalize_state_dict(state)


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
