"""The ``sqlite://`` store's plain-statement commit (made inline, on the event loop's thread)
against the commit statement's trigger (made on the worker thread): random commit sequences,
refusals included, leave the same rows in two real SQLite files."""

from __future__ import annotations

import contextlib
import functools
import itertools
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sqlite_store import TABLES

import lash
import lash.store
from lash_plugins_builtin import _sqlite_schema
from lash_plugins_builtin import sqlite as sqlite_module
from lash_plugins_builtin.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio


class Clock:
    """Stands in for the ``time`` module in ``sqlite.py``: a clock the test moves, so that two
    stores fed the same operations stamp the same times."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


class Ids:
    """Input and command ids numbered from 1 (both stores get the same ones, in order)."""

    def __init__(self) -> None:
        self.counter = itertools.count(1)

    def input_id(self) -> str:
        return f"in-{next(self.counter)}"

    def uuid4(self) -> Any:
        class Hex:
            hex = f"{next(self.counter):016x}" + "0" * 16

        return Hex()


#: What is compared of each table: every column, but the head's ``events_at``, the event log
#: retention trigger's clock, which a plain lease or commit leaves as it is (it trims the log
#: itself instead: ``_sqlite_schema.event_retention``) and nothing reads back.
COMPARED = {
    t: "session_id, revision, created_at, updated_at, turns, next_seq, frame_start, "
    "last_user_message, config_hash, protocol_options_hash, pending_hash, lease_owner, "
    "lease_token, lease_expires_at, status, running_turn, input_seq, command_seq, event_seq, "
    "parent_id, turn_input, turn_output, turn_cached"
    if t == "sessions"
    else "*"
    for t in TABLES
}


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: sorted(conn.execute(f"SELECT {COMPARED[t]} FROM {t}").fetchall(), key=repr)
            for t in TABLES
        }
    finally:
        conn.close()


#: One commit: its nodes' texts, plugin states (None: unchanged), whether the config changes,
#: usage, events, whether it carries a turn record (and under which id), input to claim and
#: settle (and whether it names one that is not claimed), commands to apply (and one not
#: pending), the turn a cancel request is stored for first (the commit of that turn drops it;
#: None: none), whether it releases the lease, whether the store forgets the head first (so the
#: commit reads it: the two-round-trip path), and whether it is computed from a wrong revision.
commits = st.fixed_dictionaries(
    {
        # (text, frame, turn after the commit's, a user message, a frame boundary, or a user
        # message whose id holds a newline): how the nodes share rows (migration 8)
        "texts": st.lists(
            st.tuples(
                st.text(max_size=8),
                st.sampled_from(["F", "G"]),
                st.integers(0, 1),
                st.sampled_from(["user", "boundary", "newline id"]),
            ),
            max_size=4,
        ),
        "states": st.dictionaries(
            st.sampled_from(["p", "q"]), st.integers(0, 2) | st.none(), max_size=2
        ),
        "config": st.sampled_from([None, "m1", "m2"]),
        "usage": st.dictionaries(st.sampled_from(["turn", "tool"]), st.integers(0, 9), max_size=2),
        "events": st.lists(st.sampled_from(["a", "b"]), max_size=3),
        "turn": st.sampled_from([None, "t1", "t2", "t3"]),
        "cancel": st.sampled_from([None, "t1", "t2", "t9"]),
        "claim": st.integers(0, 2),
        "bogus_claim": st.booleans(),
        "commands": st.integers(0, 2),
        "bogus_command": st.booleans(),
        "release": st.booleans(),
        "forget": st.booleans(),
        "stale": st.integers(0, 12).map(lambda n: n == 0),
        "parent": st.sampled_from([None, "root"]),
    }
)


def node(n: int, i: int, text: str, frame: str, later: int, kind: str) -> lash.GraphNode:
    """Node ``i`` of commit ``n`` (see ``commits``' texts)."""
    head = {"parent_id": None, "frame_id": frame, "turn": n + later}
    if kind == "boundary":
        return lash.FrameBoundary(id=f"n{n}.{i}", previous_frame_id=None, summary=text, **head)
    node_id = f"n{n}\n{i}" if kind == "newline id" else f"n{n}.{i}"
    return lash.UserMessage(id=node_id, text=text, **head)


#: The event logs' retentions tried, ``(events kept, max age)``: the default; 4 events,
#: trimmed on every write (a batch of 1); 100, trimmed every 10 events, none older than 1.5 s
#: (a step takes 1 s), so that what an old event's age trims shows.
RETENTIONS = [(10_000, 604_800.0), (4, 604_800.0), (100, 1.5)]


async def run(
    path: Path,
    inline: bool,
    steps: list[dict[str, Any]],
    retention: tuple[int, float] = RETENTIONS[0],
) -> list[Any]:
    """Apply ``steps`` to a fresh store on ``path`` (its event log's ``retention``: events
    kept, max age); the outcome of each commit."""
    kept, max_age = retention
    store = SQLiteStore(f"sqlite:///{path}", events_kept=kept, events_max_age=max_age)
    if not inline:
        store._inline = False  # every operation on the worker thread: the commit statement
    outcomes: list[Any] = []
    try:
        revision = 0
        lease: lash.store.Lease | None = None
        for n, step in enumerate(steps):
            sqlite_module.time.now += 1.0  # type: ignore[attr-defined]
            for i in range(step["claim"] + step["commands"]):
                if i < step["claim"]:
                    await store.enqueue_input("s", lash.store.InputDraft(f"input {n}.{i}"))
                else:
                    draft = lash.store.CommandDraft("reset", key=f"k{n}.{i}")
                    await store.enqueue_command("s", draft)
            if lease is None:
                lease = await store.acquire_lease("s", "w", ttl=30)
            claimed = await store.claim_inputs(lease, limit=step["claim"]) if step["claim"] else []
            pending = await store.list_commands("s")
            ids = tuple(i.id for i in claimed) + (("in-nope",) if step["bogus_claim"] else ())
            applied = tuple(c.id for c in pending[: step["commands"]])
            if step["bogus_command"]:
                applied += ("cmd-nope",)
            turn = step["turn"]
            if step["cancel"] is not None:  # as request_cancel of a running turn stores it
                with contextlib.closing(sqlite3.connect(path)) as side, side:
                    side.execute(
                        "INSERT OR IGNORE INTO cancel_requests (session_id, turn_id, origin, "
                        "reason, requested_at) VALUES ('s', ?, 'watcher', NULL, ?)",
                        (step["cancel"], sqlite_module.time.now),  # type: ignore[attr-defined]
                    )
            delta = lash.store.CommitDelta(
                nodes=tuple(node(n, i, *shape) for i, shape in enumerate(step["texts"])),
                plugin_states={p: {"v": v} for p, v in step["states"].items() if v is not None},
                config=None if step["config"] is None else lash.SessionConfig(model=step["config"]),
                usage={s: lash.Usage(u, 1, 0) for s, u in step["usage"].items()},
                turns=1,
                claimed=ids,
                applied=applied,
                turn=None
                if turn is None
                else lash.store.TurnRecord("s", turn, n, "completed", 0, result={"n": n}),
                events=tuple(lash.store.EventDraft(e, {"n": n}) for e in step["events"]),
                parent_id=step["parent"],
                release=step["release"],
            )
            if step["forget"]:
                store._heads.clear()
            expected = revision + 1 if step["stale"] else revision
            try:
                revision = await store.commit(
                    "s", lease=lease, expected_revision=expected, delta=delta
                )
            except lash.LashError as exc:
                outcomes.append((type(exc).__name__, str(exc)))
                await store.release_lease(lease)
                lease = None
                continue
            outcomes.append(revision)
            if step["release"]:
                lease = None
    finally:
        await store.close()
    return outcomes


_examples = itertools.count()


async def assert_same_both_ways(
    monkeypatch: pytest.MonkeyPatch,
    run: Callable[[Path, bool, list[dict[str, Any]]], Awaitable[list[Any]]],
    script: list[dict[str, Any]],
) -> None:
    """``run(path, inline, script)`` on a fresh file inline (plain statements) and on another
    on the worker thread (the statements' triggers), from the same clock and ids: the same
    outcomes, and the same rows in every table."""
    monkeypatch.setattr(sqlite_module, "time", Clock())
    with tempfile.TemporaryDirectory() as directory:
        dumps, outcomes = [], []
        for inline in (True, False):
            ids = Ids()
            monkeypatch.setattr(_sqlite_schema, "new_input_id", ids.input_id)
            monkeypatch.setattr(uuid, "uuid4", ids.uuid4)  # the command ids
            sqlite_module.time.now = 1_000_000.0  # type: ignore[attr-defined]
            path = Path(directory) / f"{inline}-{next(_examples)}.db"
            outcomes.append(await run(path, inline, script))
            dumps.append(dump(path))
    assert outcomes[0] == outcomes[1]
    for table in TABLES:
        assert dumps[0][table] == dumps[1][table], table


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(commits, min_size=1, max_size=8))
@pytest.mark.parametrize("retention", RETENTIONS)
async def test_plain_commits_write_what_the_commit_statement_writes(
    monkeypatch: pytest.MonkeyPatch, steps: list[dict[str, Any]], retention: tuple[int, float]
) -> None:
    """Random commit sequences (nodes, states, config, usage, events, turn records, settled
    input, applied commands, cancel requests of the turn committed or of another, releases, a
    forgotten head, and refusals: a turn id committed already, input not claimed, a command
    not pending, a stale revision) give the same outcome
    and leave the same rows in every table (the event log trimmed alike, by count and by age),
    made inline with plain statements or on the worker thread with the commit statement."""
    await assert_same_both_ways(monkeypatch, functools.partial(run, retention=retention), steps)


async def test_the_plain_path_is_the_one_taken_inline(tmp_path: Path) -> None:
    """A turn's commit on the inline connection writes with plain statements (no row through
    the commit statement's view); on the worker thread it is the commit statement."""
    for inline in (True, False):
        store = SQLiteStore(f"sqlite:///{tmp_path / f'{inline}.db'}")
        if not inline:
            store._inline = False
        try:
            lease = await store.acquire_lease("s", "w", ttl=30)
            statements: list[str] = []
            if inline:
                direct = store._direct()
                assert direct is not None
                direct.set_trace_callback(statements.append)
            else:
                conn = store._conn
                assert conn is not None
                await conn.set_trace_callback(statements.append)
            node = lash.UserMessage(id="n", parent_id=None, frame_id="F", turn=1, text="hi")
            delta = lash.store.CommitDelta(nodes=(node,), turns=1, release=True)
            assert await store.commit("s", lease=lease, expected_revision=0, delta=delta) == 1
            through_view = any("INSERT INTO commit_requests" in s for s in statements)
            assert through_view is not inline, statements
        finally:
            await store.close()
