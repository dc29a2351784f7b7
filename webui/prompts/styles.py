"""Prompt styles from ``styles.csv`` in A1111's format (``name,prompt,negative_prompt``).

A style's text replaces a ``{prompt}`` placeholder with the user's prompt;
without a placeholder it is appended after ", ". Styles apply in the order given.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from webui.fileio import atomic_write_text

PLACEHOLDER = "{prompt}"
FIELDS = ("name", "prompt", "negative_prompt")


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge_style(style_text: str, prompt: str) -> str:
    """Put ``prompt`` into one style's text the way A1111 does.

    >>> merge_style("{prompt}, oil painting", "a cat")
    'a cat, oil painting'
    >>> merge_style("oil painting", "a cat")
    'a cat, oil painting'
    """
    if PLACEHOLDER in style_text:
        return style_text.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


class StyleDatabase:
    """The styles of one CSV file, by name, in file order."""

    def __init__(self, styles: list[Style] | None = None):
        self._styles: dict[str, Style] = {style.name: style for style in styles or []}

    @classmethod
    def load(cls, path: str | os.PathLike) -> "StyleDatabase":
        """Read a styles CSV; a missing file gives an empty database.

        Accepts A1111's old ``text`` column in place of ``prompt``; rows without
        a name are skipped.
        """
        file = Path(path)
        if not file.is_file():
            return cls()
        return cls.from_csv_text(file.read_text(encoding="utf-8-sig", errors="replace"))

    @classmethod
    def from_csv_text(cls, text: str) -> "StyleDatabase":
        """Parse styles from CSV text with a header row."""
        styles = []
        for row in csv.DictReader(io.StringIO(text), skipinitialspace=True):
            name = (row.get("name") or "").strip()
            if not name:
                continue
            prompt = row.get("prompt") if row.get("prompt") is not None else row.get("text")
            styles.append(Style(name, prompt or "", row.get("negative_prompt") or ""))
        return cls(styles)

    def names(self) -> list[str]:
        return list(self._styles)

    def get(self, name: str) -> Style | None:
        return self._styles.get(name)

    def unknown(self, style_names) -> list[str]:
        """Which of ``style_names`` are not in the database."""
        return [name for name in style_names if name not in self._styles]

    def apply(self, prompt: str, negative: str, style_names) -> tuple[str, str]:
        """The prompt and negative prompt with the named styles applied in order.

        Unknown names are skipped (see :meth:`unknown` to report them).
        """
        for name in style_names:
            style = self._styles.get(name)
            if style is None:
                continue
            prompt = merge_style(style.prompt, prompt)
            negative = merge_style(style.negative_prompt, negative)
        return prompt, negative

    def with_style(self, style: Style) -> "StyleDatabase":
        """A copy with ``style`` added or replaced (for a "save style" button)."""
        styles = dict(self._styles)
        styles[style.name] = style
        return StyleDatabase(list(styles.values()))

    def without(self, name: str) -> "StyleDatabase":
        """A copy without the named style."""
        return StyleDatabase([s for s in self._styles.values() if s.name != name])

    def to_csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        for style in self._styles.values():
            writer.writerow({"name": style.name, "prompt": style.prompt, "negative_prompt": style.negative_prompt})
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        """Write the styles as CSV, replacing the file atomically."""
        atomic_write_text(path, self.to_csv_text())
