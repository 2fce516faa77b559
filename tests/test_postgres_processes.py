"""Process records in the Postgres store: the migration that adds them to a database from
before, claims that skip rows another transaction holds, and several stores (pools) claiming
at once. (The contract itself is the conformance suite's, run in ``test_postgres_store.py``.)
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import asyncpg
import attrs
import pytest

import lash
import lash.store
from lash_plugins_builtin import _postgres_schema
from lash_plugins_builtin.postgres import PostgresStore

pytestmark = pytest.mark.anyio


def draft(n: int, **fields: Any) -> lash.store.ProcessDraft:
    return lash.store.ProcessDraft(id=f"job-{n}", kind="job", payload={"n": n}, **fields)


async def test_a_database_from_before_processes_is_migrated(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database without migration 2 (sessions, the mailbox; every other migration, which the
    code that writes it needs) gets migration 2 when opened: its session and input are intact,
    processes start in commits, and deleting the session (its function replaced by the
    migration) deletes its processes."""
    with monkeypatch.context() as old:
        without = tuple(m for m in _postgres_schema.MIGRATIONS if m.id != 2)
        old.setattr(_postgres_schema, "MIGRATIONS", without)
        old.setattr(_postgres_schema, "LATEST", without[-1].id)
        store = PostgresStore(postgres_url)
        try:
            lease = await store.acquire_lease("old", "host-a", ttl=30)
            await store.commit(
                "old", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(turns=1)
            )
            await store.release_lease(lease)
            await store.enqueue_input("old", lash.store.InputDraft("waiting"))
        finally:
            await store.close()
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT max(id) FROM lash_migrations") == _postgres_schema.LATEST
        assert await conn.fetchval("SELECT to_regclass('lash_processes')") is None
    finally:
        await conn.close()
    store = PostgresStore(postgres_url)
    try:
        info = await store.info()
        assert [(m["id"], m["name"]) for m in info["migrations"]] == [
            (1, "initial schema"),
            (2, "processes"),
            (3, "child sessions"),
            (4, "media blobs"),
            (5, "watchers"),
            (6, "fewer statements per turn"),
            (7, "session incarnations"),
        ]
        record = await store.load("old")
        assert record is not None and record.revision == 1
        assert [i.text for i in await store.list_inputs("old")] == ["waiting"]
        assert await store.runnable_sessions() == ["old"]
        lease = await store.acquire_lease("old", "host-a", ttl=30)
        await store.commit(
            "old",
            lease=lease,
            expected_revision=1,
            delta=lash.store.CommitDelta(
                turns=1, processes=(draft(1, session_id="old", key="k1"),), release=True
            ),
        )
        host = await store.start_process(draft(2))
        claimed = await store.claim_process("worker", ttl=30)
        assert claimed is not None and claimed.id == "job-1"
        types = [e.type for e in (await store.read_events("old")).events]
        assert types[-2:] == ["process_started", "process_running"]
        await store.delete("old")
        assert await store.get_process("job-1") is None
        assert await store.get_process(host.id) == host
        again = await store.start_process(draft(3, session_id="old", key="k1"))
        assert again.id == "job-3"  # the deleted process's key starts a new one
    finally:
        await store.close()


async def test_a_claim_skips_a_process_another_transaction_holds_locked(postgres_url: str) -> None:
    """``FOR UPDATE SKIP LOCKED``: while another transaction holds the oldest pending process's
    row, a claim takes the next one instead of waiting; once it lets go, the next claim takes
    it."""
    store = PostgresStore(postgres_url)
    try:
        for n in range(3):
            await store.start_process(draft(n))
        conn = await asyncpg.connect(postgres_url)
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM lash_processes WHERE id = 'job-0' FOR UPDATE")
                claimed = await asyncio.wait_for(store.claim_process("w", ttl=30), 5)
                assert claimed is not None and claimed.id == "job-1"
            again = await store.claim_process("w", ttl=30)
            assert again is not None and again.id == "job-0"
        finally:
            await conn.close()
    finally:
        await store.close()


