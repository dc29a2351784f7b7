"""Awaiting a job's end from async code (HTTP handlers, async gradio handlers) without holding a thread.

Both queues (SQLite and Redis) hand out a ``Subscription`` whose ``next_event``
is awaitable: the worker's change notification wakes the waiting coroutine, so
eighty clients waiting for their images cost eighty idle coroutines, not eighty
parked threads.
"""
from __future__ import annotations

import asyncio
import time
from typing import Iterator

from webui.jobs.records import Job
from webui.schemas import JobStatus


def job_updates(queue, job_id: str, min_interval: float = 0.25) -> Iterator[Job]:
    """Snapshots of a job as it changes, for sync followers (the UI): woken by the queue, never polling.

    When several changes come within ``min_interval`` seconds only the newest is
    given; the last snapshot is the finished job with its result.
    """
    with queue.subscribe(job_id) as subscription:
        given = 0.0
        while not subscription.closed:
            event = subscription.get(timeout=1.0)
            if event is None:
                continue
            while not event.job.status.finished:  # take the newest of what came meanwhile
                newer = subscription.get(timeout=max(0.0, given + min_interval - time.monotonic()))
                if newer is None:
                    break
                event = newer
            given = time.monotonic()
            job = event.job
            if job.status.finished:
                yield _with_result(queue, job)
                return
            yield job


def _with_result(queue, job: Job) -> Job:
    if job.result is None and job.status in (JobStatus.SUCCEEDED, JobStatus.INTERRUPTED):
        return queue.get(job.id)  # the store has what the event did not carry
    return job


async def finished_job(queue, job_id: str) -> Job:
    """The job once it has finished (succeeded, failed, canceled or interrupted), with its result."""
    subscription = await asyncio.to_thread(queue.subscribe, job_id)
    job = None
    try:
        while job is None:
            event = await subscription.next_event()
            if event is None:  # closed under us (the server is stopping)
                break
            if event.type == "finished" or event.job.status.finished:
                job = event.job
    finally:
        subscription.close()
    if job is None or (job.result is None and job.status in (JobStatus.SUCCEEDED, JobStatus.INTERRUPTED)):
        job = await asyncio.to_thread(queue.get, job_id)  # the store has what the event did not carry
    return job


async def submit_and_wait(queue, kind: str, request, owner: str = "") -> Job:
    """Queue a job (QueueFull and InvalidRequest propagate) and await its end."""
    job = await asyncio.to_thread(queue.submit, kind, request, owner=owner)
    return await finished_job(queue, job.id)
