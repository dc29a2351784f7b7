"""The prompt token counter agrees with what the engine encodes; paste finds the last parameters."""
from __future__ import annotations

import pytest
from PIL import Image

from webui.engine.conditioning import CHUNK_LENGTH, PromptEncoder
from webui.engine.token_counter import TokenCounter
from webui.images import save_image
from webui.models.tokenizers import load_clip_tokenizer
from webui.prompts.prepare import prepare_prompt


@pytest.fixture(scope="module")
def tokenizer():
    return load_clip_tokenizer("clip_l")


@pytest.fixture(scope="module")
def counter(tokenizer):
    return TokenCounter(tokenizer)


def _engine_chunks(tokenizer, prompt: str, steps: int) -> int:
    """How many 77-token chunks the engine encodes for this prompt (the texts it really encodes)."""
    prepared = prepare_prompt(prompt, "", seed=1, steps=steps)
    encoder = PromptEncoder([tokenizer], [None], family="sd1")
    texts = [text for part in prepared.parts for _, text in part.schedule]
    return encoder.chunk_count(texts)


@pytest.mark.parametrize("prompt, expected", [
    ("", "0/75"),
    ("a red circle", "3/75"),
    ("a (red:1.3) circle <lora:demo-outline:0.8>", "3/75"),  # weights and LoRA tags are not tokens
    ("[a cat:a dog with a hat:5]", "5/75"),  # the longer text of a prompt-editing schedule counts
    ("a red circle AND a blue square on white", "5/75"),  # the longest AND part
    ("a BREAK b", "76/150"),  # BREAK fills the first chunk
])
def test_counter_shows_a1111_counts(counter, prompt, expected):
    assert counter.label(prompt, 20) == expected


def test_long_prompt_limit_is_the_chunks_the_engine_encodes(counter, tokenizer):
    prompt = ", ".join(["a red circle on a blue background"] * 12)
    used, limit = counter.count(prompt, 20)
    assert 75 < used <= limit == 150
    assert limit // CHUNK_LENGTH == _engine_chunks(tokenizer, prompt, 20)
    short = "a yellow triangle"
    assert counter.count(short)[1] // CHUNK_LENGTH == _engine_chunks(tokenizer, short, 20) == 1


def test_negative_prompt_is_not_split_at_and(counter):
    # AND is plain text in a negative prompt, so every word counts.
    assert counter.count("blurry AND ugly", negative=True)[0] == 3
    assert counter.count("blurry AND ugly")[0] == 1


def test_half_typed_prompt_still_counts(counter):
    assert counter.label("a [red:blue", 20).endswith("/75")
    assert counter.label("(((", 20) == counter.label("(((", 20)


def test_paste_reads_the_box_or_the_newest_image(tmp_path):
    pytest.importorskip("gradio")
    from types import SimpleNamespace

    from webui.ui.prompt_tools import last_parameters

    services = SimpleNamespace(settings=SimpleNamespace(outdir=tmp_path))
    assert last_parameters(services, "") == ""
    text = "a red circle\nNegative prompt: blur\nSteps: 7, Sampler: Euler, CFG scale: 5, Seed: 42, Size: 64x64"
    save_image(Image.new("RGB", (8, 8)), tmp_path, "txt2img-images", seed=42, infotext=text)
    assert last_parameters(services, "just words") == text
    own = "a cat\nSteps: 3, Sampler: Euler, Seed: 1, Size: 64x64"
    assert last_parameters(services, own) == own


def test_autocomplete_offers_lora_wildcard_and_embedding_names():
    from webui.ui.autocomplete import completions

    names = {"lora": ["demo-outline", "detail"], "embedding": ["bad-hands", "badprompt"], "wildcard": ["animal"]}
    assert completions(names, "a cat, <lora:de") == (len("<lora:de"), ["<lora:demo-outline:1>", "<lora:detail:1>"])
    assert completions(names, "a cat, <lora:demo-outline:1> x") == (0, [])
    assert completions(names, "a __an") == (4, ["__animal__"])
    assert completions(names, "a cat, (bad") == (3, ["bad-hands", "badprompt"])
    assert completions(names, "a b") == (0, [])


def test_an_embedding_name_counts_as_its_vectors_as_the_engine_encodes_it(tmp_path):
    """A 4-vector embedding is 4 tokens (not the word pieces of its name), also where it crosses a chunk."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    from webui.models.embeddings import EmbeddingSet

    torch.save({"string_to_param": {"*": torch.randn(4, 32)}, "name": "zzstyle"}, tmp_path / "zzStyle.pt")
    config = CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    engine_tokenizer = load_clip_tokenizer("clip_l")
    embeddings = EmbeddingSet()
    status = embeddings.install([("zzStyle", tmp_path / "zzStyle.pt")], [engine_tokenizer],
                                [CLIPTextModel(config)], "sd1")
    counter = TokenCounter(load_clip_tokenizer("clip_l"), embedding_vectors=lambda: dict(status.loaded))
    unaware = TokenCounter(load_clip_tokenizer("clip_l"))
    engine = PromptEncoder([engine_tokenizer], [None], family="sd1")
    for prompt in ("a photo of zzStyle", "(ZZSTYLE:1.2), a cat", "word " * 73 + "zzStyle", "zzstyles"):
        expected = engine.token_count(embeddings.expand_prompt(prompt))
        assert counter.count(prompt) == expected, prompt
    assert counter.count("a photo of zzStyle") == (7, 75)
    assert unaware.count("a photo of zzStyle")[0] != 7  # the name's word pieces: why the counter must know it
    assert counter.count("word " * 73 + "zzStyle")[1] == 150  # the vectors stay together, in the second chunk
