"""HTTP routes of the job queue: A1111's progress/interrupt/skip, and a native per-job API.

A1111 clients know no job ids: ``/sdapi/v1/progress``, ``/interrupt`` and
``/skip`` act on the running job when it is the caller's own. The native API under
``/api/v1/jobs`` submits without waiting and acts per id; ``/events`` streams
progress as Server-Sent Events. Every job belongs to the caller's identity (the
signed-in user, or the client id the server issued: see webui.security); only
its owner or an admin sees, cancels, interrupts or skips it. ``X-Client-Id``
names a sub-identity inside the caller's own, as A1111 clients use it.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from fastapi import APIRouter, Body, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.sse import KEEPALIVE_COMMENT, EventSourceResponse, format_sse_event
from starlette.concurrency import run_in_threadpool

from webui.api.errors import QUEUE_FULL_RETRY_AFTER_S, error_body
from webui.api.jobs_bridge import caller_of
from webui.jobs.records import NotYourJob
from webui.schemas import InvalidRequest, JOB_KINDS, NotFound, QueueFull, WebUIError, image_to_base64

BuildRequest = Callable[[str, dict], Any]
API_OWNER = "api"
log = logging.getLogger(__name__)
KEEPALIVE_S = 15.0


def _error(exc: WebUIError) -> JSONResponse:
    headers = {}
    name = type(exc).__name__
    if isinstance(exc, QueueFull):
        name = "queue full"
        headers["Retry-After"] = str(getattr(exc, "retry_after", QUEUE_FULL_RETRY_AFTER_S))
    return JSONResponse(error_body(name, str(exc) or name, getattr(exc, "field", None)),
                        status_code=getattr(exc, "http_status", 500), headers=headers)


def _listable(job) -> dict | None:
    """A job's list entry, or None (logged) when it holds something JSON cannot carry."""
    try:
        view = job.to_dict()
        json.dumps(view, allow_nan=False).encode("utf-8")
        return view
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        log.warning("job %s left out of the list: %s", getattr(job, "id", "?"), exc)
        return None


def a1111_progress(job, *, interrupted: bool, skipped: bool, waiting: int, include_image: bool = True,
                   notice: str | None = None) -> dict:
    """A1111's ``/sdapi/v1/progress`` answer for the running job (or an idle one).

    ``notice`` (e.g. the shared queue's Redis is unreachable) goes in ``state.queue`` and ``textinfo``.
    """
    state = {"skipped": skipped, "interrupted": interrupted, "job": "", "job_count": 0, "job_timestamp": "0",
             "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
    if notice:
        state["queue"] = notice
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": notice}
    p = job.progress
    started = job.started or job.created
    state.update(job=job.kind, job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(started)))
    text = f"job {job.id}"
    progress = eta = 0.0
    image = None
    if p is not None:
        state.update(job_count=p.image_count, job_no=p.image_index, sampling_step=p.step, sampling_steps=p.steps)
        progress, eta = p.fraction, p.eta_seconds or 0.0
        text = f"image {p.image_index + 1}/{p.image_count}, step {p.step}/{p.steps}"
        if include_image and p.preview is not None:
            image = image_to_base64(p.preview)
    if waiting:
        text += f"; {waiting} job(s) waiting"
    if notice:
        text += f"; {notice}"
    return {"progress": round(progress, 4), "eta_relative": round(eta, 2), "state": state,
            "current_image": image, "textinfo": text}


