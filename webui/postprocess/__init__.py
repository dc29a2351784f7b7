"""Post-processing: upscalers (spandrel models, Lanczos, Nearest) and face restoration.

Public entry points: ``UpscalerRegistry`` (upscalers.py), ``FaceRestorers``
(faces.py) and ``run_extras`` / ``scale_to_size`` (extras.py). Import them from
their modules; this package imports nothing heavy by itself.

Why spandrel and not the ``gfpgan``/``realesrgan`` packages: both need
``basicsr`` 1.4.2, which fails at import with torchvision >= 0.17 and pulls in
non-headless opencv. spandrel (plus spandrel-extra-arches for CodeFormer) loads
the same weight files by detecting the architecture from the state dict, as
A1111 >= 1.8 and ComfyUI do.
"""

_EXPORTS = {
    "UpscalerRegistry": "webui.postprocess.upscalers",
    "FaceRestorers": "webui.postprocess.faces",
    "run_extras": "webui.postprocess.extras",
    "scale_to_size": "webui.postprocess.extras",
}


def __getattr__(name: str):
    """Lazy re-exports: ``from webui.postprocess import UpscalerRegistry`` imports torch only then."""
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
