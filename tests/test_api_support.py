"""Shared pieces of the API tests: a real catalog on a tmp models folder, a fake engine behind a queue.

The engine and the model manager are fakes at the edge (the API only translates
requests); the catalog, options, infotext and image code are the real ones.
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from webui import vocabulary
from webui.catalog import Catalog
from webui.config import Settings
from webui.infotext import format_infotext
from webui.models.actions import MODEL_JOB_KIND, apply_model_action
from webui.options import Options
from webui.schemas import (ExtrasRequest, ExtrasResult, GenerationRequest, GenerationResult, InvalidRequest,
                           JobInterrupted, JobStatus, QueueFull)
from webui.services import Services

SAMPLERS = vocabulary.sampler_names()  # the engine's own table: what the API lists is what runs
SCHEDULERS = vocabulary.schedule_labels()


def write_header_checkpoint(path: Path, inpainting: bool = False) -> Path:
    """A small safetensors file with SD1's single-file key layout (what the catalog inspects)."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({
        "model.diffusion_model.input_blocks.0.0.weight": np.zeros((8, 9 if inpainting else 4, 3, 3), np.float16),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": np.zeros((10, 8), np.float16),
    }, str(path))
    return path


def write_lora(path: Path, metadata: dict) -> Path:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.zeros((4, 8), np.float16)},
              str(path), metadata=metadata)
    return path


# ---------------------------------------------------------------- fakes at the edges
class FakeEngine:
    """Answers like the engine: one image per seed, coloured by the seed, with A1111 infotext.

    ``fail_with`` makes the next run raise; ``interrupt_after`` stops a batch after that many images.
    """

    def __init__(self):
        self.requests: list = []
        self.fail_with: Exception | None = None
        self.interrupt_after: int | None = None
        self.gate: threading.Event | None = None
        self.models = None  # the FakeModels that queued checkpoint actions act on
        self.model_actions: list[str] = []

    def sampler_names(self):
        return list(SAMPLERS)

    def scheduler_names(self):
        return list(SCHEDULERS)

    def run(self, kind, request, control=None):
        if kind == MODEL_JOB_KIND:  # a queued checkpoint switch/unload/reload, as the real engine runs it
            self.model_actions.append(request.action)
            return apply_model_action(self.models, request)
        self.requests.append((kind, request))
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            raise error
        if kind == "extras":
            return self._extras(request)
        return self._generate(request)

    def _generate(self, request: GenerationRequest) -> GenerationResult:
        spec, schedule, warnings = vocabulary.resolve(request.sampler_name, request.scheduler)
        request.sampler_name, request.scheduler = spec.name, schedule.label
        base = request.seed if request.seed >= 0 else 1000
        result = GenerationResult(warnings=warnings)
        for i in range(request.batch_size * request.n_iter):
            if self.interrupt_after is not None and i >= self.interrupt_after:
                raise JobInterrupted(partial=result)
            seed = base + i
            result.images.append(Image.new("RGB", (request.width, request.height), (seed % 256, 10, 20)))
            result.seeds.append(seed)
            result.prompts.append(request.prompt)
            result.negative_prompts.append(request.negative_prompt)
            result.infotexts.append(format_infotext(request.prompt, request.negative_prompt, {
                "Steps": request.steps, "Sampler": request.sampler_name, "Schedule type": request.scheduler,
                "CFG scale": request.cfg_scale, "Seed": seed, "Size": f"{request.width}x{request.height}",
                "Model hash": "0123456789", "Model": "tiny",
                "Denoising strength": request.denoising_strength if request.init_image is not None else None,
                "Clip skip": request.clip_skip if request.clip_skip > 1 else None,
                "Lora hashes": "a: 1, b: 2",
            }))
        return result

    def _extras(self, request: ExtrasRequest) -> ExtrasResult:
        result = ExtrasResult()
        for image in request.images:
            w, h = image.size
            result.images.append(image.convert("RGB").resize((int(w * request.upscaling_resize),
                                                               int(h * request.upscaling_resize))))
            result.infotexts.append(f"Postprocess upscale by: {request.upscaling_resize:g}, "
                                    f"Postprocess upscaler: {request.upscaler_1}")
        return result


