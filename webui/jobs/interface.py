"""The queue interface the UI and API use; ``JobQueue`` (SQLite) and ``RedisJobQueue`` both provide it."""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from webui.jobs.records import Job


@runtime_checkable
class QueueBackend(Protocol):
    """Submit, read, follow and act on jobs, wherever they run."""

    max_length: int
    preview_every: int

    def start(self) -> "QueueBackend":
        """Start running jobs (the worker thread, or the event listener and local worker)."""

    def stop(self, timeout: float | None = 10.0) -> bool: ...

    def close(self) -> None: ...

    def submit(self, kind: str, request: Any, *, owner: str = "") -> Job:
        """Queue a job; QueueFull (429) when the queue or this owner's share is full."""

    def get(self, job_id: str) -> Job:
        """A job's snapshot; NotFound when unknown."""

    def position(self, job_id: str) -> int | None: ...

    def current(self) -> Job | None: ...

    def running_state(self):
        """A1111's progress view: a ``RunningState``."""

    def list(self, owner: str | None = None, limit: int = 50) -> list[Job]: ...

    def wait(self, job_id: str, timeout: float | None = None) -> Job: ...

    def subscribe(self, job_id: str | None = None):
        """A ``Subscription`` of JobEvents."""

    def cancel(self, job_id: str, owner: str | None = None) -> Job: ...

    def interrupt(self, job_id: str | None = None, owner: str | None = None) -> Job | None: ...

    def skip(self, job_id: str | None = None, owner: str | None = None) -> Job | None: ...

    def workers(self) -> dict[str, dict]:
        """Live workers and what they hold."""
