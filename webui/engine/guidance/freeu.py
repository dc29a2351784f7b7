"""FreeU through diffusers' own UNet switch, on only for the steps the add-on covers."""
from __future__ import annotations


class FreeURun:
    """FreeU for one sampling run: ``gate`` before each UNet call, ``off`` when the run ends."""

    def __init__(self, values: dict, unet):
        self.v, self.unet, self.on = values, unet, False

    def gate(self, frac: float) -> None:
        wanted = self.v["start"] <= frac <= self.v["end"]
        if wanted and not self.on:
            v = self.v
            self.unet.enable_freeu(s1=v["s1"], s2=v["s2"], b1=v["b1"], b2=v["b2"])
        elif not wanted and self.on:
            self.unet.disable_freeu()
        self.on = wanted

    def off(self) -> None:
        self.unet.disable_freeu()
        self.on = False
