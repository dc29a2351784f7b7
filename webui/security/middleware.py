"""SecurityMiddleware: one ASGI layer in front of the API and gradio that applies the SecurityPolicy.

In order: the Host header must be one of ours (DNS rebinding); ``file=`` and
``proxy=`` URLs that would make the server fetch the network are refused;
state-changing requests from another origin are refused (Origin, else
Sec-Fetch-Site) unless the CORS flags allow that origin; CORS preflights are
answered here; the caller is authenticated (HTTP Basic or the login cookie) or
given a signed client id; the request body is counted while it is read;
security headers go on every response and CORS headers only for allowed origins.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
from urllib.parse import parse_qs, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from webui.schemas import WebUIError
from webui.security import responses
from webui.security.identity import (
    ADMIN_HEADER, CLIENT_COOKIE, OWNER_HEADER, SESSION_COOKIE, USER_HEADER, Identity, new_client_id,
)
from webui.security.policy import CLIENT_MAX_AGE_S, SESSION_MAX_AGE_S, SecurityPolicy

API_PREFIXES = ("/sdapi/", "/api/", "/controlnet", "/internal", "/docs", "/redoc", "/openapi.json")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# gradio's /file=<url> fetches (and /proxy=<url>) would turn the server into a proxy into the network.
URL_FETCH = re.compile(r"/(file=|file/|proxy=)\s*[a-z][a-z0-9+.-]*:", re.IGNORECASE)
TRUSTED_HEADERS = {OWNER_HEADER.encode(), ADMIN_HEADER.encode(), USER_HEADER.encode()}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"SAMEORIGIN"),
    (b"content-security-policy", b"frame-ancestors 'self'"),
    (b"referrer-policy", b"same-origin"),
]
LOGIN_BODY_LIMIT = 8192
log = logging.getLogger(__name__)
ANONYMOUS_API_OWNER = "api"


class BodyTooLarge(WebUIError):
    """The request body grew past the server's limit while it was read."""

    http_status = 413


