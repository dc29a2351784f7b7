"""JobQueue: every generation and extras request as a job with an id, run one at a time by one worker thread.

A1111's "queue" is a lock; this is a real queue: typed statuses, positions,
per-job interrupt/skip/cancel, progress events, and SQLite persistence so queued
work survives a restart. The worker calls the engine through one function,
``runner(kind, request, control)``, so a remote worker can later do the same.
"""
from __future__ import annotations

import asyncio
import bisect
import logging
import os
import queue as queue_module
import socket
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

from webui.jobs.control import WorkerControl
from webui.jobs.fairness import fair_order_with_barriers, owner_count
from webui.jobs.outcome import describe_failure, is_out_of_memory, run_once  # noqa: F401 (re-exported)
from webui.jobs.records import Job, JobEvent, NotYourJob, check_kind, result_to_data
from webui.jobs.store import JobStore, SQLiteJobStore
from webui.schemas import MODEL_JOB_KIND
from webui.schemas import (
    ExtrasRequest,
    GenerationRequest,
    JobControl,
    JobStatus,
    NotFound,
    Progress,
    QueueFull,
)

log = logging.getLogger(__name__)

Runner = Callable[[str, Any, JobControl], Any]
RESTART_REASON = "server restarted"
STOP_REASON = "server stopped"
DEFAULT_RETRY_AFTER_S = 5


