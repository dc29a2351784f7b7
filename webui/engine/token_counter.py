"""A1111's prompt token counter ("12/75"), computed the way the engine reads the prompt.

The text loses its extra-network tags, is split at ``AND`` (positive prompts
only) and into its prompt-editing schedules; each resulting text is tokenized
and packed into 75-token chunks by the engine's own conditioner code, and the
largest count wins. Only the shipped CLIP tokenizer files are read: no model is
loaded, so counting works while a job runs or before any checkpoint exists.

Embedding names count as their vectors, as in the engine: given the loaded
embeddings' vector counts, the counter teaches a copy of the tokenizer the same
tokens the engine installs and expands the names the same way.
"""
from __future__ import annotations

import copy
import threading
from typing import Callable

from webui.engine.conditioning import PromptEncoder
from webui.prompts.composable import split_composable
from webui.prompts.extra_networks import extract_extra_networks
from webui.prompts.schedule import get_learned_conditioning_prompt_schedules


class TokenCounter:
    """Counts prompt tokens as A1111's counter does; the tokenizer is read on first use."""

    def __init__(self, tokenizer=None, embedding_vectors: Callable[[], dict[str, int]] | None = None):
        """``embedding_vectors()`` gives the loaded embeddings' vector counts by name (none: names are words)."""
        self._tokenizer = tokenizer
        self._embedding_vectors = embedding_vectors
        self._lock = threading.Lock()
        self._with_embeddings: tuple | None = None  # (counts key, tokenizer copy, name pattern, tokens by name)

    def _base_tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                from webui.models.tokenizers import load_clip_tokenizer

                self._tokenizer = load_clip_tokenizer("clip_l")
            return self._tokenizer

    def _embedding_aware(self):
        """(tokenizer, name pattern, tokens by name) for the embeddings loaded now; made again when they change."""
        from webui.models import embeddings

        base = self._base_tokenizer()
        counts = dict(self._embedding_vectors() or {}) if self._embedding_vectors else {}
        if not counts:
            return base, None, {}
        key = tuple(sorted(counts.items()))
        with self._lock:
            if self._with_embeddings is None or self._with_embeddings[0] != key:
                tokens = embeddings.embedding_token_names(sorted(counts.items()), [set(base.get_vocab())])
                tokenizer = copy.deepcopy(base)
                embeddings.add_embedding_tokens(tokenizer, [t for names in tokens.values() for t in names])
                self._with_embeddings = (key, tokenizer, embeddings.embedding_name_pattern(tokens), tokens)
            return self._with_embeddings[1:]

    def count(self, text: str | None, steps: int = 20, *, negative: bool = False) -> tuple[int, int]:
        """``(tokens, limit)``: tokens the prompt uses and the size of the chunks that hold them (75, 150...)."""
        text = text or ""
        steps = max(1, int(steps or 1))
        clean, _ = extract_extra_networks(text)
        try:
            texts = [clean] if negative else [part for part, _ in split_composable(clean)]
            schedules = get_learned_conditioning_prompt_schedules(texts, steps)
            prompts = [str(piece) for schedule in schedules for _, piece in schedule]
        except Exception:  # a half-typed prompt must still get a count
            prompts = [clean]
        from webui.models.embeddings import expand_embedding_names

        tokenizer, pattern, tokens = self._embedding_aware()
        # Counting needs the tokenizer only; no text encoder is touched.
        conditioner = PromptEncoder([tokenizer], [None], family="sd1")
        counts = (conditioner.token_count(expand_embedding_names(prompt, pattern, tokens)) for prompt in prompts or [""])
        return max(counts, key=lambda pair: pair[0])

    def label(self, text: str | None, steps: int = 20, *, negative: bool = False) -> str:
        """The counter's text, ``"tokens/limit"``."""
        used, limit = self.count(text, steps, negative=negative)
        return f"{used}/{limit}"
