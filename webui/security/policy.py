"""SecurityPolicy: the users, hosts, origins and limits one running server enforces (built once by app.py)."""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from webui.security.credentials import FailureLimiter, PasswordBook
from webui.security.identity import TokenSigner, load_secret_key

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")
SESSION_MAX_AGE_S = 7 * 24 * 3600
CLIENT_MAX_AGE_S = 365 * 24 * 3600


def machine_names() -> set[str]:
    """This machine's host name, its addresses on every interface (what LAN clients type with --listen)."""
    names: set[str] = set()
    try:
        import psutil

        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family in (socket.AF_INET, socket.AF_INET6):
                    names.add(address.address.split("%")[0].lower())
    except Exception:  # no interface list on this platform: the host name still works
        pass
    try:
        host = socket.gethostname()
    except OSError:
        return names
    names.update({host.lower(), f"{host.lower()}.local"})
    try:
        for info in socket.getaddrinfo(host, None):
            names.add(str(info[4][0]).lower())
    except Exception:  # no resolver (or a sandbox that forbids it): the name alone
        pass
    return names


def normalise_host(host: str) -> str:
    """``"Example.com:7860"`` -> ``"example.com"``, ``"[::1]:80"`` -> ``"::1"``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


@dataclass
class SecurityPolicy:
    """What the middleware checks. ``ui_users``/``api_users`` hold hashes only (PasswordBook).

    Each side falls back on the other's users, so any auth flag protects the
    whole server; admins may read and stop every user's jobs.
    """

    signer: TokenSigner
    ui_users: PasswordBook = field(default_factory=lambda: PasswordBook({}))
    api_users: PasswordBook = field(default_factory=lambda: PasswordBook({}))
    admins: frozenset = frozenset()
    allowed_hosts: frozenset = frozenset(LOCAL_HOSTS)
    cors_origins: tuple = ()
    cors_origin_regex: str | None = None
    max_body_bytes: int = 256 << 20
    secure_cookies: bool = False
    limiter: FailureLimiter = field(default_factory=FailureLimiter)

    @classmethod
    def create(cls, *, secret_key_path: Path, listen_host: str = "127.0.0.1", ui_users: dict | None = None,
               api_users: dict | None = None, admins=(), allowed_hosts=(), cors_origins=(),
               cors_origin_regex: str | None = None, max_body_bytes: int = 256 << 20,
               secure_cookies: bool = False) -> "SecurityPolicy":
        """Hash the passwords, load (or create) the signing key and work out the allowed Host names."""
        hosts = set(LOCAL_HOSTS)
        if listen_host in ANY_ADDRESS:
            hosts |= machine_names()
        else:
            hosts.add(normalise_host(listen_host))
        hosts |= {normalise_host(h) if h != "*" else "*" for h in allowed_hosts if h.strip()}
        if cors_origin_regex:
            re.compile(cors_origin_regex)  # a bad pattern fails at start, not per request
        return cls(signer=TokenSigner(load_secret_key(secret_key_path)), ui_users=PasswordBook(ui_users or {}),
                   api_users=PasswordBook(api_users or {}), admins=frozenset(admins), allowed_hosts=frozenset(hosts),
                   cors_origins=tuple(o.rstrip("/") for o in cors_origins if o.strip()),
                   cors_origin_regex=cors_origin_regex or None, max_body_bytes=int(max_body_bytes),
                   secure_cookies=secure_cookies)

    # ---------------------------------------------------------------- checks
    @property
    def auth_required(self) -> bool:
        return bool(self.ui_users) or bool(self.api_users)

    def users_for_api(self) -> PasswordBook:
        return self.api_users if self.api_users else self.ui_users

    def users_for_ui(self) -> PasswordBook:
        return self.ui_users if self.ui_users else self.api_users

    def host_allowed(self, host: str | None) -> bool:
        if "*" in self.allowed_hosts:
            return True
        return bool(host) and normalise_host(host) in self.allowed_hosts

    def cors_allowed(self, origin: str) -> bool:
        """An origin the --cors-allow-origins flags open the server to."""
        origin = origin.rstrip("/")
        if origin in self.cors_origins or "*" in self.cors_origins:
            return True
        return bool(self.cors_origin_regex) and re.fullmatch(self.cors_origin_regex, origin) is not None
