"""A1111's composable prompts: ``a red circle AND a blue square :1.2``.

Each ``AND``-separated part is encoded on its own and the sampler combines the
parts' predictions with their weights (Composable Diffusion). A trailing
``:number`` on a part is its weight; even a prompt without ``AND`` may carry
one, as in A1111.
"""
from __future__ import annotations

import re

_AND = re.compile(r"\bAND\b")
# Lazily take the text, then an optional ":weight" right before the end.
_TRAILING_WEIGHT = re.compile(r"^([\s\S]*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_composable(prompt: str) -> list[tuple[str, float]]:
    """Split a prompt on ``AND`` into ``(text, weight)`` parts (weight 1.0 unless given).

    >>> split_composable("a cat AND a dog :0.5")
    [('a cat', 1.0), (' a dog', 0.5)]
    """
    parts = []
    for piece in _AND.split(prompt):
        match = _TRAILING_WEIGHT.match(piece)
        if match is None:  # cannot happen with this pattern, kept for safety
            parts.append((piece, 1.0))
            continue
        text, weight = match.groups()
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts
