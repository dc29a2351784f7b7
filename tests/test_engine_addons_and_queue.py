"""LoRA tags and embeddings through the real engine, and the real engine behind the job queue."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.jobs import JobQueue
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest, JobStatus


@pytest.fixture
def engine(settings):
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog))


def request(prompt="a red circle", **fields) -> GenerationRequest:
    base = dict(prompt=prompt, steps=3, width=64, height=64, seed=11, sampler_name="Euler", save_images=False)
    base.update(fields)
    return GenerationRequest(**base)


def image(engine, prompt, **fields) -> np.ndarray:
    return np.asarray(engine.generate(request(prompt, **fields)).images[0])


def write_kohya_lora(path, unet, rank=4, scale=0.5, seed=0):
    """A kohya LoRA over every attention projection of ``unet`` (SD1 names: diffusers paths, '_' for '.')."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and re.search(r"attn[12]\.to_[qkv]$", name):
            key = "lora_unet_" + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * scale
            tensors[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * scale
            tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(path), metadata={"ss_output_name": "tiny", "ss_base_model_version": "sd_v1"})


def test_lora_tag_changes_the_image_and_removing_it_restores_it_exactly(engine, settings):
    base = image(engine, "a red circle")
    write_kohya_lora(settings.model_folder("Lora") / "tiny.safetensors", engine.models.loaded.unet)
    engine.catalog.refresh_loras()
    result = engine.generate(request("a red circle <lora:tiny:1>"))
    assert not np.array_equal(np.asarray(result.images[0]), base)
    lora_hash = engine.catalog.find_lora("tiny").short_hash
    assert f"Lora hashes: \"tiny: {lora_hash}\"" in result.infotexts[0] or f"tiny: {lora_hash}" in result.infotexts[0]
    weaker = image(engine, "a red circle <lora:tiny:0.3>")
    assert not np.array_equal(weaker, np.asarray(result.images[0]))
    assert np.array_equal(image(engine, "a red circle"), base)
    assert engine.models.load_count == 1  # LoRAs never reload the checkpoint


def test_unknown_lora_warns_and_the_job_still_runs(engine):
    result = engine.generate(request("a circle <lora:nope:1>"))
    assert result.images and any("nope" in w for w in result.warnings)


def test_embedding_is_used_only_when_its_name_is_in_the_prompt(engine, settings):
    plain = image(engine, "a shinything circle")
    other = image(engine, "a square")
    vectors = torch.randn(2, engine.models.loaded.text_encoders[0].config.hidden_size) * 5
    torch.save({"string_to_param": {"*": vectors}, "name": "shinything"},
               settings.model_folder("embeddings") / "shinything.pt")
    engine.catalog.refresh_embeddings()
    assert not np.array_equal(image(engine, "a shinything circle"), plain)
    assert np.array_equal(image(engine, "a square"), other)


def test_real_engine_behind_the_queue_reports_progress_and_interrupt_keeps_finished_images(engine, tmp_path):
    with JobQueue(engine.run, db_path=tmp_path / "q.sqlite3") as queue:
        queue.start()
        job = queue.submit("txt2img", request(n_iter=4, steps=8))
        deadline = time.time() + 120
        while time.time() < deadline:
            current = queue.get(job.id)
            if current.progress is not None and current.progress.image_index >= 1 and current.progress.step >= 1:
                break
            time.sleep(0.01)
        queue.interrupt(job.id)
        done = queue.wait(job.id, timeout=120)
        assert done.status == JobStatus.INTERRUPTED
        assert 1 <= len(done.result.images) < 4
        after = queue.submit("txt2img", request(steps=2))
        assert queue.wait(after.id, timeout=120).status == JobStatus.SUCCEEDED


def test_vae_choice_from_the_options_is_used_and_recorded(settings):
    from diffusers import AutoencoderKL

    from webui.models.ldm_export import vae_to_ldm
    from webui.options import Options

    catalog = Catalog(settings)
    catalog.refresh()
    options = Options()
    engine = Engine(settings, catalog, ModelManager(settings, catalog), options=options)
    base = engine.generate(request())
    torch.manual_seed(123)
    other = AutoencoderKL.from_config(engine.models.loaded.vae.config)
    save_file({k: v.contiguous() for k, v in vae_to_ldm(other.state_dict(), dict(other.config)).items()},
              str(settings.model_folder("VAE") / "other.safetensors"))
    catalog.refresh_vaes()
    options.update({"sd_vae": "other.safetensors"})
    with_vae = engine.generate(request())
    assert not np.array_equal(np.asarray(with_vae.images[0]), np.asarray(base.images[0]))
    assert "VAE: other.safetensors" in with_vae.infotexts[0] and "VAE hash: " in with_vae.infotexts[0]
    options.update({"sd_vae": "None"})
    again = engine.generate(request())
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(base.images[0]))
    assert "VAE:" not in again.infotexts[0]


def test_live_previews_follow_the_option(settings, tmp_path):
    from webui.options import Options

    catalog = Catalog(settings)
    catalog.refresh()
    options = Options()
    engine = Engine(settings, catalog, ModelManager(settings, catalog), options=options)

    def previews_seen():
        seen = []
        with JobQueue(engine.run, db_path=None, preview_every=1) as queue:
            queue.start()
            with queue.subscribe() as events:
                job = queue.submit("txt2img", request(steps=4))
                queue.wait(job.id, timeout=120)
                while (event := events.get(timeout=0.5)) is not None:
                    progress = event.job.progress
                    seen.append(event.type == "progress" and progress is not None and progress.preview is not None)
        return any(seen)

    options.update({"show_progress_every_n_steps": 1})
    assert previews_seen()
    options.update({"show_progress_every_n_steps": 0})  # A1111's display period: 0 = none
    assert not previews_seen()
    options.update({"show_progress_every_n_steps": 1, "live_previews_enable": False})
    assert not previews_seen()
