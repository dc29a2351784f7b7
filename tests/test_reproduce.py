"""Reproduce: an image's infotext run again through the API and the real queue, with the pixel difference."""
import base64
import io

import pytest
from PIL import Image

from test_engine_addons_and_queue import write_kohya_lora
from webui.catalog import Catalog
from webui.images import encode_png_base64
from webui.reproduce import pixel_difference, plan_reproduction


@pytest.fixture
def world(settings, serve_app):
    return serve_app(settings)


def _decode(text):
    return Image.open(io.BytesIO(base64.b64decode(text)))


def _made_with_a_lora(client, services, settings):
    body = {"prompt": "a red circle <lora:tiny:0.8>", "negative_prompt": "blue", "seed": 123, "steps": 3,
            "width": 64, "height": 64, "sampler_name": "Euler a", "cfg_scale": 5, "subseed": 9,
            "subseed_strength": 0.3, "override_settings": {"eta_noise_seed_delta": 31337, "randn_source": "CPU"}}
    assert client.post("/sdapi/v1/txt2img", json={**body, "prompt": "a red circle"}).status_code == 200
    write_kohya_lora(settings.model_folder("Lora") / "tiny.safetensors", services.models.loaded.unet)
    services.catalog.refresh_loras()
    made = client.post("/sdapi/v1/txt2img", json=body)
    assert made.status_code == 200, made.text
    return made.json()["images"][0]


def test_an_image_made_here_reproduces_with_difference_zero(world, settings):
    client, services = world
    image = _made_with_a_lora(client, services, settings)
    response = client.post("/api/v1/reproduce", json={"image": image})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["difference"] == {"mean_abs": 0.0, "max": 0, "same_size": True}
    assert data["unmet"] == []
    assert "Variation seed: 9" in data["infotext"] and "ENSD: 31337" in data["infotext"] and "RNG: CPU" in data["infotext"]
    assert data["infotext"] == data["original_infotext"]
    assert _decode(data["images"][0]).size == (64, 64) and _decode(data["difference_image"]).getbbox() is None


def test_a_missing_lora_is_named_and_the_difference_shows(world, settings):
    client, services = world
    image = _made_with_a_lora(client, services, settings)
    (settings.model_folder("Lora") / "tiny.safetensors").unlink()
    services.catalog.refresh_loras()
    data = client.post("/api/v1/reproduce", json={"image": image}).json()
    assert any("LoRA tiny" in item and "not here" in item for item in data["unmet"]), data["unmet"]
    assert data["difference"]["max"] > 0 and _decode(data["difference_image"]).getbbox() is not None


def test_an_image_without_parameters_is_refused(world):
    client, _ = world
    plain = encode_png_base64(Image.new("RGB", (16, 16), "red"), None)
    response = client.post("/api/v1/reproduce", json={"image": plain})
    assert response.status_code == 422 and "generation parameters" in response.json()["detail"]
    assert client.post("/api/v1/reproduce", json={"image": "not an image"}).status_code == 422


def test_the_plan_lists_what_it_cannot_honour(settings):
    catalog = Catalog(settings)
    catalog.refresh()
    model = catalog.checkpoints()[0]
    text = (f"a cat <lora:gone:1>\nNegative prompt: dog\nSteps: 20, Sampler: Euler Ancestral Turbo, CFG scale: 7, "
            f"Seed: 5, Size: 64x64, Model hash: {model.short_hash}, Model: tiny-sd1, VAE hash: 0123456789, "
            f"VAE: fancy.safetensors, Denoising strength: 0.4, Token merging ratio: 0.5, "
            f"TI hashes: \"shiny: abcdef123456\", Lora hashes: \"gone: 0a1b2c3d4e5f\", "
            f"ControlNet 0: \"Module: canny, Model: cn [12345678], Weight: 1.0\", Version: v1.10.1")
    plan = plan_reproduction(text, catalog, version="webui-0.1")
    unmet = "\n".join(plan.unmet)
    for expected in ("Euler Ancestral Turbo", "Token merging ratio", "VAE: fancy.safetensors is not here",
                     "Embedding shiny is not here", "LoRA gone [0a1b2c3d4e5f] is not here", "img2img",
                     "made by v1.10.1", "ControlNet 0: the control image is not stored in the PNG"):
        assert expected in unmet, expected
    request = plan.request
    assert request.checkpoint == model.title and request.seed == 5 and request.vae == "None"
    assert (request.randn_source, request.eta_noise_seed_delta, request.batch_size) == ("GPU", 0, 1)
    other = plan_reproduction("a cat\nSteps: 3, Seed: 1, Model hash: ffffffffff, Model: elsewhere", catalog)
    assert any("elsewhere [ffffffffff] is not here" in item for item in other.unmet) and other.request.checkpoint is None


def test_pixel_difference_counts_levels():
    a = Image.new("RGB", (4, 4), (10, 10, 10))
    b = Image.new("RGB", (4, 4), (10, 10, 10))
    b.putpixel((0, 0), (14, 10, 10))
    difference, picture = pixel_difference(a, b)
    assert difference.max == 4 and difference.mean_abs == pytest.approx(4 / 48) and difference.same_size
    assert picture.getpixel((0, 0)) == (16, 0, 0)


def test_png_info_reproduce_button_shows_the_new_image_and_the_verdict(world, settings, tmp_path):
    from webui.ui.reproduce import reproduce

    client, services = world
    body = {"prompt": "a blue square", "seed": 77, "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler"}
    made = client.post("/sdapi/v1/txt2img", json=body).json()["images"][0]
    path = tmp_path / "made.png"
    path.write_bytes(base64.b64decode(made))
    steps = list(reproduce(services, str(path), "ui:test"))
    verdict, new, difference = steps[-1]
    assert "max 0 levels" in verdict and "identical" in verdict and "Every recorded field was honoured" in verdict
    assert new.size == (64, 64) and difference.getbbox() is None
    assert "Error" in next(reproduce(services, None, "ui:test"))[0]
