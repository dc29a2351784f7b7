"""Who a request comes from: a signed-in user, or a browser or API client the server issued an id to.

The middleware decides the identity and writes it into the request's headers
(``x-webui-owner`` and ``x-webui-admin``), after removing any a client sent,
so the API routes and gradio handlers read it from headers they can trust.
Ids for clients without an account travel in a cookie signed with the
server's secret key: a client can drop it (and become a stranger to its own
jobs) but cannot forge someone else's.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

OWNER_HEADER = "x-webui-owner"
ADMIN_HEADER = "x-webui-admin"
USER_HEADER = "x-webui-user"
CLIENT_COOKIE = "webui_client"
SESSION_COOKIE = "webui_session"
CLIENT_ID_HEADER = "x-client-id"
MAX_CLIENT_ID = 64


@dataclass(frozen=True)
class Identity:
    """``owner`` is the string stored on the caller's jobs; ``admin`` may act on everyone's."""

    owner: str
    user: str | None = None
    admin: bool = False

    def acting_as(self, client_id: str | None) -> "Identity":
        """A sub-identity for an A1111-style ``X-Client-Id`` inside this identity (never another's)."""
        if not client_id:
            return self
        client_id = "".join(ch for ch in client_id[:MAX_CLIENT_ID] if ch.isprintable())
        return Identity(owner=f"{self.owner}/{client_id}", user=self.user, admin=self.admin)

    def may_see(self, owner: str | None) -> bool:
        """Whether a job with this owner is this caller's (or the caller is an admin)."""
        if self.admin:
            return True
        owner = owner or ""
        return owner == self.owner or owner.startswith(self.owner + "/")


def caller_from_headers(headers, fallback: str | None = None) -> Identity | None:
    """The identity the middleware put into ``headers`` (a Mapping, case-insensitive keys), else ``fallback``.

    Without the middleware (a router tested alone) there is no trusted header: then
    ``fallback`` names the owner (None: no identity).
    """
    owner = headers.get(OWNER_HEADER) if headers is not None else None
    if not owner:
        return Identity(owner=fallback) if fallback else None
    return Identity(owner=owner, user=headers.get(USER_HEADER) or None, admin=headers.get(ADMIN_HEADER) == "1")


def load_secret_key(path: Path) -> bytes:
    """The server's signing key from ``path``, created (readable by its owner only) on first use."""
    path = Path(path)
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class TokenSigner:
    """HMAC-SHA256 signed values with an expiry: ``sign("user:alice")`` -> an opaque cookie value."""

    def __init__(self, key: bytes):
        self._key = key

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def sign(self, value: str, max_age_s: float) -> str:
        payload = f"{int(time.time() + max_age_s)}|{value}".encode("utf-8")
        encoded = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{encoded}.{self._mac(payload)}"

    def unsign(self, token: str | None) -> str | None:
        """The signed value, or None when the token is missing, forged or expired."""
        if not token or "." not in token or len(token) > 4096:
            return None
        encoded, _, mac = token.rpartition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            return None
        if not hmac.compare_digest(self._mac(payload), mac):
            return None
        expiry, _, value = payload.decode("utf-8", "replace").partition("|")
        try:
            if int(expiry) < time.time():
                return None
        except ValueError:
            return None
        return value


def new_client_id() -> str:
    return secrets.token_hex(12)
