"""The ``sqlite://`` store's WAL checkpoint: in two phases on a connection of its own, the WAL
bounded, the store's operations going on meanwhile, nothing committed lost to a crash in the
middle of it (real SQLite files, a real subprocess killed with SIGKILL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import lash
import lash.store
from lash_plugins_builtin import sqlite as sqlite_module
from lash_plugins_builtin.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

#: A WAL frame: its 24-byte header and a 4 KiB page.
FRAME = 24 + 4096


def turn_delta(n: int) -> lash.store.CommitDelta:
    """A turn's commit: six nodes (as a turn with one tool call stores), the lease released."""
    nodes = tuple(
        lash.UserMessage(id=f"n{n}-{i}", parent_id=None, frame_id="F", turn=n, text=f"hi {n}")
        for i in range(6)
    )
    return lash.store.CommitDelta(nodes=nodes, turns=1, release=True)


async def run_turns(store: SQLiteStore, session_id: str, turns: int) -> int:
    """``turns`` turns of one session (a lease, then the commit that releases it); its last
    revision. Each yields to the event loop once, as a host's turn does."""
    revision = 0
    for n in range(turns):
        lease = await store.acquire_lease(session_id, "host", ttl=30)
        revision = await store.commit(
            session_id, lease=lease, expected_revision=revision, delta=turn_delta(n)
        )
        await asyncio.sleep(0)
    return revision


class Passes:
    """What :data:`sqlite_module.CHECKPOINT_OBSERVER` reports: each checkpoint's passes."""

    def __init__(self) -> None:
        self.checkpoints: list[list[tuple[int, tuple[int, int, int]]]] = [[]]
        self._lock = threading.Lock()

    def __call__(self, phase: int, result: tuple[int, int, int]) -> None:
        with self._lock:  # called on the checkpointer's thread
            self.checkpoints[-1].append((phase, result))
            if phase == 2:
                self.checkpoints.append([])

    def done(self) -> list[list[tuple[int, tuple[int, int, int]]]]:
        return [c for c in self.checkpoints if c]


