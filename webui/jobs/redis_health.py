"""Losing Redis is reported, not fatal: exponential backoff, one log line per change, a notice for the API."""
from __future__ import annotations

import logging
import threading
import time

from webui.jobs.redis_broker import redacted
from webui.schemas import WebUIError


class RedisHealth:
    """Tracks whether Redis answers; ``notice`` is None when it does, else a sentence for users."""

    def __init__(self, url: str, log: logging.Logger, *, base_s: float = 0.5, cap_s: float = 10.0):
        self.url = redacted(url)
        self._log = log
        self._base, self._cap = base_s, cap_s
        self._delay = 0.0
        self._since: float | None = None
        self._logged = float("-inf")
        self._lock = threading.Lock()
        self.notice: str | None = None

    def failed(self, exc: BaseException) -> float:
        """Record a failed call; returns how long to wait before the next try (doubling up to the cap)."""
        with self._lock:
            self._delay = self._base if self._delay == 0 else min(self._cap, self._delay * 2)
            if self._since is None:
                self._since = time.time()
            since = time.strftime("%H:%M:%S", time.localtime(self._since))
            self.notice = f"queue unavailable: Redis at {self.url} unreachable since {since}; retrying"
            now = time.monotonic()
            if now - self._logged >= self._cap:  # the first failure, then one line per cap interval
                self._logged = now
                self._log.warning("Redis at %s unreachable (%s: %s); retrying in %.1f s", self.url,
                                  type(exc).__name__, exc, self._delay)
            return self._delay

    @property
    def at_cap(self) -> bool:
        """True once the wait between tries reached its cap (Redis has been away a while)."""
        return self._delay >= self._cap

    def ok(self) -> None:
        """Record a successful call (logs the recovery once)."""
        if self._since is None:
            return
        with self._lock:
            if self._since is not None:
                self._log.info("Redis at %s reachable again after %.1f s", self.url, time.time() - self._since)
            self._since, self._delay, self.notice, self._logged = None, 0.0, None, float("-inf")


class QueueUnavailable(WebUIError):
    """The shared queue (Redis) does not answer; the request may be retried later."""

    http_status = 503
