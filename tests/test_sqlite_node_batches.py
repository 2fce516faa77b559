"""A commit's nodes in one SQLite row (migration 8): a row at seq s with n nodes holds the nodes
s to s + n - 1, its ``node_id``, ``kind`` and ``data`` the n values joined with newlines, its
``frame_id`` and ``turn`` theirs. A commit's consecutive nodes of one frame and turn share a
row; a node that opens a frame starts one; a node whose id holds a newline has one of its own.

Expected rows come from that format; expected nodes from what was committed (and what the
memory store gives for the same commits). tests/data/lash-migration-7.sql is a file lash wrote
at migration 7 (a node a row), of the nodes :func:`turn_nodes` and :func:`compaction` build.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import _cores as cores
import pytest
from _recorder import Recorder
from test_migration import restore
from test_sqlite_store import leased, opened, query, split_row

import lash
import lash.store

pytestmark = pytest.mark.anyio

DUMP = Path(__file__).parent / "data" / "lash-migration-7.sql"
ROW = "seq, node_id, kind, frame_id, turn, node_count"
TURN_KINDS = "user\nassistant\ntool_call\ntool_result\nassistant\noutcome"


def turn_nodes(turn: int, frame: str, tag: str) -> list[Any]:
    """A turn's six nodes as the standard protocol commits them (one tool call)."""
    call = lash.ToolCall(id=f"c{tag}", name="echo", arguments={"text": f"x{tag}"})
    head = {"frame_id": frame, "turn": turn}
    return [
        lash.UserMessage(id=f"u{tag}", parent_id=None, **head, text=f"hi {tag}"),
        lash.AssistantMessage(
            id=f"a{tag}", parent_id=f"u{tag}", **head, text="", tool_calls=(call,)
        ),
        lash.ToolCallNode(id=f"k{tag}", parent_id=f"a{tag}", **head, call=call),
        lash.ToolResultNode(
            id=f"r{tag}",
            parent_id=f"k{tag}",
            **head,
            call_id=f"c{tag}",
            name="echo",
            content=f"x{tag}",
        ),
        lash.AssistantMessage(id=f"b{tag}", parent_id=f"r{tag}", **head, text=f"done {tag}"),
        lash.TurnOutcome(
            id=f"o{tag}", parent_id=f"b{tag}", **head, turn_id=f"t{tag}", outcome="completed"
        ),
    ]


def compaction(turn: int, old: str, new: str, tag: str) -> list[Any]:
    """A compaction's commit: a node of the old frame, then the boundary opening the new one
    and its summary."""
    return [
        lash.PluginNode(
            id=f"p{tag}",
            parent_id=None,
            frame_id=old,
            turn=turn,
            plugin="compaction",
            kind="note",
            data={"n": 1},
        ),
        lash.FrameBoundary(
            id=f"f{tag}",
            parent_id=None,
            frame_id=new,
            turn=turn,
            previous_frame_id=old,
            reason="compaction",
            summary=f"summary {tag}",
        ),
        lash.UserMessage(
            id=f"s{tag}", parent_id=f"f{tag}", frame_id=new, turn=turn, text=f"summary {tag}"
        ),
    ]


#: The commits the dump holds (session "old"): a root frame F0 with turn 1, turn 2, a
#: compaction opening F1 (its boundary at seq 14), turn 3.
OLD = [
    [
        lash.FrameBoundary(id="f0", parent_id=None, frame_id="F0", turn=0, previous_frame_id=None),
        *turn_nodes(1, "F0", "1"),
    ],
    turn_nodes(2, "F0", "2"),
    compaction(2, "F0", "F1", "c1"),
    turn_nodes(3, "F1", "3"),
]
#: The commits made after the upgrade: turn 4, a compaction opening F2, turn 5.
NEW = [turn_nodes(4, "F1", "4"), compaction(4, "F1", "F2", "c2"), turn_nodes(5, "F2", "5")]


async def commit_all(store: Any, session_id: str, commits: list[list[Any]], revision: int) -> int:
    for nodes in commits:
        lease = await store.acquire_lease(session_id, "w", ttl=30)
        delta = lash.store.CommitDelta(nodes=tuple(nodes), turns=1, release=True)
        revision = await store.commit(
            session_id, lease=lease, expected_revision=revision, delta=delta
        )
    return revision


