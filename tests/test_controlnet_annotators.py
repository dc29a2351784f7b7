"""Network ControlNet preprocessors (depth, pose, line art, soft edges, lines) with annotator files in
models/ControlNet/annotators/: random weights in the real files' layouts, run by the queue's worker."""
from __future__ import annotations

import base64
import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.annotator_files import write_annotator
from webui.schemas import DETECT_JOB_KIND, DetectRequest, InvalidRequest

CHEAP = ("sk_model.pth", "sk_model2.pth", "ControlNetHED.pth", "table5_pidinet.pth", "mlsd_large_512_fp32.pth",
         "netG.pth")
POSE = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")


@pytest.fixture(scope="module")
def annotators(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotators")
    for seed, name in enumerate(CHEAP + POSE + ("dpt_hybrid-midas-501f0c75.pt", "scannet.pt")):
        write_annotator(folder, name, seed)
    return folder


def picture(size=(96, 64)) -> Image.Image:
    image = Image.new("RGB", size, (30, 40, 60))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 50, 40), fill=(240, 200, 20))
    draw.ellipse((55, 20, 90, 60), fill=(200, 30, 30))
    return image


def b64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def served(settings, serve_app, models_dir, annotators):
    # Linked, not copied (the files are large); a test may delete its links.
    shutil.copytree(annotators, models_dir / "ControlNet" / "annotators", copy_function=os.symlink)
    return serve_app(settings)


def detect(services, module: str, image=None, resolution: int = 128, a: float = -1, b: float = -1):
    job = services.queue.submit(DETECT_JOB_KIND, DetectRequest(module=module, images=[image or picture()],
                                                               processor_res=resolution, threshold_a=a,
                                                               threshold_b=b))
    job = services.queue.wait(job.id, timeout=300)
    assert job.status.value == "succeeded", job.error
    return job.result.images[0]


def test_network_preprocessors_run_from_the_files_users_put_in_the_annotators_folder(served):
    _, services = served
    maps = {}
    for module in ("lineart_realistic", "lineart_coarse", "softedge_hed", "scribble_hed", "softedge_pidinet",
                   "scribble_pidinet", "t2ia_sketch_pidi", "mlsd", "lineart_anime", "depth_midas", "normal_bae"):
        maps[module] = np.asarray(detect(services, module), dtype=np.int16)
        # The map comes at the processor resolution (short side, as the extension rounds it) in RGB.
        assert maps[module].ndim == 3 and maps[module].shape[2] == 3 and min(maps[module].shape[:2]) >= 128, module
    for module in ("lineart_realistic", "softedge_hed", "lineart_anime", "depth_midas", "normal_bae"):  # not blank
        assert maps[module].std() > 0, module
    # Scribble variants are the soft edges made binary.
    assert set(np.unique(maps["scribble_hed"])) <= {0, 255}
    assert not np.array_equal(maps["lineart_realistic"], maps["lineart_coarse"])  # two files, two networks
    # An annotator file is read once and then kept (the two latest) by the model manager, which frees it
    # with the rest.
    detect(services, "softedge_hed")
    before = services.models._annotators.load_count
    detect(services, "scribble_hed")  # the same network
    assert services.models._annotators.load_count == before
    services.models._holders["annotators"].unload()
    detect(services, "softedge_hed")
    assert services.models._annotators.load_count == before + 1


def test_openpose_variants_load_body_hand_and_face_networks(served):
    _, services = served
    for module in ("openpose", "openpose_full"):
        pose = np.asarray(detect(services, module))
        # Random weights find no person: a black canvas of the detect size, as the extension draws it.
        assert pose.shape[2] == 3 and min(pose.shape[:2]) >= 128 and pose.max() == 0, module


def test_the_api_detect_route_queues_network_modules_and_names_missing_files(served, models_dir):
    client, services = served
    response = client.post("/controlnet/detect", json={"controlnet_module": "lineart_realistic",
                                                       "controlnet_input_images": [b64(picture())],
                                                       "controlnet_processor_res": 128})
    assert response.status_code == 200, response.text
    assert DETECT_JOB_KIND in [job.kind for job in services.queue.list()]  # the worker ran it, not the HTTP thread
    (models_dir / "ControlNet" / "annotators" / "sk_model.pth").unlink()
    missing = client.post("/controlnet/detect", json={"controlnet_module": "lineart_realistic",
                                                      "controlnet_input_images": [b64(picture())]})
    assert missing.status_code == 422 and "models/ControlNet/annotators/sk_model.pth is needed" in \
        missing.json()["detail"]
    not_run = client.post("/controlnet/detect", json={"controlnet_module": "depth_leres",
                                                      "controlnet_input_images": [b64(picture())]})
    assert not_run.status_code == 422 and "not run by this server" in not_run.json()["detail"]
    # The worker goes on with the next job.
    assert client.post("/controlnet/detect", json={"controlnet_module": "softedge_hed",
                                                   "controlnet_input_images": [b64(picture())]}).status_code == 200


def test_a_unit_with_a_network_preprocessor_steers_generation(served):
    from webui.models.random_controlnet import random_t2i_adapter, write_t2i_adapter
    from webui.schemas import GenerationRequest

    _, services = served
    folder = services.settings.model_folder("ControlNet")
    write_t2i_adapter(folder / "t2i-edges.safetensors", random_t2i_adapter((32, 64), adapter_type="full_adapter_xl",
                                                                           seed=2))
    services.catalog.refresh_controlnets()

    def generate(module: str):
        unit = {"enabled": True, "module": module, "model": "t2i-edges", "image": picture((64, 64)),
                "processor_res": 64}
        request = GenerationRequest(prompt="a red circle", steps=2, width=64, height=64, seed=5, save_images=False,
                                    alwayson_scripts={"controlnet": {"args": [unit]}})
        job = services.queue.wait(services.queue.submit("txt2img", request).id, timeout=300)
        assert job.status.value == "succeeded", job.error
        return job.result

    edges, plain = generate("softedge_hed"), generate("none")
    assert np.abs(np.asarray(edges.images[0], dtype=np.int16) - np.asarray(plain.images[0], dtype=np.int16)).max()
    assert "Module: softedge_hed" in edges.infotexts[0]


def test_network_modules_never_run_outside_the_worker():
    from webui.controlnet.preprocessors import run_module

    with pytest.raises(InvalidRequest, match="runs in a queued job only"):
        run_module("depth_midas", picture())
