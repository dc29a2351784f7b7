"""Grids with legends, as A1111's X/Y/Z plot and prompt matrix draw them: column labels on top, row labels left."""
from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from webui.saving import image_grid

LEGEND_COLOUR = (0, 0, 0)
BACKGROUND = (255, 255, 255)


def _font(size: int):
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` (a single long word stays whole)."""
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}".strip()
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return [line for line in lines if line] or [""]


def grid_of(images: list[Image.Image], rows: int) -> Image.Image:
    """``images`` in ``rows`` rows, cells as large as the largest image (A1111's image_grid with rows)."""
    return image_grid(images, n_rows=max(1, rows))


def draw_legends(grid: Image.Image, cell_w: int, cell_h: int, columns: list[str], rows: list[str],
                 margin: int = 0) -> Image.Image:
    """A copy of ``grid`` (``len(columns)`` x ``len(rows)`` cells) with labels and ``margin`` px between cells.

    Empty label lists (or all-empty labels) leave that side without a band, as A1111 does.
    """
    cols, nrows = max(1, len(columns)), max(1, len(rows))
    size = max(10, (cell_w + cell_h) // 25)
    font = _font(size)
    spacing = size // 2
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    col_lines = [_wrap(measure, text, font, cell_w) for text in columns]
    row_lines = [_wrap(measure, text, font, max(cell_w, 4 * size)) for text in rows]
    line_h = size + spacing // 2
    has_cols = any(text for text in columns)
    has_rows = any(text for text in rows)
    pad_top = (max(len(lines) for lines in col_lines) * line_h + 2 * spacing) if has_cols else 0
    pad_left = (max(measure.textlength(line, font=font) for lines in row_lines for line in lines)
                + 4 * spacing) if has_rows else 0
    pad_left = int(pad_left)
    out = Image.new("RGB", (grid.width + pad_left + margin * (cols - 1), grid.height + pad_top + margin * (nrows - 1)),
                    BACKGROUND)
    for row in range(nrows):
        for col in range(cols):
            cell = grid.crop((col * cell_w, row * cell_h, (col + 1) * cell_w, (row + 1) * cell_h))
            out.paste(cell, (pad_left + col * (cell_w + margin), pad_top + row * (cell_h + margin)))
    draw = ImageDraw.Draw(out)
    if has_cols:
        for col, lines in enumerate(col_lines):
            centre = pad_left + col * (cell_w + margin) + cell_w / 2
            top = (pad_top - len(lines) * line_h) / 2
            for i, line in enumerate(lines):
                draw.text((centre, top + i * line_h), line, font=font, fill=LEGEND_COLOUR, anchor="mt")
    if has_rows:
        for row, lines in enumerate(row_lines):
            middle = pad_top + row * (cell_h + margin) + cell_h / 2
            top = middle - len(lines) * line_h / 2
            for i, line in enumerate(lines):
                draw.text((pad_left / 2, top + i * line_h), line, font=font, fill=LEGEND_COLOUR, anchor="mt")
    return out