async def test_a_migration_7_file_is_upgraded_and_its_mixed_rows_load_as_the_memory_store(
    tmp_path: Path,
) -> None:
    """A file of one-node rows gains migrations 8 and 9 with its rows untouched and loads as
    committed; commits after it write rows of several nodes, positional; with one of those
    rows set back to bodies by keys (a packed row as migration 8 wrote it), the mixed history
    (one-node rows by keys, packed rows by keys and positional, active frame and full) loads
    as the memory store gives the same commits, also after reopening."""
    db = restore(DUMP, tmp_path / "old.db")
    before = query(db, "SELECT * FROM nodes ORDER BY seq")
    assert len(before) == 22
    memory = lash.store.MemoryStore()
    await commit_all(memory, "old", OLD, 0)
    old_nodes = tuple(n for nodes in OLD for n in nodes)
    async with opened(db) as store:
        full = await store.load("old", full=True)
        active = await store.load("old")
        assert full is not None and active is not None
        assert tuple(full.nodes) == old_nodes
        assert tuple(active.nodes) == old_nodes[14:]  # from the boundary opening F1
        assert query(db, "SELECT * FROM nodes ORDER BY seq") == [(*r, 1) for r in before]
        assert query(db, "SELECT max(id) FROM lash_migrations") == [(12,)]
        revision = await commit_all(store, "old", NEW[:1], full.revision)
        # Turn 4's row as a lash of migration 8 wrote it: its bodies by keys, joined.
        bodies = "\n".join(lash.store.node_body_json(n) for n in NEW[0])
        assert bodies.startswith('{"parent_id":')
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE nodes SET data = ? WHERE seq = 22", (bodies,))
        await commit_all(store, "old", NEW[1:], revision)
    await commit_all(memory, "old", NEW, 4)
    texts = [text for (text,) in query(db, "SELECT data FROM nodes WHERE seq > 22 ORDER BY seq")]
    assert all(t.startswith("[") for text in texts for t in text.split("\n"))
    assert query(db, f"SELECT {ROW} FROM nodes WHERE seq >= 22 ORDER BY seq") == [
        (22, "\n".join(f"{c}4" for c in "uakrbo"), TURN_KINDS, "F1", 4, 6),
        (28, "pc2", "plugin", "F1", 4, 1),  # the compaction's node of the old frame
        (29, "fc2\nsc2", "frame\nuser", "F2", 4, 2),  # its boundary starts a row
        (31, "\n".join(f"{c}5" for c in "uakrbo"), TURN_KINDS, "F2", 5, 6),
    ]
    assert query(db, "SELECT next_seq, frame_start FROM sessions") == [(37, 29)]
    for _ in range(2):  # the store that wrote them, then a new one
        async with opened(db) as store:
            for full_history in (False, True):
                got = await store.load("old", full=full_history)
                want = await memory.load("old", full=full_history)
                assert got is not None and want is not None
                assert tuple(got.nodes) == tuple(want.nodes)
                assert len(got.nodes) == (37 if full_history else 37 - 29)


def schema_of(path: Path) -> list[tuple[Any, ...]]:
    return query(path, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")


async def test_a_fresh_file_and_an_upgraded_one_have_the_same_schema(tmp_path: Path) -> None:
    """Migration 8 run on a file of migration 7 and a file made by this lash end with the same
    tables, indexes, views and triggers (the commit trigger made again with the new column)."""
    upgraded = restore(DUMP, tmp_path / "old.db")
    fresh = tmp_path / "new.db"
    for path in (upgraded, fresh):
        async with opened(path) as store:
            await store.open()
    assert schema_of(fresh) == schema_of(upgraded)
    assert query(fresh, "PRAGMA user_version") == query(upgraded, "PRAGMA user_version") == [(12,)]
    (trigger,) = [
        sql
        for kind, name, _, sql in schema_of(fresh)
        if kind == "trigger" and name == "apply_commit_request"
    ]
    assert "node_count" in trigger


async def test_a_real_turns_six_nodes_are_one_row(tmp_path: Path) -> None:
    """A turn of the kernel (a tool call, its result, the answer) is one node row: the six ids,
    kinds and bodies joined by newlines, the frame and turn of all six."""
    script = [{"tool_calls": [{"name": "echo", "id": "c1", "arguments": {"text": "x"}}]}, "done"]
    async with cores.make_core(tmp_path, Recorder(script * 2), cores.Echo()) as core:
        session = await core.session("s").open()
        await session.turn("one").run()
        await session.turn("two").run()
        nodes = list(session.nodes)
    db = tmp_path / "lash.db"
    rows = query(db, f"SELECT {ROW}, data FROM nodes ORDER BY seq")
    # The first commit: the root boundary (it starts the row) and turn 1; then turn 2.
    assert [(seq, count, turn) for seq, _, _, _, turn, count, _ in rows] == [(0, 7, 1), (7, 6, 2)]
    _, ids, kinds, frame_id, turn, _, data = rows[1]
    assert ids == "\n".join(n.id for n in nodes[7:])
    assert kinds == TURN_KINDS
    assert frame_id == nodes[0].frame_id and turn == 2
    # Positional bodies (node_row_json): user [parent, text], assistant [parent, text, calls,
    # usage, model], tool call [parent, call]...
    bodies = [json.loads(text) for text in data.split("\n")]
    assert [bodies[k][1] for k in (0, 1, 4)] == ["two", "", "done"]
    assert bodies[2][1] == ["c1", "echo", {"text": "x"}]


async def test_rows_split_at_a_boundary_at_another_turn_or_frame_and_at_a_newline_id(
    tmp_path: Path,
) -> None:
    """One commit: nodes of turn 1 in F0, of turn 2 in F0, of turn 2 in F1 (no boundary),
    a boundary opening F2 with a node after it, and a node whose id holds a newline between
    two of F2. Each change of turn or frame and the boundary start a row; the newline id has
    one of its own; everything loads as committed, the active frame from the boundary."""

    def node(node_id: str, frame: str, turn: int) -> lash.UserMessage:
        return lash.UserMessage(
            id=node_id, parent_id=None, frame_id=frame, turn=turn, text=f"text of {node_id}"
        )

    boundary = lash.FrameBoundary(
        id="b", parent_id=None, frame_id="F2", turn=2, previous_frame_id="F1", reason="compaction"
    )
    nodes = [
        node("a1", "F0", 1),
        node("a2", "F0", 1),
        node("b1", "F0", 2),
        node("b2", "F0", 2),
        node("c1", "F1", 2),
        node("c2", "F1", 2),
        boundary,
        node("d1", "F2", 2),
        node("x\ny", "F2", 2),
        node("e1", "F2", 2),
        node("e2", "F2", 2),
    ]
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(nodes), turns=2)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        assert query(db, f"SELECT {ROW} FROM nodes ORDER BY seq") == [
            (0, "a1\na2", "user\nuser", "F0", 1, 2),
            (2, "b1\nb2", "user\nuser", "F0", 2, 2),
            (4, "c1\nc2", "user\nuser", "F1", 2, 2),
            (6, "b\nd1", "frame\nuser", "F2", 2, 2),
            (8, "x\ny", "user", "F2", 2, 1),
            (9, "e1\ne2", "user\nuser", "F2", 2, 2),
        ]
        assert query(db, "SELECT next_seq, frame_start FROM sessions") == [(11, 6)]
        full = await store.load("s", full=True)
        active = await store.load("s")
    assert full is not None and tuple(full.nodes) == tuple(nodes)
    assert active is not None and tuple(active.nodes) == tuple(nodes[6:])
    async with opened(db) as again:  # read back by a store that did not write them
        record = await again.load("s", full=True)
    assert record is not None and tuple(record.nodes) == tuple(nodes)


