"""Runtime options in A1111's names (what ``GET/POST /sdapi/v1/options`` shows and changes).

Unlike Settings (fixed at start), these change while the app runs; one instance
is built by app.py and shared. Values are validated by type against the defaults.
"""
from __future__ import annotations

import copy
import json
import math
import threading
from pathlib import Path

from webui.fileio import atomic_write_text
from webui.saving import SAVING_OPTIONS, check_saving_option
from webui.vocabulary import OPTION_DEFAULTS as SAMPLER_OPTION_DEFAULTS
from webui.vocabulary import MEMORY_OFFLOAD_CHOICES, PREVIEW_TYPES
from webui.schemas import InvalidRequest

DEFAULT_OPTIONS: dict = {
    "sd_model_checkpoint": "",
    "sd_vae": "Automatic",
    "sd_checkpoints_limit": 1,
    "CLIP_stop_at_last_layers": 1,
    "samples_format": "png",
    "samples_save": True,
    "live_previews_enable": True,
    "show_progress_every_n_steps": 5,
    "show_progress_type": "Approx cheap",  # live preview method: Approx cheap | TAESD | Full (A1111's option)
    "notification_audio": False,  # beep (and notify, where the browser allows) when a UI job ends
    "face_restoration_model": "CodeFormer",
    "code_former_weight": 0.5,
    "upscaler_for_img2img": "Lanczos",
    "ESRGAN_tile": 192,
    "ESRGAN_tile_overlap": 16,
    "vae_tiling_min_pixels": 1024 * 1024,  # VAE decode/encode in tiles above this many pixels (0: never)
    "vae_tile_size": 512,  # VAE tile side in image pixels
    "memory_offload": "Automatic",  # where a job's weights live on a GPU: the planner's choice, or one forced
    "torch_compile": False,  # compile the UNet with torch.compile, in the background (webui/models/compiled.py)
    "eta_noise_seed_delta": 0,
    "randn_source": "GPU",  # GPU | CPU | NV: where initial and sampler noise come from (A1111's option)
    "sd_lora": "None",  # A1111's "Add network to prompt": <lora:NAME:multiplier> ends every prompt
    "extra_networks_default_multiplier": 1.0,  # the multiplier sd_lora's tag gets (A1111's)
    "initial_noise_multiplier": 1.0,  # img2img noise scale when a request does not set its own (A1111's)
    "refiner_switch_by_sample_steps": False,  # refiner_switch_at counts steps, not noise level (A1111's)
    # Settings shown at the top of the page (A1111's quicksettings_list); read when the page is built.
    "quicksettings_list": ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"],
    "cpu_confirm_pixel_steps": 1024 * 1024 * 20,  # on a CPU, the UI asks before a job above width*height*steps*images
    **SAVING_OPTIONS,  # file names, formats, grids, output folders (webui/saving.py)
    **SAMPLER_OPTION_DEFAULTS,  # eta_ancestral, eta_ddim, s_churn, sigma_min, rho, ... (A1111's keys)
}


def _storable(value) -> bool:
    """A value JSON can carry both ways: finite numbers, text without lone surrogates."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


class Options:
    """Thread-safe A1111-style options, optionally persisted as JSON."""

    def __init__(self, path: Path | None = None, defaults: dict | None = None):
        self._path = path
        self._lock = threading.Lock()
        self._values = copy.deepcopy(DEFAULT_OPTIONS if defaults is None else defaults)
        if path and path.exists():
            try:
                stored = json.loads(path.read_text(encoding="utf-8"))
                self._values.update({k: v for k, v in stored.items() if k in self._values and _storable(v)})
            except (OSError, ValueError):
                pass

    def get(self, key: str, default=None):
        with self._lock:
            return self._values.get(key, default)

    def as_dict(self) -> dict:
        with self._lock:
            return dict(self._values)

    def update(self, changes: dict) -> dict:
        """Validate and apply changes; unknown keys or wrong types raise InvalidRequest naming the key."""
        checked = {}
        with self._lock:
            for key, value in changes.items():
                if key not in self._values:
                    raise InvalidRequest(f"unknown option: {key}", field=key)
                current = self._values[key]
                if isinstance(current, bool):
                    if not isinstance(value, bool):
                        raise InvalidRequest(f"option {key} must be true or false", field=key)
                elif isinstance(current, (int, float)) and not isinstance(current, bool):
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                        raise InvalidRequest(f"option {key} must be a finite number", field=key)
                    value = type(current)(value)
                elif isinstance(current, str) and not isinstance(value, str):
                    raise InvalidRequest(f"option {key} must be a string", field=key)
                elif isinstance(current, list) and not (
                        isinstance(value, list) and all(isinstance(item, str) for item in value)):
                    raise InvalidRequest(f"option {key} must be a list of strings", field=key)
                if key == "show_progress_type" and value not in PREVIEW_TYPES:
                    raise InvalidRequest(f"option {key} must be one of {', '.join(PREVIEW_TYPES)}", field=key)
                if key == "memory_offload" and value not in MEMORY_OFFLOAD_CHOICES:
                    raise InvalidRequest(f"option {key} must be one of {', '.join(MEMORY_OFFLOAD_CHOICES)}",
                                         field=key)
                check_saving_option(key, value)
                if not _storable(value):
                    raise InvalidRequest(f"option {key} must be valid Unicode text", field=key)
                checked[key] = value
            self._values.update(checked)
            self._save_locked()
        return checked

    def _save_locked(self) -> None:
        if not self._path:
            return
        atomic_write_text(self._path, json.dumps(self._values, indent=1))
