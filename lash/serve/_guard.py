"""What every request of ``lash serve`` passes first: the token check.

It is plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which buffers and would
hold up the event stream). The token is accepted from an ``Authorization: Bearer`` header, from
a ``token`` query parameter (``EventSource`` cannot send headers), or from the cookie a
successful ``?token=`` request sets (so the web page's own scripts and styles load without it in
every URL). It is compared in constant time, never echoed, and taken out of the query string
before the request goes on, so the server's request log never shows it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from lash.serve._errors import ERROR_CODES, error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The cookie a successful ``?token=`` request sets (HttpOnly, SameSite=Strict).
TOKEN_COOKIE = "lash_serve_token"


async def send_error(send: Send, code: str, message: str, headers: list[Any]) -> None:
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": ERROR_CODES[code],
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class TokenGuard:
    """Refuse every request without the token (401 ``unauthorized``)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization") or ""
        scheme, _, bearer = authorization.partition(" ")
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        query = dict(pairs)
        if "token" in query:
            # Out of the query string the server logs each request with (uvicorn's access log
            # reads it from this scope when the response starts), right or wrong: a token is
            # never logged. The app has no use for it past this check.
            rest = [(key, value) for key, value in pairs if key != "token"]
            scope["query_string"] = urlencode(rest).encode("latin-1")
        if scheme.lower() == "bearer" and self._matches(bearer.strip()):
            await self.app(scope, receive, send)
            return
        if self._matches(_cookie(scope, TOKEN_COOKIE)):
            await self.app(scope, receive, send)
            return
        if self._matches(query.get("token")):
            await self.app(scope, receive, self._setting_cookie(send))
            return
        await send_error(
            send,
            "unauthorized",
            "this server needs its token (LASH_SERVE_TOKEN): send 'Authorization: Bearer "
            "<token>', or ?token=<token> where headers cannot be set (EventSource)",
            [(b"www-authenticate", b'Bearer realm="lash"')],
        )

    def _setting_cookie(self, send: Send) -> Send:
        cookie = (
            f"{TOKEN_COOKIE}={self._token.decode()}; Path=/; HttpOnly; SameSite=Strict"
        ).encode()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"set-cookie", cookie)]
            await send(message)

        return sending
