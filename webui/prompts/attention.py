"""A1111's attention (emphasis) syntax: ``(x)``, ``((x))``, ``[x]``, ``(x:1.5)``, ``BREAK``.

``parse_prompt_attention`` returns the same ``[text, weight]`` list as A1111's
function of that name, including its handling of unbalanced brackets (an
unclosed bracket applies to the rest of the prompt, a stray closing bracket is
text) and its quirks (a lone backslash is dropped, ``BREAK`` inside brackets
gets a multiplied weight and so no longer splits chunks).
"""
from __future__ import annotations

import re

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK_WEIGHT = -1

# ":1.3)" closing an emphasis, with optional spaces around the number.
_WEIGHTED_CLOSE = re.compile(r":\s*([+-]?[.\d]+)\s*\)")
# Plain text runs stop at backslashes, brackets and colons.
_PLAIN_RUN = re.compile(r"[^\\()\[\]:]+")
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)
_ESCAPABLE = "()[]\\"


def _append_text(result: list[list], text: str) -> None:
    """Add plain text, turning each standalone ``BREAK`` into its own item."""
    pieces = _BREAK.split(text)
    for index, piece in enumerate(pieces):
        if index:
            result.append(["BREAK", BREAK_WEIGHT])
        result.append([piece, 1.0])


def parse_prompt_attention(text: str) -> list[list]:
    """Split ``text`` into ``[text, weight]`` pairs following A1111's emphasis rules.

    >>> parse_prompt_attention('an (important) word')
    [['an ', 1.0], ['important', 1.1], [' word', 1.0]]
    >>> parse_prompt_attention('(unbalanced')
    [['unbalanced', 1.1]]
    >>> parse_prompt_attention('a BREAK b')
    [['a', 1.0], ['BREAK', -1], ['b', 1.0]]
    """
    result: list[list] = []
    open_round: list[int] = []
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        # Multiply in place, item by item, so the float results match A1111's exactly.
        for item in result[start:]:
            item[1] *= factor

    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        if char == "\\":
            following = text[position + 1 : position + 2]
            if following and following in _ESCAPABLE:
                result.append([following, 1.0])
                position += 2
            else:
                result.append(["", 1.0])  # a lone backslash disappears, as in A1111
                position += 1
        elif char == "(":
            open_round.append(len(result))
            position += 1
        elif char == "[":
            open_square.append(len(result))
            position += 1
        elif char == ":":
            weighted = _WEIGHTED_CLOSE.match(text, position)
            factor = None
            if weighted and open_round:
                try:
                    factor = float(weighted.group(1))
                except ValueError:  # "1.2.3": A1111 crashes here; we keep it as text
                    factor = None
            if factor is not None:
                scale_from(open_round.pop(), factor)
                position = weighted.end()
            elif weighted and not open_round:
                _append_text(result, weighted.group(0))
                position = weighted.end()
            else:
                _append_text(result, ":")
                position += 1
        elif char == ")" and open_round:
            scale_from(open_round.pop(), ROUND_MULTIPLIER)
            position += 1
        elif char == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MULTIPLIER)
            position += 1
        elif char in ")]":
            _append_text(result, char)
            position += 1
        else:
            run = _PLAIN_RUN.match(text, position)
            _append_text(result, run.group(0))
            position = run.end()

    for start in open_round:
        scale_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_MULTIPLIER)

    if not result:
        return [["", 1.0]]

    merged = [result[0]]
    for item in result[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return merged
