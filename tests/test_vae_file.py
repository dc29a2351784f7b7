"""External VAE files in the layouts users download, read into a tiny real AutoencoderKL."""
from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from webui.catalog import HashCache
from webui.models.ldm_export import vae_to_ldm
from webui.models.vae import load_vae_file, vae_short_hash
from webui.schemas import ModelLoadError

torch.set_num_threads(1)


def tiny_vae(seed, latent_channels=4):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32,
    ).eval()


LATENT = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
IMAGE = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


def decode(vae):
    with torch.no_grad():
        return vae.decode(LATENT.to(next(vae.parameters()).dtype)).sample.float()


def encode(vae):
    with torch.no_grad():
        return vae.encode(IMAGE).latent_dist.mean


@pytest.fixture(scope="module")
def models():
    return tiny_vae(0), tiny_vae(1)


def ldm_state(vae):
    state = vae_to_ldm(vae.state_dict(), dict(vae.config))
    # The real LDM names, as in vae-ft-mse-840000-ema-pruned and sdxl_vae files.
    for key in ("encoder.down.0.block.0.conv1.weight", "decoder.up.1.upsample.conv.weight",
                "decoder.mid.attn_1.q.weight", "encoder.norm_out.weight", "post_quant_conv.weight"):
        assert key in state, key
    return state


def test_ldm_layout_vae_replaces_the_decoder(models, tmp_path):
    like, source = models
    save_file({k: v.contiguous() for k, v in ldm_state(source).items()}, str(tmp_path / "vae-ft-mse.safetensors"))

    loaded = load_vae_file(tmp_path / "vae-ft-mse.safetensors", like)

    assert loaded is not like and loaded.config == like.config
    assert torch.equal(decode(loaded), decode(source))
    assert torch.equal(encode(loaded), encode(source))
    assert not torch.allclose(decode(loaded), decode(like), atol=1e-3)


def test_first_stage_model_ckpt_and_diffusers_layouts(models, tmp_path):
    like, source = models
    wrapped = {"first_stage_model." + k: v for k, v in ldm_state(source).items()}
    wrapped["model.diffusion_model.out.2.weight"] = torch.zeros(4, 32, 3, 3)  # a whole checkpoint
    torch.save({"state_dict": wrapped}, tmp_path / "from_checkpoint.ckpt")
    save_file(dict(source.state_dict()), str(tmp_path / "diffusion_pytorch_model.safetensors"))

    for name in ("from_checkpoint.ckpt", "diffusion_pytorch_model.safetensors"):
        loaded = load_vae_file(tmp_path / name, like)
        assert torch.equal(decode(loaded), decode(source)), name


def test_loaded_vae_follows_the_models_dtype(tmp_path):
    like, source = tiny_vae(0).to(torch.bfloat16), tiny_vae(1)
    save_file({k: v.contiguous() for k, v in ldm_state(source).items()}, str(tmp_path / "v.safetensors"))
    loaded = load_vae_file(tmp_path / "v.safetensors", like)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_vae_that_does_not_fit_gives_a_clear_error(models, tmp_path):
    like, _ = models
    other = tiny_vae(2, latent_channels=8)
    save_file({k: v.contiguous() for k, v in ldm_state(other).items()}, str(tmp_path / "eight_channels.safetensors"))
    with pytest.raises(ModelLoadError, match="eight_channels.safetensors.*does not fit"):
        load_vae_file(tmp_path / "eight_channels.safetensors", like)

    save_file({"lora_unet_x.lora_down.weight": torch.zeros(4, 4)}, str(tmp_path / "a_lora.safetensors"))
    with pytest.raises(ModelLoadError, match="a_lora.safetensors.*VAE"):
        load_vae_file(tmp_path / "a_lora.safetensors", like)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="notes.txt"):
        load_vae_file(tmp_path / "notes.txt", like)


def test_vae_short_hash_is_a1111s_ten_digit_sha256(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"vae bytes" * 1000)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    assert vae_short_hash(path) == expected
    assert vae_short_hash(path, HashCache(tmp_path / "hashes.json")) == expected
