"""The JSON form of a session's events, version :data:`EVENT_FORMAT`: one documented shape for
what observers see (:class:`lash.ObservedEvent`, :class:`lash.ObservationGap`) and what a
streaming turn yields (``turn.stream()``'s :data:`lash.TurnEvent`), so a client without lash (a
web page, ``lash sessions watch --json``, ``lash serve``'s event stream) reads both the same way.

Every event is ``{"v", "type", "session_id", "cursor", "live", "at", "data"}``. The live events'
``data`` is built here, once, for the kernel (which hands it to observers) and for
:func:`turn_event_json` alike, so the two forms cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from lash._contract.annotations import resolve_here
from lash._contract.events import (
    PluginEvent,
    TextDeltaEvent,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallStarted,
    TurnEvent,
    TurnFinished,
    TurnResult,
)
from lash._contract.serialization import to_data
from lash._contract.types import ToolCall, ToolResult
from lash._kernel.observation import EVENT_FORMAT, ObservationGap, ObservedEvent

#: Every event type of the JSON form, with what it means (the docs and ``lash serve``'s OpenAPI
#: document list these). ``live`` types reach only observers in the process running the turn.
EVENT_TYPES: dict[str, str] = {
    "turn_started": "a turn took the session's lease: turn_id, input, items",
    "text_delta": "(live) the model streamed text: turn_id, text",
    "tool_call_started": "(live) a tool call started: turn_id, call {id, name, arguments, "
    "invalid_arguments}",
    "tool_call_finished": "(live) a tool call finished: turn_id, call_id, name, result "
    "{call_id, content, is_error}",
    "plugin_event": "a plugin emitted an event: plugin, type, data",
    "turn_committed": "a turn was committed: turn_id, index, outcome, reason, revision, result, "
    "tool_calls [{call_id, name, is_error}]",
    "turn_finished": "(turn stream only) the streamed turn ended: the keys of turn_committed",
    "input_queued": "input was queued: input",
    "input_claimed": "a turn claimed queued input: input",
    "input_cancelled": "queued input was cancelled: input",
    "command_queued": "a session command was queued: command",
    "command_applied": "a session command was applied: command, error (a failed one)",
    "approval_requested": "a turn stopped with tool calls awaiting approval: turn_id, calls "
    "[{call_id, tool, arguments}]",
    "turn_resumed": "a turn stopped for approval goes on: turn_id, calls [{call_id, decision, "
    "reason}]",
    "process_started": "a background process was started in the session: process",
    "process_running": "a worker claimed the process: process",
    "process_progress": "the process reported progress: process",
    "process_finished": "the process ended (succeeded, failed, cancelled, abandoned): process",
    "frame_opened": "a commit opened an agent frame: frame_id, previous_frame_id, reason",
    "config_changed": "configure() committed a change: previous, current",
    "gap": "the events after `after` are gone (older than the replay window): after, "
    "revision, turns, inputs; the stream goes on after this item's cursor",
}


def result_data(result: TurnResult) -> dict[str, Any]:
    """``to_data(result)`` without its tool calls (they are in the graph), written out: a
    turn's commit stores it, and cattrs would walk the tool calls for nothing."""
    usage = result.usage
    return {
        "session_id": result.session_id,
        "index": result.index,
        "outcome": result.outcome,
        "text": result.text,
        "reason": result.reason,
        "error": result.error,
        "error_plugin": result.error_plugin,
        "error_hook": result.error_hook,
        "detail": result.detail,
        "tool_calls": [],
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_tokens": usage.cached_tokens,
        },
        "revision": result.revision,
        "turn_id": result.turn_id,
        "cancelled_by": result.cancelled_by,
        "cancel_reason": result.cancel_reason,
        # A structured-output turn's answer survives reloads (a resubmitted turn id gets it).
        "output": None if result.output is None else to_data(result.output),
        "output_errors": list(result.output_errors),
    }


def call_data(call: ToolCall) -> dict[str, Any]:
    """``to_data(call)``, written out (the arguments are JSON already)."""
    return {
        "id": call.id,
        "name": call.name,
        "arguments": dict(call.arguments),
        "invalid_arguments": call.invalid_arguments,
    }


def text_delta_data(turn_id: str, text: str) -> dict[str, Any]:
    """``data`` of a ``text_delta`` event."""
    return {"turn_id": turn_id, "text": text}


def tool_call_started_data(turn_id: str, call: ToolCall) -> dict[str, Any]:
    """``data`` of a ``tool_call_started`` event."""
    return {"turn_id": turn_id, "call": call_data(call)}