@pytest.mark.slow
@pytest.mark.parametrize("sessions", [1, 100])
async def test_the_wal_stays_bounded_over_5000_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sessions: int
) -> None:
    """5,000 turns (1 session, or 100 at once) at the default interval: a checkpoint's last
    pass copies every frame (``log == checkpointed``, not busy; most of them do), so the next
    write starts the WAL over: no checkpoint finds more than a few intervals' worth of frames
    (the first one's count), where a WAL that never started over would hold 5,000 turns'
    worth (~50 times the first); the WAL file's size stays under that bound too, and no turn
    is lost."""
    passes = Passes()
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_OBSERVER", passes)
    db = tmp_path / "lash.db"
    store = SQLiteStore(f"sqlite:///{db}")
    try:
        await store.open()
        revisions = await asyncio.gather(
            *(run_turns(store, f"s{k}", 5000 // sessions) for k in range(sessions))
        )
        if store._checkpointing is not None:
            await asyncio.wrap_future(store._checkpointing)
        wal_size = (tmp_path / "lash.db-wal").stat().st_size
    finally:
        await store.close()
    assert revisions == [5000 // sessions] * sessions
    checkpoints = passes.done()
    # Two inline writes a turn (lease and commit), one checkpoint every INLINE_CHECKPOINT of
    # them when none is under way.
    assert 10 <= len(checkpoints) <= 2 * 5000 // sqlite_module.INLINE_CHECKPOINT
    for checkpoint in checkpoints:
        phases = [phase for phase, _ in checkpoint]
        assert phases[-1] == 2 and set(phases[:-1]) == {1}, checkpoint
        assert len(phases) <= sqlite_module.CHECKPOINT_PASSES + 1
    lasts = [checkpoint[-1][1] for checkpoint in checkpoints]
    complete = [busy == 0 and log == copied for busy, log, copied in lasts]
    # (Busy: the write lock or an older read was held longer than CHECKPOINT_BUSY; the next
    # checkpoint copies what this one left.)
    assert sum(complete) >= 0.75 * len(lasts), lasts
    # The WAL holds a few intervals' frames at most (more than one when a checkpoint
    # under way made the store skip the next), where 5,000 turns without starting over
    # would be ~50 times the first interval's.
    first = checkpoints[0][0][1][1]  # the frames of the first interval
    assert first > 0
    logs = [result[1] for checkpoint in checkpoints for _, result in checkpoint]
    assert max(logs) <= 8 * first, (first, logs)
    assert wal_size <= 8 * first * FRAME + 32, (wal_size, first)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT sum(node_count) FROM nodes").fetchone()[0] == 5000 * 6
    finally:
        conn.close()


async def test_the_store_goes_on_during_the_first_phase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the checkpoint's first phase runs (held here on its thread, after its passive
    pass, which an open read kept from copying the last turn), the store's lease, commit,
    load and list run: nothing of the store waits for it, not its lock, not its worker's
    connection; released (and the read ended), the second phase copies every frame left,
    those written meanwhile too, and the next write starts the WAL over."""
    monkeypatch.setattr(sqlite_module, "INLINE_CHECKPOINT", 4)
    in_phase_one = threading.Event()
    release = threading.Event()
    passes = Passes()

    def observe(phase: int, result: tuple[int, int, int]) -> None:
        passes(phase, result)
        if phase == 1 and not release.is_set():
            in_phase_one.set()
            release.wait(30)

    monkeypatch.setattr(sqlite_module, "CHECKPOINT_OBSERVER", observe)
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_PASSES", 1)
    db = tmp_path / "lash.db"
    store = SQLiteStore(f"sqlite:///{db}")
    try:
        await store.open()
        await run_turns(store, "a", 1)
        reader = sqlite3.connect(db)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM nodes").fetchone()  # a read of the WAL as it is
        await run_turns(store, "z", 1)  # the fourth inline write starts a checkpoint
        assert store._checkpointing is not None
        await asyncio.wait_for(asyncio.to_thread(in_phase_one.wait, 30), 30)
        # No other checkpoint now: one would hold SQLite's checkpoint lock at the end.
        monkeypatch.setattr(sqlite_module, "INLINE_CHECKPOINT", 10**9)
        revision = await asyncio.wait_for(run_turns(store, "b", 3), 10)
        assert revision == 3
        record = await asyncio.wait_for(store.load("b"), 10)
        assert record is not None and record.revision == 3
        listed = await asyncio.wait_for(store.list_sessions(), 10)
        assert {s.session_id for s in listed} == {"a", "b", "z"}
        reader.close()
        release.set()
        await asyncio.wrap_future(store._checkpointing)
        ((phase, (_, log_one, copied_one)), (last, (busy, log, copied))) = passes.done()[0]
        assert (phase, last) == (1, 2)
        assert 0 < copied_one < log_one  # up to the open read
        assert log > log_one  # the turns written during phase one
        assert (busy, copied) == (0, log)  # every frame copied
        await run_turns(store, "c", 1)  # the next write starts the WAL over
        conn = sqlite3.connect(db)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opens the WAL
            # A WAL started over holds only that write's frames.
            ((_, frames, _),) = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()
        assert 0 < frames < log_one, (frames, log_one)
    finally:
        release.set()
        await store.close()


async def test_close_leaves_no_checkpoint_thread_or_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store closed while a checkpoint runs waits for it: no thread of the store, no task,
    and the file checkpointed whole by its last connection (no WAL left)."""
    monkeypatch.setattr(sqlite_module, "INLINE_CHECKPOINT", 4)
    in_phase_one = threading.Event()

    def observe(phase: int, result: tuple[int, int, int]) -> None:
        in_phase_one.set()

    monkeypatch.setattr(sqlite_module, "CHECKPOINT_OBSERVER", observe)
    before = set(threading.enumerate())
    db = tmp_path / "lash.db"
    store = SQLiteStore(f"sqlite:///{db}")
    await store.open()
    await run_turns(store, "a", 2)
    task = store._checkpointing
    assert task is not None
    await store.close()
    assert task.done() and store._checkpointing is None
    assert in_phase_one.is_set()  # it had started its passes: close waited for them
    for thread in set(threading.enumerate()) - before:
        thread.join(5)  # (a worker's thread ends just after its close is answered)
        assert not thread.is_alive(), thread
    assert not (tmp_path / "lash.db-wal").exists()


CHILD = """
import asyncio, json, os, signal, sqlite3, sys, threading
import lash, lash.store
from lash_plugins_builtin import sqlite as sqlite_module
from lash_plugins_builtin.sqlite import SQLiteStore

db = sys.argv[1]
sqlite_module.INLINE_CHECKPOINT = 60  # 30 turns
sqlite_module.CHECKPOINT_PASSES = 1
committed = []

def report(line):
    # One write(2) of a short line to a pipe: whole, whichever thread writes, killed or not.
    os.write(1, (json.dumps(line) + "\\n").encode())

after = threading.Event()

def observe(phase, result):
    # On the checkpointer's thread, after its passive pass: wait until more turns commit,
    # then die here, between the two phases.
    report({"pass": phase, "result": list(result)})
    after.wait(30)
    os.kill(os.getpid(), signal.SIGKILL)

sqlite_module.CHECKPOINT_OBSERVER = observe

async def main():
    store = SQLiteStore(f"sqlite:///{db}")
    await store.open()
    reader = None
    revision = 0
    n = 0
    while True:
        lease = await store.acquire_lease("s", "host", ttl=30)
        nodes = tuple(
            lash.UserMessage(id=f"n{n}-{i}", parent_id=None, frame_id="F", turn=n, text="x")
            for i in range(6)
        )
        delta = lash.store.CommitDelta(nodes=nodes, turns=1, release=True)
        revision = await store.commit("s", lease=lease, expected_revision=revision, delta=delta)
        committed.append(revision)
        report({"committed": revision})
        n += 1
        if n == 10:
            # An open read of the WAL as it is now: the passive pass copies no frame past it.
            reader = sqlite3.connect(db, check_same_thread=False)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM nodes").fetchone()
        if store._checkpointing is not None and len(committed) >= 45:
            after.set()
        await asyncio.sleep(0.001)

asyncio.run(main())
"""


def test_a_crash_between_the_checkpoints_phases_loses_no_committed_turn(tmp_path: Path) -> None:
    """A host process SIGKILLed in the middle of a checkpoint (its passive pass has copied part
    of the WAL into the database file, stopped by an open read; turns committed since):
    reopened, the database holds every turn it reported committed, whole, and passes SQLite's
    integrity check. A process crash only: the kernel's page cache survives it, so what was
    written and not synced counts as written; whether the checkpoint syncs as the store does,
    which a power loss would test, is checked by
    ``test_the_checkpointer_syncs_at_the_stores_level``."""
    db = tmp_path / "lash.db"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(db)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    lines = [json.loads(line) for line in child.stdout.splitlines()]
    (one,) = [line for line in lines if "pass" in line]
    assert one["pass"] == 1
    _, log, copied = one["result"]
    assert 0 < copied < log  # part of the WAL in the database file, the rest only in the WAL
    committed = [line["committed"] for line in lines if "committed" in line]
    assert committed[-1] >= 45 and committed == list(range(1, committed[-1] + 1))

    async def reopen() -> lash.store.SessionRecord | None:
        store = SQLiteStore(f"sqlite:///{db}")
        try:
            return await store.load("s", full=True)
        finally:
            await store.close()

    record = asyncio.run(reopen())
    assert record is not None
    # Every reported commit is there (a commit may have landed after its report was cut).
    assert record.revision >= committed[-1]
    assert record.turns == record.revision
    assert len(record.nodes) == 6 * record.revision
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("query", "level"), [("", 1), ("?synchronous=OFF", 0), ("?synchronous=FULL", 2)]
)
async def test_the_checkpointer_syncs_at_the_stores_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str, level: int
) -> None:
    """The checkpoint's syncs are its connection's: after a checkpoint ran, that connection's
    ``PRAGMA synchronous`` is the store's (NORMAL, 1, by default; OFF, 0). At FULL (2) the
    store writes nothing inline, so it runs no checkpoint of its own: none is made, and
    SQLite's automatic checkpoint runs on the store's connection, at its level."""
    monkeypatch.setattr(sqlite_module, "INLINE_CHECKPOINT", 4)
    store = SQLiteStore(f"sqlite:///{tmp_path / 'lash.db'}{query}")
    try:
        await store.open()
        await run_turns(store, "s", 4)
        main = store._conn
        assert main is not None

        async def pragma(name: str) -> int:  # of the store's connection
            (row,) = await main.execute_fetchall(f"PRAGMA {name}")
            return int(row[0])

        assert await pragma("synchronous") == level
        checkpointer = store._checkpointer
        if level == 2:
            assert checkpointer is None and store._checkpointing is None
            assert await pragma("wal_autocheckpoint") == 1000  # SQLite's default
            return
        assert checkpointer is not None and store._checkpointing is not None
        await asyncio.wrap_future(store._checkpointing)

        def pragmas() -> list[int]:  # on the checkpointer's thread
            conn = checkpointer._conn
            assert conn is not None  # opened by the checkpoint that ran
            return [
                int(conn.execute(f"PRAGMA {name}").fetchone()[0])
                for name in ("synchronous", "wal_autocheckpoint")
            ]

        asked = checkpointer._executor.submit(pragmas)
        assert await asyncio.wrap_future(asked) == [level, 0]
    finally:
        await store.close()


