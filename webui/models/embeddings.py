"""Textual-inversion embeddings: new tokens and token-embedding rows, added and removed exactly.

Files: A1111 ``.pt`` (``string_to_param {'*': vectors}``), diffusers ``.bin``
(``{token: vectors}``), ``.safetensors`` (``emb_params``) and SDXL files holding
``clip_l`` and ``clip_g`` vectors. Pickles are read with ``weights_only=True``.

An embedding of n vectors named ``name`` becomes the tokens ``name``, ``name_1``,
... ``name_{n-1}`` in every tokenizer and n new rows of each text encoder's token
embedding; :meth:`EmbeddingSet.expand_prompt` rewrites the name to all n tokens.
Installing swaps in copies of the tokenizers' backends and new embedding
Parameters, so :meth:`EmbeddingSet.uninstall` restores the very same objects.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from webui.schemas import WebUIError
from webui.tensor_files import read_tensor_file

log = logging.getLogger(__name__)

EMBEDDING_FILE_SUFFIXES = (".safetensors", ".pt", ".bin")

# Which vectors of an SDXL-style file each text encoder kind takes.
_ENCODER_KINDS = {
    "sd1": ("clip_l",),
    "sd2": ("openclip_h",),
    "sdxl": ("clip_l", "clip_g"),
    "sdxl_refiner": ("clip_g",),
}
_LEGACY_EOS_ID = 2  # old CLIP configs: pooling takes argmax(input_ids), which added tokens would break


class EmbeddingFileError(WebUIError):
    """An embedding file cannot be read or holds no vectors."""

    http_status = 422


@dataclass
class EmbeddingFile:
    """Vectors of one file: ``{"": (n, width)}`` for one encoder, or per encoder kind (clip_l/clip_g)."""

    vectors: dict[str, torch.Tensor]
    step: int | None = None
    checkpoint_hash: str | None = None
    checkpoint_name: str | None = None

    @property
    def count(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])


@dataclass
class EmbeddingStatus:
    """What :meth:`EmbeddingSet.install` did: vector counts of loaded ones, reasons for skipped ones."""

    loaded: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    widths: dict[str, int] = field(default_factory=dict)  # name -> vector width (first encoder)


def _as_vectors(value) -> torch.Tensor | None:
    if not isinstance(value, torch.Tensor) or value.dim() not in (1, 2) or not value.is_floating_point():
        return None
    value = value.detach().to(torch.float32)
    return value.unsqueeze(0) if value.dim() == 1 else value


def read_embedding_file(path: Path) -> EmbeddingFile:
    """Read one textual-inversion file without running code; ``EmbeddingFileError`` if it holds no vectors."""
    path = Path(path)
    if path.suffix.lower() not in EMBEDDING_FILE_SUFFIXES:
        raise EmbeddingFileError(f"embedding {path.name}: only {', '.join(EMBEDDING_FILE_SUFFIXES)} files are read")
    try:
        data, _ = read_tensor_file(path, "embedding")
    except WebUIError as exc:
        raise EmbeddingFileError(str(exc)) from None
    result = EmbeddingFile({})
    if isinstance(data, torch.Tensor):
        data = {"": data}
    if not isinstance(data, dict):
        raise EmbeddingFileError(f"embedding {path.name}: unexpected content")
    if isinstance(data.get("string_to_param"), dict):  # A1111
        params = data["string_to_param"]
        value = params.get("*", next(iter(params.values()), None))
        vectors = _as_vectors(value)
        if vectors is not None:
            result.vectors[""] = vectors
        step = data.get("step")
        result.step = int(step) if isinstance(step, (int, float)) else None
        result.checkpoint_hash = data.get("sd_checkpoint") if isinstance(data.get("sd_checkpoint"), str) else None
        name = data.get("sd_checkpoint_name")
        result.checkpoint_name = name if isinstance(name, str) else None
    elif "clip_l" in data or "clip_g" in data:  # SDXL
        for kind in ("clip_l", "clip_g"):
            vectors = _as_vectors(data.get(kind))
            if vectors is not None:
                result.vectors[kind] = vectors
    elif "emb_params" in data:
        vectors = _as_vectors(data["emb_params"])
        if vectors is not None:
            result.vectors[""] = vectors
    else:
        tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:  # diffusers .bin: {token: vectors}, or one unnamed tensor
            vectors = _as_vectors(tensors[0])
            if vectors is not None:
                result.vectors[""] = vectors
    if not result.vectors or any(v.shape[0] == 0 for v in result.vectors.values()):
        raise EmbeddingFileError(f"embedding {path.name}: no textual-inversion vectors found")
    return result


class EmbeddingSet:
    """The embeddings installed into one model's tokenizers and text encoders."""

    def __init__(self):
        self.status = EmbeddingStatus()
        self._files: dict[str, EmbeddingFile] = {}
        self._tokens: dict[str, list[str]] = {}  # lowercased name -> tokens
        self._pattern: re.Pattern | None = None
        self._saved_tokenizers: list[tuple[object, object]] = []  # (tokenizer, original backend)
        self._saved_embeddings: list[tuple[nn.Embedding, nn.Parameter, int]] = []
        self._saved_eos: list[tuple[nn.Module, int]] = []

    # -- public ---------------------------------------------------------------
    def install(self, files, tokenizers, text_encoders, family: str) -> EmbeddingStatus:
        """Install ``files`` = [(name, path), ...] into the loaded model, replacing what was installed.

        Embeddings whose vector width does not fit the loaded encoders, or that
        cannot be read, are listed in ``skipped`` with the reason.
        """
        self.uninstall()
        tokenizers, text_encoders = list(tokenizers), list(text_encoders)
        if len(tokenizers) != len(text_encoders):
            raise ValueError("one tokenizer per text encoder is needed")
        kinds = _ENCODER_KINDS.get(family, ("clip_l",) * len(text_encoders))[: len(text_encoders)]
        widths = [int(enc.get_input_embeddings().weight.shape[1]) for enc in text_encoders]
        status = EmbeddingStatus()
        chosen: list[tuple[str, list[torch.Tensor]]] = []  # name -> vectors per encoder
        seen: set[str] = set()
        for name, path in files:
            if name.lower() in seen:
                status.skipped[name] = "another embedding has the same name"
                continue
            try:
                parsed = read_embedding_file(Path(path))
            except EmbeddingFileError as exc:
                status.skipped[name] = str(exc)
                continue
            per_encoder, reason = _fit(parsed, kinds, widths)
            if per_encoder is None:
                status.skipped[name] = reason
                continue
            seen.add(name.lower())
            self._files[name] = parsed
            chosen.append((name, per_encoder))
            status.loaded[name] = int(per_encoder[0].shape[0])
            status.widths[name] = int(per_encoder[0].shape[1])
        if chosen:
            self._add_tokens(chosen, tokenizers, text_encoders)
        self.status = status
        return status

    def expand_prompt(self, text: str) -> str:
        """Replace each whole-word embedding name by its tokens (``name`` -> ``name name_1 name_2``)."""
        return expand_embedding_names(text, self._pattern, self._tokens)

    def used_in(self, text: str) -> list[str]:
        """Names of the installed embeddings that ``text`` mentions, in order of first mention."""
        if self._pattern is None:
            return []
        by_lower = {name.lower(): name for name in self._files}
        found = (by_lower.get(m.group(0).lower()) for m in self._pattern.finditer(text))
        return list(dict.fromkeys(name for name in found if name))

    def uninstall(self) -> None:
        """Give the tokenizers and text encoders back exactly as they were before :meth:`install`."""
        for tokenizer, backend in reversed(self._saved_tokenizers):
            tokenizer._tokenizer = backend
        for embedding, weight, rows in reversed(self._saved_embeddings):
            embedding.weight = weight
            embedding.num_embeddings = rows
        for module, eos in self._saved_eos:
            module.eos_token_id = eos
        self._saved_tokenizers, self._saved_embeddings, self._saved_eos = [], [], []
        self._files, self._tokens, self._pattern = {}, {}, None
        self.status = EmbeddingStatus()

    def names(self) -> list[str]:
        """Names of the installed embeddings."""
        return list(self.status.loaded)

    def to_api(self) -> dict:
        """A1111's ``GET /sdapi/v1/embeddings`` shape."""

        def entry(name: str) -> dict:
            parsed = self._files.get(name)
            return {
                "step": parsed.step if parsed else None,
                "sd_checkpoint": parsed.checkpoint_hash if parsed else None,
                "sd_checkpoint_name": parsed.checkpoint_name if parsed else None,
                "shape": self.status.widths.get(name),
                "vectors": self.status.loaded.get(name),
            }

        return {
            "loaded": {name: entry(name) for name in self.status.loaded},
            "skipped": {name: entry(name) | {"reason": reason} for name, reason in self.status.skipped.items()},
        }

    # -- internals ------------------------------------------------------------
    def _add_tokens(self, chosen, tokenizers, text_encoders) -> None:
        vocabularies = [set(tok.get_vocab()) for tok in tokenizers]
        self._tokens = embedding_token_names([(name, int(vectors[0].shape[0])) for name, vectors in chosen],
                                             vocabularies)
        for tokenizer in tokenizers:
            backend = getattr(tokenizer, "_tokenizer", None)
            if backend is None:
                raise TypeError(f"{type(tokenizer).__name__} has no tokenizers backend to extend")
            self._saved_tokenizers.append((tokenizer, backend))
            tokenizer._tokenizer = type(backend).from_str(backend.to_str())
            add_embedding_tokens(tokenizer, self._all_tokens())
        for index, (tokenizer, encoder) in enumerate(zip(tokenizers, text_encoders)):
            embedding = encoder.get_input_embeddings()
            original = embedding.weight
            ids = {t: tokenizer.convert_tokens_to_ids(t) for t in self._all_tokens()}
            rows = max(original.shape[0], max(ids.values()) + 1)
            with torch.no_grad():
                weight = torch.zeros(rows, original.shape[1], dtype=original.dtype, device=original.device)
                weight[: original.shape[0]] = original.detach()
                for name, vectors in chosen:
                    for token, row in zip(self._tokens[name.lower()], vectors[index]):
                        weight[ids[token]] = row.to(dtype=original.dtype, device=original.device)
            self._saved_embeddings.append((embedding, original, embedding.num_embeddings))
            embedding.weight = nn.Parameter(weight, requires_grad=False)
            embedding.num_embeddings = rows
            eos = getattr(tokenizer, "eos_token_id", None)
            for module in encoder.modules():
                if getattr(module, "eos_token_id", None) == _LEGACY_EOS_ID and eos is not None:
                    self._saved_eos.append((module, _LEGACY_EOS_ID))
                    module.eos_token_id = eos
        self._pattern = embedding_name_pattern(self._tokens)

    def _all_tokens(self) -> list[str]:
        return [t for tokens in self._tokens.values() for t in tokens]


