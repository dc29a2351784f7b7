"""Start-up checks of the queue database: a damaged file is moved aside, a database in use names its process.

The queue keeps one SQLite file under outputs/. A file that is not a database
(a crash of the disk, a stray copy) must not keep the server from starting:
it is renamed with a timestamp, kept for inspection, and a new queue begins.
Two servers on one queue would run every job twice: the second one refuses to
start and says which process holds the queue (its pid is written beside it; the
pid of a server that was killed is ignored once no Python process has it).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The server cannot start; the message says why and what to do."""


def _pid_file(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".pid")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs and is a Python process (a pid reused by another program after a reboot is not)."""
    try:
        import psutil

        return "python" in " ".join(psutil.Process(pid).cmdline()[:1] + [psutil.Process(pid).name()]).lower()
    except ImportError:
        pass
    except Exception:  # no such process, or not ours to inspect
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_of(db_path: Path) -> int | None:
    """The pid of another live process that opened this queue, or None."""
    try:
        pid = int(_pid_file(db_path).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid != os.getpid() and _alive(pid) else None


def claim_queue_db(db_path: Path) -> None:
    """Check that the queue database is usable and ours; move a damaged one aside (StartupError if in use)."""
    db_path = Path(db_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    holder = holder_of(db_path)
    if holder is not None:
        raise StartupError(f"the queue database {db_path} is in use by process {holder} (another server?). "
                           f"Stop that process, or give this server its own --outdir.")
    if db_path.exists():
        try:
            connection = sqlite3.connect(str(db_path), timeout=2)
            try:
                connection.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("ROLLBACK")
            finally:
                connection.close()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc).lower() or "busy" in str(exc).lower():
                raise StartupError(f"the queue database {db_path} is locked by another process: stop it, "
                                   f"or give this server its own --outdir") from None
            _move_aside(db_path, exc)
        except sqlite3.DatabaseError as exc:
            _move_aside(db_path, exc)
    _pid_file(db_path).write_text(str(os.getpid()))


def release_queue_db(db_path: Path) -> None:
    """Forget our claim on the queue database (at a clean exit)."""
    pid_file = _pid_file(Path(db_path))
    try:
        if pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()
    except OSError:
        pass


def _move_aside(db_path: Path, reason: Exception) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db_path.with_name(f"{db_path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(str(db_path) + suffix)
        if part.exists():
            os.replace(part, Path(str(target) + suffix))
    log.error("the queue database %s could not be read (%s); kept it as %s and started a new, empty queue",
              db_path, reason, target)
    return target
