"""The API over the real app wiring: real engine, model manager and queue on a tiny checkpoint."""
import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from webui.images import read_infotext


@pytest.fixture
def client(settings, serve_app):
    from safetensors.numpy import save_file

    folder = settings.model_folder("embeddings")
    save_file({"emb_params": np.ones((2, 64), np.float32)}, str(folder / "fits.safetensors"))
    save_file({"emb_params": np.ones((1, 768), np.float32)}, str(folder / "too-wide.safetensors"))
    return serve_app(settings)[0]


def _decode(text):
    return Image.open(io.BytesIO(base64.b64decode(text)))


def test_txt2img_img2img_and_png_info_on_the_real_engine(client):
    [model] = client.get("/sdapi/v1/sd-models").json()
    assert model["model_name"] == "tiny-sd1"
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": model["title"]}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == model["title"]

    body = {"prompt": "a red circle", "negative_prompt": "blue", "seed": 123, "steps": 2, "width": 64, "height": 64,
            "sampler_name": "Euler a", "cfg_scale": 5}
    first = client.post("/sdapi/v1/txt2img", json=body)
    assert first.status_code == 200, first.text
    image = _decode(first.json()["images"][0])
    assert image.size == (64, 64)
    text = read_infotext(image)
    assert text.startswith("a red circle\nNegative prompt: blue\nSteps: 2, Sampler: Euler a")
    assert f"Model hash: {model['hash']}" in text and "Model: tiny-sd1" in text
    info = json.loads(first.json()["info"])
    assert info["all_seeds"] == [123] and info["sd_model_name"] == "tiny-sd1" and info["infotexts"] == [text]

    again = client.post("/sdapi/v1/txt2img", json=body)
    assert again.json()["images"] == first.json()["images"]  # same seed, same pixels

    init = "data:image/png;base64," + first.json()["images"][0]
    changed = client.post("/sdapi/v1/img2img", json={**body, "init_images": [init], "denoising_strength": 0.5})
    assert changed.status_code == 200, changed.text
    assert "Denoising strength: 0.5" in read_infotext(_decode(changed.json()["images"][0]))

    parsed = client.post("/sdapi/v1/png-info", json={"image": init}).json()["parameters"]
    assert parsed["Prompt"] == "a red circle" and parsed["Seed"] == "123" and parsed["Size-1"] == "64"

    fallback = client.post("/sdapi/v1/txt2img", json={**body, "sampler_name": "No Such Sampler"})
    assert fallback.status_code == 200
    info = json.loads(fallback.json()["info"])
    assert info["sampler_name"] == "DPM++ 2M" and "No Such Sampler" in info["warnings"][0]
    assert "Sampler: DPM++ 2M, Schedule type: Karras" in info["infotexts"][0]


def test_embeddings_report_what_the_loaded_model_installed(client):
    before = client.get("/sdapi/v1/embeddings").json()
    assert set(before["loaded"]) == {"fits", "too-wide"}  # no model used yet: the file list
    assert client.post("/sdapi/v1/txt2img", json={"prompt": "fits", "steps": 1, "width": 64,
                                                  "height": 64}).status_code == 200
    after = client.get("/sdapi/v1/embeddings").json()
    assert after["loaded"]["fits"]["vectors"] == 2 and after["loaded"]["fits"]["shape"] == 64
    assert list(after["skipped"]) == ["too-wide"]
