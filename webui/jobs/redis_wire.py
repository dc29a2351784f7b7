"""How jobs, progress and results travel through Redis: plain JSON and PNG bytes.

A worker on another machine shares no filesystem with the server, so its
images come back as PNG bytes with their infotext inside (A1111's ``parameters``
chunk), and the server saves them as it saves its own.
"""
from __future__ import annotations

import base64
import io
import json
from typing import Any, Callable

from PIL import Image

from webui.images import encode_png_base64
from webui.jobs.records import RESULT_TYPES, Job, without_images
from webui.schemas import Progress

# Fields of a job hash that make its Job (without result images).
JOB_FIELDS = ("record", "status", "worker", "started", "finished", "error", "error_type", "error_field",
              "error_status", "seq", "progress", "preview", "interrupt", "skip", "lost", "deliveries")


def png_bytes(image: Image.Image, infotext: str | None = None) -> bytes:
    """PNG bytes of an image, its infotext in the ``parameters`` chunk."""
    return base64.b64decode(encode_png_base64(image, infotext))


def image_from_png(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.copy()


def progress_data(progress: Progress) -> dict:
    """Progress without its preview (that travels as PNG bytes)."""
    return {"image_index": progress.image_index, "image_count": progress.image_count, "step": progress.step,
            "steps": progress.steps, "started_at": progress.started_at, "step_seconds": progress.step_seconds}


def pack_result(result: Any) -> dict[str, Any]:
    """Hash fields of a runner's result: ``result`` (JSON without images), ``images`` and ``image:<n>`` PNGs."""
    if result is None:
        return {}
    images = list(getattr(result, "images", None) or [])
    infotexts = list(getattr(result, "infotexts", None) or [])
    data = without_images(result).to_dict() if hasattr(result, "to_dict") else result
    fields: dict[str, Any] = {"result": json.dumps(data), "images": len(images)}
    for index, image in enumerate(images):
        fields[f"image:{index}"] = png_bytes(image, infotexts[index] if index < len(infotexts) else None)
    return fields


def unpack_result(kind: str, data: bytes | None, images: list[bytes | None]) -> Any:
    """Inverse of :func:`pack_result` for the result type of ``kind`` (None when there is none)."""
    if data is None:
        return None
    plain = json.loads(data)
    if kind not in RESULT_TYPES or not isinstance(plain, dict):
        return plain
    result = RESULT_TYPES[kind].from_dict(plain)
    result.images = [image_from_png(png) for png in images if png is not None]
    return result


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _number(value: Any) -> float | None:
    return None if value in (None, b"", "") else float(value)


def job_from_fields(fields: dict[str, Any], result_loader: Callable[[], Any] | None = None) -> Job:
    """A Job from the hash fields in :data:`JOB_FIELDS` (status, times and worker override the record)."""
    record = json.loads(fields["record"])
    record.update(status=_text(fields["status"]) or record["status"], started=_number(fields.get("started")),
                  finished=_number(fields.get("finished")), worker=_text(fields.get("worker")),
                  seq=int(fields.get("seq") or 0))
    for name in ("error", "error_type", "error_field"):
        if fields.get(name) is not None:
            record[name] = _text(fields[name])
    if fields.get("error_status") is not None:
        record["error_status"] = int(fields["error_status"])
    job = Job.from_record(record, result_loader)
    if fields.get("progress"):
        job.progress = Progress(**json.loads(fields["progress"]))
        if fields.get("preview"):
            job.progress.preview = image_from_png(fields["preview"])
    return job
