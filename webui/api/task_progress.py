"""A1111's task progress: ``POST /internal/progress`` and ``GET /internal/pending-tasks``.

A1111's web page (and clients that imitate it) name each generation with a task id of
their own (``force_task_id`` in the API) and poll ``/internal/progress`` with it. Here
the task id travels inside the job's request, so the queue (SQLite or Redis) is the only
record: a task is found among the caller's jobs by that id.
"""
from __future__ import annotations

from fastapi import APIRouter, Request

from webui.api.jobs_bridge import caller_of
from webui.api.models import ApiModel
from webui.schemas import JobStatus, image_to_base64

RECENT_JOBS = 200  # how far back a finished task is still found


class ProgressBody(ApiModel):
    """A1111's ProgressRequest."""

    id_task: str | None = None
    id_live_preview: int = -1
    live_preview: bool = True


class ProgressAnswer(ApiModel):
    """A1111's ProgressResponse."""

    active: bool = False
    queued: bool = False
    completed: bool = False
    progress: float | None = None
    eta: float | None = None
    live_preview: str | None = None
    id_live_preview: int | None = None
    textinfo: str | None = None


def task_id_of(job) -> str | None:
    """The A1111 task id a job's request carries (``force_task_id``), or None."""
    return getattr(job.request, "task_id", None)


def _status(job) -> JobStatus:
    return JobStatus(getattr(job.status, "value", job.status))


def _preview_number(progress) -> int:
    """A number that grows with each step, so a client asks for a preview only when there is a newer one."""
    return progress.image_index * max(progress.steps, 1) + progress.step


def task_progress(queue, jobs, body: ProgressBody) -> dict:
    """The ProgressResponse for ``body.id_task`` among ``jobs`` (the caller's, as the queue lists them)."""
    job = next((j for j in reversed(jobs) if body.id_task and task_id_of(j) == body.id_task), None)
    if job is None:
        return ProgressAnswer(id_live_preview=-1, textinfo="Waiting...").model_dump()
    status = _status(job)
    if status == JobStatus.QUEUED:
        waiting = sum(1 for j in jobs if _status(j) == JobStatus.QUEUED)
        text = f"In queue: {job.position or 1}/{max(waiting, job.position or 1)}"
        return ProgressAnswer(queued=True, id_live_preview=-1, textinfo=text).model_dump()
    if status.finished:
        return ProgressAnswer(completed=True, progress=1.0, eta=0.0, id_live_preview=-1,
                              textinfo=status.value).model_dump()
    live = queue.get(job.id) if hasattr(queue, "get") else job
    progress = getattr(live, "progress", None)
    answer = ProgressAnswer(active=True, progress=0.0, id_live_preview=body.id_live_preview, textinfo="")
    if progress is not None:
        answer.progress = round(progress.fraction, 4)
        answer.eta = round(progress.eta_seconds, 2) if progress.eta_seconds is not None else None
        answer.textinfo = f"image {progress.image_index + 1}/{progress.image_count}, step {progress.step}/{progress.steps}"
        number = _preview_number(progress)
        if body.live_preview and progress.preview is not None and number != body.id_live_preview:
            answer.live_preview = "data:image/png;base64," + image_to_base64(progress.preview)
            answer.id_live_preview = number
    return answer.model_dump()


def create_task_progress_router(services) -> APIRouter:
    """``/internal/progress`` and ``/internal/pending-tasks`` over the services' queue."""
    router = APIRouter(prefix="/internal", tags=["queue"])
    queue = services.queue

    def callers_jobs(http: Request) -> list:
        caller = caller_of(http)
        return [job for job in queue.list(None, RECENT_JOBS) if caller.may_see(job.owner)]

    @router.post("/progress")
    def progress(body: ProgressBody, http: Request):
        """Where the caller's task ``id_task`` is: queued, active (with progress and live preview) or completed."""
        return task_progress(queue, callers_jobs(http), body)

    @router.get("/pending-tasks")
    def pending_tasks(http: Request):
        """The caller's queued task ids, in the order they will run."""
        queued = sorted((j for j in callers_jobs(http) if _status(j) == JobStatus.QUEUED and task_id_of(j)),
                        key=lambda j: j.position or 0)
        return {"size": len(queued), "tasks": [task_id_of(j) for j in queued]}

    return router
