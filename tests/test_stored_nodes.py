"""Nodes on demand: a session's stored rows as :class:`lash.store.StoredNodes` (each node built
when first read) and a graph resumed from them (its messages read from the decoded rows) give
what the eager path gives (every node built by :func:`lash.store.nodes_from_rows`, the graph
extended with them): the same nodes, messages, prompt, image count, leaf and frame."""

from __future__ import annotations

import copy
import json
import pickle
import shutil
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _cores as cores
import attrs
import hypothesis.strategies as st
import pytest
from _recorder import Recorder
from hypothesis import HealthCheck, given, settings
from test_node_codec import body_of, defaulted_nodes
from test_sqlite_store import graph_nodes, isolate_node, leased, node_rows, opened, split_row, texts

import lash
import lash.store
from lash import FrameBoundary, Message, ToolResultNode, TurnOutcome, UserMessage
from lash._contract import graph as graph_module
from lash._contract.graph import SessionGraph, new_node_id
from lash._contract.serialization import NODE_KINDS

_IMAGE = {"type": "image", "media_type": "image/png", "sha256": "ab" * 32}
_URL = {"type": "image", "url": "https://example.com/a.png"}


def _base(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "id": new_node_id(),
        "parent_id": draw(st.none() | texts),
        "frame_id": draw(st.sampled_from(["F", "G"])),
        "turn": draw(st.integers(0, 3)),
    }


@st.composite
def edge_nodes(draw: st.DrawFn) -> Any:
    """The nodes whose messages the graph makes differently: a user message with images,
    a turn that ended without an answer, a projected tool result, a boundary with a summary."""
    base = _base(draw)
    kind = draw(st.sampled_from(["image", "no answer", "projected", "summary", "plain user"]))
    if kind == "image":
        items = draw(st.lists(st.sampled_from([_IMAGE, _URL, {"type": "text"}]), max_size=2))
        return UserMessage(**base, text=draw(texts), items=tuple(items))
    if kind == "no answer":
        outcome = draw(st.sampled_from(["stopped", "failed"]))
        reason = draw(st.none() | st.sampled_from(["cancelled", "max_tool_rounds"]))
        return TurnOutcome(**base, turn_id="t", outcome=outcome, reason=reason)
    if kind == "projected":
        return ToolResultNode(
            **base, call_id=draw(texts), name="echo", content=draw(texts), projected=draw(texts)
        )
    if kind == "summary":
        summary = draw(st.none() | texts)
        return FrameBoundary(**base, previous_frame_id="F", reason="compaction", summary=summary)
    return UserMessage(**base, text=draw(texts))


pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True, scope="module")
def _on_demand_for_any_frame() -> Iterator[None]:
    """Frames of any length resume on demand here (the rows as short as a test draws them),
    not only the long ones (graph.ON_DEMAND_MIN rows and more) it is for."""
    kept = graph_module.ON_DEMAND_MIN
    graph_module.ON_DEMAND_MIN = 1
    yield
    graph_module.ON_DEMAND_MIN = kept


nodes_any = graph_nodes() | edge_nodes() | defaulted_nodes


#: How a row holds a node: its positional body (node_row_json: what the SQLite store writes
#: since migration 9), its body by keys (without the fields at their plain defaults), its body
#: with them (as lash wrote it before), or its whole stored form (files before migration 7).
FORMS = ("row", "body", "full", "whole")


def _row(node: Any, form: str = "body") -> tuple[Any, ...]:
    """The row a store keeps of ``node``, its text of the ``form`` given, with the id, kind,
    frame and turn as columns."""
    if form == "whole":
        text = lash.store.node_json(node)
    elif form == "full":
        text = json.dumps(body_of(node), separators=(",", ":"), ensure_ascii=False)
    elif form == "row":
        text = lash.store.node_row_json(node)
    else:
        text = lash.store.node_body_json(node)
    return (node.id, NODE_KINDS[type(node).__name__], node.frame_id, node.turn, text)


def _frame(boundary: bool, first: Any, nodes: list[Any]) -> list[Any]:
    return [first, *nodes] if boundary else nodes


