"""A1111 prompt editing: ``[from:to:when]``, ``[to:when]``, ``[from::when]`` and alternation ``[a|b]``.

``get_learned_conditioning_prompt_schedules`` returns, for each prompt, a list of
``[end_at_step, text]`` pairs, equal to A1111's function of that name: the text
to condition on up to and including ``end_at_step``. An integer ``when`` is a
step, a number with a dot is a share of the steps. Text that does not parse as
A1111's grammar (a ``|`` outside brackets, for instance) is used unchanged for
every step, as A1111 does.

The parser is hand-written; brackets that do not form a valid construct at the
top level are kept as literal characters, and emphasis ``(x)``/``[x]`` is kept
verbatim for ``parse_prompt_attention`` to handle later. On prompts without
stray brackets or colons it gives A1111's results exactly (checked on tens of
thousands of random prompts). Where stray brackets sit right next to a
construct, A1111's ambiguous grammar sometimes ignores a valid ``[a:b:5]`` (for
example in ``(x [a:b:5]))``); this parser always honours it. Nesting deeper than
``MAX_NESTING`` brackets makes the prompt count as unparsable (used unchanged).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MAX_NESTING = 200  # deeper bracket nesting makes the prompt count as unparsable

_NUMBER = r"[+-]?(?:\d+[eE][+-]?\d+|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+)"
_BARE_NUMBER = re.compile(rf"\s*({_NUMBER})\s*")
_NUMBER_AND_CLOSE = re.compile(rf"\s*({_NUMBER})\s*\]")
_PLAIN = re.compile(r"[^\\\[\]():|]+")


class _Unparsable(Exception):
    """The prompt is not in A1111's scheduling grammar; it is used as plain text."""


@dataclass
class _Scheduled:
    before: list | None
    after: list
    number: str
    when: int = 0


@dataclass
class _Alternate:
    options: list[list]


class _Parser:
    """Recursive descent over A1111's scheduling grammar, memoising bracket constructs by position."""

    def __init__(self, text: str):
        self.text = text
        self.memo: dict[int, tuple[list, int] | None] = {}

    def parse(self) -> list:
        text, nodes, i = self.text, [], 0
        while i < len(text):
            char = text[i]
            if char in "([":
                found = self.construct(i, 0)
                if found is None:
                    nodes.append(char)  # stray bracket, allowed at the top level only
                    i += 1
                else:
                    nodes.extend(found[0])
                    i = found[1]
            elif char in ":])":
                nodes.append(char)
                i += 1
            elif char == "|":
                raise _Unparsable
            elif char == "\\":
                if i + 1 >= len(text) or text[i + 1] == "\n":
                    raise _Unparsable
                nodes.append(text[i : i + 2])
                i += 2
            else:
                run = _PLAIN.match(text, i)
                nodes.append(run.group(0))
                i = run.end()
        return nodes

    def inner(self, i: int, depth: int) -> tuple[list, int]:
        """A prompt inside brackets: text, escapes and valid nested constructs, up to a delimiter."""
        text, nodes = self.text, []
        while i < len(text):
            char = text[i]
            if char in ":|])":
                break
            if char in "([":
                found = self.construct(i, depth + 1)
                if found is None:
                    break
                nodes.extend(found[0])
                i = found[1]
            elif char == "\\":
                if i + 1 >= len(text) or text[i + 1] == "\n":
                    break
                nodes.append(text[i : i + 2])
                i += 2
            else:
                run = _PLAIN.match(text, i)
                nodes.append(run.group(0))
                i = run.end()
        return nodes, i

    def construct(self, start: int, depth: int) -> tuple[list, int] | None:
        """Parse the bracket construct opening at ``start``: nodes and end position, or None."""
        if depth > MAX_NESTING:
            raise _Unparsable
        if start not in self.memo:
            parse = self._round if self.text[start] == "(" else self._square
            self.memo[start] = parse(start, depth)
        return self.memo[start]

    def _at(self, i: int) -> str:
        return self.text[i] if i < len(self.text) else ""

    def _round(self, start: int, depth: int) -> tuple[list, int] | None:
        first, i = self.inner(start + 1, depth)
        if self._at(i) == ")":
            return ["(", *first, ")"], i + 1
        if self._at(i) != ":":
            return None
        second, i = self.inner(i + 1, depth)
        if self._at(i) != ")":
            return None
        return ["(", *first, ":", *second, ")"], i + 1

    def _square(self, start: int, depth: int) -> tuple[list, int] | None:
        first, i = self.inner(start + 1, depth)
        delimiter = self._at(i)
        if delimiter == "]":
            return ["[", *first, "]"], i + 1
        if delimiter == "|":
            options = [first]
            while self._at(i) == "|":
                option, i = self.inner(i + 1, depth)
                options.append(option)
            if self._at(i) != "]":
                return None
            return [_Alternate(options)], i + 1
        if delimiter != ":":
            return None
        second, i = self.inner(i + 1, depth)
        delimiter = self._at(i)
        if delimiter == "]":
            # "[to:when]": the second part must be a bare number.
            if not all(isinstance(node, str) for node in second):
                return None
            number = _BARE_NUMBER.fullmatch("".join(second))
            if number is None:
                return None
            return [_Scheduled(None, first, number.group(1))], i + 1
        if delimiter == ":":
            number = _NUMBER_AND_CLOSE.match(self.text, i + 1)
            if number is None:
                return None
            return [_Scheduled(first, second, number.group(1))], number.end()
        return None


