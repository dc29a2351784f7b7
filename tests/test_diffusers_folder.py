"""A checkpoint saved as a diffusers folder is listed and generates like the same weights in one file."""
from __future__ import annotations

import json

import numpy as np

from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.detection.families import FAMILIES
from webui.models.manager import ModelManager
from tests.random_checkpoint import build_random_components
from webui.schemas import GenerationRequest


def write_diffusers_folder(folder, family="sd1", seed=1):
    unet, vae, encoders = build_random_components(family, seed=seed)
    folder.mkdir(parents=True)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    for name, encoder in zip(("text_encoder", "text_encoder_2"), encoders):
        encoder.save_pretrained(folder / name)
    (folder / "scheduler").mkdir()
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(FAMILIES[family].scheduler))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))


def test_diffusers_folder_is_listed_and_matches_the_single_file(settings):
    write_diffusers_folder(settings.model_folder("Stable-diffusion") / "tiny-folder")
    catalog = Catalog(settings)
    catalog.refresh()
    names = [c.name for c in catalog.checkpoints()]
    assert sorted(names) == ["tiny-folder", "tiny-sd1.safetensors"]
    assert catalog.rejected_checkpoints() == []  # component files are not listed on their own
    folder = catalog.find_checkpoint("tiny-folder")
    assert folder.detection.family == "sd1" and folder.title.startswith("tiny-folder [")

    engine = Engine(settings, catalog, ModelManager(settings, catalog))

    def image(checkpoint):
        request = GenerationRequest(prompt="a circle", steps=3, width=64, height=64, seed=5, sampler_name="Euler",
                                    checkpoint=checkpoint, save_images=False)
        return engine.generate(request)

    from_folder = image("tiny-folder")
    from_file = image("tiny-sd1")  # the fixture file holds the same seed-1 weights
    assert np.array_equal(np.asarray(from_folder.images[0]), np.asarray(from_file.images[0]))
    assert "Model: tiny-folder" in from_folder.infotexts[0]


def test_sdxl_diffusers_folder_loads(settings):
    write_diffusers_folder(settings.model_folder("Stable-diffusion") / "xl", family="sdxl", seed=4)
    catalog = Catalog(settings)
    catalog.refresh()
    manager = ModelManager(settings, catalog)
    loaded = manager.select_checkpoint("xl")
    assert loaded.detection.family == "sdxl" and manager.loaded.family == "sdxl"
    assert len(manager.loaded.text_encoders) == 2
