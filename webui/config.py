"""Settings: every path, device choice, default and limit the app uses.

Built once by ``app.py`` (or by a test) and passed to whoever needs it; nothing
here is module-level mutable state.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
PRECISION_CHOICES = ("auto", "fp16", "bf16", "fp32")


@dataclass(frozen=True)
class Settings:
    """Immutable configuration of one running app."""

    models_dir: Path = PROJECT_ROOT / "models"
    outdir: Path = PROJECT_ROOT / "outputs"
    wildcards_dir: Path = PROJECT_ROOT / "wildcards"
    styles_file: Path = PROJECT_ROOT / "styles.csv"
    # Extra folders scanned besides models/<Kind>/ (A1111's --ckpt-dir, --lora-dir).
    extra_ckpt_dirs: tuple[Path, ...] = ()
    extra_lora_dirs: tuple[Path, ...] = ()
    device: str = "auto"
    precision: str = "auto"
    no_half_vae: bool = False  # A1111's --no-half-vae: the VAE in fp32 whatever the precision
    torch_threads: int = 0  # 0 = torch's default
    host: str = "127.0.0.1"
    port: int = 7860
    checkpoints_limit: int = 1  # A1111's sd_checkpoints_limit: checkpoints kept in RAM
    queue_db: Path | None = None  # default: <outdir>/queue.sqlite3
    max_queue_length: int = 100
    live_preview_every: int = 5  # steps between previews; 0 disables them
    upscaler_tile_size: int = 192  # pixels; 0 = no tiling
    upscaler_tile_overlap: int = 48  # real x4plus weights show seams below ~48 px of context
    max_image_pixels: int = 4096 * 4096
    save_images: bool = True
    allow_api_outdir: bool = False  # let the API change the outdir_* options (always under outdir)
    queue_url: str | None = None  # redis://host:port/db: the queue lives in Redis, shared by workers
    local_worker: bool = True  # with a Redis queue: also run jobs in the server process
    compile_backend: str = "inductor"  # torch.compile's backend when the option torch_compile is on
    max_queue_per_client: int = 0  # queued jobs one owner may have (0 = no limit beyond max_queue_length)
    extra: dict = field(default_factory=dict)

    # ---- folders in A1111's names -------------------------------------------------
    def model_folder(self, kind: str) -> Path:
        """Folder of one model kind, e.g. ``model_folder("Lora")``."""
        return self.models_dir / kind

    @property
    def ckpt_dirs(self) -> tuple[Path, ...]:
        return (self.model_folder("Stable-diffusion"), *self.extra_ckpt_dirs)

    @property
    def lora_dirs(self) -> tuple[Path, ...]:
        return (self.model_folder("Lora"), *self.extra_lora_dirs)

    @property
    def queue_db_path(self) -> Path:
        return self.queue_db or (self.outdir / "queue.sqlite3")

    @property
    def secret_key_path(self) -> Path:
        """The key that signs login and client cookies (created on first start)."""
        return self.outdir / "secret.key"

    @property
    def gradio_temp_dir(self) -> Path:
        """gradio's upload and cache folder: the only files the UI serves or accepts by path."""
        return self.outdir / "tmp" / "gradio"

    @property
    def torch_compile_cache(self) -> Path:
        """Where torch.compile (inductor) keeps compiled kernels between runs."""
        return self.outdir / "cache" / "torchinductor"

    @property
    def cpu_precision_cache(self) -> Path:
        """Where the measured fastest CPU precision is kept (webui.cpu_speed)."""
        return self.outdir / "cache" / "cpu_precision.json"

    def with_changes(self, **changes) -> "Settings":
        """A copy with some fields replaced."""
        return replace(self, **changes)

    # ---- device policy ----------------------------------------------------------
    def device_choice(self):
        """Device and dtypes for this machine (``webui.devices.choose_device``); raises UnsupportedDevice."""
        from dataclasses import replace as replace_fields

        from webui.devices import choose_device, probe_capabilities, resolved_device

        caps = probe_capabilities()
        if self.precision == "auto" and resolved_device(self.device, caps) == "cpu":
            from webui.cpu_speed import fastest_cpu_precision

            measured = fastest_cpu_precision(self.cpu_precision_cache)
            caps = replace_fields(caps, cpu_precision=measured.dtype, cpu_precision_reason=measured.reason)
        return choose_device(self.device, self.precision, caps, no_half_vae=self.no_half_vae)

    def torch_device(self) -> str:
        """The device to compute on: cuda if present, then mps, then cpu."""
        return self.device_choice().device

    def torch_dtype(self):
        """fp16 on GPUs; on the CPU fp32, or bf16 where it was measured faster or is asked for."""
        return self.device_choice().torch_dtype()


def offline_environment() -> None:
    """Make sure no library tries to reach a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DIFFUSERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
