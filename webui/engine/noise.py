"""Noise for a batch of images, made the way A1111 makes it.

Each image has its own random stream seeded with its own seed: ``first()`` is
the initial noise, ``next()`` continues the same streams (ancestral and other
stochastic samplers draw from it). A batch of two therefore gives the same
images as two single runs with those seeds.

This module is the one contract between the sampler code and the noise code:
samplers only call ``first()`` and ``next()``. The engine builds the ImageRNG
of a request in one place, :func:`make_image_rng`.

Noise sources (A1111's ``randn_source`` option):

* ``"CPU"``: torch's CPU generator, the same on every machine.
* ``"NV"``: CUDA's generator reproduced in numpy (Philox4x32-10 counters and
  curand's Box-Muller transform), so an NVIDIA card's seeds work anywhere.
* ``"GPU"`` (A1111's default): torch.randn on a CUDA device; on any other
  device its exact NV equivalent, so a seed gives the same image everywhere.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from webui.vocabulary import RANDN_SOURCES

LATENT_FACTOR = 8  # A1111 places resized seeds at pixel size // 8

# A1111's samplers whose images depend on the continuing noise streams (its "uses_ensd" flag).
ENSD_SAMPLERS = frozenset({"Euler a", "DPM2 a", "DPM++ 2S a", "DPM fast", "DPM adaptive", "DDPM"})

_MASK32 = 0xFFFFFFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # round multipliers
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # key increments (Weyl sequence)
# curand's uniform scale factors, as float32 constants (2**-32 and 2**-32 * 2*pi).
_TWO_POW32_INV = float(np.float32(2.3283064e-10))
_TWO_POW32_INV_2PI = float(np.float32(2.3283064e-10 * 6.2831855))


# ---------------------------------------------------------------- Philox4x32-10 ("NV")
def philox4x32(counter: np.ndarray, key: np.ndarray, rounds: int = 10) -> np.ndarray:
    """Philox4x32 (Salmon et al. 2011) over columns: counter [4, N], key [2, N] uint32 -> [4, N] uint32."""
    c = [np.asarray(counter[i], dtype=np.uint64) for i in range(4)]
    k0 = np.asarray(key[0], dtype=np.uint64)
    k1 = np.asarray(key[1], dtype=np.uint64)
    for round_index in range(rounds):
        if round_index:
            k0 = (k0 + _PHILOX_W[0]) & _MASK32
            k1 = (k1 + _PHILOX_W[1]) & _MASK32
        p0 = c[0] * _PHILOX_M[0]  # 32x32 -> 64-bit products, exact in uint64
        p1 = c[2] * _PHILOX_M[1]
        c = [(p1 >> 32) ^ c[1] ^ k0, p1 & _MASK32, (p0 >> 32) ^ c[3] ^ k1, p0 & _MASK32]
    return np.stack(c).astype(np.uint32)


def _box_muller_first(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The first normal of curand's Box-Muller pair for uniform words x, y (sin branch)."""
    u = x.astype(np.float64) * _TWO_POW32_INV + _TWO_POW32_INV / 2
    v = y.astype(np.float64) * _TWO_POW32_INV_2PI + _TWO_POW32_INV_2PI / 2
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32)


class PhiloxGenerator:
    """What ``torch.randn(..., device="cuda")`` gives after seeding, computed on the CPU.

    Element ``i`` of a draw is the first Box-Muller normal of Philox block
    ``(offset, 0, i, 0)`` under the 64-bit seed as key; every draw advances the
    offset by one, as CUDA's generator does for tensors of a latent's size.
    """

    def __init__(self, seed: int):
        seed = int(seed) & 0xFFFFFFFFFFFFFFFF
        self.key = (seed & _MASK32, seed >> 32)
        self.offset = 0

    def randn(self, shape) -> np.ndarray:
        count = math.prod(shape)
        counter = np.zeros((4, count), dtype=np.uint32)
        counter[0] = self.offset
        counter[2] = np.arange(count, dtype=np.uint32)
        key = np.array([[self.key[0]], [self.key[1]]], dtype=np.uint32).repeat(count, axis=1)
        self.offset += 1
        words = philox4x32(counter, key)
        return _box_muller_first(words[0], words[1]).reshape(tuple(shape))


# ---------------------------------------------------------------- one image's stream
class _Stream:
    """One seed's normal draws from the chosen source, as float32 tensors on ``device``."""

    def __init__(self, seed: int, source: str, device: torch.device):
        self.device = device
        self._philox = None
        self._generator = None
        if source == "NV" or (source == "GPU" and device.type != "cuda"):
            self._philox = PhiloxGenerator(seed)
        else:
            place = device if source == "GPU" else torch.device("cpu")
            self._generator = torch.Generator(place).manual_seed(int(seed) & 0xFFFFFFFFFFFFFFFF)

    def randn(self, shape) -> torch.Tensor:
        if self._philox is not None:
            return torch.from_numpy(self._philox.randn(shape)).to(self.device)
        draw = torch.randn(tuple(shape), generator=self._generator, device=self._generator.device,
                           dtype=torch.float32)
        return draw.to(self.device)