class FakeModels:
    """Records checkpoint switches; the catalog says what exists."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.current_checkpoint = None
        self.selected: list[str] = []
        self.unloads = 0
        self.reloads = 0

    def select_checkpoint(self, name):
        info = self.catalog.find_checkpoint(name)
        self.selected.append(name)
        self.current_checkpoint = info
        return info

    def unload(self):
        self.unloads += 1
        self.current_checkpoint = None

    def reload(self):
        self.reloads += 1


@dataclass
class StandInJob:
    id: str
    kind: str
    request: object
    status: JobStatus = JobStatus.QUEUED
    result: object = None
    error: str | None = None
    error_type: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class StandInQueue:
    """The JobQueue surface the API uses (submit/wait), one job at a time on the caller's behalf."""

    def __init__(self, runner, max_length: int = 100):
        self.runner = runner
        self.max_length = max_length
        self.jobs: dict[str, StandInJob] = {}
        self._lock = threading.Lock()
        self.owners: list[str] = []

    def submit(self, kind, request, owner=""):
        with self._lock:
            pending = sum(1 for j in self.jobs.values() if not j.status.finished)
            if pending >= self.max_length:
                raise QueueFull("the queue is full")
            job = StandInJob(uuid.uuid4().hex, kind, request)
            self.jobs[job.id] = job
            self.owners.append(owner)
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return job

    def _run(self, job):
        job.status = JobStatus.RUNNING
        try:
            job.result = self.runner(job.kind, job.request, None)
            job.status = JobStatus.SUCCEEDED
        except JobInterrupted as exc:
            job.result = exc.partial
            job.status = JobStatus.INTERRUPTED
        except Exception as exc:
            job.error, job.error_type = str(exc), type(exc).__name__
            job.status = JobStatus.FAILED
        job.done.set()

    def wait(self, job_id, timeout=None):
        job = self.jobs[job_id]
        job.done.wait(timeout)
        return job


def make_queue(runner, tmp_path: Path, max_length: int = 100):
    """The real JobQueue when it is there, else the stand-in with the same surface."""
    try:
        from webui.jobs import JobQueue
    except ImportError:
        return StandInQueue(runner, max_length)
    return JobQueue(runner, db_path=tmp_path / "queue.sqlite3", max_length=max_length).start()


@dataclass
class ApiWorld:
    services: Services
    engine: FakeEngine
    models: FakeModels
    client: object
    models_dir: Path


def build_world(tmp_path: Path, **settings_changes) -> ApiWorld:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from webui.api import mount_api

    models_dir = tmp_path / "models"
    write_header_checkpoint(models_dir / "Stable-diffusion" / "tiny.safetensors")
    (models_dir / "Lora").mkdir(parents=True)
    (models_dir / "VAE").mkdir(parents=True)
    (models_dir / "embeddings").mkdir(parents=True)
    settings = Settings(models_dir=models_dir, outdir=tmp_path / "outputs", wildcards_dir=tmp_path / "wildcards",
                        styles_file=tmp_path / "styles.csv", device="cpu", **settings_changes)
    catalog = Catalog(settings)
    catalog.refresh()
    engine = FakeEngine()
    models = FakeModels(catalog)
    engine.models = models
    queue = make_queue(engine.run, tmp_path, settings.max_queue_length)
    services = Services(settings=settings, catalog=catalog, models=models, engine=engine, queue=queue,
                        options=Options(tmp_path / "config.json"))
    app = FastAPI()
    mount_api(app, services)
    client = TestClient(app, raise_server_exceptions=False)
    return ApiWorld(services, engine, models, client, models_dir)


@pytest.fixture
def world(tmp_path):
    built = build_world(tmp_path)
    yield built
    close = getattr(built.services.queue, "close", None) or getattr(built.services.queue, "shutdown", None)
    if callable(close):
        close()