async def test_three_stores_claiming_at_once_take_each_process_once(postgres_url: str) -> None:
    """Three stores (three pools), four claim loops each, 300 processes: each process is
    claimed and finished once, and every loop's finish is accepted."""
    setup = PostgresStore(postgres_url)
    try:
        for n in range(300):
            await setup.start_process(draft(n, session_id=f"s{n % 5}"))
    finally:
        await setup.close()
    stores = [PostgresStore(postgres_url, pool_size=4) for _ in range(3)]
    finished: collections.Counter[str] = collections.Counter()

    async def loop(store: PostgresStore, name: str) -> None:
        while (record := await store.claim_process(name, ttl=30, kinds=["job"])) is not None:
            await store.finish_process(record.id, record.token, status="succeeded", result=name)
            finished[record.id] += 1

    try:
        await asyncio.gather(
            *(loop(store, f"w{i}-{j}") for i, store in enumerate(stores) for j in range(4))
        )
        assert sorted(finished) == sorted(f"job-{n}" for n in range(300))
        assert set(finished.values()) == {1}
        records = await stores[0].list_processes(kind="job")
        assert {(r.status, r.attempts) for r in records} == {("succeeded", 1)}
        for sid in (f"s{i}" for i in range(5)):
            page = await stores[0].read_events(sid, limit=10_000)
            assert [e.seq for e in page.events] == list(range(1, 181))
    finally:
        for store in stores:
            await store.close()


# -- lock order: a process's row and its session's head row ---------------------------------
# Writes that log a process's event lock the session's head row; commits and deletes lock
# the head row first, then reach process rows (a start's insert meets a row of its key, a
# delete removes the session's processes). A process write that changed its row and then
# waited for the head row, held by such a writer waiting for that row, was a deadlock:
# Postgres aborted one of them after deadlock_timeout (a turn's commit, a delete). Each test
# lines the two writers up with a third transaction that holds them at the point where the
# old order met, then lets go: both must go through.


async def _lock_waiters(conn: asyncpg.Connection, count: int) -> None:
    """Return once ``count`` other backends of this database wait for a lock (``conn`` may be
    in a transaction: the statistics it read are cleared before each look).

    Counted in ``pg_locks`` rather than by ``pg_stat_activity``'s wait events: a lock is marked
    granted by the backend that releases it, before that one's commit returns, whereas the
    waiter clears its wait event only once it runs again (a count read right after a release
    would still include it)."""
    for _ in range(1000):
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        waiting = await conn.fetchval(
            "SELECT count(DISTINCT l.pid) FROM pg_locks AS l JOIN pg_stat_activity AS a "
            "ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database() "
            "AND l.pid <> pg_backend_pid()"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} backends never waited for a lock")


async def _session_with_history(store: PostgresStore, session_id: str) -> lash.store.Lease:
    """A session with one commit; its lease, released by that commit."""
    lease = await store.acquire_lease(session_id, "host", ttl=30)
    await store.commit(
        session_id,
        lease=lease,
        expected_revision=0,
        delta=lash.store.CommitDelta(turns=1, release=True),
    )
    return lease


async def test_a_commit_restarting_a_process_its_worker_is_finishing_does_not_deadlock(
    postgres_url: str,
) -> None:
    """A turn's commit starts a process again under its key (idempotent: it finds the one
    started before) while that process's worker records its finish: the commit holds the
    session's head row and meets the process's row; the finish holds the process's row and
    logs ``process_finished`` in the session. Both go through, and the key still names one
    process, the finished one."""
    store, worker = PostgresStore(postgres_url), PostgresStore(postgres_url)
    blocker = await asyncpg.connect(postgres_url)
    try:
        await _session_with_history(store, "s")
        await store.start_process(draft(1, session_id="s", key="nightly"))
        claimed = await worker.claim_process("worker", ttl=30)
        assert claimed is not None and claimed.id == "job-1"
        again = attrs.evolve(draft(1, session_id="s", key="nightly"), id="job-2")
        lease = await store.acquire_lease("s", "host", ttl=30)
        held = blocker.transaction()
        await held.start()
        # The commit takes the head row, then waits to write its plugin state.
        await blocker.execute("LOCK TABLE lash_plugin_states IN SHARE MODE")
        commit = asyncio.ensure_future(
            store.commit(
                "s",
                lease=lease,
                expected_revision=1,
                delta=lash.store.CommitDelta(
                    turns=2,
                    plugin_states={"jobs": {"asked": 2}},
                    processes=(again,),
                    release=True,
                ),
            )
        )
        await _lock_waiters(blocker, 1)
        finish = asyncio.ensure_future(
            worker.finish_process("job-1", claimed.token, status="succeeded", result=7)
        )
        await _lock_waiters(blocker, 2)
        await held.rollback()
        assert await asyncio.wait_for(commit, 10) == 2
        finished = await asyncio.wait_for(finish, 10)
        assert (finished.status, finished.result) == ("succeeded", 7)
        assert [(p.id, p.status) for p in await store.list_processes()] == [("job-1", "succeeded")]
    finally:
        await blocker.close()
        await store.close()
        await worker.close()


