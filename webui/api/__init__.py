"""The HTTP API: A1111's ``/sdapi/v1/*`` surface as a thin translation to webui.schemas.

``mount_api(app, services)`` is the entry point app wiring calls: it adds the
routers, the JSON error handlers and the request-size limit to a FastAPI app.
``create_api(services)`` returns the routes alone as one APIRouter.
"""
from __future__ import annotations

from fastapi import APIRouter, FastAPI

BYTES_PER_PIXEL_BUDGET = 8  # base64 of an uncompressed RGBA image is ~5.3 bytes per pixel; leave room for a mask


def create_api(services) -> APIRouter:
    """All API routes (generation, resources and the queue's) in one router."""
    from webui.api.controlnet import create_controlnet_router
    from webui.api.generation import create_generation_router
    from webui.api.img2img_batch import create_img2img_batch_router
    from webui.api.reproduce import create_reproduce_router
    from webui.api.resources import create_resources_router
    from webui.api.task_progress import create_task_progress_router

    router = APIRouter()
    router.include_router(create_generation_router(services))
    router.include_router(create_reproduce_router(services))
    router.include_router(create_img2img_batch_router(services))
    router.include_router(create_resources_router(services))
    router.include_router(create_controlnet_router(services))
    router.include_router(create_task_progress_router(services))
    queue_router = _queue_router(services)
    if queue_router is not None:
        router.include_router(queue_router)
    return router


def _queue_router(services):
    """The queue's routes (progress, interrupt, skip, /api/v1/jobs) from webui.api.queue_routes."""
    try:
        from webui.api import queue_routes
    except ImportError:
        return None
    factory = getattr(queue_routes, "create_queue_router", None) or getattr(queue_routes, "create_router", None)
    return factory(services) if factory is not None else getattr(queue_routes, "router", None)


def max_body_bytes(services) -> int:
    """Largest request body the API reads, from the pixel limit (overridable: Settings.extra["api_max_body_bytes"])."""
    settings = services.settings
    configured = settings.extra.get("api_max_body_bytes") if isinstance(settings.extra, dict) else None
    if configured:
        return int(configured)
    return settings.max_image_pixels * BYTES_PER_PIXEL_BUDGET + (1 << 20)


def mount_api(app: FastAPI, services) -> None:
    """Add the API routes, JSON error handlers and the body-size limit to ``app``."""
    from webui.api.errors import BodySizeLimit, install_error_handlers

    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes(services))
    app.include_router(create_api(services))
