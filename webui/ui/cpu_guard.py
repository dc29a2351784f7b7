"""Ask before a huge job on a CPU: the size is estimated as pixels x steps x images.

A 2048x2048 image at 20 steps is about 84 million pixel-steps, tens of minutes
on a CPU. Above the ``cpu_confirm_pixel_steps`` option the first Generate is
refused with the estimate; pressing Generate again with the same parameters
runs it. On a GPU nothing is asked.
"""
from __future__ import annotations

import threading

from webui.schemas import WebUIError


class ConfirmationNeeded(WebUIError):
    """The job is large for this device; the same request sent again runs."""

    http_status = 409


def pixel_steps(request) -> int:
    """Pixels x sampling steps x images of a generation request, the hires pass included."""
    images = max(1, int(request.batch_size)) * max(1, int(request.n_iter))
    steps = max(1, int(request.steps))
    if request.mode != "txt2img":  # img2img runs only the denoised part of the schedule
        steps = max(1, int(steps * float(request.denoising_strength or 0)))
    total = int(request.width) * int(request.height) * steps
    if getattr(request, "enable_hr", False) and request.mode == "txt2img":
        width = request.hr_resize_x or int(request.width * request.hr_scale)
        height = request.hr_resize_y or int(request.height * request.hr_scale)
        hires_steps = request.hr_second_pass_steps or steps
        total += int(width) * int(height) * int(hires_steps * float(request.denoising_strength or 0))
    return total * images


def _signature(request) -> tuple:
    return (request.mode, request.width, request.height, request.steps, request.batch_size, request.n_iter,
            getattr(request, "enable_hr", False), getattr(request, "hr_scale", None), request.prompt)


class LargeJobGuard:
    """Remembers, per browser session, the large request that was shown an estimate."""

    def __init__(self, on_cpu: bool, limit):
        self.on_cpu = on_cpu
        self._limit = limit  # callable: the option's current value
        self._warned: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def check(self, session: str, request) -> None:
        """Raise ConfirmationNeeded for a large CPU job seen for the first time; pass it the second time."""
        limit = int(self._limit() or 0)
        if not self.on_cpu or limit <= 0:
            return
        size = pixel_steps(request)
        signature = _signature(request)
        with self._lock:
            if size <= limit or self._warned.pop(session, None) == signature:
                return
            self._warned[session] = signature
        raise ConfirmationNeeded(
            f"This job is large for a CPU: {request.width}x{request.height}, {request.steps} steps, "
            f"{request.batch_size * request.n_iter} image(s) = {size / 1e6:.0f} million pixel-steps "
            f"(Settings asks above {limit / 1e6:.0f} million). It may take a long time: "
            "press Generate again to run it anyway."
        )


def runs_on_cpu(services) -> bool:
    """Whether jobs run on the CPU (a device that cannot be determined counts as not a CPU)."""
    try:
        return services.settings.torch_device() == "cpu"
    except Exception:
        return False