async def test_a_host_and_a_turn_starting_one_key_at_once_do_not_deadlock(
    postgres_url: str,
) -> None:
    """A host starts a process under a key while a turn of the same session starts it under
    the same key in its commit: the commit holds the session's head row and inserts the key;
    the host's start inserts it too and logs ``process_started`` in the session. Both go
    through with one process: the first to commit started it, the other returns it."""
    store, host = PostgresStore(postgres_url), PostgresStore(postgres_url)
    blocker = await asyncpg.connect(postgres_url)
    try:
        await _session_with_history(store, "s")
        lease = await store.acquire_lease("s", "host", ttl=30)
        held = blocker.transaction()
        await held.start()
        await blocker.execute("LOCK TABLE lash_plugin_states IN SHARE MODE")
        commit = asyncio.ensure_future(
            store.commit(
                "s",
                lease=lease,
                expected_revision=1,
                delta=lash.store.CommitDelta(
                    turns=2,
                    plugin_states={"jobs": {"asked": 1}},
                    processes=(draft(1, session_id="s", key="nightly"),),
                    release=True,
                ),
            )
        )
        await _lock_waiters(blocker, 1)
        again = attrs.evolve(draft(1, session_id="s", key="nightly"), id="job-2")
        start = asyncio.ensure_future(host.start_process(again))
        await _lock_waiters(blocker, 2)
        await held.rollback()
        assert await asyncio.wait_for(commit, 10) == 2
        started = await asyncio.wait_for(start, 10)
        assert started.id == "job-1"
        assert [p.id for p in await store.list_processes()] == ["job-1"]
        types = [e.type for e in (await store.read_events("s")).events]
        assert types.count("process_started") == 1
    finally:
        await blocker.close()
        await store.close()
        await host.close()


async def test_deleting_a_session_while_a_worker_finishes_its_process_does_not_deadlock(
    postgres_url: str,
) -> None:
    """A session is deleted while a worker records the finish of one of its processes: the
    delete holds the head row and removes the session's processes; the finish holds the
    process's row and logs ``process_finished`` in the session. Both go through: the finish
    first (it had the row), then the delete, which removes the finished process too."""
    store, worker = PostgresStore(postgres_url), PostgresStore(postgres_url)
    blocker = await asyncpg.connect(postgres_url)
    try:
        await _session_with_history(store, "s")
        await store.start_process(draft(1, session_id="s"))
        claimed = await worker.claim_process("worker", ttl=30)
        assert claimed is not None
        held = blocker.transaction()
        await held.start()
        # The finish waits for the process's row; the delete comes after it.
        await blocker.execute("SELECT 1 FROM lash_processes WHERE id = 'job-1' FOR UPDATE")
        finish = asyncio.ensure_future(
            worker.finish_process("job-1", claimed.token, status="succeeded", result=7)
        )
        await _lock_waiters(blocker, 1)
        delete = asyncio.ensure_future(store.delete("s"))
        await _lock_waiters(blocker, 2)
        await held.rollback()
        finished = await asyncio.wait_for(finish, 10)
        assert finished.status == "succeeded"
        await asyncio.wait_for(delete, 10)
        assert await store.load("s") is None
        assert await store.get_process("job-1") is None
    finally:
        await blocker.close()
        await store.close()
        await worker.close()


