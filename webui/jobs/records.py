"""The job record: what a queued, running or finished job is, as an object and as plain data.

``Job.to_record()`` / ``Job.from_record()`` are the storage form (plain JSON-able
data, images as base64) so any store (SQLite now, Redis later) can keep jobs;
``Job.to_dict()`` is the API's view, light unless images are asked for.
"""
from __future__ import annotations

import copy
import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from webui.schemas import MODEL_JOB_KIND, ModelAction
from webui.schemas import (
    DETECT_JOB_KIND,
    DetectRequest,
    DetectResult,
    ExtrasRequest,
    ExtrasResult,
    GenerationRequest,
    GenerationResult,
    InvalidRequest,
    JOB_KINDS,
    JobStatus,
    Progress,
    WebUIError,
    check_request_limits,
    image_to_base64,
)

REQUEST_TYPES = {"txt2img": GenerationRequest, "img2img": GenerationRequest, "extras": ExtrasRequest,
                 DETECT_JOB_KIND: DetectRequest, MODEL_JOB_KIND: ModelAction}
_FROM_PATHS = "__images_from_saved_paths__"
RESULT_TYPES = {"txt2img": GenerationResult, "img2img": GenerationResult, "extras": ExtrasResult,
                DETECT_JOB_KIND: DetectResult}


class NotYourJob(WebUIError):
    """A user tried to cancel, interrupt or skip another user's job."""

    http_status = 403


def check_kind(kind: str, request: Any) -> None:
    """Raise InvalidRequest unless ``kind`` is a job kind and ``request`` has its request type."""
    if kind not in REQUEST_TYPES:
        expected_kinds = ", ".join((*JOB_KINDS, DETECT_JOB_KIND, MODEL_JOB_KIND))
        raise InvalidRequest(f"unknown job kind {kind!r}; expected one of {expected_kinds}", field="kind")
    expected = REQUEST_TYPES[kind]
    if not isinstance(request, expected):
        raise InvalidRequest(f"a {kind} job needs a {expected.__name__}, not {type(request).__name__}",
                             field="request")
    if kind != MODEL_JOB_KIND:  # a model action is checked when it is made
        check_request_limits(request)


