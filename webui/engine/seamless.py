"""Seamless tiling (A1111's ``tiling``): circular padding in the model's convolutions for one job.

With every convolution of the UNet and the VAE padding circularly, the image
wraps around at its edges, so copies of it laid side by side show no seam.
The padding modes are restored when the job ends, whatever happens.
"""
from __future__ import annotations

import torch


class CircularPadding:
    """Switches convolutions to circular padding and remembers how to restore them.

    ``apply`` may be called again for modules that change during a job (a VAE
    file chosen for the job, a hires checkpoint); each convolution's own mode is
    remembered the first time it is seen, and ``restore`` puts every one back.
    """

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)
        self._original: dict[torch.nn.Conv2d, str] = {}

    def apply(self, *modules) -> None:
        """Make every Conv2d inside ``modules`` pad circularly (nothing when tiling is off)."""
        if not self.enabled:
            return
        for module in modules:
            if module is None:
                continue
            for layer in module.modules():
                if isinstance(layer, torch.nn.Conv2d):
                    self._original.setdefault(layer, layer.padding_mode)
                    layer.padding_mode = "circular"

    def restore(self) -> None:
        """Give every convolution touched back its own padding mode."""
        for layer, mode in self._original.items():
            layer.padding_mode = mode
        self._original.clear()

    def __enter__(self) -> "CircularPadding":
        return self

    def __exit__(self, *exc) -> None:
        self.restore()
