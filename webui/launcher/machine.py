"""What the launcher needs to know about this machine: OS, CPU architecture, GPU vendor, driver.

``Machine`` is plain data so the decisions made from it are pure functions;
``probe_machine`` is the only part that looks at the real system.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

OS_NAMES = ("linux", "windows", "macos")
GPU_VENDORS = ("nvidia", "amd", "apple", "none")


@dataclass(frozen=True)
class Machine:
    """A machine as far as choosing a torch build goes."""

    os: str  # "linux", "windows" or "macos"
    arch: str  # "x86_64" or "arm64" (aarch64 is spelled arm64)
    gpu: str = "none"  # "nvidia", "amd", "apple" or "none"
    cuda_version: tuple[int, int] | None = None  # the newest CUDA the NVIDIA driver supports
    driver_version: str = ""  # NVIDIA or AMD driver version, for messages


def normalise_arch(machine: str) -> str:
    """``platform.machine()`` spellings to "x86_64" / "arm64" (others pass through lower-cased)."""
    name = machine.lower()
    if name in ("amd64", "x86_64", "x64"):
        return "x86_64"
    if name in ("arm64", "aarch64", "armv8", "arm64e"):
        return "arm64"
    return name


def os_name(sys_platform: str) -> str:
    """``sys.platform`` to "linux" / "windows" / "macos"."""
    if sys_platform.startswith("win"):
        return "windows"
    if sys_platform == "darwin":
        return "macos"
    return "linux"


def parse_nvidia_smi(text: str) -> tuple[tuple[int, int] | None, str]:
    """(newest CUDA version the driver supports, driver version) from plain ``nvidia-smi`` output."""
    cuda = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", text)
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    return ((int(cuda.group(1)), int(cuda.group(2))) if cuda else None), (driver.group(1) if driver else "")


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _nvidia_smi() -> str | None:
    found = shutil.which("nvidia-smi")
    if found:
        return found
    if sys.platform.startswith("win"):
        # Older Windows drivers put it here without adding it to PATH.
        legacy = Path(os.environ.get("ProgramFiles", r"C:\Program Files")) / "NVIDIA Corporation" / "NVSMI" / "nvidia-smi.exe"
        if legacy.is_file():
            return str(legacy)
    return None


def _has_rocm() -> bool:
    return Path("/opt/rocm").is_dir() or shutil.which("rocminfo") is not None


def probe_machine() -> Machine:
    """Describe the machine this runs on (asks ``nvidia-smi`` and looks for ROCm; never imports torch)."""
    system = os_name(sys.platform)
    arch = normalise_arch(platform.machine())
    if system == "macos":
        return Machine(system, arch, gpu="apple" if arch == "arm64" else "none")
    smi = _nvidia_smi()
    if smi:
        cuda, driver = parse_nvidia_smi(_run([smi]))
        if cuda or driver:
            return Machine(system, arch, gpu="nvidia", cuda_version=cuda, driver_version=driver)
    if system == "linux" and _has_rocm():
        return Machine(system, arch, gpu="amd")
    return Machine(system, arch)
