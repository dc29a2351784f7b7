"""A1111 options that change a job: ESRGAN_tile(_overlap), upscaler_for_img2img and sd_lora."""
from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import save_file

from tests.test_engine_addons_and_queue import write_kohya_lora
from tests.test_postprocess_upscalers import compact_state_dict, noise_image
from webui.api.field_report import ignored_field_warnings
from webui.api.models import Img2ImgBody
from webui.catalog import Catalog
from webui.config import Settings
from webui.engine import imageprep
from webui.engine.engine import Engine
from webui.models.manager import ModelManager
from webui.options import Options
from webui.postprocess.upscalers import UpscalerRegistry
from webui.schemas import GenerationRequest

UPSCALER = "realesr-general-x4v3"


def write_upscaler(models_dir):
    (models_dir / "RealESRGAN").mkdir(exist_ok=True)
    save_file(compact_state_dict(), str(models_dir / "RealESRGAN" / f"{UPSCALER}.safetensors"))


def tiles_run(registry: UpscalerRegistry) -> int:
    """How many tiles an upscale of a 40x34 image runs (the tiler asks should_stop once per tile)."""
    asked = []
    registry.upscale(noise_image(40, 34, seed=5), UPSCALER, 4, should_stop=lambda: asked.append(1) and False)
    return len(asked)


def test_esrgan_tile_option_sets_the_tile_size_and_the_start_up_flag_is_its_default(tmp_path):
    write_upscaler(tmp_path)
    settings = Settings(models_dir=tmp_path, device="cpu", precision="fp32", upscaler_tile_size=16,
                        upscaler_tile_overlap=0)
    options = Options()
    options.update({"ESRGAN_tile_overlap": 0})
    registry = UpscalerRegistry(settings, options=options, min_tile_overlap=0)
    options.update({"ESRGAN_tile": 16})
    small = tiles_run(registry)
    options.update({"ESRGAN_tile": 32})
    large = tiles_run(registry)
    assert small == 9 and large == 4  # ceil(40/16) * ceil(34/16) tiles, then ceil(40/32) * ceil(34/32)
    assert tiles_run(UpscalerRegistry(settings, min_tile_overlap=0)) == small  # no options: --upscaler-tile-size
    options.update({"ESRGAN_tile_overlap": 100})
    assert registry.tile_overlap == 100
    assert UpscalerRegistry(settings, options=options).tile_overlap == 100
    options.update({"ESRGAN_tile_overlap": 4})
    assert UpscalerRegistry(settings, options=options).tile_overlap >= 48  # the seam-free minimum still holds


def test_img2img_upscaler_enlarges_a_small_init_image_and_lanczos_does_not(tmp_path):
    write_upscaler(tmp_path)
    registry = UpscalerRegistry(Settings(models_dir=tmp_path, device="cpu", precision="fp32"))
    upscale = lambda image, scale: registry.upscale(image, UPSCALER, scale, tile_size=0)  # noqa: E731
    small = noise_image(16, 16)
    lanczos = imageprep.resize_image(small, 0, 64, 64)
    upscaled = imageprep.resize_image(small, 0, 64, 64, upscale)
    assert upscaled.size == (64, 64)
    assert np.array_equal(np.asarray(upscaled), np.asarray(registry.upscale(small, UPSCALER, 4, tile_size=0)))
    assert not np.array_equal(np.asarray(upscaled), np.asarray(lanczos))
    # Crop and resize / resize and fill use it too; latent upscale and large enough images never do.
    for mode in (1, 2):
        assert not np.array_equal(np.asarray(imageprep.resize_image(small, mode, 64, 48, upscale)),
                                  np.asarray(imageprep.resize_image(small, mode, 64, 48)))
    assert np.array_equal(np.asarray(imageprep.resize_image(small, 3, 64, 64, upscale)), np.asarray(lanczos))
    big = noise_image(96, 96)
    assert np.array_equal(np.asarray(imageprep.resize_image(big, 0, 64, 64, upscale)),
                          np.asarray(imageprep.resize_image(big, 0, 64, 64)))


