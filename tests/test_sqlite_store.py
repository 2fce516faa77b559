"""The ``sqlite://`` store on real SQLite files: round trips, leases, commits, migrations, errors,
and a kernel that resumes from the file."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from _recorder import Recorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lash
import lash.store
import lash_plugins_builtin.openai as openai_plugin
from lash._contract.serialization import NODE_KINDS
from lash_plugins_builtin import _sqlite_schema, plan, standard, stores
from lash_plugins_builtin import sqlite as sqlite_module
from lash_plugins_builtin.sqlite import SQLiteStore, parse_url

pytestmark = pytest.mark.anyio

#: ``PRAGMA application_id`` the spec gives a lash database: "LASH" in ASCII.
LASH_APPLICATION_ID = 0x4C415348


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


@contextlib.asynccontextmanager
async def opened(path: Path, **kwargs: Any) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(url_of(path), **kwargs)
    try:
        yield store
    finally:
        await store.close()


def query(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the database directly, beside the store."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


#: A node row as the file holds it (migration 8: a row holds ``node_count`` nodes).
ROW = "session_id, seq, node_id, kind, frame_id, turn, data, node_count"


def split_row(row: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The nodes of a stored row (:data:`ROW`), one ``(session_id, seq, node_id, kind,
    frame_id, turn, data)`` each: a row at seq s of n nodes holds the nodes s to s + n - 1, its
    id, kind and data the n values joined with newlines, its frame and turn theirs."""
    session_id, seq, ids, kinds, frame_id, turn, data, count = row
    parts = (ids.split("\n"), kinds.split("\n"), data.split("\n")) if count > 1 else None
    if parts is None:
        return [(session_id, seq, ids, kinds, frame_id, turn, data)]
    assert all(len(p) == count for p in parts), row
    return [
        (session_id, seq + i, node_id, kind, frame_id, turn, text)
        for i, (node_id, kind, text) in enumerate(zip(*parts, strict=True))
    ]


def node_rows(path: Path, where: str = "1", params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The stored nodes of the rows ``where`` selects, one row each (see :func:`split_row`),
    in session and seq order, read with sqlite3 (not through lash)."""
    rows = query(path, f"SELECT {ROW} FROM nodes WHERE {where} ORDER BY session_id, seq", params)
    return [node for row in rows for node in split_row(row)]


def isolate_node(path: Path, session_id: str, seq: int) -> None:
    """Rewrite the row holding node ``seq`` of the session as up to three rows (the nodes
    before it, it alone, those after it): the same nodes, stored as a file may hold them, with
    node ``seq`` in a row of its own for a test to change."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            row = conn.execute(
                f"SELECT {ROW} FROM nodes WHERE session_id = ? AND seq <= ? "
                "ORDER BY seq DESC LIMIT 1",
                (session_id, seq),
            ).fetchone()
            nodes = split_row(row)
            conn.execute("DELETE FROM nodes WHERE session_id = ? AND seq = ?", row[:2])
            first = seq - row[1]
            for part in (nodes[:first], nodes[first : first + 1], nodes[first + 1 :]):
                if part:
                    joined = ["\n".join(str(n[i]) for n in part) for i in (2, 3, 6)]
                    conn.execute(
                        f"INSERT INTO nodes ({ROW}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (*part[0][:2], *joined[:2], *part[0][4:6], joined[2], len(part)),
                    )
    finally:
        conn.close()


#: Every table of a lash database (migrations 1 to 4).
TABLES = (
    "sessions",
    "nodes",
    "blobs",
    "plugin_states",
    "usage_ledger",
    "usage_totals",
    "inputs",
    "commands",
    "turn_records",
    "cancel_requests",
    "events",
    "processes",
)


def row_counts(path: Path) -> dict[str, int]:
    return {t: query(path, f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES}


def dump(path: Path) -> list[tuple[Any, ...]]:
    """Every row of every lash table (a snapshot to compare before/after a refused write)."""
    rows: list[tuple[Any, ...]] = []
    for table in TABLES:
        rows += [(table, *r) for r in query(path, f"SELECT * FROM {table} ORDER BY 1, 2")]
    return rows


_ids = itertools.count(1)


def node_id() -> str:
    return f"n{next(_ids)}"


def every_kind(frame: str = "F1", turn: int = 1, previous: str | None = None) -> list[Any]:
    """One node of each kind, opening frame ``frame``."""
    call = lash.ToolCall("c1", "add", {"b": 2, "a": 1})
    return [
        lash.FrameBoundary(
            id=node_id(),
            parent_id=None,
            frame_id=frame,
            turn=turn,
            previous_frame_id=previous,
            reason="compaction" if previous else "root",
            summary="so far: a sum" if previous else None,
        ),
        lash.UserMessage(
            id=node_id(), parent_id=None, frame_id=frame, turn=turn, text="hé ✓", items=({"k": 1},)
        ),
        lash.AssistantMessage(
            id=node_id(),
            parent_id=None,
            frame_id=frame,
            turn=turn,
            text="adding",
            tool_calls=(call, lash.ToolCall("c2", "x", {}, invalid_arguments="{oops")),
            usage=lash.Usage(3, 2, 1),
            model="m1",
        ),
        lash.ToolCallNode(id=node_id(), parent_id=None, frame_id=frame, turn=turn, call=call),
        lash.ToolResultNode(
            id=node_id(),
            parent_id=None,
            frame_id=frame,
            turn=turn,
            call_id="c1",
            name="add",
            content="3",
            is_error=False,
            projected="three",
        ),
        lash.PluginNode(
            id=node_id(),
            parent_id=None,
            frame_id=frame,
            turn=turn,
            plugin="notes",
            kind="memo",
            data={"list": [1, 2.5, None, True], "nested": {"x": "y"}},
        ),
    ]


async def leased(store: SQLiteStore, session_id: str, owner: str = "w1") -> lash.store.Lease:
    return await store.acquire_lease(session_id, owner, ttl=30)


# -- round trips -------------------------------------------------------------------------------


async def test_every_node_kind_round_trips_also_after_reopening(tmp_path: Path) -> None:
    """Every node kind, state, config, options and usage come back as committed."""
    db = tmp_path / "lash.db"
    nodes = every_kind()
    config = lash.SessionConfig(
        provider="p",
        model="m",
        prompt_layers=("be brief",),
        plugin_options={"plan": {"max_steps": 4}},
    )
    delta = lash.store.CommitDelta(
        nodes=tuple(nodes),
        plugin_states={"plan": {"steps": [{"step": "a", "status": "pending"}], "updates": 1}},
        config=config,
        usage={"turn": lash.Usage(10, 5, 2)},
        turns=1,
    )
    async with opened(db) as store:
        lease = await leased(store, "s")
        assert await store.commit("s", lease=lease, expected_revision=0, delta=delta) == 1
        first = await store.load("s")
    async with opened(db) as again:
        second = await again.load("s", full=True)
    for record in (first, second):
        assert record is not None
        assert record.session_id == "s" and record.revision == 1 and record.turns == 1
        assert list(record.nodes) == nodes
        assert record.config == config
        assert record.plugin_states == {
            "plan": {"steps": [{"step": "a", "status": "pending"}], "updates": 1}
        }
        assert record.usage == {"turn": lash.Usage(10, 5, 2)}
        assert record.created_at == record.updated_at > 0
    assert first == second
    # Tool-call arguments keep the order they came in (they go back to the provider verbatim).
    stored = json.loads(next(n[6] for n in node_rows(db) if n[3] == "tool_call"))
    assert list(stored[1][2]) == ["b", "a"]  # (positional: the call, its arguments)
    # The commit's nodes (one frame, one turn) are one row, its ids and kinds joined by
    # newlines; the boundary, which opens the frame, starts it.
    rows = "seq, node_id, kind, frame_id, turn, node_count"
    kinds = "frame\nuser\nassistant\ntool_call\ntool_result\nplugin"
    assert query(db, f"SELECT {rows} FROM nodes") == [
        (0, "\n".join(n.id for n in nodes), kinds, "F1", 1, 6)
    ]


async def test_text_with_lone_surrogates_round_trips(tmp_path: Path) -> None:
    """Text that is not valid UTF-8 (surrogate-escaped bytes) is stored and read back exactly."""
    text = "raw \udcff byte"
    node = lash.UserMessage(id="u", parent_id=None, frame_id="F", turn=1, text=text)
    async with opened(tmp_path / "lash.db") as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=(node,), plugin_states={"p": {"t": text}})
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        record = await store.load("s")
        (summary,) = await store.list_sessions()
    assert record is not None
    assert record.nodes == (node,) and record.plugin_states == {"p": {"t": text}}
    assert summary.last_user_message == "raw \ufffd byte"


async def test_load_returns_the_active_frame_unless_full(tmp_path: Path) -> None:
    """``load`` starts at the active frame's boundary; ``full=True`` returns every node."""
    db = tmp_path / "lash.db"
    old = every_kind("F1", 1)
    new = every_kind("F2", 2, previous="F1")
    tail = [lash.UserMessage(id=node_id(), parent_id=None, frame_id="F2", turn=3, text="later")]
    async with opened(db) as store:
        lease = await leased(store, "s")
        rev = 0
        for nodes in (old, new, tail):
            delta = lash.store.CommitDelta(nodes=tuple(nodes), turns=1)
            rev = await store.commit("s", lease=lease, expected_revision=rev, delta=delta)
        active = await store.load("s")
        full = await store.load("s", full=True)
    assert active is not None and full is not None
    assert list(active.nodes) == new + tail
    assert list(full.nodes) == old + new + tail
    assert active.revision == full.revision == 3 and active.turns == 3
    assert query(db, "SELECT next_seq, frame_start FROM sessions") == [(13, 6)]


#: The tables whose rows a session adds to all its life.
GROWING = {"nodes", "inputs", "events", "usage_ledger_rows", "turn_records", "commands"}
#: Statements that visit all of a session's rows in one of them, by design: replacing it, and
#: the oldest event kept (MIN over the key, or the first row in key order, reads its first
#: entry; the log's retention reads from there the events it drops, and one more).
WALKS_A_SESSION = {
    "commit trigger: drop nodes",
    "commit trigger: drop usage_ledger_rows",
    "commit trigger: drop turn usage",
    "EVENT_BOUNDS",
    "OLDEST_EVENT",
    "retention 2",
}


async def test_hot_statements_never_scan_a_table(tmp_path: Path) -> None:
    """Leases, load and commit use index lookups and ranges only: cost independent of history.

    The commit trigger's statements are checked taken out of the trigger: ``NEW.x`` becomes the
    parameter ``:x`` and ``RAISE(...)``, which only a trigger may call, a constant. What they
    may scan is the commit's own JSON arrays (``json_each``) and the chain of a child's
    ancestors its roll-up walks (``chain``, one row per ancestor), never a table.
    """
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        await store.open()
    conn = sqlite3.connect(db)
    try:
        for name, sql in _sqlite_schema.HOT_STATEMENTS.items():
            sql = re.sub(r"\bNEW\.(\w+)", r":\1", re.sub(r"RAISE\([^)]*\)", "1", sql))
            names = re.findall(r":(\w+)", sql)
            numbered = [int(n) for n in re.findall(r"\?(\d+)", sql)]
            count = max(numbered) if numbered else sql.count("?")
            params: Any = dict.fromkeys(names) if names else (None,) * count
            plan_rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            steps = [row[3] for row in plan_rows]
            scans = [
                s
                for s in steps
                if s.startswith("SCAN")
                and "json_each" not in s
                and "CONSTANT" not in s
                and s != "SCAN chain"
            ]
            assert not scans, (name, steps)
            assert "USE TEMP B-TREE" not in " ".join(steps), (name, steps)
            # Nor walks a session's rows by its key alone in a table that grows with history
            # (the partial indexes of open inputs and pending commands are fine, and so is MIN).
            if name not in WALKS_A_SESSION:
                for step in steps:
                    walk = re.fullmatch(
                        r"SEARCH (\w+) USING (?:INDEX sqlite_autoindex_(\w+)_1|PRIMARY KEY) "
                        r"\(session_id=\?\)",
                        step,
                    )
                    assert not (walk and (walk[2] or walk[1]) in GROWING), (name, steps)
        assert any(name.startswith("commit trigger") for name in _sqlite_schema.HOT_STATEMENTS)
        assert any(name.startswith("plain commit") for name in _sqlite_schema.HOT_STATEMENTS)
    finally:
        conn.close()


