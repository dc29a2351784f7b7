"""From prepared prompts to per-step conditioning: every distinct text encoded once.

The prompts themselves (styles, wildcards, LoRA tags, ``AND`` parts, prompt
editing schedules) come from :func:`webui.prompts.prepare_prompt`, the one
prompt pipeline; a hires-fix pass uses the same prompts rescheduled for it
(:meth:`webui.prompts.PreparedPrompt.rescheduled`).
"""
from __future__ import annotations

from typing import Callable

import torch

from webui.engine.diffusion import Conditioning
from webui.prompts import PreparedPrompt, prepare_prompt
from webui.prompts.schedule import text_at_step


def prepare_prompts(request, seeds: list[int], wildcards=None, styles=None) -> list[PreparedPrompt]:
    """One prepared prompt per image: wildcards are expanded from each image's own seed, so reruns repeat them."""
    return [prepare_prompt(request.prompt or "", request.negative_prompt or "", seed, request.steps,
                           wildcards=wildcards, styles=styles, style_names=request.styles or ())
            for seed in seeds]


def encode_prompts(model, addons, prompts: list[PreparedPrompt], clip_skip: int
                   ) -> tuple[Callable[[int], Conditioning], Callable[[int], Conditioning]]:
    """Positive and negative conditioning of a batch for a sampler step (counted from 0)."""
    from webui.engine.conditioning import PromptEncoder

    encoder = PromptEncoder(model.tokenizers, model.text_encoders, family=model.family)
    expand = addons.expand_prompt if addons is not None else (lambda t: t)
    positives = {text for p in prompts for part in p.parts for _, text in part.schedule}
    negatives = {text for p in prompts for _, text in p.negative_schedule}
    # Cond and uncond must have the same number of 77-token chunks (A1111 pads the shorter).
    chunks = encoder.chunk_count([expand(t) for t in positives | negatives])
    encoded = {("+", t): encoder.encode([expand(t)], clip_skip=clip_skip, min_chunks=chunks) for t in positives}
    encoded.update({("-", t): encoder.encode([expand(t)], clip_skip=clip_skip, min_chunks=chunks, negative=True)
                    for t in negatives})

    def stack(chosen: list[tuple[str, str]], image_of_row=None, weights=None) -> Conditioning:
        rows = [encoded[key] for key in chosen]
        pooled = [p.pooled for p in rows]
        return Conditioning(torch.cat([p.embeds for p in rows]), torch.cat(pooled) if pooled[0] is not None else None,
                            part_index=image_of_row, part_weight=weights)

    cache: dict[tuple, Conditioning] = {}

    def negative_at(step: int) -> Conditioning:
        chosen = tuple(("-", text_at_step(p.negative_schedule, step)) for p in prompts)
        if chosen not in cache:
            cache[chosen] = stack(list(chosen))
        return cache[chosen]

    image_of_row = torch.tensor([i for i, p in enumerate(prompts) for _ in p.parts])
    weights = torch.tensor([part.weight for p in prompts for part in p.parts], dtype=torch.float32)

    def positive_at(step: int) -> Conditioning:
        chosen = tuple(("+", text_at_step(part.schedule, step)) for p in prompts for part in p.parts)
        if chosen not in cache:
            cache[chosen] = stack(list(chosen), image_of_row, weights)
        return cache[chosen]

    return positive_at, negative_at
