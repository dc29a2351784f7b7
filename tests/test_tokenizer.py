"""The shipped CLIP tokenizer files give the ids Stable Diffusion's text encoders were trained on."""
from __future__ import annotations

import json
import re

import pytest

from webui.models.tokenizers import VOCAB_SIZE, TokenizerFilesError, load_clip_tokenizer, tokenizer_dir


def _reference_bpe_ids(text: str, vocab: dict[str, int], ranks: dict[tuple[str, str], int]) -> list[int]:
    """Plain byte-pair encoding over ASCII words, written from the algorithm, for cross-checking."""
    ids = []
    for word in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", text.lower()):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 30:
                break
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        ids.extend(vocab[p] for p in parts)
    return ids


@pytest.fixture(scope="module")
def clip_l():
    return load_clip_tokenizer("clip_l")


def test_known_ids(clip_l):
    assert clip_l("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(clip_l) == VOCAB_SIZE
    assert clip_l.bos_token_id == 49406 and clip_l.eos_token_id == 49407
    assert clip_l.get_vocab()[",</w>"] == 267


def test_ids_agree_with_reference_bpe(clip_l):
    folder = tokenizer_dir("clip_l")
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    ranks = {tuple(line.split(" ")): i for i, line in enumerate(lines)}
    for text in [
        "masterpiece, best quality, a red circle on a blue background",
        "photorealistic portrait of an astronaut riding a horse, 8k uhd",
        "Unbelievably HUGE triangles!!! 1990s synthwave",
    ]:
        expected = _reference_bpe_ids(text, vocab, ranks)
        assert clip_l(text, add_special_tokens=False).input_ids == expected, text


def test_variants_differ_only_in_padding(clip_l):
    open_clip = load_clip_tokenizer("open_clip")
    assert load_clip_tokenizer("clip_g").pad_token == "!"
    assert clip_l.pad_token_id == 49407 and open_clip.pad_token_id == 0
    text = "a yellow square, (green triangle:1.2) 🐱 naïve"
    assert clip_l(text).input_ids == open_clip(text).input_ids


def test_unknown_variant_is_rejected():
    with pytest.raises(ValueError, match="unknown tokenizer variant"):
        load_clip_tokenizer("t5")


def test_truncated_vocabulary_is_reported(tmp_path, monkeypatch):
    import webui.models.tokenizers as tokenizers

    folder = tmp_path / "clip_l"
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps({"a</w>": 0, "b</w>": 1}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    monkeypatch.setattr(tokenizers, "_ROOT", tmp_path)
    with pytest.raises(TokenizerFilesError, match="holds 2 tokens, expected 49408"):
        tokenizers.load_clip_tokenizer("clip_l")