def assert_same_graph(lazy: SessionGraph, eager: SessionGraph) -> None:
    """Everything a reader of the graph sees is the same both ways."""
    assert lazy.messages() == eager.messages()
    assert all(type(m) is Message for m in lazy.messages())
    assert lazy.image_messages == eager.image_messages
    assert lazy.prompt_messages() == eager.prompt_messages()
    first = Message("system", "sys")
    assert lazy.prompt_messages(first) == eager.prompt_messages(first)
    assert len(lazy) == len(eager) and len(lazy.nodes) == len(eager.nodes)
    assert lazy.frame_id == eager.frame_id
    assert lazy.leaf == eager.leaf
    assert list(lazy.active_path()) == list(eager.active_path())
    assert list(lazy) == list(eager.nodes)
    assert [type(n) for n in lazy.nodes] == [type(n) for n in eager.nodes]


@settings(max_examples=300, deadline=None)
@given(
    start=st.booleans(),
    first=st.builds(
        FrameBoundary,
        id=st.just("b0"),
        parent_id=st.none(),
        frame_id=st.just("F"),
        turn=st.just(0),
        previous_frame_id=st.none(),
        summary=st.none() | texts,
    ),
    nodes=st.lists(nodes_any, max_size=14),
    forms=st.lists(st.sampled_from(FORMS), max_size=15),
    reads=st.lists(st.integers(-16, 15), max_size=4),
    more=st.lists(nodes_any, max_size=4),
)
def test_rows_read_on_demand_give_what_the_eager_path_gives(
    start: bool,
    first: Any,
    nodes: list[Any],
    forms: list[str],
    reads: list[int],
    more: list[Any],
) -> None:
    """Random rows (every kind, the edge cases, unicode, fields at their defaults or not, the
    three forms of a row's text mixed, boundaries
    anywhere): StoredNodes reads as the tuple nodes_from_rows builds, whatever is read first;
    a graph extended with it holds the same nodes and messages as one extended with the
    tuple, before and after more nodes are appended; a node read twice is the same object."""
    frame = _frame(start, first, nodes)
    rows = [_row(n, forms[i] if i < len(forms) else "row") for i, n in enumerate(frame)]
    eager_nodes = lash.store.nodes_from_rows(rows)
    assert list(eager_nodes) == frame
    stored = lash.store.nodes_on_demand(rows)
    lazy = SessionGraph()
    lazy.extend(stored)
    for i in reads:  # some nodes read before any other reading
        if -len(frame) <= i < len(frame):
            assert stored[i] == eager_nodes[i]
            assert stored[i] is stored[i]
        else:
            with pytest.raises(IndexError):
                stored[i]
    eager = SessionGraph()
    eager.extend(eager_nodes)
    assert_same_graph(lazy, eager)
    assert stored == eager_nodes and eager_nodes == stored and stored == list(eager_nodes)
    assert len(stored) == len(eager_nodes) and tuple(stored) == eager_nodes
    assert stored[1:3] == eager_nodes[1:3] and type(stored[1:3]) is tuple
    assert list(reversed(stored)) == list(reversed(eager_nodes))
    try:
        expected = hash(eager_nodes)
    except TypeError:  # a node holding a list (an item, an argument) is not hashable
        with pytest.raises(TypeError):
            hash(stored)
    else:
        assert hash(stored) == expected
    tail = (first,)  # + as a tuple's: the test of StoredNodes' __add__ and __radd__
    assert stored + tail == (*eager_nodes, first) and tail + stored == (first, *frame)
    assert pickle.loads(pickle.dumps(stored)) == eager_nodes
    for node in more:
        lazy.append(node)
        eager.append(node)
        assert_same_graph(lazy, eager)
    # One object per node, shared by the record and the graph that resumed from it.
    for i in range(min(len(stored), len(lazy.nodes))):
        if lazy.nodes[0] is stored[0]:  # (the graph holds the record's frame)
            assert lazy.nodes[i] is stored[i]
    assert len(stored) == len(frame)  # the graph's appends are not the record's


@settings(max_examples=200, deadline=None)
@given(nodes=st.lists(nodes_any, max_size=10), more=st.lists(nodes_any, max_size=3))
def test_a_stored_tuple_and_stored_nodes_resume_alike(nodes: list[Any], more: list[Any]) -> None:
    """A store that returns a plain tuple (the memory store, Postgres) still resumes the general
    way, to the same graph as StoredNodes (rows by keys and positional); appending works on
    both."""
    rows = [_row(n, "row" if i % 2 else "body") for i, n in enumerate(nodes)]
    via_tuple, via_stored = SessionGraph(), SessionGraph()
    via_tuple.extend(tuple(nodes))
    via_stored.extend(lash.store.nodes_on_demand(rows))
    for node in more:
        via_tuple.append(node)
        via_stored.append(node)
    assert_same_graph(via_stored, via_tuple)