# -- leases ------------------------------------------------------------------------------------


async def test_live_lease_is_busy_for_another_owner_and_refreshed_for_its_own(
    tmp_path: Path,
) -> None:
    """A second writer (another connection) gets SessionBusy; the owner keeps its token."""
    db = tmp_path / "lash.db"
    async with opened(db) as one, opened(db) as two:
        first = await one.acquire_lease("s", "A", ttl=30)
        assert (first.session_id, first.owner, first.token) == ("s", "A", 1)
        with pytest.raises(lash.SessionBusy) as busy:
            await two.acquire_lease("s", "B", ttl=30)
        assert busy.value.owner == "A" and busy.value.expires_at == first.expires_at
        again = await two.acquire_lease("s", "A", ttl=60)
        assert again.token == 1 and again.expires_at > first.expires_at
    assert query(db, "SELECT lease_owner, lease_token FROM sessions") == [("A", 1)]


async def test_busy_says_how_long_the_lease_lasts_never_zero(tmp_path: Path) -> None:
    """SessionBusy rounds the time left up (tenths below 10 s, seconds above) and says "about to
    expire" below a tenth of a second, never "for up to 0.0 s more"."""
    db = tmp_path / "lash.db"
    async with opened(db) as one, opened(db) as two:
        await one.acquire_lease("s", "A", ttl=30)
        with pytest.raises(lash.SessionBusy) as busy:
            await two.acquire_lease("s", "B", ttl=30)
    assert str(busy.value) == (
        "session 's' is busy: its lease is held by 'A' (for up to 30 s more); wait for it "
        "(the core's lease_wait, or wait=<seconds>)"
    )
    # Built directly, within microseconds of the expiry time given: exact values (a store
    # cannot be made to refuse a lease in its last tenth of a second without racing it).
    for left, when in ((2.35, "for up to 2.4 s more"), (9.91, "for up to 10.0 s more")):
        busy_now = lash.SessionBusy("s", owner="A", expires_at=time.time() + left)
        assert f"({when})" in str(busy_now)
    for left in (0.04, 0.0, -5.0):  # the last: a clock that stepped back
        busy_now = lash.SessionBusy("s", owner="A", expires_at=time.time() + left)
        assert "(about to expire)" in str(busy_now) and "0.0 s" not in str(busy_now)


async def test_expired_lease_is_taken_over_and_the_stale_writer_writes_nothing(
    tmp_path: Path,
) -> None:
    """After expiry B takes over with token 2; A's commit and renewal raise LeaseLost."""
    db = tmp_path / "lash.db"
    async with opened(db) as a_store, opened(db) as b_store:
        a = await a_store.acquire_lease("s", "A", ttl=30)
        delta = lash.store.CommitDelta(nodes=tuple(every_kind()), turns=1)
        assert await a_store.commit("s", lease=a, expected_revision=0, delta=delta) == 1
        a = await a_store.renew_lease(a, ttl=0.01)
        time.sleep(0.05)
        b = await b_store.acquire_lease("s", "B", ttl=30)
        assert (b.owner, b.token) == ("B", 2)
        before = dump(db)
        stale = lash.store.CommitDelta(
            nodes=tuple(every_kind()),
            plugin_states={"p": {"x": 1}},
            config=lash.SessionConfig(model="stale"),
            usage={"turn": lash.Usage(1, 1, 1)},
            turns=1,
        )
        with pytest.raises(lash.LeaseLost, match="fencing token 2, ours 1"):
            await a_store.commit("s", lease=a, expected_revision=1, delta=stale)
        with pytest.raises(lash.LeaseLost):
            await a_store.renew_lease(a, ttl=30)
        await a_store.release_lease(a)  # not current: nothing happens
        assert dump(db) == before
        ok = lash.store.CommitDelta(nodes=tuple(every_kind()), turns=1)
        assert await b_store.commit("s", lease=b, expected_revision=1, delta=ok) == 2


async def test_revision_conflict_writes_nothing(tmp_path: Path) -> None:
    """A commit at the wrong head revision raises RevisionConflict and leaves the file as is."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        await store.commit(
            "s",
            lease=lease,
            expected_revision=0,
            delta=lash.store.CommitDelta(tuple(every_kind()), turns=1),
        )
        before = dump(db)
        delta = lash.store.CommitDelta(
            nodes=tuple(every_kind()),
            plugin_states={"p": {"x": 2}},
            usage={"turn": lash.Usage(1, 0, 0)},
            turns=1,
            replace=True,
        )
        for expected in (0, 2):
            with pytest.raises(lash.RevisionConflict) as conflict:
                await store.commit("s", lease=lease, expected_revision=expected, delta=delta)
            assert (conflict.value.expected, conflict.value.actual) == (expected, 1)
        assert dump(db) == before


async def test_release_keeps_the_token_and_renew_extends(tmp_path: Path) -> None:
    """Release expires the lease but keeps its token; the next holder gets a higher one."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        a = await store.acquire_lease("s", "A", ttl=5)
        renewed = await store.renew_lease(a, ttl=60)
        assert renewed.token == 1 and renewed.expires_at > a.expires_at
        await store.release_lease(renewed)
        assert query(db, "SELECT lease_owner, lease_token, lease_expires_at FROM sessions") == [
            ("A", 1, 0.0)
        ]
        b = await store.acquire_lease("s", "B", ttl=5)
        assert b.token == 2
        with pytest.raises(lash.LeaseLost):
            await store.commit("s", lease=a, expected_revision=0, delta=lash.store.CommitDelta())


async def test_lease_without_commit_is_a_revision_zero_head(tmp_path: Path) -> None:
    """A lease on a new session makes a revision-0 head: not loaded or listed, committable at 0."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "new")
        assert await store.load("new") is None
        assert await store.list_sessions() == []
        with pytest.raises(lash.UnknownSession):
            await store.delete("new")
        assert query(db, "SELECT session_id, revision FROM sessions") == [("new", 0)]
        assert (
            await store.commit(
                "new", lease=lease, expected_revision=0, delta=lash.store.CommitDelta()
            )
            == 1
        )
        with pytest.raises(lash.LeaseLost, match="no lease"):
            await store.commit(
                "never-leased",
                lease=lash.store.Lease("never-leased", "w1", 1, time.time() + 5),
                expected_revision=0,
                delta=lash.store.CommitDelta(),
            )


async def test_lease_of_another_session_cannot_commit(tmp_path: Path) -> None:
    """A lease on one session never commits another, even with the same owner and token."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease_a = await leased(store, "a")
        lease_b = await leased(store, "b")
        assert (lease_a.owner, lease_a.token) == (lease_b.owner, lease_b.token)
        with pytest.raises(lash.LeaseLost, match="for session 'a'"):
            await store.commit(
                "b", lease=lease_a, expected_revision=0, delta=lash.store.CommitDelta()
            )
        assert query(db, "SELECT session_id, revision FROM sessions ORDER BY 1") == [
            ("a", 0),
            ("b", 0),
        ]


async def test_cancelled_commit_is_all_or_nothing_and_the_store_stays_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit cancelled at any moment leaves the whole delta or none of it; commits go on.
    (On the worker thread: an inline commit runs to its end before anything else can run.)"""
    db = tmp_path / "lash.db"
    monkeypatch.setattr(sqlite_module, "INLINE", False)
    async with opened(db) as store, opened(db) as holder:
        # The lease taken through another store: this one has no head yet, so its commits read
        # the head first (two round trips) until one succeeds, and a cancellation can land
        # between them (a lease taken through this store would have read it already).
        lease = await leased(holder, "s")
        revision = 0
        outcomes = set()
        for attempt in range(40):
            nodes = every_kind(f"F{attempt}", attempt)
            delta = lash.store.CommitDelta(
                nodes=tuple(nodes),
                plugin_states={"p": {"attempt": attempt}},
                usage={"turn": lash.Usage(1, 0, 0)},
                turns=1,
            )
            task = asyncio.create_task(
                store.commit("s", lease=lease, expected_revision=revision, delta=delta)
            )
            await asyncio.sleep(attempt * 0.0003)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            record = await store.load("s", full=True)
            stored = record.revision if record is not None else 0
            assert stored in (revision, revision + 1)
            outcomes.add(stored - revision)
            revision = stored
            assert record is None or (len(record.nodes), record.turns) == (6 * revision, revision)
            if record is not None:
                assert record.usage == {"turn": lash.Usage(revision, 0, 0)}
        assert outcomes == {0, 1}
        final = lash.store.CommitDelta(turns=1)
        assert await store.commit("s", lease=lease, expected_revision=revision, delta=final) == (
            revision + 1
        )


# -- replace, usage, listing, deleting ---------------------------------------------------------


async def test_replace_starts_the_session_over_in_one_commit(tmp_path: Path) -> None:
    """``replace`` drops old nodes, states, usage and config; keeps created_at and the mailbox."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        first = lash.store.CommitDelta(
            nodes=tuple(every_kind()),
            plugin_states={"a": {"v": 1}, "b": {"v": 2}},
            config=lash.SessionConfig(model="old"),
            usage={"turn": lash.Usage(7, 7, 7)},
            turns=2,
            enqueue=(lash.store.InputDraft("queued"),),
        )
        await store.commit("s", lease=lease, expected_revision=0, delta=first)
        created = (await store.load("s")).created_at  # type: ignore[union-attr]
        fresh_nodes = every_kind("F9")
        fresh = lash.store.CommitDelta(
            nodes=tuple(fresh_nodes),
            plugin_states={"b": {"v": 3}},
            usage={"turn": lash.Usage(1, 2, 3)},
            turns=1,
            replace=True,
        )
        assert await store.commit("s", lease=lease, expected_revision=1, delta=fresh) == 2
        record = await store.load("s", full=True)
    assert record is not None
    assert list(record.nodes) == fresh_nodes
    assert record.plugin_states == {"b": {"v": 3}}
    assert record.config == lash.SessionConfig()
    assert record.turns == 1 and record.revision == 2
    assert record.usage == {"turn": lash.Usage(1, 2, 3)}
    assert record.created_at == created
    assert query(db, "SELECT revision, source FROM usage_ledger") == [(2, "turn")]
    # Only blobs still referenced remain (the new state of "b").
    assert query(db, "SELECT data FROM blobs") == [('{"v":3}',)]
    # The mailbox is the session's, not its history's: the input queued stays.
    assert query(db, "SELECT text, state FROM inputs") == [("queued", "pending")]


