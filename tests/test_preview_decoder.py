"""Learned live previews (A1111's "TAESD" method): the demo model's own decoder, shipped and trained by the
project, and TAESD files in their original layout read from models/VAE-approx."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from webui.catalog import Catalog
from webui.config import PROJECT_ROOT, Settings
from webui.engine.engine import Engine
from webui.models import preview_decoder
from webui.models.manager import ModelManager
from webui.options import Options
from webui.schemas import GenerationRequest, InvalidRequest, NullControl

SHIPPED = PROJECT_ROOT / "models" / "VAE-approx" / "demo-shapes.safetensors"


class PreviewRecorder(NullControl):
    """A job control that asks for a preview at every step and keeps them."""

    def __init__(self):
        self.previews = []

    def wants_preview(self, step: int) -> bool:
        return True

    def report(self, progress) -> None:
        if progress.preview is not None and (not self.previews or self.previews[-1] is not progress.preview):
            self.previews.append(progress.preview)


def engine_for(tmp_path, checkpoint, method: str, decoder_files=()) -> Engine:
    models = tmp_path / "models"
    (models / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(checkpoint, models / "Stable-diffusion")
    (models / "VAE-approx").mkdir()
    for file in decoder_files:
        shutil.copy(file, models / "VAE-approx")
    settings = Settings(models_dir=models, outdir=tmp_path / "outputs", device="cpu", precision="fp32",
                        save_images=False)
    catalog = Catalog(settings)
    catalog.refresh()
    options = Options(None)
    options.update({"show_progress_type": method, "show_progress_every_n_steps": 1})
    return Engine(settings, catalog, ModelManager(settings, catalog), options=options)


def previews(engine, **fields):
    control = PreviewRecorder()
    base = dict(prompt="a red circle on a white background", steps=4, width=64, height=64, seed=3,
                sampler_name="Euler", save_images=False)
    base.update(fields)
    result = engine.generate(GenerationRequest(**base), control)
    return control.previews, result


def test_the_demo_model_previews_full_size_with_its_shipped_decoder(tmp_path):
    demo = PROJECT_ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"
    learned, result = previews(engine_for(tmp_path / "taesd", demo, "TAESD", [SHIPPED]), steps=12)
    assert len(learned) == 12 and all(p.size == (64, 64) for p in learned) and not result.warnings
    cheap, _ = previews(engine_for(tmp_path / "cheap", demo, "Approx cheap"), steps=12)
    assert cheap[0].size == (16, 16)  # one pixel per latent pixel
    full, same = previews(engine_for(tmp_path / "full", demo, "Full"), steps=12)
    assert np.array_equal(np.asarray(full[-1]), np.asarray(same.images[0]))  # Full is the VAE's own decode

    def off(preview, step) -> float:  # mean levels (of 255) from the VAE's drawing of the same latents
        return float(np.abs(np.asarray(preview.resize((64, 64), 0), dtype=np.float32)
                            - np.asarray(full[step], dtype=np.float32)).mean())

    # Every step's learned preview is far closer to the VAE's picture than the enlarged cheap one
    # (measured: 4 against 38 levels at the end, 13-38 against 52-93 in the first, noisier steps).
    for step in range(12):
        assert off(learned[step], step) * 1.5 < off(cheap[step], step), step
    assert off(learned[-1], 11) < 8


def test_the_shipped_decoder_draws_held_out_pictures_far_closer_than_approx_cheap():
    """Its header records the evaluation at export; recompute it on fresh pictures of the demo world."""
    from safetensors import safe_open

    import importlib.util

    spec = importlib.util.spec_from_file_location("train_demo_preview_decoder",
                                                  PROJECT_ROOT / "tools" / "train_demo_preview_decoder.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with safe_open(str(SHIPPED), "pt") as handle:
        recorded = json.loads(handle.metadata()["evaluation"])
    decoder = preview_decoder.load_decoder(SHIPPED, "cpu", torch.float32)
    vae = tool.load_vae(str(PROJECT_ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors"))
    measured = tool.evaluate(decoder, vae, seed=77, count=48)
    assert measured["learned_mean_levels"] < 8 and recorded["learned_mean_levels"] < 8
    assert measured["learned_mean_levels"] * 4 < measured["cheap_mean_levels"], measured


def test_a_taesd_file_in_its_original_layout_loads_and_a_mismatched_one_falls_back(tmp_path, tiny_checkpoint_dir):
    from diffusers.models.autoencoders.vae import DecoderTiny
    from safetensors.torch import save_file

    # madebyollin's TAESD decoder: a clamp at index 0, then the layers diffusers numbers from 0.
    torch.manual_seed(0)
    taesd = DecoderTiny(4, 3, (3, 3, 3, 1), (64, 64, 64, 64), 2, "relu", "nearest")
    original = {f"{int(k.split('.')[1]) + 1}.{k.split('.', 2)[2]}": v for k, v in taesd.state_dict().items()}
    path = tmp_path / "taesd_decoder.pth"
    torch.save(original, str(path))
    loaded = preview_decoder.load_decoder(path, "cpu", torch.float32)
    latents = torch.randn(1, 4, 8, 8)
    assert torch.allclose(loaded(latents), taesd(latents)) and loaded(latents).shape[-1] == 64
    save_file({f"layers.{k.split('.', 1)[1]}": v for k, v in taesd.state_dict().items()},
              str(tmp_path / "as-diffusers.safetensors"))
    assert torch.allclose(preview_decoder.load_decoder(tmp_path / "as-diffusers.safetensors", "cpu",
                                                       torch.float32)(latents), taesd(latents))
    # Random weights do not draw the tiny VAE's colours: the job says so and shows the cheap preview.
    engine = engine_for(tmp_path / "mismatch", tiny_checkpoint_dir / "tiny-sd1.safetensors", "TAESD", [path])
    shown, result = previews(engine, width=32, height=32)
    assert shown[0].size == (4, 4) and any("does not match this model's VAE" in w for w in result.warnings)
    missing = engine_for(tmp_path / "none", tiny_checkpoint_dir / "tiny-sd1.safetensors", "TAESD")
    shown, result = previews(missing, width=32, height=32)
    assert shown and any("models/VAE-approx" in w and "taesd_decoder.pth" in w for w in result.warnings)


def test_a_decoder_named_after_the_checkpoint_comes_before_the_family_file(tmp_path):
    for name in ("taesd_decoder.pth", "mine.safetensors", "taesdxl_decoder.safetensors"):
        (tmp_path / name).write_bytes(b"")
    assert preview_decoder.find_decoder_file(tmp_path, "mine", "sd1").name == "mine.safetensors"
    assert preview_decoder.find_decoder_file(tmp_path, "other", "sd1").name == "taesd_decoder.pth"
    assert preview_decoder.find_decoder_file(tmp_path, "other", "sdxl").name == "taesdxl_decoder.safetensors"
    assert preview_decoder.find_decoder_file(tmp_path / "absent", "other", "sd2") is None


def test_the_preview_method_option_takes_a1111_names_only():
    options = Options(None)
    assert options.get("show_progress_type") == "Approx cheap"
    options.update({"show_progress_type": "Full"})
    with pytest.raises(InvalidRequest, match="Approx cheap, TAESD, Full"):
        options.update({"show_progress_type": "Approx NN"})
