"""Textual-inversion embeddings on the shipped CLIP tokenizers and tiny real CLIP text encoders."""
from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from webui.models.embeddings import EmbeddingSet, read_embedding_file
from webui.models.tokenizers import load_clip_tokenizer

torch.set_num_threads(1)


def tiny_encoder(width, seed, projection=False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=49408, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, projection_dim=width, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


@pytest.fixture(scope="module")
def clip_l():
    return load_clip_tokenizer("clip_l")


@pytest.fixture(scope="module")
def open_clip():
    return load_clip_tokenizer("open_clip")


def ids_of(tokenizer, text):
    return tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids


def encode(tokenizer, encoder, text):
    with torch.no_grad():
        return encoder(ids_of(tokenizer, text)).last_hidden_state


def a1111_pt(path, vectors):
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vectors}, "name": path.stem, "step": 3000,
                "sd_checkpoint": "abcdef0123", "sd_checkpoint_name": "v1-5"}, path)


def test_embedding_changes_output_only_when_named_in_the_prompt(clip_l, tmp_path):
    encoder = tiny_encoder(32, 0)
    vectors = torch.randn(3, 32)
    a1111_pt(tmp_path / "myStyle.pt", vectors)
    plain, named = "a photo of a cat", "a photo of myStyle, a cat"
    before_plain, before_named = encode(clip_l, encoder, plain), encode(clip_l, encoder, named)

    emb = EmbeddingSet()
    status = emb.install([("myStyle", tmp_path / "myStyle.pt")], [clip_l], [encoder], "sd1")

    assert status.loaded == {"myStyle": 3} and status.skipped == {}
    assert emb.expand_prompt(plain) == plain
    expanded = emb.expand_prompt(named)
    assert expanded == "a photo of myStyle myStyle_1 myStyle_2, a cat"
    assert torch.equal(encode(clip_l, encoder, emb.expand_prompt(plain)), before_plain)
    after = encode(clip_l, encoder, expanded)
    assert not torch.allclose(after, before_named, atol=1e-4)
    # The tokenizer reads all three vectors, in order, right after "a photo of".
    ids = ids_of(clip_l, expanded)[0]
    rows = encoder.get_input_embeddings()(ids[4:7])
    assert torch.equal(rows, vectors)
    # A1111 matches names case-insensitively (CLIP lowercases) and inside attention syntax.
    assert emb.expand_prompt("(MYSTYLE:1.2), mystyles") == "(myStyle myStyle_1 myStyle_2:1.2), mystyles"


def test_mismatched_width_and_other_family_files_are_skipped(clip_l, tmp_path):
    encoder = tiny_encoder(32, 1)
    a1111_pt(tmp_path / "sd2thing.pt", torch.randn(2, 48))
    save_file({"clip_l": torch.randn(2, 32), "clip_g": torch.randn(2, 48)}, str(tmp_path / "xlthing.safetensors"))
    save_file({"emb_params": torch.randn(1, 32)}, str(tmp_path / "fits.safetensors"))
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"string_to_param": {"*": object()}}, handle)

    emb = EmbeddingSet()
    status = emb.install(
        [("sd2thing", tmp_path / "sd2thing.pt"), ("xlthing", tmp_path / "xlthing.safetensors"),
         ("fits", tmp_path / "fits.safetensors"), ("evil", tmp_path / "evil.pt")],
        [clip_l], [encoder], "sd1",
    )

    assert status.loaded == {"fits": 1}
    assert set(status.skipped) == {"sd2thing", "xlthing", "evil"}
    assert "48" in status.skipped["sd2thing"] and "32" in status.skipped["sd2thing"]
    assert "SDXL" in status.skipped["xlthing"]
    assert "refused" in status.skipped["evil"]
    assert emb.expand_prompt("sd2thing, xlthing, fits") == "sd2thing, xlthing, fits"
    api = emb.to_api()
    assert api["loaded"]["fits"]["vectors"] == 1 and api["loaded"]["fits"]["shape"] == 32
    assert set(api["skipped"]) == {"sd2thing", "xlthing", "evil"}


def test_sdxl_embedding_fills_both_encoders(clip_l, open_clip, tmp_path):
    encoders = [tiny_encoder(32, 2), tiny_encoder(48, 3, projection=True)]
    l_vec, g_vec = torch.randn(2, 32), torch.randn(2, 48)
    save_file({"clip_l": l_vec, "clip_g": g_vec}, str(tmp_path / "xl.safetensors"))
    a1111_pt(tmp_path / "sd1only.pt", torch.randn(1, 32))

    emb = EmbeddingSet()
    status = emb.install([("xl", tmp_path / "xl.safetensors"), ("sd1only", tmp_path / "sd1only.pt")],
                         [clip_l, open_clip], encoders, "sdxl")

    assert status.loaded == {"xl": 2} and "sd1only" in status.skipped
    text = emb.expand_prompt("xl portrait")
    for tokenizer, encoder, vec in zip([clip_l, open_clip], encoders, [l_vec, g_vec]):
        ids = ids_of(tokenizer, text)[0]
        assert torch.equal(encoder.get_input_embeddings()(ids[1:3]), vec)
    emb.uninstall()


def test_diffusers_bin_and_a_name_that_is_also_a_word(clip_l, tmp_path):
    encoder = tiny_encoder(32, 4)
    torch.save({"<cat-toy>": torch.randn(32)}, tmp_path / "learned_embeds.bin")
    cat = torch.randn(1, 32)
    a1111_pt(tmp_path / "cat.pt", cat)
    before_dog = encode(clip_l, encoder, "a dog")

    emb = EmbeddingSet()
    status = emb.install([("toy", tmp_path / "learned_embeds.bin"), ("cat", tmp_path / "cat.pt")], [clip_l], [encoder], "sd1")

    assert status.loaded == {"toy": 1, "cat": 1}
    ids = ids_of(clip_l, emb.expand_prompt("a cat"))[0]
    assert torch.equal(encoder.get_input_embeddings()(ids[2:3]), cat)
    assert torch.equal(encode(clip_l, encoder, emb.expand_prompt("a dog")), before_dog)
    emb.uninstall()


def test_uninstall_restores_tokenizer_and_encoder_exactly(clip_l, tmp_path):
    encoder = tiny_encoder(32, 5)
    a1111_pt(tmp_path / "thing.pt", torch.randn(2, 32))
    backend, weight = clip_l._tokenizer, encoder.get_input_embeddings().weight
    before = encode(clip_l, encoder, "a thing here")
    size = len(clip_l)

    emb = EmbeddingSet()
    emb.install([("thing", tmp_path / "thing.pt")], [clip_l], [encoder], "sd1")
    assert len(clip_l) == size + 2
    emb.uninstall()

    assert len(clip_l) == size and clip_l._tokenizer is backend
    assert encoder.get_input_embeddings().weight is weight
    assert encoder.get_input_embeddings().num_embeddings == 49408
    assert emb.expand_prompt("a thing here") == "a thing here"
    assert torch.equal(encode(clip_l, encoder, "a thing here"), before)
    assert emb.status.loaded == {}


def test_read_embedding_file_rejects_files_without_vectors(tmp_path):
    save_file({"a": torch.zeros(2, 3), "b": torch.zeros(3)}, str(tmp_path / "two.safetensors"))
    with pytest.raises(Exception, match="two.safetensors"):
        read_embedding_file(tmp_path / "two.safetensors")