async def test_usage_ledger_has_a_row_per_commit_and_source_and_load_sums_it(
    tmp_path: Path,
) -> None:
    """Each commit adds one ledger row per source; load and list report the sums."""
    db = tmp_path / "lash.db"
    commits = [
        {"turn": lash.Usage(10, 2, 1)},
        {"turn": lash.Usage(5, 1, 0), "compaction": lash.Usage(3, 0, 0)},
        {},
        {"compaction": lash.Usage(1, 1, 1)},
    ]
    async with opened(db) as store:
        lease = await leased(store, "s")
        for revision, usage in enumerate(commits):
            delta = lash.store.CommitDelta(usage=usage, turns=1)
            await store.commit("s", lease=lease, expected_revision=revision, delta=delta)
        record = await store.load("s")
        (summary,) = await store.list_sessions()
    assert record is not None
    assert record.usage == {"turn": lash.Usage(15, 3, 1), "compaction": lash.Usage(4, 1, 1)}
    assert summary.usage == lash.Usage(19, 4, 2)
    ledger = query(
        db,
        "SELECT revision, source, input_tokens, output_tokens, cached_tokens FROM usage_ledger "
        "ORDER BY revision, source",
    )
    assert ledger == [
        (1, "turn", 10, 2, 1),
        (2, "compaction", 3, 0, 0),
        (2, "turn", 5, 1, 0),
        (4, "compaction", 1, 1, 1),
    ]
    sums = query(
        db,
        "SELECT source, SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens) "
        "FROM usage_ledger GROUP BY source ORDER BY source",
    )
    # The running totals: of the source "turn" in the head row (migration 10), the others in
    # usage_totals.
    totals = query(
        db, "SELECT source, input_tokens, output_tokens, cached_tokens FROM usage_totals"
    )
    totals += query(db, "SELECT 'turn', turn_input, turn_output, turn_cached FROM sessions")
    assert sorted(totals) == sums


async def test_list_sessions_summaries_most_recent_first(tmp_path: Path) -> None:
    """Summaries carry id, times, turns, revision, last user message and usage total."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        for sid in ("a", "b", "c"):
            lease = await leased(store, sid)
            msg = lash.UserMessage(id=node_id(), parent_id=None, frame_id="F", turn=1, text=sid)
            delta = lash.store.CommitDelta(
                nodes=(msg,), usage={"turn": lash.Usage(len(sid), 1, 0)}, turns=1
            )
            await store.commit(sid, lease=lease, expected_revision=0, delta=delta)
        lease = await leased(store, "a")
        later = lash.UserMessage(id=node_id(), parent_id=None, frame_id="F", turn=2, text="a2")
        await store.commit(
            "a",
            lease=lease,
            expected_revision=1,
            delta=lash.store.CommitDelta(nodes=(later,), turns=1),
        )
        await leased(store, "leased-only")
        rows = await store.list_sessions()
    assert [(r.session_id, r.turns, r.revision, r.last_user_message) for r in rows] == [
        ("a", 2, 2, "a2"),
        ("c", 1, 1, "c"),
        ("b", 1, 1, "b"),
    ]
    assert rows[0].usage == lash.Usage(1, 1, 0)
    assert rows[0].created_at < rows[0].updated_at
    assert rows[1].updated_at >= rows[2].updated_at


async def test_delete_drops_everything_but_a_tombstone_lease(tmp_path: Path) -> None:
    """Delete removes the session's rows and unshared blobs; the next lease gets a higher token."""
    db = tmp_path / "lash.db"
    shared = {"same": "state"}
    async with opened(db) as store:
        for sid in ("gone", "kept"):
            lease = await leased(store, sid)
            delta = lash.store.CommitDelta(
                nodes=tuple(every_kind()),
                plugin_states={"shared": shared, "own": {"sid": sid}},
                config=lash.SessionConfig(model=sid),
                usage={"turn": lash.Usage(1, 1, 1)},
                turns=1,
            )
            await store.commit(sid, lease=lease, expected_revision=0, delta=delta)
        with pytest.raises(lash.SessionBusy):
            await store.delete("gone")
        await store.release_lease(await leased(store, "gone"))
        await store.delete("gone")
        with pytest.raises(lash.UnknownSession):
            await store.delete("gone")
        with pytest.raises(lash.UnknownSession):
            await store.delete("never")
        assert await store.load("gone") is None
        assert [r.session_id for r in await store.list_sessions()] == ["kept"]
        assert query(db, "SELECT DISTINCT session_id FROM nodes") == [("kept",)]
        assert query(db, "SELECT DISTINCT session_id FROM usage_ledger") == [("kept",)]
        # (the totals of "turn" are in the head row: a tombstone has none)
        turn_totals = "SELECT session_id FROM sessions WHERE turn_input IS NOT NULL"
        assert query(db, turn_totals) == [("kept",)]
        assert query(db, "SELECT DISTINCT session_id FROM plugin_states") == [("kept",)]
        # The shared state blob stays (kept refers to it); gone's own state and config do not.
        data = sorted(d for (d,) in query(db, "SELECT data FROM blobs"))
        assert not [d for d in data if "gone" in d]
        assert '{"same":"state"}' in data and '{"sid":"kept"}' in data
        assert query(
            db, "SELECT revision, lease_token FROM sessions WHERE session_id = 'gone'"
        ) == [(0, 1)]
        lease = await leased(store, "gone", owner="other")
        assert lease.token == 2
        assert (
            await store.commit(
                "gone", lease=lease, expected_revision=0, delta=lash.store.CommitDelta()
            )
            == 1
        )


async def test_content_addressed_blobs_are_shared_and_superseded_ones_dropped(
    tmp_path: Path,
) -> None:
    """Equal state data is one blob; a state replaced by a new value frees the old blob."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        same = {"b": [1, 2], "a": "x"}
        delta = lash.store.CommitDelta(plugin_states={"p": same, "q": {"a": "x", "b": [1, 2]}})
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        assert query(db, "SELECT data FROM blobs") == [('{"a":"x","b":[1,2]}',)]
        hashes = query(db, "SELECT DISTINCT blob_hash FROM plugin_states")
        assert len(hashes) == 1 and len(hashes[0][0]) == 64
        delta = lash.store.CommitDelta(plugin_states={"p": {"v": 2}})
        await store.commit("s", lease=lease, expected_revision=1, delta=delta)
        assert sorted(d for (d,) in query(db, "SELECT data FROM blobs")) == [
            '{"a":"x","b":[1,2]}',
            '{"v":2}',
        ]
        delta = lash.store.CommitDelta(plugin_states={"q": {"v": 2}})
        await store.commit("s", lease=lease, expected_revision=2, delta=delta)
        assert query(db, "SELECT data FROM blobs") == [('{"v":2}',)]


async def test_value_that_is_not_json_fails_before_writing(tmp_path: Path) -> None:
    """A plugin state that JSON cannot hold raises SessionError and writes nothing."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        before = dump(db)
        delta = lash.store.CommitDelta(
            nodes=tuple(every_kind()), plugin_states={"p": {"x": object()}}
        )
        with pytest.raises(lash.SessionError, match="state of plugin 'p'"):
            await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        assert dump(db) == before
        assert (
            await store.commit(
                "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta()
            )
            == 1
        )


def nul_node() -> Any:
    return lash.UserMessage(id="n\0x", parent_id=None, frame_id="F", turn=1, text="hi")


def float_tokens() -> Any:
    """An assistant message whose usage counts a float: it would not read back as itself."""
    usage = lash.Usage(12.0)  # type: ignore[arg-type]
    return lash.AssistantMessage(id="a", parent_id=None, frame_id="F", turn=1, text="", usage=usage)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (lash.store.CommitDelta(plugin_states={"p\0q": {}}), r"plugin name 'p\\x00q'.*NUL"),
        (lash.store.CommitDelta(usage={"src\0": lash.Usage(1)}), r"usage source 'src\\x00'.*NUL"),
        (lash.store.CommitDelta(nodes=(nul_node(),)), r"node id 'n\\x00x'.*NUL"),
        (
            lash.store.CommitDelta(nodes=(attrs.evolve(nul_node(), id="n\ud800"),)),
            r"node id 'n\\ud800'.*lone surrogate",
        ),
        (
            lash.store.CommitDelta(nodes=(attrs.evolve(nul_node(), id="n", frame_id="\udfffF"),)),
            r"frame id of node 'n' '\\udfffF'.*lone surrogate",
        ),
        (
            lash.store.CommitDelta(plugin_states={"p\ud800": {}}),
            r"plugin name 'p\\ud800'.*lone surrogate",
        ),
        (
            lash.store.CommitDelta(nodes=(float_tokens(),)),
            r"node 'a'(.|\n)*usage.input_tokens: expected int, got 12.0 \(float\)",
        ),
        (
            lash.store.CommitDelta(usage={"turn": lash.Usage(2**63)}),
            r"input tokens of 'turn' \(9223372036854775808\).*64-bit",
        ),
    ],
)
async def test_keys_sqlite_cannot_hold_fail_before_writing(
    tmp_path: Path, delta: lash.store.CommitDelta, expected: str
) -> None:
    """A NUL in a key (SQLite's JSON functions would cut the string there), a lone surrogate
    in one (SQLite text has no place for it), an integer beyond 64 bits or a node value that
    would not read back as the node raises SessionError naming the value, and writes
    nothing."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        before = dump(db)
        with pytest.raises(lash.SessionError, match=expected) as refused:
            await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        assert refused.value.session_id == "s"
        assert dump(db) == before
        assert (
            await store.commit(
                "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta()
            )
            == 1
        )


# -- a commit is all or nothing, also when one of its writes fails -----------------------------


def install_failure(db: Path, table: str, event: str, when: str) -> None:
    """A trigger that makes the matching row's write fail, as a full disk or a constraint
    would: SQLite then fails that statement only and the transaction stays open."""
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            f"CREATE TRIGGER injected_failure BEFORE {event} ON {table} WHEN {when} "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("table", "event", "when"),
    [
        # The first write of a commit (node rows), some in the middle (the usage totals, the
        # settled input, the turn record, the second event; the writes after each would
        # succeed), the head row, and an input the commit queues (its own statement, before
        # the commit's).
        ("nodes", "INSERT", "instr(NEW.kind, 'plugin')"),  # (a row holds the kinds of its nodes)
        ("usage_totals", "INSERT", "NEW.source = 'boom'"),
        ("inputs", "UPDATE", "NEW.state = 'completed'"),
        ("turn_records", "INSERT", "1"),
        ("events", "INSERT", "NEW.type = 'boom'"),
        ("sessions", "UPDATE", "NEW.config_hash IS NOT NULL"),
        ("inputs", "INSERT", "NEW.text = 'follow-up'"),
    ],
)
async def test_a_failing_write_fails_the_commit_and_writes_nothing(
    tmp_path: Path, table: str, event: str, when: str
) -> None:
    """When any write of a commit fails, the commit raises and none of its writes is kept
    (no COMMIT follows a failed write); the next commit at the same revision succeeds."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        first = lash.store.CommitDelta(
            nodes=tuple(every_kind("F1")[:2]),
            plugin_states={"p": {"v": 1}},
            usage={"turn": lash.Usage(1, 1, 0)},
            turns=1,
        )
        assert await store.commit("s", lease=lease, expected_revision=0, delta=first) == 1
        queued = await store.enqueue_input("s", lash.store.InputDraft("a"))
        assert [i.id for i in await store.claim_inputs(lease)] == [queued.id]
        install_failure(db, table, event, when)
        before = dump(db)
        failing = lash.store.CommitDelta(
            nodes=tuple(every_kind("F2", 2, previous="F1")),
            plugin_states={"p": {"v": 2}, "q": {"v": 3}},
            config=lash.SessionConfig(model="m"),
            usage={"turn": lash.Usage(2, 2, 0), "boom": lash.Usage(1, 0, 0)},
            turns=1,
            claimed=(queued.id,),
            enqueue=(lash.store.InputDraft("follow-up"),),
            turn=lash.store.TurnRecord("s", "t-2", 2, "completed", 0),
            events=(lash.store.EventDraft("fine"), lash.store.EventDraft("boom")),
            release=True,
        )
        with pytest.raises(lash.LashError, match="injected failure"):
            await store.commit("s", lease=lease, expected_revision=1, delta=failing)
        assert dump(db) == before
        record = await store.load("s")
        assert record is not None and record.revision == 1
        (still,) = await store.list_inputs("s")
        assert (still.id, still.state) == (queued.id, "claimed")  # the lease was not released
        sound = lash.store.CommitDelta(plugin_states={"p": {"v": 4}}, turns=1)
        assert await store.commit("s", lease=lease, expected_revision=1, delta=sound) == 2
    assert query(db, "SELECT revision, turns FROM sessions") == [(2, 2)]


