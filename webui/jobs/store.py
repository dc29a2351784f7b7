"""Where jobs are kept: a small store interface and its SQLite implementation.

The queue talks to storage only through :class:`JobStore`, in plain records
(``Job.to_record()``), so another backend (Redis, a database server) can later
let workers on other machines share the same queue.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from webui.jobs.records import Job, result_from_data
from webui.schemas import JobStatus

FINISHED = tuple(s.value for s in JobStatus if s.finished)
log = logging.getLogger(__name__)


class JobStore(Protocol):
    """Persistence of queued jobs and recent history."""

    def add(self, job: Job) -> int:
        """Store a new queued job; returns its submission sequence number."""

    def update(self, job: Job, *, result_data: Any = None, keep_request_images: bool = True) -> None:
        """Write a job's status, times and error (and its result data, when given)."""

    def queued(self) -> list[Job]:
        """Queued jobs in submission order."""

    def get(self, job_id: str) -> Job | None:
        """One job (its result loads on first access), or None."""

    def history(self, limit: int, owner: str | None = None) -> list[Job]:
        """Finished jobs, newest first."""

    def fail_running(self, reason: str, now: float) -> list[str]:
        """Mark jobs left running by a dead process failed; returns their ids."""

    def prune(self, keep_history: int, keep_results: int) -> None:
        """Forget all but the newest finished jobs, and the results of all but the newest few."""

    def close(self) -> None: ...


_COLUMNS = ("id", "kind", "owner", "status", "created", "started", "finished", "error", "error_type",
            "error_field", "error_status", "worker")


class SQLiteJobStore:
    """JobStore in one SQLite file (WAL); ``path=None`` keeps it in memory. Thread safe through one lock."""

    def __init__(self, path: Path | None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path) if path is not None else ":memory:", check_same_thread=False,
                                   isolation_level=None, timeout=30)
        with self._lock:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a crash of the process; only power loss may drop the last ones.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS jobs (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    id TEXT NOT NULL UNIQUE,
                    kind TEXT NOT NULL,
                    owner TEXT NOT NULL DEFAULT '',
                    status TEXT NOT NULL,
                    created REAL NOT NULL,
                    started REAL,
                    finished REAL,
                    error TEXT,
                    error_type TEXT,
                    error_field TEXT,
                    error_status INTEGER,
                    worker TEXT,
                    request TEXT,
                    result TEXT
                );
                CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
                CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished);
                """
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            if "worker" not in columns:  # a queue database from before jobs named their worker
                self._db.execute("ALTER TABLE jobs ADD COLUMN worker TEXT")

    # ------------------------------------------------------------ writes
    def add(self, job: Job) -> int:
        record = job.to_record()
        with self._lock:
            cursor = self._db.execute(
                f"INSERT INTO jobs ({', '.join(_COLUMNS)}, request) VALUES ({', '.join('?' * (len(_COLUMNS) + 1))})",
                [record[c] for c in _COLUMNS] + [json.dumps(record["request"])],
            )
            return int(cursor.lastrowid)

    def update(self, job: Job, *, result_data: Any = None, keep_request_images: bool = True) -> None:
        record = job.to_record(keep_images=keep_request_images)
        sets = [f"{c} = ?" for c in _COLUMNS[1:]]
        values = [record[c] for c in _COLUMNS[1:]]
        if not keep_request_images:
            sets.append("request = ?")
            values.append(json.dumps(record["request"]))
        if result_data is not None:
            sets.append("result = ?")
            values.append(json.dumps(result_data))
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", values + [job.id])

    def fail_running(self, reason: str, now: float) -> list[str]:
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE status = ?", (JobStatus.RUNNING.value,))]
            self._db.execute(
                "UPDATE jobs SET status = ?, error = ?, error_type = 'ServerRestarted', finished = ? WHERE status = ?",
                (JobStatus.FAILED.value, reason, now, JobStatus.RUNNING.value))
        return ids

    def prune(self, keep_history: int, keep_results: int) -> None:
        marks = ", ".join("?" * len(FINISHED))
        with self._lock:
            self._db.execute(
                f"DELETE FROM jobs WHERE status IN ({marks}) AND seq NOT IN "
                f"(SELECT seq FROM jobs WHERE status IN ({marks}) ORDER BY finished DESC, seq DESC LIMIT ?)",
                (*FINISHED, *FINISHED, keep_history))
            self._db.execute(
                f"UPDATE jobs SET result = NULL WHERE result IS NOT NULL AND seq NOT IN "
                f"(SELECT seq FROM jobs WHERE status IN ({marks}) ORDER BY finished DESC, seq DESC LIMIT ?)",
                (*FINISHED, keep_results))

    # ------------------------------------------------------------ reads
    def _job(self, row) -> Job:
        record = dict(zip(("seq", *_COLUMNS, "request", "has_result"), row))
        record["request"] = json.loads(record["request"]) if record["request"] else None
        loader = None
        if record["has_result"]:
            loader = lambda job_id=record["id"], kind=record["kind"]: self._result(job_id, kind)  # noqa: E731
        return Job.from_record(record, loader)

    def _select(self, where: str, params=(), tail: str = "") -> list[Job]:
        sql = (f"SELECT seq, {', '.join(_COLUMNS)}, request, result IS NOT NULL FROM jobs "
               f"WHERE {where} {tail}")
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        jobs = []
        for row in rows:
            try:
                jobs.append(self._job(row))
            except Exception as exc:  # one unreadable record must never break a listing
                log.warning("skipped unreadable job record %r: %s: %s", row[1] if len(row) > 1 else "?",
                            type(exc).__name__, exc)
        return jobs

    def _result(self, job_id: str, kind: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT result FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        return result_from_data(kind, json.loads(row[0]))

    def queued(self) -> list[Job]:
        return self._select("status = ?", (JobStatus.QUEUED.value,), "ORDER BY seq")

    def get(self, job_id: str) -> Job | None:
        jobs = self._select("id = ?", (job_id,))
        return jobs[0] if jobs else None

    def history(self, limit: int, owner: str | None = None) -> list[Job]:
        marks = ", ".join("?" * len(FINISHED))
        where, params = f"status IN ({marks})", list(FINISHED)
        if owner is not None:
            where += " AND owner = ?"
            params.append(owner)
        return self._select(where, params + [int(limit)], "ORDER BY finished DESC, seq DESC LIMIT ?")

    def close(self) -> None:
        with self._lock:
            self._db.close()