@pytest.mark.parametrize("form", ["row", "body", "full"])
def test_resuming_builds_only_the_nodes_it_needs(form: str) -> None:
    """A frame of plain turns, its rows' bodies positional or by keys, without their defaults
    (no items, no projected...) or with them (as written before): only its boundary is built
    at resume
    (the messages come from the decoded rows), the leaf when read; reading every node builds
    the rest, once."""
    head = {"parent_id": None, "frame_id": "F"}
    frame: list[Any] = [FrameBoundary(id="b", turn=0, previous_frame_id=None, **head)]
    for t in range(1, 4):
        call = lash.ToolCall(f"c{t}", "echo", {"text": "ünï ☃"})
        frame += [
            UserMessage(id=f"u{t}", turn=t, text=f"turn {t}", **head),
            lash.AssistantMessage(id=f"a{t}", turn=t, text="", tool_calls=(call,), **head),
            lash.ToolCallNode(id=f"c{t}", turn=t, call=call, **head),
            ToolResultNode(id=f"r{t}", turn=t, call_id=f"c{t}", name="echo", content="x", **head),
            lash.AssistantMessage(id=f"d{t}", turn=t, text=f"done {t}", **head),
            TurnOutcome(id=f"o{t}", turn=t, turn_id=f"t{t}", outcome="completed", **head),
        ]
    stored = lash.store.nodes_on_demand([_row(n, form) for n in frame])
    graph = SessionGraph()
    graph.extend(stored)

    def built() -> int:
        items = stored._shared.items
        return sum(item is not None and type(item) not in (dict, list) for item in items)

    assert built() == 1 and len(graph.messages()) == 12
    assert graph.leaf == frame[-1] and built() == 2
    assert graph.frame_id == "F" and built() == 2
    nodes = list(graph.nodes)
    assert nodes == frame and built() == len(frame)
    assert all(a is b for a, b in zip(nodes, stored, strict=True))
    assert not stored._shared.rows  # every node built: the rows are let go


# -- through the SQLite store and the kernel ------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(nodes=st.lists(nodes_any, min_size=1, max_size=10))
async def test_a_sqlite_file_loads_nodes_on_demand_as_the_eager_path_reads_them(
    tmp_path: Path, nodes: list[Any]
) -> None:
    """Random nodes committed to a real SQLite file: load() gives StoredNodes equal to what
    nodes_from_rows builds of the file's rows, and a graph resumed from each is the same."""
    db = tmp_path / f"{new_node_id()}.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(nodes), turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        for full in (False, True):
            record = await store.load("s", full=full)
            assert record is not None and type(record.nodes) is lash.store.StoredNodes
            start = 0 if full else len(nodes) - len(record.nodes)
            rows = [node[2:] for node in node_rows(db) if node[1] >= start]
            eager_nodes = lash.store.nodes_from_rows(rows)
            assert record.nodes == eager_nodes
            lazy, eager = SessionGraph(), SessionGraph()
            lazy.extend(record.nodes)
            eager.extend(eager_nodes)
            assert_same_graph(lazy, eager)


