"""Post-processing: upscalers (spandrel models, Lanczos, Nearest) and face restoration.

Public entry points: ``UpscalerRegistry`` (upscalers.py), ``FaceRestorers``
(faces.py) and ``run_extras`` (extras.py). Import them from their modules; this
package imports nothing heavy by itself.
"""
