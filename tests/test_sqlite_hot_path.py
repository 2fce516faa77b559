"""The ``sqlite://`` store's turn path: what runs on the event loop's thread, and what the store
keeps in memory between executions (real SQLite files)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import lash
import lash.store
from lash_plugins_builtin import sqlite as sqlite_module
from lash_plugins_builtin.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(f"sqlite:///{path}")
    try:
        await store.open()
        yield store
    finally:
        await store.close()


def user_node(n: int, frame: str = "F") -> lash.UserMessage:
    return lash.UserMessage(id=f"n{n}", parent_id=None, frame_id=frame, turn=n, text=f"hi {n}")


async def test_a_turns_point_reads_run_on_the_event_loops_thread(tmp_path: Path) -> None:
    """The cancel request of a running turn and a committed turn's record are read without a
    round trip to the worker thread (its connection runs no statement), and read what another
    store on the file wrote."""
    db = tmp_path / "lash.db"
    async with opened(db) as store, opened(db) as other:
        lease = await store.acquire_lease("s", "host", ttl=30, turn="t1")
        receipt = await other.request_cancel("s", "t1", origin="watcher", reason="enough")
        assert receipt.status == "requested"
        conn = store._conn
        assert conn is not None
        on_worker = 0

        def count() -> int:
            nonlocal on_worker
            on_worker += 1
            return 0

        await conn.set_progress_handler(count, 1)
        request = await store.cancel_request("s", "t1")
        assert request is not None
        assert (request.origin, request.reason) == ("watcher", "enough")
        assert await store.cancel_request("s", "t2") is None
        assert await store.turn_record("s", "t1") is None
        assert on_worker == 0, "a point read went to the worker thread"
        turn = lash.store.TurnRecord("s", "t1", 1, "completed", revision=1)
        delta = lash.store.CommitDelta(nodes=(user_node(1),), turns=1, turn=turn, release=True)
        assert await store.commit("s", lease=lease, expected_revision=0, delta=delta) == 1
        record = await store.turn_record("s", "t1")
        assert record is not None and (record.turn_id, record.outcome) == ("t1", "completed")
        assert on_worker == 0
        await conn.set_progress_handler(None, 1)


async def test_the_head_is_kept_while_the_lease_is_held_and_commits_without_reading_it(
    tmp_path: Path,
) -> None:
    """Acquiring a lease reads the head in its transaction, so the execution's first commit
    writes at once (its only read is the guard, which checks the head and the lease, as the
    commit statement's trigger does); releasing the lease (by the commit or by release_lease)
    forgets it: a session between executions costs the store no memory."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        revision = 0
        for n in range(3):
            lease = await store.acquire_lease("s", "host", ttl=30)
            assert set(store._heads) == {"s"}
            direct = store._direct()
            assert direct is not None
            statements: list[str] = []
            direct.set_trace_callback(statements.append)
            delta = lash.store.CommitDelta(nodes=(user_node(n),), turns=1, release=n != 1)
            revision = await store.commit("s", lease=lease, expected_revision=revision, delta=delta)
            direct.set_trace_callback(None)
            assert revision == n + 1
            reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
            assert len(reads) == 1 and reads[0].startswith("SELECT event_seq, EXISTS")
            assert "FROM sessions WHERE" in reads[0]
            # No cancel request of the turn to drop (the guard looked): no DELETE looks again.
            assert not any("cancel_requests" in s for s in statements if s not in reads)
            assert "AND revision IS" in reads[0] and "AND lease_token =" in reads[0]
            assert any(s.startswith("INSERT INTO nodes") for s in statements), statements
            if n == 1:  # not released by its commit: kept until release_lease
                assert set(store._heads) == {"s"}
                await store.release_lease(lease)
            assert store._heads == {}
        record = await store.load("s")
        assert record is not None
        assert (record.revision, [node.id for node in record.nodes]) == (3, ["n0", "n1", "n2"])


async def test_a_head_changed_while_the_lease_was_held_refuses_the_commit(tmp_path: Path) -> None:
    """The head read with the lease is only a starting point: if the stored head moved (here a
    commit by another store that took the lease over), the guard refuses the commit."""
    db = tmp_path / "lash.db"
    async with opened(db) as store, opened(db) as other:
        lease = await store.acquire_lease("s", "first", ttl=30)
        taken = await other.acquire_lease("s", "second", ttl=30, take_over=lease)
        delta = lash.store.CommitDelta(nodes=(user_node(1),), turns=1)
        assert await other.commit("s", lease=taken, expected_revision=0, delta=delta) == 1
        try:
            await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        except lash.LeaseLost:
            pass
        else:
            raise AssertionError("a commit under a lease taken over was accepted")
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT sum(node_count) FROM nodes").fetchone() == (1,)


async def test_a_claim_that_finds_nothing_takes_no_write_lock(tmp_path: Path) -> None:
    """A claim with nothing to take (a running turn's checkpoint, most of the time) is a read:
    it answers while another connection holds the file's write lock, still checks the lease,
    and a claim that finds input takes it as before."""
    db = tmp_path / "lash.db"
    async with opened(db) as store, opened(db) as other:
        lease = await store.acquire_lease("s", "host", ttl=30)
        await store.enqueue_input("s", lash.store.InputDraft("later", ingress="next_turn"))
        blocker = sqlite3.connect(db, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # the write lock, held
            assert await store.claim_inputs(lease, limit=5, ingress="active_turn") == []
            assert await store.claim_inputs(lease, limit=0) == []
            blocker.execute("ROLLBACK")
            taken = await other.acquire_lease("s", "other", ttl=30, take_over=lease)
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(lash.LeaseLost):
                await store.claim_inputs(lease, limit=5, ingress="active_turn")
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()
        (claimed,) = await other.claim_inputs(taken, limit=5)
        assert (claimed.text, claimed.state) == ("later", "claimed")


async def test_the_wal_starts_over_after_each_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every INLINE_CHECKPOINT inline writes the WAL is checkpointed, its last pass with no
    write meanwhile, so the next write starts it over: over 60 checkpoints' worth of turns the
    WAL file stays as large as a few checkpoints' worth of frames, and the database file alone
    (without its WAL) holds what was checkpointed."""
    monkeypatch.setattr(sqlite_module, "INLINE_CHECKPOINT", 10)
    db = tmp_path / "lash.db"
    wal = tmp_path / "lash.db-wal"
    sizes = []
    async with opened(db) as store:
        revision = 0
        for n in range(300):  # two inline writes a turn: lease and commit
            lease = await store.acquire_lease("s", "host", ttl=30)
            nodes = tuple(user_node(n * 4 + i) for i in range(4))
            delta = lash.store.CommitDelta(nodes=nodes, turns=1, release=True)
            revision = await store.commit("s", lease=lease, expected_revision=revision, delta=delta)
            if store._checkpointing is not None:
                # Awaited here, so the bound below does not depend on how fast the machine
                # copies (test_sqlite_checkpoint.py runs turns during checkpoints).
                await asyncio.wrap_future(store._checkpointing)
            if n % 50 == 49:
                sizes.append(wal.stat().st_size)
        if store._checkpointing is not None:
            await asyncio.wrap_future(store._checkpointing)
        copy = tmp_path / "copy.db"
        shutil.copyfile(db, copy)
        conn = sqlite3.connect(copy)
        try:
            assert conn.execute("SELECT sum(node_count) FROM nodes").fetchone()[0] >= 1100
        finally:
            conn.close()
    frame = 4096 + 24
    assert max(sizes) < 200 * frame, sizes  # 10 writes of ~4 pages, many times over
    assert sizes[-1] == sizes[1], sizes  # not growing


async def test_a_release_of_the_store_lock_lets_every_waiter_run_in_the_next_pass() -> None:
    """The store's lock wakes every waiter when it is let go, not the first one only: an
    operation that holds it across awaits (on the worker thread, waiting for the file's write
    lock) keeps the others waiting, and those that then run without awaiting all run in the
    next pass of the event loop, in the order they came (asyncio's lock would run one a pass,
    and queue the writes of every session behind them)."""
    lock = sqlite_module._StoreLock()
    done: list[int] = []

    async def operation(i: int) -> None:
        async with lock:
            done.append(i)  # nothing awaited: let go in the same step

    await lock.__aenter__()
    tasks = [asyncio.create_task(operation(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert done == [] and lock.locked()  # all of them waiting
    await lock.__aexit__(None, None, None)
    await asyncio.sleep(0)  # one pass
    assert done == [0, 1, 2, 3, 4]
    assert not lock.locked()
    await asyncio.gather(*tasks)


async def test_the_store_lock_keeps_one_operation_at_a_time_across_awaits() -> None:
    """Operations that await while holding the store's lock never overlap, and a waiter
    cancelled before its turn neither takes the lock nor keeps the others from it."""
    lock = sqlite_module._StoreLock()
    log: list[tuple[str, int]] = []

    async def operation(i: int) -> None:
        async with lock:
            log.append(("in", i))
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            log.append(("out", i))

    tasks = [asyncio.create_task(operation(i)) for i in range(6)]
    await asyncio.sleep(0)
    tasks[3].cancel()  # waiting for the lock (0 holds it)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 3] == [None] * 5
    assert log[0::2] == [("in", i) for i in (0, 1, 2, 4, 5)], log
    assert log[1::2] == [("out", i) for i in (0, 1, 2, 4, 5)], log
    assert not lock.locked()
    async with lock:  # free again
        assert lock.locked()


async def test_a_waiter_takes_the_store_lock_before_anyone_coming_after_it() -> None:
    """Woken waiters take the store's lock in the order they came, before an operation that
    comes after the release but before they run (a page's read of a session, sent after a turn
    started, waited behind the turn's commit queued before it: it reads the turn committed)."""
    lock = sqlite_module._StoreLock()
    order: list[str] = []

    async def waiter() -> None:
        async with lock:
            order.append("waiter")

    await lock.__aenter__()
    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)  # waiting
    await lock.__aexit__(None, None, None)
    async with lock:  # comes after the release, before the waiter has run
        order.append("late")
    await task
    assert order == ["waiter", "late"]
