"""What an open idle session keeps (issue 17: <= 5 KiB each), and that keeping less changes
nothing: committed states are still compared exactly, executions still take turns."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from _cores import sqlite_url
from _recorder import Recorder
from hypothesis import given
from hypothesis import strategies as st

import lash
from lash._kernel.image import fingerprint, new_session_config
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio

#: What plugin states unstructure to: JSON-like data (NaN aside, which equals nothing).
json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(json_data, json_data)
def test_a_changed_state_never_fingerprints_alike(a: Any, b: Any) -> None:
    """Different data never gets the same fingerprint (a change is always committed)."""
    if fingerprint(a) == fingerprint(b):
        assert a == b
        assert type(a) is type(b)


@given(json_data)
def test_an_unchanged_state_fingerprints_alike(a: Any) -> None:
    """Equal data built again (a fresh unstructure) gets the same, shared fingerprint."""
    again = copy.deepcopy(a)
    assert fingerprint(a) == fingerprint(again)
    if isinstance(fingerprint(a), str):
        assert fingerprint(a) is fingerprint(again)  # interned: sessions in one state share it


def test_data_marshal_cannot_encode_is_compared_as_it_is() -> None:
    """A value marshal refuses (a str subclass here) is kept and compared with ``==``."""

    class Tag(str):
        pass

    snapshot = {"tag": Tag("x")}
    assert fingerprint(snapshot) is snapshot
    assert fingerprint({"tag": Tag("x")}) == snapshot
    assert fingerprint({"tag": Tag("y")}) != snapshot


@attrs.define
class Item:
    name: str
    n: int = 0


@attrs.define
class MixedState:
    """A state of plain fields, and a list of attrs instances (not plain data while it has
    any): the image tells its changes by its plain key, or by its snapshot."""

    count: int = 0
    tags: list[str] = attrs.field(factory=list)
    table: dict[str, Any] = attrs.field(factory=dict)
    items: list[Item] = attrs.field(factory=list)
    note: str | None = None


def _mutate(state: MixedState, op: str, value: Any) -> None:
    if op == "count":
        state.count = value  # the same value again, often
    elif op == "tag":
        state.tags.append(value)
    elif op == "untag" and state.tags:
        state.tags.pop()
    elif op == "table":
        state.table["k"] = value  # an int, a float, a bool: 1, 1.0 and True differ as data
    elif op == "item":
        state.items.append(Item(str(value)))
    elif op == "bump" and state.items:
        state.items[0].n += 1  # a change inside a nested instance
    elif op == "clear":
        state.items.clear()
    elif op == "note":
        state.note = None if value == 0 else str(value)


_ops = st.lists(
    st.tuples(
        st.sampled_from(["count", "tag", "untag", "table", "item", "bump", "clear", "note"]),
        st.sampled_from([0, 1, 1.0, True, 2]),
    ),
    max_size=12,
)


@given(_ops, st.lists(st.booleans(), min_size=12, max_size=12))
def test_a_state_is_committed_exactly_when_its_data_changed(
    ops: list[tuple[str, Any]], commits: list[bool]
) -> None:
    """After any mutations (of plain fields, and inside nested instances), a commit's delta
    holds the state exactly when its unstructured data differs from what was last committed
    (compared as JSON text, where 1, 1.0 and true differ), whether the image tells it by the
    state's plain key or by its snapshot; a delta that is not committed changes nothing."""
    from lash._contract.serialization import unstructure
    from lash._kernel.image import SessionImage

    image = SessionImage("s")
    state = MixedState()
    # Beside it, a state that never changes: committed once, with the first commit.
    image.states = {"mixed": state, "other": Item("x")}
    committed = None  # the JSON text of the state as committed (none yet)
    for (op, value), commit in zip(ops, commits, strict=False):
        _mutate(state, op, value)
        delta = image.delta((), {}, 0, None)  # type: ignore[arg-type]  # (no config change)
        text = json.dumps(unstructure(state))
        assert ("mixed" in delta.plugin_states) == (text != committed), (op, value)
        assert ("other" in delta.plugin_states) == (image.revision == 0)
        if commit:
            image.committed(delta, image.revision + 1)
            committed = text


