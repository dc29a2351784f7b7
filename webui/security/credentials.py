"""User names and passwords: A1111's ``user:pass,user2:pass2`` form, kept only as argon2 hashes in memory.

``PasswordBook.verify`` compares in constant time and remembers a keyed digest
of a password it has verified, so a script sending HTTP Basic credentials with
every request does not pay for an argon2 hash each time. ``FailureLimiter``
counts failed logins per client address and says when to refuse.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError, InvalidHashError


class CredentialsError(ValueError):
    """A credentials flag or file is malformed; the message names the problem, never a password."""


def parse_credentials(text: str, source: str = "--gradio-auth") -> dict[str, str]:
    """``"alice:pw1,bob:pw2"`` (commas or new lines between pairs) -> ``{"alice": "pw1", "bob": "pw2"}``.

    Only the first ``:`` separates: a password may contain ``:``. Blank entries are ignored.
    """
    users: dict[str, str] = {}
    for entry in text.replace("\r", "\n").replace("\n", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, password = entry.partition(":")
        name = name.strip()
        if not sep or not name or not password:
            raise CredentialsError(f"{source}: each entry must be user:password (got an entry for {name!r})")
        users[name] = password
    return users


def read_credentials_file(path: Path) -> dict[str, str]:
    """Users from a file of ``user:password`` entries (A1111's --gradio-auth-path)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"--gradio-auth-path: cannot read {path}: {exc.strerror or exc}") from None
    return parse_credentials(text, f"--gradio-auth-path {path}")


class PasswordBook:
    """Users and their argon2 password hashes; the plain passwords are not kept."""

    def __init__(self, users: dict[str, str], hasher: PasswordHasher | None = None):
        # OWASP's minimum argon2id settings: about 20 ms per check, 19 MiB.
        self._hasher = hasher or PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
        self._hashes = {name: self._hasher.hash(password) for name, password in users.items()}
        self._dummy = self._hasher.hash(secrets.token_hex(8))
        self._key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._hashes)

    def __contains__(self, name: str) -> bool:
        return name in self._hashes

    @property
    def names(self) -> list[str]:
        return list(self._hashes)

    def _digest(self, name: str, password: str) -> bytes:
        return hmac.new(self._key, f"{name}\0{password}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def verify(self, name: str, password: str) -> bool:
        """True when ``password`` is ``name``'s; unknown names cost the same as wrong passwords."""
        digest = self._digest(name, password)
        with self._lock:
            known = self._verified.get(name)
        if known is not None and hmac.compare_digest(known, digest):
            return True
        stored = self._hashes.get(name)
        try:
            self._hasher.verify(stored or self._dummy, password)
        except (VerificationError, InvalidHashError):
            return False
        if stored is None:
            return False
        with self._lock:
            self._verified[name] = digest
        return True


class FailureLimiter:
    """At most ``max_failures`` failed logins per client address within ``window_s`` seconds."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0):
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, deque] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque:
        times = self._failures.setdefault(address, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def retry_after(self, address: str) -> int:
        """Seconds until this address may try again (0 = now)."""
        now = time.monotonic()
        with self._lock:
            times = self._recent(address, now)
            if len(times) < self.max_failures:
                if not times:
                    self._failures.pop(address, None)
                return 0
            return max(1, int(self.window_s - (now - times[0])) + 1)

    def failed(self, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(address, now).append(now)
            if len(self._failures) > 10000:  # many addresses: forget the quiet ones
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]