def embedding_token_names(counts, vocabularies) -> dict[str, list[str]]:
    """The tokens each embedding gets, by lowercased name: ``name``, ``name_1``... (``<name>``... when one of
    those is already a word of a tokenizer or of another embedding). ``counts`` = [(name, vectors), ...]."""
    tokens_by_name: dict[str, list[str]] = {}
    used: set[str] = set()
    for name, count in counts:
        tokens = _token_names(name, count)
        if any(t in vocab or t in used for t in tokens for vocab in vocabularies):
            tokens = _token_names(f"<{name}>", count)
        used.update(tokens)
        tokens_by_name[name.lower()] = tokens
    return tokens_by_name


def add_embedding_tokens(tokenizer, tokens: list[str]) -> None:
    """Teach ``tokenizer`` the embeddings' tokens, each one whole word."""
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(t, single_word=True, normalized=False) for t in tokens])


def embedding_name_pattern(tokens_by_name: dict[str, list[str]]) -> re.Pattern | None:
    """A case-insensitive whole-word pattern of the names (longest first); None without names."""
    if not tokens_by_name:
        return None
    names = sorted(tokens_by_name, key=len, reverse=True)
    return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w-])", re.IGNORECASE)


def expand_embedding_names(text: str, pattern: re.Pattern | None, tokens_by_name: dict[str, list[str]]) -> str:
    """``text`` with each embedding name replaced by all its tokens (``name`` -> ``name name_1 name_2``)."""
    if pattern is None:
        return text
    return pattern.sub(lambda m: " ".join(tokens_by_name[m.group(0).lower()]), text)