# -- the one-statement commit ------------------------------------------------------------------


def turn_delta(frame: str, turn: int, state: Any) -> lash.store.CommitDelta:
    return lash.store.CommitDelta(
        nodes=tuple(every_kind(frame, turn)),
        plugin_states={"p": state},
        usage={"turn": lash.Usage(3, 2, 1)},
        turns=1,
    )


async def mailbox_turn(
    store: SQLiteStore, sid: str, revision: int, turn: int, step: Callable[[str], None]
) -> int:
    """One turn as a kernel drains queued input: input queued (no lease), the lease taken with
    the turn's id and an event, the input claimed, the turn committed (nodes, state, usage,
    the settled claim, the turn record, events) releasing the lease; ``step(name)`` is called
    after each of the four. Returns the new revision."""
    queued = await store.enqueue_input(sid, lash.store.InputDraft(f"input {turn}"))
    step("enqueue")
    lease = await store.acquire_lease(
        sid, "w1", ttl=30, turn=f"t{turn}", events=[lash.store.EventDraft("turn_started")]
    )
    step("acquire")
    (claimed,) = await store.claim_inputs(lease)
    step("claim")
    assert claimed.id == queued.id
    delta = attrs.evolve(
        turn_delta(f"T{turn}", turn, {"turn": turn}),
        claimed=(claimed.id,),
        turn=lash.store.TurnRecord(sid, f"t{turn}", turn, "completed", 0),
        events=(lash.store.EventDraft("turn_committed", {"turn": turn}),),
        release=True,
    )
    revision = await store.commit(sid, lease=lease, expected_revision=revision, delta=delta)
    step("commit")
    return revision


async def test_commit_work_does_not_grow_with_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit, a lease acquisition, queueing input and claiming it cost as many SQLite VM
    instructions at 3,000 nodes of history (and 500 settled inputs, 500 turn records, 1,500
    events) as at 6 (counted with a progress handler called on every instruction: a pass over
    the session's rows, such as a replace-only DELETE evaluated row by row, or a look for
    pending input among the settled ones, would add thousands)."""
    db = tmp_path / "lash.db"
    steps = ("enqueue", "acquire", "claim", "commit")
    work: dict[str, dict[str, list[int]]] = {}
    # Every statement on the worker's connection, where the progress handler counts them (the
    # inline connection runs the same statements).
    monkeypatch.setattr(sqlite_module, "INLINE", False)
    async with opened(db) as store:
        for sid, history in (("short", 1), ("long", 500)):
            revision = 0
            for turn in range(history):
                revision = await mailbox_turn(store, sid, revision, turn, lambda name: None)
            instructions = 0

            def count() -> int:
                nonlocal instructions
                instructions += 1
                return 0  # go on

            def measured(name: str, sid: str = sid) -> None:
                # What the step ran on the connection since the last one.
                nonlocal instructions
                work[sid][name].append(instructions)
                instructions = 0

            conn = store._conn  # the store's connection: the handler is per connection
            assert conn is not None
            work[sid] = {step: [] for step in steps}
            await conn.set_progress_handler(count, 1)
            for turn in range(history, history + 3):
                instructions = 0
                revision = await mailbox_turn(store, sid, revision, turn, measured)
            await conn.set_progress_handler(None, 1)
    assert query(db, "SELECT session_id, SUM(node_count) FROM nodes GROUP BY 1 ORDER BY 1") == [
        ("long", 6 * 503),
        ("short", 6 * 4),
    ]
    assert query(
        db,
        "SELECT session_id, COUNT(*) FROM inputs WHERE state = 'completed' GROUP BY 1 ORDER BY 1",
    ) == [("long", 503), ("short", 4)]
    for step in steps:
        for short, long in zip(work["short"][step], work["long"][step], strict=True):
            assert 0 < short and long <= short * 1.05, (step, work)


async def test_a_head_this_store_did_not_write_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store continues from the head it committed last only while the stored head is that
    one. Here another store deletes the session and recommits it to the same revision under
    the same lease (one that has expired, which nobody took over: it still commits, and no
    longer blocks a delete), and with the clock standing still (a coarse clock): both heads
    have the same revision and the same time. The first store's next commit must go on from
    what is stored, not from what it remembers."""
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.25)
    db = tmp_path / "lash.db"
    async with opened(db) as a_store, opened(db) as b_store:
        lease = await a_store.acquire_lease("s", "w", ttl=0)  # expired at once
        assert (
            await a_store.commit(
                "s", lease=lease, expected_revision=0, delta=turn_delta("A1", 1, {"by": "a"})
            )
            == 1
        )
        await b_store.delete("s")
        two_nodes = lash.store.CommitDelta(nodes=tuple(every_kind("B1", 1)[:2]), turns=1)
        assert await b_store.commit("s", lease=lease, expected_revision=0, delta=two_nodes) == 1
        assert (
            await a_store.commit(
                "s", lease=lease, expected_revision=1, delta=turn_delta("A2", 2, {"by": "a, later"})
            )
            == 2
        )
        record = await a_store.load("s", full=True)
    assert record is not None and (record.revision, record.turns) == (2, 2)
    assert [n.frame_id for n in record.nodes] == ["B1"] * 2 + ["A2"] * 6
    assert record.plugin_states == {"p": {"by": "a, later"}}
    assert record.usage == {"turn": lash.Usage(3, 2, 1)}
    assert [node[1] for node in node_rows(db)] == list(range(8))
    # A row per commit: B1's two nodes, then A2's six.
    assert query(db, "SELECT seq, node_count FROM nodes ORDER BY seq") == [(0, 2), (2, 6)]
    assert query(db, "SELECT next_seq, frame_start FROM sessions") == [(8, 2)]
    # Every blob left is referred to: the first store's first state went with the delete.
    assert query(db, "SELECT data FROM blobs") == [('{"by":"a, later"}',)]


#: A database lash 0.1 wrote: migrations 1 and 2, one session ("old-1", see the file's header).
LEGACY_SQL = Path(__file__).parent / "data" / "lash-0.1-session.sql"


