"""Which torch build to install on a machine: a pure function of ``Machine``, flags and environment.

torch and torchvision are pinned everywhere; only the wheel index changes:
CUDA wheels for NVIDIA (the newest build the driver can run), ROCm wheels for
AMD on Linux, PyPI's own wheels on macOS (they carry MPS) and when there is no
GPU. ``TORCH_INDEX_URL`` and ``TORCH_COMMAND`` (A1111's names) override the choice.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Mapping

from webui.launcher.machine import Machine

TORCH_VERSION = "2.14.1"
TORCHVISION_VERSION = "0.29.1"
TORCH_PACKAGES = (f"torch=={TORCH_VERSION}", f"torchvision=={TORCHVISION_VERSION}")
PYTORCH_INDEX = "https://download.pytorch.org/whl"
# CUDA builds published for the pinned torch, newest first: (newest CUDA the driver must support, tag).
CUDA_BUILDS = (((13, 0), "cu130"), ((12, 8), "cu128"), ((12, 6), "cu126"))
ROCM_BUILD = "rocm6.4"


class TorchChoiceError(ValueError):
    """No torch build fits this machine; the message says what to do instead."""


@dataclass(frozen=True)
class TorchInstall:
    """How to install torch: ``python -m <pip_args>``, and why."""

    pip_args: tuple[str, ...]
    build: str  # "cu128", "rocm6.4", "default" (PyPI's wheels), "custom"
    reason: str

    @property
    def index_url(self) -> str | None:
        if "--index-url" in self.pip_args:
            return self.pip_args[self.pip_args.index("--index-url") + 1]
        return None

    def describe(self) -> str:
        if self.build == "custom" and self.index_url is None:
            return f"torch by `{' '.join(self.pip_args)}` ({self.reason})"
        return f"torch {TORCH_VERSION} from {self.index_url or 'PyPI'} ({self.reason})"


def _pip_install(index_url: str | None = None) -> tuple[str, ...]:
    args = ("pip", "install", *TORCH_PACKAGES)
    return args + ("--index-url", index_url) if index_url else args


def cuda_build(cuda_version: tuple[int, int] | None) -> str:
    """The newest CUDA build the driver supports (the oldest build when the driver did not say)."""
    if cuda_version is None:
        return CUDA_BUILDS[-1][1]
    for needed, tag in CUDA_BUILDS:
        if cuda_version >= needed:
            return tag
    oldest = ".".join(map(str, CUDA_BUILDS[-1][0]))
    have = ".".join(map(str, cuda_version))
    raise TorchChoiceError(
        f"the NVIDIA driver supports CUDA {have}, but torch {TORCH_VERSION} needs CUDA {oldest} or newer: "
        "update the NVIDIA driver, or install your own torch (--skip-torch-install, or TORCH_COMMAND)")


def choose_torch(machine: Machine, *, rocm: bool = False, env: Mapping[str, str] | None = None) -> TorchInstall:
    """The torch install for ``machine``; raises TorchChoiceError when no pinned build exists for it."""
    env = env or {}
    if env.get("TORCH_COMMAND", "").strip():
        return TorchInstall(tuple(shlex.split(env["TORCH_COMMAND"])), "custom", "TORCH_COMMAND is set")
    if env.get("TORCH_INDEX_URL", "").strip():
        return TorchInstall(_pip_install(env["TORCH_INDEX_URL"].strip()), "custom", "TORCH_INDEX_URL is set")
    if machine.os == "macos":
        if machine.arch != "arm64":
            raise TorchChoiceError(
                f"PyTorch publishes no torch {TORCH_VERSION} for Intel Macs (the last was 2.2); "
                "install a torch you have with TORCH_COMMAND, or use --skip-torch-install")
        if rocm:
            raise TorchChoiceError("--rocm: ROCm builds of torch exist for Linux only")
        return TorchInstall(_pip_install(), "default", "Apple silicon: PyPI's wheels run on the GPU through MPS")
    if rocm or machine.gpu == "amd":
        if machine.os != "linux":
            raise TorchChoiceError("--rocm: ROCm builds of torch exist for Linux only; on Windows "
                                   "install your own torch (TORCH_COMMAND) or run on the CPU")
        why = "--rocm" if rocm else "ROCm found (/opt/rocm or rocminfo)"
        return TorchInstall(_pip_install(f"{PYTORCH_INDEX}/{ROCM_BUILD}"), ROCM_BUILD, f"AMD GPU: {why}")
    if machine.gpu == "nvidia":
        tag = cuda_build(machine.cuda_version)
        said = ".".join(map(str, machine.cuda_version)) if machine.cuda_version else "unknown"
        return TorchInstall(_pip_install(f"{PYTORCH_INDEX}/{tag}"), tag,
                            f"NVIDIA GPU, driver {machine.driver_version or '?'} supports CUDA {said}")
    if machine.os == "windows":
        return TorchInstall(_pip_install(), "default", "no GPU found; PyPI's Windows wheels are CPU-only")
    return TorchInstall(_pip_install(), "default",
                        f"no GPU found; TORCH_INDEX_URL={PYTORCH_INDEX}/cpu gives the smaller CPU-only build")
