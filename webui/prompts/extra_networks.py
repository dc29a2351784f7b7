"""Extra-network tags (``<lora:name:0.8>``) and textual-inversion names in prompts.

Tags follow A1111: ``<kind:arg1:arg2...>`` where ``kind`` is a word; an
argument ``key=value`` is named, the others positional. For LoRA (``lora``, and
its old alias ``lyco``): ``<lora:name>`` weight 1.0, ``<lora:name:w>``,
``<lora:name:te_w:unet_w>`` (unet weight defaults to the text-encoder weight),
named ``te=``/``unet=``/``dyn=`` override positional ones. Names are resolved
later against the catalog; nothing here touches the disk.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_TAG = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = ("lora", "lyco")


@dataclass(frozen=True)
class ExtraNetworkTag:
    """One ``<kind:...>`` tag as written: ``positional[0]`` is usually the name."""

    kind: str
    positional: tuple[str, ...]
    named: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def name(self) -> str:
        return self.positional[0] if self.positional else ""


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA to apply: its name and multipliers for the text encoder(s) and the UNet."""

    name: str
    te_weight: float = 1.0
    unet_weight: float = 1.0
    dyn_dim: int | None = None


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetworkTag]]:
    """Remove every ``<kind:...>`` tag from ``prompt``; return the rest and the tags in order.

    >>> extract_extra_networks("a cat <lora:ink:0.6>")
    ('a cat ', [ExtraNetworkTag(kind='lora', positional=('ink', '0.6'), named={}, text='<lora:ink:0.6>')])
    """
    tags: list[ExtraNetworkTag] = []

    def take(match: re.Match) -> str:
        positional, named = [], {}
        for item in match.group(2).split(":"):
            key, equals, value = item.partition("=")
            if equals:
                named[key.strip()] = value.strip()
            else:
                positional.append(item.strip())
        tags.append(ExtraNetworkTag(match.group(1).lower(), tuple(positional), named, match.group(0)))
        return ""

    return _TAG.sub(take, prompt), tags


def lora_specs(tags: Iterable[ExtraNetworkTag]) -> tuple[list[LoraSpec], list[str]]:
    """The LoRA tags among ``tags`` as typed specs, plus warnings for malformed ones."""
    specs, warnings = [], []
    for tag in tags:
        if tag.kind not in LORA_KINDS:
            continue
        if not tag.name:
            warnings.append(f"{tag.text}: LoRA tag without a name ignored")
            continue
        try:
            te = float(tag.positional[1]) if len(tag.positional) > 1 else 1.0
            te = float(tag.named.get("te", te))
            unet = float(tag.positional[2]) if len(tag.positional) > 2 else te
            unet = float(tag.named.get("unet", unet))
            dyn = int(tag.positional[3]) if len(tag.positional) > 3 else None
            dyn = int(tag.named["dyn"]) if "dyn" in tag.named else dyn
        except ValueError:
            warnings.append(f"{tag.text}: weights must be numbers; tag ignored")
            continue
        specs.append(LoraSpec(tag.name, te, unet, dyn))
    return specs, warnings


def resolve_loras(specs: Iterable[LoraSpec], known_names: Iterable[str]) -> tuple[list[LoraSpec], list[str]]:
    """Keep the specs whose name is known (exact, then case-insensitive match), with the catalog's spelling.

    Unknown names and repeats of the same LoRA give warnings, never errors.
    """
    known = list(known_names)
    exact = set(known)
    folded: dict[str, str] = {}
    for name in known:
        folded.setdefault(name.casefold(), name)
    resolved, warnings, seen = [], [], set()
    for spec in specs:
        name = spec.name if spec.name in exact else folded.get(spec.name.casefold())
        if name is None:
            warnings.append(f"LoRA '{spec.name}' not found; ignored")
            continue
        if name in seen:
            warnings.append(f"LoRA '{name}' is given more than once; only the first tag is used")
            continue
        seen.add(name)
        resolved.append(LoraSpec(name, spec.te_weight, spec.unet_weight, spec.dyn_dim))
    return resolved, warnings


def find_embedding_names(prompt: str, known_names: Iterable[str]) -> list[str]:
    """Textual-inversion embeddings named in ``prompt`` as whole words, in order of first use.

    The match ignores case, as CLIP's tokenizer lower-cases the prompt.
    """
    found: list[tuple[int, str]] = []
    for name in set(known_names):
        if not name:
            continue
        match = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", prompt, re.IGNORECASE)
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]
