"""Conversions between PIL images and model tensors, and the dtype policy for spandrel models."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def pil_to_tensor(image: Image.Image, device: str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RGB PIL image -> 1x3xHxW tensor in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
    return tensor.to(device=device, dtype=dtype)


def tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """1x3xHxW tensor in [0, 1] -> HxWx3 uint8 array (rounded, clamped)."""
    array = tensor.detach().float().clamp(0, 1).squeeze(0).permute(1, 2, 0).cpu().numpy()
    return (array * 255.0 + 0.5).astype(np.uint8)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """1x3xHxW tensor in [0, 1] -> RGB PIL image."""
    return Image.fromarray(tensor_to_array(tensor), "RGB")


def model_dtype(descriptor, wanted: torch.dtype, device: str) -> torch.dtype:
    """The dtype to run a spandrel model in: the wanted half type where the model supports it, else fp32.

    fp16 on the CPU is slow or unsupported for many ops, so there it becomes fp32.
    """
    if wanted == torch.float16 and device == "cpu":
        return torch.float32
    if wanted == torch.float16 and descriptor.supports_half:
        return torch.float16
    if wanted == torch.bfloat16 and descriptor.supports_bfloat16:
        return torch.bfloat16
    if wanted == torch.float16 and descriptor.supports_bfloat16 and device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