async def test_a_cancelled_close_closes_the_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``close()`` cancelled while it waits for the checkpoint's passes (a host's shutdown
    under a timeout) has closed the store's connection all the same when the cancellation
    returns; the checkpointer's connection closes after its passes, and its thread ends."""
    monkeypatch.setattr(sqlite_module, "INLINE_CHECKPOINT", 4)
    in_pass = threading.Event()
    release = threading.Event()

    def observe(phase: int, result: tuple[int, int, int]) -> None:
        in_pass.set()
        release.wait(30)  # a slow pass (a big copy and its fsync, a RESTART kept busy)

    monkeypatch.setattr(sqlite_module, "CHECKPOINT_OBSERVER", observe)
    before = set(threading.enumerate())
    store = SQLiteStore(f"sqlite:///{tmp_path / 'lash.db'}")
    try:
        await store.open()
        await run_turns(store, "s", 2)  # 4 inline writes: a checkpoint starts
        await asyncio.wait_for(asyncio.to_thread(in_pass.wait, 30), 30)
        main, checkpointer = store._conn, store._checkpointer
        assert main is not None and checkpointer is not None
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(store.close(), 0.1)
        assert main._connection is None, "the cancelled close() left the connection open"
        assert checkpointer._conn is not None  # its passes still run
    finally:
        release.set()
    (thread,) = [t for t in set(threading.enumerate()) - before if t.name.startswith("lash-sqlite")]
    thread.join(10)  # the checkpointer's thread: its passes, then the closing queued behind
    assert not thread.is_alive()
    assert checkpointer._conn is None
    assert not (tmp_path / "lash.db-wal").exists()  # the last connection checkpointed it


