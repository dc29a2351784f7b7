"""From what the user typed to what the engine encodes, as one pure function.

Order, per image: styles -> wildcards and variants (seeded) -> extra-network
tags taken out -> ``AND`` parts -> prompt-editing schedules. The result keeps
the texts the infotext needs (prompt as generated, ``Template:`` when wildcards
changed it) beside the texts to encode.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .composable import split_composable
from .extra_networks import ExtraNetworkTag, LoraSpec, extract_extra_networks, find_embedding_names, lora_specs
from .schedule import get_learned_conditioning_prompt_schedules
from .styles import StyleDatabase
from .wildcards import WildcardIndex

Schedule = list[tuple[int, str]]


@dataclass(frozen=True)
class ComposablePart:
    """One ``AND`` part: its weight and its ``(end_at_step, text)`` schedule."""

    text: str
    weight: float
    schedule: Schedule


@dataclass
class PreparedPrompt:
    """Everything the engine and the infotext need from one image's prompt pair.

    ``prompt``/``negative_prompt`` are the texts as generated (styles and
    wildcards applied, ``<lora:...>`` tags kept, as A1111 records them);
    ``clean_prompt``/``clean_negative_prompt`` have the tags removed and are what
    gets encoded. ``template``/``negative_template`` hold the text before wildcard
    expansion, only when expansion changed it (infotext ``Template:`` fields).
    """

    prompt: str
    negative_prompt: str
    clean_prompt: str
    clean_negative_prompt: str
    steps: int  # the step count the schedules were made for
    template: str | None = None
    negative_template: str | None = None
    extra_networks: list[ExtraNetworkTag] = field(default_factory=list)
    loras: list[LoraSpec] = field(default_factory=list)
    parts: list[ComposablePart] = field(default_factory=list)
    negative_schedule: Schedule = field(default_factory=list)
    embeddings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def is_composable(self) -> bool:
        """True when the prompt has several ``AND`` parts or a part weight other than 1."""
        return len(self.parts) > 1 or any(part.weight != 1.0 for part in self.parts)

    @property
    def schedule(self) -> Schedule:
        """The schedule of the first part (the whole prompt when there is no ``AND``)."""
        return self.parts[0].schedule

    def rescheduled(self, steps: int, hires_steps: int | None = None) -> "PreparedPrompt":
        """The same prompt scheduled for other step counts (A1111's hires-fix pass rules)."""
        parts, negative = _schedules(self.clean_prompt, self.clean_negative_prompt, steps, hires_steps)
        total = hires_steps if hires_steps is not None else steps
        return PreparedPrompt(**{**self.__dict__, "parts": parts, "negative_schedule": negative, "steps": total})


def _schedules(prompt: str, negative: str, steps: int, hires_steps: int | None) -> tuple[list[ComposablePart], Schedule]:
    split = split_composable(prompt)
    texts = [text for text, _ in split] + [negative]
    schedules = get_learned_conditioning_prompt_schedules(texts, steps, hires_steps)
    parts = [
        ComposablePart(text, weight, [(int(end), str(t)) for end, t in schedule])
        for (text, weight), schedule in zip(split, schedules)
    ]
    negative_schedule = [(int(end), str(t)) for end, t in schedules[-1]]
    return parts, negative_schedule


def prepare_prompt(
    prompt: str,
    negative: str,
    seed: int,
    steps: int,
    *,
    wildcards: WildcardIndex | None = None,
    styles: StyleDatabase | None = None,
    style_names: Sequence[str] = (),
    embedding_names: Iterable[str] = (),
    hires_steps: int | None = None,
) -> PreparedPrompt:
    """Turn one image's prompt and negative prompt into a :class:`PreparedPrompt`.

    ``seed`` drives wildcard and variant choices (the negative prompt uses a
    generator derived from the same seed), so the same seed repeats the same
    texts. ``embedding_names`` are the known textual-inversion names; the ones
    used are listed in ``embeddings``. Never raises on prompt content: problems
    become ``warnings``. ``steps`` must be at least 1 (``ValueError``).
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    warnings: list[str] = []

    if styles is not None and style_names:
        for name in styles.unknown(style_names):
            warnings.append(f"Style '{name}' not found; ignored")
        prompt, negative = styles.apply(prompt, negative, style_names)

    template = negative_template = None
    if wildcards is not None:
        expanded, found = wildcards.expand(prompt, seed)
        warnings += found
        if expanded != prompt:
            template, prompt = prompt, expanded
        expanded, found = wildcards.expand(negative, f"negative:{seed}")
        warnings += [f"Negative prompt: {w}" for w in found]
        if expanded != negative:
            negative_template, negative = negative, expanded

    clean_prompt, tags = extract_extra_networks(prompt)
    clean_negative, negative_tags = extract_extra_networks(negative)
    for tag in negative_tags:
        warnings.append(f"{tag.text} in the negative prompt is ignored")
    loras, found = lora_specs(tags)
    warnings += found
    for tag in tags:
        if tag.kind not in ("lora", "lyco"):
            warnings.append(f"{tag.text}: extra networks of kind '{tag.kind}' are not supported; ignored")

    known = list(embedding_names)
    used = find_embedding_names(clean_prompt, known)
    used += [name for name in find_embedding_names(clean_negative, known) if name not in used]

    parts, negative_schedule = _schedules(clean_prompt, clean_negative, steps, hires_steps)
    return PreparedPrompt(
        prompt=prompt,
        negative_prompt=negative,
        clean_prompt=clean_prompt,
        clean_negative_prompt=clean_negative,
        steps=hires_steps if hires_steps is not None else steps,
        template=template,
        negative_template=negative_template,
        extra_networks=tags,
        loras=loras,
        parts=parts,
        negative_schedule=negative_schedule,
        embeddings=used,
        warnings=list(dict.fromkeys(warnings)),
    )
