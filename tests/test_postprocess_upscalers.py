"""Upscalers: model files in the real release layouts, detected by spandrel and run; tiling; built-ins."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from webui.config import Settings
from webui.postprocess.upscalers import UpscalerRegistry
from webui.postprocess.tiling import run_tiled
from webui.schemas import InvalidRequest, NotFound

torch.set_num_threads(1)


def _rand(generator, *shape, std=0.03):
    return torch.randn(*shape, generator=generator) * std


def rrdbnet_state_dict(num_block=1, nf=64, gc=32, seed=0) -> dict:
    """Real-ESRGAN x4plus key layout (conv_first, body.N.rdbK.convJ, conv_body, conv_up1/2, conv_hr, conv_last)."""
    g = torch.Generator().manual_seed(seed)
    state = {"conv_first.weight": _rand(g, nf, 3, 3, 3), "conv_first.bias": _rand(g, nf)}
    for block in range(num_block):
        for rdb in (1, 2, 3):
            for k in range(1, 6):
                out_ch = gc if k < 5 else nf
                state[f"body.{block}.rdb{rdb}.conv{k}.weight"] = _rand(g, out_ch, nf + (k - 1) * gc, 3, 3)
                state[f"body.{block}.rdb{rdb}.conv{k}.bias"] = _rand(g, out_ch)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        state[f"{name}.weight"] = _rand(g, nf, nf, 3, 3, std=0.06)
        state[f"{name}.bias"] = _rand(g, nf)
    state["conv_last.weight"] = _rand(g, 3, nf, 3, 3, std=0.06)
    state["conv_last.bias"] = torch.full((3,), 0.5)
    return state


def compact_state_dict(num_conv=4, nf=16, scale=4, seed=1) -> dict:
    """SRVGGNetCompact layout (realesr-animevideov3 / realesr-general): body.N conv and PReLU pairs."""
    g = torch.Generator().manual_seed(seed)
    state = {"body.0.weight": _rand(g, nf, 3, 3, 3, std=0.2), "body.0.bias": _rand(g, nf), "body.1.weight": torch.full((nf,), 0.1)}
    index = 2
    for _ in range(num_conv):
        state[f"body.{index}.weight"] = _rand(g, nf, nf, 3, 3, std=0.1)
        state[f"body.{index}.bias"] = _rand(g, nf)
        state[f"body.{index + 1}.weight"] = torch.full((nf,), 0.1)
        index += 2
    state[f"body.{index}.weight"] = _rand(g, 3 * scale * scale, nf, 3, 3, std=0.1)
    state[f"body.{index}.bias"] = _rand(g, 3 * scale * scale)
    return state


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "RealESRGAN").mkdir()
    (root / "ESRGAN").mkdir()
    (root / "SwinIR").mkdir()
    # As released: RealESRGAN_x4plus.pth wraps the weights in "params_ema", the Compact models in "params".
    torch.save({"params_ema": rrdbnet_state_dict()}, root / "RealESRGAN" / "RealESRGAN_x4plus.pth")
    torch.save({"params": compact_state_dict()}, root / "RealESRGAN" / "realesr-general-x4v3.pth")
    save_file(compact_state_dict(scale=2, seed=3), str(root / "ESRGAN" / "tiny-compact-2x.safetensors"))
    torch.save({"encoder.weight": torch.zeros(4, 4)}, root / "ESRGAN" / "not-an-upscaler.pth")
    (root / "SwinIR" / "broken.safetensors").write_bytes(b"\x00garbage")
    return root


@pytest.fixture(scope="module")
def registry(models_dir):
    # A small overlap so the tiny test images really split into tiles with partial context.
    return UpscalerRegistry(Settings(models_dir=models_dir, device="cpu", precision="fp32", upscaler_tile_overlap=8), min_tile_overlap=0)


def noise_image(width=24, height=20, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def test_lists_builtins_first_then_recognised_models(registry):
    assert registry.names() == ["None", "Lanczos", "Nearest", "ESRGAN_4x", "R-ESRGAN 4x+", "R-ESRGAN General 4xV3",
                                "realesr-general-x4v3", "RealESRGAN_x4plus", "tiny-compact-2x"]
    by_name = {info.name: info for info in registry.list()}
    assert by_name["RealESRGAN_x4plus"].architecture == "ESRGAN"
    assert by_name["realesr-general-x4v3"].architecture == "Compact"
    assert by_name["tiny-compact-2x"].scale == 2


def test_unknown_and_broken_files_are_reported_not_listed(registry):
    reasons = {entry.path.name: entry.reason for entry in registry.unrecognised()}
    assert set(reasons) == {"not-an-upscaler.pth", "broken.safetensors"}
    assert "does not recognise" in reasons["not-an-upscaler.pth"]
    assert "cannot read" in reasons["broken.safetensors"]


def test_unsafe_pickle_is_refused(tmp_path):
    (tmp_path / "ESRGAN").mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"params_ema": rrdbnet_state_dict(), "extra": Evil()}, tmp_path / "ESRGAN" / "evil.pth")
    reg = UpscalerRegistry(Settings(models_dir=tmp_path, device="cpu"))
    assert reg.names() == ["None", "Lanczos", "Nearest"]
    assert "weights" in reg.unrecognised()[0].reason.lower() or "unpickl" in reg.unrecognised()[0].reason.lower()


@pytest.mark.parametrize("name", ["RealESRGAN_x4plus", "realesr-general-x4v3"])
def test_models_run_at_their_scale_then_resize_exactly(registry, name):
    image = noise_image()
    four = registry.upscale(image, name, 4, tile_size=0)
    assert four.size == (96, 80) and four.mode == "RGB"
    assert np.asarray(four).std() > 1  # a real picture, not a constant
    odd = registry.upscale(image, name, 2.5, tile_size=0)
    assert odd.size == (60, 50)
    assert registry.loaded_name() == name


def test_small_model_is_applied_repeatedly_to_reach_the_target(registry):
    image = noise_image(10, 8)
    out = registry.upscale(image, "tiny-compact-2x", 4, tile_size=0)
    assert out.size == (40, 32)
    once = registry.upscale(image, "tiny-compact-2x", 2, tile_size=0)
    twice = registry.upscale(once, "tiny-compact-2x", 2, tile_size=0)
    assert np.array_equal(np.asarray(out), np.asarray(twice))


@pytest.mark.parametrize("name", ["RealESRGAN_x4plus", "realesr-general-x4v3"])
def test_tiled_equals_untiled(registry, name):
    image = noise_image(40, 34, seed=5)
    whole = np.asarray(registry.upscale(image, name, 4, tile_size=0), dtype=np.int16)
    tiled = np.asarray(registry.upscale(image, name, 4, tile_size=16), dtype=np.int16)
    assert np.abs(whole - tiled).max() <= 2


def test_default_overlap_is_large_enough_for_real_esrgan(models_dir):
    assert UpscalerRegistry(Settings(models_dir=models_dir, upscaler_tile_overlap=8)).tile_overlap >= 48
    assert UpscalerRegistry(Settings(models_dir=models_dir, upscaler_tile_overlap=80)).tile_overlap == 80


def test_tiles_bound_the_size_the_model_sees():
    seen = []

    def model(x):
        seen.append(tuple(x.shape[-2:]))
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    image = torch.rand(1, 3, 100, 70)
    out = run_tiled(model, image, 2, tile=32, overlap=8)
    assert max(max(s) for s in seen) <= 32 + 2 * 8
    assert torch.equal(out, model(image))


def test_lanczos_and_nearest(registry):
    image = noise_image(30, 20)
    lanczos = registry.upscale(image, "Lanczos", 2.5)
    assert lanczos.size == (75, 50) and lanczos.mode == "RGB"
    assert np.array_equal(np.asarray(lanczos), np.asarray(image.resize((75, 50), Image.Resampling.LANCZOS)))
    nearest = registry.upscale(image, "Nearest", 2)
    assert nearest.size == (60, 40)
    assert np.array_equal(np.asarray(nearest)[::2, ::2], np.asarray(image))
    rgba = registry.upscale(image.convert("RGBA"), "Lanczos", 2)
    assert rgba.mode == "RGBA" and rgba.size == (60, 40)


def test_model_keeps_alpha(registry):
    image = noise_image(12, 12).convert("RGBA")
    image.putalpha(128)
    out = registry.upscale(image, "realesr-general-x4v3", 2, tile_size=0)
    assert out.mode == "RGBA" and out.size == (24, 24)
    assert set(np.unique(np.asarray(out)[..., 3])) == {128}


def test_unknown_name_and_bad_factor(registry):
    with pytest.raises(NotFound, match="4x-UltraSharp"):
        registry.upscale(noise_image(), "4x-UltraSharp", 2)
    with pytest.raises(InvalidRequest):
        registry.upscale(noise_image(), "Lanczos", 0)


def test_refresh_sees_new_files_and_unload_frees(models_dir, registry):
    registry.upscale(noise_image(), "realesr-general-x4v3", 4, tile_size=0)
    registry.unload()
    assert registry.loaded_name() is None
    path = models_dir / "ESRGAN" / "added-later.safetensors"
    save_file(compact_state_dict(seed=9), str(path))
    try:
        assert "added-later" not in registry.names()
        registry.refresh()
        assert "added-later" in registry.names()
    finally:
        path.unlink()
        registry.refresh()


def test_interrupt_stops_a_model_upscale_between_tiles(registry):
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > 2  # two tiles run, then the user pressed Interrupt

    with pytest.raises(InterruptedError):
        registry.upscale(noise_image(40, 34, seed=5), "realesr-general-x4v3", 4, tile_size=16, should_stop=should_stop)
    assert len(asked) == 3


def test_a1111_names_run_the_model_file_they_stand_for(registry):
    by_name = {info.name: info for info in registry.list()}
    assert by_name["R-ESRGAN 4x+"].path.stem == "RealESRGAN_x4plus"
    assert by_name["ESRGAN_4x"].path.stem == "RealESRGAN_x4plus"  # nearest file we have
    assert by_name["R-ESRGAN General 4xV3"].path.stem == "realesr-general-x4v3"
    assert "R-ESRGAN 4x+ Anime6B" not in by_name  # no such file here: not offered
    image = noise_image()
    by_alias = registry.upscale(image, "R-ESRGAN 4x+", 2.0, tile_size=0)
    by_file = registry.upscale(image, "RealESRGAN_x4plus", 2.0, tile_size=0)
    assert by_alias.size == (48, 40) and np.array_equal(np.asarray(by_alias), np.asarray(by_file))
    assert not np.array_equal(np.asarray(by_alias), np.asarray(registry.upscale(image, "Lanczos", 2.0)))
