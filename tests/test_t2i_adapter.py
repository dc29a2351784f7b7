"""T2I-Adapters and drawn unit masks in the real engine: tiny random adapters written in TencentARC's
original layout (.pth) and diffusers' layout, put in models/ControlNet and run through the user's path."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from tests.test_controlnet_engine import silhouette
from webui.infotext import parse_infotext
from webui.models import t2i_adapter
from webui.models.random_controlnet import random_t2i_adapter, write_t2i_adapter
from webui.schemas import GenerationRequest, InvalidRequest

# The tiny test UNet's first down block has no attention, as SDXL's: its adapters are of the XL kind.
TINY_WIDTHS = (32, 64)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, tiny_checkpoint_dir):
    from tests.kdiffusion_reference import make_engine
    from tests.random_checkpoint import build_random_components
    from webui.models.random_controlnet import random_controlnet, write_controlnet

    root = tmp_path_factory.mktemp("t2i-engine")
    folder = root / "models" / "ControlNet"
    write_t2i_adapter(folder / "t2i-original.pth",
                      random_t2i_adapter(TINY_WIDTHS, adapter_type="full_adapter_xl", seed=1), "original")
    write_t2i_adapter(folder / "t2i-diffusers.safetensors",
                      random_t2i_adapter(TINY_WIDTHS, adapter_type="full_adapter_xl", seed=2))
    write_t2i_adapter(folder / "t2i-sketch.safetensors",
                      random_t2i_adapter(TINY_WIDTHS, adapter_type="full_adapter_xl", in_channels=1, seed=3))
    write_t2i_adapter(folder / "t2i-for-sd15.safetensors",  # SD 1.5's kind: its first map at the latent size
                      random_t2i_adapter(TINY_WIDTHS, adapter_type="full_adapter", seed=4), "original")
    sd1_unet, _, _ = build_random_components("sd1", seed=1)
    write_controlnet(folder / "cn.safetensors", random_controlnet(sd1_unet, embedding=(8, 16, 16, 32), seed=6))
    return make_engine(root, tiny_checkpoint_dir / "tiny-sd1.safetensors")


def circle(x: int = 20, y: int = 20, r: int = 12) -> Image.Image:
    return silhouette(x, y, r)


def unit(**fields) -> dict:
    base = dict(enabled=True, module="none", model="t2i-diffusers", weight=1.0, image=circle())
    base.update(fields)
    return base


def generate(engine, units=None, **fields):
    base = dict(prompt="a red circle", negative_prompt="blue", steps=3, width=64, height=64, seed=11,
                cfg_scale=5.0, sampler_name="Euler", save_images=False, checkpoint="tiny-sd1.safetensors")
    base.update(fields)
    if units is not None:
        base["alwayson_scripts"] = {"controlnet": {"args": units}}
    return engine.generate(GenerationRequest(**base))


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


def differs(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.abs(a - b).max() > 0)


def test_an_adapter_steers_and_weight_zero_or_guidance_end_zero_change_nothing(engine):
    plain = pixels(generate(engine))
    steered = generate(engine, [unit()])
    assert differs(pixels(steered), plain)
    assert np.array_equal(pixels(generate(engine, [unit(weight=0)])), plain)
    assert np.array_equal(pixels(generate(engine, [unit(guidance_end=0.0)])), plain)
    # A size that is not whole 16-pixel cells (an SDXL-kind adapter's) still runs.
    assert generate(engine, [unit()], width=72, height=56).images[0].size == (72, 56)
    # Another control image gives another image; the infotext names the adapter as a unit's model.
    assert differs(pixels(generate(engine, [unit(image=circle(44, 44))])), pixels(steered))
    assert parse_infotext(steered.infotexts[0])["ControlNet 0"].startswith("Module: none, Model: t2i-diffusers [")


def test_the_original_layout_a_sketch_adapter_and_control_modes_run(engine):
    plain = pixels(generate(engine))
    balanced = pixels(generate(engine, [unit(model="t2i-original")]))
    prompt = pixels(generate(engine, [unit(model="t2i-original", control_mode="My prompt is more important")]))
    control = pixels(generate(engine, [unit(model="t2i-original", control_mode="ControlNet is more important")]))
    sketch = pixels(generate(engine, [unit(model="t2i-sketch")]))
    for image in (balanced, prompt, control, sketch):
        assert differs(image, plain)
    assert differs(prompt, balanced) and differs(control, prompt)


def test_an_adapter_and_a_controlnet_act_together_also_with_pag_and_hires(engine):
    adapter = pixels(generate(engine, [unit()]))
    controlnet = pixels(generate(engine, [unit(model="cn")]))
    both = pixels(generate(engine, [unit(), unit(model="cn")]))
    assert differs(both, adapter) and differs(both, controlnet)
    pag = {"perturbed_attention": {"enabled": True, "scale": 2.0}}
    assert differs(pixels(generate(engine, [unit()], addons=pag)), pixels(generate(engine, addons=pag)))
    hires = dict(enable_hr=True, hr_scale=1.5, hr_second_pass_steps=2, denoising_strength=0.6)
    result = generate(engine, [unit()], **hires)
    assert result.images[0].size == (96, 96) and differs(pixels(result), pixels(generate(engine, **hires)))


def test_an_adapter_for_another_kind_of_unet_is_refused_with_a_message(engine):
    with pytest.raises(InvalidRequest, match=r"T2I-Adapter t2i-for-sd15 \[.*made for SD 1.x/2.x.*feature maps"):
        generate(engine, [unit(model="t2i-for-sd15")])
    # The engine goes on: the next job with a fitting adapter runs.
    assert generate(engine, [unit()]).images


def test_a_mask_drawn_on_a_unit_is_its_control_image_as_the_extension_does(engine):
    strokes = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(strokes).line((8, 56, 56, 8), fill=255, width=6)
    photo = Image.new("RGB", (64, 64), (120, 60, 200))
    drawn = pixels(generate(engine, [unit(image=photo, mask=strokes, module="canny")]))
    assert np.array_equal(drawn, pixels(generate(engine, [unit(image=strokes.convert("RGB"))])))
    assert differs(drawn, pixels(generate(engine, [unit(image=photo)])))
    # A blank mask (nothing drawn) leaves the unit as it is, in the extension's gradio state form too.
    blank = Image.new("L", (64, 64), 0)
    assert np.array_equal(pixels(generate(engine, [unit(image={"image": photo, "mask": blank})])),
                          pixels(generate(engine, [unit(image=photo)])))


@pytest.mark.parametrize("kind, widths, unet", [
    ("full_adapter", (8, 16, 16, 16), {"block_out_channels": (8, 16, 16, 16),
                                       "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)}),
    ("full_adapter_xl", (8, 16, 32, 32), {"block_out_channels": (8, 16, 32),
                                          "down_block_types": ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 2}),
    ("light_adapter", (8, 16, 16), {"block_out_channels": (8, 16, 16, 16),
                                    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)}),
])
def test_every_layout_converts_to_the_same_adapter_and_its_maps_land_where_the_unet_adds_them(kind, widths, unet):
    """SD 1.5's, SDXL's and the light (colour) adapter's structure, at small widths: the original file's
    tensors load strictly into diffusers' adapter and give the same maps, of the shapes the UNet takes."""
    from webui.models.loader import build_module

    model = random_t2i_adapter(widths, adapter_type=kind, seed=5)
    original = t2i_adapter.diffusers_to_original(model.state_dict(), dict(model.config))
    layout = t2i_adapter.detect_adapter_layout(original)
    assert layout == ("original_light" if kind == "light_adapter" else "original")
    state = t2i_adapter.adapter_state(original, layout, unet)
    config = t2i_adapter.infer_adapter_config(state)
    assert config["adapter_type"] == kind and t2i_adapter.adapter_fits(config, unet)
    from diffusers import T2IAdapter

    rebuilt = build_module(T2IAdapter, config, state, "T2I-Adapter")
    hint = torch.rand(1, 3, 128, 128)
    maps, again = model(hint), rebuilt(hint)
    assert all(torch.equal(a, b) for a, b in zip(maps, again))
    assert [(m.shape[1], 16 // m.shape[-1]) for m in maps] == t2i_adapter.adapter_features(config)


def test_style_adapters_and_unknown_files_get_a_clear_refusal():
    from webui.schemas import ModelLoadError

    assert t2i_adapter.detect_adapter_layout({"style_embedding": None, "ln_post.weight": None}) == "style"
    with pytest.raises(ModelLoadError, match="style T2I-Adapters"):
        t2i_adapter.adapter_state({}, "style", {"down_block_types": ()})
    assert t2i_adapter.detect_adapter_layout({"model.diffusion_model.x": None}) is None
