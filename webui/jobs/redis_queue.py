"""RedisJobQueue: the JobQueue interface over Redis, so workers on several machines share one queue.

The server keeps nothing of its own: job records, progress, previews, signals
and results live in Redis (``webui.jobs.redis_broker``). A listener thread
follows the events channel to wake waiters and subscribers, saves the images
that remote workers send back (as the embedded queue's engine saves them), and
requeues the jobs of workers whose lease ran out. The server also runs a local
worker unless told not to.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import redis

from webui.jobs.fairness import fair_order
from webui.jobs.queue import DEFAULT_RETRY_AFTER_S, RunningState, Runner, Subscription, queue_full
from webui.jobs.records import Job, JobEvent, NotYourJob, check_kind
from webui.jobs.redis_broker import DEFAULT_PREFIX, RedisBroker
from webui.jobs.redis_health import QueueUnavailable, RedisHealth
from webui.jobs.redis_wire import JOB_FIELDS, job_from_fields, unpack_result
from webui.jobs.redis_worker import Holdings, RedisWorker
from webui.schemas import JobStatus, NotFound

log = logging.getLogger(__name__)

CheckpointOf = Callable[[str, Any], str]  # (kind, request) -> short hash of the checkpoint it needs, or ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def image_category(job: Job) -> str:
    """The outputs folder of a job's images, as the engine chooses it."""
    if job.kind == "extras":
        return "extras-images"
    return "img2img-images" if getattr(job.request, "init_image", None) is not None else "txt2img-images"