def legacy_database(path: Path, *, first_schema: bool = False, pending: Sequence[str] = ()) -> None:
    """Write :data:`LEGACY_SQL` to ``path``. ``first_schema``: without migration 2 (its view and
    trigger: what lash wrote before the one-statement commit). ``pending``: input strings
    queued on the session's head, in a blob as lash 0.1 kept them (canonical JSON, sha256)."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(LEGACY_SQL.read_text(encoding="utf-8"))
        with conn:
            if first_schema:
                conn.execute("DROP TRIGGER apply_commit_request")
                conn.execute("DROP VIEW commit_requests")
                conn.execute("DELETE FROM lash_migrations WHERE id = 2")
                conn.execute("PRAGMA user_version = 1")
            if pending:
                data = json.dumps(list(pending), separators=(",", ":"), ensure_ascii=False)
                digest = hashlib.sha256(data.encode()).hexdigest()
                conn.execute("INSERT INTO blobs VALUES (?, ?)", (digest, data))
                conn.execute("UPDATE sessions SET pending_hash = ?", (digest,))
    finally:
        conn.close()


def legacy_rows(path: Path) -> list[tuple[Any, ...]]:
    """The rows of the tables lash 0.1 wrote that migration 3 leaves as they are."""
    rows: list[tuple[Any, ...]] = []
    for table in ("plugin_states", "usage_ledger", "usage_totals"):
        rows += [(table, *r) for r in query(path, f"SELECT * FROM {table} ORDER BY 1, 2")]
    # One node a row (migration 8's count, when there is one, is 1 for each of them).
    columns = "session_id, seq, node_id, kind, frame_id, turn, data"
    rows += [("nodes", *r) for r in query(path, f"SELECT {columns} FROM nodes ORDER BY 1, 2")]
    return rows


async def test_a_database_of_the_first_schema_is_migrated_and_kept(tmp_path: Path) -> None:
    """A file with migration 1 only (lash 0.1's, before the one-statement commit) gets
    migrations 2 to 4 on open, keeps its session as it was, and takes commits again."""
    db = tmp_path / "lash.db"
    legacy_database(db, first_schema=True)
    rows = legacy_rows(db)
    async with opened(db) as store:
        before = await store.load("old-1", full=True)
        assert [m["id"] for m in (await store.info())["migrations"]] == [
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
            10,
            11,
            12,
        ]
        assert legacy_rows(db) == rows
        active = await store.load("old-1")
        lease = await leased(store, "old-1")
        # The lease lash 0.1 left (released: expires_at 0) had token 1.
        assert (lease.token, lease.revision, lease.pending_inputs) == (2, 4, 0)
        delta = turn_delta("F3", 3, 3)
        assert await store.commit("old-1", lease=lease, expected_revision=4, delta=delta) == 5
        after = await store.load("old-1", full=True)
    assert query(db, "PRAGMA user_version") == [(12,)]
    # What the file says: 14 nodes, the active frame from seq 6, 2 turns, usage of two sources.
    assert before is not None and active is not None and after is not None
    assert (len(before.nodes), len(active.nodes), before.turns, before.revision) == (14, 8, 2, 4)
    assert before.usage == {"compaction": lash.Usage(5, 2, 0), "turn": lash.Usage(37, 9, 0)}
    assert before.plugin_states["plan"] == {
        "steps": [{"status": "in_progress", "step": "pack"}],
        "updates": 1,
    }
    assert before.config.model == "m1" and before.config.provider == "scripted"
    assert after.nodes == before.nodes + delta.nodes
    assert (after.turns, after.plugin_states["p"], after.usage["turn"]) == (
        3,
        3,
        lash.Usage(40, 11, 1),
    )


async def test_missing_blob_is_reported_by_load(tmp_path: Path) -> None:
    """A head row whose config blob was deleted by hand: load names the missing blob."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(config=lash.SessionConfig(model="m"), turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        (digest,) = query(db, "SELECT config_hash FROM sessions")[0]
        conn = sqlite3.connect(db)
        try:
            conn.execute("DELETE FROM blobs WHERE hash = ?", (digest,))
            conn.commit()
        finally:
            conn.close()
        with pytest.raises(lash.LashError, match=f"stored blob {digest} is missing"):
            await store.load("s")


# -- stored rows are read strictly --------------------------------------------------------------

#: The variant tags of stored nodes, as errors list them (the persisted spelling).
TAGS = "'assistant' | 'frame' | 'outcome' | 'plugin' | 'tool_call' | 'tool_result' | 'user'"


def set_row(db: Path, session_id: str, seq: int, text: str) -> None:
    isolate_node(db, session_id, seq)
    conn = sqlite3.connect(db)
    try:
        conn.execute(
            "UPDATE nodes SET data = ? WHERE session_id = ? AND seq = ?", (text, session_id, seq)
        )
        conn.commit()
    finally:
        conn.close()


def stored_row(db: Path, session_id: str, seq: int) -> dict[str, Any]:
    """The node of a row in its whole stored form (``to_data(node, GraphNode)``: the body in
    ``data`` and the row's columns), as older files hold it in ``data``: spoiled and set back,
    it is a row of an older file."""
    ((_, _, node_id, kind, frame_id, turn, text),) = [
        node for node in node_rows(db, "session_id = ?", (session_id,)) if node[1] == seq
    ]
    from test_node_codec import keyed_of  # (it imports this module)

    cl = getattr(lash, next(name for name, tag in NODE_KINDS.items() if tag == kind))
    body = keyed_of(cl, json.loads(text), ("id", "frame_id", "turn"))  # positional, as written
    return {
        "id": node_id,
        "parent_id": body.pop("parent_id"),
        "frame_id": frame_id,
        "turn": turn,
        **body,
        "type": kind,
    }


def edited(change: Any) -> Any:
    def edit(data: dict[str, Any]) -> str:
        change(data)
        return json.dumps(data)

    return edit


# (seq of the row in every_kind(): 0 frame, 1 user, 2 assistant, 3 tool_call, 4 tool_result,
# 5 plugin; how the row is spoiled; the problem the error must state)
SPOILED_ROWS = {
    "unknown key": (
        1,
        edited(lambda d: d.update(extra=1)),
        "extra: unknown key (known: frame_id, id, items, parent_id, text, turn)",
    ),
    "text for an int": (1, edited(lambda d: d.update(turn="1")), "turn: expected int, got '1'"),
    "bool for an int": (
        2,
        edited(lambda d: d["usage"].update(input_tokens=True)),
        "usage.input_tokens: expected int, got True (bool)",
    ),
    "null for a str": (
        4,
        edited(lambda d: d.update(content=None)),
        "content: expected str, got None (NoneType)",
    ),
    "missing field": (1, edited(lambda d: d.pop("text")), "text: required, missing (expected str)"),
    "unknown tag": (
        5,
        edited(lambda d: d.update(type="memo")),
        f"type: expected {TAGS}, got 'memo' (str)",
    ),
    "missing tag": (
        0,
        edited(lambda d: d.pop("type")),
        f"type: required, missing (expected {TAGS})",
    ),
    "unknown nested key": (
        2,
        edited(lambda d: d["tool_calls"][0].update(zzz=1)),
        "tool_calls[0].zzz: unknown key (known: arguments, id, invalid_arguments, name)",
    ),
    "list for a mapping": (
        3,
        edited(lambda d: d["call"].update(arguments=[1])),
        "call.arguments: expected Mapping[str, Any], got [1] (list)",
    ),
    "text for a tuple": (
        1,
        edited(lambda d: d.update(items="ab")),
        "items: expected tuple[Any, ...], got 'ab' (str)",
    ),
    "not an object or array": (
        1,
        lambda d: '"hi"',
        "expected a graph node (a mapping with a 'type' key), got 'hi' (str)",
    ),
    "not JSON": (1, lambda d: json.dumps(d)[:-1], "not JSON: Expecting ',' delimiter"),
    "two values": (1, lambda d: f"{json.dumps(d)},{json.dumps(d)}", "not JSON: Extra data"),
}


@pytest.mark.parametrize("case", SPOILED_ROWS)
async def test_spoiled_node_row_is_a_validation_error_naming_the_session(
    tmp_path: Path, case: str
) -> None:
    """A stored node that does not fit its type fails load with a ValidationError naming the
    session and the bad field, whether the row is alone or among good ones."""
    seq, spoil, problem = SPOILED_ROWS[case]
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        nodes = every_kind() + every_kind("F2", 2, previous="F1")
        delta = lash.store.CommitDelta(nodes=tuple(nodes), turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        set_row(db, "s", seq, spoil(stored_row(db, "s", seq)))
        for full in (True, False):
            if not full and seq < 6:
                continue  # the row is in the first frame: load() without full skips it
            with pytest.raises(lash.ValidationError) as invalid:
                await store.load("s", full=full)
            assert str(invalid.value).startswith("invalid stored node of 's':\n  - ")
            (line,) = invalid.value.problems
            assert problem in line
        set_row(db, "s", 6 + seq, spoil(stored_row(db, "s", 6 + seq)))
        with pytest.raises(lash.ValidationError, match="invalid stored node of 's'"):
            await store.load("s")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[null, "hi", [], 1]',
            "expected an array of 2 to 3 values (parent_id, text, items), got 4",
        ),
        ("[null]", "expected an array of 2 to 3 values (parent_id, text, items), got 1"),
        ('[null, "hi", {"k": 1}]', "items: expected tuple[Any, ...], got {'k': 1} (dict)"),
    ],
)
async def test_a_bad_positional_row_fails_when_its_node_is_built_naming_session_and_node(
    tmp_path: Path, text: str, problem: str
) -> None:
    """A positional body of the wrong length or type in a real file: the load takes it (a
    positional body is checked when its node is built), and reading the node, or resuming a
    graph from the nodes, raises the ValidationError naming the session (and the node, for
    a count of values)."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        nodes = every_kind()
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(nodes=tuple(nodes))
        )
        set_row(db, "s", 1, text)
        record = await store.load("s")
        assert record is not None
        for read in (lambda: record.nodes[1], lambda: list(record.nodes)):
            with pytest.raises(lash.ValidationError) as invalid:
                read()
            assert str(invalid.value).startswith("invalid stored node of 's':\n  - ")
            (line,) = invalid.value.problems
            assert problem in line
            if "array" in problem:
                assert f"(node {nodes[1].id!r})" in line
        assert record.nodes[2] == nodes[2]  # the others read as committed


async def test_rows_without_defaulted_fields_load_with_the_defaults(tmp_path: Path) -> None:
    """A stored node that leaves out fields with defaults (another writer's row, keys in any
    order) loads with those defaults."""
    db = tmp_path / "lash.db"
    base = {"parent_id": None, "frame_id": "F", "turn": 1}
    rows = [
        {"type": "frame", "id": "f", "previous_frame_id": None, **base},
        {"text": "hi", "id": "u", "type": "user", **base},
        {"type": "assistant", "id": "a", "text": "ok", **base},
        {"type": "tool_call", "id": "c", "call": {"name": "echo", "id": "c1"}, **base},
        {"type": "tool_result", "id": "r", "call_id": "c1", "name": "echo", "content": "x", **base},
        {"type": "plugin", "id": "p", "plugin": "notes", "kind": "memo", **base},
    ]
    async with opened(db) as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(every_kind("F")), turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        for seq, row in enumerate(rows):
            set_row(db, "s", seq, json.dumps(row))
        record = await store.load("s")
    assert record is not None
    common: dict[str, Any] = {"parent_id": None, "frame_id": "F", "turn": 1}
    assert record.nodes == (
        lash.FrameBoundary(id="f", previous_frame_id=None, **common),
        lash.UserMessage(id="u", text="hi", **common),
        lash.AssistantMessage(id="a", text="ok", **common),
        lash.ToolCallNode(id="c", call=lash.ToolCall("c1", "echo"), **common),
        lash.ToolResultNode(id="r", call_id="c1", name="echo", content="x", **common),
        lash.PluginNode(id="p", plugin="notes", kind="memo", **common),
    )
    assert record.nodes[2].usage == lash.Usage() and record.nodes[4].is_error is False


async def test_a_row_holds_the_body_and_the_columns_the_rest(tmp_path: Path) -> None:
    """A node's row keeps its id, kind, frame and turn in columns and only the rest of its
    stored form in ``data``, positional (node_row_json's text: its fields' values in attrs
    order, nested attrs values too), less the trailing fields at their plain defaults:
    nothing stored twice, no key stored."""
    from test_node_codec import positional_body_of  # (it imports this module)

    db = tmp_path / "lash.db"
    nodes = every_kind()
    async with opened(db) as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(nodes), turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
    rows = node_rows(db)
    for node, (_, _, node_id, kind, frame_id, turn, text) in zip(nodes, rows, strict=True):
        whole = lash.to_data(node, lash.GraphNode)
        assert (node_id, kind, frame_id, turn) == (node.id, whole["type"], node.frame_id, node.turn)
        assert text == lash.store.node_row_json(node)
        assert json.loads(text) == positional_body_of(node)


async def test_a_file_of_whole_rows_loads_and_takes_new_commits(tmp_path: Path) -> None:
    """A file written before rows kept only the body (each row's ``data`` the whole stored
    form, as ``lash.store.node_json`` wrote it then) loads as committed, active frame and
    full history; a commit on it adds body rows, and the mixed history loads too, also
    after reopening the file."""
    db = tmp_path / "lash.db"
    old = every_kind("F1", 1) + every_kind("F2", 2, previous="F1")
    new = every_kind("F3", 3, previous="F2")
    async with opened(db) as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(old), turns=2)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        await store.release_lease(lease)
    # The rows as the previous writer left them: the whole form in data.
    for seq, node in enumerate(old):
        set_row(db, "s", seq, lash.store.node_json(node))
    assert all('"type":' in node[6] for node in node_rows(db))
    async with opened(db) as store:
        record = await store.load("s", full=True)
        assert record is not None and record.nodes == tuple(old)
        record = await store.load("s")
        assert record is not None and record.nodes == tuple(old[6:])
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(new[1:]), turns=1)
        await store.commit("s", lease=lease, expected_revision=1, delta=delta)
        record = await store.load("s")
        assert record is not None and record.nodes == tuple(old[6:] + new[1:])
    async with opened(db) as again:
        record = await again.load("s", full=True)
        assert record is not None and record.nodes == tuple(old + new[1:])
    texts = [node[6] for node in node_rows(db)]
    assert texts[12:] == [lash.store.node_row_json(n) for n in new[1:]]


@pytest.mark.parametrize(
    ("column", "value", "problem"),
    [
        ("kind", "memo", f"type: expected {TAGS}, got 'memo' (str)"),
        ("turn", "x", "turn: expected int, got 'x' (str)"),
        ("turn", 1.5, "turn: expected int, got 1.5 (float)"),
    ],
)
async def test_a_spoiled_column_is_a_validation_error_naming_the_session(
    tmp_path: Path, column: str, value: Any, problem: str
) -> None:
    """A node row whose kind or turn column does not fit the node fails load with a
    ValidationError naming the session and the field, as a spoiled body does."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        delta = lash.store.CommitDelta(nodes=tuple(every_kind()), turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        isolate_node(db, "s", 1)
        conn = sqlite3.connect(db)
        try:
            conn.execute(f"UPDATE nodes SET {column} = ? WHERE seq = 1", (value,))
            conn.commit()
        finally:
            conn.close()
        with pytest.raises(lash.ValidationError) as invalid:
            await store.load("s")
    assert str(invalid.value).startswith("invalid stored node of 's':\n  - ")
    (line,) = invalid.value.problems
    assert problem in line


# -- the file: migrations, marker, refusals ----------------------------------------------------