async def test_a_sqlite_file_of_bodies_with_their_defaults_loads_and_takes_new_commits(
    tmp_path: Path,
) -> None:
    """A file whose rows hold bodies with every field (as lash wrote them before it left out
    plain defaults) and nodes of every class at their defaults: load() builds the same nodes,
    the messages are read from the rows without building them, and a commit adds rows
    without defaults; the mixed file loads as committed, also after reopening."""
    from test_node_codec import NODE_CLASSES, at_defaults

    db = tmp_path / "lash.db"
    frame = [
        FrameBoundary(id="b0", parent_id=None, frame_id="F", turn=0, previous_frame_id=None),
        *(
            attrs.evolve(at_defaults(cl), id=f"n{i}", frame_id="F")
            for i, cl in enumerate(NODE_CLASSES)
            if cl is not FrameBoundary  # (it would open a frame)
        ),
    ]
    more = [UserMessage(id="u2", parent_id=None, frame_id="F", turn=2, text="again")]
    async with opened(db) as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(frame), turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        await store.release_lease(lease)
    for seq in range(len(frame)):
        isolate_node(db, "s", seq)  # (a row of its own: a file of migration 7 holds such rows)
    with sqlite3.connect(db) as conn:
        for seq, node in enumerate(frame):
            full = json.dumps(body_of(node), separators=(",", ":"), ensure_ascii=False)
            conn.execute("UPDATE nodes SET data = ? WHERE seq = ?", (full, seq))
    texts = [row[6] for row in node_rows(db)]
    assert '"items":[]' in texts[1] and '"is_error":false' in texts[4]
    assert frame[-1] == TurnOutcome(
        id="n6", parent_id="p", frame_id="F", turn=3, turn_id="x", outcome="completed"
    )
    async with opened(db) as store:
        record = await store.load("s")
        assert record is not None and record.nodes == tuple(frame)
        record = await store.load("s")
        assert record is not None and type(record.nodes) is lash.store.StoredNodes
        graph = SessionGraph()
        graph.extend(record.nodes)
        items = record.nodes._shared.items
        built = [i for i, item in enumerate(items) if item is not None and type(item) is not dict]
        assert built == [0, 5]  # the boundary and the plugin node: no message to read
        eager = SessionGraph()
        eager.extend(tuple(frame))
        assert_same_graph(graph, eager)
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(more), turns=1)
        await store.commit("s", lease=lease, expected_revision=1, delta=delta)
    async with opened(db) as again:
        record = await again.load("s")
        assert record is not None and record.nodes == (*frame, *more)
    with sqlite3.connect(db) as conn:
        (last,) = conn.execute("SELECT data FROM nodes ORDER BY seq DESC LIMIT 1").fetchone()
    assert last == '[null,"again"]'


_SCRIPT = [
    {"tool_calls": [{"name": "echo", "id": "c1", "arguments": {"text": "ünï ☃"}}]},
    "done",
    "plain answer",
]


async def _session_in_two_copies(tmp_path: Path, script: list[Any]) -> tuple[Path, Path]:
    """A session of three real turns on SQLite ("one", "two ☃", "three"), its file in two
    directories: one to resume on demand, one with every node built at load."""
    first = tmp_path / "a"
    first.mkdir()
    async with cores.make_core(first, Recorder(script), cores.Echo()) as core:
        session = await core.session("s").open()
        for text in ("one", "two ☃", "three"):
            await session.turn(text).run()
    second = tmp_path / "b"
    second.mkdir()
    shutil.copy(first / "lash.db", second / "lash.db")
    return first, second


