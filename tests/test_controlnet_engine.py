"""ControlNet in the real engine: tiny random ControlNets in both single-file layouts, SD1 and SDXL,
loaded from models/ControlNet through the user's path and run in our own denoising loop."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from webui.catalog import Catalog
from webui.controlnet import units_from_infotext
from webui.engine.controlnet import residual_scales
from webui.controlnet.units import ControlUnit
from webui.engine.engine import Engine
from webui.infotext import parse_infotext
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest, InvalidRequest

EMBEDDING = (8, 16, 16, 32)  # three stride-2 hint convolutions: the tiny VAE downsamples by 8


@pytest.fixture(scope="module")
def controlnet_files(tmp_path_factory):
    """Random ControlNets for the tiny SD1 and SDXL checkpoints, in the original and diffusers layouts."""
    from tests.random_checkpoint import build_random_components
    from webui.models.random_controlnet import random_controlnet, write_controlnet

    folder = tmp_path_factory.mktemp("controlnets")
    sd1_unet, _, _ = build_random_components("sd1", seed=1)
    sdxl_unet, _, _ = build_random_components("sdxl", seed=4)
    write_controlnet(folder / "cn-sd1-original.pth", random_controlnet(sd1_unet, embedding=EMBEDDING, seed=5),
                     "original")
    write_controlnet(folder / "cn-sd1-diffusers.safetensors",
                     random_controlnet(sd1_unet, embedding=EMBEDDING, seed=6), "diffusers", dtype=torch.float16)
    write_controlnet(folder / "cn-sd1-factor4.safetensors",  # made for a VAE that downsamples by 4
                     random_controlnet(sd1_unet, embedding=(8, 16, 32), seed=9))
    write_controlnet(folder / "cn-sdxl-original.safetensors",
                     random_controlnet(sdxl_unet, embedding=EMBEDDING, seed=7), "original")
    write_controlnet(folder / "cn-sdxl-diffusers.safetensors",
                     random_controlnet(sdxl_unet, embedding=EMBEDDING, seed=8), "diffusers")
    return folder


@pytest.fixture(scope="module")
def engine(tmp_path_factory, controlnet_files, tiny_checkpoint_dir):
    """One engine for the module (the tests only read from it): tiny SD1 and SDXL checkpoints, the ControlNets."""
    from webui.config import Settings

    root = tmp_path_factory.mktemp("cn-engine")
    models_dir = root / "models"
    (models_dir / "Stable-diffusion").mkdir(parents=True)
    shutil.copytree(controlnet_files, models_dir / "ControlNet")
    for name in ("tiny-sd1.safetensors", "tiny-sdxl.safetensors"):
        shutil.copy(tiny_checkpoint_dir / name, models_dir / "Stable-diffusion")
    settings = Settings(models_dir=models_dir, outdir=root / "outputs", wildcards_dir=root / "wildcards",
                        styles_file=root / "styles.csv", device="cpu", precision="fp32")
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog))


def silhouette(x: int = 16, y: int = 16, r: int = 12) -> Image.Image:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).ellipse((x - r, y - r, x + r, y + r), fill="white")
    return image


def unit(**fields) -> dict:
    base = dict(enabled=True, module="none", model="cn-sd1-diffusers", weight=1.0, image=silhouette())
    base.update(fields)
    return base


def txt(units=None, **fields) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blue", steps=3, width=64, height=64, seed=42,
                cfg_scale=5.0, sampler_name="Euler", save_images=False, checkpoint="tiny-sd1.safetensors")
    base.update(fields)
    if units is not None:
        base["alwayson_scripts"] = {"controlnet": {"args": units}}
    return GenerationRequest(**base)


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


def test_a_unit_steers_and_weight_zero_or_guidance_end_zero_change_nothing(engine):
    plain = pixels(engine.generate(txt()))
    steered = engine.generate(txt([unit()]))
    assert np.abs(pixels(steered) - plain).max() > 0
    assert np.array_equal(pixels(engine.generate(txt([unit(weight=0)]))), plain)
    assert np.array_equal(pixels(engine.generate(txt([unit(guidance_end=0.0)]))), plain)
    assert np.array_equal(pixels(engine.generate(txt([unit(enabled=False)]))), plain)
    # The infotext names the unit as the extension writes it, and PNG Info reads it back.
    parsed = parse_infotext(steered.infotexts[0])
    assert parsed["ControlNet 0"].startswith("Module: none, Model: cn-sd1-diffusers [")
    restored = units_from_infotext(parsed)
    assert restored[0].model.startswith("cn-sd1-diffusers [") and restored[0].weight == 1.0
    assert restored[0].resize_mode == "Crop and Resize" and restored[0].control_mode == "Balanced"


def test_two_units_both_act_and_the_original_layout_loads_from_a_pth(engine):
    first = pixels(engine.generate(txt([unit()])))
    second = pixels(engine.generate(txt([unit(model="cn-sd1-original", image=silhouette(44, 44))])))
    both = engine.generate(txt([unit(), unit(model="cn-sd1-original", image=silhouette(44, 44))]))
    assert np.abs(pixels(both) - first).max() > 0 and np.abs(pixels(both) - second).max() > 0
    assert "ControlNet 1" in parse_infotext(both.infotexts[0])


def test_guidance_range_control_modes_and_preprocessor_change_the_image(engine):
    full = pixels(engine.generate(txt([unit()])))
    late = pixels(engine.generate(txt([unit(guidance_start=0.5)])))
    prompt = pixels(engine.generate(txt([unit(control_mode="My prompt is more important")])))
    control = pixels(engine.generate(txt([unit(control_mode=2)])))
    inverted = pixels(engine.generate(txt([unit(module="invert")])))
    for other in (late, prompt, control, inverted):
        assert np.abs(other - full).max() > 0
    assert not np.array_equal(prompt, control)


def test_soft_injection_scales_follow_the_extension():
    scales = residual_scales(ControlUnit(weight=2.0, control_mode="My prompt is more important"), 13)
    assert scales[-1] == 2.0 and abs(scales[0] - 2.0 * 0.825 ** 12) < 1e-12
    assert residual_scales(ControlUnit(weight=0.5), 4) == [0.5] * 4
    # The extension softens canny (and MLSD) units in the hires pass whatever their mode.
    assert residual_scales(ControlUnit(module="canny"), 4, hires=True) == [0.825 ** 3, 0.825 ** 2, 0.825, 1.0]
    assert residual_scales(ControlUnit(module="none"), 4, hires=True) == [1.0] * 4


def test_sdxl_controlnets_in_both_layouts_and_family_mismatch_is_refused(engine):
    xl = dict(checkpoint="tiny-sdxl.safetensors")
    plain = pixels(engine.generate(txt(**xl)))
    for name in ("cn-sdxl-original", "cn-sdxl-diffusers"):
        assert np.abs(pixels(engine.generate(txt([unit(model=name)], **xl))) - plain).max() > 0
    with pytest.raises(InvalidRequest, match=r"ControlNet cn-sd1-diffusers .* is for an SD 1.x/2.x-type model.* is an SDXL-type model"):
        engine.generate(txt([unit()], **xl))
    with pytest.raises(InvalidRequest, match="reads its image at 1/4 of the pixels"):
        engine.generate(txt([unit(model="cn-sd1-factor4")]))
    with pytest.raises(InvalidRequest, match="not found"):
        engine.generate(txt([unit(model="missing")]))
    with pytest.raises(InvalidRequest, match="has no image"):
        engine.generate(txt([unit(image=None)]))


def test_img2img_uses_the_init_image_and_hires_is_controlled_too(engine):
    init = Image.new("RGB", (64, 64), (200, 30, 30))
    plain = pixels(engine.generate(txt(init_image=init, denoising_strength=0.8)))
    steered = pixels(engine.generate(txt([unit(image=None)], init_image=init, denoising_strength=0.8)))
    assert np.abs(steered - plain).max() > 0
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((8, 8, 40, 40), fill=255)
    inpaint = dict(init_image=init, mask=mask, inpaint_full_res=True, inpaint_full_res_padding=4,
                   denoising_strength=0.8)
    assert np.abs(pixels(engine.generate(txt([unit()], **inpaint))) - pixels(engine.generate(txt(**inpaint)))).max() > 0
    hires = dict(enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2, denoising_strength=0.6)
    without = pixels(engine.generate(txt(**hires)))
    with_unit = engine.generate(txt([unit(resize_mode="Just Resize", guidance_start=0.0)], **hires))
    assert with_unit.images[0].size == (96, 96)
    assert np.abs(pixels(with_unit) - without).max() > 0
