"""Which device and dtypes to compute in: a pure function of ``--device``, ``--precision`` and the machine.

``Capabilities`` is plain data about what torch can do here (``probe_capabilities``
fills it in); ``choose_device`` turns flags plus capabilities into a
``DeviceChoice`` or an ``UnsupportedDevice`` error whose message says what to do,
so a bad combination stops the app at start-up rather than failing in a job.
"""
from __future__ import annotations

from dataclasses import dataclass, field

DTYPE_NAMES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


class UnsupportedDevice(ValueError):
    """The asked-for device or precision cannot work on this machine."""


@dataclass(frozen=True)
class Capabilities:
    """What the installed torch can use on this machine."""

    torch_version: str = ""
    cuda: bool = False  # a CUDA (or ROCm) device is usable
    cuda_built: bool = False  # this torch was built with CUDA/ROCm at all
    cuda_bf16: bool = False
    cuda_name: str = ""
    mps: bool = False
    mps_bf16: bool = False
    cpu_precision: str = "fp32"  # what --precision auto uses on the CPU (measured: webui.cpu_speed)
    cpu_precision_reason: str = ""


@dataclass(frozen=True)
class DeviceChoice:
    """Where and in which precision the models run. dtypes are "fp16", "bf16" or "fp32"."""

    device: str
    dtype: str
    vae_dtype: str
    channels_last: bool = False  # convolutions in channels_last memory format (bf16 on the CPU)
    why: str = field(default="", compare=False)  # why this dtype, when it was measured

    def torch_dtype(self):
        import torch

        return getattr(torch, DTYPE_NAMES[self.dtype])

    def torch_vae_dtype(self):
        import torch

        return getattr(torch, DTYPE_NAMES[self.vae_dtype])

    def describe(self) -> str:
        vae = f", VAE in {self.vae_dtype}" if self.vae_dtype != self.dtype else ""
        layout = ", channels_last" if self.channels_last else ""
        why = f" ({self.why})" if self.why else ""
        return f"{self.device} in {self.dtype}{vae}{layout}{why}"


def _device(requested: str, caps: Capabilities) -> str:
    if requested == "auto":
        return "cuda" if caps.cuda else "mps" if caps.mps else "cpu"
    if requested == "cuda" and not caps.cuda:
        if caps.cuda_built:
            raise UnsupportedDevice(f"--device cuda: torch {caps.torch_version} finds no usable GPU "
                                    "(is the NVIDIA/AMD driver installed and the GPU visible?)")
        raise UnsupportedDevice(f"--device cuda: torch {caps.torch_version} was installed without GPU support; "
                                "`python launch.py --reinstall-torch` installs the build for this machine's GPU")
    if requested == "mps" and not caps.mps:
        raise UnsupportedDevice("--device mps: MPS needs a Mac with Apple silicon (macOS 12.3 or newer) "
                                f"and torch's macOS build; torch {caps.torch_version} here has no MPS")
    if requested not in ("cuda", "mps", "cpu"):
        raise UnsupportedDevice(f"--device {requested}: choose auto, cuda, mps or cpu")
    return requested


def _dtype(device: str, requested: str, caps: Capabilities) -> str:
    if requested == "auto":
        return caps.cpu_precision if device == "cpu" else "fp16"
    if requested not in DTYPE_NAMES:
        raise UnsupportedDevice(f"--precision {requested}: choose auto, fp16, bf16 or fp32")
    if device == "cpu" and requested == "fp16":
        raise UnsupportedDevice("--precision fp16 on the CPU: torch's CPU kernels are slow and lossy in fp16; "
                                "use fp32, auto (which measures what is fastest here) or bf16 (fast only on CPUs "
                                "with AVX512-BF16 or AMX)")
    if device == "cuda" and requested == "bf16" and not caps.cuda_bf16:
        raise UnsupportedDevice(f"--precision bf16: {caps.cuda_name or 'this GPU'} has no bfloat16 support "
                                "(NVIDIA Ampere/RTX 30 or newer is needed); use fp16")
    if device == "mps" and requested == "bf16" and not caps.mps_bf16:
        raise UnsupportedDevice(f"--precision bf16 on MPS: torch {caps.torch_version} on this macOS cannot "
                                "compute in bfloat16 on the GPU (macOS 14 or newer is needed); use fp16")
    return requested


def choose_device(device: str, precision: str, caps: Capabilities, no_half_vae: bool = False) -> DeviceChoice:
    """The device and dtypes for ``--device``/``--precision`` (both may be "auto") on a machine with ``caps``.

    fp16 on GPUs and fp32 on the CPU by default. The VAE runs in fp32 when
    ``no_half_vae`` (A1111's ``--no-half-vae``) and on MPS with an fp16 model:
    the SD VAE overflows in fp16 there (A1111's macOS default is ``--no-half-vae``
    for the same reason). Raises UnsupportedDevice with a message that says what
    to use instead.
    """
    chosen = _device(device, caps)
    dtype = _dtype(chosen, precision, caps)
    vae_dtype = "fp32" if no_half_vae or (chosen == "mps" and dtype == "fp16") else dtype
    why = caps.cpu_precision_reason if chosen == "cpu" and precision == "auto" else ""
    # bf16 convolutions on the CPU are much faster channels_last (bench/RESULTS.md: 1.33x fp32's time, not 2.11x)
    return DeviceChoice(chosen, dtype, vae_dtype, channels_last=chosen == "cpu" and dtype == "bf16", why=why)


def resolved_device(device: str, caps: Capabilities) -> str:
    """The device ``--device`` means on a machine with ``caps`` (raises UnsupportedDevice like choose_device)."""
    return _device(device, caps)


def probe_capabilities() -> Capabilities:
    """Ask the installed torch what it can use here."""
    import torch

    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend and mps_backend.is_available())
    mps_bf16 = False
    if mps:
        try:
            mps_bf16 = bool((torch.ones(2, dtype=torch.bfloat16, device="mps") * 2).sum().item() == 4)
        except (RuntimeError, TypeError):
            mps_bf16 = False
    return Capabilities(
        torch_version=torch.__version__, cuda=cuda, cuda_built=torch.backends.cuda.is_built(),
        cuda_bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        cuda_name=torch.cuda.get_device_name(0) if cuda else "", mps=mps, mps_bf16=mps_bf16)


def free_memory_bytes(device) -> int:
    """Memory free for tensors on ``device``: the GPU's free memory on CUDA, available RAM otherwise."""
    import torch

    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    import psutil

    return int(psutil.virtual_memory().available)


def empty_cache(device: str) -> None:
    """Hand cached allocator memory back to the GPU driver (nothing to do on the CPU)."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        torch.mps.empty_cache()
