"""Derive the CLIP tokenizer files shipped under ``webui/models/tokenizers/``.

Stable Diffusion's text encoders (OpenAI CLIP ViT-L for SD1 and SDXL's first
encoder, OpenCLIP ViT-H / bigG for SD2 and SDXL's second) share one byte-level
BPE vocabulary. Its source is ``bpe_simple_vocab_16e6.txt.gz``, which the
``open-clip-torch`` wheel ships. This tool reads that file out of a wheel (the
wheel is opened as a zip archive, never imported) and writes the Hugging Face
tokenizer files: ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` and
``special_tokens_map.json``, once per variant:

* ``clip_l``    pads with ``<|endoftext|>`` (CLIP ViT-L),
* ``open_clip`` pads with ``!`` (OpenCLIP, as Stability AI's SD2/SDXL repos do).

Only the tokenizer config differs between variants; vocab and merges are the same.

Usage (the wheel is fetched by the person running the tool, not by the app)::

    pip download --no-deps open-clip-torch==3.3.0 -d /tmp/wheel
    python tools/derive_clip_tokenizer.py /tmp/wheel/open_clip_torch-3.3.0-py3-none-any.whl
"""
from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

BPE_MEMBER_SUFFIX = "bpe_simple_vocab_16e6.txt.gz"
VOCAB_SIZE = 49408
MERGE_COUNT = VOCAB_SIZE - 2 * 256 - 2  # 48894 merges after the header line
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
VARIANT_PAD = {"clip_l": EOS, "open_clip": "!"}
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "webui" / "models" / "tokenizers"


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE, in vocabulary order.

    Printable Latin-1 bytes stand for themselves and come first; the other bytes
    are mapped, in byte order, to code points from U+0100 upwards.
    """
    kept = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    symbols = {b: chr(b) for b in kept}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in kept] + [symbols[b] for b in range(256) if b not in set(kept)]


def read_bpe_lines(wheel: Path) -> list[str]:
    """The merge lines of the BPE file inside ``wheel`` (header line dropped)."""
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if n.endswith(BPE_MEMBER_SUFFIX)]
        if not members:
            raise SystemExit(f"{wheel}: no {BPE_MEMBER_SUFFIX} inside")
        text = gzip.decompress(archive.read(members[0])).decode("utf-8")
    lines = text.split("\n")[1 : 1 + MERGE_COUNT]
    if len(lines) != MERGE_COUNT or any(len(line.split(" ")) != 2 for line in lines):
        raise SystemExit(f"{wheel}: unexpected BPE file layout")
    return lines


def build_vocab(merges: list[str]) -> dict[str, int]:
    """Token -> id, in CLIP's order: bytes, bytes + '</w>', merged pairs, BOS, EOS."""
    tokens = byte_symbols()
    tokens = tokens + [t + "</w>" for t in tokens]
    tokens += [line.replace(" ", "") for line in merges]
    tokens += [BOS, EOS]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise SystemExit(f"derived {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab


def tokenizer_config(pad: str) -> dict:
    return {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": pad,
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
    }


def write_variant(out: Path, vocab: dict[str, int], merges: list[str], pad: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(pad), indent=2) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="an open-clip-torch wheel file")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="tokenizers folder to write into")
    args = parser.parse_args(argv)
    merges = read_bpe_lines(args.wheel)
    vocab = build_vocab(merges)
    for variant, pad in VARIANT_PAD.items():
        write_variant(args.out / variant, vocab, merges, pad)
        print(f"wrote {args.out / variant} ({len(vocab)} tokens, pad {pad!r})")


if __name__ == "__main__":
    main()
