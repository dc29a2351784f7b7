"""The engine's noise on a tiny SD1 model: variation seeds, ENSD, noise sources, their infotext; the hires prompt schedule."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from webui.catalog import Catalog
from webui.engine.conditioning import PromptEncoder
from webui.engine.engine import Engine
from webui.infotext import infotext_to_request_fields, parse_infotext
from webui.models.manager import ModelManager
from webui.options import Options
from webui.schemas import GenerationRequest, InvalidRequest


@pytest.fixture
def engine(settings):
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog), options=Options())


def txt(**fields) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blue", steps=3, width=64, height=64, seed=42,
                cfg_scale=5.0, sampler_name="Euler", save_images=False)
    base.update(fields)
    return GenerationRequest(**base)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def run(engine, **fields):
    result = engine.generate(txt(**fields))
    return pixels(result.images[0]), parse_infotext(result.infotexts[0]), result


def test_variation_strength_zero_gives_the_seed_one_the_subseed_half_neither(engine):
    seed_image, _, _ = run(engine, seed=42)
    subseed_image, _, _ = run(engine, seed=7)
    zero, info_zero, _ = run(engine, seed=42, subseed=7, subseed_strength=0.0)
    one, _, _ = run(engine, seed=42, subseed=7, subseed_strength=1.0)
    half, info, result = run(engine, seed=42, subseed=7, subseed_strength=0.5)
    assert np.array_equal(zero, seed_image) and "Variation seed" not in info_zero
    assert np.abs(one - subseed_image).max() <= 2
    assert np.abs(half - seed_image).mean() > 1 and np.abs(half - subseed_image).mean() > 1
    assert info["Variation seed"] == "7" and info["Variation seed strength"] == "0.5"
    assert result.seeds == [42] and result.subseeds == [7]


def test_a_variation_batch_keeps_the_seed_and_counts_up_the_subseed(engine):
    batch = engine.generate(txt(seed=42, subseed=7, subseed_strength=0.5, batch_size=2))
    assert batch.seeds == [42, 42] and batch.subseeds == [7, 8]
    second, _, _ = run(engine, seed=42, subseed=8, subseed_strength=0.5)
    assert np.abs(pixels(batch.images[1]) - second).max() <= 2
    assert parse_infotext(batch.infotexts[1])["Variation seed"] == "8"


def test_seed_resize_from_changes_the_noise_and_round_trips(engine):
    resized, info, _ = run(engine, seed_resize_from_w=32, seed_resize_from_h=32)
    plain, _, _ = run(engine)
    assert info["Seed resize from-1"] == "32" and info["Seed resize from-2"] == "32"
    assert not np.array_equal(resized, plain)
    fields = infotext_to_request_fields(info)
    assert (fields["seed_resize_from_w"], fields["seed_resize_from_h"]) == (32, 32)
    assert np.array_equal(run(engine, **{k: fields[k] for k in ("seed_resize_from_w", "seed_resize_from_h")})[0],
                          resized)


def test_ensd_changes_ancestral_images_only_and_is_recorded_for_them(engine):
    ancestral, info_plain, _ = run(engine, sampler_name="Euler a")
    ancestral_ensd, info_a, _ = run(engine, sampler_name="Euler a", eta_noise_seed_delta=31337)
    euler, _, _ = run(engine)
    euler_ensd, info_e, _ = run(engine, eta_noise_seed_delta=31337)
    assert np.abs(ancestral - ancestral_ensd).mean() > 1
    assert np.array_equal(euler, euler_ensd)
    assert info_a["ENSD"] == "31337" and "ENSD" not in info_e and "ENSD" not in info_plain


def test_ensd_option_applies_and_override_per_request_wins(engine):
    engine.options.update({"eta_noise_seed_delta": 31337})
    by_option, info, _ = run(engine, sampler_name="Euler a")
    by_request, _, _ = run(engine, sampler_name="Euler a", eta_noise_seed_delta=31337)
    assert np.array_equal(by_option, by_request) and info["ENSD"] == "31337"
    off, info_off, _ = run(engine, sampler_name="Euler a", eta_noise_seed_delta=0)
    assert "ENSD" not in info_off and not np.array_equal(off, by_option)


def test_noise_source_changes_the_image_and_is_written_as_a1111_does(engine):
    gpu, info_gpu, _ = run(engine)
    nv, info_nv, _ = run(engine, randn_source="NV")
    cpu, info_cpu, _ = run(engine, randn_source="CPU")
    assert np.array_equal(gpu, nv)  # no CUDA here: "GPU" is its NV equivalent
    assert not np.array_equal(gpu, cpu)
    assert "RNG" not in info_gpu and info_nv["RNG"] == "NV" and info_cpu["RNG"] == "CPU"
    assert infotext_to_request_fields(info_cpu)["randn_source"] == "CPU"
    engine.options.update({"randn_source": "CPU"})
    assert np.array_equal(run(engine)[0], cpu)
    with pytest.raises(InvalidRequest, match="randn_source"):
        engine.generate(txt(randn_source="TPU"))
    with pytest.raises(InvalidRequest, match="subseed_strength"):
        engine.generate(txt(subseed_strength=2.0))


def test_hires_pass_of_a_prompt_edit_uses_a1111s_second_pass_schedule(engine):
    """`a [red:blue:0.5] circle`: red then blue in the first pass, blue throughout the second (A1111)."""
    model = engine.models.ensure(None)
    encoder = PromptEncoder(model.tokenizers, model.text_encoders, family=model.family)
    red, blue = (encoder.encode([f"a {c} circle"]).embeds[0] for c in ("red", "blue"))
    seen: list[tuple[int, str]] = []

    def record(module, args, kwargs):
        positive = kwargs["encoder_hidden_states"][1].float()
        name = "red" if torch.allclose(positive, red, atol=1e-5) else "blue" if torch.allclose(positive, blue, atol=1e-5) \
            else "other"
        seen.append((args[0].shape[-1], name))

    handle = model.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        engine.generate(txt(prompt="a [red:blue:0.5] circle", steps=4, enable_hr=True, hr_scale=2.0,
                            hr_second_pass_steps=4, denoising_strength=1.0))
    finally:
        handle.remove()
    # First pass: steps 0-2 are at or before int(0.5 * 4) = 2. Second pass: 0.5 lies before it, so blue.
    assert seen == [(8, "red")] * 3 + [(8, "blue")] + [(16, "blue")] * 4