def _walk(nodes: list):
    for node in nodes:
        if isinstance(node, _Scheduled):
            yield node
            yield from _walk(node.before or [])
            yield from _walk(node.after)
        elif isinstance(node, _Alternate):
            yield node
            for option in node.options:
                yield from _walk(option)


def _render(nodes: list, step: int) -> str:
    parts = []
    for node in nodes:
        if isinstance(node, str):
            parts.append(node)
        elif isinstance(node, _Scheduled):
            parts.append(_render((node.before or []) if step <= node.when else node.after, step))
        else:
            parts.append(_render(node.options[(step - 1) % len(node.options)], step))
    return "".join(parts)


def _schedule_one(prompt: str, steps: int, int_offset: int, float_offset: float, old: bool) -> list[list]:
    try:
        nodes = _Parser(prompt).parse()
    except _Unparsable:
        return [[steps, prompt]]
    boundaries = {steps}
    for node in _walk(nodes):
        if isinstance(node, _Alternate):
            boundaries.update(range(1, steps + 1))
            continue
        value = float(node.number)
        if old:
            value = value * steps if value < 1 else value
        elif "." in node.number:
            value = (value - float_offset) * steps
        else:
            value = value - int_offset
        node.when = min(steps, int(value))
        if node.when >= 1:
            boundaries.add(node.when)
    return [[step, _render(nodes, step)] for step in sorted(boundaries)]


def get_learned_conditioning_prompt_schedules(
    prompts: list[str], base_steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list[list]]:
    """For each prompt, the ``[end_at_step, text]`` pairs that A1111's prompt editing gives.

    ``hires_steps`` switches to the hires-fix pass: integers then count from the
    end of the first pass and fractions above 1 address the second pass, as in
    A1111 (``use_old_scheduling`` restores its pre-1.6 rules).

    >>> get_learned_conditioning_prompt_schedules(["a [b:3]"], 10)
    [[[3, 'a '], [10, 'a b']]]
    >>> get_learned_conditioning_prompt_schedules(["[cat|dog]"], 3)
    [[[1, 'cat'], [2, 'dog'], [3, 'cat']]]
    """
    if hires_steps is None or use_old_scheduling:
        int_offset, float_offset, steps = 0, 0.0, base_steps
    else:
        int_offset, float_offset, steps = base_steps, 1.0, hires_steps
    cache: dict[str, list[list]] = {}
    result = []
    for prompt in prompts:
        if prompt not in cache:
            cache[prompt] = _schedule_one(prompt, steps, int_offset, float_offset, use_old_scheduling)
        result.append([list(entry) for entry in cache[prompt]])
    return result


def text_at_step(schedule: list[list], step: int) -> str:
    """The text of a schedule for a sampler step, counted from 0 as A1111's denoiser does.

    A1111 picks the first entry whose ``end_at_step`` is >= the step.
    """
    for end_at_step, text in schedule:
        if step <= end_at_step:
            return text
    return schedule[-1][1]
