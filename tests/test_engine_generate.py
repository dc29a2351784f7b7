"""The real engine on tiny random checkpoints: txt2img, img2img, inpaint, hires fix, samplers, saving."""
from __future__ import annotations

import shutil

import numpy as np
import torch
import pytest
from PIL import Image

from webui.catalog import Catalog
from webui.engine.engine import Engine
from webui.vocabulary import sampler_names
from webui.images import read_infotext
from webui.infotext import parse_infotext
from webui.models.manager import ModelManager
from webui.schemas import GenerationRequest, InvalidRequest


@pytest.fixture
def engine(settings):
    catalog = Catalog(settings)
    catalog.refresh()
    return Engine(settings, catalog, ModelManager(settings, catalog))


def txt(**fields) -> GenerationRequest:
    base = dict(prompt="a red circle", negative_prompt="blue", steps=3, width=64, height=64, seed=42,
                cfg_scale=5.0, sampler_name="Euler")
    base.update(fields)
    return GenerationRequest(**base)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_same_seed_same_pixels_other_seed_differs(engine):
    a = engine.generate(txt(save_images=False)).images[0]
    b = engine.generate(txt(save_images=False)).images[0]
    c = engine.generate(txt(seed=43, save_images=False)).images[0]
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_batch_of_two_equals_two_single_runs(engine):
    batch = engine.generate(txt(batch_size=2, save_images=False, sampler_name="Euler a"))
    first = engine.generate(txt(save_images=False, sampler_name="Euler a")).images[0]
    second = engine.generate(txt(seed=43, save_images=False, sampler_name="Euler a")).images[0]
    assert batch.seeds == [42, 43]
    assert np.abs(pixels(batch.images[0]) - pixels(first)).max() <= 2
    assert np.abs(pixels(batch.images[1]) - pixels(second)).max() <= 2


def test_saved_png_carries_the_infotext(engine, settings):
    result = engine.generate(txt(n_iter=2))
    assert len(result.saved_paths) == 2
    path = result.saved_paths[0]
    assert "txt2img-images" in path and path.endswith("-42.png")
    with Image.open(path) as saved:
        text = read_infotext(saved)
    assert text == result.infotexts[0]
    fields = parse_infotext(text)
    assert fields["Prompt"] == "a red circle" and fields["Negative prompt"] == "blue"
    assert str(fields["Seed"]) == "42" and str(fields["Steps"]) == "3"
    assert fields["Model"] == "tiny-sd1"
    assert fields["Model hash"] == engine.models.current_checkpoint.short_hash


@pytest.mark.parametrize("sampler", sampler_names())
def test_every_a1111_sampler_runs(engine, sampler):
    result = engine.generate(txt(sampler_name=sampler, steps=4, save_images=False))
    assert result.images[0].size == (64, 64)
    assert parse_infotext(result.infotexts[0])["Sampler"] == sampler


def test_legacy_sampler_name_sets_schedule(engine):
    result = engine.generate(txt(sampler_name="DPM++ 2M Karras", save_images=False))
    fields = parse_infotext(result.infotexts[0])
    assert fields["Sampler"] == "DPM++ 2M" and fields["Schedule type"] == "Karras"


def test_unknown_sampler_and_schedule_fall_back_with_warnings(engine):
    result = engine.generate(txt(sampler_name="No such sampler", scheduler="nonsense", save_images=False))
    assert any("No such sampler" in w and "DPM++ 2M" in w for w in result.warnings)
    assert any("nonsense" in w and "Automatic" in w for w in result.warnings)
    fields = parse_infotext(result.infotexts[0])
    assert fields["Sampler"] == "DPM++ 2M" and fields["Schedule type"] == "Karras"  # DPM++ 2M's automatic schedule
    same = engine.generate(txt(sampler_name="DPM++ 2M", save_images=False))
    assert np.array_equal(pixels(result.images[0]), pixels(same.images[0]))


def test_bad_fields_raise_invalid_request_naming_the_field(engine):
    with pytest.raises(InvalidRequest) as err:
        engine.generate(txt(steps=0))
    assert err.value.field == "steps"


def test_size_not_multiple_of_8_is_rounded_with_a_warning(engine):
    result = engine.generate(txt(width=70, save_images=False))
    assert result.images[0].size == (72, 64)
    assert any("multiple of 8" in w for w in result.warnings)


def init_picture(size=(64, 64)) -> Image.Image:
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    array[..., 0] = np.linspace(0, 255, size[0], dtype=np.uint8)[None, :]
    array[16:48, 16:48, 2] = 200
    return Image.fromarray(array)