def worker_name() -> str:
    """How a job record names the process that ran it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def queue_full(message: str, retry_after: int) -> QueueFull:
    """A QueueFull error (HTTP 429) carrying its Retry-After seconds."""
    error = QueueFull(message)
    error.retry_after = retry_after
    return error


def _image_count(request: Any) -> int:
    if isinstance(request, GenerationRequest):
        return max(1, request.batch_size * request.n_iter)
    if isinstance(request, ExtrasRequest):
        return max(1, len(request.images))
    return 1


@dataclass(frozen=True)
class RunningState:
    """What A1111's progress endpoint reports: the running job and its pending requests.

    ``notice`` says what is wrong with the queue itself (e.g. Redis unreachable), or None.
    """

    job: Job | None
    interrupted: bool
    skipped: bool
    waiting: int
    notice: str | None = None


class Subscription:
    """A stream of JobEvents: iterate it (ends after a followed job's final event) or call ``get``.

    Slow readers lose intermediate progress events, never the final one.
    """

    def __init__(self, job_id: str | None, on_close: Callable[["Subscription"], None], maxsize: int = 256):
        self.job_id = job_id
        self._events: queue_module.Queue = queue_module.Queue(maxsize=maxsize)
        self._on_close = on_close
        self._wakers: list[Callable[[], None]] = []  # async readers waiting for the next event
        self._wakers_lock = threading.Lock()
        self.closed = False

    def offer(self, event: JobEvent) -> None:
        """Queue an event without blocking (called by the queue)."""
        if self.job_id is not None and event.job.id != self.job_id:
            return
        while True:
            try:
                self._events.put_nowait(event)
                break
            except queue_module.Full:
                if event.type == "progress":
                    return
                try:
                    self._events.get_nowait()
                except queue_module.Empty:
                    pass
        self._wake()

    def _wake(self) -> None:
        with self._wakers_lock:
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    def get(self, timeout: float | None = None) -> JobEvent | None:
        """The next event, or None when none came within ``timeout`` seconds."""
        try:
            return self._events.get(timeout=timeout)
        except queue_module.Empty:
            return None

    async def next_event(self, timeout: float | None = None) -> JobEvent | None:
        """The next event without holding a thread (for async code), or None after ``timeout`` seconds or close."""
        loop = asyncio.get_running_loop()
        while not self.closed:
            try:
                return self._events.get_nowait()
            except queue_module.Empty:
                pass
            woken = loop.create_future()

            def wake(woken=woken):
                try:
                    loop.call_soon_threadsafe(lambda: woken.done() or woken.set_result(None))
                except RuntimeError:  # the loop has closed: nobody is waiting any more
                    pass

            with self._wakers_lock:
                self._wakers.append(wake)
            try:
                if self._events.empty() and not self.closed:  # an event may have come before the waker was set
                    await asyncio.wait_for(woken, timeout)
            except (asyncio.TimeoutError, TimeoutError):
                return None
            finally:
                with self._wakers_lock:
                    if wake in self._wakers:
                        self._wakers.remove(wake)
        return None

    async def events(self, timeout: float | None = None) -> AsyncIterator[JobEvent | None]:
        """Async iteration: each event (None when ``timeout`` passed without one); ends after a followed job's end."""
        while not self.closed:
            event = await self.next_event(timeout)
            yield event
            if event is not None and self.job_id is not None and event.type == "finished":
                return

    def __iter__(self) -> Iterator[JobEvent]:
        while not self.closed:
            event = self.get(timeout=0.5)
            if event is None:
                continue
            yield event
            if self.job_id is not None and event.type == "finished":
                return

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close(self)
            self._wake()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _owner(job: Job) -> str:
    return job.owner


def _is_model_action(job: Job) -> bool:
    return job.kind == MODEL_JOB_KIND


class JobQueue:
    """Jobs run by one worker thread, owners taking turns (each owner's in submission order).

    ``db_path=None`` keeps the queue in memory (tests, benchmarks). ``on_out_of_memory``
    is called on the worker thread after a job failed for lack of memory, so the
    model manager can free or reload weights. ``preview_every``: steps between
    live previews (0 = none). ``max_per_owner``: queued jobs one owner may have
    (0 = only ``max_length``); owners take turns (``webui.jobs.fairness``).
    """

    def __init__(self, runner: Runner, *, db_path: Path | None = None, max_length: int = 100,
                 on_out_of_memory: Callable[[], None] | None = None, preview_every: int = 5,
                 keep_history: int = 200, keep_results: int = 20, store: JobStore | None = None,
                 max_per_owner: int = 0):
        self._runner = runner
        self._store: JobStore = store if store is not None else SQLiteJobStore(db_path)
        self.max_length = int(max_length)
        self.max_per_owner = int(max_per_owner)
        self.worker = worker_name()
        self._tickets: dict[str, int] = {}  # owner -> ticket of its last turn (round-robin)
        self._ticket = 0
        self._on_out_of_memory = on_out_of_memory
        self.preview_every = int(preview_every)
        self._keep_history = keep_history
        self._keep_results = keep_results
        self._lock = threading.RLock()
        self._work = threading.Condition(self._lock)  # wakes the worker: a job came, or stop
        self._done = threading.Condition(self._lock)  # wakes waiters: a job finished
        self._queued: list[Job] = []  # submission order (by seq)
        self._reserved = 0  # submissions between the length check and the store write
        self._running: Job | None = None
        self._control: WorkerControl | None = None
        self._recent: OrderedDict[str, Job] = OrderedDict()  # finished here; results kept decoded
        self._recent_limit = max(keep_results, 8)
        self._subscribers: list[Subscription] = []
        self._durations: deque[float] = deque(maxlen=10)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._recover()

    def _recover(self) -> None:
        """Jobs a dead process left running fail with a reason; queued ones wait in their order."""
        failed = self._store.fail_running(RESTART_REASON, time.time())
        for job_id in failed:
            log.warning("job %s was running when the server stopped; marked failed", job_id)
        self._queued = self._store.queued()
        self._queued.sort(key=lambda j: j.seq)
        if self._queued:
            log.info("%d queued job(s) restored from the queue database", len(self._queued))

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "JobQueue":
        """Start the worker thread (once)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            self._stopping = False
            self._thread = threading.Thread(target=self._work_loop, name="webui-job-worker", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop the worker: the running job is interrupted, queued jobs stay queued. True if it ended."""
        with self._lock:
            self._stopping = True
            if self._control is not None:
                self._control.request_interrupt()
            self._work.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def close(self) -> None:
        """Stop the worker and close the store."""
        self.stop()
        self._store.close()

    def __enter__(self) -> "JobQueue":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ submitting and reading
    def submit(self, kind: str, request: Any, *, owner: str = "") -> Job:
        """Queue a job and return it at once; QueueFull when ``max_length`` jobs already wait."""
        check_kind(kind, request)
        with self._lock:
            if len(self._queued) + self._reserved >= self.max_length:
                raise queue_full(f"queue full: {self.max_length} jobs are waiting; try again later",
                                 self._retry_after())
            if self.max_per_owner > 0 and owner_count(self._queued, _owner, owner or "") >= self.max_per_owner:
                raise queue_full(f"you already have {self.max_per_owner} jobs waiting; try again when one "
                                 "has started", self._retry_after())
            self._reserved += 1
        job = Job(kind=kind, request=request, owner=owner or "")
        try:
            job.seq = self._store.add(job)
        finally:
            with self._lock:
                self._reserved -= 1
        with self._lock:
            index = bisect.bisect([j.seq for j in self._queued], job.seq)
            self._queued.insert(index, job)
            self._work.notify_all()
            snapshot = self._snapshot(job)
        self._publish("status", snapshot)
        return snapshot

    def get(self, job_id: str) -> Job:
        """The job with this id (a snapshot); NotFound if it is unknown or long gone."""
        with self._lock:
            job = self._find_live(job_id)
            if job is not None:
                return self._snapshot(job)
        job = self._store.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    def position(self, job_id: str) -> int | None:
        """1 = runs next, 0 = running, None = finished."""
        return self.get(job_id).position

    def current(self) -> Job | None:
        """The running job (a snapshot) or None."""
        with self._lock:
            return self._snapshot(self._running) if self._running is not None else None

    def running_state(self) -> "RunningState":
        """The running job (or None), its pending interrupt/skip requests, and how many jobs wait."""
        with self._lock:
            job, control = self._running, self._control
            return RunningState(
                job=self._snapshot(job) if job is not None else None,
                interrupted=bool(control and control.interrupt_requested),
                skipped=bool(control and control.skip_requested),
                waiting=len(self._queued),
            )

    def workers(self) -> dict[str, dict]:
        """The one worker thread of this queue, as the Redis queue lists its workers."""
        with self._lock:
            job = self._running.id if self._running is not None else None
            alive = self._thread is not None and self._thread.is_alive()
        return {self.worker: {"job": job}} if alive else {}

    def list(self, owner: str | None = None, limit: int = 50) -> list[Job]:
        """Recent finished jobs (oldest first, at most ``limit``), then the running job, then the queue in order."""
        with self._lock:
            order = self._fair_queue()
            active = ([self._running] if self._running is not None else []) + order
            active = [self._snapshot(j, order) for j in active if owner is None or j.owner == owner]
            recent = {job_id: self._snapshot(j) for job_id, j in self._recent.items()}
        seen = {j.id for j in active}
        history = {job.id: recent.get(job.id, job) for job in self._store.history(limit, owner)
                   if job.id not in seen}
        for job_id, job in recent.items():  # finished a moment ago, maybe not stored yet
            if job_id not in seen and job_id not in history and (owner is None or job.owner == owner):
                history[job_id] = job
        ordered = sorted(history.values(), key=lambda j: (j.finished or 0.0, j.seq))[-limit:] if limit > 0 else []
        return ordered + active

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job finishes or ``timeout`` passes; returns the job as it then is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                job = self._find_live(job_id)
                if job is None:
                    break  # finished earlier or unknown: the store knows
                if job.status.finished:
                    return self._snapshot(job)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return self._snapshot(job)
                self._done.wait(remaining)
        return self.get(job_id)

    def subscribe(self, job_id: str | None = None) -> Subscription:
        """Events of one job (starting with its current state) or, with None, of every job."""
        subscription = Subscription(job_id, self._unsubscribe)
        with self._lock:  # the first event is the state at the moment of subscribing, then every change
            job = self.get(job_id) if job_id is not None else None
            self._subscribers.append(subscription)
            if job is not None:
                subscription.offer(JobEvent("finished" if job.status.finished else "status", job))
        return subscription

    # ------------------------------------------------------------ acting on jobs
    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Remove a queued job (it never starts); a running job is interrupted. Finished jobs stay as they are."""
        with self._lock:
            job = self._find_live(job_id)
            if job is None:
                return self.get(job_id)
            self._check_owner(job, owner)
            if job is self._running:
                self._control.request_interrupt()
                return self._snapshot(job)
            if job.status.finished:
                return self._snapshot(job)
            self._queued.remove(job)
            job.status, job.finished, job.position = JobStatus.CANCELED, time.time(), None
            self._remember(job)
            snapshot = self._snapshot(job)
        self._save_finished(job, None)
        with self._lock:
            self._done.notify_all()
        self._publish("finished", snapshot)
        return snapshot

    def interrupt(self, job_id: str | None = None, owner: str | None = None) -> Job | None:
        """Stop a job within one step, keeping its finished images (None = the running job, if any).

        Interrupting a job that is still queued cancels it.
        """
        with self._lock:
            job = self._running if job_id is None else self._find_live(job_id)
            if job is None:
                if job_id is None:
                    return None
                return self.get(job_id)
            self._check_owner(job, owner)
            if job is self._running:
                self._control.request_interrupt()
                return self._snapshot(job)
            if job.status.finished:
                return self._snapshot(job)
        return self.cancel(job.id, owner)

    def skip(self, job_id: str | None = None, owner: str | None = None) -> Job | None:
        """End the current image of the running job's batch and go on with the next (None = running job)."""
        with self._lock:
            job = self._running if job_id is None else self._find_live(job_id)
            if job is None:
                return None if job_id is None else self.get(job_id)
            self._check_owner(job, owner)
            if job is self._running:
                self._control.request_skip()
            return self._snapshot(job)

    # ------------------------------------------------------------ worker
    def _work_loop(self) -> None:
        while True:
            with self._lock:
                while not self._queued and not self._stopping:
                    self._work.wait()
                if self._stopping:
                    return
                job = self._fair_queue()[0]
                self._queued.remove(job)
                self._take_turn(job.owner)
                job.status, job.started, job.position = JobStatus.RUNNING, time.time(), 0
                job.worker = self.worker
                job.progress = Progress(image_count=_image_count(job.request), started_at=job.started)
                control = WorkerControl(lambda p, job=job: self._on_progress(job, p), self.preview_every)
                self._running, self._control = job, control
                snapshot = self._snapshot(job)
            try:
                self._store.update(job)
            except Exception:
                log.exception("could not record the start of job %s", job.id)
            self._publish("status", snapshot)
            self._run(job, control)

    def _run(self, job: Job, control: WorkerControl) -> None:
        outcome = run_once(job.id, lambda: self._runner(job.kind, job.request, control),
                           lambda: control.interrupt_requested, self._on_out_of_memory)
        status, result, error = outcome.status, outcome.result, outcome.error
        job.error_type, job.error_field, job.error_status = outcome.error_type, outcome.error_field, outcome.error_status
        if status == JobStatus.INTERRUPTED and self._stopping:
            error = STOP_REASON
        with self._lock:  # waiters and subscribers learn the outcome first; then it is stored
            job.status, job.finished, job.error, job.position = status, time.time(), error, None
            job.result = result
            self._durations.append(job.finished - job.started)
            self._running, self._control = None, None
            self._remember(job)
            self._done.notify_all()
            snapshot = self._snapshot(job)
        self._publish("finished", snapshot)
        self._save_finished(job, result)

    def _on_progress(self, job: Job, progress: Progress) -> None:
        with self._lock:
            job.progress = progress
            snapshot = self._snapshot(job)
        self._publish("progress", snapshot)

    # ------------------------------------------------------------ helpers
    def _find_live(self, job_id: str) -> Job | None:
        if self._running is not None and self._running.id == job_id:
            return self._running
        for job in self._queued:
            if job.id == job_id:
                return job
        return self._recent.get(job_id)

    def _snapshot(self, job: Job, order: list[Job] | None = None) -> Job:
        clone = job.snapshot()
        if job.status == JobStatus.QUEUED:
            try:
                clone.position = (order if order is not None else self._fair_queue()).index(job) + 1
            except ValueError:
                clone.position = None
        return clone

    def _fair_queue(self) -> list[Job]:
        """Queued jobs in the order they will run: owners take turns, each owner's jobs in order.

        A model action (checkpoint switch) runs after every job queued before it and before every later one.
        """
        return fair_order_with_barriers(self._queued, _owner, self._tickets, _is_model_action)

    def _take_turn(self, owner: str) -> None:
        self._ticket += 1
        self._tickets[owner] = self._ticket
        if len(self._tickets) > 4 * self.max_length + 100:  # forget owners long gone, not those waiting
            waiting = {j.owner for j in self._queued}
            for name, _ in sorted(self._tickets.items(), key=lambda kv: kv[1])[:len(self._tickets) // 2]:
                if name not in waiting:
                    del self._tickets[name]

    def _remember(self, job: Job) -> None:
        self._recent[job.id] = job
        while len(self._recent) > self._recent_limit:
            self._recent.popitem(last=False)

    def _save_finished(self, job: Job, result: Any) -> None:
        try:
            self._store.update(job, result_data=result_to_data(result), keep_request_images=False)
            self._store.prune(self._keep_history, self._keep_results)
        except Exception:
            log.exception("could not record the end of job %s", job.id)

    @staticmethod
    def _check_owner(job: Job, owner: str | None) -> None:
        if owner is not None and job.owner != owner:
            raise NotYourJob(f"job {job.id} belongs to another user")

    def _retry_after(self) -> int:
        if not self._durations:
            return DEFAULT_RETRY_AFTER_S
        return int(min(60, max(1, round(sum(self._durations) / len(self._durations)))))

    def _publish(self, kind: str, snapshot: Job) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        event = JobEvent(kind, snapshot)
        for subscription in subscribers:
            subscription.offer(event)

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)
