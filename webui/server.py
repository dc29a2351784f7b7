"""Build the long-lived services and the FastAPI app (API routers + gradio UI mounted at /)."""
from __future__ import annotations

import logging

import torch

from webui.catalog import Catalog
from webui.config import Settings
from webui.options import DEFAULT_OPTIONS, Options
from webui.services import Services
from webui.startup import claim_queue_db

log = logging.getLogger(__name__)


def build_services(settings: Settings, *, engine=None, start_model: bool = False) -> Services:
    """Wire catalog -> model manager -> engine -> queue. ``engine`` may be a fake (tests of the edges)."""
    from webui.engine.engine import Engine
    from webui.jobs import JobQueue
    from webui.models.manager import ModelManager
    from webui.postprocess.faces import FaceRestorers
    from webui.postprocess.upscalers import UpscalerRegistry
    from webui.prompts.styles import StyleDatabase
    from webui.prompts.wildcards import WildcardIndex
    from webui.scripts import ScriptRunner

    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    settings.outdir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings)
    catalog.refresh()
    # The start-up tile flags are the defaults of A1111's ESRGAN_tile options; a stored value wins.
    options = Options(settings.outdir / "config.json",
                      {**DEFAULT_OPTIONS, "ESRGAN_tile": settings.upscaler_tile_size,
                       "ESRGAN_tile_overlap": settings.upscaler_tile_overlap})
    options.update({"sd_checkpoints_limit": settings.checkpoints_limit})
    models = ModelManager(settings, catalog)
    upscalers = UpscalerRegistry(settings, options=options)
    faces = FaceRestorers(settings)
    # One memory policy for every model: the manager frees these before a checkpoint load and after OOM.
    models.register("upscalers", upscalers)
    models.register("face restorers", faces)
    wildcards = WildcardIndex.scan(settings.wildcards_dir)
    styles = StyleDatabase.load(settings.styles_file)
    if engine is None:
        engine = Engine(settings, catalog, models, upscalers=upscalers, faces=faces, wildcards=wildcards,
                        styles=styles, options=options)
    # Jobs with an A1111 script (X/Y/Z plot, ...) run the script; the rest go to the engine as they are.
    runner = ScriptRunner(engine, settings=settings, options=options, upscalers=upscalers)
    if settings.queue_url:
        queue = build_redis_queue(settings, runner, catalog, models)
    else:
        claim_queue_db(settings.queue_db_path)
        queue = JobQueue(runner.run, db_path=settings.queue_db_path, max_length=settings.max_queue_length,
                         on_out_of_memory=models.free_after_out_of_memory,
                         preview_every=settings.live_preview_every, max_per_owner=settings.max_queue_per_client)
    services = Services(settings=settings, catalog=catalog, models=models, engine=engine, queue=queue,
                        options=options, upscalers=upscalers, faces=faces, wildcards=wildcards, styles=styles)
    default = catalog.default_checkpoint()
    if default is not None:
        options.update({"sd_model_checkpoint": default.title})
        if start_model:
            models.ensure(default)
    return services


def default_security(services: Services):
    """The policy without any flag: no accounts, localhost names only, no CORS, the API's body limit."""
    from webui.api import max_body_bytes
    from webui.security import SecurityPolicy

    settings = services.settings
    return SecurityPolicy.create(secret_key_path=settings.secret_key_path, listen_host=settings.host,
                                 max_body_bytes=max_body_bytes(services))


def build_redis_queue(settings: Settings, engine, catalog, models, *, local_worker: bool | None = None):
    """The Redis queue of ``settings.queue_url``, with a local worker unless ``settings.local_worker`` is off."""
    from webui.jobs.holdings import checkpoint_needed, worker_holdings
    from webui.jobs.redis_queue import RedisJobQueue

    with_worker = settings.local_worker if local_worker is None else local_worker
    return RedisJobQueue(settings.queue_url, engine.run if with_worker else None,
                         max_length=settings.max_queue_length, max_per_owner=settings.max_queue_per_client,
                         preview_every=settings.live_preview_every,
                         on_out_of_memory=getattr(models, "free_after_out_of_memory", None),
                         outdir=settings.outdir if settings.save_images else None,
                         checkpoint_of=checkpoint_needed(catalog),
                         holdings=worker_holdings(str(getattr(models, "device", settings.device)), catalog, models))


def create_app(services: Services, *, with_ui: bool = True, security=None):
    """The FastAPI app: /sdapi/v1 and /api/v1 routers, and the gradio UI at /, behind the security middleware.

    ``security`` is a webui.security.SecurityPolicy (app.py builds it from the
    flags); None means the safe default of ``default_security``.
    """
    from fastapi import FastAPI

    from webui.api import mount_api
    from webui.security.middleware import SecurityMiddleware

    app = FastAPI(title="Stable Diffusion web UI", version="0.1")
    mount_api(app, services)
    if with_ui:
        from webui.ui import mount_ui

        app = mount_ui(app, services, path="/")
    app.add_middleware(SecurityMiddleware, policy=security if security is not None else default_security(services))
    return app
