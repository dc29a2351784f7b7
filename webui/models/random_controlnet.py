"""Random-weight ControlNets and T2I-Adapters in their single-file layouts (for tests and benchmarks)."""
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
    return _save(Path(path), state)


def _save(path: Path, state: dict) -> Path:
    """``.safetensors`` with safetensors, anything else with torch.save (plain tensors only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, str(path))
    return path


def random_t2i_adapter(channels, *, adapter_type: str = "full_adapter", in_channels: int = 3,
                       num_res_blocks: int = 2, seed: int = 0, scale: float = 1.0):
    """A diffusers T2IAdapter with random weights (scaled by ``scale``), in eval mode."""
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    factor = 16 if adapter_type == "full_adapter_xl" else 8
    model = T2IAdapter(in_channels=in_channels, channels=list(channels), num_res_blocks=num_res_blocks,
                       downscale_factor=factor, adapter_type=adapter_type)
    with torch.no_grad():
        for param in model.parameters():
            param.mul_(scale)
    return model.eval()


def write_t2i_adapter(path: str | Path, model, layout: str = "diffusers") -> Path:
    """Save a T2IAdapter as one file: "diffusers" (adapter.* keys) or "original" (TencentARC's keys)."""
    from webui.models.t2i_adapter import diffusers_to_original

    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if layout == "original":
        state = diffusers_to_original(state, dict(model.config))
    elif layout != "diffusers":
        raise ValueError(f"unknown layout {layout!r}")
    return _save(Path(path), state)
