"""``GET /sessions/{id}/events``: the pieces of a session's event stream (Server-Sent Events).

Each SSE message is one event in its JSON form (:func:`lash.event_json`), its ``id:`` the
event's cursor, so a browser's ``EventSource`` resumes after the last event it saw by itself
(``Last-Event-ID``); ``?after=CURSOR`` does the same for other clients. A cursor older than the
store's replay window gives the ``gap`` item first. A comment line every ``keepalive`` seconds
keeps proxies from closing an idle stream. The stream itself is assembled in
``lash.serve._fanout``, which shares one observation of a session among its clients.

:class:`AgUiAdapter` turns the same events into the AG-UI event protocol (``?protocol=ag-ui``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from lash._kernel.core import LashCore
from lash._kernel.observation import ObservationGap, ObservedEvent, cursor_of, parse_cursor
from lash.serve._errors import ApiError
from lash.serve._json import json_text

#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0


def sse_message(data: Mapping[str, Any], *, id: str | None = None) -> bytes:
    """One SSE message: an ``id:`` line (when given) and one ``data:`` line of JSON (JSON has no
    raw newlines, so one line always suffices)."""
    head = f"id: {id}\n" if id else ""
    return f"{head}data: {json_text(data)}\n\n".encode()


async def checked_after(core: LashCore, session_id: str, after: str | None) -> None:
    """Refuse a cursor that is not one, or that is ahead of the session's log (400
    ``invalid_cursor``), before the stream starts: once it has, the status is sent."""
    if after is None:
        return
    try:
        seq = parse_cursor(session_id, after)
    except Exception as exc:
        raise ApiError("invalid_cursor", str(exc)) from None
    page = await core.store.read_events(session_id, after=0, limit=0)
    if seq > page.last:
        raise ApiError(
            "invalid_cursor",
            f"session {session_id!r}: cursor {after!r} is ahead of the event log (its latest "
            f"event is {cursor_of(page.last)}): it belongs to another session, or the session "
            "was deleted",
        )


async def with_keepalive(
    items: AsyncIterator[ObservedEvent | ObservationGap],
    keepalive: float | None,
    stop: asyncio.Event | None = None,
) -> AsyncGenerator[ObservedEvent | ObservationGap | None, None]:
    """``None`` once the observation is subscribed (so a client that got the stream's first
    bytes misses no live event after them), then the items, and ``None`` whenever
    ``keepalive`` seconds pass without one (``None``: never); it ends when ``stop`` is set."""
    pending: asyncio.Future[ObservedEvent | ObservationGap] | None = None
    stopping = None if stop is None else asyncio.ensure_future(stop.wait())
    try:
        pending = asyncio.ensure_future(anext(items))
        await asyncio.sleep(0)  # the observation subscribes before its first await
        yield None
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(items))
            waits = (pending,) if stopping is None else (pending, stopping)
            done, _ = await asyncio.wait(
                waits, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping is not None and stopping in done:
                return  # (an item read meanwhile is not lost: the client resumes before it)
            if not done:
                yield None
                continue
            item, pending = pending.result(), None
            yield item
    finally:
        if stopping is not None:
            stopping.cancel()
        # Cancel the pending read until it is over: on Python 3.11, asyncio.wait_for (which the
        # observation waits in) drops a cancellation that arrives as its inner wait completes,
        # and the observation would go on reading, unobserved, forever.
        while pending is not None and not pending.done():
            pending.cancel()
            await asyncio.wait((pending,), timeout=0.05)
        if pending is not None and not pending.cancelled():
            pending.exception()  # retrieved: an error of a read nobody waits for is not news


class AgUiAdapter:
    """The lash events of one session as AG-UI events (https://docs.ag-ui.com, "Events").

    A turn is a run (``threadId``: the session id, ``runId``: the turn id): ``turn_started``
    is ``RUN_STARTED``; streamed text is an assistant message (``TEXT_MESSAGE_START`` /
    ``_CONTENT`` / ``_END``), a new one with an id of its own after each tool call; a tool call
    is ``TOOL_CALL_START``, ``TOOL_CALL_ARGS`` (its arguments as JSON), ``TOOL_CALL_END``, then
    ``TOOL_CALL_RESULT``;
    ``turn_committed`` ends the run: ``RUN_FINISHED`` (with the result), or ``RUN_ERROR`` for a
    failed turn. A turn run by another process streams nothing live: its committed event
    carries its answer, sent then as one text message. Every other lash event (input, commands,
    frames, config, plugin events, gaps) is a ``CUSTOM`` event named ``lash.<type>`` whose
    ``value`` is the lash event.
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self._runs: set[str] = set()
        self._message: dict[str, str] = {}  # run -> its open text message
        self._messages: dict[str, int] = {}  # run -> how many text messages it opened
        self._streamed: set[str] = set()  # runs whose text came live
        self._calls: set[str] = set()  # tool calls started live

    def _event(self, type: str, at: float, **fields: Any) -> dict[str, Any]:
        return {"type": type, "timestamp": int(at * 1000), **fields}

    def _start_run(self, run: str, at: float) -> list[dict[str, Any]]:
        if run in self._runs:
            return []
        self._runs.add(run)
        return [self._event("RUN_STARTED", at, threadId=self.session_id, runId=run)]

    def _end_message(self, run: str, at: float) -> list[dict[str, Any]]:
        message = self._message.pop(run, None)
        return [] if message is None else [self._event("TEXT_MESSAGE_END", at, messageId=message)]

    def _text(self, run: str, text: str, at: float) -> list[dict[str, Any]]:
        out = self._start_run(run, at)
        message = self._message.get(run)
        if message is None:
            # Text after a tool call is a new message, with an id of its own (clients key
            # messages by id); the count is not reset when the run ends, so a turn that goes on
            # after approval does not reuse an id either.
            n = self._messages[run] = self._messages.get(run, 0) + 1
            message = self._message[run] = f"{run}:answer" if n == 1 else f"{run}:answer-{n}"
            out.append(self._event("TEXT_MESSAGE_START", at, messageId=message, role="assistant"))
        self._streamed.add(run)
        out.append(self._event("TEXT_MESSAGE_CONTENT", at, messageId=message, delta=text))
        return out

    def translate(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The AG-UI events for one lash event (JSON form), in order."""
        kind, data, at = event["type"], event["data"], float(event["at"])
        run = str(data.get("turn_id") or "")
        if kind == "turn_started":
            return self._start_run(run, at)
        if kind == "text_delta":
            return self._text(run, str(data.get("text", "")), at) if data.get("text") else []
        if kind == "tool_call_started":
            call = data.get("call") or {}
            call_id = str(call.get("id", ""))
            self._calls.add(call_id)
            out = self._start_run(run, at) + self._end_message(run, at)
            out.append(
                self._event(
                    "TOOL_CALL_START", at, toolCallId=call_id, toolCallName=call.get("name", "")
                )
            )
            arguments = json.dumps(call.get("arguments") or {}, ensure_ascii=False)
            out.append(self._event("TOOL_CALL_ARGS", at, toolCallId=call_id, delta=arguments))
            out.append(self._event("TOOL_CALL_END", at, toolCallId=call_id))
            return out
        if kind == "tool_call_finished":
            result = data.get("result") or {}
            content = result.get("content")
            return [
                self._event(
                    "TOOL_CALL_RESULT",
                    at,
                    messageId=f"{data.get('call_id', '')}-result",
                    toolCallId=str(data.get("call_id", "")),
                    content=content if isinstance(content, str) else json.dumps(content),
                    role="tool",
                )
            ]
        if kind in ("turn_committed", "turn_finished"):
            return self._finish(run, data, at)
        return [self._event("CUSTOM", at, name=f"lash.{kind}", value=dict(event))]

    def _finish(self, run: str, data: Mapping[str, Any], at: float) -> list[dict[str, Any]]:
        out = self._start_run(run, at)
        result = data.get("result") or {}
        for call in data.get("tool_calls") or ():
            call_id = str(call.get("call_id", ""))
            if call_id not in self._calls:  # ran in another process: no live events of it
                out.append(
                    self._event(
                        "TOOL_CALL_START", at, toolCallId=call_id, toolCallName=call.get("name")
                    )
                )
                out.append(self._event("TOOL_CALL_END", at, toolCallId=call_id))
        if run not in self._streamed and result.get("text"):
            out += self._text(run, str(result["text"]), at)
        out += self._end_message(run, at)
        self._streamed.discard(run)
        self._runs.discard(run)
        if data.get("outcome") == "failed":
            message = str(result.get("error") or "the turn failed")
            out.append(self._event("RUN_ERROR", at, message=message, code="turn_failed"))
        else:
            out.append(
                self._event(
                    "RUN_FINISHED",
                    at,
                    threadId=self.session_id,
                    runId=run,
                    result={
                        "outcome": data.get("outcome"),
                        "reason": data.get("reason"),
                        "text": result.get("text", ""),
                        "revision": data.get("revision"),
                    },
                )
            )
        return out
