"""Pure text handling of prompts: A1111 syntax, wildcards, styles and extra-network tags.

Standard library only; nothing here touches models or tensors. The engine
calls :func:`prepare_prompt` once per image and hands the result's texts to
the conditioning code.
"""
from .attention import parse_prompt_attention
from .composable import split_composable
from .extra_networks import (
    ExtraNetworkTag,
    LoraSpec,
    extract_extra_networks,
    find_embedding_names,
    lora_specs,
    resolve_loras,
)
from .prepare import ComposablePart, PreparedPrompt, prepare_prompt
from .schedule import get_learned_conditioning_prompt_schedules, text_at_step
from .styles import Style, StyleDatabase, merge_style
from .wildcards import WildcardIndex

__all__ = [
    "ComposablePart",
    "ExtraNetworkTag",
    "LoraSpec",
    "PreparedPrompt",
    "Style",
    "StyleDatabase",
    "WildcardIndex",
    "extract_extra_networks",
    "find_embedding_names",
    "get_learned_conditioning_prompt_schedules",
    "lora_specs",
    "merge_style",
    "parse_prompt_attention",
    "prepare_prompt",
    "resolve_loras",
    "split_composable",
    "text_at_step",
]