def slerp(weight: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``low`` (weight 0) to ``high`` (weight 1), A1111's variation-seed blend.

    Like A1111, vectors run along dim 1 of a [C, H, W] noise, and nearly parallel
    noises are blended linearly.
    """
    low_unit = low / torch.norm(low, dim=1, keepdim=True)
    high_unit = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_unit * high_unit).sum(1)
    if dot.mean() > 0.9995:
        return low * weight + high * (1 - weight)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    return (torch.sin((1.0 - weight) * omega) / sin_omega).unsqueeze(1) * low \
        + (torch.sin(weight * omega) / sin_omega).unsqueeze(1) * high


def _place_centred(small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
    """``big`` with ``small`` pasted at its centre (cropped where ``small`` is larger): A1111's seed resize."""
    out = big.clone()
    dx = (big.shape[2] - small.shape[2]) // 2
    dy = (big.shape[1] - small.shape[1]) // 2
    w = small.shape[2] if dx >= 0 else small.shape[2] + 2 * dx
    h = small.shape[1] if dy >= 0 else small.shape[1] + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    sx, sy = max(-dx, 0), max(-dy, 0)
    out[:, ty:ty + h, tx:tx + w] = small[:, sy:sy + h, sx:sx + w]
    return out


# ---------------------------------------------------------------- the batch
class ImageRNG:
    """Per-image random streams for one batch (A1111's ``ImageRNG``).

    ``shape`` is one image's latent shape [C, h, w]. Keyword arguments follow
    A1111: ``subseeds``/``subseed_strength`` blend in a variation seed's noise,
    ``seed_resize_from_h/w`` (pixels, 0 = off) make the seed's noise at that size
    and place it centred, ``source`` is "GPU", "CPU" or "NV", and
    ``eta_noise_seed_delta`` restarts the continuing streams at ``seed + delta``
    after the initial noise. The constructor's default source is "CPU";
    :func:`make_image_rng` applies A1111's default "GPU".
    """

    def __init__(self, shape: tuple[int, ...], seeds: list[int], device="cpu", *, subseeds: list[int] | None = None,
                 subseed_strength: float = 0.0, seed_resize_from_h: int = 0, seed_resize_from_w: int = 0,
                 source: str = "CPU", eta_noise_seed_delta: int = 0):
        if source not in RANDN_SOURCES:
            raise ValueError(f"unknown noise source {source!r}; expected one of {', '.join(RANDN_SOURCES)}")
        self.shape = tuple(shape)
        self.seeds = [int(s) for s in seeds]
        self.device = torch.device(device)
        self.subseeds = None if subseeds is None else [int(s) for s in subseeds]
        self.subseed_strength = float(subseed_strength or 0.0)
        self.seed_resize_from_h = int(seed_resize_from_h or 0)
        self.seed_resize_from_w = int(seed_resize_from_w or 0)
        self.source = source
        self.eta_noise_seed_delta = int(eta_noise_seed_delta or 0)
        self._streams = [self._stream(s) for s in self.seeds]
        self._started = False

    def _stream(self, seed: int) -> _Stream:
        return _Stream(seed, self.source, self.device)

    def first(self) -> torch.Tensor:
        """Initial noise [B, *shape] in float32 on the target device."""
        resized = self.seed_resize_from_h > 0 and self.seed_resize_from_w > 0
        seed_shape = (self.shape[0], self.seed_resize_from_h // LATENT_FACTOR,
                      self.seed_resize_from_w // LATENT_FACTOR) if resized else self.shape
        resized = resized and seed_shape != self.shape
        images = []
        for i, (seed, stream) in enumerate(zip(self.seeds, self._streams)):
            # A fresh stream of the seed at the seed size; the image's own stream when sizes agree.
            noise = self._stream(seed).randn(seed_shape) if resized else stream.randn(self.shape)
            if self.subseeds is not None and self.subseed_strength != 0:
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0
                noise = slerp(self.subseed_strength, noise, self._stream(subseed).randn(seed_shape))
            if resized:
                noise = _place_centred(noise, stream.randn(self.shape))
            images.append(noise)
        if self.eta_noise_seed_delta:
            self._streams = [self._stream(s + self.eta_noise_seed_delta) for s in self.seeds]
        self._started = True
        return torch.stack(images)

    def next(self) -> torch.Tensor:
        """The next draw of every image's stream, [B, *shape] (the initial noise when nothing was drawn yet)."""
        if not self._started:
            return self.first()
        return torch.stack([stream.randn(self.shape) for stream in self._streams])


# ---------------------------------------------------------------- from a request
def variation_seeds(seed: int, subseed: int, subseed_strength: float, count: int) -> tuple[list[int], list[int]]:
    """Seeds and variation seeds of ``count`` images, as A1111 numbers them.

    Image i uses subseed + i; its seed is seed + i, except with a variation
    strength other than 0, where every image keeps the one seed.
    """
    step = 1 if not subseed_strength else 0
    return [seed + i * step for i in range(count)], [subseed + i for i in range(count)]


def make_image_rng(request, shape: tuple[int, ...], seeds: list[int], subseeds: list[int] | None, device
                   ) -> ImageRNG:
    """The ImageRNG of one batch of a GenerationRequest: its variation seed, seed resize, source and ENSD."""
    return ImageRNG(
        shape, seeds, device,
        subseeds=subseeds,
        subseed_strength=getattr(request, "subseed_strength", 0.0) or 0.0,
        seed_resize_from_h=max(getattr(request, "seed_resize_from_h", 0) or 0, 0),
        seed_resize_from_w=max(getattr(request, "seed_resize_from_w", 0) or 0, 0),
        source=getattr(request, "randn_source", None) or "GPU",
        eta_noise_seed_delta=getattr(request, "eta_noise_seed_delta", None) or 0,
    )


def sampler_uses_ensd(sampler_name: str, eta: float | None = None) -> bool:
    """Whether ENSD can change this sampler's images (A1111 then writes "ENSD" into the infotext)."""
    if eta == 0:
        return False
    return sampler_name in ENSD_SAMPLERS or (sampler_name == "DDIM" and bool(eta))
