"""The PyPI client ``webuiapi`` (written for A1111) drives our server over real HTTP on loopback."""
import socket
import threading
import time

import pytest
from PIL import Image

from test_api_support import build_world

webuiapi = pytest.importorskip("webuiapi")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """Our API app under a real uvicorn server on a free loopback port."""
    import uvicorn
    from fastapi import FastAPI

    from webui.api import mount_api

    world = build_world(tmp_path)
    app = FastAPI()
    mount_api(app, world.services)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield world, port
    server.should_exit = True
    thread.join(10)
    close = getattr(world.services.queue, "close", None)
    if callable(close):
        close()


def test_webuiapi_client_flow(served):
    world, port = served
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port)

    titles = api.util_get_model_names()
    assert titles == [world.services.catalog.checkpoints()[0].title]
    api.util_set_model("tiny")
    assert world.models.selected == [titles[0]]
    assert api.util_get_current_model() == titles[0]

    result = api.txt2img(prompt="a blue circle", negative_prompt="noise", seed=11, width=16, height=16, steps=2,
                         batch_size=2, cfg_scale=4)
    assert len(result.images) == 2 and result.image.size == (16, 16)
    assert result.info["all_seeds"] == [11, 12]
    assert result.image.info["parameters"].startswith("a blue circle\nNegative prompt: noise\nSteps: 2")
    request = world.engine.requests[-1][1]
    assert request.sampler_name == "Euler a" and request.scheduler.lower() == "automatic"

    again = api.img2img(images=[result.image], prompt="again", denoising_strength=0.4, seed=3,
                        width=16, height=16, mask_image=Image.new("L", (16, 16), 255))
    assert again.info["denoising_strength"] == 0.4 and again.image.size == (16, 16)
    assert world.engine.requests[-1][1].mode == "inpaint"

    info = api.png_info(result.image)
    assert info.parameters["Prompt"] == "a blue circle" and info.parameters["Seed"] == "11"

    upscaled = api.extra_single_image(result.image, upscaler_1="Lanczos", upscaling_resize=2)
    assert upscaled.image.size == (32, 32)
    batch = api.extra_batch_images([result.image, result.image], upscaling_resize=2)
    assert [im.size for im in batch.images] == [(32, 32), (32, 32)]

    assert "Euler a" in [s["name"] for s in api.get_samplers()]
    assert api.get_loras() == [] and api.get_sd_vae() == []
    assert [u["name"] for u in api.get_upscalers()][:3] == ["None", "Lanczos", "Nearest"]
    assert "ram" in api.get_memory()
    assert api.get_options()["sd_model_checkpoint"] == titles[0]


def test_webuiapi_sees_errors_as_json(served):
    world, port = served
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port)
    with pytest.raises(RuntimeError) as caught:
        api.txt2img(prompt="x", width=16, height=16, steps=-1)
    status, text = caught.value.args
    assert status == 422 and '"field":"steps"' in text.replace(" ", "")


def test_webuiapi_controlnet_units_and_routes(served):
    world, port = served
    folder = world.services.settings.model_folder("ControlNet")
    folder.mkdir(parents=True)
    (folder / "control_v11p_sd15_canny.safetensors").write_bytes(b"weights are not read at submission")
    world.services.catalog.refresh_controlnets()
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port)
    assert api.controlnet_version() == 2
    [title] = api.controlnet_model_list()
    assert title.startswith("control_v11p_sd15_canny [") and "canny" in api.controlnet_module_list()

    drawing = Image.new("RGB", (32, 32), "black")
    drawing.paste((255, 255, 255), (8, 8, 24, 24))
    unit = webuiapi.ControlNetUnit(image=drawing, module="canny", model=title, weight=0.7, guidance_end=0.8,
                                   control_mode=2, pixel_perfect=True)
    # A fresh alwayson_scripts dict: webuiapi's default one is shared between calls and would keep the units.
    api.txt2img(prompt="a square", width=16, height=16, steps=2, controlnet_units=[unit], alwayson_scripts={})
    request = world.engine.requests[-1][1]
    [sent] = request.alwayson_scripts["controlnet"]["args"]
    assert sent["image"].size == (32, 32) and sent["mask"] is None and sent["model"] == title
    assert (sent["module"], sent["weight"], sent["guidance_end"], sent["control_mode"], sent["pixel_perfect"]) == \
        ("canny", 0.7, 0.8, "ControlNet is more important", True)

    detected = api.controlnet_detect([drawing], module="canny", processor_res=64, threshold_a=100, threshold_b=200)
    assert [image.size for image in detected.images] == [(64, 64)]  # short side at processor_res


def test_webuiapi_listing_and_control_methods(served):
    """The rest of webuiapi 0.9.17's core methods (those needing no extension or captioning model)."""
    world, port = served
    api = webuiapi.WebUIApi(host="127.0.0.1", port=port)
    api.util_wait_for_ready(check_interval=0.1)  # returns once the server is idle
    assert [m["title"] for m in api.get_sd_models()] == api.util_get_model_names()
    assert "Euler a" in api.util_get_sampler_names() and "karras" in api.util_get_scheduler_names()
    assert "Latent" in [m["name"] for m in api.get_latent_upscale_modes()]
    for listing in (api.get_schedulers(), api.get_face_restorers(), api.get_realesrgan_models(),
                    api.get_prompt_styles(), api.get_hypernetworks()):
        assert isinstance(listing, list)
    assert isinstance(api.get_embeddings(), dict) and isinstance(api.get_scripts(), dict)
    assert "port" in api.get_cmd_flags()
    api.set_options({"eta_ancestral": 0.25, "samples_format": "png"})
    assert api.get_options()["eta_ancestral"] == 0.25
    api.refresh_checkpoints()
    assert api.get_progress()["progress"] == 0.0
    api.interrupt()
    api.skip()
    result = api.txt2img(prompt="x", width=16, height=16, steps=2, tiling=True,
                         override_settings={"eta_ancestral": 0.5}, override_settings_restore_afterwards=False)
    assert world.engine.requests[-1][1].tiling is True and "warnings" not in result.info
    assert api.get_options()["eta_ancestral"] == 0.5
    with pytest.raises(RuntimeError) as caught:
        api.interrogate(result.image)
    assert 400 <= caught.value.args[0] < 500
