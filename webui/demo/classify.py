"""Read the shape, its colour and the background colour out of a demo image.

Pixel statistics only, no learned parts, so tests can score what the demo model
generates:

* background: the median colour of a 2-pixel ring along the border (shapes never
  touch it), named by the nearest entry of ``shapes.COLOURS``;
* shape colour: every pixel far from the background votes for its nearest named
  colour other than the background's; the most voted name wins;
* shape kind: the pixels closer to the shape's colour than to the background's
  form a mask; its largest connected blob is a triangle when its centroid sits
  low in its bounding box (2/3 of the way down; 1/2 for the others) or it fills
  about half the box, else a square when it fills the corner cells of its box
  (a circle leaves them about 70% empty) and a circle otherwise.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from webui.demo.shapes import COLOURS

_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _NAMES], dtype=np.float64)
#: RGB distance from the background above which a pixel counts as "not background".
FOREGROUND_DISTANCE = 80.0
#: Fill ratio of its box under which a blob is a triangle.
TRIANGLE_BELOW = 0.6
#: Corner-cell occupancy above which a blob is a square rather than a circle.
SQUARE_CORNERS = 0.6
#: Centroid height (0 top .. 1 bottom of the blob's box) above which a blob is a triangle.
TRIANGLE_DROP = 0.57


@dataclass(frozen=True)
class Classification:
    """What the classifier saw; ``shape`` is None when no shape was found."""

    shape: str | None
    colour: str | None
    background: str
    fill: float
    area: int
    drop: float = 0.5
    corners: float = 0.0

    @property
    def labels(self) -> dict[str, str | None]:
        return {"shape": self.shape, "colour": self.colour, "background": self.background}


def as_array(image) -> np.ndarray:
    """A PIL image or array as float64 HxWx3 RGB in 0..255."""
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.ndim != 3 or array.shape[2] < 3:
        raise ValueError(f"expected an RGB image, got an array of shape {array.shape}")
    return array[..., :3].astype(np.float64)


def nearest_colour_names(pixels: np.ndarray) -> np.ndarray:
    """Index into ``COLOURS`` of the nearest named colour of each RGB pixel (..., 3)."""
    distances = ((pixels[..., None, :] - _PALETTE) ** 2).sum(-1)
    return distances.argmin(-1)


def colour_share(image, name: str) -> float:
    """Fraction of pixels whose nearest named colour is ``name`` (e.g. the red share)."""
    if name not in COLOURS:
        raise ValueError(f"unknown colour {name!r}; choose one of {', '.join(_NAMES)}")
    return float((nearest_colour_names(as_array(image)) == _NAMES.index(name)).mean())


def classify(image) -> Classification:
    """Classify one demo image (PIL image or HxWx3 array)."""
    pixels = as_array(image)
    background_rgb = border_colour(pixels)
    background_index = int(nearest_colour_names(background_rgb))
    far = np.sqrt(((pixels - background_rgb) ** 2).sum(-1)) > FOREGROUND_DISTANCE
    if far.sum() == 0:
        return Classification(None, None, _NAMES[background_index], 0.0, 0)
    # Edge pixels blend the two colours (blue on red blurs to purple), so only the
    # half of the foreground farthest from the background votes.
    candidates = pixels[far]
    spread = np.sqrt(((candidates - background_rgb) ** 2).sum(-1))
    candidates = candidates[spread >= np.median(spread)]
    distances = ((candidates[:, None, :] - _PALETTE) ** 2).sum(-1)
    distances[:, background_index] = np.inf
    votes = np.bincount(distances.argmin(-1), minlength=len(_NAMES))
    colour_index = int(votes.argmax())
    shape_rgb = np.median(candidates[distances.argmin(-1) == colour_index], axis=0)
    closer = ((pixels - shape_rgb) ** 2).sum(-1) < ((pixels - background_rgb) ** 2).sum(-1)
    blob = largest_component(closer)
    area = int(blob.sum())
    rows, cols = np.nonzero(blob)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    fill = area / box
    # An up-pointing triangle holds its mass low: its centroid sits 2/3 of the way
    # down its box, where a circle's or a square's sits at 1/2.  Blur rounds a
    # triangle's fill towards a circle's but keeps that drop.
    drop = (rows.mean() - rows.min() + 0.5) / (rows.max() - rows.min() + 1)
    corners = corner_fill(blob[rows.min():rows.max() + 1, cols.min():cols.max() + 1])
    if drop > TRIANGLE_DROP or fill < TRIANGLE_BELOW:
        shape = "triangle"
    else:
        shape = "square" if corners > SQUARE_CORNERS else "circle"
    return Classification(shape, _NAMES[colour_index], _NAMES[background_index], float(fill), area, float(drop),
                          float(corners))


def border_colour(pixels: np.ndarray) -> np.ndarray:
    """Median RGB of the 2-pixel ring along the border (the background: shapes never touch it)."""
    ring = np.concatenate([
        pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
        pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3),
    ])
    return np.median(ring, axis=0)


def foreground_mask(image) -> np.ndarray:
    """Boolean HxW mask of the pixels far from the background (the border ring's median colour)."""
    pixels = as_array(image)
    background_rgb = border_colour(pixels)
    return np.sqrt(((pixels - background_rgb) ** 2).sum(-1)) > FOREGROUND_DISTANCE


def shape_centroid(image) -> tuple[float, float] | None:
    """(x, y) in pixels of the centre of mass of the largest foreground blob; None when there is none."""
    blob = largest_component(foreground_mask(image))
    return mask_centroid(blob)


def mask_centroid(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) pixel-centre coordinates of a boolean mask's centre of mass; None when it is empty."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return None
    return float(cols.mean() + 0.5), float(rows.mean() + 0.5)


def corner_fill(box: np.ndarray) -> float:
    """Mean occupancy of the four corner cells (a quarter of each side) of a blob's box.

    A square fills them (~1, also when blur rounds it or its sides sag); a circle
    leaves ~30% of them filled.
    """
    h, w = box.shape
    ch, cw = max(1, round(h / 4)), max(1, round(w / 4))
    cells = [box[:ch, :cw], box[:ch, -cw:], box[-ch:, :cw], box[-ch:, -cw:]]
    return float(np.mean([c.mean() for c in cells]))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected region of a boolean mask (empty mask -> empty mask)."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    best_label, best_size, current = 0, 0, 0
    height, width = mask.shape
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        current += 1
        labels[start] = current
        queue, size = deque([start]), 0
        while queue:
            y, x = queue.popleft()
            size += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    queue.append((ny, nx))
        if size > best_size:
            best_label, best_size = current, size
    return labels == best_label if best_size else np.zeros_like(mask)


__all__ = ["Classification", "classify", "colour_share", "nearest_colour_names", "largest_component", "as_array",
           "border_colour", "foreground_mask", "shape_centroid", "mask_centroid"]
