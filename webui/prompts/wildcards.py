"""Wildcards and variants in sd-dynamic-prompts syntax.

* ``__name__`` is replaced by a random line of ``<wildcards>/name.txt``;
  ``__dir/name__`` reads a subfolder; ``__colors*__`` picks from every file whose
  name matches the glob. Blank lines and ``#`` comments are skipped.
* ``{a|b|c}`` picks one option, ``{0.5::a|1::b}`` with weights, ``{2$$a|b|c}``
  picks two different ones joined with ", ", ``{1-3$$...}``/``{-2$$...}``/``{2-$$...}``
  a random count, ``{2$$ and $$a|b|c}`` joins with a custom separator, and
  ``{2$$__colors__}`` picks among a wildcard's lines.
* Picked text is expanded again, up to a depth limit; a wildcard that refers to
  itself is reported as a cycle and left as text.

Names resolve only through the scanned index, so ``__../../etc/passwd__`` reads
nothing. Everything the user should know about comes back as a warning string;
expansion never raises on bad input. The same seed gives the same expansion.
"""
from __future__ import annotations

import fnmatch
import os
import random
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

DEFAULT_MAX_DEPTH = 10
MAX_FILE_BYTES = 8 * 1024 * 1024
DEFAULT_SEPARATOR = ", "

_WILDCARD = re.compile(r"__([^\s{}|$_\\][^\s{}|$\\]*?)__")
_PLAIN_RUN = re.compile(r"[^\\{_]+")
_COUNT = re.compile(r"^\s*(\d*)\s*(?:(-)\s*(\d*))?\s*\$\$")
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*::")
_GLOB_CHARS = set("*?[")


def _is_safe_name(name: str) -> bool:
    """Reject names that look like paths out of the wildcards folder."""
    if name.startswith(("/", "~")) or "\\" in name or ":" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