def test_a_delta_carries_each_field_it_is_given() -> None:
    """SessionImage.delta hands CommitDelta each field it was given, by name (it builds the
    delta positionally, in the class's order)."""
    from lash._kernel.image import SessionImage
    from lash.store import CommitDelta

    given = {
        "claimed": ("c",),
        "applied": ("a",),
        "enqueue": ("e",),
        "turn": "t",
        "events": ("ev",),
        "processes": ("p",),
        "parent_id": "parent",
        "rollup": {"x": {}},
        "release": True,
    }
    image = SessionImage("s")
    delta = image.delta(("n",), {}, 3, None, **given)  # type: ignore[arg-type]
    assert {f: getattr(delta, f) for f in given} == given
    assert (delta.nodes, delta.turns, delta.plugin_states, delta.usage) == (("n",), 3, {}, {})
    assert image.delta((), {}, 0, None) == CommitDelta(plugin_states={})  # type: ignore[arg-type]


@attrs.define
class CountState:
    """State of the ``counter`` plugin."""

    counted: int = 0


class Counter:
    """Counts the turns whose input is ``count`` in its state."""

    lash_plugin = lash.PluginMeta(name="counter", state=CountState)

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> None:
        if turn.input == "count":
            turn.session.state(CountState).counted += 1


def core_of(tmp_path: Path, rec: Recorder) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, rec, Counter()],
        builtins=(),
        store=sqlite_url(tmp_path),
        provider="recorder",
    )


async def test_only_changed_states_are_committed(tmp_path: Path) -> None:
    """A turn that changes a state commits it; one that does not leaves it out of its commit."""
    rec = Recorder(["one", "two", "three"])
    written: list[set[str]] = []
    async with core_of(tmp_path, rec) as core:
        commit = core.store.commit

        async def recording(*args: Any, **kwargs: Any) -> Any:
            written.append(set(kwargs["delta"].plugin_states))
            return await commit(*args, **kwargs)

        core.store.commit = recording  # type: ignore[method-assign]
        session = await core.session("s").open()
        await session.turn("count").run()
        await session.turn("talk").run()
        await session.turn("count").run()
        await session.close()
    assert ["counter" in w for w in written] == [True, False, True]
    async with core_of(tmp_path, Recorder([])) as core:
        again = await core.session("s").open(must_exist=True)
        assert again.state(CountState).counted == 2


async def test_an_idle_session_holds_no_lock_set_or_pending_lists(tmp_path: Path) -> None:
    """After a turn the handle keeps no lock, no set of running turns, no pending-change lists,
    no instance dict; the next turn works as before."""
    async with core_of(tmp_path, Recorder(["one", "two"])) as core:
        session = await core.session("s").open()
        await session.turn("count").run()
        runtime = session._runtime
        assert not hasattr(runtime, "__dict__") and not hasattr(session, "__dict__")
        assert runtime._lock is None and runtime._running is None and runtime._blobs is None
        pending = [name for name in type(runtime).__slots__ if name.startswith("_pending_")]
        assert pending and all(getattr(runtime, name) is None for name in pending)
        assert not runtime.has_pending
        result = await session.turn("count").run()
        assert result.outcome == "completed"
        assert session.state(CountState).counted == 2


async def test_executions_still_take_turns_while_the_lock_comes_and_goes(tmp_path: Path) -> None:
    """Turns started together run one at a time, in order, though the lock is dropped between
    them whenever no one holds or waits for it."""
    rec = Recorder([f"answer {i}" for i in range(6)])
    async with core_of(tmp_path, rec) as core:
        session = await core.session("s").open()
        results = await asyncio.gather(*(session.turn(f"turn {i}").run() for i in range(6)))
        assert [r.outcome for r in results] == ["completed"] * 6
        assert [r.index for r in results] == sorted(r.index for r in results)
        inputs = [n.text for n in session.nodes if isinstance(n, lash.UserMessage)]
        assert inputs == [f"turn {i}" for i in range(6)]
        assert session._runtime._lock is None


def test_new_sessions_share_their_hosts_default_config() -> None:
    """The config of a new session is one frozen object per (provider, model)."""
    assert new_session_config("p", "m") is new_session_config("p", "m")
    assert new_session_config("p", "m") == lash.SessionConfig(provider="p", model="m")
    assert new_session_config("p", "other").model == "other"
