"""sd-webui-controlnet's API on the real app wiring: its routes, its unit payloads, 422s and PNG Info."""
from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

BODY = {"prompt": "a red circle", "negative_prompt": "blue", "seed": 7, "steps": 2, "width": 64, "height": 64,
        "sampler_name": "Euler", "cfg_scale": 5}


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decoded(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))).convert("RGB"), dtype=np.int16)


def square() -> Image.Image:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill="white")
    return image


@pytest.fixture(scope="module")
def controlnet_dir(tmp_path_factory):
    """Two tiny ControlNets: one for the tiny SD1 checkpoint, one for SDXL."""
    from tests.random_checkpoint import build_random_components
    from webui.models.random_controlnet import random_controlnet, write_controlnet

    folder = tmp_path_factory.mktemp("controlnet-api")
    sd1, _, _ = build_random_components("sd1", seed=1)
    write_controlnet(folder / "control_sd15_silhouette.safetensors",
                     random_controlnet(sd1, embedding=(8, 16, 16, 32), seed=3), "original")
    xl, _, _ = build_random_components("sdxl", seed=4)
    write_controlnet(folder / "xl_canny.safetensors", random_controlnet(xl, embedding=(8, 16, 16, 32), seed=5),
                     "diffusers")
    (folder / "annotators").mkdir()
    return folder


@pytest.fixture
def client(settings, serve_app, models_dir, controlnet_dir):
    shutil.copytree(controlnet_dir, models_dir / "ControlNet")
    return serve_app(settings)[0]


def test_routes_answer_as_the_extension(client):
    assert client.get("/controlnet/version").json() == {"version": 2}
    models = client.get("/controlnet/model_list").json()["model_list"]
    assert len(models) == 2 and models[0].startswith("control_sd15_silhouette [") and len(models[0].split("[")[1]) == 9
    modules = client.get("/controlnet/module_list").json()
    assert {"none", "canny", "invert (from white bg & black line)", "threshold", "scribble_xdog", "tile_resample",
            "blur_gaussian", "shuffle", "depth_midas"} <= set(modules["module_list"])
    assert modules["module_detail"]["canny"]["sliders"][1]["name"] == "Canny Low Threshold"
    types = client.get("/controlnet/control_types").json()["control_types"]
    assert types["Canny"]["default_option"] == "canny" and types["Canny"]["model_list"] == ["None", models[1]]
    assert types["Segmentation"]["default_model"] == models[0]
    assert client.get("/controlnet/settings").json() == {"control_net_unit_count": 3}
    scripts = client.get("/sdapi/v1/scripts").json()  # clients look for "controlnet" among the always-on scripts
    assert "controlnet" in scripts["txt2img"] and "controlnet" in scripts["img2img"]

    detected = client.post("/controlnet/detect", json={"controlnet_module": "canny",
                                                        "controlnet_input_images": [b64(square())],
                                                        "controlnet_threshold_a": 100,
                                                        "controlnet_threshold_b": 200})
    assert detected.status_code == 200 and detected.json()["info"] == "Success"
    edges = decoded(detected.json()["images"][0])
    assert edges.max() == 255 and edges[32, 32].max() == 0  # edges on the outline, none inside the square
    missing = client.post("/controlnet/detect", json={"controlnet_module": "depth_midas",
                                                      "controlnet_input_images": [b64(square())]})
    assert missing.status_code == 422 and "dpt_hybrid-midas-501f0c75.pt" in missing.json()["detail"]


def test_txt2img_with_units_the_extension_sends(client):
    plain = client.post("/sdapi/v1/txt2img", json=BODY).json()["images"][0]
    unit = {"input_image": b64(square()), "module": "none", "model": "control_sd15_silhouette",
            "weight": 1.2, "resize_mode": "Just Resize", "control_mode": 1, "guidance_end": 0.9,
            "processor_res": 64, "lowvram": False, "pixel_perfect": True}
    response = client.post("/sdapi/v1/txt2img", json={**BODY, "alwayson_scripts": {"ControlNet": {"args": [
        unit, {"enabled": False, "image": None}]}}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert np.abs(decoded(body["images"][0]) - decoded(plain)).max() > 0
    info = json.loads(body["info"])
    value = info["extra_generation_params"]["ControlNet 0"]
    assert value.startswith("Module: none, Model: control_sd15_silhouette [") and "Weight: 1.2" in value
    assert "Resize Mode: Just Resize" in value and "Control Mode: My prompt is more important" in value
    assert "Guidance End: 0.9" in value and "Pixel Perfect: True" in value
    assert "ControlNet 1" not in info["extra_generation_params"]
    parsed = client.post("/sdapi/v1/png-info", json={"image": body["images"][0]}).json()["parameters"]
    assert parsed["ControlNet 0"] == value


BAD_UNITS = [
    ({"image": "not-base64!", "model": "control_sd15_silhouette"}, "args[0].image", "image"),
    ({"model": "nothing-like-it"}, "args[0].model", "not found"),
    ({"module": "sharpen", "model": "None"}, "args[0].module", "unknown ControlNet preprocessor"),
    ({"weight": 3}, "args[0].weight", "from 0.0 to 2.0"),
    ({"control_mode": "Loud"}, "args[0].control_mode", "Balanced"),
    ({"guidance_start": 0.8, "guidance_end": 0.2}, "args[0].guidance_start", "after"),
]


def test_bad_units_are_422_naming_the_field(client):
    for unit, field, words in BAD_UNITS:
        response = client.post("/sdapi/v1/txt2img",
                               json={**BODY, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
        assert response.status_code == 422, response.text
        assert response.json()["field"].endswith(field) and words in response.json()["detail"], unit
    # A ControlNet made for another family is found out when it loads: 422 too, naming both families.
    unit = {"image": b64(square()), "model": "xl_canny"}
    response = client.post("/sdapi/v1/txt2img", json={**BODY, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert response.status_code == 422, response.text
    assert "is for an SDXL-type model" in response.json()["detail"]