def without_images(value: Any) -> Any:
    """A shallow copy of a request/result dataclass with its images dropped (None or empty lists)."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    changes = {}
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if isinstance(item, Image.Image):
            changes[f.name] = None
        elif isinstance(item, (list, tuple)) and any(isinstance(x, Image.Image) for x in item):
            changes[f.name] = []
    return dataclasses.replace(value, **changes) if changes else value


def _plain(value: Any, images: bool) -> Any:
    """JSON-able API form: images as base64 PNG strings (or None when not asked for)."""
    if isinstance(value, Image.Image):
        return image_to_base64(value) if images else None
    if isinstance(value, (list, tuple)):
        if not images and value and all(isinstance(x, Image.Image) for x in value):
            return []
        return [_plain(v, images) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, images) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name), images) for f in dataclasses.fields(value)}
    if hasattr(value, "value") and isinstance(getattr(value, "value"), str):  # enums
        return value.value
    return value


def result_to_data(result: Any) -> Any:
    """Storage form of a runner's result (None when it cannot be stored as JSON).

    Images already saved to disk are kept as their paths, not encoded again: that
    keeps the database small and the worker quick.
    """
    if result is None:
        return None
    if hasattr(result, "to_dict"):
        images, paths = getattr(result, "images", None), getattr(result, "saved_paths", None)
        if images and paths and len(paths) == len(images) and all(Path(p).is_file() for p in paths):
            return {_FROM_PATHS: True, "data": without_images(result).to_dict()}
        return result.to_dict()
    if isinstance(result, (str, int, float, bool, list, dict)):
        return result
    return None


def result_from_data(kind: str, data: Any) -> Any:
    """Inverse of :func:`result_to_data` for the result type of ``kind``."""
    if not isinstance(data, dict) or kind not in RESULT_TYPES:
        return data
    from_paths = bool(data.get(_FROM_PATHS))
    try:
        result = RESULT_TYPES[kind].from_dict(data["data"] if from_paths else data)
    except (TypeError, ValueError, KeyError):
        return data
    if from_paths:
        for path in result.saved_paths:
            try:
                with Image.open(path) as image:
                    image.load()
                    result.images.append(image.copy())
            except OSError:
                result.warnings.append(f"saved image is gone: {path}")
    return result


@dataclass(eq=False)
class Job:
    """One unit of work for the GPU worker and everything known about it."""

    kind: str
    request: Any
    owner: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: JobStatus = JobStatus.QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: Progress | None = None
    error: str | None = None
    error_type: str | None = None  # exception type name of a failure, e.g. "InvalidRequest"
    error_field: str | None = None  # request field a failure names, when it names one
    error_status: int | None = None  # HTTP status the failure deserves (WebUIError.http_status)
    position: int | None = None  # 1 = runs next; None unless queued
    seq: int = 0  # submission order (assigned by the store)
    worker: str | None = None  # "host:pid" of the worker that ran (or runs) it
    _result: Any = field(default=None, repr=False)
    _result_loader: Callable[[], Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self.status = JobStatus(self.status)

    # The result of a history job is decoded only when someone looks at it.
    @property
    def result(self) -> Any:
        if self._result is None and self._result_loader is not None:
            loader, self._result_loader = self._result_loader, None
            self._result = loader()
        return self._result

    @result.setter
    def result(self, value: Any) -> None:
        self._result, self._result_loader = value, None

    def snapshot(self) -> "Job":
        """A shallow copy that later updates of the live job do not change."""
        clone = copy.copy(self)
        if self.progress is not None:
            clone.progress = copy.copy(self.progress)
        return clone

    # ------------------------------------------------------------ API view
    def to_dict(self, *, images: bool = False, request: bool = True) -> dict:
        """The API's JSON view; images (result, preview, request) as base64 only when ``images``."""
        progress = None
        if self.progress is not None:
            p = self.progress
            eta = p.eta_seconds
            progress = {
                "image_index": p.image_index, "image_count": p.image_count, "step": p.step, "steps": p.steps,
                "fraction": round(p.fraction, 4), "eta_seconds": None if eta is None else round(eta, 2),
                "has_preview": p.preview is not None,
                "preview": image_to_base64(p.preview) if images and p.preview is not None else None,
            }
        result = self.result
        data = {
            "id": self.id, "kind": self.kind, "owner": self.owner, "status": self.status.value,
            "position": self.position, "created": self.created, "started": self.started,
            "finished": self.finished, "progress": progress, "error": self.error, "error_type": self.error_type,
            "error_field": self.error_field, "worker": self.worker,
            "result": None if result is None else _plain(result, images),
        }
        if result is not None and hasattr(result, "images"):
            data["image_count"] = len(result.images)
        if request:
            data["request"] = _plain(self.request, images)
        return data

    # ------------------------------------------------------------ storage form
    def to_record(self, *, keep_images: bool = True) -> dict:
        """Plain JSON-able data for a store; ``keep_images=False`` drops the request's images."""
        req = self.request if keep_images else without_images(self.request)
        return {
            "id": self.id, "seq": self.seq, "kind": self.kind, "owner": self.owner, "status": self.status.value,
            "created": self.created, "started": self.started, "finished": self.finished, "error": self.error,
            "error_type": self.error_type, "error_field": self.error_field, "error_status": self.error_status,
            "worker": self.worker, "request": req.to_dict() if hasattr(req, "to_dict") else req,
        }

    @classmethod
    def from_record(cls, record: dict, result_loader: Callable[[], Any] | None = None) -> "Job":
        """Rebuild a job from :meth:`to_record` data; the result is fetched by ``result_loader`` on demand."""
        kind = record["kind"]
        request = record.get("request")
        if isinstance(request, dict) and kind in REQUEST_TYPES:
            request = REQUEST_TYPES[kind].from_dict(request)
        job = cls(kind=kind, request=request, owner=record.get("owner") or "", id=record["id"],
                  status=record["status"], created=record["created"], started=record.get("started"),
                  finished=record.get("finished"), error=record.get("error"), error_type=record.get("error_type"),
                  error_field=record.get("error_field"), error_status=record.get("error_status"),
                  seq=record.get("seq") or 0, worker=record.get("worker"))
        job._result_loader = result_loader
        return job


@dataclass
class JobEvent:
    """What subscribers receive: ``type`` is "status", "progress" or "finished"; ``job`` a snapshot."""

    type: str
    job: Job

    def to_dict(self, *, images: bool = False) -> dict:
        return {"type": self.type, "job": self.job.to_dict(images=images, request=False)}