def _load_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQLite store builds every node at load (nodes_from_rows' tuple), as before nodes on
    demand."""
    from lash_plugins_builtin import sqlite as sqlite_store

    def eager(session_id: str, rows: list[Any]) -> Any:
        # (the rows as the load reads them: node_id, kind, frame_id, turn, data, count, seq)
        nodes = [n[2:] for r in rows for n in split_row((session_id, r[6], *r[:4], *r[4:6]))]
        return lash.store.nodes_from_rows(nodes, what=f"stored node of {session_id!r}")

    monkeypatch.setattr(sqlite_store, "_nodes", eager)


async def test_a_resumed_session_shows_and_prompts_what_the_eager_path_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session of real turns on SQLite, resumed by two cores from copies of one file, one
    reading its nodes on demand and one building them all (the store patched to return
    nodes_from_rows' tuple): the same session.nodes, and the same prompt for the next turn."""
    first, second = await _session_in_two_copies(tmp_path, _SCRIPT * 3)

    async def resume(directory: Path) -> tuple[tuple[Any, ...], Any]:
        rec = Recorder(["next"])
        async with cores.make_core(directory, rec, cores.Echo()) as core:
            session = await core.session("s").open(must_exist=True)
            nodes = session.nodes
            await session.turn("four").run()
        return nodes, rec.requests[0].messages

    lazy_nodes, lazy_prompt = await resume(first)
    _load_eagerly(monkeypatch)
    eager_nodes, eager_prompt = await resume(second)
    assert lazy_nodes == eager_nodes and len(lazy_nodes) == 1 + 6 + 3 + 6
    assert lazy_prompt == eager_prompt
    assert [m.role for m in lazy_prompt][-2:] == ["assistant", "user"]


# -- a bad row names the session ----------------------------------------------------------


async def _one_session(db: Path) -> None:
    async with opened(db) as store:
        lease = await leased(store, "s")
        head = {"parent_id": None, "frame_id": "F", "turn": 1}
        call = lash.ToolCall("c1", "echo", {})
        nodes = (
            FrameBoundary(id="b", previous_frame_id=None, **head),
            UserMessage(id="u", text="hi", **head),
            lash.AssistantMessage(id="a", text="", tool_calls=(call,), **head),
            lash.ToolCallNode(id="c", call=call, **head),
            ToolResultNode(id="r", call_id="c1", name="echo", content="x", **head),
            TurnOutcome(id="o", turn_id="t", outcome="completed", **head),
        )
        delta = lash.store.CommitDelta(nodes=nodes, turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)


def _alone(db: Path, node_id: str) -> None:
    """Node ``node_id`` of session ``s`` in a row of its own, for a test to change."""
    isolate_node(db, "s", next(node[1] for node in node_rows(db) if node[2] == node_id))


def _spoil(db: Path, node_id: str, change: Any, form: str = "row") -> None:
    """Change node ``node_id``'s body by keys (``change`` edits the dict), written back in
    its row as the array of its fields (``row``: the form the store wrote) or by keys."""
    from test_node_codec import keyed_of, unkeyed_of

    _alone(db, node_id)
    with sqlite3.connect(db) as conn:
        (text, kind) = conn.execute(
            "SELECT data, kind FROM nodes WHERE node_id = ?", (node_id,)
        ).fetchone()
        cl = getattr(lash, next(n for n, tag in NODE_KINDS.items() if tag == kind))
        data = json.loads(text)
        assert type(data) is list  # what the store writes
        data = keyed_of(cl, data, ("id", "frame_id", "turn"))
        change(data)
        if form == "row":
            data = unkeyed_of(cl, data, ("id", "frame_id", "turn"))
        conn.execute("UPDATE nodes SET data = ? WHERE node_id = ?", (json.dumps(data), node_id))


@pytest.mark.parametrize("form", ["row", "body"])
@pytest.mark.parametrize(
    ("node_id", "change", "problem"),
    [
        ("a", lambda d: d.update(text=3), "text: expected str, got 3 (int)"),
        ("u", lambda d: d.update(items="ab"), "items: expected tuple[Any, ...], got 'ab'"),
        ("r", lambda d: d.update(content=None), "content: expected str, got None"),
        ("a", lambda d: d["tool_calls"][0].update(name=1), "tool_calls[0].name: expected str"),
        ("o", lambda d: d.update(outcome="won"), "outcome: expected"),
    ],
)
async def test_a_bad_field_a_resume_reads_fails_the_open_naming_the_session(
    tmp_path: Path, node_id: str, change: Any, problem: str, form: str
) -> None:
    """A body (positional or by keys) spoiled in a field the prompt's messages are read from
    fails the open (the row goes the general way), with a ValidationError naming the session
    and the field."""
    db = tmp_path / "lash.db"
    await _one_session(db)
    _spoil(db, node_id, change, form)
    async with opened(db) as store:
        record = await store.load("s")
        assert record is not None
        with pytest.raises(lash.ValidationError) as invalid:
            SessionGraph().extend(record.nodes)
    assert str(invalid.value).startswith("invalid stored node of 's':\n  - ")
    (line,) = invalid.value.problems
    assert problem in line


@pytest.mark.parametrize("form", ["row", "body"])
async def test_a_bad_field_no_message_reads_fails_when_its_node_is_built(
    tmp_path: Path, form: str
) -> None:
    """A body (positional or by keys) spoiled in a field no message reads (an assistant
    message's usage) loads and resumes; building its node (reading the nodes) raises the
    ValidationError naming the session, every time it is read; the other nodes read as they
    should."""
    db = tmp_path / "lash.db"
    await _one_session(db)
    _spoil(db, "a", lambda d: d["usage"].update(input_tokens=True), form)
    async with opened(db) as store:
        record = await store.load("s")
        assert record is not None
        graph = SessionGraph()
        graph.extend(record.nodes)
        assert [m.role for m in graph.messages()] == ["user", "assistant", "tool"]
        assert graph.leaf is not None and graph.leaf.id == "o"
        for _ in range(2):
            with pytest.raises(lash.ValidationError) as invalid:
                list(graph.nodes)
            assert str(invalid.value).startswith("invalid stored node of 's':\n  - ")
            assert "usage.input_tokens: expected int, got True (bool)" in invalid.value.problems[0]
        assert record.nodes[1].id == "u"


@pytest.mark.parametrize(
    ("column", "value"), [("kind", "memo"), ("turn", "x"), ("node_id", b"o"), ("frame_id", b"F")]
)
async def test_a_bad_column_fails_the_load_naming_the_session(
    tmp_path: Path, column: str, value: Any
) -> None:
    """A row's columns are checked at load, whatever its kind."""
    db = tmp_path / "lash.db"
    await _one_session(db)
    _alone(db, "o")
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE nodes SET {column} = ? WHERE node_id = 'o'", (value,))
    async with opened(db) as store:
        with pytest.raises(lash.ValidationError, match="invalid stored node of 's'"):
            await store.load("s")


class _KeepOne:
    """A compactor keeping the last turn verbatim beside its summary."""

    lash_plugin = lash.PluginMeta(name="keep_one")

    @lash.hookimpl(trylast=True)
    def compact_context(self) -> lash.Compaction:
        return lash.Compaction(summary="so far", keep_recent_turns=1)


def _shape(nodes: Any) -> list[tuple[Any, ...]]:
    """What two runs with other random ids share: each node's class, text and content."""
    return [
        (type(n).__name__, getattr(n, "text", None), getattr(n, "content", None)) for n in nodes
    ]


async def test_a_session_resumed_on_demand_compacts_as_the_eager_path_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compaction right after a resume (it reads every node of the frame) and a turn after it:
    the same frame, prompt and stored nodes whether the nodes were read on demand or built at
    load."""
    first, second = await _session_in_two_copies(tmp_path, _SCRIPT * 2)

    async def resume_and_compact(directory: Path) -> tuple[Any, ...]:
        rec = Recorder(["after"])
        async with cores.make_core(directory, rec, cores.Echo(), _KeepOne()) as core:
            session = await core.session("s").open(must_exist=True)
            frame = await session.compact()
            assert frame is not None
            kept = _shape(session.nodes)
            await session.turn("four").run()
            after = _shape(session.nodes)
        stored = await cores.stored(directory, full=True)
        return kept, after, rec.requests[0].messages, _shape(stored.nodes)

    lazy = await resume_and_compact(first)
    _load_eagerly(monkeypatch)
    assert await resume_and_compact(second) == lazy
    kept, _, prompt, _ = lazy
    assert kept[0][0] == "FrameBoundary" and ("UserMessage", "three", None) in kept
    assert prompt[0].content.endswith("so far") and prompt[-1].content == "four"


# -- read from threads, reloaded after a failure, resumed twice ------------------------------


def _chat_rows(turns: int) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """A frame of ``turns`` plain chat turns (a user message and its answer each), and its rows."""
    head: dict[str, Any] = {"parent_id": None, "frame_id": "F", "turn": 1}
    frame: list[Any] = [FrameBoundary(id="b", previous_frame_id=None, **head)]
    for t in range(turns):
        frame += [
            UserMessage(id=f"u{t}", text=f"q{t}", **head),
            lash.AssistantMessage(id=f"a{t}", text=f"r{t}", **head),
        ]
    return frame, [_row(n) for n in frame]


def _read_nodes(
    graph: SessionGraph,
    start: threading.Barrier,
    seen: list[Any],
    errors: list[BaseException],
    k: int,
) -> None:
    """Thread ``k``: once every thread is ready, every node of ``graph``, whole (odd ``k``) or
    one by one from the last."""
    start.wait()
    try:
        nodes = graph.nodes
        if k % 2:
            seen[k] = tuple(nodes)
        else:
            seen[k] = tuple(nodes[i] for i in range(len(nodes) - 1, -1, -1))[::-1]
    except BaseException as exc:
        errors.append(exc)


def test_threads_reading_a_resumed_graph_at_once_get_one_node_each() -> None:
    """Sync tools run in threads of their own and read ``ctx.session.nodes`` (the graph's nodes)
    at once: each thread reads every node (whole or one by one), none fails, and every thread
    gets the same object for a node."""
    frame, rows = _chat_rows(300)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race, every trial
    try:
        for trial in range(40):
            graph = SessionGraph()
            graph.extend(lash.store.nodes_on_demand(rows, what="stored node of 's'"))
            start = threading.Barrier(4)
            seen: list[Any] = [None] * 4
            errors: list[BaseException] = []
            threads = [
                threading.Thread(target=_read_nodes, args=(graph, start, seen, errors, k))
                for k in range(4)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not errors, f"trial {trial}: {errors[0]!r}"
            assert seen[0] == tuple(frame)
            for other in seen[1:]:
                assert all(a is b for a, b in zip(seen[0], other, strict=True)), trial
    finally:
        sys.setswitchinterval(interval)


def count_nodes(ctx: lash.ToolContext, tag: str) -> str:
    """Counts the nodes of the active frame."""
    return f"{tag}: {len(ctx.session.nodes)} nodes"


class _Counter:
    lash_plugin = lash.PluginMeta(name="counter")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(count_nodes)


async def test_two_sync_tools_of_one_turn_read_a_resumed_sessions_nodes(tmp_path: Path) -> None:
    """A resumed SQLite session of 2,002 nodes; the model calls two sync tools at once (each in
    its own thread), each reading ``ctx.session.nodes``: both see every node.

    On the code before the fix (e05a603^) one tool raised IndexError in 18 of 20 runs (2,002
    nodes; 6,002 nodes: 15 of 15; the 64 nodes of the on-demand path's minimum: 4 of 15). The
    set-up's lease is released: the core would otherwise wait for it to expire (30 s)."""
    frame, _ = _chat_rows(1000)
    frame.append(
        TurnOutcome(id="o", parent_id=None, frame_id="F", turn=1, turn_id="t", outcome="completed")
    )
    async with opened(tmp_path / "lash.db") as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(frame), turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        await store.release_lease(lease)
    calls = [
        {"name": "count_nodes", "id": f"c{k}", "arguments": {"tag": tag}}
        for k, tag in enumerate("AB")
    ]
    rec = Recorder([{"tool_calls": calls}, "done"])
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        async with cores.make_core(tmp_path, rec, _Counter()) as core:
            session = await core.session("s").open(must_exist=True)
            result = await session.turn("go").run()
    finally:
        sys.setswitchinterval(interval)
    assert result.outcome == "completed"
    tools = [m.content for m in rec.requests[-1].messages if m.role == "tool"]
    count = len(frame) + 4  # and the turn's user message, its answer, its two tool calls
    assert tools == [f"A: {count} nodes", f"B: {count} nodes"]


async def test_a_stale_session_whose_reload_fails_stays_stale_and_commits_nothing(
    tmp_path: Path,
) -> None:
    """A commit fails (the image is stale), and the reload before the next turn fails on a row
    spoiled in a field only its node's build checks: the turn fails with the ValidationError
    naming the session, the image stays stale with its graph (not an empty one marked current),
    and the turn after fails the same way: nothing is committed (a turn run on an empty graph
    would commit a frame without the history)."""
    rec = Recorder(["one", "two", "three", "four", "five"])
    async with cores.make_core(tmp_path, rec) as core:
        session = await core.session("s").open()
        await session.turn("first").run()
        await session.turn("second").run()
        _spoil_first_user(tmp_path / "lash.db")
        store = core.store
        commit = store.commit
        failed: list[int] = []

        async def fail_once(*args: Any, **kwargs: Any) -> Any:
            if not failed:
                failed.append(1)
                raise RuntimeError("disk hiccup")
            return await commit(*args, **kwargs)

        store.commit = fail_once  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="disk hiccup"):
            await session.turn("third").run()
        image = session._runtime.image
        assert image.stale
        before = image.graph
        for text in ("fourth", "fifth"):
            with pytest.raises(lash.ValidationError) as invalid:
                await session.turn(text).run()
            assert str(invalid.value).startswith("invalid stored node of 's':\n  - ")
            assert "items: expected tuple[Any, ...], got 'ab'" in invalid.value.problems[0]
            image = session._runtime.image
            assert image.stale and image.revision == 2 and image.graph is before
    with sqlite3.connect(tmp_path / "lash.db") as conn:
        (count,) = conn.execute("SELECT sum(node_count) FROM nodes").fetchone()
        (revision,) = conn.execute("SELECT revision FROM sessions").fetchone()
    assert count == 7 and revision == 2  # a boundary and two turns of three nodes


def _spoil_first_user(db: Path) -> None:
    node_id = next(node[2] for node in node_rows(db) if node[3] == "user")
    _spoil(db, node_id, lambda d: d.update(items="ab"))


def test_a_resume_that_fails_on_a_row_leaves_the_graph_unchanged() -> None:
    """Extending an empty graph with stored nodes whose last row fails its build raises the
    ValidationError naming the session, and leaves the graph empty (no messages of the rows
    read before); the record reads its other nodes, and a graph extended again fails alike."""
    frame, rows = _chat_rows(40)
    bad = json.loads(rows[-2][4])
    bad["items"] = "ab"
    rows[-2] = (*rows[-2][:4], json.dumps(bad))
    stored = lash.store.nodes_on_demand(rows, what="stored node of 's'")
    for _ in range(2):
        graph = SessionGraph()
        with pytest.raises(lash.ValidationError, match="invalid stored node of 's'"):
            graph.extend(stored)
        assert list(graph.nodes) == [] and graph.messages() == []
        assert graph.leaf is None and graph.frame_id is None
    assert stored[1] == frame[1] and stored[-1] == frame[-1]


def test_two_graphs_resumed_from_one_record_are_independent() -> None:
    """Two graphs extended with one record's nodes (and a third after the first appended):
    each holds its own list; what one appends is not in the other nor in the record."""
    frame, rows = _chat_rows(40)
    stored = lash.store.nodes_on_demand(rows)
    first, second = SessionGraph(), SessionGraph()
    first.extend(stored)
    second.extend(stored)
    extra = UserMessage(id="x", parent_id=None, frame_id="F", turn=2, text="only the first")
    first.append(extra)
    third = SessionGraph()
    third.extend(stored)
    assert list(first.nodes) == [*frame, extra]
    assert list(second.nodes) == frame and list(third.nodes) == frame
    assert list(stored) == frame
    assert second.messages() == third.messages() == first.messages()[:-1]
    assert all(a is b for a, b in zip(first.nodes, second.nodes, strict=False))


def test_a_copy_of_a_resumed_graph_appends() -> None:
    """A deep copy of a graph resumed from stored nodes holds a list of its nodes (as a pickle
    of its nodes is): it appends as the graph does."""
    frame, rows = _chat_rows(40)
    graph = SessionGraph()
    graph.extend(lash.store.nodes_on_demand(rows))
    extra = UserMessage(id="x", parent_id=None, frame_id="F", turn=2, text="more")
    assert pickle.loads(pickle.dumps(graph.nodes)) == frame
    other = copy.deepcopy(graph)
    assert type(other.nodes) is list and other.nodes == frame
    other.append(extra)
    assert other.nodes == [*frame, extra] and other.messages()[-1].content == "more"
    assert list(graph.nodes) == frame


def test_a_short_frame_resumes_with_its_nodes_built_and_a_long_one_on_demand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frame of fewer than ON_DEMAND_MIN rows resumes with every node built and the rows let
    go (less memory than rows kept to build the nodes later); a longer one on demand."""
    monkeypatch.setattr(graph_module, "ON_DEMAND_MIN", 64)
    short, rows = _chat_rows(31)  # 63 nodes
    stored = lash.store.nodes_on_demand(rows)
    graph = SessionGraph()
    graph.extend(stored)
    assert type(graph.nodes) is list and graph.nodes == short and not stored._shared.rows
    assert [m.content for m in graph.messages()][-2:] == ["q30", "r30"]
    long, rows = _chat_rows(32)  # 65 nodes
    stored = lash.store.nodes_on_demand(rows)
    graph = SessionGraph()
    graph.extend(stored)
    assert type(graph.nodes) is not list and len(stored._shared.rows) == len(long)
    built = [item for item in stored._shared.items if item is not None and type(item) is not dict]
    assert built == [long[0]]  # the boundary
    assert list(graph.nodes) == long