def queue_router(queue, *, build_request: BuildRequest) -> APIRouter:
    """Routes over ``queue``; ``build_request(kind, payload)`` turns API JSON into a request (InvalidRequest if bad)."""
    router = APIRouter(tags=["queue"])

    # ------------------------------------------------------------ A1111's meaning
    @router.get("/sdapi/v1/progress")
    def progress(request: Request, skip_current_image: bool = False,
                 x_client_id: str | None = Header(default=None)):
        """Progress of the caller's running job in A1111's shape (zeros when idle or when the job is another's)."""
        state = queue.running_state()
        job = state.job if state.job is not None and caller_of(request, x_client_id).may_see(state.job.owner) else None
        return a1111_progress(job, interrupted=state.interrupted and job is not None,
                              skipped=state.skipped and job is not None, waiting=state.waiting,
                              include_image=not skip_current_image, notice=getattr(state, "notice", None))

    def act_on_running(request: Request, client_id: str | None, action: str) -> dict:
        job = queue.running_state().job
        if job is not None and caller_of(request, client_id).may_see(job.owner):
            getattr(queue, action)(job.id)
        return {}

    @router.post("/sdapi/v1/interrupt")
    def interrupt_running(request: Request, x_client_id: str | None = Header(default=None)):
        """Stop the caller's running job, keeping its finished images (another's job is left alone)."""
        return act_on_running(request, x_client_id, "interrupt")

    @router.post("/sdapi/v1/skip")
    def skip_running(request: Request, x_client_id: str | None = Header(default=None)):
        """End the current image of the caller's running job and go on with the next."""
        return act_on_running(request, x_client_id, "skip")

    # ------------------------------------------------------------ native jobs
    @router.post("/api/v1/jobs", status_code=202)
    def submit(request: Request, payload: Any = Body(...), x_client_id: str | None = Header(default=None)):
        """Queue a job; answers at once with its id and position."""
        try:
            if not isinstance(payload, dict):
                raise InvalidRequest("the body must be a JSON object {kind, request}", field="body")
            kind = payload.get("kind")
            if kind not in JOB_KINDS:
                raise InvalidRequest(f"kind must be one of {', '.join(JOB_KINDS)}", field="kind")
            fields = payload.get("request", {})
            if not isinstance(fields, dict):
                raise InvalidRequest("request must be a JSON object of the job's fields", field="request")
            try:
                job_request = build_request(kind, fields)
            except (ValueError, TypeError) as exc:
                raise InvalidRequest(str(exc), field=getattr(exc, "field", None) or "request") from None
            job = queue.submit(kind, job_request, owner=caller_of(request, x_client_id).owner)
        except WebUIError as exc:
            return _error(exc)
        return JSONResponse({"id": job.id, "status": job.status.value, "position": job.position},
                            status_code=202, headers={"Location": f"/api/v1/jobs/{job.id}"})

    @router.get("/api/v1/jobs")
    def list_jobs(request: Request, owner: str | None = None, limit: int = Query(50, ge=1, le=500),
                  x_client_id: str | None = Header(default=None)):
        """The caller's recent finished jobs, running job and queued jobs (no images); an admin may name any owner."""
        caller = caller_of(request, x_client_id)
        jobs = queue.list(owner=owner if caller.admin else caller.owner, limit=limit)
        return {"jobs": [view for view in map(_listable, jobs) if view is not None]}

    def own_job(request: Request, job_id: str, client_id: str | None):
        """The job if the caller may see it; another's job is as unknown as a missing one."""
        job = queue.get(job_id)
        if not caller_of(request, client_id).may_see(job.owner):
            raise NotFound(f"no job {job_id!r}")
        return job

    @router.get("/api/v1/workers")
    def list_workers():
        """Live workers ("host:pid") and what they hold: device, loaded checkpoints and files by hash, job."""
        try:
            return {"workers": queue.workers()}
        except WebUIError as exc:
            return _error(exc)

    @router.get("/api/v1/jobs/{job_id}")
    def get_job(request: Request, job_id: str, images: bool = True, x_client_id: str | None = Header(default=None)):
        """Status, progress, error, and result images (base64 PNG) once finished."""
        try:
            return own_job(request, job_id, x_client_id).to_dict(images=images)
        except WebUIError as exc:
            return _error(exc)

    def act(request: Request, action: str, job_id: str, client_id: str | None):
        try:
            job = queue.get(job_id)
            if not caller_of(request, client_id).may_see(job.owner):
                raise NotYourJob(f"job {job_id} belongs to another user")
            return getattr(queue, action)(job_id).to_dict()
        except WebUIError as exc:
            return _error(exc)

    @router.delete("/api/v1/jobs/{job_id}")
    def cancel(request: Request, job_id: str, x_client_id: str | None = Header(default=None)):
        """Cancel a queued job (it never starts); a running one is interrupted."""
        return act(request, "cancel", job_id, x_client_id)

    @router.post("/api/v1/jobs/{job_id}/interrupt")
    def interrupt(request: Request, job_id: str, x_client_id: str | None = Header(default=None)):
        """Stop this job within one step, keeping its finished images."""
        return act(request, "interrupt", job_id, x_client_id)

    @router.post("/api/v1/jobs/{job_id}/skip")
    def skip(request: Request, job_id: str, x_client_id: str | None = Header(default=None)):
        """End the current image of this job's batch."""
        return act(request, "skip", job_id, x_client_id)

    @router.get("/api/v1/jobs/{job_id}/events")
    async def events(request: Request, job_id: str, x_client_id: str | None = Header(default=None)):
        """Server-Sent Events: ``status``/``progress`` (preview when it changed) until ``finished`` (with images).

        The stream awaits the queue's change notifications on the event loop: no thread is held per watcher.
        """
        def follow():
            own_job(request, job_id, x_client_id)
            return queue.subscribe(job_id)

        try:
            subscription = await run_in_threadpool(follow)
        except WebUIError as exc:
            return _error(exc)

        async def stream():
            shown = [None]

            def encode(event) -> bytes:
                if event.type == "finished":
                    return format_sse_event(event="finished", data_str=json.dumps(
                        event.job.to_dict(images=True, request=False)))
                data = event.job.to_dict(request=False)
                preview = event.job.progress.preview if event.job.progress is not None else None
                if preview is not None and preview is not shown[0] and data["progress"] is not None:
                    shown[0] = preview
                    data["progress"]["preview"] = image_to_base64(preview)
                return format_sse_event(event=event.type, data_str=json.dumps(data))

            try:
                async for event in subscription.events(timeout=KEEPALIVE_S):
                    yield KEEPALIVE_COMMENT if event is None else await run_in_threadpool(encode, event)
            finally:
                subscription.close()

        return EventSourceResponse(stream(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def create_queue_router(services) -> APIRouter:
    """The queue's routes for the app, with request bodies in A1111's txt2img/img2img/extras shapes."""
    return queue_router(services.queue, build_request=lambda kind, payload: build_api_request(services, kind, payload))


def build_api_request(services, kind: str, payload: dict):
    """Turn an A1111-shaped JSON body into the request object of a ``kind`` job (InvalidRequest if bad)."""
    from pydantic import ValidationError

    from webui.api import convert, models
    from webui.api.script_fields import attach_script

    max_pixels = services.settings.max_image_pixels
    try:
        if kind == "txt2img":
            body = models.Txt2ImgBody(**payload)
            return attach_script(body, convert.txt2img_request(body, services), services)
        if kind == "img2img":
            body = models.Img2ImgBody(**payload)
            return attach_script(body, convert.img2img_request(body, services), services)
        if "imageList" in payload:
            body = models.ExtrasBatchBody(**payload)
            images = [convert.decode_image(item.data, f"imageList.{i}.data", max_pixels)
                      for i, item in enumerate(body.imageList)]
            return convert.extras_request(body, images, [item.name for item in body.imageList])
        body = models.ExtrasSingleBody(**payload)
        if not body.image:
            raise InvalidRequest("image is required: one base64 image (or imageList)", field="image")
        return convert.extras_request(body, [convert.decode_image(body.image, "image", max_pixels)], [])
    except ValidationError as exc:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise InvalidRequest(f"{field}: {first.get('msg', 'invalid value')}", field=field) from None
