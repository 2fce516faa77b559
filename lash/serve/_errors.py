"""The one error shape of ``lash serve``: ``{"error": {"code": ..., "message": ...}}``.

Every 4xx and 5xx response has it, whatever failed (a route handler, the token check, the body
limit, an unknown path). Messages are lash's own (which name the session, field or cursor at
fault); an unexpected exception becomes ``internal_error`` with a fixed message, its traceback
going to the server's log only, never to the client.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from lash.errors import InputConflict, LashError, SessionBusy, SessionError, UnknownSession
from lash.serve._json import JsonResponse

log = logging.getLogger("lash.serve")

#: Every error code, with its HTTP status (the OpenAPI document lists them).
ERROR_CODES: dict[str, int] = {
    "invalid_request": 400,
    "invalid_json": 400,
    "invalid_session_id": 400,
    "invalid_cursor": 400,
    "unauthorized": 401,
    "not_found": 404,
    "unknown_session": 404,
    "unknown_turn": 404,
    "method_not_allowed": 405,
    "session_busy": 409,
    "input_conflict": 409,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "stopping": 503,
    "lash_error": 500,
    "internal_error": 500,
}


class ApiError(Exception):
    """An error response: ``code`` (one of :data:`ERROR_CODES`), a message for the client, and
    the response's extra ``headers`` (``Retry-After``...)."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers

    @property
    def status(self) -> int:
        return ERROR_CODES[self.code]


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JsonResponse(error_body(code, message), status_code=ERROR_CODES[code], headers=headers)


def api_error_of(exc: Exception) -> ApiError:
    """The response an exception raised by lash becomes."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UnknownSession):
        return ApiError("unknown_session", f"no session {exc.session_id!r} in the store")
    if isinstance(exc, SessionBusy):
        return ApiError("session_busy", str(exc))
    if isinstance(exc, InputConflict):
        return ApiError("input_conflict", str(exc))
    if isinstance(exc, SessionError):
        return ApiError("invalid_request", str(exc))
    if isinstance(exc, LashError):
        # lash's messages mask secret option values; still, only lash's own errors say more
        # than "internal error".
        log.warning("lash serve: %s: %s", type(exc).__name__, exc)
        return ApiError("lash_error", f"{type(exc).__name__}: {exc}")
    log.exception("lash serve: unexpected error", exc_info=exc)
    return ApiError("internal_error", "internal error (the server's log has the details)")


async def on_exception(request: Request, exc: Exception) -> Response:
    error = api_error_of(exc)
    return error_response(error.code, error.message, headers=error.headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, wrong method) in the one error shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "invalid_request")
    message = {
        "not_found": f"no such path: {request.url.path}",
        "method_not_allowed": f"{request.method} is not allowed on {request.url.path}",
    }.get(code, str(exc.detail))
    return error_response(code, message, headers=dict(exc.headers or {}))
