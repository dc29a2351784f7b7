"""Tiled VAE decode/encode on the demo model's VAE: the same image as untiled, and Interrupt between tiles."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from webui.catalog import Catalog
from webui.config import PROJECT_ROOT, Settings
from webui.demo.shapes import Scene, render
from webui.engine import vae_ops
from webui.engine.vae_tiles import tile_starts
from webui.models.manager import ModelManager
from webui.options import DEFAULT_OPTIONS
from webui.schemas import JobInterrupted

SIZE = 256  # image side; the demo VAE has 4 pixels per latent pixel, so 64x64 latents
TILE = 128  # 3x3 tiles of 128 px (32 latent px), overlapping by 32 px


@pytest.fixture(scope="module")
def vae():
    settings = Settings(models_dir=PROJECT_ROOT / "models", device="cpu", precision="fp32", save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    return ModelManager(settings, catalog).ensure("demo-shapes.safetensors").vae


@pytest.fixture(scope="module")
def picture():
    return Image.fromarray(render(Scene("circle", "red", "white", 100, 130, 75), SIZE))


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_tiled_decode_matches_untiled_decode(vae, picture):
    latents = vae_ops.encode(vae, [picture])
    whole, _ = vae_ops.decode(vae, latents)
    tiled, _ = vae_ops.decode(vae, latents, tiling=vae_ops.Tiling(min_pixels=1, tile_size=TILE))
    diff = np.abs(pixels(whole[0]) - pixels(tiled[0]))
    # Tolerance: mean under 2 of 255 levels, 99% of values within 12 (only the circle's anti-aliased rim
    # moves more); no tile-sized step in the flat background.
    assert diff.mean() < 2.0, diff.mean()
    assert np.percentile(diff, 99) <= 12, np.percentile(diff, 99)
    background = pixels(tiled[0])[:, 200:, :].astype(np.float32)
    assert background.std(axis=(0, 1)).max() < 3.0


def test_tiled_encode_matches_untiled_encode(vae, picture):
    whole = vae_ops.encode(vae, [picture])
    tiled = vae_ops.encode(vae, [picture], tiling=vae_ops.Tiling(min_pixels=1, tile_size=TILE))
    assert tiled.shape == whole.shape
    # Tolerance: mean difference under 2% of the latents' mean magnitude.
    assert (tiled - whole).abs().mean() < 0.02 * whole.abs().mean()


class StopAfter:
    """A JobControl whose Interrupt is pressed once ``calls`` questions were answered."""

    def __init__(self, calls: int):
        self.calls = calls
        self.asked = 0

    def interrupted(self) -> bool:
        self.asked += 1
        return self.asked > self.calls


def test_interrupt_stops_tiled_decode_between_tiles(vae, picture):
    latents = vae_ops.encode(vae, [picture])
    decoded = []
    hook = vae.decoder.register_forward_hook(lambda *_: decoded.append(1))
    try:
        with pytest.raises(JobInterrupted):
            vae_ops.decode(vae, latents, tiling=vae_ops.Tiling(1, TILE), control=StopAfter(2))
    finally:
        hook.remove()
    # one pass over the downscaled whole for the norm statistics, then 2 of the 9 tiles
    assert len(decoded) == 3


def test_interrupt_stops_tiled_encode(vae, picture):
    with pytest.raises(JobInterrupted):
        vae_ops.encode(vae, [picture], tiling=vae_ops.Tiling(1, TILE), control=StopAfter(0))


def test_tiling_applies_only_above_the_threshold():
    default = vae_ops.tiling_from_options(DEFAULT_OPTIONS)
    assert not default.applies(1024, 1024)
    assert default.applies(2048, 2048)
    assert not vae_ops.tiling_from_options({**DEFAULT_OPTIONS, "vae_tiling_min_pixels": 0}).applies(4096, 4096)
    assert vae_ops.Tiling(min_pixels=1, tile_size=512).applies(512, 1024)
    assert not vae_ops.Tiling(min_pixels=1, tile_size=512).applies(512, 512)


def test_short_memory_tiles_an_image_below_the_threshold_and_says_why(vae, picture):
    latents = vae_ops.encode(vae, [picture])
    plenty = vae_ops.Tiling(min_pixels=10**9, tile_size=TILE, free_bytes=lambda: 2**40)
    short = vae_ops.Tiling(min_pixels=10**9, tile_size=TILE, free_bytes=lambda: 2**20)
    needed = vae_ops.untiled_bytes(vae, SIZE, SIZE)  # 256 x 256 px x 16 channels x 4 bytes x 8 = 32 MiB
    assert needed == SIZE * SIZE * 16 * 4 * vae_ops.UNTILED_BYTES_FACTOR
    assert not plenty.applies(SIZE, SIZE, vae) and short.applies(SIZE, SIZE, vae)
    decoded = []
    hook = vae.decoder.register_forward_hook(lambda *_: decoded.append(1))
    try:
        whole, _ = vae_ops.decode(vae, latents, tiling=plenty)
        assert len(decoded) == 1
        tiled, _ = vae_ops.decode(vae, latents, tiling=short)
        assert len(decoded) == 1 + 1 + 9  # the statistics pass over the downscaled whole, then 3x3 tiles
    finally:
        hook.remove()
    assert np.abs(pixels(whole[0]) - pixels(tiled[0])).mean() < 2.0
    note = vae_ops.memory_note(short, vae, SIZE, SIZE)
    assert note.startswith("the VAE decodes this 256x256 image in 128 px tiles: untiled it needs about 0.0 GiB")
    assert vae_ops.memory_note(plenty, vae, SIZE, SIZE) is None
    # "vae_tiling_min_pixels": 0 turns tiling off, whatever the memory.
    assert not vae_ops.Tiling(min_pixels=0, tile_size=TILE, free_bytes=lambda: 1).applies(SIZE, SIZE, vae)


def test_a_job_short_of_memory_decodes_in_tiles_and_its_warnings_say_so(tmp_path, monkeypatch):
    import webui.engine.engine as engine_module
    from webui.engine.engine import Engine
    from webui.options import Options
    from webui.schemas import GenerationRequest

    settings = Settings(models_dir=PROJECT_ROOT / "models", outdir=tmp_path, device="cpu", precision="fp32",
                        save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    options = Options(None)
    options.update({"vae_tile_size": 64})
    engine = Engine(settings, catalog, ModelManager(settings, catalog), options=options)
    request = GenerationRequest(prompt="a red circle", steps=2, width=128, height=128, seed=1, save_images=False)
    assert not engine.generate(request).warnings  # this machine has memory to spare for 128 x 128
    monkeypatch.setattr(engine_module, "free_memory_bytes", lambda device: 2**20)  # 1 MiB free
    warnings = engine.generate(request).warnings
    assert any(w.startswith("the VAE decodes this 128x128 image in 64 px tiles") for w in warnings), warnings


def test_tiles_cover_the_image_and_overlap():
    assert tile_starts(64, 32, 8) == [0, 24, 32]
    assert tile_starts(20, 32, 8) == [0]
    starts = tile_starts(256, 64, 16)
    assert starts[-1] + 64 == 256 and all(b - a <= 48 for a, b in zip(starts, starts[1:]))
