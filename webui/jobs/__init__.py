"""The job queue: generation and extras jobs run by one worker thread (SQLite) or by workers sharing Redis.

``JobQueue`` is the public object (``webui.jobs.queue``); ``Job`` and ``JobEvent``
the records it hands out (``webui.jobs.records``); ``SQLiteJobStore`` the storage
behind it (``webui.jobs.store``); ``WorkerControl`` the engine's view of a job.
``RedisJobQueue`` (``webui.jobs.redis_queue``) has the same surface over Redis,
with ``RedisWorker`` (``webui.jobs.redis_worker``) running jobs anywhere; owners
take turns on both (``webui.jobs.fairness``); ``QueueBackend`` (``webui.jobs.interface``)
is what the UI and API may call on either.
"""
from webui.jobs.control import WorkerControl
from webui.jobs.queue import JobQueue, RunningState, Subscription, describe_failure, is_out_of_memory
from webui.jobs.records import Job, JobEvent, NotYourJob
from webui.jobs.store import JobStore, SQLiteJobStore

__all__ = ["Job", "JobEvent", "JobQueue", "JobStore", "NotYourJob", "RunningState", "SQLiteJobStore", "Subscription",
           "WorkerControl", "describe_failure", "is_out_of_memory"]
