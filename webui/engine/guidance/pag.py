"""Perturbed-attention guidance (Ahn et al. 2024), as Forge's integrated script applies it.

The positive rows run once more with chosen self-attention layers replaced by
identity attention (each token keeps its own value); the guided prediction is
pushed away from that degraded one: ``guided += scale * (positive - perturbed)``.
"""
from __future__ import annotations

import contextlib


class IdentityAttention:
    """An attention processor that skips attention: the value projection straight to the output."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        residual = hidden_states
        out = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def self_attention_layers(unet, layers: str) -> list:
    """The self-attention (attn1) modules PAG perturbs: the first of the middle block (as Forge), or more."""
    def attn1_in(blocks):
        return [tb.attn1 for block in blocks for attn in getattr(block, "attentions", None) or []
                for tb in getattr(attn, "transformer_blocks", [])]
    middle = attn1_in([unet.mid_block])[:1] if unet.mid_block is not None else []
    chosen = {"middle": middle, "down": attn1_in(unet.down_blocks), "up": attn1_in(unet.up_blocks),
              "all": attn1_in(unet.down_blocks) + attn1_in([unet.mid_block]) + attn1_in(unet.up_blocks)}[layers]
    return chosen


@contextlib.contextmanager
def identity_attention(modules: list):
    """Swap the modules' processors for identity attention, restoring them afterwards."""
    saved = [m.processor for m in modules]
    try:
        for m in modules:
            m.set_processor(IdentityAttention())
        yield
    finally:
        for m, processor in zip(modules, saved):
            m.set_processor(processor)


class PerturbedAttentionRun:
    """PAG for one sampling run; its scale shrinks by ``attenuation`` % per model call, as Forge's."""

    def __init__(self, values: dict, unet):
        self.v = values
        self.layers = self_attention_layers(unet, values["layers"])
        self.scale = values["scale"]

    def active(self, frac: float) -> bool:
        return bool(self.layers) and self.v["scale"] > 0 and self.v["start"] <= frac <= self.v["end"]

    def perturbed(self, positive_again):
        with identity_attention(self.layers):
            return positive_again()

    def scale_now(self) -> float:
        scale = self.scale
        self.scale = max(0.0, self.scale - self.v["scale"] * self.v["attenuation"] / 100.0)
        return scale
