"""A1111 job fields through the real engine on tiny random checkpoints: tiling, extra networks, hashes."""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from test_engine_addons_and_queue import engine, request, write_kohya_lora  # noqa: F401  (fixture)
from webui.engine.seamless import CircularPadding
from webui.infotext import parse_infotext


def pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


def test_tiling_pads_circularly_for_the_job_only_and_is_recorded(engine):
    plain = engine.generate(request())
    tiled = engine.generate(request(tiling=True))
    assert not np.array_equal(pixels(plain), pixels(tiled))
    assert parse_infotext(tiled.infotexts[0])["Tiling"] == "True"
    assert "Tiling" not in parse_infotext(plain.infotexts[0])
    model = engine.models.loaded
    convs = [m for part in (model.unet, model.vae) for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and {m.padding_mode for m in convs} == {"zeros"}  # restored after the job
    assert np.array_equal(pixels(engine.generate(request())), pixels(plain))


def test_circular_padding_makes_the_vae_decode_wrap_around(engine):
    """Seamless: shifting the latent one column shifts the decoded image by one latent pixel's width, edges included."""
    engine.generate(request())
    vae = engine.models.loaded.vae
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latent = torch.randn(1, vae.config.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(latent, 1, dims=3)

    def decode(z):
        with torch.no_grad():
            return vae.decode(z).sample

    assert (torch.roll(decode(latent), factor, dims=3) - decode(shifted)).abs().max() > 1e-3  # zero padding: seams
    with CircularPadding(True) as seamless:
        seamless.apply(vae)
        wrapped = (torch.roll(decode(latent), factor, dims=3) - decode(shifted)).abs().max()
    assert wrapped < 1e-4


def test_lora_hash_is_a1111s_tensor_data_hash_and_disable_extra_networks_skips_it(engine, settings):
    plain = engine.generate(request())
    path = settings.model_folder("Lora") / "tiny.safetensors"
    engine.generate(request())  # loads the model the LoRA is shaped for
    write_kohya_lora(path, engine.models.loaded.unet)
    engine.catalog.refresh_loras()
    raw = path.read_bytes()
    expected = hashlib.sha256(raw[8 + int.from_bytes(raw[:8], "little"):]).hexdigest()[:12]
    assert expected != hashlib.sha256(raw).hexdigest()[:12]
    with_lora = engine.generate(request("a red circle <lora:tiny:1>"))
    assert parse_infotext(with_lora.infotexts[0])["Lora hashes"] == f"tiny: {expected}"
    assert f'Lora hashes: "tiny: {expected}"' in with_lora.infotexts[0]
    disabled = engine.generate(request("a red circle <lora:tiny:1>", disable_extra_networks=True))
    assert np.array_equal(pixels(disabled), pixels(plain))
    assert "Lora hashes" not in parse_infotext(disabled.infotexts[0])


def test_ti_hashes_name_the_embeddings_a_prompt_uses(engine, settings):
    engine.generate(request())
    vectors = torch.randn(2, engine.models.loaded.text_encoders[0].config.hidden_size)
    path = settings.model_folder("embeddings") / "shinything.pt"
    torch.save({"string_to_param": {"*": vectors}, "name": "shinything"}, path)
    engine.catalog.refresh_embeddings()
    used = engine.generate(request("a circle", negative_prompt="shinything"))
    expected = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert parse_infotext(used.infotexts[0])["TI hashes"] == f"shinything: {expected}"
    assert "TI hashes" not in parse_infotext(engine.generate(request("a circle")).infotexts[0])


def picture(seed: int, size=(64, 64)):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).resize(size)


def square(box=(16, 16, 48, 48)):
    from PIL import Image

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, box)
    return mask


def test_several_init_images_make_one_image_each(engine):
    first, second = picture(1), picture(2)
    both = engine.generate(request(init_image=first, extra_init_images=[second], batch_size=2,
                                   denoising_strength=0.0))
    alone = [engine.generate(request(init_image=image, denoising_strength=0.0)) for image in (first, second)]
    assert len(both.images) == 2
    for made, single in zip(both.images, alone):
        assert np.abs(np.asarray(made, dtype=np.int16) - pixels(single)).max() <= 1
    from webui.schemas import InvalidRequest

    try:
        engine.generate(request(init_image=first, extra_init_images=[second], batch_size=1))
    except InvalidRequest as exc:
        assert exc.field == "init_images"
    else:
        raise AssertionError("two init images for a batch of one must be refused")


def test_mask_blur_across_and_down_separately():
    from webui.engine.imageprep import blur_mask_xy

    mask = square()
    across = np.asarray(blur_mask_xy(mask, 6, 0), dtype=np.int16)
    assert set(np.unique(across[:, 32])) == {0, 255}  # nothing blurred down a column
    assert 0 < across[32, 16] < 255 and 0 < across[32, 47] < 255  # the left and right edges soften
    down = np.asarray(blur_mask_xy(mask, 0, 6), dtype=np.int16)
    assert np.array_equal(down.T, across)


