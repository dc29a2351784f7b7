"""Run one request as a queued job and wait for it, as A1111's blocking endpoints do.

A1111 clients know no job ids: ``/sdapi/v1/txt2img`` answers when the images are
ready. Here the request still goes through the shared JobQueue (so it waits its
turn behind UI jobs and shows in the queue), and this helper turns the job's
end into a result or a typed error.
"""
from __future__ import annotations

from webui import schemas
from webui.api.errors import JobFailed
from webui.jobs.follow import submit_and_wait
from webui.schemas import JobStatus
from webui.security.identity import CLIENT_ID_HEADER, Identity, caller_from_headers

API_OWNER = "api"
_ERROR_TYPES = {name: getattr(schemas, name) for name in
                ("InvalidRequest", "NotFound", "ModelLoadError", "QueueFull", "JobInterrupted")}


def _status(job) -> JobStatus:
    return JobStatus(getattr(job.status, "value", job.status))


def _failure(job) -> Exception:
    error = getattr(job, "error", None)
    if isinstance(error, schemas.WebUIError):
        return error
    if isinstance(error, BaseException):
        return JobFailed(f"{type(error).__name__}: {error}", 500, type(error).__name__)
    message = str(error or "the job failed")
    type_name = getattr(job, "error_type", None) or ""
    field = getattr(job, "error_field", None)
    status = getattr(job, "error_status", None)
    known = _ERROR_TYPES.get(type_name)
    if status is None:
        status = known.http_status if known is not None else 500
    return JobFailed(message, int(status), type_name or "JobFailed", field)


def caller_of(http_request, client_id: str | None = None) -> Identity:
    """Who sent an HTTP request (set by webui.security's middleware), acting as ``X-Client-Id`` if given.

    Without the middleware (a router tested on its own) every caller is the one API owner.
    """
    headers = getattr(http_request, "headers", None)
    identity = caller_from_headers(headers, fallback=API_OWNER)
    if client_id is None and headers is not None:
        client_id = headers.get(CLIENT_ID_HEADER)
    return identity.acting_as(client_id)


async def await_job(queue, kind: str, request, owner: str = API_OWNER):
    """Submit ``request`` as a ``kind`` job, await its end and return its result; the wait holds no thread.

    An interrupted job returns what it finished (possibly nothing); a failed job
    raises a WebUIError whose HTTP status follows the failure's type (422 for a
    bad request, 404 for a missing model, 500 otherwise); a canceled one raises 409.
    QueueFull from ``submit`` propagates (429).
    """
    return job_outcome(await submit_and_wait(queue, kind, request, owner))


def job_outcome(job):
    """A finished job's result, or the WebUIError its failure deserves (see :func:`await_job`)."""
    status = _status(job)
    if status in (JobStatus.SUCCEEDED, JobStatus.INTERRUPTED):
        return job.result
    if status == JobStatus.CANCELED:
        raise JobFailed("the job was canceled before it finished", 409, "JobCanceled")
    raise _failure(job)