async def test_two_workers_settling_and_claiming_in_two_sessions_do_not_deadlock(
    postgres_url: str,
) -> None:
    """Two workers poll at once, each settling an expired owner-bound process and claiming a
    pending one, in sessions A and B the other way round: each poll logs an event in both
    sessions, so takes both head rows in one transaction. They take them in one order (by
    session id), so both go through: each settles its expired process (``abandoned``) and
    claims its pending one. (Taken in the order the rows came, one held A waiting for B while
    the other held B waiting for A, until Postgres aborted one with 'deadlock detected'.)

    Three transactions line them up: ``rows`` holds B's expired process and A's pending one,
    so that the first poll takes A's expired and B's pending; ``head_a`` and ``head_b`` hold
    the two head rows, let go of one at a time."""
    store, first, second = (PostgresStore(postgres_url) for _ in range(3))
    rows, head_a, head_b, watch = [await asyncpg.connect(postgres_url) for _ in range(4)]
    try:
        for n, session in ((1, "A"), (2, "B")):  # expired, once claimed and left
            await store.start_process(draft(n, session_id=session))
        claims = [await store.claim_process("gone", ttl=30) for _ in range(2)]
        for n, claimed in enumerate(claims, 1):  # expired now (and not settled by a claim)
            assert claimed is not None and claimed.id == f"job-{n}"
            await store.heartbeat_process(claimed.id, claimed.token, ttl=0)
        await store.start_process(draft(3, session_id="B"))  # pending, oldest first
        await store.start_process(draft(4, session_id="A"))
        held = [rows.transaction(), head_a.transaction(), head_b.transaction()]
        for transaction in held:
            await transaction.start()
        await rows.execute("SELECT 1 FROM lash_processes WHERE id IN ('job-2', 'job-4') FOR UPDATE")
        await head_a.execute("SELECT 1 FROM lash_sessions WHERE session_id = 'A' FOR UPDATE")
        await head_b.execute("SELECT 1 FROM lash_sessions WHERE session_id = 'B' FOR UPDATE")
        one = asyncio.ensure_future(first.poll_work("w1", ttl=30))
        await _lock_waiters(watch, 1)
        await held[0].rollback()  # job-2 and job-4 are the second poll's to take
        two = asyncio.ensure_future(second.poll_work("w2", ttl=30))
        await _lock_waiters(watch, 2)
        await held[1].rollback()  # A's head row
        await _lock_waiters(watch, 2)
        await held[2].rollback()  # B's head row
        polls = await asyncio.wait_for(asyncio.gather(one, two), 10)
        assert [p.process.id if p.process else None for p in polls] == ["job-3", "job-4"]
        statuses = {p.id: p.status for p in await store.list_processes()}
        assert statuses == {
            "job-1": "abandoned",
            "job-2": "abandoned",
            "job-3": "running",
            "job-4": "running",
        }
    finally:
        for conn in (rows, head_a, head_b, watch):
            await conn.close()
        for each in (store, first, second):
            await each.close()


@pytest.mark.parametrize("skew", [3600.0, -3600.0], ids=["host-ahead", "host-behind"])
async def test_the_notification_sweep_counts_time_by_the_database_clock(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, skew: float
) -> None:
    """A worker's sweep asks for the processes that finished, unnotified, over a lease TTL ago
    (``finished_before``: its ``time.time()`` less the TTL), and Postgres stamps
    ``finished_at`` by the database's clock. Compared as they were, a host whose clock ran an
    hour ahead took a process that finished a moment ago (its finisher may still be notifying
    it: ``process_finished`` twice), and one an hour behind left a dead finisher's process
    unnotified for that hour. The store reads ``finished_before`` as an age on its own clock.
    (The waits are lower bounds: load cannot make them pass.)"""
    store = PostgresStore(postgres_url)
    try:
        await store.start_process(draft(1))
        claimed = await store.claim_process("w", ttl=30)
        assert claimed is not None
        await store.finish_process(claimed.id, claimed.token, status="succeeded")
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + skew)

        recent = time.time() - 30  # finished over 30 s ago: not this one
        assert await store.unnotified_processes(finished_before=recent) == []
        polled = await store.poll_work("w", ttl=30, claim=False, finished_before=recent)
        assert polled.unnotified == ()

        await asyncio.sleep(0.3)
        earlier = time.time() - 0.2  # finished over 0.2 s ago: this one
        found = await store.unnotified_processes(finished_before=earlier)
        assert [p.id for p in found] == [claimed.id]
        polled = await store.poll_work("w", ttl=30, claim=False, finished_before=earlier)
        assert [p.id for p in polled.unnotified] == [claimed.id]
    finally:
        await store.close()