def test_img2img_with_zero_denoising_returns_the_vae_round_trip(engine):
    from webui.engine import vae_ops

    init = init_picture()
    result = engine.generate(txt(init_image=init, denoising_strength=0.0, save_images=False))
    model = engine.models.loaded
    expected, _ = vae_ops.decode(model.vae, vae_ops.encode(model.vae, [init]))
    assert np.abs(pixels(result.images[0]) - pixels(expected[0])).max() <= 1
    assert float(parse_infotext(result.infotexts[0])["Denoising strength"]) == 0.0


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_every_resize_mode_gives_the_requested_size(engine, mode):
    result = engine.generate(txt(init_image=init_picture((96, 48)), resize_mode=mode, width=64, height=48,
                                 denoising_strength=0.5, save_images=False))
    assert result.images[0].size == (64, 48)


def square_mask(size=(64, 64), box=(24, 24, 40, 40)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


@pytest.mark.parametrize("only_masked", [False, True])
def test_inpaint_keeps_pixels_outside_the_mask_exactly(engine, only_masked):
    init = init_picture()
    result = engine.generate(txt(init_image=init, mask=square_mask(), mask_blur=2, denoising_strength=1.0,
                                 inpaint_full_res=only_masked, inpaint_full_res_padding=4, save_images=False))
    out, orig = pixels(result.images[0]), pixels(init)
    far = np.ones((64, 64), dtype=bool)
    far[24 - 8:40 + 8, 24 - 8:40 + 8] = False  # mask plus the blur border
    assert np.array_equal(out[far], orig[far])
    inside = (slice(26, 38), slice(26, 38))
    assert not np.array_equal(out[inside], orig[inside])


def test_only_masked_pastes_at_the_right_place(engine):
    init = init_picture()
    result = engine.generate(txt(init_image=init, mask=square_mask(box=(0, 0, 16, 16)), mask_blur=0,
                                 denoising_strength=1.0, inpaint_full_res=True, inpaint_full_res_padding=0,
                                 save_images=False))
    out, orig = pixels(result.images[0]), pixels(init)
    changed = np.argwhere(np.any(out != orig, axis=-1))
    assert changed.size and changed.max(axis=0).tolist()[0] < 16 and changed.max(axis=0).tolist()[1] < 16


def test_mask_of_another_size_is_resized_and_empty_mask_returns_image(engine):
    init = init_picture()
    result = engine.generate(txt(init_image=init, mask=square_mask((32, 32), (12, 12, 20, 20)),
                                 denoising_strength=1.0, save_images=False))
    assert result.images[0].size == (64, 64)
    empty = engine.generate(txt(init_image=init, mask=Image.new("L", (64, 64), 0), save_images=False))
    assert np.array_equal(pixels(empty.images[0]), pixels(init))
    assert any("mask is empty" in w for w in empty.warnings)


def test_nine_channel_inpainting_checkpoint_runs(settings, tiny_checkpoint_dir):
    shutil.copy(tiny_checkpoint_dir / "tiny-sd1-inpainting.safetensors", settings.model_folder("Stable-diffusion"))
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog))
    init = init_picture()
    request = txt(init_image=init, mask=square_mask(), denoising_strength=1.0, save_images=False,
                  checkpoint="tiny-sd1-inpainting.safetensors")
    result = engine.generate(request)
    assert engine.models.loaded.inpainting
    assert result.images[0].size == (64, 64)


def test_hires_fix_produces_scaled_size_and_records_fields(engine):
    result = engine.generate(txt(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", hr_second_pass_steps=2,
                                 denoising_strength=0.6, save_images=False))
    assert result.images[0].size == (96, 96)
    fields = parse_infotext(result.infotexts[0])
    assert fields["Hires upscale"] == "1.5" and fields["Hires steps"] == "2"
    assert fields["Hires upscaler"] == "Latent"
    assert (str(fields["Size-1"]), str(fields["Size-2"])) == ("64", "64")  # A1111 records the first pass
    lanczos = engine.generate(txt(enable_hr=True, hr_resize_x=80, hr_resize_y=72, hr_upscaler="Lanczos",
                                  save_images=False))
    assert lanczos.images[0].size == (80, 72)


