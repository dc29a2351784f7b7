"""A1111's prompt token counter ("12/75"), computed the way the engine reads the prompt.

The text loses its extra-network tags, is split at ``AND`` (positive prompts
only) and into its prompt-editing schedules; each resulting text is tokenized
and packed into 75-token chunks by the engine's own conditioner code, and the
largest count wins. Only the shipped CLIP tokenizer files are read: no model is
loaded, so counting works while a job runs or before any checkpoint exists.
"""
from __future__ import annotations

import threading

from webui.engine.conditioning import PromptEncoder
from webui.prompts.composable import split_composable
from webui.prompts.extra_networks import extract_extra_networks
from webui.prompts.schedule import get_learned_conditioning_prompt_schedules


class TokenCounter:
    """Counts prompt tokens as A1111's counter does; the tokenizer is read on first use."""

    def __init__(self, tokenizer=None):
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    def _conditioner(self) -> PromptEncoder:
        with self._lock:
            if self._tokenizer is None:
                from webui.models.tokenizers import load_clip_tokenizer

                self._tokenizer = load_clip_tokenizer("clip_l")
            tokenizer = self._tokenizer
        # Counting needs the tokenizer only; no text encoder is touched.
        return PromptEncoder([tokenizer], [None], family="sd1")

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
        conditioner = self._conditioner()
        return max((conditioner.token_count(prompt) for prompt in prompts or [""]), key=lambda pair: pair[0])

    def label(self, text: str | None, steps: int = 20, *, negative: bool = False) -> str:
        """The counter's text, ``"tokens/limit"``."""
        used, limit = self.count(text, steps, negative=negative)
        return f"{used}/{limit}"
