"""The job queue: one worker thread runs generation and extras jobs in order, kept in SQLite.

``JobQueue`` is the public object (``webui.jobs.queue``); ``Job`` and ``JobEvent``
the records it hands out (``webui.jobs.records``); ``SQLiteJobStore`` the storage
behind it (``webui.jobs.store``); ``WorkerControl`` the engine's view of a job.
"""
from webui.jobs.control import WorkerControl
from webui.jobs.queue import JobQueue, RunningState, Subscription, describe_failure, is_out_of_memory
from webui.jobs.records import Job, JobEvent, NotYourJob
from webui.jobs.store import JobStore, SQLiteJobStore

__all__ = ["Job", "JobEvent", "JobQueue", "JobStore", "NotYourJob", "RunningState", "SQLiteJobStore", "Subscription",
           "WorkerControl", "describe_failure", "is_out_of_memory"]
