"""Edges for the browser tests: a fake engine and model manager behind the real catalog and queue.

The fake engine paints flat images (a colour per seed) at the requested size,
saves them with real infotext under outputs/, reports progress step by step and
honours interrupt and skip; a prompt containing "slow" makes each step take
longer so a test can watch a job in the queue. Inpainting keeps unmasked pixels,
extras resize with Lanczos, so the UI's results can be checked by size and pixels.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

from PIL import Image

from webui.images import save_image
from webui.infotext import format_infotext
from webui.models.actions import MODEL_JOB_KIND, apply_model_action
from webui.schemas import (
    ExtrasRequest,
    ExtrasResult,
    GenerationRequest,
    GenerationResult,
    JobInterrupted,
    ModelLoadError,
    NotFound,
    Progress,
)

SLOW_STEP_SECONDS = 0.4
FAST_STEP_SECONDS = 0.01
#: A prompt with this word makes a slow job that holds at its last step until it is interrupted (at most
#: HOLD_LIMIT_SECONDS), so that flows which interrupt a running job do not race the job's own end.
HOLD_WORD = "hold"
HOLD_LIMIT_SECONDS = 300.0


def seed_colour(seed: int) -> tuple[int, int, int]:
    rng = random.Random(seed)
    return rng.randrange(40, 216), rng.randrange(40, 216), rng.randrange(40, 216)


class FakeModels:
    """Selects checkpoints through the catalog; "loading" fails when the file is gone from disk."""

    def __init__(self, catalog):
        self.catalog = catalog
        self.current_checkpoint = catalog.default_checkpoint()

    def select_checkpoint(self, name: str):
        info = self.catalog.find_checkpoint(name)
        if not info.path.exists():
            raise ModelLoadError(f"cannot load {info.name}: the file is no longer on disk")
        self.current_checkpoint = info
        return info

    def unload(self) -> None:
        self.current_checkpoint = None

    def reload(self) -> None:
        pass


class FakeEngine:
    """Implements EngineLike with flat-colour images; real saving, infotext and progress."""

    def __init__(self, settings, models: FakeModels):
        self.settings = settings
        self.models = models

    def sampler_names(self) -> list[str]:
        return ["Euler a", "Euler", "DPM++ 2M", "DDIM"]

    def scheduler_names(self) -> list[str]:
        return ["Automatic", "Karras"]

    def run(self, kind: str, request, control):
        if kind == MODEL_JOB_KIND:  # queued checkpoint switches run on the worker, as with the real engine
            return apply_model_action(self.models, request)
        if kind == "extras":
            return self.extras(request, control)
        return self.generate(request, control)

    def _checkpoint(self, request: GenerationRequest):
        if request.checkpoint:
            return self.models.select_checkpoint(request.checkpoint)
        if self.models.current_checkpoint is None:
            raise NotFound("no checkpoint loaded")
        return self.models.current_checkpoint

    @staticmethod
    def _hold_until_interrupted(control) -> None:
        deadline = time.monotonic() + HOLD_LIMIT_SECONDS
        while not control.interrupted() and time.monotonic() < deadline:
            time.sleep(0.05)

    def generate(self, request: GenerationRequest, control=None) -> GenerationResult:
        info = self._checkpoint(request)
        holds = HOLD_WORD in request.prompt
        step_seconds = SLOW_STEP_SECONDS if "slow" in request.prompt or holds else FAST_STEP_SECONDS
        base_seed = request.seed if request.seed >= 0 else random.randrange(0, 2**31)
        count = request.n_iter * request.batch_size
        result = GenerationResult()
        for index in range(count):
            seed = base_seed + index
            skipped = False
            for step in range(1, request.steps + 1):
                if control is not None:
                    if control.interrupted():
                        if step > 1:  # as the real engine: the image sampled so far is kept
                            self._add_image(request, result, info, seed)
                        raise JobInterrupted(partial=result)
                    if control.take_skip():
                        skipped = True
                        break
                time.sleep(step_seconds)
                if holds and step == request.steps and control is not None:
                    self._hold_until_interrupted(control)
                    if control.interrupted():
                        self._add_image(request, result, info, seed)
                        raise JobInterrupted(partial=result)
                if control is not None:
                    preview = Image.new("RGB", (32, 32), seed_colour(seed)) if control.wants_preview(step) else None
                    control.report(Progress(image_index=index, image_count=count, step=step, steps=request.steps,
                                            preview=preview))
            if skipped:
                continue
            self._add_image(request, result, info, seed)
        return result

    def _add_image(self, request: GenerationRequest, result: GenerationResult, info, seed: int) -> None:
        """Paint, save and record one image of the job."""
        image = self._paint(request, seed)
        fields = {"Steps": request.steps, "Sampler": request.sampler_name, "CFG scale": request.cfg_scale,
                  "Seed": seed, "Size": f"{image.width}x{image.height}", "Model hash": info.short_hash,
                  "Model": info.model_name}
        if request.mode != "txt2img":
            fields["Denoising strength"] = request.denoising_strength
        infotext = format_infotext(request.prompt, request.negative_prompt, fields)
        if request.save_images:
            category = "txt2img-images" if request.mode == "txt2img" else "img2img-images"
            path = save_image(image, self.settings.outdir, category, seed=seed, infotext=infotext)
            result.saved_paths.append(str(path))
        result.images.append(image)
        result.infotexts.append(infotext)
        result.seeds.append(seed)
        result.prompts.append(request.prompt)
        result.negative_prompts.append(request.negative_prompt)

    def _paint(self, request: GenerationRequest, seed: int) -> Image.Image:
        size = (request.width, request.height)
        colour = Image.new("RGB", size, seed_colour(seed))
        if request.init_image is None:
            return colour
        init = request.init_image.convert("RGB").resize(size, Image.LANCZOS)
        if request.mask is None:
            return Image.blend(init, colour, request.denoising_strength)
        mask = request.mask.convert("L").resize(size, Image.NEAREST)
        if request.inpainting_mask_invert:
            mask = mask.point(lambda v: 255 - v)
        return Image.composite(colour, init, mask)

    def extras(self, request: ExtrasRequest, control=None) -> ExtrasResult:
        result = ExtrasResult()
        for image in request.images:
            if request.resize_mode == 1:
                size = (request.upscaling_resize_w, request.upscaling_resize_h)
            else:
                size = (round(image.width * request.upscaling_resize), round(image.height * request.upscaling_resize))
            out = image.convert("RGB").resize(size, Image.LANCZOS)
            infotext = f"Postprocess upscale by: {request.upscaling_resize}, Postprocess upscaler: {request.upscaler_1}"
            if request.save_images:
                result.saved_paths.append(str(save_image(out, self.settings.outdir, "extras-images", seed=None,
                                                         infotext=infotext)))
            result.images.append(out)
            result.infotexts.append(infotext)
        return result


def write_fake_checkpoints(folder: Path, names=("tiny-a.ckpt", "tiny-b.ckpt")) -> list[Path]:
    """Files the catalog lists as checkpoints (pickle suffix: identified only when loaded)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, name in enumerate(names):
        path = folder / name
        path.write_bytes(b"fake checkpoint %d" % number)
        paths.append(path)
    return paths
