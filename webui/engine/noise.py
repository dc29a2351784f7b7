"""Noise for a batch of images, made the way A1111 makes it.

Each image has its own random stream seeded with its own seed: ``first()`` is
the initial noise, ``next()`` continues the same streams (ancestral and other
stochastic samplers draw from it). A batch of two therefore gives the same
images as two single runs with those seeds.

This module is the one contract between the sampler code and the noise code:
samplers only call ``first()`` and ``next()``.
"""
from __future__ import annotations

import torch


class ImageRNG:
    """Per-image random streams for one batch (A1111's ``ImageRNG``)."""

    def __init__(self, shape: tuple[int, ...], seeds: list[int], device="cpu"):
        self.shape = tuple(shape)
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self._generators = [torch.Generator("cpu").manual_seed(s & 0xFFFFFFFFFFFFFFFF) for s in self.seeds]

    def first(self) -> torch.Tensor:
        """Initial noise [B, *shape] in float32 on the target device."""
        return self._draw()

    def next(self) -> torch.Tensor:
        """The next draw of every image's stream, [B, *shape]."""
        return self._draw()

    def _draw(self) -> torch.Tensor:
        parts = [torch.randn(self.shape, generator=g, dtype=torch.float32) for g in self._generators]
        return torch.stack(parts).to(self.device)