async def test_new_file_gets_marker_migrations_and_wal(tmp_path: Path) -> None:
    """Opening creates the schema: application_id, lash_migrations rows, WAL, NORMAL sync."""
    db = tmp_path / "lash.db"
    before = time.time()
    async with opened(db) as store:
        info = await store.info()
        assert query(db, "PRAGMA journal_mode") == [("wal",)]
    assert query(db, "PRAGMA application_id") == [(LASH_APPLICATION_ID,)]
    assert query(db, "PRAGMA user_version") == [(12,)]
    steps = query(db, "SELECT id, name, applied_at, lash_version FROM lash_migrations ORDER BY id")
    assert [(mid, name) for mid, name, _, _ in steps] == [
        (1, "initial schema"),
        (2, "one-statement commit"),
        (3, "mailbox"),
        (4, "processes"),
        (5, "child sessions"),
        (6, "media blobs"),
        (7, "node rows hold the body only"),
        (8, "node rows hold several nodes"),
        (9, "node bodies positional"),
        (10, "turn usage in the head"),
        (11, "turn usage in the turn record"),
        (12, "session incarnations"),
    ]
    assert all(
        before <= applied_at <= time.time() and version for _, _, applied_at, version in steps
    )
    assert info["journal_mode"] == "wal" and info["synchronous"] == "NORMAL"
    assert info["busy_timeout"] == 5000 and info["application_id"] == LASH_APPLICATION_ID
    assert [m["id"] for m in info["migrations"]] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    # Reopening applies nothing twice.
    async with opened(db) as store:
        await store.open()
    assert query(db, "SELECT COUNT(*) FROM lash_migrations") == [(12,)]


async def test_url_parameters_set_synchronous_and_busy_timeout(tmp_path: Path) -> None:
    """``?synchronous=FULL&busy_timeout=1234`` reach the connection."""
    store = SQLiteStore(url_of(tmp_path / "lash.db") + "?synchronous=full&busy_timeout=1234")
    try:
        info = await store.info()
    finally:
        await store.close()
    assert (info["synchronous"], info["busy_timeout"]) == ("FULL", 1234)


async def test_database_of_a_newer_lash_is_refused_untouched(tmp_path: Path) -> None:
    """A migration id above the known ones is refused, naming the lash version it needs."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(turns=1)
        )
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO lash_migrations VALUES (?, ?, ?, ?)", (99, "process queue", 1.0, "9.4.0")
        )
    conn.close()
    before = db.read_bytes()
    async with opened(db) as store:
        with pytest.raises(lash.ConfigError) as refused:
            await store.load("s")
    message = str(refused.value)
    assert str(db) in message and "newer lash" in message
    assert "migration 99" in message and "'process queue'" in message and "9.4.0" in message
    assert refused.value.path == str(db)
    assert db.read_bytes() == before
    assert query(db, "SELECT id FROM lash_migrations ORDER BY id") == [
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
        (6,),
        (7,),
        (8,),
        (9,),
        (10,),
        (11,),
        (12,),
        (99,),
    ]


@pytest.mark.parametrize("known", [6, 7, 8, 9, 10, 11])
async def test_a_lash_before_lean_node_rows_refuses_a_file_that_has_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, known: int
) -> None:
    """Node rows that hold only the node's body (migration 7, a marker) cannot be read by a lash
    that writes whole rows (the migrations up to 6), nor rows of several nodes (migration 8)
    by a lash whose rows are one node each (up to 7), nor positional bodies (migration 9, a
    marker) by a lash that reads bodies by keys only (up to 8), nor the totals of the source
    "turn" in the head row (migration 10) by a lash that reads them from usage_totals only (up
    to 9), nor a turn's usage in its turn record (migration 11) by a lash that reads the
    ledger's table only (up to 10), nor a child's link to its parent's incarnation (migration
    12) by a lash that rolls a child's usage up into a deleted parent (up to 11): such a lash
    refuses the file as a newer lash's, naming its newest step (as ``inspect`` reads
    ``lash_migrations``), instead of reading its rows wrong."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        user = lash.UserMessage(text="hi", id="n1", parent_id=None, frame_id="f1", turn=1)
        delta = lash.store.CommitDelta(nodes=(user,), turns=1)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
    assert query(db, "SELECT data FROM nodes") == [('[null,"hi"]',)]
    before = db.read_bytes()
    older = tuple(m for m in _sqlite_schema.MIGRATIONS if m.id <= known)
    monkeypatch.setattr(_sqlite_schema, "MIGRATIONS", older)
    monkeypatch.setattr(_sqlite_schema, "LATEST", known)
    async with opened(db) as store:
        with pytest.raises(lash.ConfigError) as refused:
            await store.load("s")
    message = str(refused.value)
    assert "newer lash" in message and "migration 12" in message
    assert "'session incarnations'" in message
    assert f"knows migrations up to {known}" in message
    # The file's migrations were applied by this very version (added between releases): the
    # message asks for a newer build of it, not for "0.1.0 or later", which this lash is.
    version = _sqlite_schema.lash_version()
    assert f"upgrade lash to a newer build of {version}, one that knows migration 12" in message
    assert "or later" not in message
    assert db.read_bytes() == before


async def test_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    """A text file at the path gives one ConfigError naming it; its bytes stay as they were."""
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 200)
    before = db.read_bytes()
    async with opened(db) as store:
        with pytest.raises(lash.ConfigError, match="not a SQLite database") as refused:
            await store.list_sessions()
    assert str(refused.value).startswith(f"{db}: ")
    assert db.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


async def test_corrupt_database_is_refused(tmp_path: Path) -> None:
    """A lash file whose pages are garbage gives a ConfigError saying it is corrupt."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        await store.open()
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xa5" * (4096 - 100)
    db.write_bytes(bytes(data))
    async with opened(db) as store:
        with pytest.raises(lash.ConfigError, match="corrupt") as refused:
            await store.open()
    assert str(db) in str(refused.value) and "backup" in str(refused.value)


async def test_sqlite_database_of_another_application_is_refused_untouched(
    tmp_path: Path,
) -> None:
    """A SQLite file with other tables (or another application_id) is not taken over."""
    other = tmp_path / "app.db"
    conn = sqlite3.connect(other)
    with conn:
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
    conn.close()
    marked = tmp_path / "marked.db"
    conn = sqlite3.connect(marked)
    conn.execute("PRAGMA application_id = 42")
    conn.close()
    for path, expected in ((other, "not a lash database"), (marked, "another application")):
        before = path.read_bytes()
        async with opened(path) as store:
            with pytest.raises(lash.ConfigError, match=expected) as refused:
                await store.open()
        assert str(refused.value).startswith(f"{path}: ")
        assert path.read_bytes() == before
        assert query(path, "PRAGMA journal_mode") == [("delete",)]
    assert query(other, "SELECT name FROM users") == [("ada",)]


async def test_missing_directory_is_an_error_unless_create_dirs(tmp_path: Path) -> None:
    """A missing parent directory is refused (naming it); ``create_dirs`` creates it."""
    db = tmp_path / "state" / "deep" / "lash.db"
    async with opened(db) as store:
        with pytest.raises(lash.ConfigError) as refused:
            await store.open()
    message = str(refused.value)
    assert str(db.parent) in message and "does not exist" in message
    assert "create_dirs" in message and "mkdir -p" in message
    assert not (tmp_path / "state").exists()
    for store in (
        SQLiteStore(url_of(db) + "?create_dirs=1"),
        SQLiteStore(url_of(db), create_dirs=True),
    ):
        try:
            await store.open()
        finally:
            await store.close()
    assert db.is_file()


async def test_directory_at_the_path_is_refused(tmp_path: Path) -> None:
    """A directory where the file should be is a clear error."""
    async with opened(tmp_path) as store:
        with pytest.raises(lash.ConfigError, match="is a directory"):
            await store.open()


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` read-only for this process (permission bits, or the immutable flag when
    running as root, which ignores permission bits)."""
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    immutable = False
    try:
        if os.access(path, os.W_OK) and shutil.which("chattr"):
            done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            immutable = done.returncode == 0
        if os.access(path, os.W_OK):
            pytest.skip("cannot make a path read-only for this user")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


async def test_read_only_file_is_refused(tmp_path: Path) -> None:
    """A database file this process cannot write gives a ConfigError naming it."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        await store.open()
    with read_only(db):
        async with opened(db) as store:
            with pytest.raises(lash.ConfigError, match="read-only") as refused:
                await store.load("s")
    assert str(refused.value).startswith(f"{db}: ") and "chmod" in str(refused.value)


async def test_read_only_directory_is_refused(tmp_path: Path) -> None:
    """A directory SQLite cannot create files in (database, -wal, -shm) is a clear error."""
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        async with opened(folder / "lash.db") as store:
            with pytest.raises(lash.ConfigError, match="not writable") as refused:
                await store.open()
    assert str(folder) in str(refused.value) and "-wal" in str(refused.value)


# -- mode: opening without creating --------------------------------------------------------------


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("mode", ["ro", "rw"])
async def test_ro_and_rw_create_nothing_and_name_the_path(tmp_path: Path, mode: str) -> None:
    """``mode=ro`` / ``rw`` on a missing file or directory: a ConfigError naming it, no file."""
    for db in (tmp_path / "lash.db", tmp_path / "state" / "lash.db"):
        for store in (
            SQLiteStore(f"{url_of(db)}?mode={mode}&create_dirs=1"),
            SQLiteStore(url_of(db), mode=mode, create_dirs=True),
        ):
            try:
                with pytest.raises(lash.ConfigError) as refused:
                    await store.list_sessions()
            finally:
                await store.close()
            assert refused.value.path == str(db)
            assert str(refused.value).startswith(f"{db}: there is no database here")
            assert f"mode={mode}" in str(refused.value)
    assert listing(tmp_path) == []


async def test_ro_reads_writes_nothing_and_leaves_no_files(tmp_path: Path) -> None:
    """A ``mode=ro`` store loads and lists; every write is refused; the files stay as they were."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        await store.commit("s", lease=lease, expected_revision=0, delta=turn_delta("F1", 1, 1))
        await store.release_lease(lease)
        expected = await store.load("s", full=True)
    content = db.read_bytes()
    assert listing(tmp_path) == ["lash.db"]

    async with opened(db, mode="ro") as reader:
        assert await reader.load("s", full=True) == expected
        assert [row.session_id for row in await reader.list_sessions()] == ["s"]
        assert [m["id"] for m in (await reader.info())["migrations"]] == [
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
            10,
            11,
            12,
        ]
        assert (await reader.list_inputs("s"), (await reader.read_events("s")).last) == ([], 0)
        assert await reader.turn_record("s", "t") is None
        dead = lash.store.Lease("s", "w", 1, time.time() + 30)
        writes = {
            "acquire": reader.acquire_lease("t", "w", ttl=30),
            "renew": reader.renew_lease(dead, ttl=30),
            "release": reader.release_lease(dead),
            "commit": reader.commit(
                "s", lease=lease, expected_revision=1, delta=turn_delta("F1", 2, 2)
            ),
            "delete": reader.delete("s"),
            "enqueue": reader.enqueue_input("s", lash.store.InputDraft("x")),
            "claim": reader.claim_inputs(dead),
            "cancel": reader.cancel_inputs("s", ["x"]),
            "command": reader.enqueue_command("s", lash.store.CommandDraft("reset", "k")),
            "cancel turn": reader.request_cancel("s", "t", origin="o"),
        }
        for name, write in writes.items():
            with pytest.raises(lash.ConfigError) as refused:
                await write
            assert str(refused.value).startswith(f"{db}: this store only reads (mode=ro"), name
    # Closed, it leaves no -wal or -shm file behind, and the database as it was.
    assert listing(tmp_path) == ["lash.db"]
    assert db.read_bytes() == content


