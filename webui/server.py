"""Build the long-lived services and the FastAPI app (API routers + gradio UI mounted at /)."""
from __future__ import annotations

import logging

import torch

from webui.catalog import Catalog
from webui.config import Settings
from webui.options import Options
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

    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    settings.outdir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog(settings)
    catalog.refresh()
    options = Options(settings.outdir / "config.json")
    options.update({"sd_checkpoints_limit": settings.checkpoints_limit})
    models = ModelManager(settings, catalog)
    upscalers = UpscalerRegistry(settings)
    faces = FaceRestorers(settings)
    wildcards = WildcardIndex.scan(settings.wildcards_dir)
    styles = StyleDatabase.load(settings.styles_file)
    if engine is None:
        engine = Engine(settings, catalog, models, upscalers=upscalers, faces=faces, wildcards=wildcards,
                        styles=styles, options=options)
    claim_queue_db(settings.queue_db_path)
    queue = JobQueue(engine.run, db_path=settings.queue_db_path, max_length=settings.max_queue_length,
                     on_out_of_memory=models.free_after_out_of_memory,
                     preview_every=settings.live_preview_every)
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
