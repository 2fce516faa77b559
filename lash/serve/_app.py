"""The ASGI app of ``lash serve``: :func:`create_app` and its route handlers.

Every handler goes through the core's public operations (``enqueue``, ``current``,
``cancel_turn``, ``observe``, ``processes.list``, ``approvals``, ``approve``...), so the app
serves sessions that other processes run as well as the turns it runs itself. The request and
response shapes are in the package docstring (``lash.serve``) and the OpenAPI document
(``/openapi.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from lash._contract.graph import GraphNode
from lash._contract.serialization import to_data
from lash._kernel.core import LashCore
from lash._kernel.event_json import result_data, turn_end_data
from lash._kernel.observation import cursor_of
from lash._kernel.turn import new_turn_id
from lash._store.ids import check_session_id
from lash.cli._sessions_common import session_exists
from lash.errors import LashError, SessionError, UnknownSession
from lash.serve._errors import ApiError, on_exception, on_http_exception
from lash.serve._fanout import Feeds, event_stream
from lash.serve._guard import ASGIApp, Receive, Scope, Send, TokenGuard
from lash.serve._json import JsonResponse
from lash.serve._openapi import openapi
from lash.serve._stream import checked_after

log = logging.getLogger("lash.serve")

#: The largest request body accepted by default (bytes): an input may be 1 MiB of UTF-8, which
#: JSON escaping can make larger.
MAX_BODY = 4 * 1024 * 1024

#: Turn ids the API accepts (the kernel makes ``turn-`` + 28 hex digits).
_TURN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

#: Seconds a client refused with ``503 stopping`` is told to wait (``Retry-After``) before it
#: sends the request again: about what a server takes to start again.
RETRY_AFTER_STOPPING = 2

#: The web page's files (served at ``/`` and ``/static/``).
STATIC = Path(__file__).parent / "static"

Handler = Callable[[Request], Awaitable[Response]]


class EncodedPath:
    """Route on the path as the client sent it, still percent-encoded (ASGI's ``raw_path``);
    the handlers decode each path parameter (:func:`_param`).

    A session id may hold slashes (a composite key, ``tenant/user/conversation``), sent as
    ``%2F``; routed on the decoded path, they are the path's own slashes, and no route matches.
    (A server that gives no ``raw_path`` is routed on the decoded path.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") if scope["type"] == "http" else None
        if raw:
            # A copy: the server's scope keeps its decoded path (for what else reads it).
            scope = {**scope, "path": raw.decode("latin-1"), "lash_encoded_path": True}
        await self.app(scope, receive, send)


def _param(request: Request, name: str, code: str = "invalid_request") -> str:
    """Path parameter ``name``, percent-decoded as UTF-8 (RFC 3986). An escape that is not
    UTF-8 (``caf%E9``, Latin-1) is ``code`` (400): decoded leniently, every such byte became
    U+FFFD, and different ids (``caf%E9``, ``caf%E8``) one and the same."""
    value = str(request.path_params[name])
    if not request.scope.get("lash_encoded_path"):
        return value
    try:
        # (the raw path was read as Latin-1: back to its bytes, then decoded)
        return unquote_to_bytes(value.encode("latin-1")).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(
            code, f"the path's {name} {value[:80]!r} is not UTF-8 once its %-escapes are decoded"
        ) from None


def _session_id(request: Request) -> str:
    session_id = _param(request, "session_id", "invalid_session_id")
    try:
        return check_session_id(session_id)
    except SessionError as exc:
        raise ApiError("invalid_session_id", str(exc)) from None


def _turn_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or _TURN_ID.fullmatch(value) is None:
        raise ApiError(
            "invalid_request",
            f"{where}: {json.dumps(value)[:80]} is not a turn id (1 to 128 of A-Z a-z 0-9 . _ : -, "
            "starting with a letter or digit)",
        )
    return value


# Python's json reads more than JSON text: NaN and Infinity, numbers beyond a double (1e999 is
# read as infinity), and \ud800 escapes that decode to lone surrogates, which are not Unicode.
# Taken into the store, each would break later and elsewhere (a store's JSON functions refuse
# infinity; a surrogate fails every response and event that carries it), so read_json refuses
# them at the door, with nesting deeper than the parser goes: 400 invalid_json, never a 500.


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond what a double holds")
    return value


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request, limit: int, fields: Mapping[str, type]) -> dict[str, Any]:
    """The request's JSON object, checked: at most ``limit`` bytes, ``Content-Type:
    application/json``, JSON text (no NaN, infinity or lone surrogate), only the keys of
    ``fields``, each of its type (or null)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(
            "unsupported_media_type",
            f"send the request body as JSON (Content-Type: application/json), not {kind or 'none'}",
        )
    length = request.headers.get("content-length")
    too_large = ApiError(
        "body_too_large", f"the request body is larger than this server accepts ({limit} bytes)"
    )
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        data = json.loads(body, parse_float=_finite, parse_constant=_constant)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("unicode_escape").decode()
        raise ApiError(
            "invalid_json",
            f"the request body is not Unicode text: it holds a lone surrogate ({bad}); "
            "a character beyond U+FFFF is escaped as its surrogate pair",
        ) from None
    except ValueError as exc:  # (JSONDecodeError, UnicodeDecodeError, and _finite's)
        raise ApiError("invalid_json", f"the request body is not JSON: {exc}") from None
    except RecursionError:
        raise ApiError(
            "invalid_json", "the request body is nested deeper than this server reads"
        ) from None
    if not isinstance(data, dict):
        raise ApiError("invalid_request", "the request body must be a JSON object")
    for key, value in data.items():
        expected = fields.get(key)
        if expected is None:
            known = ", ".join(sorted(fields))
            raise ApiError("invalid_request", f"unknown field {key!r} (known: {known})")
        if value is not None and not isinstance(value, expected):
            raise ApiError(
                "invalid_request", f"field {key!r} must be a {expected.__name__}, not {value!r:.60}"
            )
    return data


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(
            "invalid_request", f"query parameter {name!r} is true or false, not {value!r}"
        )
    return value in ("true", "1")


def _stopping(session_id: str, turn_id: str, what: str) -> ApiError:
    """``503 stopping`` with ``Retry-After``: turn ``turn_id`` ``what`` (did not start, was
    cancelled before it started) as this server stops; its client sends it again."""
    return ApiError(
        "stopping",
        f"session {session_id!r}: turn {turn_id!r} {what}: this server is stopping; send it "
        "again (to another server, or to this one once it is back)",
        headers={"Retry-After": str(RETRY_AFTER_STOPPING)},
    )


class _Api:
    """The handlers, over one core; tracks the turns it runs so shutdown can stop them."""

    def __init__(self, core: LashCore, max_body: int) -> None:
        self.core = core
        self.max_body = max_body
        self.turns: set[asyncio.Task[Any]] = set()
        #: (session id, turn id) of the turns this app runs now
        self.running: set[tuple[str, str]] = set()
        self.feeds = Feeds(core)
        #: set as the app starts to stop: it starts no more turns (503 stopping)
        self.stopping = False

    async def _require(self, session_id: str) -> None:
        if not await session_exists(self.core.store, session_id):
            raise UnknownSession(session_id)

    async def index(self, request: Request) -> Response:
        page = STATIC / "index.html"
        if page.is_file():
            return FileResponse(page)
        return JsonResponse({"name": "lash serve", "openapi": "/openapi.json"})

    async def openapi(self, request: Request) -> Response:
        return JsonResponse(openapi())

    async def list_sessions(self, request: Request) -> Response:
        rows = await self.core.store.list_sessions()
        return JsonResponse({"sessions": [to_data(row) for row in rows]})

    async def get_session(self, request: Request) -> Response:
        session_id = _session_id(request)
        await self._require(session_id)
        view = await self.core.current(session_id)
        return JsonResponse(
            {
                "session_id": view.session_id,
                "revision": view.revision,
                "turns": view.turns,
                "cursor": view.cursor,
                "config": to_data(view.config),
                "usage": {source: to_data(usage) for source, usage in sorted(view.usage.items())},
                "inputs": [to_data(item) for item in view.inputs],
                "nodes": [to_data(node, GraphNode) for node in view.nodes],
            }
        )

    async def delete_session(self, request: Request) -> Response:
        session_id = _session_id(request)
        await self.core.delete_session(session_id)
        return Response(status_code=204)

    async def list_inputs(self, request: Request) -> Response:
        session_id = _session_id(request)
        settled = _flag(request, "settled")
        items = await self.core.inputs(session_id, settled=settled)
        return JsonResponse({"inputs": [to_data(item) for item in items]})

    async def enqueue(self, request: Request) -> Response:
        session_id = _session_id(request)
        body = await read_json(
            request, self.max_body, {"text": str, "key": str, "ingress": str, "items": list}
        )
        if not isinstance(body.get("text"), str):
            raise ApiError("invalid_request", "field 'text' is required: the input's text")
        pending = await self.core.enqueue(
            session_id,
            body["text"],
            key=body.get("key"),
            ingress=body.get("ingress") or "next_turn",
            items=body.get("items") or (),
            source="serve",
        )
        return JsonResponse({"input": to_data(pending)}, status_code=201)

    async def _run_turn(self, session_id: str, text: str, turn_id: str) -> Any:
        session = await self.core.session(session_id).open()
        try:
            return await session.turn(text, id=turn_id).run()
        finally:
            await session.close()

    def _track(self, task: asyncio.Task[Any], turn: tuple[str, str], *, awaited: bool) -> None:
        self.turns.add(task)
        self.running.add(turn)

        def done(task: asyncio.Task[Any]) -> None:
            self.turns.discard(task)
            self.running.discard(turn)
            # (an awaited turn's error is the response's; a turn started with 202 has no one
            # else to tell)
            if not awaited and not task.cancelled() and task.exception() is not None:
                log.error("lash serve: a turn failed to run", exc_info=task.exception())

        task.add_done_callback(done)

    async def start_turn(self, request: Request) -> Response:
        session_id = _session_id(request)
        wait = _flag(request, "wait")
        body = await read_json(request, self.max_body, {"text": str, "id": str})
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError("invalid_request", "field 'text' is required: the turn's input")
        turn_id = (
            _turn_id(body["id"], "field 'id'") if body.get("id") is not None else new_turn_id()
        )
        page = await self.core.store.read_events(session_id, after=0, limit=0)
        # A turn id the session committed already is not run again; its end is the answer (with
        # or without wait): a 202 would give a cursor after its turn_committed, and a client
        # following it would wait for ever. (Read after the cursor: a turn committed in between
        # is found here, one committed later has its event after the cursor.)
        record = await self.core.turn_record(session_id, turn_id)
        if record is not None:
            return JsonResponse(
                {"turn": turn_end_data(turn_id, record.index, dict(record.result), [])}
            )
        if self.stopping:
            # A server that stops still serves the connections it has until they close (uvicorn
            # waits for them): a turn started now would not be among those stop() cancels, and
            # a client waiting for it would wait out the server's grace for a broken response.
            # (Checked with no await before the task is tracked: stop() cancels every turn
            # started before this point.)
            raise _stopping(session_id, turn_id, "was not started")
        task = asyncio.ensure_future(self._run_turn(session_id, text, turn_id))
        self._track(task, (session_id, turn_id), awaited=wait)
        if not wait:
            data = {"session_id": session_id, "turn_id": turn_id, "cursor": cursor_of(page.last)}
            return JsonResponse(data, status_code=202)
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # this request is cancelled (the client went away): the turn goes on
            # The turn was cancelled (the server stops): it committed so, unless it was still
            # waiting for the session then. Then nothing was committed, as for a turn asked
            # for after the stop began, and its client is told the same: send it again.
            record = await self.core.turn_record(session_id, turn_id)
            if record is None:
                raise _stopping(
                    session_id, turn_id, "was cancelled before it started: nothing was committed"
                ) from None
            return JsonResponse(
                {"turn": turn_end_data(turn_id, record.index, dict(record.result), [])}
            )
        return JsonResponse(
            {"turn": turn_end_data(turn_id, result.index, result_data(result), result.tool_calls)}
        )

    async def get_turn(self, request: Request) -> Response:
        session_id = _session_id(request)
        turn_id = _turn_id(_param(request, "turn_id"), "path")
        record = await self.core.turn_record(session_id, turn_id)
        if record is None:
            running = (session_id, turn_id) in self.running
            raise ApiError(
                "unknown_turn",
                f"session {session_id!r} has no committed turn {turn_id!r}"
                + (" yet: it is running" if running else ""),
            )
        return JsonResponse({"turn": turn_end_data(turn_id, record.index, dict(record.result), [])})

    async def cancel_turn(self, request: Request) -> Response:
        session_id = _session_id(request)
        turn_id = _turn_id(_param(request, "turn_id"), "path")
        reason = None
        if request.headers.get("content-length", "0") != "0":
            reason = (await read_json(request, self.max_body, {"reason": str})).get("reason")
        receipt = await self.core.cancel_turn(session_id, turn_id, reason=reason, origin="serve")
        return JsonResponse(
            {
                "status": receipt.status,
                "session_id": session_id,
                "turn_id": turn_id,
                "record": None if receipt.record is None else to_data(receipt.record),
            }
        )

    async def processes(self, request: Request) -> Response:
        session_id = _session_id(request)
        found = await self.core.processes.list(session_id=session_id)
        # (the store reads session None as any session: keep this session's only)
        own = [to_data(p) for p in found if p.session_id == session_id]
        return JsonResponse({"processes": own})

    async def approvals(self, request: Request) -> Response:
        session_id = _session_id(request)
        pending = await self.core.approvals(session_id)
        return JsonResponse({"approvals": [to_data(item) for item in pending]})

    async def approve(self, request: Request) -> Response:
        session_id = _session_id(request)
        call_id = _param(request, "call_id")
        body = await read_json(request, self.max_body, {"decision": str, "reason": str, "key": str})
        if body.get("decision") not in ("approve", "reject"):
            raise ApiError("invalid_request", "field 'decision' is 'approve' or 'reject'")
        answer = await self.core.approve(
            session_id,
            call_id,
            decision=body["decision"],
            reason=body.get("reason"),
            key=body.get("key"),
            source="serve",
        )
        return JsonResponse({"answer": to_data(answer)})

    async def events(self, request: Request) -> Response:
        session_id = _session_id(request)
        protocol = request.query_params.get("protocol", "lash")
        if protocol not in ("lash", "ag-ui"):
            raise ApiError("invalid_request", f"protocol is 'lash' or 'ag-ui', not {protocol!r}")
        # Last-Event-ID first: an EventSource reconnects to the same URL, so a ``?after=`` there
        # is where the stream began, and the header is where it got to.
        after = request.headers.get("last-event-id") or request.query_params.get("after") or None
        # (no 404 for a session that does not exist yet: its first input or turn will show)
        await checked_after(self.core, session_id, after)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        if request.method == "HEAD":
            # The headers only: a stream would go on unseen (the server sends no body to a
            # HEAD), and the connection would never serve its next request.
            return Response(media_type="text/event-stream", headers=headers)
        return StreamingResponse(
            event_stream(self.feeds, session_id, after, protocol=protocol),
            media_type="text/event-stream",
            headers=headers,
        )

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/sessions", self.list_sessions, methods=["GET"]),
            Route("/sessions/{session_id}", self.get_session, methods=["GET"]),
            Route("/sessions/{session_id}", self.delete_session, methods=["DELETE"]),
            Route("/sessions/{session_id}/inputs", self.list_inputs, methods=["GET"]),
            Route("/sessions/{session_id}/inputs", self.enqueue, methods=["POST"]),
            Route("/sessions/{session_id}/turns", self.start_turn, methods=["POST"]),
            Route("/sessions/{session_id}/turns/{turn_id}", self.get_turn, methods=["GET"]),
            Route(
                "/sessions/{session_id}/turns/{turn_id}/cancel", self.cancel_turn, methods=["POST"]
            ),
            Route("/sessions/{session_id}/processes", self.processes, methods=["GET"]),
            Route("/sessions/{session_id}/approvals", self.approvals, methods=["GET"]),
            Route("/sessions/{session_id}/approvals/{call_id}", self.approve, methods=["POST"]),
            Route("/sessions/{session_id}/events", self.events, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static"),
        ]

    async def stop_turns(self) -> None:
        """Cancel the turns still running (each commits as cancelled), and wait for them."""
        tasks = list(self.turns)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def stop(self) -> None:
        """Stop serving: cancel the running turns (each commits as cancelled), then end the
        event streams, once each has sent those commits. From now on, a request for a turn is
        refused (``503 stopping``); the others still answer."""
        self.stopping = True
        await self.stop_turns()
        self.feeds.end()


def create_app(core: LashCore, *, token: str | None = None, max_body: int = MAX_BODY) -> Starlette:
    """The ``lash serve`` HTTP API over ``core``, as an ASGI app (Starlette) a host can run
    with any ASGI server or mount in its own app.

    ``token``: when given, every request must carry it (``Authorization: Bearer <token>``, or
    ``?token=`` for ``EventSource``); ``max_body``: the largest request body accepted, in bytes.
    The app does not close ``core``; turns it still runs when it shuts down are cancelled (each
    commits as cancelled).
    """
    api = _Api(core, max_body)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await api.stop()

    app = Starlette(
        routes=api.routes(),
        # (the token check first: it takes the token out of the server's own scope, which the
        # request log reads)
        middleware=[
            *([Middleware(TokenGuard, token=token)] if token else []),
            Middleware(EncodedPath),
        ],
        # ApiError and lash's errors are answers, not crashes; anything else is a crash (500,
        # and the server logs its traceback).
        exception_handlers={
            HTTPException: on_http_exception,
            ApiError: on_exception,
            LashError: on_exception,
            Exception: on_exception,
        },
        lifespan=lifespan,
    )
    app.state.lash_core = core
    # Stops the turns and ends every event stream (complete responses; clients resume from
    # their cursors): lash serve calls it as it starts to stop, rather than wait for streams
    # that never end, then cut them off.
    app.state.lash_stop = api.stop
    return app
