"""Checkpoint files -> family -> diffusers modules, through the same code path as a user's file."""
from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch

from webui.catalog import Catalog
from webui.detection.detect import detect_model
from webui.models.loader import load_checkpoint_file, read_state_dict
from tests.random_checkpoint import build_random_components
from webui.models.ldm_export import checkpoint_state_dict
from webui.detection.safetensors_header import read_safetensors_header
from webui.schemas import ModelLoadError


def write_header_only(path: Path, shapes: dict[str, tuple[int, ...]], metadata: dict | None = None) -> Path:
    """A 'stripped' safetensors file: real key names and shapes, offsets pointing at no data."""
    header = {name: {"dtype": "F16", "shape": list(shape), "data_offsets": [0, 0]} for name, shape in shapes.items()}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def full_size_shapes(family: str, inpainting: bool = False) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of a real full-size checkpoint of ``family`` (built on the meta device)."""
    with torch.device("meta"):
        unet, vae, encoders = build_random_components(family, full_size=True, inpainting=inpainting)
    return {k: tuple(v.shape) for k, v in checkpoint_state_dict(family, unet, vae, encoders).items()}


@pytest.mark.parametrize("family,inpainting,label", [
    ("sd1", False, "Stable Diffusion 1.x"),
    ("sd1", True, "Stable Diffusion 1.x inpainting"),
    ("sd2", False, "Stable Diffusion 2.x"),
    ("sd2", True, "Stable Diffusion 2.x inpainting"),
    ("sdxl", False, "Stable Diffusion XL"),
    ("sdxl", True, "Stable Diffusion XL inpainting"),
    ("sdxl_refiner", False, "SDXL refiner"),
])
def test_family_detected_from_full_size_header_alone(tmp_path, family, inpainting, label):
    shapes = full_size_shapes(family, inpainting)
    path = write_header_only(tmp_path / "model.safetensors", shapes)
    header = read_safetensors_header(path)
    detection = detect_model(header.shapes)
    assert detection.kind == "checkpoint"
    assert detection.family == family and detection.inpainting == inpainting
    assert detection.label == label


def test_full_size_sd15_shapes_give_the_published_unet_config(tmp_path):
    from webui.models.architecture import infer_architecture

    arch = infer_architecture(full_size_shapes("sd1"), "sd1")
    assert arch.unet["block_out_channels"] == [320, 640, 1280, 1280]
    assert arch.unet["down_block_types"] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert arch.unet["layers_per_block"] == 2 and arch.unet["attention_head_dim"] == 8
    assert arch.text_encoders[0].config["hidden_size"] == 768
    assert arch.text_encoders[0].config["num_attention_heads"] == 12
    sdxl = infer_architecture(full_size_shapes("sdxl"), "sdxl")
    assert sdxl.unet["transformer_layers_per_block"] == [1, 2, 10]
    assert sdxl.unet["attention_head_dim"] == [5, 10, 20]
    assert sdxl.unet["projection_class_embeddings_input_dim"] == 2816
    assert sdxl.unet["addition_time_embed_dim"] == 256
    assert [te.kind for te in sdxl.text_encoders] == ["clip_l", "clip_g"]


def test_lora_and_vae_files_are_not_taken_for_checkpoints(tmp_path):
    lora = write_header_only(tmp_path / "lora.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": (4, 320),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": (320, 4),
        "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": (),
    })
    vae = write_header_only(tmp_path / "vae.safetensors", {
        "encoder.conv_in.weight": (128, 3, 3, 3), "decoder.conv_in.weight": (512, 4, 3, 3)})
    assert detect_model(read_safetensors_header(lora).shapes).kind == "lora"
    assert detect_model(read_safetensors_header(vae).shapes).kind == "vae"


def test_catalog_lists_checkpoints_with_a1111_titles_and_rejects_a_lora(settings, tiny_checkpoint_dir):
    ckpt_dir = settings.model_folder("Stable-diffusion")
    write_header_only(ckpt_dir / "not-a-model.safetensors", {
        "lora_unet_x.lora_down.weight": (4, 32), "lora_unet_x.lora_up.weight": (32, 4)})
    catalog = Catalog(settings)
    catalog.refresh()
    titles = [c.title for c in catalog.checkpoints()]
    assert len(titles) == 1 and titles[0].startswith("tiny-sd1.safetensors [")
    assert len(titles[0].split("[")[1].rstrip("]")) == 10
    assert [c.name for c in catalog.rejected_checkpoints()] == ["not-a-model.safetensors"]
    with pytest.raises(Exception, match="not a checkpoint"):
        catalog.find_checkpoint("not-a-model.safetensors")


def test_hashes_are_cached_across_restarts(settings, monkeypatch):
    first = Catalog(settings)
    first.refresh()
    import hashlib

    calls = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    second = Catalog(settings)
    second.refresh()
    assert calls == []
    assert second.checkpoints()[0].sha256 == first.checkpoints()[0].sha256


@pytest.mark.parametrize("name", ["tiny-sd1", "tiny-sd1-inpainting", "tiny-sdxl"])
def test_tiny_checkpoint_round_trips_bit_for_bit(tiny_checkpoint_dir, name):
    family = "sdxl" if "sdxl" in name else "sd1"
    seed = {"tiny-sd1": 1, "tiny-sd1-inpainting": 3, "tiny-sdxl": 4}[name]
    unet, vae, encoders = build_random_components(family, inpainting="inpainting" in name, seed=seed)
    loaded = load_checkpoint_file(tiny_checkpoint_dir / f"{name}.safetensors", "cpu", torch.float32)
    assert loaded.family == family and loaded.inpainting == ("inpainting" in name)
    for original, restored in [(unet, loaded.unet), (vae, loaded.vae), *zip(encoders, loaded.text_encoders)]:
        a, b = original.state_dict(), restored.state_dict()
        assert set(a) == set(b)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_ckpt_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    with path.open("wb") as handle:
        pickle.dump({"state_dict": {"x": Evil()}}, handle)
    with pytest.raises(ModelLoadError, match="evil.ckpt"):
        read_state_dict(path)
    assert not marker.exists()


def test_plain_tensor_ckpt_loads(tmp_path, tiny_checkpoint_dir):
    from safetensors.torch import load_file

    state = load_file(str(tiny_checkpoint_dir / "tiny-sd1.safetensors"))
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": state}, path)
    loaded = load_checkpoint_file(path, "cpu", torch.float32)
    assert loaded.family == "sd1"


def test_native_size_comes_from_the_file_or_the_family(settings):
    from webui.config import PROJECT_ROOT

    import shutil

    shutil.copy(PROJECT_ROOT / "models" / "Stable-diffusion" / "demo-shapes.safetensors",
                settings.model_folder("Stable-diffusion"))
    catalog = Catalog(settings)
    catalog.refresh()
    assert catalog.find_checkpoint("demo-shapes").native_size == (64, 64)
    assert catalog.find_checkpoint("tiny-sd1").native_size == (512, 512)
