"""Small ASGI responses the middleware answers with before the app runs: JSON errors, the login page, redirects."""
from __future__ import annotations

import html
import json

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Stable Diffusion web UI</title>
<style>
body {{ font-family: system-ui, sans-serif; display: flex; justify-content: center; margin-top: 12vh; }}
form {{ display: flex; flex-direction: column; gap: .6em; width: 18em; }}
input, button {{ font-size: 1em; padding: .4em; }}
#login_error {{ color: #b00; }}
</style></head>
<body><form method="post" action="/login" id="login_form">
<h1>Sign in</h1>
<p id="login_error" role="alert">{error}</p>
<label>User name <input name="username" id="login_username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" id="login_password" type="password" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{next}">
<button type="submit" id="login_submit">Sign in</button>
</form></body></html>
"""


def _headers(pairs) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


async def send_response(send, status: int, body: bytes, content_type: str, extra_headers=()) -> None:
    """Send a whole response through an ASGI ``send``."""
    headers = [("content-type", content_type), ("content-length", str(len(body))), *extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": _headers(headers)})
    await send({"type": "http.response.body", "body": body})


async def send_json_error(send, status: int, error: str, detail: str, extra_headers=()) -> None:
    """The API's error shape ``{"error", "detail", "field"}``."""
    body = json.dumps({"error": error, "detail": detail, "field": None}).encode()
    await send_response(send, status, body, "application/json", extra_headers)


async def send_login_page(send, status: int = 200, error: str = "", next_path: str = "/", extra_headers=()) -> None:
    page = LOGIN_PAGE.format(error=html.escape(error), next=html.escape(next_path, quote=True))
    await send_response(send, status, page.encode(), "text/html; charset=utf-8",
                        [("cache-control", "no-store"), *extra_headers])


async def send_redirect(send, location: str, extra_headers=()) -> None:
    await send_response(send, 303, b"", "text/plain", [("location", location), *extra_headers])


def cookie_header(name: str, value: str, max_age: int, secure: bool) -> tuple[str, str]:
    """A Set-Cookie header: HttpOnly, SameSite=Lax, whole site."""
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    return "set-cookie", "; ".join(parts)
