"""A real redis-server for the Redis queue tests, and worker processes that run the fake engine.

``redis-server`` comes from Debian's package (``.ci/services-setup.sh`` installs it
in CI). Without it the tests are skipped on a developer's machine and FAIL when
``CI`` is set, so a broken set-up is never counted as a pass.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER_SCRIPT = Path(__file__).resolve().parent / "redis_worker_process.py"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_redis_server() -> str:
    """Path of redis-server; skips (fails under CI) when it is not installed."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server not found: run .ci/services-setup.sh (Debian package redis-server)"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server on a free local port, its data in ``folder``; ``persistent`` turns on appendonly."""

    def __init__(self, folder: Path, *, persistent: bool = False, port: int | None = None):
        self.binary = require_redis_server()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                time.sleep(0.05)
        client.close()
        return self

    def kill(self) -> None:
        """Stop it the hard way (SIGKILL): what was acknowledged must be on disk already."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class WorkerProcess:
    """``tests/redis_worker_process.py``: a RedisWorker with the fake engine in its own process."""

    def __init__(self, url: str, name: str, *, step_seconds: float = 0.01, lease_s: float = 1.0,
                 loaded: str = "", files: str = "", prefix: str = "webui"):
        args = [sys.executable, str(WORKER_SCRIPT), url, name, str(step_seconds), str(lease_s), loaded, files, prefix]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.name = name
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"worker {name} did not start: {line}{self.process.stdout.read()}")
        self.output: list[str] = []  # drained by a thread, so a chatty worker never blocks on a full pipe
        self._reader = threading.Thread(target=lambda: self.output.extend(self.process.stdout), daemon=True)
        self._reader.start()

    def sigkill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> str:
        """Stop it (SIGTERM, as a user would) and return what it logged."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(5)
        return "".join(self.output)


def wait_until(condition, timeout: float = 10.0, interval: float = 0.02):
    """Poll ``condition()`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)