class WildcardIndex:
    """The wildcard files of one folder, by name (relative path without ``.txt``, ``/`` separated).

    Build it with :meth:`scan` (a folder) or directly from a mapping of names to
    lists of lines (tests, or a catalog that read the files itself). Files are
    read on first use and cached for the life of the index; scan again to pick
    up changes.
    """

    def __init__(self, entries: Mapping[str, Path | Iterable[str]] | None = None):
        self._paths: dict[str, Path] = {}
        self._lines: dict[str, list[str]] = {}
        for name, value in (entries or {}).items():
            if isinstance(value, (str, os.PathLike)):
                self._paths[name] = Path(value)
            else:
                self._lines[name] = _clean_lines(value)

    @classmethod
    def scan(cls, folder: str | os.PathLike) -> "WildcardIndex":
        """Index every ``*.txt`` under ``folder`` (a missing folder gives an empty index).

        Files reached through links that leave the folder are skipped.
        """
        root = Path(folder)
        entries: dict[str, Path] = {}
        if not root.is_dir():
            return cls(entries)
        real_root = root.resolve()
        for directory, subdirs, files in os.walk(root):
            subdirs.sort()
            for file_name in sorted(files):
                if not file_name.lower().endswith(".txt"):
                    continue
                path = Path(directory) / file_name
                try:
                    real = path.resolve()
                    real.relative_to(real_root)
                except (OSError, ValueError):
                    continue
                name = path.relative_to(root).as_posix()[: -len(".txt")]
                entries[name] = path
        return cls(entries)

    def names(self) -> list[str]:
        """All wildcard names, sorted."""
        return sorted({*self._paths, *self._lines})

    def __contains__(self, name: object) -> bool:
        return name in self._paths or name in self._lines

    def __len__(self) -> int:
        return len(self.names())

    def values(self, name: str) -> list[str]:
        """The usable lines of one wildcard (``KeyError`` if unknown)."""
        if name not in self._lines:
            path = self._paths[name]  # KeyError for unknown names
            try:
                if path.stat().st_size > MAX_FILE_BYTES:
                    raise OSError(f"larger than {MAX_FILE_BYTES} bytes")
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._lines[name] = _clean_lines(text.splitlines())
        return self._lines[name]

    def match(self, pattern: str) -> list[str]:
        """Names matching a glob such as ``colors*`` or ``*/trees``."""
        return [name for name in self.names() if fnmatch.fnmatchcase(name, pattern)]

    def expand(self, text: str, seed: int | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[str, list[str]]:
        """Expand wildcards and variants in ``text`` deterministically for ``seed``.

        ``seed`` may also be a string (``prepare_prompt`` derives the negative
        prompt's seed that way). Returns the expanded text and the warnings for
        the user (unknown or unsafe names, empty files, cycles, too-deep nesting,
        unbalanced braces).
        """
        expander = _Expander(self, random.Random(seed), max_depth)
        result = expander.expand(text, 0, ())
        return result, list(dict.fromkeys(expander.warnings))


def _clean_lines(lines: Iterable[str]) -> list[str]:
    cleaned = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            cleaned.append(line)
    return cleaned


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each ``{`` -> its matching ``}``; escaped braces do not count."""
    pairs, stack, i = {}, [], 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            stack.append(i)
        elif char == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def _split_options(body: str) -> list[str]:
    """Split a variant body on ``|`` at its own nesting level."""
    options, depth, start, i = [], 0, 0, 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "|" and depth == 0:
            options.append(body[start:i])
            start = i + 1
        i += 1
    options.append(body[start:])
    return options


class _Expander:
    """One expansion run: the random generator, limits and collected warnings."""

    def __init__(self, index: WildcardIndex, rng: random.Random, max_depth: int):
        self.index = index
        self.rng = rng
        self.max_depth = max_depth
        self.warnings: list[str] = []

    def expand(self, text: str, depth: int, stack: tuple[str, ...]) -> str:
        braces = _matching_braces(text)
        out, i = [], 0
        while i < len(text):
            char = text[i]
            if char == "\\":
                out.append(text[i : i + 2])
                i += 2
            elif char == "{":
                end = braces.get(i)
                if end is None:
                    self.warnings.append("Unbalanced '{' in prompt left as text")
                    out.append(char)
                    i += 1
                    continue
                out.append(self.variant(text[i + 1 : end], text[i : end + 1], depth, stack))
                i = end + 1
            elif char == "_":
                match = _WILDCARD.match(text, i)
                if match is None:
                    out.append(char)
                    i += 1
                    continue
                out.append(self.wildcard(match.group(1), match.group(0), depth, stack))
                i = match.end()
            else:
                run = _PLAIN_RUN.match(text, i)
                out.append(run.group(0))
                i = run.end()
        return "".join(out)

    # ---------------------------------------------------------------- wildcards
    def wildcard_values(self, name: str, literal: str) -> list[str] | None:
        if not _is_safe_name(name):
            self.warnings.append(f"Wildcard {literal} is not a valid name; left as text")
            return None
        names = self.index.match(name) if _GLOB_CHARS & set(name) else [name] if name in self.index else []
        if not names:
            self.warnings.append(f"Unknown wildcard {literal} left as text")
            return None
        values = [value for found in names for value in self.index.values(found)]
        if not values:
            self.warnings.append(f"Wildcard {literal} has no lines; replaced by nothing")
        return values

    def wildcard(self, name: str, literal: str, depth: int, stack: tuple[str, ...]) -> str:
        if name in stack:
            self.warnings.append(f"Wildcard {literal} refers to itself (cycle); left as text")
            return literal
        if depth >= self.max_depth:
            self.warnings.append(f"Wildcards nested deeper than {self.max_depth} levels; {literal} left as text")
            return literal
        values = self.wildcard_values(name, literal)
        if values is None:
            return literal
        if not values:
            return ""
        return self.expand(self.rng.choice(values), depth + 1, (*stack, name))

    # ---------------------------------------------------------------- variants
    def variant(self, body: str, literal: str, depth: int, stack: tuple[str, ...]) -> str:
        if depth >= self.max_depth:
            self.warnings.append(f"Variants nested deeper than {self.max_depth} levels; left as text")
            return literal
        low, high, separator = 1, 1, DEFAULT_SEPARATOR
        count = _COUNT.match(body)
        if count:
            first, dash, second = count.groups()
            if first or dash:
                body = body[count.end() :]
                low = int(first) if first else 1
                high = (int(second) if second else None) if dash else low
                head, sep_mark, rest = body.partition("$$")
                if sep_mark and "|" not in head and "{" not in head:
                    separator, body = head, rest
            else:
                high = low
        options = _split_options(body)
        weights = []
        for index, option in enumerate(options):
            weight = _WEIGHT.match(option)
            weights.append(float(weight.group(1)) if weight else 1.0)
            if weight:
                options[index] = option[weight.end() :]
        if len(options) == 1:
            reference = _WILDCARD.fullmatch(options[0].strip())
            if reference:
                name = reference.group(1)
                if name in stack:
                    self.warnings.append(f"Wildcard {reference.group(0)} refers to itself (cycle); left as text")
                    return literal
                values = self.wildcard_values(name, reference.group(0))
                if values is None:
                    return literal
                options, weights = values, [1.0] * len(values)
                stack = (*stack, name)
        if not options:
            return ""
        high = len(options) if high is None else high
        low, high = min(low, len(options)), min(max(high, low), len(options))
        picks = self.pick(options, weights, self.rng.randint(low, high) if high > low else low)
        return separator.join(self.expand(option, depth + 1, stack) for option in picks)

    def pick(self, options: list[str], weights: list[float], count: int) -> list[str]:
        """``count`` different options, drawn by weight without replacement."""
        pool = list(zip(options, [max(w, 0.0) for w in weights]))
        picks = []
        for _ in range(count):
            total = sum(w for _, w in pool)
            if total <= 0:
                index = self.rng.randrange(len(pool))
            else:
                index = self.rng.choices(range(len(pool)), weights=[w for _, w in pool])[0]
            picks.append(pool.pop(index)[0])
        return picks
