"""A real HTTP server on 127.0.0.1 that speaks Anthropic's Messages API wire format, for tests.

The same server as :mod:`openai_wire_server` (queue :class:`Reply` values, read the recorded
requests), answering in the shapes of Anthropic's published API reference: a streamed reply is
``message_start``, per content block ``content_block_start`` / ``content_block_delta``
(``text_delta``, ``input_json_delta``) / ``content_block_stop``, with a ``ping``, then
``message_delta`` (``stop_reason``, output usage) and ``message_stop``, each frame an
``event:`` line naming the type and a ``data:`` line; a non-streamed reply is one ``message``
object. A reply's ``usage`` is Anthropic's usage object: the input fields go in
``message_start``, ``output_tokens`` in ``message_delta``. ``events`` are raw ``data:``
payloads (their ``event:`` line is the payload's ``type`` when it has one).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from openai_wire_server import Reply, WireServer, WireToolCall

__all__ = ["AnthropicWireServer", "Reply", "WireToolCall"]

MESSAGE_ID = "msg_013Zva2CMHLNnXjNJJKqJ2EF"
MODEL = "claude-test"


def _stop_reason(reply: Reply) -> str:
    return reply.finish_reason or ("tool_use" if reply.tool_calls else "end_turn")


def _frame(payload: str) -> str:
    try:
        kind = json.loads(payload).get("type", "message")
    except (ValueError, AttributeError):
        kind = "message"
    return f"event: {kind}\ndata: {payload}\n\n"


def stream_events(reply: Reply) -> list[dict[str, Any]]:
    """The events a Messages API server streams for ``reply``."""
    usage = dict(reply.usage or {"input_tokens": 10, "output_tokens": 1})
    start_usage = {k: v for k, v in usage.items() if k != "output_tokens"}
    start_usage["output_tokens"] = 1
    out: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": MESSAGE_ID,
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": MODEL,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        }
    ]
    index = 0
    if reply.text:
        out.append(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            }
        )
        out.append({"type": "ping"})
        for piece in reply.text:
            delta = {"type": "text_delta", "text": piece}
            out.append({"type": "content_block_delta", "index": 0, "delta": delta})
        out.append({"type": "content_block_stop", "index": 0})
        index = 1
    for call in reply.tool_calls:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        out.append({"type": "content_block_start", "index": index, "content_block": block})
        for fragment in ("", *call.arguments):  # the API's first input_json_delta is often ""
            delta = {"type": "input_json_delta", "partial_json": fragment}
            out.append({"type": "content_block_delta", "index": index, "delta": delta})
        out.append({"type": "content_block_stop", "index": index})
        index += 1
    out.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": usage.get("output_tokens", 0)},
        }
    )
    out.append({"type": "message_stop"})
    return out


def message(reply: Reply) -> dict[str, Any]:
    """The ``message`` object a non-streaming request is answered with."""
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": "".join(reply.text)})
    for call in reply.tool_calls:
        arguments = "".join(call.arguments)
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": json.loads(arguments) if arguments else {},
            }
        )
    return {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": MODEL,
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": dict(reply.usage or {"input_tokens": 10, "output_tokens": 1}),
    }


class AnthropicWireServer(WireServer):
    """:class:`openai_wire_server.WireServer` answering in the Messages API wire format."""

    def sse_frames(self, reply: Reply, body: Mapping[str, Any]) -> list[str]:
        if reply.events is not None:
            return [_frame(payload) for payload in reply.events]
        return [_frame(json.dumps(event)) for event in stream_events(reply)]

    def completion(self, reply: Reply) -> Any:
        return message(reply)