async def test_ro_reads_a_file_this_process_cannot_write(tmp_path: Path) -> None:
    """``mode=ro`` reads a database file that is read-only for this process."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        lease = await leased(store, "s")
        await store.commit("s", lease=lease, expected_revision=0, delta=turn_delta("F1", 1, 1))
    with read_only(db):
        async with opened(db, mode="ro") as reader:
            assert [row.session_id for row in await reader.list_sessions()] == ["s"]


async def test_ro_refuses_an_empty_file_and_an_older_schema_untouched(tmp_path: Path) -> None:
    """``mode=ro`` migrates nothing: an empty file, or one lacking a migration, is refused."""
    empty = tmp_path / "empty.db"
    empty.touch()
    async with opened(empty, mode="ro") as reader:
        with pytest.raises(lash.ConfigError, match="not a lash database yet") as refused:
            await reader.list_sessions()
    assert refused.value.path == str(empty)
    assert empty.read_bytes() == b""

    db = tmp_path / "old.db"
    legacy_database(db, first_schema=True)
    async with opened(db, mode="ro") as reader:
        with pytest.raises(lash.ConfigError) as refused:
            await reader.list_sessions()
    assert (
        "lacks the schema migrations 2 ('one-statement commit'), 3 ('mailbox'), 4 ('processes'), "
        "5 ('child sessions')" in str(refused.value)
    )
    assert "open it once without mode=ro" in str(refused.value)
    assert query(db, "SELECT id FROM lash_migrations") == [(1,)]
    # Without mode=ro (rw: it exists), the store migrates it forward.
    async with opened(db, mode="rw") as store:
        assert [row.session_id for row in await store.list_sessions()] == ["old-1"]
    assert query(db, "SELECT id FROM lash_migrations ORDER BY id") == [
        (1,),
        (2,),
        (3,),
        (4,),
        (5,),
        (6,),
        (7,),
        (8,),
        (9,),
        (10,),
        (11,),
        (12,),
    ]


# -- URLs ---------------------------------------------------------------------------------------


def test_url_forms() -> None:
    """Three slashes then the path (four: absolute), ``:memory:``, and query parameters."""
    assert parse_url("sqlite:///rel/lash.db").path == "rel/lash.db"
    assert parse_url("sqlite:////abs/lash.db").path == "/abs/lash.db"
    assert parse_url("sqlite://:memory:").path == ":memory:"
    assert parse_url("sqlite:///my%20dir/lash.db").path == "my dir/lash.db"
    settings_ = parse_url("sqlite:///x.db?synchronous=FULL&busy_timeout=250&create_dirs=yes")
    assert (settings_.synchronous, settings_.busy_timeout, settings_.create_dirs) == (
        "FULL",
        250,
        True,
    )
    defaults = parse_url("sqlite:///x.db")
    assert (defaults.synchronous, defaults.busy_timeout, defaults.create_dirs, defaults.mode) == (
        "NORMAL",
        5000,
        False,
        "rwc",
    )
    assert [parse_url(f"sqlite:///x.db?mode={m}").mode for m in ("ro", "RW", "rwc")] == [
        "ro",
        "rw",
        "rwc",
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite://lash.db", "sqlite:///relative/path.db"),
        ("sqlite://", "sqlite:///relative/path.db"),
        ("sqlite:///", "sqlite:///relative/path.db"),
        ("postgresql://db", "not a sqlite URL"),
        ("sqlite:///x.db?synchronous=SOMETIMES", "synchronous='SOMETIMES'"),
        ("sqlite:///x.db?busy_timeout=soon", "busy_timeout='soon'"),
        ("sqlite:///x.db?create_dirs=maybe", "create_dirs='maybe'"),
        ("sqlite:///x.db?colour=red", "unknown parameter 'colour'"),
        ("sqlite:///x.db?mode=wr", "mode='wr'; use rwc"),
        ("sqlite://:memory:?mode=ro", "mode=ro opens an existing database"),
    ],
)
def test_bad_urls_are_config_errors(url: str, expected: str) -> None:
    """Malformed URLs and unknown or bad parameters say what is wrong and the accepted forms."""
    with pytest.raises(lash.ConfigError, match=expected.replace("?", r"\?")):
        SQLiteStore(url)


async def test_relative_path_is_fixed_when_the_store_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:///rel.db`` is relative to the working directory at build time."""
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("sqlite:///data/lash.db", create_dirs=True)
    assert store.path == str(tmp_path / "data" / "lash.db")
    monkeypatch.chdir("/")
    try:
        await store.open()
    finally:
        await store.close()
    assert (tmp_path / "data" / "lash.db").is_file()


async def test_memory_database_works_without_files(tmp_path: Path) -> None:
    """``sqlite://:memory:`` is a private database with the same behaviour."""
    store = SQLiteStore("sqlite://:memory:")
    try:
        lease = await leased(store, "s")
        nodes = every_kind()
        delta = lash.store.CommitDelta(nodes=tuple(nodes), turns=1)
        assert await store.commit("s", lease=lease, expected_revision=0, delta=delta) == 1
        record = await store.load("s")
        assert record is not None and list(record.nodes) == nodes
    finally:
        await store.close()


# -- the kernel on a SQLite file ---------------------------------------------------------------


def make_core(db: Path, recorder: Recorder, *plugins: object, **kwargs: Any) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, recorder, *plugins],
        autoload=False,
        disable=["scripted", "openai"],
        provider="recorder",
        store=url_of(db),
        **kwargs,
    )


async def test_sqlite_scheme_is_registered_by_the_stores_plugin(tmp_path: Path) -> None:
    """A core configured with a sqlite URL builds a SQLiteStore (a lash.store.Store)."""
    core = make_core(tmp_path / "lash.db", Recorder([]))
    try:
        assert isinstance(core.store, SQLiteStore) and isinstance(core.store, lash.store.Store)
        assert core.store.path == str(tmp_path / "lash.db")
    finally:
        await core.aclose()


async def test_kernel_resumes_a_session_from_the_file_with_plugin_state(tmp_path: Path) -> None:
    """Turns committed by one core are resumed by a new one: history, plan state, usage."""
    db = tmp_path / "lash.db"
    steps = [{"step": "measure", "status": "in_progress"}, {"step": "cut"}]
    first = Recorder(
        [
            {
                "text": "planning",
                "tool_calls": [{"id": "c1", "name": "update_plan", "arguments": {"steps": steps}}],
                "usage": {"input_tokens": 10, "output_tokens": 2},
            },
            {"text": "Plan made.", "usage": {"input_tokens": 20, "output_tokens": 3}},
            {"text": "You are welcome.", "usage": {"input_tokens": 30, "output_tokens": 4}},
        ]
    )
    core = make_core(db, first, plan)
    try:
        session = await core.session("job").open()
        assert (await session.turn("make a plan").run()).text == "Plan made."
        assert (await session.turn("thanks").run()).revision == 2
        await session.close()
    finally:
        await core.aclose()

    second = Recorder([{"text": "Cutting now.", "usage": {"input_tokens": 5, "output_tokens": 1}}])
    core = make_core(db, second, plan)
    try:
        session = await core.session("job").open(must_exist=True)
        assert (session.revision, session.turns) == (2, 2)
        state = session.state(plan.PlanState)
        assert state.steps == [plan.PlanStep("measure", "in_progress"), plan.PlanStep("cut")]
        assert state.updates == 1
        result = await session.turn("go on").run()
        assert result.outcome == "completed" and result.text == "Cutting now."
        assert (result.index, result.revision) == (3, 3)
        request = second.requests[0]
        seen = [(m.role, m.content) for m in request.messages if m.role in ("user", "assistant")]
        assert seen[:2] == [("user", "make a plan"), ("assistant", "planning")]
        assert seen[-1] == ("user", "go on")
        assert "[~] measure\n[ ] cut" in request.messages[0].content
        assert session.usage_report()["total"] == {
            "input_tokens": 65,
            "output_tokens": 10,
            "cached_tokens": 0,
        }
        await session.close()
        (summary,) = await core.store.list_sessions()
        assert (summary.session_id, summary.turns, summary.revision) == ("job", 3, 3)
        assert summary.last_user_message == "go on"
        assert summary.usage == lash.Usage(65, 10, 0)
        record = await core.store.load("job", full=True)
        assert record is not None
        texts = [n.text for n in record.nodes if isinstance(n, lash.UserMessage)]
        assert texts == ["make a plan", "thanks", "go on"]
        assert record.plugin_states["plan"]["updates"] == 1
    finally:
        await core.aclose()


async def test_kernel_resumes_a_session_of_an_older_file_and_goes_on(tmp_path: Path) -> None:
    """A session whose node rows hold the whole stored form (as files written before rows
    kept the body alone do) resumes: the model sees its history, the next turn commits body
    rows after the old ones, and the whole history loads in order."""
    db = tmp_path / "lash.db"
    first = Recorder(
        [
            {
                "text": "adding",
                "tool_calls": [
                    {"id": "c1", "name": "update_plan", "arguments": {"steps": [{"step": "a"}]}}
                ],
            },
            {"text": "Planned."},
        ]
    )
    core = make_core(db, first, plan)
    try:
        session = await core.session("job").open()
        assert (await session.turn("make a plan").run()).text == "Planned."
        await session.close()
        record = await core.store.load("job", full=True)
        assert record is not None
        old = record.nodes
    finally:
        await core.aclose()
    for seq, node in enumerate(old):
        set_row(db, "job", seq, lash.store.node_json(node))
    second = Recorder([{"text": "Going on."}])
    core = make_core(db, second, plan)
    try:
        session = await core.session("job").open(must_exist=True)
        assert tuple(session.nodes) == old
        assert (await session.turn("go on").run()).text == "Going on."
        seen = [(m.role, m.content) for m in second.requests[0].messages if m.role != "system"]
        assert seen[0] == ("user", "make a plan") and seen[1] == ("assistant", "adding")
        assert seen[-2:] == [("assistant", "Planned."), ("user", "go on")]
        await session.close()
        record = await core.store.load("job", full=True)
        assert record is not None and record.nodes[: len(old)] == old
        assert [n.text for n in record.nodes if isinstance(n, lash.UserMessage)] == [
            "make a plan",
            "go on",
        ]
    finally:
        await core.aclose()
    texts = [text for (text,) in query(db, "SELECT data FROM nodes ORDER BY seq")]
    assert all('"type":' in t for t in texts[: len(old)])
    assert not any('"type":' in t for t in texts[len(old) :])


async def test_a_cancelled_operation_leaves_the_session_as_the_store_has_it(
    tmp_path: Path,
) -> None:
    """``configure()`` cancelled at every step of its commit: a cancellation that arrives
    before the commit is sent commits nothing; one that arrives while it is on its way lets it
    finish (the database has it, and so does the session) and is raised after it. The session
    never drifts from the store, so its next commit succeeds."""
    db = tmp_path / "lash.db"
    core = make_core(db, Recorder([]))
    seen = set()
    try:
        session = await core.session("s").open()
        for steps in range(40):
            before = session.revision
            layers = (f"v{steps}",)
            task = asyncio.create_task(session.configure(prompt_layers=layers))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
                outcome = "returned"
            except asyncio.CancelledError:
                outcome = "cancelled"
            record = await core.store.load("s")
            stored = record.revision if record is not None else 0
            assert session.revision == stored, (steps, outcome)
            if record is not None:
                assert session.config.prompt_layers == record.config.prompt_layers
            committed = stored == before + 1
            assert committed == (session.config.prompt_layers == layers), steps
            seen.add((outcome, committed))
        assert seen >= {("cancelled", False), ("cancelled", True)}, seen
        final = await session.configure(prompt_layers=("final",))
        assert final.prompt_layers == ("final",)
        await session.close()
    finally:
        await core.aclose()


