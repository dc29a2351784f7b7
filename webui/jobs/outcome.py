"""One job through a runner, turned into an outcome: status, result or a one-line reason.

Shared by the embedded worker thread (``webui.jobs.queue``) and the Redis
worker (``webui.jobs.redis_worker``), so a job ends the same way wherever it ran.
"""
from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from typing import Any, Callable

from webui.schemas import JobInterrupted, JobStatus, WebUIError

log = logging.getLogger(__name__)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OutOfMemoryError, Python's MemoryError and "out of memory" RuntimeErrors."""
    if isinstance(exc, MemoryError):
        return True
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    text = str(exc).lower()
    # torch on the CPU: "DefaultCPUAllocator: can't allocate memory: you tried to allocate ..."
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for the user: our own errors as is, others as "TypeName: message"."""
    message = str(exc).strip()
    if is_out_of_memory(exc):
        first = message.splitlines()[0] if message else type(exc).__name__
        return first if first.lower().startswith("out of memory") else f"out of memory: {first}"
    if isinstance(exc, WebUIError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


@dataclass
class Outcome:
    """How a job ended: ``status``, its ``result`` (partial when interrupted) or the failure's fields."""

    status: JobStatus
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    error_field: str | None = None
    error_status: int | None = None


def run_once(job_id: str, run: Callable[[], Any], interrupt_requested: Callable[[], bool],
             on_out_of_memory: Callable[[], None] | None = None) -> Outcome:
    """Call ``run()`` and classify its end; after an out-of-memory failure, free memory and call the hook."""
    out_of_memory = False
    try:
        result = run()
        status = JobStatus.INTERRUPTED if interrupt_requested() else JobStatus.SUCCEEDED
        return Outcome(status, result)
    except JobInterrupted as exc:
        return Outcome(JobStatus.INTERRUPTED, exc.partial)
    except Exception as exc:
        out_of_memory = is_out_of_memory(exc)
        outcome = Outcome(JobStatus.FAILED, error=describe_failure(exc),
                          error_type="OutOfMemoryError" if out_of_memory else type(exc).__name__,
                          error_field=getattr(exc, "field", None),
                          error_status=exc.http_status if isinstance(exc, WebUIError) else 500)
        if isinstance(exc, WebUIError) and not out_of_memory:
            log.info("job %s failed: %s", job_id, outcome.error)
        else:
            log.error("job %s failed: %s", job_id, outcome.error, exc_info=exc)
        exc.__traceback__ = None  # frames may hold large tensors
        del exc
        return outcome
    finally:
        if out_of_memory:
            gc.collect()
            if on_out_of_memory is not None:
                try:
                    on_out_of_memory()
                except Exception:
                    log.exception("freeing memory after an out-of-memory error failed")