def _is_api(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _basic_credentials(headers: Headers) -> tuple[str, str] | None:
    value = headers.get("authorization", "")
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


def _same_origin(origin: str, host: str | None) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return bool(host) and parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def _safe_next(path: str | None) -> str:
    """A local path to go back to after signing in (never another site)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


class SecurityMiddleware:
    """Apply ``policy`` to every HTTP and WebSocket request; see the module docstring."""

    def __init__(self, app, policy: SecurityPolicy):
        self.app = app
        self.policy = policy

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, error, detail = refusal
            await self._refuse(scope, send, status, error, detail)
            return
        origin = headers.get("origin")
        cors = origin is not None and not _same_origin(origin, headers.get("host")) and self.policy.cors_allowed(origin)
        if scope["type"] == "http" and scope["method"] == "OPTIONS" and cors \
                and "access-control-request-method" in headers:
            await self._preflight(send, origin, headers)
            return
        path = scope.get("path", "")
        if scope["type"] == "http" and self.policy.auth_required and path in ("/login", "/logout"):
            await self._login_route(scope, receive, send, headers)
            return
        identity, new_cookie, failure = await self._identify(scope, headers)
        if failure is not None:
            await self._auth_failure(scope, send, headers, *failure, cors_origin=origin if cors else None)
            return
        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in TRUSTED_HEADERS] + [
            (OWNER_HEADER.encode(), identity.owner.encode()),
            (ADMIN_HEADER.encode(), b"1" if identity.admin else b"0"),
            (USER_HEADER.encode(), (identity.user or "").encode()),
        ]
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self._forward(scope, receive, send, new_cookie, origin if cors else None)

    # ------------------------------------------------------------ checks before the app
    def _refusal(self, scope, headers: Headers) -> tuple[int, str, str] | None:
        host = headers.get("host")
        if not self.policy.host_allowed(host):
            return (400, "HostNotAllowed", f"Host {host!r} is not served here: start the server with "
                    f"--allowed-hosts naming it")
        path = scope.get("path", "")
        if URL_FETCH.search(path):
            return 403, "Forbidden", "this server does not fetch URLs"
        origin = headers.get("origin")
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        changes_state = method in STATE_CHANGING or method == "WEBSOCKET"
        if origin is not None and not _same_origin(origin, host):
            if self.policy.cors_allowed(origin):
                return None
            if changes_state or method == "OPTIONS":
                return 403, "CrossOriginRefused", "requests from another site are refused"
        elif origin is None and changes_state and headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            return 403, "CrossOriginRefused", "requests from another site are refused"
        return None

    async def _identify(self, scope, headers: Headers):
        """(identity, Set-Cookie header or None, failure (status, detail, retry-after) or None).

        Without accounts, a browser is known by the signed cookie it is given on
        its first page; an API client that never got one (a script on this
        machine) is the one shared "api" client, as A1111 scripts expect. With
        accounts, every request names its user (login cookie or HTTP Basic).
        """
        policy = self.policy
        path = scope.get("path", "")
        if not policy.auth_required:
            client_id = policy.signer.unsign(_cookie(headers, CLIENT_COOKIE))
            cookie = None
            if not client_id and _is_api(path):
                return Identity(owner=ANONYMOUS_API_OWNER), None, None
            if not client_id:
                client_id = new_client_id()
                cookie = responses.cookie_header(CLIENT_COOKIE, policy.signer.sign(client_id, CLIENT_MAX_AGE_S),
                                                 CLIENT_MAX_AGE_S, policy.secure_cookies)
            return Identity(owner=f"client:{client_id}"), cookie, None
        book = policy.users_for_api() if _is_api(path) else policy.users_for_ui()
        address = self._address(scope)
        session = policy.signer.unsign(_cookie(headers, SESSION_COOKIE))
        user = session[5:] if session and session.startswith("user:") and session[5:] in book else None
        if user is None:
            credentials = _basic_credentials(headers)
            if credentials is not None:
                wait = policy.limiter.retry_after(address)
                if wait:
                    return None, None, (429, f"too many failed sign-ins; try again in {wait} s", wait)
                if await run_in_threadpool(book.verify, *credentials):  # argon2 takes CPU time: off the loop
                    user = credentials[0]
                else:
                    policy.limiter.failed(address)
                    log.warning("failed HTTP Basic sign-in for %r from %s", credentials[0][:64], address)
                    return None, None, (401, "wrong user name or password", 0)
        if user is None:
            return None, None, (401, "sign in first (HTTP Basic credentials or the login page)", 0)
        return Identity(owner=f"user:{user}", user=user, admin=user in policy.admins), None, None

    @staticmethod
    def _address(scope) -> str:
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    # ------------------------------------------------------------ answers
    async def _refuse(self, scope, send, status: int, error: str, detail: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await responses.send_json_error(send, status, error, detail, self._header_pairs())

    async def _auth_failure(self, scope, send, headers: Headers, status: int, detail: str, wait: int,
                            cors_origin: str | None = None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        extra = self._header_pairs()
        if cors_origin is not None:  # an allowed page may read why it was refused
            extra += [("access-control-allow-origin", cors_origin), ("access-control-allow-credentials", "true"),
                      ("vary", "Origin")]
        if status == 429:
            extra.append(("retry-after", str(wait)))
        path = scope.get("path", "")
        wants_page = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
        if status == 401 and wants_page and not _is_api(path):
            query = scope.get("query_string", b"").decode("latin-1")
            target = _safe_next(path + (f"?{query}" if query else ""))
            await responses.send_redirect(send, "/login?next=" + _quote(target), extra)
            return
        if status == 401:
            extra.append(("www-authenticate", 'Basic realm="Stable Diffusion web UI", charset="UTF-8"'))
        await responses.send_json_error(send, status, "Unauthorized" if status == 401 else "TooManyRequests",
                                        detail, extra)

    async def _preflight(self, send, origin: str, headers: Headers) -> None:
        extra = self._header_pairs() + [
            ("access-control-allow-origin", origin), ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            ("access-control-allow-headers", headers.get("access-control-request-headers", "")[:1000]),
            ("access-control-max-age", "600"), ("vary", "Origin"),
        ]
        await responses.send_response(send, 200, b"", "text/plain", extra)

    async def _login_route(self, scope, receive, send, headers: Headers) -> None:
        policy = self.policy
        extra = self._header_pairs()
        if scope["path"] == "/logout":
            extra.append(responses.cookie_header(SESSION_COOKIE, "", 0, policy.secure_cookies))
            await responses.send_redirect(send, "/login", extra)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["method"] != "POST":
            await responses.send_login_page(send, next_path=_safe_next(query.get("next", ["/"])[0]),
                                            extra_headers=extra)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > LOGIN_BODY_LIMIT:
                await responses.send_json_error(send, 413, "PayloadTooLarge", "sign-in form too large", extra)
                return
            if not message.get("more_body"):
                break
        form = parse_qs(body.decode("utf-8", "replace"))
        name, password = form.get("username", [""])[0], form.get("password", [""])[0]
        next_path = _safe_next(form.get("next", ["/"])[0])
        address = self._address(scope)
        wait = policy.limiter.retry_after(address)
        if wait:
            await responses.send_login_page(send, 429, f"Too many failed sign-ins. Try again in {wait} s.",
                                            next_path, extra + [("retry-after", str(wait))])
            return
        if not await run_in_threadpool(policy.users_for_ui().verify, name, password):
            policy.limiter.failed(address)
            log.warning("failed sign-in for %r from %s", name[:64], address)
            await responses.send_login_page(send, 401, "Wrong user name or password.", next_path, extra)
            return
        extra.append(responses.cookie_header(SESSION_COOKIE, policy.signer.sign(f"user:{name}", SESSION_MAX_AGE_S),
                                             SESSION_MAX_AGE_S, policy.secure_cookies))
        await responses.send_redirect(send, next_path, extra)

    def _header_pairs(self) -> list[tuple[str, str]]:
        return [(k.decode(), v.decode()) for k, v in SECURITY_HEADERS]

    # ------------------------------------------------------------ the app, with limits and headers
    async def _forward(self, scope, receive, send, new_cookie, cors_origin: str | None) -> None:
        limit = self.policy.max_body_bytes
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await responses.send_json_error(send, 413, "PayloadTooLarge",
                                            f"request body of {declared} bytes is over the limit of {limit} bytes",
                                            self._header_pairs())
            return
        received = 0
        started = False
        too_large: BodyTooLarge | None = None

        async def counting_receive():
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = BodyTooLarge(f"request body is over the limit of {limit} bytes")
                    raise too_large
            return message

        async def guarded_send(message):
            nonlocal started
            if too_large is not None:
                # Whatever the app makes of the cut-off body (a 400, a 500), the answer is 413.
                if not started:
                    started = True
                    await responses.send_json_error(send, 413, "PayloadTooLarge", str(too_large),
                                                    self._header_pairs())
                return
            if message["type"] == "http.response.start":
                started = True
                kept = [(k, v) for k, v in message.get("headers", [])
                        if not k.lower().startswith(b"access-control-")
                        and k.lower() not in {name for name, _ in SECURITY_HEADERS}]
                kept += SECURITY_HEADERS
                if cors_origin is not None:
                    kept += [(b"access-control-allow-origin", cors_origin.encode("latin-1")),
                             (b"access-control-allow-credentials", b"true"), (b"vary", b"Origin")]
                if new_cookie is not None:
                    kept.append((new_cookie[0].encode(), new_cookie[1].encode("latin-1")))
                message = {**message, "headers": kept}
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if too_large is None:
                raise
            # The app failed on the cut-off body in its own way; the client gets (or already got) the 413.
            if not started:
                await responses.send_json_error(send, 413, "PayloadTooLarge", str(too_large), self._header_pairs())


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")
