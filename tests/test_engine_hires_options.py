"""The hires second pass's own sampler, schedule type, prompts and checkpoint (A1111's hr_* fields)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.infotext import parse_infotext
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest


@pytest.fixture
def engine(settings, tiny_checkpoint_dir):
    shutil.copy(tiny_checkpoint_dir / "tiny-sd1-b.safetensors", settings.model_folder("Stable-diffusion"))
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog, checkpoints_limit=2))


def hires(**fields):
    base = dict(prompt="a red circle", negative_prompt="blue", steps=3, width=64, height=64, seed=42, cfg_scale=5.0,
                sampler_name="Euler", save_images=False, enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2,
                denoising_strength=0.7, checkpoint="tiny-sd1.safetensors")
    base.update(fields)
    return GenerationRequest(**base)


def run(engine, **fields):
    result = engine.generate(hires(**fields))
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16), parse_infotext(result.infotexts[0])


def test_hires_sampler_and_schedule_type_change_only_the_second_pass(engine):
    base, base_fields = run(engine)
    same, same_fields = run(engine, hr_sampler_name="Euler", hr_scheduler=None)
    assert np.array_equal(base, same) and "Hires sampler" not in same_fields
    other, fields = run(engine, hr_sampler_name="DPM++ 2M", hr_scheduler="Karras")
    assert not np.array_equal(base, other)
    assert fields["Sampler"] == "Euler" and fields["Hires sampler"] == "DPM++ 2M"
    assert fields["Hires schedule type"] == "Karras" and "Hires schedule type" not in base_fields


def test_hires_prompt_and_negative_prompt_are_used_and_recorded_when_they_differ(engine):
    base, base_fields = run(engine)
    same, same_fields = run(engine, hr_prompt="a red circle")
    assert np.array_equal(base, same) and "Hires prompt" not in same_fields
    other, fields = run(engine, hr_prompt="a green square", hr_negative_prompt="yellow")
    assert not np.array_equal(base, other)
    assert fields["Prompt"] == "a red circle" and fields["Hires prompt"] == "a green square"
    assert fields["Hires negative prompt"] == "yellow"


def test_hires_checkpoint_runs_the_second_pass_on_another_model(engine):
    base, _ = run(engine)
    other, fields = run(engine, hr_checkpoint="tiny-sd1-b.safetensors", n_iter=2)
    assert not np.array_equal(base, other)
    assert fields["Model"] == "tiny-sd1" and fields["Hires checkpoint"].startswith("tiny-sd1-b [")
    assert engine.models.current_checkpoint.model_name == "tiny-sd1"  # the job's own model is live again
