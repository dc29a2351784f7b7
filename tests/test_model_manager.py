"""ModelManager: switching, the RAM cache, and that nothing of an old model stays alive."""
from __future__ import annotations

import gc
import shutil
import weakref

import numpy as np
import pytest

from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest, ModelLoadError


@pytest.fixture
def three_checkpoints(settings, tiny_checkpoint_dir):
    folder = settings.model_folder("Stable-diffusion")
    shutil.copy(tiny_checkpoint_dir / "tiny-sd1-b.safetensors", folder)
    shutil.copy(tiny_checkpoint_dir / "tiny-sdxl.safetensors", folder)
    catalog = Catalog(settings)
    catalog.refresh()
    return catalog


def image_of(engine: Engine, checkpoint: str) -> np.ndarray:
    request = GenerationRequest(prompt="a circle", steps=2, width=64, height=64, seed=7, sampler_name="Euler",
                                checkpoint=checkpoint, save_images=False)
    return np.asarray(engine.generate(request).images[0])


def test_switching_gives_the_same_image_as_a_fresh_load(settings, three_checkpoints):
    names = ["tiny-sd1", "tiny-sd1-b", "tiny-sdxl"]
    fresh = {}
    for name in names:
        manager = ModelManager(settings, three_checkpoints)
        fresh[name] = image_of(Engine(settings, three_checkpoints, manager), name)
        manager.unload()
    manager = ModelManager(settings.with_changes(checkpoints_limit=2), three_checkpoints)
    engine = Engine(settings, three_checkpoints, manager)
    for name in names + names[::-1]:
        assert np.array_equal(image_of(engine, name), fresh[name]), name
    assert not np.array_equal(fresh["tiny-sd1"], fresh["tiny-sd1-b"])


def test_cache_limit_holds_and_cached_switch_does_not_read_the_file(settings, three_checkpoints):
    manager = ModelManager(settings.with_changes(checkpoints_limit=2), three_checkpoints)
    manager.select_checkpoint("tiny-sd1")
    manager.select_checkpoint("tiny-sd1-b")
    assert manager.load_count == 2
    manager.select_checkpoint("tiny-sd1")  # from RAM
    assert manager.load_count == 2
    manager.select_checkpoint("tiny-sdxl")
    assert len(manager.cached_checkpoints()) == 2
    manager.select_checkpoint("tiny-sd1-b")  # evicted: read again
    assert manager.load_count == 4


def test_same_checkpoint_twice_does_not_reload(settings, three_checkpoints):
    manager = ModelManager(settings, three_checkpoints)
    first = manager.select_checkpoint("tiny-sd1")
    unet = manager.loaded.unet
    manager.select_checkpoint(first.title)
    assert manager.loaded.unet is unet and manager.load_count == 1


def test_old_model_is_freed_after_a_switch(settings, three_checkpoints):
    manager = ModelManager(settings, three_checkpoints)
    manager.select_checkpoint("tiny-sd1")
    old = weakref.ref(manager.loaded.unet)
    old_weight = weakref.ref(next(manager.loaded.unet.parameters()))
    manager.select_checkpoint("tiny-sd1-b")
    gc.collect()
    assert old() is None and old_weight() is None
    assert manager.cached_checkpoints() == []  # limit 1 = no RAM cache, as A1111


def test_a_checkpoint_removed_from_disk_gives_a_clear_error(settings, three_checkpoints):
    manager = ModelManager(settings, three_checkpoints)
    info = three_checkpoints.find_checkpoint("tiny-sd1-b")
    info.path.unlink()
    with pytest.raises(ModelLoadError, match="no longer on disk"):
        manager.select_checkpoint("tiny-sd1-b")


def test_cpu_cache_switches_back_to_the_same_modules_with_addons_undone(settings, three_checkpoints):
    manager = ModelManager(settings.with_changes(checkpoints_limit=2), three_checkpoints)
    engine = Engine(settings, three_checkpoints, manager)
    before = image_of(engine, "tiny-sd1")
    unet = manager.loaded.unet
    weights = {name: p for name, p in unet.named_parameters()}
    manager.select_checkpoint("tiny-sd1-b")
    manager.select_checkpoint("tiny-sd1")
    assert manager.loaded.unet is unet and manager.load_count == 2
    assert all(p is weights[name] for name, p in unet.named_parameters())
    assert np.array_equal(image_of(engine, "tiny-sd1"), before)
