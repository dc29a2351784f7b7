"""The model manager owns every model under one memory policy, and hashes go through the hash cache."""
from __future__ import annotations

import hashlib

import pytest
from PIL import Image
from safetensors.torch import save_file

from test_postprocess_upscalers import compact_state_dict
from tests.fake_engine import OOM_MESSAGE
from webui.catalog import Catalog, HashCache
from webui.jobs import JobQueue
from webui.models.ldm_export import vae_to_ldm
from webui.models.manager import ModelManager
from webui.postprocess.face_detection import MTCNNDetector
from webui.postprocess.faces import FaceRestorers
from webui.postprocess.upscalers import UpscalerRegistry
from webui.schemas import GenerationRequest


@pytest.fixture
def upscalers(settings):
    folder = settings.model_folder("ESRGAN")
    folder.mkdir(parents=True, exist_ok=True)
    save_file(compact_state_dict(scale=2, seed=3), str(folder / "tiny-compact-2x.safetensors"))
    registry = UpscalerRegistry(settings)
    registry.upscale(Image.new("RGB", (8, 8), "red"), "tiny-compact-2x", 2, tile_size=0)
    assert registry.loaded_name() == "tiny-compact-2x"
    return registry


def test_out_of_memory_frees_upscalers_and_face_models_too(settings, upscalers):
    catalog = Catalog(settings)
    catalog.refresh()
    models = ModelManager(settings, catalog)
    detector = MTCNNDetector(device="cpu")
    faces = FaceRestorers(settings, detector=detector)
    faces.detect(Image.new("RGB", (32, 32), "gray"))
    assert detector.loaded
    models.register("upscalers", upscalers)
    models.register("face restorers", faces)

    def out_of_memory(kind, request, control):
        raise RuntimeError(OOM_MESSAGE)

    with JobQueue(out_of_memory, db_path=None, on_out_of_memory=models.free_after_out_of_memory) as queue:
        job = queue.submit("txt2img", GenerationRequest(prompt="big", width=16, height=16))
        assert queue.wait(job.id, 10).status.value == "failed"
    assert upscalers.loaded_name() is None and not detector.loaded
    # They load again on the next use.
    upscalers.upscale(Image.new("RGB", (8, 8), "red"), "tiny-compact-2x", 2, tile_size=0)
    assert upscalers.loaded_name() == "tiny-compact-2x"


def test_checkpoint_load_frees_other_models_first_and_external_vae_is_hashed_once(settings, upscalers, monkeypatch):
    catalog = Catalog(settings)
    catalog.refresh()
    models = ModelManager(settings, catalog)
    models.register("upscalers", upscalers)
    models.select_checkpoint("tiny-sd1")
    assert upscalers.loaded_name() is None  # free before load

    vae = models.loaded.vae
    vae_file = settings.model_folder("VAE") / "external.safetensors"
    vae_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), dict(vae.config)).items()}, str(vae_file))
    catalog.refresh_vaes()
    hashed = []
    real_sha256 = hashlib.sha256

    def counting_sha256(*args):
        hashed.append(args)
        return real_sha256(*args)

    monkeypatch.setattr(hashlib, "sha256", counting_sha256)
    reports = [models.addons().prepare([], "external.safetensors") for _ in range(3)]
    expected = real_sha256(vae_file.read_bytes()).hexdigest()[:10]
    assert [r.vae_hash for r in reports] == [expected] * 3
    assert len(hashed) == 1  # read for its hash on the first job only
    # A restart reads the remembered hash: no file is read again.
    assert HashCache(settings.outdir / ".cache" / "hashes.json").sha256(vae_file)[:10] == expected
    assert len(hashed) == 1
    models.unload()


def test_snapshot_reads_without_the_model_lock(settings):
    catalog = Catalog(settings)
    catalog.refresh()
    models = ModelManager(settings, catalog)
    assert models.snapshot().checkpoint is None and models.snapshot().embeddings is None
    with models.lock:  # as a running job holds it
        # Another thread can still read what is published.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(models.snapshot).result(timeout=1).checkpoint is None


def test_a_rescan_reads_no_file_contents_and_a_lookup_by_name_hashes_only_that_file(settings, tiny_checkpoint_dir,
                                                                                    monkeypatch):
    import shutil

    folder = settings.model_folder("Stable-diffusion")
    shutil.copy(tiny_checkpoint_dir / "tiny-sd1-b.safetensors", folder)
    hashed = []
    real_sha256 = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: (hashed.append(a), real_sha256(*a))[1])
    catalog = Catalog(settings)
    catalog.refresh()
    assert len(catalog.checkpoints()) == 2 and hashed == []  # a start on a big folder answers at once
    info = catalog.find_checkpoint("tiny-sd1-b")
    assert hashed == []
    assert catalog.find_checkpoint(info.title) == info and len(hashed) == 1  # the title names its hash
    assert info.sha256 == real_sha256((folder / "tiny-sd1-b.safetensors").read_bytes()).hexdigest()
    assert len(hashed) == 1  # computed once, then remembered