def _token_names(name: str, count: int) -> list[str]:
    base = re.sub(r"\s+", "_", name.strip())
    return [base] + [f"{base}_{i}" for i in range(1, count)]


def _fit(parsed: EmbeddingFile, kinds, widths) -> tuple[list[torch.Tensor] | None, str]:
    """The vectors for each loaded encoder, or None and why they do not fit."""
    if "" in parsed.vectors:
        vectors = parsed.vectors[""]
        if len(widths) != 1 or vectors.shape[1] != widths[0]:
            return None, (
                f"its {vectors.shape[1]}-wide vectors do not fit this model's text encoder"
                f"{'s' if len(widths) > 1 else ''} ({' + '.join(map(str, widths))})"
            )
        return [vectors], ""
    have = ", ".join(f"{k} {v.shape[1]}" for k, v in parsed.vectors.items())
    if "clip_g" not in kinds:
        return None, f"made for SDXL ({have}); this model's text encoder is {', '.join(kinds)}"
    per_encoder = []
    for kind, width in zip(kinds, widths):
        vectors = parsed.vectors.get(kind)
        if vectors is None or vectors.shape[1] != width:
            return None, f"made for SDXL ({have}); this model's text encoders are {', '.join(kinds)} ({widths})"
        per_encoder.append(vectors)
    if len({v.shape[0] for v in per_encoder}) != 1:
        return None, "its clip_l and clip_g parts have different vector counts"
    return per_encoder, ""


__all__ = [
    "EMBEDDING_FILE_SUFFIXES",
    "EmbeddingFile",
    "EmbeddingFileError",
    "EmbeddingSet",
    "EmbeddingStatus",
    "read_embedding_file",
]
