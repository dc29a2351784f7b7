"""From request text to per-step conditioning: styles, wildcards, LoRA tags, prompt editing, encoding."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from webui.engine.diffusion import Conditioning
from webui.prompts.composable import split_composable
from webui.prompts.extra_networks import LORA_KINDS, extract_extra_networks, lora_specs
from webui.prompts.schedule import get_learned_conditioning_prompt_schedules, text_at_step


@dataclass
class PromptPlan:
    """One image's prompts after styles and wildcards, its LoRA tags and its editing schedules."""

    prompt: str  # as the infotext records it (expanded, LoRA tags kept)
    negative: str
    parts: list[tuple[list[list], float]]  # AND parts: ([[end_at_step, text], ...], weight), tags removed
    negative_schedule: list[list]
    loras: list = field(default_factory=list)
    template: str | None = None
    negative_template: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def prompt_for_infotext(self) -> str:
        return self.prompt

    @property
    def negative_for_infotext(self) -> str:
        return self.negative


def plan_prompts(request, seeds: list[int], wildcards=None, styles=None) -> list[PromptPlan]:
    """A plan per image: wildcards are expanded from each image's own seed, so reruns repeat them."""
    plans = []
    for seed in seeds:
        prompt, negative = request.prompt or "", request.negative_prompt or ""
        warnings: list[str] = []
        if styles is not None and request.styles:
            prompt, negative = styles.apply(prompt, negative, request.styles)
        expanded, expanded_negative = prompt, negative
        if wildcards is not None:
            expanded, found = wildcards.expand(prompt, seed)
            expanded_negative, found_negative = wildcards.expand(negative, seed)
            warnings.extend(found)
            warnings.extend(found_negative)
        clean, tags = extract_extra_networks(expanded)
        clean_negative, _ = extract_extra_networks(expanded_negative)
        loras, tag_warnings = lora_specs(tags)
        warnings.extend(tag_warnings)
        for tag in tags:
            if tag.kind not in LORA_KINDS:
                warnings.append(f"{tag.text}: <{tag.kind}:...> networks are not supported; ignored")
        composable = split_composable(clean)  # "a AND b :0.5": each part is guided on its own, with its weight
        schedules = get_learned_conditioning_prompt_schedules([text for text, _ in composable], request.steps)
        parts = [(schedule, weight) for schedule, (_, weight) in zip(schedules, composable)]
        negative_schedule = get_learned_conditioning_prompt_schedules([clean_negative], request.steps)[0]
        plans.append(PromptPlan(
            prompt=expanded, negative=expanded_negative, parts=parts, negative_schedule=negative_schedule,
            loras=loras, template=prompt if expanded != prompt else None,
            negative_template=negative if expanded_negative != negative else None, warnings=warnings,
        ))
    return plans


def encode_plans(model, addons, plans: list[PromptPlan], steps: int, clip_skip: int
                 ) -> tuple[Callable[[int], Conditioning], Callable[[int], Conditioning]]:
    """Positive and negative conditioning of a batch for a sampler step; every text encoded once."""
    from webui.engine.conditioning import PromptEncoder

    encoder = PromptEncoder(model.tokenizers, model.text_encoders, family=model.family)
    expand = addons.expand_prompt if addons is not None else (lambda t: t)
    positives = {text for plan in plans for schedule, _ in plan.parts for _, text in schedule}
    negatives = {text for plan in plans for _, text in plan.negative_schedule}
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
        chosen = tuple(("-", text_at_step(plan.negative_schedule, step)) for plan in plans)
        if chosen not in cache:
            cache[chosen] = stack(list(chosen))
        return cache[chosen]

    image_of_row = torch.tensor([i for i, plan in enumerate(plans) for _ in plan.parts])
    weights = torch.tensor([weight for plan in plans for _, weight in plan.parts], dtype=torch.float32)

    def positive_at(step: int) -> Conditioning:
        chosen = tuple(("+", text_at_step(schedule, step)) for plan in plans for schedule, _ in plan.parts)
        if chosen not in cache:
            cache[chosen] = stack(list(chosen), image_of_row, weights)
        return cache[chosen]

    return positive_at, negative_at