def test_noise_multiplier_mask_round_and_latent_mask_change_what_is_made(engine):
    init = picture(3)
    base = engine.generate(request(init_image=init, denoising_strength=0.6))
    quieter = engine.generate(request(init_image=init, denoising_strength=0.6, initial_noise_multiplier=0.5))
    assert not np.array_equal(pixels(base), pixels(quieter))
    assert parse_infotext(quieter.infotexts[0])["Noise multiplier"] == "0.5"
    assert "Noise multiplier" not in parse_infotext(base.infotexts[0])

    inpaint = dict(init_image=init, mask=square(), mask_blur_x=12, mask_blur_y=2, denoising_strength=1.0)
    rounded = engine.generate(request(**inpaint))
    soft = engine.generate(request(**inpaint, mask_round=False))
    assert not np.array_equal(pixels(rounded), pixels(soft))
    assert "Mask blur" not in parse_infotext(rounded.infotexts[0])  # A1111 writes it only when x == y

    # A black latent mask: the sampler repaints nothing, so the masked area shows the VAE round trip.
    from PIL import Image

    sharp = dict(init_image=init, mask=square(), mask_blur=0, denoising_strength=1.0)
    kept = engine.generate(request(**sharp, latent_mask=Image.new("L", (64, 64), 0)))
    rounded = engine.generate(request(**sharp))
    round_trip = engine.generate(request(init_image=init, denoising_strength=0.0))
    inside = (slice(16, 48), slice(16, 48))
    assert np.abs(pixels(kept)[inside] - pixels(round_trip)[inside]).max() <= 2
    assert np.abs(pixels(rounded)[inside] - pixels(round_trip)[inside]).max() > 10


def test_override_settings_change_options_the_engine_reads_for_that_job_only(engine):
    from webui.options import Options

    engine.options = Options()
    plain = engine.generate(request(width=128, height=64))
    tiled = engine.generate(request(width=128, height=64,
                                    override_settings={"vae_tiling_min_pixels": 1, "vae_tile_size": 64}))
    assert not np.array_equal(pixels(plain), pixels(tiled))  # decoded tile by tile
    assert engine.options.get("vae_tiling_min_pixels") == 1024 * 1024
    assert np.array_equal(pixels(engine.generate(request(width=128, height=64))), pixels(plain))


def test_refiner_takes_over_part_way_and_the_base_stays_loaded(engine, settings, tiny_checkpoint_dir):
    import shutil

    shutil.copy(tiny_checkpoint_dir / "tiny-sd1-b.safetensors", settings.model_folder("Stable-diffusion"))
    engine.catalog.refresh()
    base_title = engine.catalog.find_checkpoint("tiny-sd1").title
    refiner = engine.catalog.find_checkpoint("tiny-sd1-b")
    base = engine.generate(request(checkpoint=base_title, steps=4))
    refined = engine.generate(request(checkpoint=base_title, steps=4, refiner_checkpoint=refiner.title,
                                      refiner_switch_at=0.5))
    assert not np.array_equal(pixels(refined), pixels(base))
    fields = parse_infotext(refined.infotexts[0])
    assert fields["Refiner"] == f"tiny-sd1-b [{refiner.short_hash}]" and fields["Refiner switch at"] == "0.5"
    assert fields["Model"] == "tiny-sd1"
    assert engine.models.current_checkpoint.title == base_title
    never = engine.generate(request(checkpoint=base_title, steps=4, refiner_checkpoint=refiner.title,
                                    refiner_switch_at=1.0))
    assert np.array_equal(pixels(never), pixels(base)) and "Refiner" not in parse_infotext(never.infotexts[0])


def test_sdxl_refiner_file_is_recognised_and_refines_an_sdxl_image(settings, tiny_checkpoint_dir):
    import shutil

    from webui.catalog import Catalog
    from webui.engine.engine import Engine
    from webui.models.manager import ModelManager
    from tests.random_checkpoint import write_random_checkpoint

    folder = settings.model_folder("Stable-diffusion")
    shutil.copy(tiny_checkpoint_dir / "tiny-sdxl.safetensors", folder)
    write_random_checkpoint(folder / "tiny-refiner.safetensors", "sdxl_refiner", seed=5)
    catalog = Catalog(settings)
    catalog.refresh()
    assert catalog.find_checkpoint("tiny-refiner").detection.family == "sdxl_refiner"
    engine = Engine(settings, catalog, ModelManager(settings, catalog))
    result = engine.generate(request(checkpoint=catalog.find_checkpoint("tiny-sdxl").title, steps=3,
                                     refiner_checkpoint=catalog.find_checkpoint("tiny-refiner").title,
                                     refiner_switch_at=0.3))
    assert result.images[0].size == (64, 64)
    assert parse_infotext(result.infotexts[0])["Refiner"].startswith("tiny-refiner [")


def test_firstpass_image_stands_for_the_first_pass(engine):
    from PIL import Image

    hires = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Lanczos", denoising_strength=0.0, steps=2)
    red, blue = Image.new("RGB", (64, 64), (220, 20, 20)), Image.new("RGB", (64, 64), (20, 20, 220))
    from_red = engine.generate(request(firstpass_image=red, **hires))
    assert from_red.images[0].size == (96, 96)
    # No first pass ran: another seed changes nothing (the second pass adds no noise at strength 0) ...
    assert np.array_equal(pixels(engine.generate(request(firstpass_image=red, seed=99, **hires))), pixels(from_red))
    # ... while another picture does.
    assert not np.array_equal(pixels(engine.generate(request(firstpass_image=blue, **hires))), pixels(from_red))
