"""Clip skip capped at what the chosen checkpoint's text encoder has (12 layers for SD1's CLIP ViT-L).

The layer count comes from the checkpoint's tensor names in its safetensors
header (no weights read); a file whose header cannot tell keeps A1111's 12.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

DEFAULT_LAYERS = 12
# The first text encoder's layers: SD1 (ldm), SDXL (ldm), SD2 (OpenCLIP) and diffusers' own names.
LAYER_KEY = re.compile(
    r"^(?:cond_stage_model\.transformer\.|conditioner\.embedders\.0\.transformer\.|text_encoder\.)?"
    r"text_model\.encoder\.layers\.(\d+)\.|^cond_stage_model\.model\.transformer\.resblocks\.(\d+)\.")


def text_encoder_layers(path: Path) -> int:
    """Layers of the checkpoint's first text encoder (DEFAULT_LAYERS when the file does not say)."""
    path = Path(path)
    try:
        if path.is_dir():
            config = json.loads((path / "text_encoder" / "config.json").read_text(encoding="utf-8"))
            return int(config["num_hidden_layers"])
        if path.suffix.lower() != ".safetensors":
            return DEFAULT_LAYERS
        from webui.detection.safetensors_header import read_safetensors_header

        names = read_safetensors_header(path).shapes
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_LAYERS
    found = [int(m.group(1) or m.group(2)) for name in names if (m := LAYER_KEY.match(name))]
    return max(found) + 1 if found else DEFAULT_LAYERS


def clip_skip_limit(services, title: str | None) -> int:
    """The largest Clip skip the checkpoint ``title`` allows."""
    try:
        info = services.catalog.find_checkpoint(title) if title else None
    except Exception:
        info = None
    return text_encoder_layers(info.path) if info is not None else DEFAULT_LAYERS


def wire_clip_skip_limit(services, checkpoint, tabs) -> None:
    """Choosing a checkpoint sets every tab's Clip skip maximum (and lowers a value above it)."""
    import gradio as gr

    sliders = [tab.fields["clip_skip"] for tab in tabs if "clip_skip" in tab.fields]

    def limit(title, *values):
        top = clip_skip_limit(services, title)
        updates = [gr.Slider(maximum=top, value=min(int(v or 1), top)) for v in values]
        return updates[0] if len(updates) == 1 else updates

    checkpoint.input(limit, inputs=[checkpoint, *sliders], outputs=sliders, show_progress="hidden")
