"""Random-weight ControlNets in the two single-file layouts, built from a UNet (for tests and benchmarks)."""
from __future__ import annotations

from pathlib import Path

import torch

from webui.models.ldm_export import controlnet_to_ldm


def random_controlnet(unet, *, embedding=(16, 32, 96), seed: int = 0, scale: float = 1.0):
    """A ControlNetModel copied from ``unet`` with random zero convolutions (so it acts), in eval mode."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=tuple(embedding))
    with torch.no_grad():  # from_unet leaves the zero convolutions at zero: give them weights so the net acts
        for name, param in model.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                param.copy_(torch.randn_like(param) * 0.1 * scale)
    return model.eval()


def write_controlnet(path: str | Path, model, layout: str = "diffusers", dtype: torch.dtype | None = None) -> Path:
    """Save ``model`` as one file: ``layout`` "diffusers" (its own keys) or "original" (control_model.*).

    ``.safetensors`` files are written with safetensors, anything else with torch.save (plain tensors only).
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if layout == "original":
        state = controlnet_to_ldm(state, dict(model.config))
    elif layout != "diffusers":
        raise ValueError(f"unknown layout {layout!r}")
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, str(path))
    return path
