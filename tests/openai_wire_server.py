"""A real HTTP server on 127.0.0.1 that speaks the Chat Completions wire protocol, for tests.

Tests queue one :class:`Reply` per expected request; the server answers each request with the next
reply (streamed as Server-Sent Events when the request asks ``"stream": true``, else one JSON
document) and records every request it receives (path, headers, JSON body) for assertions::

    with WireServer() as server:
        server.push(Reply(text=["Hel", "lo"]), Reply(status=429, headers={"Retry-After": "0.05"}))
        ... point the provider at server.base_url ...
        assert server.requests[0].body["model"] == "gpt-test"

The server runs in a background thread (stdlib ``ThreadingHTTPServer``), so it is independent of
the event loop of the code under test.
"""

from __future__ import annotations

import collections
import json
import socket
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import attrs


@attrs.frozen
class WireToolCall:
    """A tool call to stream: ``arguments`` is sent as these fragments, in order."""

    id: str
    name: str
    arguments: Sequence[str] = ()


@attrs.frozen
class Reply:
    """One canned answer.

    To a ``POST``, with ``status`` 200 the reply is a completion: ``text`` (streamed one element
    per SSE event), ``tool_calls`` (their argument fragments interleaved round-robin across
    events, so parallel calls arrive mixed like real servers send them), ``usage`` and
    ``finish_reason``. With another status, ``body`` is sent as the JSON error body. ``delay``
    waits before answering (timeouts); ``events`` replaces the generated SSE data lines with raw
    ones. A ``GET`` (``/models``) is answered with ``status`` and ``body`` as JSON (see
    :func:`model_list`).
    """

    status: int = 200
    text: Sequence[str] = ()
    tool_calls: Sequence[WireToolCall] = ()
    usage: Mapping[str, Any] | None = None
    finish_reason: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: Any = None
    delay: float = 0.0
    events: Sequence[str] | None = None


@attrs.frozen
class RecordedRequest:
    """What the server received."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any


def model_list(*ids: str) -> Reply:
    """The reply of an OpenAI-compatible server to ``GET /models``, listing ``ids``."""
    return Reply(
        body={
            "object": "list",
            "data": [{"id": i, "object": "model", "owned_by": "test"} for i in ids],
        }
    )


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def sse_events(reply: Reply, include_usage: bool) -> list[str]:
    """The ``data:`` payloads a Chat Completions server streams for ``reply``."""
    if reply.events is not None:
        return list(reply.events)

    def chunk(delta: Mapping[str, Any], finish: str | None = None) -> str:
        return json.dumps(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "model": "test-model",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in reply.text]
    for index, call in enumerate(reply.tool_calls):
        head = {"index": index, "id": call.id, "type": "function"}
        out.append(chunk({"tool_calls": [{**head, "function": {"name": call.name}}]}))
    # Round-robin the argument fragments so parallel calls interleave.
    longest = max((len(c.arguments) for c in reply.tool_calls), default=0)
    for step in range(longest):
        for index, call in enumerate(reply.tool_calls):
            if step < len(call.arguments):
                fragment = {"index": index, "function": {"arguments": call.arguments[step]}}
                out.append(chunk({"tool_calls": [fragment]}))
    out.append(chunk({}, _finish(reply)))
    if include_usage and reply.usage is not None:
        out.append(json.dumps({"id": "chatcmpl-test", "choices": [], "usage": dict(reply.usage)}))
    out.append("[DONE]")
    return out


def json_completion(reply: Reply) -> dict[str, Any]:
    """The JSON document a non-streaming server answers ``reply`` with."""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(reply.text) or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": "".join(c.arguments)},
            }
            for c in reply.tool_calls
        ]
    data: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
    }
    if reply.usage is not None:
        data["usage"] = dict(reply.usage)
    return data


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive, as real servers do: the provider's connection pool gets reused.
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _receive(self, method: str) -> tuple[Any, Reply | None]:
        """Read and record the request; return its body and the reply queued for it."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        owner = self.server.owner
        owner.record(
            RecordedRequest(
                method=method,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
        )
        return body, owner.next_reply()

    def do_GET(self) -> None:
        # `GET /models`: a reply's `body` is sent as the JSON document, whatever its status.
        _, reply = self._receive("GET")
        if reply is None:
            self._json(418, {"error": {"message": "wire server: no reply queued"}}, {})
        else:
            self._json(reply.status, reply.body, reply.headers)

    def do_POST(self) -> None:
        body, reply = self._receive("POST")
        owner = self.server.owner
        try:
            if reply is None:
                self._json(418, {"error": {"message": "wire server: no reply queued"}}, {})
                return
            # Wake early when the server is closing, so a slow reply never outlives its test.
            if reply.delay and owner.closing.wait(reply.delay):
                self.close_connection = True
                return
            if reply.status != 200:
                self._json(reply.status, reply.body, reply.headers)
            elif isinstance(body, dict) and body.get("stream"):
                self._sse(owner.sse_frames(reply, body), reply.headers)
            else:
                self._json(200, owner.completion(reply), reply.headers)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout test): nothing left to answer.
            self.close_connection = True

    def _json(self, status: int, payload: Any, headers: Mapping[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, frames: list[str], headers: Mapping[str, str]) -> None:
        # Chunked transfer encoding, one HTTP chunk per event, as streaming servers send it.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        for frame in frames:
            data = frame.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    # Join handler threads on close so none outlives the test (they wake on `closing`).
    daemon_threads = False
    block_on_close = True

    def __init__(self, owner: WireServer) -> None:
        self.owner = owner
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.accepted = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        with self._open_lock:
            self._open.add(conn)
            self.accepted += 1
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that closes a connection early (a stream abandoned after an error event, a
        # timeout) resets it: normal for HTTP clients, not a server failure worth printing.
        if isinstance(sys.exception(), ConnectionError):
            return
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        """End idle keep-alive connections, so their handler threads finish and can be joined."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer


class WireServer:
    """The test server: start it (``with`` block), queue replies, read the recorded requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: collections.deque[Reply] = collections.deque()
        self._requests: list[RecordedRequest] = []
        self.closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._server = _Server(self)
        # A short poll interval keeps shutdown (and so each test's teardown) fast.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.drop_connections()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "the server is not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What to configure as the provider's ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def sse_frames(self, reply: Reply, body: Mapping[str, Any]) -> list[str]:
        """The Server-Sent Event frames streamed for ``reply`` (a subclass speaking another
        wire format overrides this and :meth:`completion`)."""
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return [f"data: {event}\n\n" for event in sse_events(reply, include_usage)]

    def completion(self, reply: Reply) -> Any:
        """The JSON document a non-streamed request is answered with."""
        return json_completion(reply)

    def push(self, *replies: Reply) -> None:
        """Queue replies, answered in order, one per request."""
        with self._lock:
            self._replies.extend(replies)

    def next_reply(self) -> Reply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """How many TCP connections were accepted (keep-alive reuse keeps this low)."""
        assert self._server is not None, "the server is not started"
        return self._server.accepted

    @property
    def pending(self) -> int:
        """Replies queued but not used yet."""
        with self._lock:
            return len(self._replies)


def serve() -> Iterator[WireServer]:
    """A generator for pytest fixtures: ``yield from serve()``."""
    with WireServer() as server:
        yield server
