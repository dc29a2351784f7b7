"""A fake engine for tests of the queue, the API and the UI: steps with small sleeps, no model.

``FakeEngine.run(kind, request, control)`` has the real engine's contract: it
reports Progress through the JobControl, decodes a "preview" when asked,
stops within one step when interrupted (raising JobInterrupted with the images
finished so far), drops the current image on skip, and returns a
GenerationResult/ExtrasResult of tiny images. The request's prompt drives
failures: "fail" raises a ValueError, "oom" a RuntimeError like CUDA's out of
memory, "invalid" an InvalidRequest naming a field.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from PIL import Image

from webui.models.actions import MODEL_JOB_KIND, apply_model_action
from webui.schemas import (
    ExtrasRequest,
    ExtrasResult,
    GenerationRequest,
    GenerationResult,
    InvalidRequest,
    JobInterrupted,
    NullControl,
    Progress,
)

OOM_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 8.00 GiB total capacity)"


class FakeEngine:
    """Counts what it runs; ``step_seconds`` per sampling step; ``size`` of the images it makes."""

    def __init__(self, step_seconds: float = 0.01, size: int = 8, outdir=None, models=None):
        self.step_seconds = step_seconds
        self.models = models  # a model manager (real or fake) that queued checkpoint actions act on
        self.size = size
        self.outdir = outdir  # where images are saved when a request says save_images (None: never)
        self.calls: list[str] = []  # prompts (or "extras") in the order jobs started
        self.step_log: list[tuple[float, int, int]] = []  # (time, image index, step) of every step begun
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    # The queue's runner.
    def run(self, kind: str, request, control=None):
        control = control or NullControl()
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append(request.prompt if isinstance(request, GenerationRequest) else kind)
        try:
            if kind == MODEL_JOB_KIND:
                return apply_model_action(self.models, request) if self.models is not None else {}
            if isinstance(request, ExtrasRequest):
                return ExtrasResult(images=[image.copy() for image in request.images],
                                    infotexts=["" for _ in request.images])
            return self._generate(request, control)
        finally:
            with self._lock:
                self.active -= 1

    __call__ = run

    def _generate(self, request: GenerationRequest, control) -> GenerationResult:
        prompt = request.prompt.strip().lower()
        count = request.batch_size * request.n_iter
        steps = request.steps
        result = GenerationResult()
        progress = Progress(image_count=count, steps=steps, started_at=time.time())
        for index in range(count):
            progress.image_index, progress.step = index, 0
            skipped = False
            for step in range(steps):
                if control.interrupted():
                    raise JobInterrupted(partial=result)
                if control.take_skip():
                    skipped = True
                    break
                with self._lock:
                    self.step_log.append((time.monotonic(), index, step))
                if step == 0 and prompt == "fail":
                    raise ValueError("the fake engine was asked to fail")
                if step == 0 and prompt == "oom":
                    raise RuntimeError(OOM_MESSAGE)
                if step == 0 and prompt == "invalid":
                    raise InvalidRequest("steps must be a whole number from 1 to 150", field="steps")
                time.sleep(self.step_seconds)
                progress.step = step + 1
                if control.wants_preview(step + 1):
                    progress.preview = self._image(index, step + 1)
                control.report(progress)
            if not skipped:
                result.images.append(self._image(index, steps))
                seed = (request.seed if request.seed >= 0 else 0) + index
                result.seeds.append(seed)
                result.prompts.append(request.prompt)
                result.negative_prompts.append(request.negative_prompt)
                result.infotexts.append(f"{request.prompt}\nSteps: {steps}, Seed: {seed}")
                if self.outdir is not None and request.save_images:
                    path = Path(self.outdir) / f"{len(self.step_log):05d}-{seed}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    result.images[-1].save(path)
                    result.saved_paths.append(str(path))
        return result

    def _image(self, index: int, step: int) -> Image.Image:
        return Image.new("RGB", (self.size, self.size), ((index * 60) % 256, (step * 20) % 256, 128))