class RedisJobQueue:
    """Same surface as :class:`webui.jobs.JobQueue` (submit, get, wait, subscribe, cancel, ...), kept in Redis.

    ``runner`` given: a local worker runs jobs in this process too. ``outdir``:
    where images of jobs that asked to be saved are written (None: not saved).
    ``checkpoint_of(kind, request)``: the checkpoint hash a job needs, for affinity.
    """

    def __init__(self, url: str, runner: Runner | None = None, *, prefix: str = DEFAULT_PREFIX,
                 max_length: int = 100, max_per_owner: int = 0, preview_every: int = 5,
                 keep_history: int = 200, keep_results: int = 20, on_out_of_memory: Callable[[], None] | None = None,
                 outdir: Path | None = None, checkpoint_of: CheckpointOf | None = None,
                 holdings: Holdings | None = None, lease_s: float = 15.0, grace_s: float = 2.0,
                 worker_name: str | None = None, retry_cap_s: float = 10.0):
        self.url = url
        self.broker = RedisBroker.from_url(url, prefix)
        self.health = RedisHealth(url, log, cap_s=retry_cap_s)
        self.max_length = int(max_length)
        self.max_per_owner = int(max_per_owner)
        self.preview_every = int(preview_every)
        self._keep_history, self._keep_results = keep_history, keep_results
        self._outdir = outdir
        self._checkpoint_of = checkpoint_of
        self.local_worker = None
        if runner is not None:
            self.local_worker = RedisWorker(self.broker, runner, name=worker_name, holdings=holdings,
                                            preview_every=preview_every, lease_s=lease_s, grace_s=grace_s,
                                            on_out_of_memory=on_out_of_memory, url=url, retry_cap_s=retry_cap_s)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._version = 0  # bumped when a job finishes, so waiters never miss one
        self._subscribers: list[Subscription] = []
        self._finished_since_prune = 1  # prune once at start, then after jobs finished
        self._saving: set[str] = set()  # jobs whose images a thread of this process is saving
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "RedisJobQueue":
        """Start the event listener and the local worker (once)."""
        if self._listener is None or not self._listener.is_alive():
            self._stop.clear()
            self._listener = threading.Thread(target=self._listen, name="webui-redis-events", daemon=True)
            self._listener.start()
        if self.local_worker is not None:
            self.local_worker.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop the local worker (its running job goes back to the queue) and the listener."""
        ended = self.local_worker.stop(timeout) if self.local_worker is not None else True
        self._stop.set()
        if self._listener is not None:
            self._listener.join(timeout)
            ended = ended and not self._listener.is_alive()
        return ended

    def close(self) -> None:
        self.stop()
        self.broker.client.close()

    def __enter__(self) -> "RedisJobQueue":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, fn: Callable, *args, **kwargs) -> Any:
        """A Redis call for a request: an outage becomes QueueUnavailable (HTTP 503)."""
        try:
            value = fn(*args, **kwargs)
        except redis.RedisError as exc:
            self.health.failed(exc)
            raise QueueUnavailable(self.health.notice or "the queue is unavailable") from None
        self.health.ok()
        return value

    # ------------------------------------------------------------ submitting and reading
    def submit(self, kind: str, request: Any, *, owner: str = "") -> Job:
        """Queue a job; QueueFull when the queue (or this owner's share of it) is full."""
        check_kind(kind, request)
        job = Job(kind=kind, request=request, owner=owner or "")
        checkpoint = self._checkpoint_of(kind, request) if self._checkpoint_of is not None else ""
        seq = self._call(self.broker.submit, job.id, job.owner, job.to_record(), checkpoint=checkpoint or "",
                         save=bool(getattr(request, "save_images", False)) and self._outdir is not None,
                         max_length=self.max_length, max_per_owner=self.max_per_owner)
        if seq == -1:
            raise queue_full(f"queue full: {self.max_length} jobs are waiting; try again later", DEFAULT_RETRY_AFTER_S)
        if seq == -2:
            raise queue_full(f"you already have {self.max_per_owner} jobs waiting; try again when one has started",
                             DEFAULT_RETRY_AFTER_S)
        order = self._queue_order()
        if job.id not in order:  # a worker took it already
            return self.get(job.id)
        job.seq, job.position = seq, order.index(job.id) + 1
        return job

    def get(self, job_id: str) -> Job:
        """The job with this id; NotFound if it is unknown or long gone."""
        jobs = self._jobs([job_id])
        if not jobs:
            raise NotFound(f"no job {job_id!r}")
        return jobs[0][0]

    def position(self, job_id: str) -> int | None:
        return self.get(job_id).position

    def current(self) -> Job | None:
        return self.running_state().job

    def running_state(self) -> RunningState:
        """A1111's view: one running job (this process's worker's first), its signals, how many wait."""
        try:
            running = self._jobs(self._call(self.broker.running_ids))
            waiting = self._call(self.broker.queued_count)
        except QueueUnavailable:
            return RunningState(None, False, False, 0, self.health.notice)
        mine = self.local_worker.name if self.local_worker is not None else None
        running.sort(key=lambda item: (item[0].worker != mine, item[0].started or 0.0))
        if not running:
            return RunningState(None, False, False, waiting, self.health.notice)
        job, fields = running[0]
        return RunningState(job, bool(fields.get("interrupt")), int(fields.get("skip") or 0) > 0, waiting,
                            self.health.notice)

    def workers(self) -> dict[str, dict]:
        """Live workers and what they hold: device, loaded checkpoint hashes, checkpoint files, current job."""
        return self._call(self.broker.workers)

    def list(self, owner: str | None = None, limit: int = 50) -> list[Job]:
        """Recent finished jobs (oldest first, at most ``limit``), then the running jobs, then the queue in turn order."""
        history_ids = self._call(self.broker.history_ids, self._keep_history if owner is not None else limit)
        history = [job for job, _ in self._jobs(history_ids) if owner is None or job.owner == owner][:limit]
        running = sorted((job for job, _ in self._jobs(self._call(self.broker.running_ids))),
                         key=lambda j: j.started or 0.0)
        queued = sorted((job for job, _ in self._jobs(self._queue_order())), key=lambda j: j.position or 0)
        active = [j for j in running + queued if owner is None or j.owner == owner]
        return list(reversed(history)) + active if limit > 0 else active

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job finished (and its images are saved) or ``timeout`` passed.

        While Redis is away it keeps trying until ``timeout`` (then QueueUnavailable)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        key = self.broker.key("job", job_id)
        while True:
            with self._lock:
                version = self._version
            try:
                status = self._call(self.broker.client.hget, key, "status")
            except QueueUnavailable:  # the job may well finish meanwhile: keep waiting while time is left
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                time.sleep(1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic())))
                continue
            if status is None:
                raise NotFound(f"no job {job_id!r}")
            if JobStatus(_text(status)).finished:
                job = self.get(job_id)
                changed = self._finalize(job_id)
                with self._changed:  # another thread may be saving its images right now
                    while job_id in self._saving:
                        changed = True
                        self._changed.wait(0.5)
                return self.get(job_id) if changed else job
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return self.get(job_id)
            with self._changed:
                if self._version == version:
                    self._changed.wait(0.5 if remaining is None else min(0.5, remaining))

    def subscribe(self, job_id: str | None = None) -> Subscription:
        """Events of one job (starting with its current state) or, with None, of every job."""
        subscription = Subscription(job_id, self._unsubscribe)
        job = self.get(job_id) if job_id is not None else None
        with self._lock:
            self._subscribers.append(subscription)
        if job is not None:
            subscription.offer(JobEvent("finished" if job.status.finished else "status", job))
        return subscription

    # ------------------------------------------------------------ acting on jobs
    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Remove a queued job (it never starts); a running job is interrupted on its worker."""
        job = self._owned(job_id, owner)
        if not job.status.finished:
            self._call(self.broker.cancel, job_id)
        return self.get(job_id)

    def interrupt(self, job_id: str | None = None, owner: str | None = None) -> Job | None:
        """Stop a job within one step on whichever worker runs it (None = the running job); a queued one is canceled."""
        job = self._target(job_id, owner)
        if job is None or job.status.finished:
            return job
        if job.status == JobStatus.RUNNING:
            self._call(self.broker.interrupt, job.id)
            return self.get(job.id)
        return self.cancel(job.id, owner)

    def skip(self, job_id: str | None = None, owner: str | None = None) -> Job | None:
        """End the current image of a running job's batch (None = the running job)."""
        job = self._target(job_id, owner)
        if job is not None and job.status == JobStatus.RUNNING:
            self._call(self.broker.skip, job.id)
            return self.get(job.id)
        return job

    # ------------------------------------------------------------ helpers
    def _target(self, job_id: str | None, owner: str | None) -> Job | None:
        if job_id is None:
            job = self.running_state().job
            if job is None:
                return None
            job_id = job.id
        return self._owned(job_id, owner)

    def _owned(self, job_id: str, owner: str | None) -> Job:
        job = self.get(job_id)
        if owner is not None and job.owner != owner:
            raise NotYourJob(f"job {job.id} belongs to another user")
        return job

    def _queue_order(self) -> list[str]:
        items, tickets = self._call(self.broker.queued_by_owner)
        # Owners with equal tickets go in name order, as Redis sorts the owners' set.
        return [job_id for _, job_id in fair_order(items, lambda item: item[0], tickets,
                                                   tie=lambda owner, item: owner)]

    def _jobs(self, job_ids: list[str]) -> list[tuple[Job, dict]]:
        """Jobs (with their raw fields) in the given order; queued ones get their position; gone ones are left out."""
        if not job_ids:
            return []
        rows = self._call(self.broker.job_fields, job_ids, JOB_FIELDS)
        jobs, positions = [], None
        for job_id, fields in zip(job_ids, rows):
            if fields is None or fields.get("record") is None:
                continue
            job = job_from_fields(fields)
            job._result_loader = lambda job_id=job_id, kind=job.kind: self._load_result(job_id, kind)
            if job.status == JobStatus.QUEUED:
                if positions is None:
                    positions = {jid: index + 1 for index, jid in enumerate(self._queue_order())}
                job.position = positions.get(job_id)
            elif job.status == JobStatus.RUNNING:
                job.position = 0
            jobs.append((job, fields))
        return jobs

    def _load_result(self, job_id: str, kind: str) -> Any:
        key = self.broker.key("job", job_id)
        data, count = self.broker.client.hmget(key, "result", "images")
        count = int(count or 0)
        images = self.broker.client.hmget(key, *[f"image:{i}" for i in range(count)]) if count else []
        return unpack_result(kind, data, images)

    def _finalize(self, job_id: str) -> bool:
        """Save a finished job's images once (whichever thread gets here first); True if this call saved them."""
        if self._outdir is None:
            return False
        with self._lock:
            if job_id in self._saving or not self._call(self.broker.take_unsaved, job_id):
                return False
            self._saving.add(job_id)
        try:
            return self._save_images(job_id)
        finally:
            with self._changed:
                self._saving.discard(job_id)
                self._changed.notify_all()

    def _save_images(self, job_id: str) -> bool:
        from webui.images import save_image

        job = self.get(job_id)
        result = job.result
        if result is None or not getattr(result, "images", None):
            return False
        category = image_category(job)
        seeds = list(getattr(result, "seeds", []) or [])
        try:
            for index, image in enumerate(result.images):
                infotext = result.infotexts[index] if index < len(result.infotexts) else None
                seed = seeds[index] if index < len(seeds) else None
                result.saved_paths.append(str(save_image(image, self._outdir, category, seed=seed,
                                                         infotext=infotext)))
        except (OSError, ValueError) as exc:
            log.error("could not save the images of job %s: %s", job_id, exc)
            result.warnings.append(f"images not saved: {exc}")
        data = json.loads(self._call(self.broker.client.hget, self.broker.key("job", job_id), "result"))
        data["saved_paths"], data["warnings"] = list(result.saved_paths), list(result.warnings)
        self._call(self.broker.set_fields, job_id, {"result": json.dumps(data)})
        return True

    # ------------------------------------------------------------ events
    def _listen(self) -> None:
        events = self.broker.key("events")
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.broker.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(events)
                self.health.ok()
                self._sweep()
                last_sweep = time.monotonic()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        self._on_event(json.loads(message["data"]))
                    if time.monotonic() - last_sweep > 1.0:
                        self._sweep()
                        last_sweep = time.monotonic()
            except (redis.RedisError, QueueUnavailable) as exc:
                self._stop.wait(self.health.failed(exc))
                self._bump()  # waiters re-read (and meet the outage themselves)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except redis.RedisError:
                        pass

    def _sweep(self) -> None:
        """Requeue jobs of dead workers, save images nobody saved yet (e.g. while this server was down)."""
        self.broker.reap()
        for job_id in self.broker.unsaved_ids():
            self._finalize(job_id)
        if self._finished_since_prune:
            self._finished_since_prune = 0
            self.broker.prune(self._keep_history, self._keep_results)

    def _on_event(self, event: dict) -> None:
        kind, job_id = event.get("type"), event.get("id")
        if kind == "finished":
            self._bump()  # waiters first: they save the job's images themselves if nobody has yet
            self._finished_since_prune += 1
            try:
                self._finalize(job_id)
            except Exception:
                log.exception("could not save the images of job %s", job_id)
        with self._lock:
            subscribers = [s for s in self._subscribers if s.job_id in (None, job_id)]
        if not subscribers:
            return
        try:
            job = self.get(job_id)
        except NotFound:
            return
        for subscription in subscribers:
            subscription.offer(JobEvent(kind, job))

    def _bump(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)