@pytest.mark.parametrize(
    ("change", "params"),
    [
        ("node_count = 7", ()),  # more nodes than the row holds
        ("node_count = 5", ()),  # fewer
        ("node_count = 0", ()),
        ("node_count = 'six'", ()),
        ("node_id = replace(node_id, ?, '')", ("\nkt",)),  # an id lost
        ("kind = replace(kind, ?, '')", ("\ntool_call",)),  # a kind lost
        ("data = data || ?", ("\n{}",)),  # a body more
    ],
)
async def test_a_damaged_row_fails_the_load_naming_the_session_and_its_seq(
    tmp_path: Path, change: str, params: tuple[Any, ...]
) -> None:
    """A row whose ids, kinds and bodies do not each split into its node_count parts is
    refused at load with a ValidationError naming the session and the row's seq: the file
    would otherwise load as other nodes than it holds."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        await commit_all(store, "s", [turn_nodes(1, "F", "f"), turn_nodes(2, "F", "t")], 0)
    with sqlite3.connect(db) as conn:
        assert conn.execute(f"UPDATE nodes SET {change} WHERE seq = 6", params).rowcount == 1
    async with opened(db) as store:
        for full in (False, True):
            with pytest.raises(lash.ValidationError) as refused:
                await store.load("s", full=full)
            message = str(refused.value)
            assert "stored node of 's'" in message and "node row at seq 6" in message
            assert "node_count" in message


async def test_a_commit_statement_of_migration_7_writes_one_node_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lash of migration 7 still running on a file a newer one upgraded sends its commit
    statement's nodes as ``[seq, node_id, kind, frame_id, turn, data]`` (no count): the trigger
    writes them as rows of one node, which load back as committed."""
    from lash_plugins_builtin import sqlite as sqlite_store

    row = sqlite_store._Plan.row

    def without_counts(plan: Any) -> tuple[Any, ...]:
        values = list(row(plan))
        for i, value in enumerate(values):
            if (
                type(value) is str
                and value.startswith("[[")
                and value == sqlite_store._array([node[1:] for node in plan.nodes])
            ):
                # One array a node, as that lash's plan made them.
                values[i] = json.dumps([n[1:] for row in plan.nodes for n in split_row(row)])
                break
        else:
            raise AssertionError("no nodes array in the commit statement's row")
        return tuple(values)

    monkeypatch.setattr(sqlite_store._Plan, "row", without_counts)
    db = tmp_path / "lash.db"
    nodes = turn_nodes(1, "F0", "1")
    async with opened(db) as store:
        lease = await leased(store, "s")
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(nodes=(), turns=0)
        )
        # A replacing commit goes through the commit statement (its trigger), not plain writes.
        delta = lash.store.CommitDelta(nodes=tuple(nodes), turns=1, replace=True, release=True)
        await store.commit("s", lease=lease, expected_revision=1, delta=delta)
    assert query(db, f"SELECT {ROW} FROM nodes ORDER BY seq") == [
        (seq, node.id, kind, "F0", 1, 1)
        for seq, (node, kind) in enumerate(zip(nodes, TURN_KINDS.split("\n"), strict=True))
    ]
    async with opened(db) as store:
        record = await store.load("s")
        assert record is not None and record.nodes == tuple(nodes)