async def test_a_file_moved_away_is_not_replaced_by_the_checkpointer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The database file renamed while the store runs, before its first checkpoint (an
    operator's ``mv``): the checkpointer, opened by the path, creates no database there (an
    empty one would make SQLite delete the live WAL, by name, with every turn not yet
    checkpointed); its checkpoints fail, logged once on ``lash.sqlite``. The live WAL keeps
    every turn (SQLite does not checkpoint a moved file as it closes): the file moved back,
    nothing is lost."""
    monkeypatch.setattr(sqlite_module, "INLINE_CHECKPOINT", 20)
    db, moved = tmp_path / "lash.db", tmp_path / "moved.db"
    store = SQLiteStore(f"sqlite:///{db}")
    with caplog.at_level("WARNING", logger="lash.sqlite"):
        try:
            await store.open()
            await run_turns(store, "a", 5)  # 10 inline writes: no checkpoint yet
            assert store._checkpointer is None
            db.rename(moved)
            assert await run_turns(store, "b", 60) == 60  # 120 more: checkpoints due
            assert store._checkpointer is not None
        finally:
            await store.close()  # after the checkpoint under way
    assert not db.exists() and (tmp_path / "lash.db-wal").exists()
    moved.rename(db)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT sum(node_count) FROM nodes").fetchone()[0] == 6 * 65
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    failures = [r for r in caplog.records if r.name == "lash.sqlite"]
    assert len(failures) == 1, failures
    assert "WAL checkpoint" in failures[0].getMessage()
    assert str(db) in failures[0].getMessage()


LOOPS = """
import asyncio, json, os, sys, threading, time
import lash, lash.store
from lash_plugins_builtin import sqlite as sqlite_module
from lash_plugins_builtin.sqlite import SQLiteStore