def tool_call_finished_data(
    turn_id: str, call_id: str, name: str, result: ToolResult
) -> dict[str, Any]:
    """``data`` of a ``tool_call_finished`` event: ``call_id`` is the id the model gave the
    call, ``name`` the tool that ran (a hook may have redirected it)."""
    return {
        "turn_id": turn_id,
        "call_id": call_id,
        "name": name,
        "result": {
            "call_id": result.call_id,
            "content": result.content,
            "is_error": result.is_error,
        },
    }


def turn_end_data(
    turn_id: str, index: int, result: dict[str, Any], records: Sequence[ToolCallRecord]
) -> dict[str, Any]:
    """``data`` of ``turn_committed`` (and of a turn stream's ``turn_finished``): ``result`` is
    the stored form of the turn's result (:func:`result_data`, with the committed revision);
    ``tool_calls`` names the turn's calls."""
    return {
        "turn_id": turn_id,
        "index": index,
        "outcome": result["outcome"],
        "reason": result["reason"],
        "revision": result["revision"],
        "result": result,
        "tool_calls": [
            {"call_id": r.call.id, "name": r.call.name, "is_error": r.result.is_error}
            for r in records
        ],
    }


def _envelope(
    type: str, session_id: str, cursor: str, data: dict[str, Any], *, live: bool, at: float
) -> dict[str, Any]:
    return {
        "v": EVENT_FORMAT,
        "type": type,
        "session_id": session_id,
        "cursor": cursor,
        "live": live,
        "at": at,
        "data": data,
    }


def gap_json(gap: ObservationGap, after: str | None) -> dict[str, Any]:
    """A gap as an event of type ``gap``: ``data`` has ``after`` (the cursor asked for), the
    session's ``revision`` and ``turns`` now and its queued ``inputs`` (each as an
    ``input_queued`` event's ``input``); its ``cursor`` is where the stream goes on."""
    view = gap.snapshot
    data = {
        "after": after,
        "revision": view.revision,
        "turns": view.turns,
        "inputs": [to_data(item) for item in view.inputs],
    }
    return _envelope("gap", gap.session_id, gap.cursor, data, live=False, at=time.time())


def event_json(item: ObservedEvent | ObservationGap, *, after: str | None = None) -> dict[str, Any]:
    """The JSON form (version ``v``: 1) of what :meth:`lash.LashCore.observe` yields, for
    clients without lash: ``{"v", "type", "session_id", "cursor", "live", "at", "data"}``.

    An :class:`lash.ObservationGap` becomes an event of type ``gap`` (``after``: the cursor the
    observation resumed from, given here) whose ``cursor`` is where observation goes on.
    """
    if isinstance(item, ObservationGap):
        return gap_json(item, after)
    return item.to_json()


def turn_event_json(
    event: TurnEvent, *, session_id: str, turn_id: str, cursor: str = ""
) -> dict[str, Any]:
    """The JSON form of an event of ``turn.stream()``, in the shape of :func:`event_json`'s
    live events (``live`` true; ``cursor``: the last committed event's, when known).

    :class:`lash.TextDeltaEvent` is ``text_delta``, :class:`lash.ToolCallStarted`
    ``tool_call_started``, :class:`lash.ToolCallFinished` ``tool_call_finished``,
    :class:`lash.PluginEvent` ``plugin_event`` and :class:`lash.TurnFinished` ``turn_finished``
    (``data`` as a ``turn_committed`` event's, ``live`` false: the turn is over).
    """
    at = time.time()
    if isinstance(event, TextDeltaEvent):
        data = text_delta_data(turn_id, event.text)
        kind = "text_delta"
    elif isinstance(event, ToolCallStarted):
        data = tool_call_started_data(turn_id, event.call)
        kind = "tool_call_started"
    elif isinstance(event, ToolCallFinished):
        data = tool_call_finished_data(turn_id, event.result.call_id, event.call.name, event.result)
        kind = "tool_call_finished"
    elif isinstance(event, PluginEvent):
        data = {"plugin": event.plugin, "type": event.type, "data": to_data(event.data)}
        kind = "plugin_event"
    elif isinstance(event, TurnFinished):
        result = event.result
        data = turn_end_data(result.turn_id, result.index, result_data(result), result.tool_calls)
        return _envelope("turn_finished", session_id, cursor, data, live=False, at=at)
    else:
        raise TypeError(f"not a turn event: {event!r}")
    return _envelope(kind, session_id, cursor, data, live=True, at=at)


resolve_here(globals())
