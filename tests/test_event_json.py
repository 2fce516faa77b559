"""The JSON form of events: a turn stream's events and an observer's live events agree; the gap;
and the AG-UI adapter on a turn seen only through its commit (another process ran it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
import serve_tools

import lash
from lash.serve._fanout import Feeds, event_stream
from lash.serve._stream import AgUiAdapter

pytestmark = pytest.mark.anyio

ENVELOPE = {"v", "type", "session_id", "cursor", "live", "at", "data"}


def core_of(tmp_path: Path, responses: list[Any], query: str = "") -> lash.LashCore:
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", serve_tools],
        autoload=False,
        store=f"sqlite:///{tmp_path}/lash.db{query}",
        provider="scripted",
        options={"scripted": {"responses": responses}},
    )


SCRIPT = [
    {"tool_calls": [{"name": "shout", "arguments": {"text": "hi"}}]},
    {"text": "Said HI", "chunk_size": 4},
]


async def test_turn_events_and_observed_live_events_have_one_form(tmp_path: Path) -> None:
    """turn_event_json of each streamed event equals (but for at) what an observer of the same
    core got live; turn_finished carries the data of the committed turn_committed."""
    async with core_of(tmp_path, SCRIPT) as core:
        start = (await core.current("s")).cursor
        observed: list[dict[str, Any]] = []
        done = asyncio.Event()

        async def watch() -> None:
            async with contextlib.aclosing(core.observe("s", after=start)) as stream:
                async for item in stream:
                    observed.append(lash.event_json(item))
                    if item.type == "turn_committed":
                        done.set()
                        return

        watcher = asyncio.ensure_future(watch())
        await asyncio.sleep(0.05)
        session = await core.session("s").open()
        turn = session.turn("go", id="t1")
        streamed = [
            lash.turn_event_json(e, session_id="s", turn_id=turn.id) async for e in turn.stream()
        ]
        await session.close()
        await asyncio.wait_for(done.wait(), 10)
        await watcher

    assert all(set(e) == ENVELOPE and e["v"] == 1 for e in streamed + observed)
    assert [e["type"] for e in streamed] == [
        "tool_call_started",
        "tool_call_finished",
        "text_delta",
        "text_delta",
        "turn_finished",
    ]
    live = [e for e in observed if e["live"]]
    assert [(e["type"], e["data"]) for e in live] == [(e["type"], e["data"]) for e in streamed[:-1]]
    assert streamed[0]["data"] == {
        "turn_id": "t1",
        "call": {
            "id": streamed[0]["data"]["call"]["id"],
            "name": "shout",
            "arguments": {"text": "hi"},
            "invalid_arguments": None,
        },
    }
    assert streamed[1]["data"]["result"]["content"] == "HI"
    assert [e["data"]["text"] for e in streamed[2:4]] == ["Said", " HI"]
    (committed,) = [e for e in observed if e["type"] == "turn_committed"]
    finished = streamed[-1]["data"]
    assert finished["outcome"] == committed["data"]["outcome"] == "completed"
    assert finished["revision"] == committed["data"]["revision"] == 1
    assert finished["tool_calls"] == committed["data"]["tool_calls"]
    assert finished["result"]["text"] == committed["data"]["result"]["text"] == "Said HI"
    json.dumps(streamed + observed)  # JSON all the way down


async def test_a_gap_in_json_form(tmp_path: Path) -> None:
    """event_json of a gap: type gap, after, revision, turns, the queued inputs as
    input_queued's input, and the cursor to go on from."""
    async with core_of(tmp_path, [], "?events_kept=2") as core:
        for n in range(4):
            await core.enqueue("g", f"q{n}")
        async with contextlib.aclosing(core.observe("g", after="e1")) as stream:
            gap = await anext(stream)
        queued = await core.inputs("g")
    data = lash.event_json(gap, after="e1")
    assert set(data) == ENVELOPE
    assert (data["type"], data["cursor"], data["live"]) == ("gap", "e4", False)
    assert data["data"] == {
        "after": "e1",
        "revision": 0,
        "turns": 0,
        "inputs": [lash.to_data(item) for item in queued],
    }


def event(kind: str, data: dict[str, Any], cursor: str = "e1") -> dict[str, Any]:
    return {"v": 1, "type": kind, "session_id": "s", "cursor": cursor, "live": False, "at": 1.0,
            "data": data}  # fmt: skip


def test_ag_ui_of_a_turn_seen_only_committed() -> None:
    """A worker's turn (no live events): RUN_STARTED, its calls as start/end, its answer as
    one text message, RUN_FINISHED; input events are CUSTOM lash.<type>."""
    adapter = AgUiAdapter("s")
    committed = {
        "turn_id": "t9",
        "index": 1,
        "outcome": "completed",
        "reason": None,
        "revision": 1,
        "result": {"text": "All done"},
        "tool_calls": [{"call_id": "c1", "name": "shout", "is_error": False}],
    }
    out = adapter.translate(event("input_claimed", {"input": {"id": "in-1"}}))
    out += adapter.translate(event("turn_started", {"turn_id": "t9", "input": "go"}))
    out += adapter.translate(event("turn_committed", committed))
    assert [e["type"] for e in out] == [
        "CUSTOM",
        "RUN_STARTED",
        "TOOL_CALL_START",
        "TOOL_CALL_END",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "RUN_FINISHED",
    ]
    assert out[0]["name"] == "lash.input_claimed"
    assert out[2]["toolCallId"] == out[3]["toolCallId"] == "c1"
    assert out[5]["delta"] == "All done"
    assert out[4]["messageId"] == out[5]["messageId"] == out[6]["messageId"]
    assert (out[-1]["threadId"], out[-1]["runId"], out[-1]["result"]["outcome"]) == (
        "s",
        "t9",
        "completed",
    )
    assert all(e["timestamp"] == 1000 for e in out)


def test_ag_ui_of_a_failed_turn_is_run_error() -> None:
    """A failed turn ends its run with RUN_ERROR carrying the turn's error."""
    adapter = AgUiAdapter("s")
    failed = {
        "turn_id": "t1",
        "outcome": "failed",
        "reason": None,
        "revision": 2,
        "result": {"text": "", "error": "the model is down"},
        "tool_calls": [],
    }
    out = adapter.translate(event("turn_committed", failed))
    assert [e["type"] for e in out] == ["RUN_STARTED", "RUN_ERROR"]
    assert out[-1]["message"] == "the model is down"


async def test_an_event_stream_that_ends_unsubscribes(tmp_path: Path) -> None:
    """The SSE body of lash serve: subscribed once its first bytes are out; closed (the client
    went away) or cancelled mid-wait, the session has no observer left."""
    async with core_of(tmp_path, []) as core:
        body = event_stream(Feeds(core), "s", None, keepalive=0.01)
        assert (await anext(body)).startswith(b"retry:")
        assert core.observed("s")
        assert await anext(body) == b": keep-alive\n\n"
        await body.aclose()
        assert not core.observed("s")

        async def read(body: AsyncGenerator[bytes, None]) -> None:
            async for _ in body:
                pass

        body = event_stream(Feeds(core), "s", None)
        assert (await anext(body)).startswith(b"retry:")
        reading = asyncio.ensure_future(read(body))
        await core.enqueue("s", "one")
        await asyncio.sleep(0.05)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        await body.aclose()
        assert not core.observed("s")
