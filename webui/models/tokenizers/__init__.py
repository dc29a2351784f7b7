"""Shipped CLIP tokenizer files and their loader.

Every Stable Diffusion family uses the same 49,408-token CLIP BPE vocabulary;
the variants differ only in the padding token:

* ``clip_l``    (SD1, SDXL ``text_encoder``):   pad ``<|endoftext|>``
* ``open_clip`` (SD2, SDXL ``text_encoder_2``): pad ``!``

The files are derived by ``tools/derive_clip_tokenizer.py`` and loaded from disk
only, so nothing is fetched from a model hub.
"""
from __future__ import annotations

import json
from pathlib import Path

VOCAB_SIZE = 49408
VARIANTS = ("clip_l", "open_clip")
_ALIASES = {"clip_g": "open_clip", "openclip": "open_clip", "clip": "clip_l"}
_ROOT = Path(__file__).resolve().parent


class TokenizerFilesError(RuntimeError):
    """The shipped tokenizer files are missing or incomplete."""


def tokenizer_dir(variant: str = "clip_l") -> Path:
    """The folder of one variant, usable with ``CLIPTokenizer.from_pretrained``.

    ``clip_g`` is accepted as another name for ``open_clip``.
    """
    name = _ALIASES.get(variant, variant)
    if name not in VARIANTS:
        raise ValueError(f"unknown tokenizer variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return _ROOT / name


def load_clip_tokenizer(variant: str = "clip_l"):
    """A ``transformers.CLIPTokenizer`` for ``variant``, built from the shipped files offline.

    Raises ``TokenizerFilesError`` when the files are missing or the vocabulary
    is truncated (fewer than 49,408 tokens), since a short vocabulary would make
    the text encoder read the wrong embedding rows without any other error.
    """
    folder = tokenizer_dir(variant)
    vocab_file = folder / "vocab.json"
    merges_file = folder / "merges.txt"
    if not vocab_file.is_file() or not merges_file.is_file():
        raise TokenizerFilesError(f"tokenizer files missing in {folder}; run tools/derive_clip_tokenizer.py")
    try:
        size = len(json.loads(vocab_file.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise TokenizerFilesError(f"{vocab_file} is not valid JSON: {exc}") from None
    if size < VOCAB_SIZE:
        raise TokenizerFilesError(
            f"{vocab_file} holds {size} tokens, expected {VOCAB_SIZE}; regenerate it with tools/derive_clip_tokenizer.py"
        )
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    if len(tokenizer) < VOCAB_SIZE:
        raise TokenizerFilesError(f"tokenizer from {folder} has {len(tokenizer)} tokens, expected {VOCAB_SIZE}")
    return tokenizer


__all__ = ["VOCAB_SIZE", "VARIANTS", "TokenizerFilesError", "tokenizer_dir", "load_clip_tokenizer"]
