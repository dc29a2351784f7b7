"""The worker's JobControl: the engine's narrow view of the job it runs."""
from __future__ import annotations

import copy
import threading
from typing import Callable

from webui.jobs.step_clock import StepClock
from webui.schemas import Progress


class WorkerControl:
    """Carries interrupt/skip requests to the engine and its progress back to the queue.

    ``on_progress`` is called (on the worker thread) with a copy of every Progress
    the engine reports; ``preview_every`` is the step interval of live previews
    (0 = none).
    """

    def __init__(self, on_progress: Callable[[Progress], None], preview_every: int = 5):
        self._on_progress = on_progress
        self._preview_every = max(0, int(preview_every))
        self._interrupt = threading.Event()
        self._skip = threading.Event()
        self._skip_lock = threading.Lock()
        self._step_clock = StepClock()

    # ------------------------------------------------------------ engine side (JobControl)
    def report(self, progress: Progress) -> None:
        """Record where the job is (with the measured step time); the copy keeps later in-place changes by the
        engine out of readers' view."""
        self._on_progress(copy.copy(self._step_clock.observe(progress)))

    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def take_skip(self) -> bool:
        with self._skip_lock:
            if self._skip.is_set():
                self._skip.clear()
                return True
            return False

    def wants_preview(self, step: int) -> bool:
        return self._preview_every > 0 and step > 0 and step % self._preview_every == 0

    # ------------------------------------------------------------ queue side
    def request_interrupt(self) -> None:
        self._interrupt.set()

    def request_skip(self) -> None:
        self._skip.set()

    @property
    def skip_requested(self) -> bool:
        return self._skip.is_set()

    @property
    def interrupt_requested(self) -> bool:
        return self._interrupt.is_set()
