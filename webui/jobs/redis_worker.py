"""A worker of the Redis queue: takes one job at a time, runs it, sends progress and images back.

It may run beside the server (the local worker) or alone on another machine
(``app.py --worker``) with its own device, models folder and RAM cache. While
a job runs, a thread renews its lease; a worker that dies stops renewing, and
the job goes back to the queue (``RedisBroker.reap``). Interrupt and skip are
read from the job's hash every few tens of milliseconds, so they land within a
sampling step.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import threading
import time
from typing import Any, Callable

import redis

from webui.jobs.outcome import Outcome, run_once
from webui.jobs.queue import Runner, worker_name
from webui.jobs.records import Job
from webui.jobs.redis_broker import Claim, RedisBroker
from webui.jobs.redis_health import RedisHealth
from webui.jobs.redis_wire import pack_result, png_bytes, progress_data
from webui.jobs.step_clock import StepClock
from webui.schemas import JobStatus, Progress

log = logging.getLogger(__name__)

HEARTBEAT_TTL_MIN_S = 5.0
Holdings = Callable[[], dict]  # -> {"device": str, "loaded": [hash...], "files": [hash...]}


class RedisControl:
    """The engine's JobControl for a job held from Redis."""

    def __init__(self, broker: RedisBroker, job_id: str, preview_every: int, poll_s: float = 0.02):
        self._broker = broker
        self._job_id = job_id
        self._preview_every = max(0, int(preview_every))
        self._poll_s = poll_s
        self._last_poll = time.monotonic()  # the claim cleared the job's signals: nothing to read yet
        self._skips_seen = 0
        self._skips_pending = 0
        self._lock = threading.Lock()
        self._last_preview = None
        self._step_clock = StepClock()
        self.user_interrupt = False  # asked for by a user (interrupt or cancel)
        self.lease_lost = False  # another worker may run the job now: stop, report nothing
        self.stopping = False  # this worker is shutting down: stop, give the job back

    def _poll(self) -> None:
        now = time.monotonic()
        if now - self._last_poll < self._poll_s:
            return
        self._last_poll = now
        try:
            interrupt, skips = self._broker.signals(self._job_id)
        except redis.RedisError:
            return  # the lease thread notices a lasting outage
        with self._lock:
            self.user_interrupt = self.user_interrupt or interrupt
            if skips > self._skips_seen:
                self._skips_pending += skips - self._skips_seen
                self._skips_seen = skips

    # ------------------------------------------------------------ JobControl
    def report(self, progress: Progress) -> None:
        self._step_clock.observe(progress)
        preview = None
        if progress.preview is not None and progress.preview is not self._last_preview:
            self._last_preview = progress.preview
            preview = png_bytes(progress.preview)
        try:
            self._broker.publish_progress(self._job_id, progress_data(progress), preview)
        except redis.RedisError as exc:
            log.debug("progress of job %s not published: %s", self._job_id, exc)

    def interrupted(self) -> bool:
        self._poll()
        return self.interrupt_requested

    def take_skip(self) -> bool:
        self._poll()
        with self._lock:
            if self._skips_pending:
                self._skips_pending -= 1
                return True
            return False

    def wants_preview(self, step: int) -> bool:
        return self._preview_every > 0 and step > 0 and step % self._preview_every == 0

    @property
    def interrupt_requested(self) -> bool:
        return self.user_interrupt or self.lease_lost or self.stopping