def test_sdxl_checkpoint_generates(settings, tiny_checkpoint_dir):
    shutil.copy(tiny_checkpoint_dir / "tiny-sdxl.safetensors", settings.model_folder("Stable-diffusion"))
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog))
    result = engine.generate(txt(checkpoint="tiny-sdxl", save_images=False))
    assert engine.models.loaded.family == "sdxl"
    assert result.images[0].size == (64, 64)


def test_sdxl_inpainting_checkpoint_keeps_unmasked_pixels(settings):
    from tests.random_checkpoint import write_random_checkpoint

    write_random_checkpoint(settings.model_folder("Stable-diffusion") / "tiny-sdxl-inpainting.safetensors", "sdxl",
                            inpainting=True, seed=5)
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog))
    init = init_picture()
    result = engine.generate(txt(init_image=init, mask=square_mask(), mask_blur=0, denoising_strength=1.0,
                                 checkpoint="tiny-sdxl-inpainting", save_images=False))
    assert engine.models.loaded.family == "sdxl" and engine.models.loaded.inpainting
    out, orig = pixels(result.images[0]), pixels(init)
    outside = np.ones((64, 64), dtype=bool)
    outside[24:40, 24:40] = False
    assert np.array_equal(out[outside], orig[outside])


def test_composable_and_prompt_guides_by_each_part(engine):
    from webui.engine.prompting import prepare_prompts

    plan = prepare_prompts(txt(prompt="a red circle AND a blue square :0.5"), [1])[0]
    assert [part.weight for part in plan.parts] == [1.0, 0.5]
    assert [part.schedule[0][1].strip() for part in plan.parts] == ["a red circle", "a blue square"]
    single = pixels(engine.generate(txt(prompt="a red circle", save_images=False)).images[0])
    halves = pixels(engine.generate(txt(prompt="a red circle :0.5 AND a red circle :0.5",
                                        save_images=False)).images[0])
    mixed = engine.generate(txt(prompt="a red circle AND a blue square", save_images=False))
    assert np.abs(halves - single).max() <= 2  # two half-weight copies of a part = the part once
    assert not np.array_equal(pixels(mixed.images[0]), single)
    assert not any("AND" in w for w in mixed.warnings)
    assert parse_infotext(mixed.infotexts[0])["Prompt"] == "a red circle AND a blue square"


def test_composable_prompt_on_sdxl_and_inpainting_models(settings, tiny_checkpoint_dir):
    for name in ("tiny-sdxl", "tiny-sd1-inpainting"):
        shutil.copy(tiny_checkpoint_dir / f"{name}.safetensors", settings.model_folder("Stable-diffusion"))
    catalog = Catalog(settings)
    catalog.refresh()
    engine = Engine(settings, catalog, ModelManager(settings, catalog))
    sdxl = engine.generate(txt(prompt="a cat AND a dog :0.7", batch_size=2, checkpoint="tiny-sdxl",
                               save_images=False))
    assert len(sdxl.images) == 2
    inpaint = engine.generate(txt(prompt="a cat AND a dog", init_image=init_picture(), mask=square_mask(),
                                  checkpoint="tiny-sd1-inpainting", denoising_strength=1.0, save_images=False))
    assert inpaint.images[0].size == (64, 64)


def test_prompt_editing_works_in_the_negative_prompt(engine):
    """The negative rows the UNet sees follow the negative prompt's own schedule, step by step."""
    from webui.engine.conditioning import PromptEncoder

    model = engine.models.ensure(None)
    encoder = PromptEncoder(model.tokenizers, model.text_encoders, family=model.family)
    red, blue = (encoder.encode([c], negative=True).embeds[0] for c in ("red", "blue"))
    seen: list[str] = []

    def record(module, args, kwargs):
        negative = kwargs["encoder_hidden_states"][0].float()
        seen.append("red" if torch.allclose(negative, red, atol=1e-5)
                    else "blue" if torch.allclose(negative, blue, atol=1e-5) else "other")

    handle = model.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        engine.generate(txt(negative_prompt="[red:blue:0.5]", steps=4, save_images=False))
    finally:
        handle.remove()
    # Euler makes one model call a step; steps 0-2 are at or before int(0.5 * 4) = 2 (A1111's schedule).
    assert seen == ["red"] * 3 + ["blue"]

    def image(negative):
        return pixels(engine.generate(txt(negative_prompt=negative, steps=4, save_images=False)).images[0])

    assert not np.array_equal(image("blue"), image("red"))  # the negative prompt matters to the picture
    assert np.array_equal(image("[red:blue:1.0]"), image("red"))  # the switch after the last step never happens
