"""Extras keep the source image's own infotext and add A1111's ``postprocessing`` chunk (files and API)."""
from __future__ import annotations

import base64
import io

from PIL import Image, PngImagePlugin

from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.postprocess.upscalers import UpscalerRegistry
from webui.schemas import ExtrasRequest

SOURCE = "a red circle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 16x16"


def source_png() -> Image.Image:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", SOURCE)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buffer, format="PNG", pnginfo=info)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_saved_extras_file_keeps_parameters_and_adds_postprocessing(settings):
    engine = Engine(settings, Catalog(settings), None, upscalers=UpscalerRegistry(settings))
    result = engine.extras(ExtrasRequest(images=[source_png()], upscaler_1="Lanczos", upscaling_resize=2))
    with Image.open(result.saved_paths[0]) as saved:
        assert saved.size == (32, 32)
        assert saved.info["parameters"] == SOURCE
        assert saved.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
        assert saved.info["extras"] == saved.info["postprocessing"]
    plain = engine.extras(ExtrasRequest(images=[Image.new("RGB", (8, 8))], upscaler_1="Lanczos"))
    with Image.open(plain.saved_paths[0]) as saved:
        assert "parameters" not in saved.info and saved.info["postprocessing"].startswith("Postprocess upscale by")


def test_api_extras_image_carries_both_chunks(settings, serve_app):
    client, _ = serve_app(settings)
    source = source_png()
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", SOURCE)
    buffer = io.BytesIO()
    source.save(buffer, format="PNG", pnginfo=info)
    body = {"image": base64.b64encode(buffer.getvalue()).decode(), "upscaler_1": "Lanczos", "upscaling_resize": 2}
    response = client.post("/sdapi/v1/extra-single-image", json=body)
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(base64.b64decode(response.json()["image"])))
    assert image.info["parameters"] == SOURCE
    assert image.info["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    assert "Postprocess upscaler: Lanczos" in response.json()["html_info"]
    info = client.post("/sdapi/v1/png-info", json={"image": response.json()["image"]}).json()
    assert info["info"] == SOURCE and info["items"]["postprocessing"].startswith("Postprocess upscale by")
