"""Guidance add-ons on the real engine (tiny random SD1 checkpoint): off is today's image, on does what it says."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from webui.addons import addons_from_infotext, find_addon, resolve_addons
from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.infotext import parse_infotext
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest, InvalidRequest

DT = "Dynamic Thresholding (CFG Scale Fix)"


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_checkpoint_dir):
    import shutil

    from webui.config import Settings

    root = tmp_path_factory.mktemp("addons")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_checkpoint_dir / "tiny-sd1.safetensors", root / "models" / "Stable-diffusion")
    settings = Settings(models_dir=root / "models", outdir=root / "outputs", device="cpu", precision="fp32",
                        save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog))


def make(engine, **fields):
    base = dict(prompt="a red circle", negative_prompt="blue", steps=4, width=64, height=64, seed=42,
                cfg_scale=9.0, sampler_name="Euler", save_images=False)
    base.update(fields)
    return engine.generate(GenerationRequest(**base))


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def plain(engine):
    return pixels(make(engine))


@pytest.mark.parametrize("addons", [
    {"dynamic_thresholding": {"enabled": False, "mimic_scale": 3}},
    {"freeu": {"enabled": False, "b1": 1.5}},
    {"perturbed_attention": {"enabled": False}},
    {"cfg_rescale": {"phi": 0.0}},
])
def test_a_disabled_addon_gives_exactly_todays_image(engine, plain, addons):
    result = make(engine, addons=addons)
    assert np.array_equal(pixels(result), plain)
    assert "Dynamic thresholding enabled" not in result.infotexts[0]


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M", "DDIM", "UniPC", "LCM"])
def test_dynamic_thresholding_mimicking_the_real_scale_at_percentile_100_is_plain_cfg(engine, sampler):
    plain_image = pixels(make(engine, sampler_name=sampler))
    same = make(engine, sampler_name=sampler,
                addons={"dynamic_thresholding": {"enabled": True, "mimic_scale": 9.0, "threshold_percentile": 100}})
    assert np.abs(pixels(same) - plain_image).max() <= 1
    lower = make(engine, sampler_name=sampler, addons={"dynamic_thresholding": {"enabled": True, "mimic_scale": 2}})
    assert not np.array_equal(pixels(lower), plain_image)  # a different mimic scale really changes the image


def test_cfg_rescale_phi_zero_is_plain_and_phi_one_changes_the_image(engine, plain):
    assert np.array_equal(pixels(make(engine, alwayson_scripts={"CFG Rescale Extension": {"args": [0.0]}})), plain)
    rescaled = make(engine, alwayson_scripts={"CFG Rescale Extension": {"args": [1.0, False, 1, False]}})
    assert not np.array_equal(pixels(rescaled), plain)
    assert parse_infotext(rescaled.infotexts[0])["CFG Rescale phi"] == "1"
    assert any("CFG Rescale Extension" in w and "ignored" in w for w in rescaled.warnings)


def test_freeu_at_one_is_plain_and_is_switched_off_after_the_job(engine, plain):
    neutral = make(engine, addons={"freeu": {"enabled": True, "b1": 1, "b2": 1, "s1": 1, "s2": 1}})
    assert np.abs(pixels(neutral) - plain).max() <= 1
    strong = make(engine, addons={"freeu": {"enabled": True, "b1": 1.6, "b2": 1.6, "s1": 0.2, "s2": 0.2}})
    assert not np.array_equal(pixels(strong), plain)
    assert "freeu_b1: 1.6" in strong.infotexts[0]
    assert np.array_equal(pixels(make(engine)), plain)  # the UNet is left unpatched


def test_perturbed_attention_scale_zero_is_plain_and_a_scale_changes_the_image(engine, plain):
    assert np.array_equal(pixels(make(engine, addons={"perturbed_attention": {"enabled": True, "scale": 0}})), plain)
    for layers in ("middle", "all"):
        guided = make(engine, addons={"perturbed_attention": {"enabled": True, "scale": 3, "layers": layers}})
        assert not np.array_equal(pixels(guided), plain)
    assert np.array_equal(pixels(make(engine)), plain)  # attention processors restored


def test_alwayson_titles_match_case_insensitively_and_unknown_ones_warn(engine):
    result = make(engine, alwayson_scripts={DT.upper(): {"args": [True, 3.0]}, "Regional Prompter": {"args": []}})
    parsed = parse_infotext(result.infotexts[0])
    assert parsed["Dynamic thresholding enabled"] == "True" and float(parsed["Mimic scale"]) == 3.0
    assert any("Regional Prompter" in w for w in result.warnings)


def test_positional_args_map_in_the_extensions_order_with_ui_defaults_for_missing_ones():
    active, _ = resolve_addons({}, {DT: {"args": [True, 5.0, 99.5, "Cosine Down", 1.0]}})
    values = active["dynamic_thresholding"]
    assert (values["mimic_scale"], values["threshold_percentile"], values["mimic_mode"], values["mimic_scale_min"]) \
        == (5.0, 99.5, "Cosine Down", 1.0)
    assert values["cfg_mode"] == "Constant" and values["scaling_startpoint"] == "MEAN" \
        and values["variability_measure"] == "AD" and values["interpolate_phi"] == 1.0
    active, _ = resolve_addons({}, {"PerturbedAttentionGuidance Integrated": {"args": [True, 2.5, 10, 0.1, 0.9]}})
    assert active["perturbed_attention"] == {"enabled": True, "scale": 2.5, "attenuation": 10.0, "start": 0.1,
                                             "end": 0.9, "layers": "middle"}
    active, _ = resolve_addons({}, {"FreeU Integrated": {"args": [True, 1.5, 1.6, 0.9, 0.2]}})
    assert active["freeu"]["s2"] == 0.2 and active["freeu"]["end"] == 1.0


@pytest.mark.parametrize("named, alwayson", [
    ({"dynamic_thresholding": {"enabled": True, "mimic_mode": "Sideways"}}, {}),
    ({"dynamic_thresholding": {"mimic": 7}}, {}),
    ({"no_such_addon": {}}, {}),
    ({}, {DT: {"args": [True, "lots"]}}),
    ({}, {"FreeU Integrated": {"args": [True, 9.0]}}),
])
def test_bad_addon_values_are_refused_naming_the_field(named, alwayson):
    with pytest.raises(InvalidRequest) as caught:
        resolve_addons(named, alwayson)
    assert caught.value.field


def test_infotext_round_trips_every_addon():
    for spec_key, values in [
        ("dynamic_thresholding", {"enabled": True, "mimic_scale": 4.5, "mimic_mode": "Power Up",
                                  "variability_measure": "STD", "sched_val": 2.0}),
        ("freeu", {"enabled": True, "b1": 1.3, "s2": 0.2}),
        ("perturbed_attention", {"enabled": True, "scale": 5.0, "layers": "up"}),
        ("soft_inpainting", {"enabled": True, "mask_blend_power": 2.0}),
    ]:
        spec = find_addon(spec_key)
        full = spec.from_named(values, spec_key)
        from webui.infotext import format_infotext
        text = format_infotext("p", "", {"Steps": 4, **spec.infotext(full)})
        assert addons_from_infotext(parse_infotext(text))[spec_key] == full


def test_soft_inpainting_only_applies_to_inpainting_and_disabled_changes_nothing(engine, plain):
    result = make(engine, addons={"soft_inpainting": {"enabled": True}})
    assert np.array_equal(pixels(result), plain)
    assert any("Soft Inpainting applies to inpaint only" in w for w in result.warnings)
    init = Image.fromarray(plain.astype(np.uint8))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    hard = make(engine, init_image=init, mask=mask, denoising_strength=0.8)
    off = make(engine, init_image=init, mask=mask, denoising_strength=0.8,
               alwayson_scripts={"Soft Inpainting": {"args": [False, 2]}})
    assert np.array_equal(pixels(off), pixels(hard))
    soft = make(engine, init_image=init, mask=mask, denoising_strength=0.8,
                alwayson_scripts={"soft inpainting": {"args": [True]}})
    assert not np.array_equal(pixels(soft), pixels(hard))
    parsed = parse_infotext(soft.infotexts[0])
    assert parsed["Soft inpainting enabled"] == "True" and float(parsed["Soft inpainting transition contrast boost"]) == 4


def test_addons_run_with_sdxl_with_hires_fix_and_with_a_timesteps_sampler(tmp_path_factory, tiny_checkpoint_dir):
    import shutil

    from webui.config import Settings

    root = tmp_path_factory.mktemp("addons-sdxl")
    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_checkpoint_dir / "tiny-sdxl.safetensors", root / "models" / "Stable-diffusion")
    settings = Settings(models_dir=root / "models", outdir=root / "outputs", device="cpu", precision="fp32",
                        save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    sdxl = Engine(settings, catalog, ModelManager(settings, catalog))
    every = {"dynamic_thresholding": {"enabled": True, "mimic_scale": 4, "cfg_mode": "Cosine Up"},
             "freeu": {"enabled": True, "b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2, "end": 0.5},
             "perturbed_attention": {"enabled": True, "attenuation": 20}, "cfg_rescale": {"phi": 0.5}}
    plain = pixels(make(sdxl, steps=3))
    for fields in ({"steps": 3}, {"steps": 3, "sampler_name": "UniPC"},
                   {"steps": 2, "enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.5}):
        result = make(sdxl, addons=every, **fields)
        parsed = parse_infotext(result.infotexts[0])
        assert parsed["CFG mode"] == "Cosine Up" and parsed["freeu_end"] == "0.5" and parsed["pagi_attenuation"] == "20"
        assert float(parsed["CFG Rescale phi"]) == 0.5
    assert np.array_equal(pixels(make(sdxl, steps=3)), plain)  # the UNet is left as it was


def test_every_declared_addon_has_an_engine_hook_and_declares_where_it_works():
    from webui.addons import ADDONS
    from webui.engine.guidance.hooks import GuidanceHooks

    assert {spec.key for spec in ADDONS} <= GuidanceHooks.IMPLEMENTED
    assert all(spec.hooks and set(spec.hooks) <= {"unet", "combine", "mask_blend"} for spec in ADDONS)
