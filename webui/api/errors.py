"""Every API error as JSON: typed engine errors, validation errors, HTTP errors and crashes.

Body shape: ``{"error": <type name>, "detail": <message>, "field": <field or null>}``;
validation errors add ``"errors"``, a list of ``{"field", "message", "type"}``.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from webui.schemas import QueueFull, WebUIError

log = logging.getLogger(__name__)

API_PREFIXES = ("/sdapi/", "/api/")
QUEUE_FULL_RETRY_AFTER_S = 5


class PayloadTooLarge(WebUIError):
    """A request body or an uploaded image is larger than the server accepts."""

    http_status = 413

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class OptionForbidden(WebUIError):
    """An option this server does not let the API change (the outdir_* folders, without --allow-api-outdir)."""

    http_status = 403

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class JobFailed(WebUIError):
    """A queued job ended in failure; carries the HTTP status its reason deserves."""

    def __init__(self, message: str, http_status: int = 500, error_type: str = "JobFailed", field: str | None = None):
        super().__init__(message)
        self.http_status = http_status
        self.error_type = error_type
        self.field = field


def error_body(error: str, detail: str, field: str | None = None, **extra) -> dict:
    """The JSON body every error response uses."""
    return {"error": error, "detail": detail, "field": field, **extra}


def _field_name(loc) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def _webui_error(request: Request, exc: WebUIError) -> JSONResponse:
    headers = {}
    if isinstance(exc, QueueFull):
        headers["Retry-After"] = str(getattr(exc, "retry_after", QUEUE_FULL_RETRY_AFTER_S))
    name = getattr(exc, "error_type", None) or type(exc).__name__
    return JSONResponse(error_body(name, str(exc), getattr(exc, "field", None)),
                        status_code=exc.http_status, headers=headers)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = []
    for item in exc.errors():
        errors.append({"field": _field_name(item.get("loc", ())), "message": item.get("msg", ""),
                       "type": item.get("type", "")})
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "invalid request"
    return JSONResponse(error_body("ValidationError", detail, first["field"], errors=errors), status_code=422)


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return JSONResponse(error_body("HTTPException", detail), status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("API error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body(type(exc).__name__, str(exc) or type(exc).__name__), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(WebUIError, _webui_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


class BodySizeLimit:
    """ASGI middleware: answer 413 JSON when an API request declares a body over ``max_bytes``."""

    def __init__(self, app, max_bytes: int, prefixes: tuple[str, ...] = API_PREFIXES):
        self.app = app
        self.max_bytes = max_bytes
        self.prefixes = prefixes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path", "").startswith(self.prefixes):
            for name, value in scope.get("headers", ()):
                if name == b"content-length":
                    try:
                        size = int(value)
                    except ValueError:
                        size = 0
                    if size > self.max_bytes:
                        response = JSONResponse(
                            error_body("PayloadTooLarge",
                                       f"request body of {size} bytes is over the limit of {self.max_bytes} bytes"),
                            status_code=413)
                        await response(scope, receive, send)
                        return
        await self.app(scope, receive, send)