db, how = sys.argv[1], sys.argv[2]
died = []
threading.excepthook = lambda args: died.append(repr(args.exc_value))
sqlite_module.INLINE_CHECKPOINT = 4
in_pass = threading.Event()
passes = []

def observe(phase, result):
    passes.append(phase)
    if not in_pass.is_set():
        in_pass.set()
        time.sleep(0.5)  # a slow pass: the first event loop ends meanwhile

sqlite_module.CHECKPOINT_OBSERVER = observe
store = SQLiteStore(f"sqlite:///{db}")
state = {"revision": 0}

async def turns(count):
    for _ in range(count):
        n = state["revision"]
        lease = await store.acquire_lease("s", "host", ttl=30)
        nodes = tuple(
            lash.UserMessage(id=f"n{n}-{i}", parent_id=None, frame_id="F", turn=n, text="x")
            for i in range(6)
        )
        delta = lash.store.CommitDelta(nodes=nodes, turns=1, release=True)
        state["revision"] = await store.commit(
            "s", lease=lease, expected_revision=n, delta=delta
        )
        await asyncio.sleep(0)  # a host's turn yields (the checkpoint's task, if any, starts)

async def first():
    await turns(2)  # 4 inline writes: the first checkpoint starts
    if how != "at-once":
        while not in_pass.is_set():  # its passes run on the checkpointer's thread
            await asyncio.sleep(0.001)

if how == "cancelled":  # asyncio.run: the loop's tasks cancelled, then the loop closed
    asyncio.run(first())
else:  # a loop closed without cancelling its tasks
    loop = asyncio.new_event_loop()
    loop.run_until_complete(first())
    loop.close()

async def second():
    for _ in range(200):  # the first loop's checkpoint ends (its thread goes on without it)
        if passes.count(2) or how == "at-once":
            break
        await asyncio.sleep(0.01)
    done = passes.count(2)
    await turns(6)  # 12 inline writes: checkpoints due
    for _ in range(2000):  # one runs to its end in this loop
        if passes.count(2) > done and (
            store._checkpointing is None or store._checkpointing.done()
        ):
            break
        await asyncio.sleep(0.01)
    await store.close()
    return passes.count(2) - done

print(json.dumps({"completed": asyncio.run(second()), "died": died}), flush=True)
"""


@pytest.mark.parametrize("how", ["cancelled", "abandoned", "at-once"])
def test_a_store_outlives_an_event_loop_that_ended_during_a_checkpoint(
    tmp_path: Path, how: str
) -> None:
    """A store used from two event loops (a core built outside a loop, ``lash.testing``'s
    cores, a CLI), the first ended while a checkpoint's passes ran on the checkpointer's thread
    (``asyncio.run``, which cancels its tasks, or a loop closed without that), or just after
    it started: in the next loop checkpoints run to their end again (the WAL stays bounded),
    ``close()`` returns, the WAL checkpointed whole, no thread died and no turn is lost. In a
    subprocess, with a timeout: a store that waits forever fails the test instead of hanging
    it."""
    db = tmp_path / "lash.db"
    try:
        child = subprocess.run(
            [sys.executable, "-c", LOOPS, str(db), how],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{how}: hung for 60 s; stderr: {exc.stderr!r}") from None
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout)
    assert result["completed"] >= 1 and result["died"] == [], (result, child.stderr)
    assert not (tmp_path / "lash.db-wal").exists()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT sum(node_count) FROM nodes").fetchone()[0] == 6 * 8
    finally:
        conn.close()
