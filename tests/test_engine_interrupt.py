"""Interrupt and skip as A1111: the stopped batch is decoded from the sampler's latest prediction and returned."""
from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from webui.catalog import Catalog
from webui.engine import vae_ops
from webui.engine.engine import Engine
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest, JobInterrupted, NullControl


@pytest.fixture
def engine(settings):
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog))


def txt(**fields) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blue", steps=4, width=64, height=64, seed=42,
                cfg_scale=5.0, sampler_name="Euler", save_images=False)
    base.update(fields)
    return GenerationRequest(**base)


class StopAt(NullControl):
    """Asks to interrupt (or skip once) when image ``image_index`` has finished ``step`` steps."""

    def __init__(self, image_index: int, step: int, skip: bool = False):
        self.at, self.skip = (image_index, step), skip
        self.fired = False
        self.done = False

    def report(self, progress) -> None:
        if (progress.image_index, progress.step) == self.at:
            self.fired = True

    def interrupted(self) -> bool:
        return self.fired and not self.skip

    def take_skip(self) -> bool:
        if self.fired and self.skip and not self.done:
            self.done = True
            return True
        return False


class StopAfterReports(NullControl):
    """Asks to interrupt once the engine has reported progress ``count`` times."""

    def __init__(self, count: int):
        self.left = count

    def report(self, progress) -> None:
        self.left -= 1

    def interrupted(self) -> bool:
        return self.left <= 0


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def test_interrupt_returns_the_batch_decoded_from_its_latest_prediction(engine):
    full = engine.generate(txt(batch_size=2, n_iter=2))
    with pytest.raises(JobInterrupted) as stop:
        engine.generate(txt(batch_size=2, n_iter=2), StopAt(image_index=2, step=2))
    partial = stop.value.partial
    # the first batch finished; the second stopped after 2 of its 4 steps and is returned too; no third
    assert len(partial.images) == 4 and partial.seeds == full.seeds
    for done, whole in zip(partial.images[:2], full.images[:2]):
        assert np.array_equal(pixels(done), pixels(whole))
    model = engine.models.loaded
    noise = vae_ops.decode(model.vae, torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)))[0]
    for i, image in enumerate(partial.images[2:], start=2):
        assert image.size == (64, 64)
        assert not np.array_equal(pixels(image), pixels(full.images[i]))  # it really stopped early
        # the half-way prediction already looks like the finished image, far more than decoded noise does
        halfway = np.abs(pixels(image) - pixels(full.images[i])).mean()
        assert halfway < 0.5 * np.abs(pixels(noise[i - 2]) - pixels(full.images[i])).mean()
        assert partial.infotexts[i].startswith("a red circle\nNegative prompt: blue\nSteps: 4, Sampler: Euler")
        assert f"Seed: {full.seeds[i]}" in partial.infotexts[i]


def test_interrupt_during_the_hires_pass_returns_the_upscaled_image(engine):
    request = txt(enable_hr=True, hr_scale=2.0, hr_second_pass_steps=4, denoising_strength=0.6)
    control = StopAfterReports(4 + 2)  # the 4 first-pass steps, then 2 of the second pass
    with pytest.raises(JobInterrupted) as stop:
        engine.generate(request, control)
    [image] = stop.value.partial.images
    assert image.size == (128, 128)
    assert "Hires upscale: 2," in stop.value.partial.infotexts[0]


def test_skip_keeps_the_partial_image_of_the_skipped_batch_and_goes_on(engine):
    full = engine.generate(txt(n_iter=3))
    result = engine.generate(txt(n_iter=3), StopAt(image_index=1, step=2, skip=True))
    assert len(result.images) == 3 and result.seeds == full.seeds
    assert np.array_equal(pixels(result.images[0]), pixels(full.images[0]))
    assert not np.array_equal(pixels(result.images[1]), pixels(full.images[1]))
    assert np.array_equal(pixels(result.images[2]), pixels(full.images[2]))


def test_api_txt2img_answers_200_with_images_when_interrupted(settings):
    from fastapi.testclient import TestClient

    from webui.server import build_services, create_app

    services = build_services(settings)
    services.queue.start()
    try:
        client = TestClient(create_app(services, with_ui=False), raise_server_exceptions=False,
                            base_url="http://127.0.0.1")
        answer = {}
        body = {"prompt": "a red circle", "seed": 5, "steps": 150, "width": 64, "height": 64,
                "sampler_name": "Euler", "batch_size": 2}
        worker = threading.Thread(target=lambda: answer.update(r=client.post("/sdapi/v1/txt2img", json=body)))
        worker.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = client.get("/sdapi/v1/progress").json()["state"]
            if state.get("sampling_step", 0) >= 2:
                break
            time.sleep(0.01)
        assert client.post("/sdapi/v1/interrupt").status_code == 200
        worker.join(120)
        response = answer["r"]
        assert response.status_code == 200, response.text
        images = response.json()["images"]
        assert len(images) == 2
        info = json.loads(response.json()["info"])
        assert len(info["infotexts"]) == 2 and "Steps: 150" in info["infotexts"][0]
        image = Image.open(io.BytesIO(base64.b64decode(images[0])))
        assert image.size == (64, 64)
    finally:
        services.queue.close()
