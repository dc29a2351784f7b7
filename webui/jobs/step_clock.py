"""Seconds per sampling step, measured from a job's progress reports, for an honest ETA.

The first step of every image carries one-off work (loading the model, encoding
the prompt, warming up kernels) and the gap between two images carries decoding
and saving: neither says how long the remaining steps take, so only the time
between two reports of the same image counts. The median of the latest steps
follows a machine that speeds up or slows down without jumping at one slow step.
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from typing import Callable

from webui.schemas import Progress

WINDOW = 8  # latest step durations the estimate looks at


class StepClock:
    """Feed it every Progress a job reports (``observe``); it fills in ``progress.step_seconds``."""

    def __init__(self, window: int = WINDOW, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._durations: deque[float] = deque(maxlen=max(1, window))
        self._last: tuple[int, int, float] | None = None  # image index, step, when it was reported

    @property
    def seconds_per_step(self) -> float | None:
        """Median duration of the latest measured steps; None before two steps of one image were seen."""
        return statistics.median(self._durations) if self._durations else None

    def observe(self, progress: Progress) -> Progress:
        """Measure the step ``progress`` reports and write the estimate into it (returned for chaining)."""
        now = self._clock()
        last = self._last
        if last is None or (progress.image_index, progress.step) != last[:2]:
            if last is not None and progress.image_index == last[0] and progress.step > last[1] >= 1:
                self._durations.append((now - last[2]) / (progress.step - last[1]))
            self._last = (progress.image_index, progress.step, now)
        progress.step_seconds = self.seconds_per_step
        return progress