@pytest.fixture
def engine(settings):
    write_upscaler(settings.models_dir)
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog), options=Options(),
                  upscalers=UpscalerRegistry(settings))


def request(**fields) -> GenerationRequest:
    base = dict(prompt="a red circle", steps=2, width=64, height=64, seed=11, sampler_name="Euler",
                save_images=False)
    base.update(fields)
    return GenerationRequest(**base)


def test_img2img_job_uses_the_upscaler_option_per_job(engine):
    init = noise_image(16, 16, seed=3)
    lanczos = engine.generate(request(init_image=init, denoising_strength=0.3))
    chosen = engine.generate(request(init_image=init, denoising_strength=0.3,
                                     override_settings={"upscaler_for_img2img": UPSCALER}))
    assert all("upscaler_for_img2img" not in w for w in chosen.warnings)
    assert not np.array_equal(np.asarray(chosen.images[0]), np.asarray(lanczos.images[0]))
    missing = engine.generate(request(init_image=init, denoising_strength=0.3,
                                      override_settings={"upscaler_for_img2img": "No such upscaler"}))
    assert any("No such upscaler" in w for w in missing.warnings)
    assert np.array_equal(np.asarray(missing.images[0]), np.asarray(lanczos.images[0]))


def test_sd_lora_adds_the_lora_to_every_prompt(engine, settings):
    base = engine.generate(request(batch_size=2))
    write_kohya_lora(settings.model_folder("Lora") / "tiny.safetensors", engine.models.loaded.unet)
    engine.catalog.refresh_loras()
    engine.options.update({"sd_lora": "tiny"})
    added = engine.generate(request(batch_size=2))
    assert added.prompts == ["a red circle<lora:tiny:1.0>"] * 2
    assert all("tiny: " in infotext for infotext in added.infotexts)  # Lora hashes
    explicit = engine.generate(request(prompt="a red circle<lora:tiny:1.0>", batch_size=2))
    assert np.array_equal(np.asarray(added.images[0]), np.asarray(explicit.images[0]))
    assert not np.array_equal(np.asarray(added.images[0]), np.asarray(base.images[0]))
    # A prompt that names the LoRA already keeps its own weight; the multiplier option sets the added one.
    assert engine.generate(request(prompt="x <lora:tiny:0.5>")).prompts == ["x <lora:tiny:0.5>"]
    weaker = engine.generate(request(override_settings={"extra_networks_default_multiplier": 0.5}))
    assert weaker.prompts == ["a red circle<lora:tiny:0.5>"]
    off = engine.generate(request(batch_size=2, override_settings={"sd_lora": "None"}))
    assert off.prompts == ["a red circle"] * 2
    assert np.array_equal(np.asarray(off.images[0]), np.asarray(base.images[0]))


def test_job_overrides_of_these_options_are_no_longer_reported_as_ignored():
    body = Img2ImgBody(init_images=[], override_settings={"sd_lora": "x", "upscaler_for_img2img": "Lanczos",
                                                          "ESRGAN_tile": 64})
    warnings = ignored_field_warnings(body)
    assert not any("sd_lora" in w or "upscaler_for_img2img" in w for w in warnings)
    assert any("ESRGAN_tile" in w for w in warnings)  # server-wide: the shared upscaler reads the server's


def test_server_options_take_the_tile_flags_as_defaults_and_a_stored_value_wins(settings):
    from dataclasses import replace

    from webui.server import build_services

    flags = replace(settings, upscaler_tile_size=320, upscaler_tile_overlap=64)
    services = build_services(flags)
    assert services.options.get("ESRGAN_tile") == 320 and services.upscalers.tile_size == 320
    services.options.update({"ESRGAN_tile": 128})
    assert services.upscalers.tile_size == 128
    assert build_services(flags).upscalers.tile_size == 128  # config.json, after a restart
