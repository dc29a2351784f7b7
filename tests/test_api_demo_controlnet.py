"""The demo ControlNet through the app's own API, as the sd-webui-controlnet extension's clients call it:
the engine's own loop (DDIM) puts the shape where the silhouette is, whatever the prompt names."""
from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from webui.config import PROJECT_ROOT, Settings
from webui.demo.classify import mask_centroid, shape_centroid
from webui.demo.shapes import Scene, caption_for, shape_mask, silhouette

DEMO = PROJECT_ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
DEMO_CONTROLNET = PROJECT_ROOT / "models" / "ControlNet" / "demo-silhouette.safetensors"
#: Held-out centres and sizes (see the file's ``webui.demo.recipe`` metadata); the prompt names another shape.
SCENES = [
    (Scene("circle", "red", "blue", 41.5, 22.0, 13.5), caption_for("square", "yellow", "purple")),
    (Scene("square", "green", "white", 22.5, 42.0, 13.0), caption_for("triangle", "red", "black")),
]
SEEDS = (7, 8)
STEPS = 15


@pytest.fixture
def client(tmp_path, serve_app):
    models = tmp_path / "models"
    for folder, source in (("Stable-diffusion", DEMO), ("ControlNet", DEMO_CONTROLNET)):
        (models / folder).mkdir(parents=True)
        shutil.copy(source, models / folder)
    settings = Settings(models_dir=models, outdir=tmp_path / "outputs", device="cpu", precision="fp32",
                        save_images=False)
    return serve_app(settings)[0]


def png_b64(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def centroid_error(image_b64: str, scene: Scene) -> float:
    image = Image.open(io.BytesIO(base64.b64decode(image_b64))).convert("RGB")
    drawn = shape_centroid(image)
    target = mask_centroid(shape_mask(scene.shape, scene.cx, scene.cy, scene.half))
    return 64.0 if drawn is None else float(np.hypot(drawn[0] - target[0], drawn[1] - target[1]))


def test_demo_controlnet_over_the_api_puts_the_shape_where_the_silhouette_is(client):
    names = client.get("/controlnet/model_list").json()["model_list"]
    assert any(name.startswith("demo-silhouette") for name in names), names
    steered, bare = [], []
    for scene, prompt in SCENES:
        for seed in SEEDS:
            body = {"prompt": prompt, "seed": seed, "steps": STEPS, "width": 64, "height": 64,
                    "sampler_name": "DDIM", "cfg_scale": 3}
            unit = {"image": png_b64(silhouette(scene)), "module": "none", "model": "demo-silhouette", "weight": 1}
            with_unit = client.post("/sdapi/v1/txt2img",
                                    json={**body, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
            assert with_unit.status_code == 200, with_unit.text
            steered.append(centroid_error(with_unit.json()["images"][0], scene))
            without = client.post("/sdapi/v1/txt2img", json=body)
            assert without.status_code == 200, without.text
            bare.append(centroid_error(without.json()["images"][0], scene))
    assert max(steered) <= 4.0, steered
    assert np.median(bare) > 8.0, bare
