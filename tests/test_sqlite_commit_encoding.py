"""The ``sqlite://`` store's commit: what it stores for a turn's result and its ``turn_committed``
event (the result's JSON is made once and spliced into the event's), and the commit made at
once on the event loop's thread (real SQLite files)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lash
import lash.store
from lash_plugins_builtin import sqlite as sqlite_module
from lash_plugins_builtin.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio


def stored_json(data: Any) -> str:
    """The stored form of JSON data: compact, key order kept, UTF-8 text; with JSON escapes for
    all that is not ASCII when the text holds lone surrogates (which UTF-8 cannot)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":"))
    return text


#: Text that could confuse a splice: the placeholder itself (bare, quoted, escaped), quotes,
#: backslashes, NUL, a lone surrogate, non-ASCII.
tricky = st.sampled_from(
    [
        "\0lash:turn result\0",
        '"\0lash:turn result\0"',
        '\\"\0lash:turn result\0\\"',
        '"\\u0000lash:turn result\\u0000"',
        "\ud800",
        "é",
        '"',
        "\\",
    ]
)
texts = st.text(max_size=6) | tricky
json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)


def turn_delta(result: dict[str, Any], event: dict[str, Any]) -> lash.store.CommitDelta:
    return lash.store.CommitDelta(
        turns=1,
        turn=lash.store.TurnRecord("s", "t1", 1, "completed", 1, result=result),
        events=(lash.store.EventDraft("turn_committed", event),),
    )


@settings(max_examples=300, deadline=None)
@given(
    result=st.dictionaries(texts, json_data, max_size=4),
    before=st.dictionaries(texts, json_data, max_size=2),
    after=st.dictionaries(texts, json_data, max_size=2),
    same=st.booleans(),
)
def test_the_event_holding_the_turn_result_is_stored_as_its_whole_json(
    result: dict[str, Any], before: dict[str, Any], after: dict[str, Any], same: bool
) -> None:
    """An event whose ``result`` is the commit's turn result (the same object: spliced; or an
    equal copy: encoded whole) is stored as the JSON of its whole data, byte for byte, and the
    turn record as the result's: also with the placeholder's text, quotes, NUL and lone
    surrogates anywhere in the data."""
    event = {k: v for k, v in before.items() if k != "result"}
    event["result"] = result if same else json.loads(json.dumps(result))
    event.update((k, v) for k, v in after.items() if k != "result")
    encoded = sqlite_module._Encoded.of("s", turn_delta(result, event))
    assert encoded.turn[4] == stored_json(result)
    assert encoded.events == [("turn_committed", stored_json(event))]


async def test_a_turns_stored_and_observed_turn_committed_is_the_json_of_its_data(
    tmp_path: Path,
) -> None:
    """Through a real turn: the stored ``turn_committed`` is the stored form of its data, its
    ``result`` is the turn record's, and an observer reads the same data back from the log."""
    responses: list[Any] = [
        {"tool_calls": [{"name": "echo", "arguments": {"text": "ünï \ud800"}}]},
        {"text": 'done "\0lash:turn result\0"'},
    ]
    db = tmp_path / "lash.db"
    async with lash.LashCore(
        plugins=["standard", "stores", "scripted"],
        autoload=False,
        store=f"sqlite:///{db}",
        provider="scripted",
        options={"scripted": {"responses": responses}},
    ) as core:
        session = await core.session("s").open()
        result = await session.turn("go", id="t1").run()
        await session.close()
        async with contextlib.aclosing(core.observe("s", after="e0")) as stream:
            observed = [await anext(stream), await anext(stream)]
    assert result.text == 'done "\0lash:turn result\0"'
    conn = sqlite3.connect(db)
    try:
        ((text,),) = conn.execute("SELECT data FROM events WHERE type = 'turn_committed'")
        ((record,),) = conn.execute("SELECT result FROM turn_records WHERE turn_id = 't1'")
    finally:
        conn.close()
    data = json.loads(text)
    assert text == stored_json(data)
    assert record == stored_json(data["result"])
    assert data["result"]["text"] == result.text
    assert list(data) == [
        "turn_id",
        "index",
        "outcome",
        "reason",
        "revision",
        "result",
        "tool_calls",
    ]
    (committed,) = [e for e in observed if e.type == "turn_committed"]
    assert dict(committed.data) == data


def user_node(n: int) -> lash.UserMessage:
    return lash.UserMessage(id=f"n{n}", parent_id=None, frame_id="F", turn=n, text=f"hi {n}")


def commit_delta(n: int, turn_id: str) -> lash.store.CommitDelta:
    return lash.store.CommitDelta(
        nodes=(user_node(n),),
        turns=1,
        usage={"turn": lash.Usage(3, 2, 1)},
        turn=lash.store.TurnRecord("s", turn_id, n, "completed", n, result={"n": n}),
        events=(lash.store.EventDraft("turn_committed", {"n": n}),),
    )


async def test_a_turns_commit_is_made_at_once_and_waits_for_a_running_operation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the store's lock free, a turn's commit is made without an operation (nothing
    awaited); with an operation running, it waits for it and is made the general way; a
    refusal found at once is explained as the general way explains it."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'lash.db'}")
    try:
        lease = await store.acquire_lease("s", "w", ttl=30)
        general = store._operation

        def no_operation(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the commit went the general way")

        monkeypatch.setattr(store, "_operation", no_operation)
        assert (
            await store.commit("s", lease=lease, expected_revision=0, delta=commit_delta(1, "t1"))
            == 1
        )
        monkeypatch.setattr(store, "_operation", general)

        async with store._lock:  # an operation on its way
            pending = asyncio.ensure_future(
                store.commit("s", lease=lease, expected_revision=1, delta=commit_delta(2, "t2"))
            )
            await asyncio.sleep(0.05)
            assert not pending.done()
        assert await pending == 2

        with pytest.raises(lash.RevisionConflict) as refused:
            await store.commit("s", lease=lease, expected_revision=2, delta=commit_delta(3, "t1"))
        assert "turn 't1' is committed already" in str(refused.value.__notes__)
        record = await store.load("s")
        assert record is not None
        assert (record.revision, record.turns, len(record.nodes)) == (2, 2, 2)
        assert record.usage == {"turn": lash.Usage(6, 4, 2)}
    finally:
        await store.close()
