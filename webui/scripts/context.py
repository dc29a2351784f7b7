"""What a running script sees: run the engine again, report progress over all images, save its grids."""
from __future__ import annotations

import dataclasses
import time

from PIL import Image

from webui.filename_patterns import NameContext
from webui.schemas import GenerationRequest, GenerationResult, JobInterrupted, NullControl, Progress

RESULT_LISTS = ("images", "infotexts", "seeds", "subseeds", "prompts", "negative_prompts", "saved_paths", "warnings")


class _OffsetControl:
    """The job's control seen by one engine run: its images counted after those already made."""

    def __init__(self, inner, offset: int, total: int, started_at: float):
        self._inner, self._offset, self._total, self._started_at = inner, offset, total, started_at

    def report(self, progress: Progress) -> None:
        self._inner.report(dataclasses.replace(
            progress, image_index=self._offset + progress.image_index,
            image_count=max(self._total, self._offset + progress.image_count), started_at=self._started_at))

    def interrupted(self) -> bool:
        return self._inner.interrupted()

    def take_skip(self) -> bool:
        return self._inner.take_skip()

    def wants_preview(self, step: int) -> bool:
        return self._inner.wants_preview(step)


def append_result(into: GenerationResult, part: GenerationResult) -> None:
    """Add ``part``'s images and their records to ``into`` (parameters: the first run's)."""
    for name in RESULT_LISTS:
        getattr(into, name).extend(getattr(part, name))
    if not into.parameters:
        into.parameters = dict(part.parameters)


class ScriptContext:
    """One script job: the engine, the job's control, the expected image count and the grid saver."""

    def __init__(self, engine, request: GenerationRequest, control=None, *, total: int = 1, saver=None,
                 save_grids: bool = True, upscalers=None):
        self.engine = engine
        self.request = request
        self.control = control or NullControl()
        self.total = max(1, total)
        self.saver = saver  # a webui.saving.JobSaver, or None: nothing is saved
        self.save_grids = save_grids  # False for do_not_save_grid
        self.upscalers = upscalers
        self.made = GenerationResult()  # every image the engine made so far (what an interrupt returns)
        self._done = 0
        self._started_at = time.time()

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Run the engine once for ``request`` (no script, no per-run grid); stops the script on Interrupt."""
        sub = dataclasses.replace(request, script_name="", script_args={}, do_not_save_grid=True)
        kind = "img2img" if sub.init_image is not None else "txt2img"
        control = _OffsetControl(self.control, self._done, self.total, self._started_at)
        try:
            result = self.engine.run(kind, sub, control)
        except JobInterrupted as stop:
            if isinstance(stop.partial, GenerationResult):
                append_result(self.made, stop.partial)
            raise JobInterrupted(str(stop), partial=self.made) from None
        result = result if isinstance(result, GenerationResult) else GenerationResult()
        self._done += max(len(result.images), sub.batch_size * sub.n_iter)
        append_result(self.made, result)
        if self.control.interrupted():  # interrupted right at the end of the run: stop before the next
            raise JobInterrupted("interrupted", partial=self.made)
        return result

    def upscale(self, image: Image.Image, name: str, scale: float) -> Image.Image:
        """``image`` scaled by ``scale`` with the named upscaler (Lanczos when there is no registry)."""
        if self.upscalers is None:
            size = (round(image.width * scale), round(image.height * scale))
            return image.resize(size, Image.LANCZOS)
        try:
            return self.upscalers.upscale(image, name, scale, should_stop=self.control.interrupted)
        except InterruptedError:
            raise JobInterrupted("interrupted", partial=self.made) from None

    def save_sample(self, image: Image.Image, infotext: str, *, seed: int | None = None,
                    prompt: str = "") -> str | None:
        """Save an image the script made itself (SD upscale's combined image) among the samples."""
        if self.saver is None or not self.request.save_images:
            return None
        path = self.saver.save(image, infotext, NameContext(seed=seed, prompt=prompt))
        return str(path) if path is not None else None

    def save_grid(self, image: Image.Image, infotext: str, *, basename: str, seed: int | None = None,
                  prompt: str = "") -> str | None:
        """Save a grid the script drew (when saving and ``grid_save`` allow); returns its path or None."""
        if self.saver is None or not self.save_grids:
            return None
        path = self.saver.save_grid_image(image, infotext, NameContext(seed=seed, prompt=prompt), basename=basename)
        return str(path) if path is not None else None
