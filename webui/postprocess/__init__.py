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