async def test_provider_key_never_reaches_the_database_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API keys from host options, session options and the environment are never written."""
    host_key = "sk-host-SECRET-5f1d0c9b7a"
    env_key = "sk-env-SECRET-8e2a4b6c1d"
    session_key = "sk-session-SECRET-3c7e9a1f0b"
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    db = tmp_path / "lash.db"
    rec = Recorder([{"text": f"answer {i}"} for i in range(3)])
    core = lash.LashCore(
        plugins=[standard, stores, rec, openai_plugin, plan],
        autoload=False,
        disable=["scripted"],
        provider="recorder",
        store=url_of(db),
        options={"openai": {"api_key": host_key}},
    )
    try:
        session = await core.session("s", options={"openai": {"api_key": session_key}}).open()
        for i in range(3):
            assert (await session.turn(f"question {i}").run()).outcome == "completed"
        await session.close()
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert files[1].exists()
        contents = [p.read_bytes() for p in files if p.exists()]
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        finally:
            conn.close()
        contents += [p.read_bytes() for p in files if p.exists()]
    finally:
        await core.aclose()
    contents += [p.read_bytes() for p in tmp_path.iterdir() if p.is_file()]
    for key in (host_key, env_key, session_key):
        for blob in contents:
            assert key.encode() not in blob
            assert key.encode("utf-16-le") not in blob
    assert b"question 2" in b"".join(contents)  # the scan does see what was committed


# -- property: random commit sequences round-trip like the reference store --------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
names = st.sampled_from(["a", "b", "c"])
texts = st.text(max_size=12)
usages = st.builds(lash.Usage, st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
tool_calls = st.builds(
    lash.ToolCall,
    id=texts,
    name=names,
    arguments=st.dictionaries(st.text(max_size=4), json_values, max_size=3),
    invalid_arguments=st.none() | texts,
)


@st.composite
def graph_nodes(draw: st.DrawFn) -> Any:
    base = {
        "id": f"p{next(_ids)}",
        "parent_id": draw(st.none() | texts),
        "frame_id": draw(names),
        "turn": draw(st.integers(0, 50)),
    }
    kind = draw(
        st.sampled_from(["user", "assistant", "call", "result", "plugin", "frame", "outcome"])
    )
    if kind == "user":
        items = draw(st.lists(json_values, max_size=2))
        return lash.UserMessage(**base, text=draw(texts), items=tuple(items))
    if kind == "assistant":
        calls = tuple(draw(st.lists(tool_calls, max_size=2)))
        model = draw(st.none() | names)
        return lash.AssistantMessage(
            **base, text=draw(texts), tool_calls=calls, usage=draw(usages), model=model
        )
    if kind == "call":
        return lash.ToolCallNode(**base, call=draw(tool_calls), plugin=draw(st.none() | names))
    if kind == "result":
        return lash.ToolResultNode(
            **base,
            call_id=draw(texts),
            name=draw(names),
            content=draw(texts),
            is_error=draw(st.booleans()),
            projected=draw(st.none() | texts),
        )
    if kind == "plugin":
        return lash.PluginNode(**base, plugin=draw(names), kind=draw(names), data=draw(json_values))
    if kind == "outcome":  # how a turn ended (the listing's status)
        outcome = {
            **base,
            "type": "outcome",
            "turn_id": draw(names),
            "outcome": draw(st.sampled_from(["completed", "stopped", "failed"])),
            "reason": draw(st.none() | names),
            "error": draw(st.none() | texts),
        }
        return lash.from_data(outcome, lash.GraphNode)
    return lash.FrameBoundary(
        **base,
        previous_frame_id=draw(st.none() | names),
        reason=draw(names),
        summary=draw(st.none() | texts),
    )


configs = st.builds(
    lash.SessionConfig,
    provider=st.none() | names,
    model=st.none() | names,
    prompt_layers=st.lists(texts, max_size=2).map(tuple),
    plugin_options=st.dictionaries(names, st.dictionaries(names, json_values, max_size=2)),
)
deltas = st.builds(
    lash.store.CommitDelta,
    nodes=st.lists(graph_nodes(), max_size=5).map(tuple),
    plugin_states=st.dictionaries(names, json_values, max_size=2),
    config=st.none() | configs,
    usage=st.dictionaries(names, usages, max_size=2),
    turns=st.integers(0, 2),
    replace=st.booleans(),
)
operations = st.lists(
    st.tuples(st.sampled_from(["s1", "s2"]), st.none() | deltas), min_size=1, max_size=8
)


def without_times(record: lash.store.SessionRecord | None) -> Any:
    if record is None:
        return None
    return attrs.evolve(record, created_at=0.0, updated_at=0.0)


_examples = itertools.count()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
async def test_random_commit_sequences_round_trip_like_the_memory_store(
    tmp_path: Path, ops: list[tuple[str, lash.store.CommitDelta | None]]
) -> None:
    """Random commits (every node kind, replaces, states, usage) and deletes: the file holds
    exactly what the reference MemoryStore holds (the listing's status too), also after
    reopening."""
    db = tmp_path / f"prop-{next(_examples)}.db"
    reference = lash.store.MemoryStore()
    async with opened(db) as store:
        revisions: dict[str, int] = {}
        for sid, delta in ops:
            if delta is None:  # delete
                if sid in revisions:
                    for backend in (reference, store):
                        await backend.release_lease(await backend.acquire_lease(sid, "w", ttl=5))
                        await backend.delete(sid)
                    del revisions[sid]
                continue
            expected = revisions.get(sid, 0)
            got = []
            for backend in (reference, store):
                lease = await backend.acquire_lease(sid, "w", ttl=30)
                got.append(
                    await backend.commit(sid, lease=lease, expected_revision=expected, delta=delta)
                )
            assert got[0] == got[1] == expected + 1
            revisions[sid] = expected + 1
        for sid in ("s1", "s2"):
            for full in (False, True):
                assert without_times(await store.load(sid, full=full)) == without_times(
                    await reference.load(sid, full=full)
                )

        def summaries(rows: list[lash.store.SessionSummary]) -> dict[str, Any]:
            return {r.session_id: attrs.evolve(r, created_at=0.0, updated_at=0.0) for r in rows}

        assert summaries(await store.list_sessions()) == summaries(await reference.list_sessions())
    async with opened(db) as again:
        for sid in ("s1", "s2"):
            assert without_times(await again.load(sid, full=True)) == without_times(
                await reference.load(sid, full=True)
            )
        # Every blob is referenced by some session: replaced and deleted data was dropped.
        referenced = {h for (h,) in query(db, "SELECT blob_hash FROM plugin_states")}
        referenced |= {h for (h,) in query(db, "SELECT config_hash FROM sessions") if h}
        assert {h for (h,) in query(db, "SELECT hash FROM blobs")} == referenced


SPOILERS: dict[str, tuple[Any, str]] = {
    # how a row is spoiled; the start of the problem its error must state
    "unknown key": (lambda d: d.update(zz=1), "zz: unknown key"),
    "missing id": (lambda d: d.pop("id"), "id: required, missing (expected str)"),
    "missing parent": (lambda d: d.pop("parent_id"), "parent_id: required, missing"),
    "int for a str": (lambda d: d.update(frame_id=7), "frame_id: expected str, got 7 (int)"),
    "text for an int": (lambda d: d.update(turn="3"), "turn: expected int, got '3' (str)"),
    "bool for an int": (lambda d: d.update(turn=False), "turn: expected int, got False (bool)"),
    "float for an int": (lambda d: d.update(turn=1.5), "turn: expected int, got 1.5 (float)"),
    "unknown tag": (lambda d: d.update(type="nope"), "type: expected 'assistant' | "),
}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    nodes=st.lists(graph_nodes(), min_size=1, max_size=4),
    pick=st.integers(0, 3),
    spoiler=st.sampled_from(sorted(SPOILERS)),
)
async def test_random_nodes_load_as_committed_and_spoiled_rows_are_refused(
    tmp_path: Path, nodes: list[Any], pick: int, spoiler: str
) -> None:
    """Random nodes of every kind load back equal; one of their rows spoiled in a way its type
    forbids makes load fail with a ValidationError naming the session and the field."""
    db = tmp_path / "spoiled.db"
    sid = f"s{next(_examples)}"
    seq = pick % len(nodes)
    spoil, problem = SPOILERS[spoiler]
    async with opened(db) as store:
        lease = await leased(store, sid)
        delta = lash.store.CommitDelta(nodes=tuple(nodes), turns=1)
        await store.commit(sid, lease=lease, expected_revision=0, delta=delta)
        record = await store.load(sid, full=True)
        assert record is not None and list(record.nodes) == nodes
        data = stored_row(db, sid, seq)
        spoil(data)
        set_row(db, sid, seq, json.dumps(data))
        with pytest.raises(lash.ValidationError) as invalid:
            await store.load(sid, full=True)
    assert invalid.value.args[0].startswith(f"invalid stored node of {sid!r}:")
    (line,) = invalid.value.problems
    assert line.startswith(problem)


async def test_small_writes_run_inline_and_wait_on_the_worker_when_the_lock_is_taken(
    tmp_path: Path,
) -> None:
    """A lease and a turn's commit run on the event loop's thread (the worker's connection runs
    none of their statements) while the write lock is free; with another connection holding
    it for longer than INLINE_WAIT, they go to the worker, which waits for it, while the event
    loop goes on."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        await store.open()
        conn = store._conn
        assert conn is not None
        on_worker = 0

        def count() -> int:
            nonlocal on_worker
            on_worker += 1
            return 0

        await conn.set_progress_handler(count, 1)
        lease = await store.acquire_lease("s", "w1", ttl=30)
        delta = lash.store.CommitDelta(nodes=tuple(every_kind("F", 0)), turns=1, release=True)
        assert await store.commit("s", lease=lease, expected_revision=0, delta=delta) == 1
        assert on_worker == 0, "a small write went to the worker thread"

        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(store.acquire_lease("s", "w1", ttl=30))
        ticks = 0
        # The loop runs on while the acquisition waits for the lock (first trying again on this
        # thread for INLINE_WAIT, then on the worker).
        while ticks < (sqlite_module.INLINE_WAIT + 0.2) / 0.005:
            await asyncio.sleep(0.005)
            ticks += 1
        assert not task.done()
        blocker.execute("ROLLBACK")
        blocker.close()
        again = await asyncio.wait_for(task, 10)
        assert (again.revision, again.token) == (1, lease.token + 1)
        assert on_worker > 0, "the busy write did not go to the worker thread"
        await conn.set_progress_handler(None, 1)


async def test_a_small_write_takes_a_write_lock_freed_soon_on_the_event_loops_thread(
    tmp_path: Path,
) -> None:
    """Another connection holding the write lock briefly (less than INLINE_WAIT): the small
    write tries again on the event loop's thread and gets it there, not on the worker thread
    (whose SQLite busy handler sleeps ever longer between its tries), while the loop goes on."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        await store.open()
        lease = await store.acquire_lease("s", "w1", ttl=30)
        await store.release_lease(lease)
        conn = store._conn
        assert conn is not None
        on_worker = 0

        def count() -> int:
            nonlocal on_worker
            on_worker += 1
            return 0

        await conn.set_progress_handler(count, 1)
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        task = asyncio.create_task(store.acquire_lease("s", "w2", ttl=30))
        for _ in range(10):  # 50 ms: the loop runs on while the acquisition waits
            await asyncio.sleep(0.005)
        assert not task.done()
        blocker.execute("ROLLBACK")
        blocker.close()
        again = await asyncio.wait_for(task, 10)
        assert (again.owner, again.token) == ("w2", lease.token + 1)
        assert on_worker == 0, "the write went to the worker thread"
        await conn.set_progress_handler(None, 1)