class RedisWorker:
    """Claims jobs from a RedisBroker and runs them with ``runner(kind, request, control)``.

    ``holdings()`` says what this worker has (device, loaded checkpoint hashes,
    checkpoint file hashes) for its heartbeat and for affinity: a job whose
    checkpoint another live worker has loaded is left to it for ``grace_s``; a
    job whose checkpoint file only other workers have is left to them.
    """

    def __init__(self, broker: RedisBroker, runner: Runner, *, name: str | None = None,
                 holdings: Holdings | None = None, preview_every: int = 5, lease_s: float = 15.0,
                 grace_s: float = 2.0, heartbeat_s: float = 2.0, idle_wait_s: float = 0.5,
                 on_out_of_memory: Callable[[], None] | None = None, url: str = "", retry_cap_s: float = 10.0):
        self.broker = broker
        self.runner = runner
        self.name = name or worker_name()
        self._holdings = holdings or (lambda: {})
        self.preview_every = preview_every
        self.lease_ms = int(lease_s * 1000)
        self.grace_ms = int(grace_s * 1000)
        self.heartbeat_s = heartbeat_s
        self.idle_wait_s = idle_wait_s
        self._on_out_of_memory = on_out_of_memory
        self.health = RedisHealth(url or "redis", log, cap_s=retry_cap_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._control: RedisControl | None = None
        self._job_id: str | None = None
        self._last_beat = 0.0
        self._peers: dict[str, dict] = {}
        self._peers_read = float("-inf")
        self.jobs_run = 0

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "RedisWorker":
        """Run in a background thread (the server's local worker)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self.run_forever, name=f"webui-redis-worker-{self.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop taking jobs; a running job is stopped and given back to the queue. True if it ended."""
        self._stop.set()
        control = self._control
        if control is not None:
            control.stopping = True
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def run_forever(self) -> None:
        """Take and run jobs until :meth:`stop` (retrying with backoff while Redis is away)."""
        log.info("worker %s taking jobs from %s", self.name, self.health.url)
        while not self._stop.is_set():
            try:
                self._beat()
                claim = self._claim()
                self.health.ok()
                if claim is None:
                    self.broker.wait_for_work(self.idle_wait_s)
                    continue
                self._run(claim)
            except redis.RedisError as exc:
                self._stop.wait(self.health.failed(exc))
        try:
            self.broker.forget_worker(self.name)
        except redis.RedisError:
            pass
        log.info("worker %s stopped", self.name)

    # ------------------------------------------------------------ claiming
    def _beat(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < self.heartbeat_s:
            return
        self._last_beat = now
        info = {"device": "", "loaded": [], "files": [], **self._holdings(), "job": self._job_id,
                "jobs_run": self.jobs_run}
        # Liveness proper is the lease; the heartbeat only steers jobs, so it may outlive a few missed beats.
        self.broker.heartbeat(self.name, info, ttl_s=max(3 * self.heartbeat_s, HEARTBEAT_TTL_MIN_S))
        self.broker.reap()

    def _claim(self) -> Claim | None:
        mine = self._holdings()
        loaded, files = set(mine.get("loaded", ())), set(mine.get("files", ()))
        now = time.monotonic()
        if now - self._peers_read > min(0.5, self.heartbeat_s):  # a fresh enough view of the other workers
            self._peers, self._peers_read = self.broker.workers(), now
        young, elsewhere = set(), set()
        for name, info in self._peers.items():
            if name == self.name:
                continue
            young.update(info.get("loaded", ()))  # busy or not: it may be free before the grace period ends
            elsewhere.update(info.get("files", ()))
        return self.broker.claim(self.name, lease_ms=self.lease_ms, grace_ms=self.grace_ms,
                                 avoid=sorted(elsewhere - files - loaded), young=sorted(young - loaded))

    # ------------------------------------------------------------ running
    def _run(self, claim: Claim) -> None:
        control = RedisControl(self.broker, claim.job_id, self.preview_every)
        self._control, self._job_id = control, claim.job_id
        control.stopping = self._stop.is_set()  # stop() came between the claim and now
        renewing = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(claim.job_id, control, renewing),
                                   name=f"webui-lease-{claim.job_id[:8]}", daemon=True)
        renewer.start()
        if claim.deliveries > 1:
            log.warning("job %s: delivery %d (its last worker stopped answering)", claim.job_id, claim.deliveries)
        try:
            job = Job.from_record(claim.record)
            request = job.request
            if dataclasses.is_dataclass(request) and hasattr(request, "save_images"):
                request = dataclasses.replace(request, save_images=False)  # the server saves what comes back
            else:
                request = copy.copy(request)
            outcome = run_once(claim.job_id, lambda: self.runner(job.kind, request, control),
                               lambda: control.interrupt_requested, self._on_out_of_memory)
        except (KeyError, TypeError, ValueError) as exc:
            outcome = Outcome(JobStatus.FAILED, error=f"the job record cannot be read: {exc}",
                              error_type="InvalidRequest", error_status=422)
        finally:
            renewing.set()
            renewer.join()
            self._control, self._job_id = None, None
            self._last_beat = float("-inf")  # say at once that this worker is free again
        self.jobs_run += 1
        if control.lease_lost:
            log.warning("job %s: lease lost (Redis gave the job to another worker); its result is dropped",
                        claim.job_id)
            return
        if control.stopping and not control.user_interrupt and outcome.status == JobStatus.INTERRUPTED:
            self._until_done(lambda: self.broker.release(claim.job_id, self.name))
            log.info("job %s given back to the queue: worker %s is stopping", claim.job_id, self.name)
            return
        fields = self._fields(outcome)
        images = bool(fields.get("images"))
        done = self._until_done(lambda: self.broker.finish(claim.job_id, self.name, fields, save=images))
        if done is False:
            log.warning("job %s finished after its lease ran out; another worker has it", claim.job_id)

    @staticmethod
    def _fields(outcome: Outcome) -> dict[str, Any]:
        fields: dict[str, Any] = {"status": outcome.status.value}
        for name in ("error", "error_type", "error_field", "error_status"):
            value = getattr(outcome, name)
            if value is not None:
                fields[name] = value
        fields.update(pack_result(outcome.result))
        return fields

    def _until_done(self, call: Callable[[], Any]) -> Any:
        """Retry a Redis call with backoff until it answers (a finished job's images are not thrown away)."""
        while True:
            try:
                answer = call()
                self.health.ok()
                return answer
            except redis.RedisError as exc:
                delay = self.health.failed(exc)
                if self._stop.is_set() and self.health.at_cap:
                    log.error("worker stopping while Redis is away; the job will be retried by another worker")
                    return None
                time.sleep(delay)

    def _renew(self, job_id: str, control: RedisControl, done: threading.Event) -> None:
        interval = max(0.05, self.lease_ms / 3000)
        while not done.wait(interval):
            try:
                if not self.broker.renew(job_id, self.name, self.lease_ms):
                    control.lease_lost = True
                    return
                self._beat(force=True)
                self.health.ok()
            except redis.RedisError as exc:
                self.health.failed(exc)
