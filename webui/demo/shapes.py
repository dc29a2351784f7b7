"""Procedural dataset of the demo model: one coloured shape on a plain background.

Every sample is fully determined by its seed, so the training tool, the tests
and anyone reproducing the shipped checkpoint see the same images.  Captions use
one template, ``"a red circle on a blue background"``, whose words are all single
tokens of the standard CLIP vocabulary ("an orange ..." where English wants it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Named colours (sRGB).  Chosen far apart so that a blurry generated image is
#: still closest to the colour that was asked for.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "purple": (130, 40, 170),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
IMAGE_SIZE = 64
#: Outline colour and width (pixels at 64x64) of the "outlined" style the demo LoRA learns.
OUTLINE_COLOUR = (15, 15, 15)
OUTLINE_WIDTH = 5
#: Half-size range of a shape in pixels at 64x64 (a circle's radius).
MIN_HALF, MAX_HALF = 9, 18
#: Pixels kept free between a shape and the image border (room for an outline too).
MARGIN = 7


@dataclass(frozen=True)
class Scene:
    """What one image shows: the labels a caption names, plus where the shape sits."""

    shape: str
    colour: str
    background: str
    cx: float
    cy: float
    half: float
    outlined: bool = False

    @property
    def caption(self) -> str:
        return caption_for(self.shape, self.colour, self.background)

    @property
    def labels(self) -> dict[str, str]:
        return {"shape": self.shape, "colour": self.colour, "background": self.background}


@dataclass(frozen=True)
class Sample:
    """One dataset item: ``image`` is uint8 HxWx3 RGB."""

    image: np.ndarray
    caption: str
    scene: Scene

    @property
    def labels(self) -> dict[str, str]:
        return self.scene.labels


def caption_for(shape: str, colour: str, background: str) -> str:
    """The caption template used in training, e.g. ``"a red circle on a blue background"``."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")
    for name in (colour, background):
        if name not in COLOURS:
            raise ValueError(f"unknown colour {name!r}; choose one of {', '.join(COLOURS)}")
    return f"{_article(colour)} {colour} {shape} on {_article(background)} {background} background"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def random_scene(rng: np.random.Generator, *, outlined: bool = False, size: int = IMAGE_SIZE) -> Scene:
    """Draw labels, position and size; the shape colour always differs from the background."""
    names = list(COLOURS)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colour_index = int(rng.integers(len(names)))
    background_index = int(rng.integers(len(names) - 1))
    if background_index >= colour_index:
        background_index += 1
    scale = size / IMAGE_SIZE
    half = float(rng.uniform(MIN_HALF, MAX_HALF)) * scale
    # the margin leaves room for an outline, so a seed places the shape identically in both styles
    reach = half + MARGIN * scale
    cx = float(rng.uniform(reach, size - reach))
    cy = float(rng.uniform(reach, size - reach))
    return Scene(shape, names[colour_index], names[background_index], cx, cy, half, outlined)


def shape_mask(shape: str, cx: float, cy: float, half: float, size: int = IMAGE_SIZE) -> np.ndarray:
    """Boolean HxW mask of a shape centred at (cx, cy) with half-size ``half``.

    Circle: radius ``half``.  Square: side ``2*half``, axis-aligned.  Triangle:
    pointing up, base ``2*half`` and height ``2*half`` (it fills half its box).
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":
        # apex at (cx, cy - half), base from (cx - half, cy + half) to (cx + half, cy + half)
        depth = (dy + half) / (2.0 * half)  # 0 at the apex, 1 at the base
        return (depth >= 0.0) & (depth <= 1.0) & (np.abs(dx) <= depth * half)
    raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")


def render(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """Draw ``scene`` as a uint8 HxWx3 RGB array (hard edges, no anti-aliasing)."""
    image = np.empty((size, size, 3), dtype=np.uint8)
    image[:] = COLOURS[scene.background]
    if scene.outlined:
        width = OUTLINE_WIDTH * size / IMAGE_SIZE
        outer = shape_mask(scene.shape, scene.cx, scene.cy, scene.half + width, size)
        if scene.shape == "triangle":
            # grow the triangle about its centroid so the outline has an even width
            outer = _grown_triangle(scene, width, size)
        image[outer] = OUTLINE_COLOUR
    image[shape_mask(scene.shape, scene.cx, scene.cy, scene.half, size)] = COLOURS[scene.colour]
    return image


def silhouette(scene: Scene, size: int = IMAGE_SIZE) -> np.ndarray:
    """The scene's shape in white on black, uint8 HxWx3: the demo ControlNet's control image.

    Colours and outline are left out: only the geometry (a segmentation mask) remains.
    """
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[shape_mask(scene.shape, scene.cx, scene.cy, scene.half, size)] = 255
    return image


def _grown_triangle(scene: Scene, width: float, size: int) -> np.ndarray:
    # An up-pointing triangle of base = height = 2h has its incentre h*(sqrt5-1)/2 above the
    # base; growing the inradius by ``width`` scales the triangle about that point.
    inradius = scene.half * (np.sqrt(5.0) - 1.0) / 2.0
    factor = (inradius + width) / inradius
    centre_y = scene.cy + scene.half - inradius
    half = scene.half * factor
    cy = centre_y - (centre_y - scene.cy) * factor
    return shape_mask("triangle", scene.cx, cy, half, size)


def sample(seed: int, *, outlined: bool = False, size: int = IMAGE_SIZE) -> Sample:
    """The dataset item for ``seed``: the same seed always gives the same image and caption."""
    rng = np.random.default_rng(seed)
    scene = random_scene(rng, outlined=outlined, size=size)
    return Sample(render(scene, size), scene.caption, scene)


def batch(seed: int, count: int, *, outlined: bool = False, size: int = IMAGE_SIZE) -> tuple[np.ndarray, list[Sample]]:
    """``count`` samples from one seeded stream: (uint8 array NxHxWx3, the samples)."""
    if count < 0:
        raise ValueError("count must be >= 0")
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(count):
        scene = random_scene(rng, outlined=outlined, size=size)
        samples.append(Sample(render(scene, size), scene.caption, scene))
    images = np.stack([s.image for s in samples]) if samples else np.zeros((0, size, size, 3), np.uint8)
    return images, samples


__all__ = [
    "COLOURS", "SHAPES", "IMAGE_SIZE", "OUTLINE_COLOUR", "OUTLINE_WIDTH", "Scene", "Sample",
    "caption_for", "random_scene", "shape_mask", "render", "silhouette", "sample", "batch",
]
