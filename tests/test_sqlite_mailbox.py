"""The ``sqlite://`` store's mailbox on real files: input queued and claimed by several processes
at once, a claimer killed with SIGKILL, the lease rules in SQL against lash.store.take_lease,
the event log's retention, input text stored exactly, lash 0.1's queued input migrated, and
random mailbox operations against the reference MemoryStore."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sqlite_store import legacy_database, opened, query

import lash
import lash.store
from lash_plugins_builtin.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

#: Seconds a subprocess test may take at most before it counts as hung.
DEADLINE = 120.0

# -- processes sharing one file ------------------------------------------------------------------

#: A process on the store: ``enqueue`` queues the inputs named on its command line (JSON:
#: ``[[text, key or null], ...]``) and prints each input it got back; ``execute`` runs
#: executions as a kernel draining a session does (acquire the lease, claim one input, commit
#: the turn that consumed it, releasing the lease) until ``STOP`` exists and nothing is pending,
#: printing each input it claimed and each commit; with ``--hold`` it claims one input, says so,
#: and waits (to be killed) instead of committing.
WORKER = """
import asyncio, json, os, sys, time
import lash, lash.store
from lash_plugins_builtin.sqlite import SQLiteStore

role, url, sid, arg = sys.argv[1:5]

def say(**what):
    print(json.dumps(what), flush=True)

async def enqueue(store):
    for text, key in json.loads(arg):
        got = await store.enqueue_input(sid, lash.store.InputDraft(text, key=key))
        say(event="queued", id=got.id, text=got.text, key=got.key)

async def execute(store, hold, ttl):
    owner = f"executor-{os.getpid()}"
    while True:
        try:
            lease = await store.acquire_lease(sid, owner, ttl=ttl, turn=None)
        except lash.SessionBusy:
            await asyncio.sleep(0.002)
            continue
        claimed = await store.claim_inputs(lease, limit=1)
        if not claimed:
            await store.release_lease(lease)
            if os.path.exists(arg) and lease.pending_inputs == 0:
                return
            await asyncio.sleep(0.002)
            continue
        (item,) = claimed
        say(event="claimed", id=item.id, token=lease.token)
        if hold:
            await asyncio.sleep(3600)
        turn = f"turn-{item.id}"
        revision = await store.commit(
            sid,
            lease=lease,
            expected_revision=lease.revision,
            delta=lash.store.CommitDelta(
                turns=1,
                claimed=(item.id,),
                turn=lash.store.TurnRecord(sid, turn, lease.revision + 1, "completed", 0),
                events=(lash.store.EventDraft("turn_committed", {"input": item.id}),),
                release=True,
            ),
        )
        say(event="committed", id=item.id, revision=revision)

async def main():
    store = SQLiteStore(url, busy_timeout=60000)
    try:
        say(event="ready")
        sys.stdin.readline()  # GO
        if role == "enqueue":
            await enqueue(store)
        else:
            await execute(store, role == "hold", float(os.environ.get("LEASE_TTL", "30")))
        say(event="done")
    finally:
        await store.close()

asyncio.run(main())
"""


class Worker:
    """One worker process (:data:`WORKER`): started, told to go, read line by line."""

    def __init__(self, role: str, db: Path, sid: str, arg: str, ttl: float = 30.0) -> None:
        env = {**os.environ, "LEASE_TTL": str(ttl)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, role, f"sqlite:///{db}", sid, arg],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[dict[str, Any]] = []
        assert self.read()["event"] == "ready"

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("GO\n")
        self.process.stdin.flush()

    def read(self) -> dict[str, Any]:
        """The next line it printed (blocking: the test's deadline bounds the wait)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"worker exited ({self.process.wait()}) after {self.lines}")
        message: dict[str, Any] = json.loads(line)
        self.lines.append(message)
        return message

    def until(self, event: str) -> dict[str, Any]:
        while True:
            message = self.read()
            if message["event"] == event:
                return message

    def finish(self) -> list[dict[str, Any]]:
        """Everything it printed, once it exited with status 0."""
        while self.lines[-1]["event"] != "done":
            self.read()
        assert self.process.wait(timeout=DEADLINE) == 0
        return self.lines

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=DEADLINE)


@contextlib.contextmanager
def cleanup(workers: list[Worker]) -> Iterator[None]:
    try:
        yield
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.kill()
            for stream in (worker.process.stdin, worker.process.stdout):
                if stream is not None:
                    stream.close()


def completed_inputs(db: Path, sid: str) -> list[tuple[str, str, str | None]]:
    return query(
        db, "SELECT id, state, turn_id FROM inputs WHERE session_id = ? ORDER BY seq", (sid,)
    )


def test_eight_processes_enqueue_while_two_execute(tmp_path: Path) -> None:
    """8 processes queue input (keyed, unkeyed, and keys every one of them sends with the same
    text) while 2 processes claim and commit it one input per execution: every input is queued
    once per key, completed exactly once, in a turn of its own, and none is lost."""
    db = tmp_path / "lash.db"
    stop = tmp_path / "STOP"
    sid = "mailbox"
    shared = [[f"shared {n}", f"shared-{n}"] for n in range(5)]
    batches = [
        [[f"w{w} keyed {n}", f"w{w}-{n}"] for n in range(10)]
        + [[f"w{w} plain {n}", None] for n in range(5)]
        + shared[w % 5 :]
        + shared[: w % 5]
        for w in range(8)
    ]
    enqueuers = [Worker("enqueue", db, sid, json.dumps(batch)) for batch in batches]
    executors = [Worker("execute", db, sid, str(stop)) for _ in range(2)]
    started = time.monotonic()
    with cleanup(enqueuers + executors):
        for worker in executors + enqueuers:
            worker.go()
        queued = [m for w in enqueuers for m in w.finish() if m["event"] == "queued"]
        stop.touch()
        ran = [m for w in executors for m in w.finish()]
    assert time.monotonic() - started < DEADLINE
    assert len(queued) == 8 * 20
    by_key: dict[str, set[str]] = {}
    for message in queued:
        if message["key"] is not None:
            by_key.setdefault(message["key"], set()).add(message["id"])
    assert all(len(ids) == 1 for ids in by_key.values()), by_key  # one input per key
    expected = {m["id"] for m in queued}
    assert len(expected) == 8 * 15 + 5
    committed = [m["id"] for m in ran if m["event"] == "committed"]
    assert sorted(committed) == sorted(expected)  # each exactly once, none lost
    assert {m["id"] for m in ran if m["event"] == "claimed"} == expected
    rows = completed_inputs(db, sid)
    assert sorted(r[0] for r in rows) == sorted(expected)
    assert all(state == "completed" and turn == f"turn-{i}" for i, state, turn in rows)
    assert query(db, "SELECT COUNT(*), MAX(revision) FROM turn_records") == [
        (len(expected), len(expected))
    ]
    assert query(db, "SELECT revision, turns FROM sessions") == [(len(expected),) * 2]
    # The log holds every queued, claimed and committed event, numbered without gaps.
    seqs = [s for (s,) in query(db, "SELECT seq FROM events ORDER BY seq")]
    assert seqs == list(range(1, 3 * len(expected) + 1))


def test_a_killed_executor_s_claim_returns_to_pending_and_another_completes_it(
    tmp_path: Path,
) -> None:
    """An executor SIGKILLed holding a claim (and the lease) leaves the input claimed while its
    lease lives, pending once it has expired (as another process reads it); another executor
    then completes it, and each input is completed exactly once."""
    db = tmp_path / "lash.db"
    stop = tmp_path / "STOP"
    sid = "crashed"
    ttl = 2.0

    async def setup() -> list[str]:
        async with opened(db) as store:
            return [
                (await store.enqueue_input(sid, lash.store.InputDraft(f"input {n}"))).id
                for n in range(4)
            ]

    ids = asyncio.run(setup())
    holder = Worker("hold", db, sid, str(stop), ttl=ttl)
    workers = [holder]
    with cleanup(workers):
        holder.go()
        held = holder.until("claimed")
        holder.kill()
        killed_at = time.time()
        assert held["id"] == ids[0]
        ((expires_at,),) = query(db, "SELECT lease_expires_at FROM sessions")

        async def states() -> dict[str, str]:
            async with opened(db) as store:
                return {i.id: i.state for i in await store.list_inputs(sid)}

        # Read within the lease's TTL (it was taken just before the claim was printed).
        seen = asyncio.run(states())
        assert time.time() - killed_at < ttl, "the machine is too slow for this TTL"
        assert seen == {ids[0]: "claimed", **{i: "pending" for i in ids[1:]}}
        # Once the lease has expired (nobody renews it), the claim is gone: pending again.
        time.sleep(max(0.0, expires_at - time.time()) + 0.05)
        assert asyncio.run(states()) == dict.fromkeys(ids, "pending")
        stop.touch()
        heir = Worker("execute", db, sid, str(stop))
        workers.append(heir)
        heir.go()
        lines = heir.finish()
    committed = [m["id"] for m in lines if m["event"] == "committed"]
    assert committed == ids  # oldest first, the killed executor's input included
    rows = completed_inputs(db, sid)
    assert rows == [(i, "completed", f"turn-{i}") for i in ids]
    # Its claims were under leases that came after the killed one (fencing tokens above it).
    assert all(m["token"] > held["token"] for m in lines if m["event"] == "claimed")


def test_an_executor_killed_at_a_random_moment_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """An executor killed at a random moment of a drain (between or inside its statements),
    while another process queues more input: once a second executor has drained the session,
    every input was completed exactly once."""
    db = tmp_path / "lash.db"
    stop = tmp_path / "STOP"
    sid = "random-kill"
    first = json.dumps([[f"early {n}", None] for n in range(30)])
    late = json.dumps([[f"late {n}", f"late-{n}"] for n in range(30)])
    victim = Worker("execute", db, sid, str(stop), ttl=1.0)
    producer = Worker("enqueue", db, sid, late)
    seeder = Worker("enqueue", db, sid, first)
    workers = [victim, producer, seeder]
    with cleanup(workers):
        seeder.go()
        seeded = [m for m in seeder.finish() if m["event"] == "queued"]
        victim.go()
        producer.go()
        for _ in range(3):
            victim.until("committed")
        time.sleep(int.from_bytes(os.urandom(1)) / 255 * 0.01)  # a random moment after it
        victim.kill()
        queued = seeded + [m for m in producer.finish() if m["event"] == "queued"]
        stop.touch()
        heir = Worker("execute", db, sid, str(stop))
        workers.append(heir)
        heir.go()
        heir.finish()
    expected = sorted(m["id"] for m in queued)
    committed = [m["id"] for w in (victim, heir) for m in w.lines if m["event"] == "committed"]
    rows = completed_inputs(db, sid)
    assert sorted(r[0] for r in rows) == expected
    assert all(state == "completed" for _, state, _ in rows)
    # Each input's turn committed once: a commit the victim did not report (killed after it
    # reached the file) is in the file, never repeated by the heir.
    assert len(set(committed)) == len(committed)
    assert query(db, "SELECT COUNT(*) FROM turn_records") == [(len(expected),)]
    assert query(db, "SELECT revision FROM sessions") == [(len(expected),)]


# -- the lease rules in SQL -------------------------------------------------------------------

LEASE_CASES = st.tuples(
    st.none()
    | st.tuples(
        st.sampled_from(["A", "B"]),
        st.integers(1, 5),
        st.sampled_from(["live", "expired", "released"]),
    ),
    st.sampled_from(["A", "B", "C"]),
    st.none() | st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(0, 6)),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(cases=st.lists(LEASE_CASES, min_size=1, max_size=12))
async def test_acquire_follows_take_lease_exactly(
    tmp_path: Path, cases: list[tuple[Any, str, Any]]
) -> None:
    """For any stored lease (none, live, expired, released; any owner and token), any owner and
    any ``take_over``, acquire_lease (take_lease in the lease trigger's SQL) gives what
    lash.store.take_lease gives: the same owner and token, or SessionBusy naming the holder."""
    db = tmp_path / f"lease-{next(_examples)}.db"
    async with opened(db) as store:
        for n, (current, owner, take_over) in enumerate(cases):
            sid = f"s{n}"
            now = time.time()
            stored: lash.store.Lease | None = None
            if current is not None:
                holder, token, status = current
                expires_at = {"live": now + 1000, "expired": now - 1000, "released": 0.0}[status]
                stored = lash.store.Lease(sid, holder, token, expires_at)
                await store.release_lease(await store.acquire_lease(sid, "setup", ttl=1))
                conn = store._conn
                assert conn is not None
                await conn.execute(
                    "UPDATE sessions SET lease_owner = ?, lease_token = ?, lease_expires_at = ? "
                    "WHERE session_id = ?",
                    (holder, token, expires_at, sid),
                )
            presented = None
            if take_over is not None:
                presented = lash.store.Lease(sid, take_over[0], take_over[1], now + 1000)
            try:
                expected: Any = lash.store.take_lease(stored, sid, owner, 30, take_over=presented)
                expected = (expected.owner, expected.token)
            except lash.SessionBusy as busy:
                expected = ("busy", busy.owner, busy.token)
            try:
                got: Any = await store.acquire_lease(sid, owner, ttl=30, take_over=presented)
                got = (got.owner, got.token)
            except lash.SessionBusy as busy:
                got = ("busy", busy.owner, busy.token)
            assert got == expected, (current, owner, take_over)


# -- the event log ------------------------------------------------------------------------------


async def test_event_log_keeps_the_newest_events_and_trims_in_batches(tmp_path: Path) -> None:
    """With events_kept=20, reads show the newest 20 events whatever is stored; the file keeps
    them and the few written since the last trim: trimmed when the count crosses a multiple of
    a batch (events_kept // 10 = 2 here), not on each write. Sequence numbers go on without a
    gap."""
    db = tmp_path / "lash.db"
    async with opened(db, events_kept=20) as store:
        for n in range(57):
            await store.enqueue_input("s", lash.store.InputDraft(f"input {n}"))
            last = n + 1
            stored = query(db, "SELECT MIN(seq), MAX(seq), COUNT(*) FROM events")[0]
            count = last if last <= 20 else 20 + last % 2
            assert stored == (last - count + 1, last, count), stored
        page = await store.read_events("s")
        later = await store.read_events("s", after=50, limit=3)
        old = await store.read_events("s", after=3)
    assert (page.first, page.last) == (38, 57)
    assert [e.seq for e in page.events] == list(range(38, 58))
    assert [e.data["input"]["text"] for e in page.events][:2] == ["input 37", "input 38"]
    assert [e.seq for e in later.events] == [51, 52, 53]
    assert [e.seq for e in old.events] == list(range(38, 58))  # a cursor behind the window


async def test_event_log_drops_events_older_than_the_max_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events older than events_max_age go with the next write (by the store's clock), however
    few the session has; younger ones stay."""
    db = tmp_path / "lash.db"
    clock = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    async with opened(db, events_max_age=60) as store:
        for n in range(3):
            await store.enqueue_input("s", lash.store.InputDraft(f"old {n}"))
        clock[0] += 30
        await store.enqueue_input("s", lash.store.InputDraft("younger"))
        assert [e.seq for e in (await store.read_events("s")).events] == [1, 2, 3, 4]
        clock[0] += 45  # the first three are 75 s old, the fourth 45 s
        lease = await store.acquire_lease("s", "w", ttl=30, events=[lash.store.EventDraft("x")])
        page = await store.read_events("s")
        assert [e.seq for e in page.events] == [4, 5] and (page.first, page.last) == (4, 5)
        clock[0] += 61  # all of them: the log is empty, its numbering goes on
        await store.commit(
            "s",
            lease=lease,
            expected_revision=0,
            delta=lash.store.CommitDelta(turns=1, events=(lash.store.EventDraft("y"),)),
        )
        page = await store.read_events("s")
    assert [(e.seq, e.type) for e in page.events] == [(6, "y")]
    assert (page.first, page.last) == (6, 6)
    assert query(db, "SELECT seq FROM events") == [(6,)]


@pytest.mark.parametrize(
    ("query_string", "expected"),
    [
        ("events_kept=5&events_max_age=3600", (5, 3600.0)),
        ("events_max_age=0.5", (10_000, 0.5)),
        ("", (10_000, 7 * 24 * 3600.0)),
    ],
)
def test_url_sets_the_event_log_retention(query_string: str, expected: tuple[int, float]) -> None:
    """``events_kept`` and ``events_max_age`` in the URL set the replay window (defaults:
    10,000 events, 7 days)."""
    settings_ = SQLiteStore(f"sqlite:///x.db?{query_string}").settings
    assert (settings_.events_kept, settings_.events_max_age) == expected


@pytest.mark.parametrize(
    ("query_string", "message"),
    [
        ("events_kept=0", "events_kept='0' is not a number of events of at least 1"),
        ("events_kept=many", "events_kept='many' is not a number of events"),
        ("events_max_age=-1", "events_max_age='-1' is not a number of seconds above 0"),
        ("events_max_age=inf", "events_max_age='inf' is not a number of seconds above 0"),
    ],
)
def test_bad_event_log_retention_is_a_config_error(query_string: str, message: str) -> None:
    """A retention that is not a positive number is refused, naming the parameter."""
    with pytest.raises(lash.ConfigError) as refused:
        SQLiteStore(f"sqlite:///x.db?{query_string}")
    assert message in str(refused.value) and "bad sqlite URL" in str(refused.value)


# -- input stored exactly -------------------------------------------------------------------------

#: Text SQLite's JSON functions would cut (NUL) or that SQLite text cannot hold (a lone
#: surrogate, as surrogateescape keeps undecodable bytes).
ODD_TEXTS = ["nul \x00 inside", "lone \udc80 surrogate", "emoji 😀 and é", ""]


async def test_input_text_keys_and_items_round_trip_exactly(tmp_path: Path) -> None:
    """Input text, keys and sources with NUL characters or lone surrogates, and items, come
    back exactly (queued directly or by a commit), and a key still finds its input."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        queued = []
        for n, text in enumerate(ODD_TEXTS):
            draft = lash.store.InputDraft(
                text, items=({"k": text, "n": [n]},), key=f"key {text}", source=text
            )
            queued.append(await store.enqueue_input("s", draft))
            again = await store.enqueue_input("s", draft)
            assert again.id == queued[-1].id
        lease = await store.acquire_lease("s", "w", ttl=30)
        drafts = tuple(lash.store.InputDraft(f"by commit {t}", key=f"c {t}") for t in ODD_TEXTS)
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(enqueue=drafts)
        )
        listed = await store.list_inputs("s")
        with pytest.raises(lash.InputConflict) as conflict:
            await store.enqueue_input(
                "s", lash.store.InputDraft("other", key=f"key {ODD_TEXTS[0]}")
            )
        events = (await store.read_events("s")).events
    assert conflict.value.existing_id == queued[0].id
    assert [(i.text, i.key, i.source) for i in listed[: len(ODD_TEXTS)]] == [
        (t, f"key {t}", t) for t in ODD_TEXTS
    ]
    assert [i.items for i in listed[: len(ODD_TEXTS)]] == [
        ({"k": t, "n": [n]},) for n, t in enumerate(ODD_TEXTS)
    ]
    assert [i.text for i in listed[len(ODD_TEXTS) :]] == [d.text for d in drafts]
    # The events carry the inputs as they were queued, with the seq the store gave them.
    assert [(e.data["input"]["text"], e.data["input"]["seq"]) for e in events] == [
        (i.text, i.seq) for i in listed
    ]


# -- lash 0.1's queued input ----------------------------------------------------------------------


async def test_lash_0_1_queued_input_becomes_pending_input(tmp_path: Path) -> None:
    """A lash 0.1 session with input queued on its head (a pending blob) opens with that input
    pending in its mailbox, oldest first, from source "lash 0.1", logged as queued; the head's
    pending and protocol-options hashes are cleared and their blobs dropped, nothing else."""
    db = tmp_path / "lash.db"
    texts = ["first queued", "second ✓", "nul \x00 kept"]
    legacy_database(db, pending=texts)
    blobs_before = {h for (h,) in query(db, "SELECT hash FROM blobs")}
    (pending_hash, options_hash, updated_at) = query(
        db, "SELECT pending_hash, protocol_options_hash, updated_at FROM sessions"
    )[0]
    async with opened(db) as store:
        inputs = await store.list_inputs("old-1")
        page = await store.read_events("old-1")
        lease = await store.acquire_lease("old-1", "w", ttl=30)
        record = await store.load("old-1")
    assert [(i.seq, i.text, i.state, i.ingress, i.source, i.key) for i in inputs] == [
        (n, text, "pending", "next_turn", "lash 0.1", None) for n, text in enumerate(texts, 1)
    ]
    assert all(i.created_at == updated_at for i in inputs)
    assert [(e.seq, e.type, e.data["input"]["id"]) for e in page.events] == [
        (i.seq, "input_queued", i.id) for i in inputs
    ]
    assert (lease.pending_inputs, lease.revision) == (3, 4)
    assert record is not None and record.event_seq == 3 and record.revision == 4
    assert query(db, "SELECT pending_hash, protocol_options_hash FROM sessions") == [(None, None)]
    assert {h for (h,) in query(db, "SELECT hash FROM blobs")} == blobs_before - {
        pending_hash,
        options_hash,
    }


# -- random mailbox operations against the reference store ----------------------------------------

_examples = itertools.count()

mailbox_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("enqueue"),
            st.sampled_from(["a", "b", "c"]),
            st.none() | st.sampled_from(["k1", "k2"]),
            st.sampled_from(["next_turn", "active_turn"]),
        ),
        st.tuples(st.just("acquire"), st.sampled_from(["w1", "w2"]), st.booleans()),
        st.tuples(st.just("claim"), st.integers(0, 3), st.none() | st.just("active_turn")),
        st.tuples(st.just("cancel"), st.integers(0, 6), st.booleans(), st.booleans()),
        st.tuples(st.just("commit"), st.booleans(), st.booleans(), st.booleans()),
        st.tuples(st.just("release")),
        st.tuples(st.just("command"), st.sampled_from(["x", "y"]), st.sampled_from(["k1", "k2"])),
    ),
    min_size=1,
    max_size=14,
)


def comparable(value: Any, ids: dict[str, str]) -> Any:
    """``value`` with the store's own ids, times and the like replaced by what both stores
    must agree on (ids by the order they were handed out)."""
    if isinstance(value, lash.store.PendingInput):
        settled = value.settled_at is not None
        value = attrs.evolve(value, created_at=0.0, settled_at=None)
        return (ids.setdefault(value.id, f"#{len(ids)}"), attrs.evolve(value, id=""), settled)
    if isinstance(value, lash.store.InputCancellation):
        found = comparable(value.input, ids)  # first: it may number the target's input
        return (ids.get(value.target, value.target), value.outcome, found)
    if isinstance(value, lash.store.QueuedCommand):
        settled = value.applied_at is not None
        value = attrs.evolve(value, created_at=0.0, applied_at=None)
        return (ids.setdefault(value.id, f"#{len(ids)}"), attrs.evolve(value, id=""), settled)
    if isinstance(value, lash.store.Lease):
        return attrs.evolve(value, expires_at=0.0)
    if isinstance(value, list | tuple):
        return [comparable(v, ids) for v in value]
    return value


@attrs.define
class Driver:
    """One backend of the random-operations test, with what the test holds for it."""

    store: Any
    ids: dict[str, str] = attrs.field(factory=dict)
    lease: lash.store.Lease | None = None
    claimed: list[str] = attrs.field(factory=list)
    revision: int = 0

    async def run(self, op: tuple[Any, ...], turn_id: str) -> Any:
        """Apply ``op`` (see :data:`mailbox_ops`); the answer, made comparable."""
        try:
            return comparable(await self._run(op, turn_id), self.ids)
        except (lash.LashError, ValueError) as exc:
            return type(exc).__name__

    async def _run(self, op: tuple[Any, ...], turn_id: str) -> Any:
        store, sid, kind = self.store, "s", op[0]
        if kind == "enqueue":
            _, text, key, ingress = op
            return await store.enqueue_input(
                sid, lash.store.InputDraft(text, key=key, ingress=ingress)
            )
        if kind == "acquire":
            _, owner, with_turn = op
            turn = turn_id if with_turn else None
            self.lease = await store.acquire_lease(sid, owner, ttl=30, turn=turn)
            self.claimed = []
            return self.lease
        if kind == "command":
            _, name, key = op
            return await store.enqueue_command(sid, lash.store.CommandDraft(name, key, {"n": name}))
        if kind == "cancel":
            _, index, suffix, by_key = op
            inputs = await store.list_inputs(sid, settled=True)
            if not inputs:
                return await store.cancel_inputs(sid, ["none"], suffix=suffix)
            chosen = inputs[index % len(inputs)]
            target = chosen.key if by_key and chosen.key else chosen.id
            return await store.cancel_inputs(sid, [target], suffix=suffix)
        if self.lease is None:
            return None
        if kind == "claim":
            _, limit, ingress = op
            taken = await store.claim_inputs(self.lease, limit=limit, ingress=ingress)
            self.claimed += [t.id for t in taken]
            return taken
        if kind == "release":
            return await store.release_lease(self.lease)
        _, settle, queue_more, release = op
        commands = [c.id for c in await store.list_commands(sid)]
        delta = lash.store.CommitDelta(
            turns=1,
            claimed=tuple(self.claimed) if settle else (),
            applied=tuple(commands[:1]),
            enqueue=(lash.store.InputDraft("follow-up"),) if queue_more else (),
            turn=lash.store.TurnRecord(sid, turn_id, 1, "completed", 0),
            events=(lash.store.EventDraft("committed", {"turn": turn_id}),),
            release=release,
        )
        self.revision = await store.commit(
            sid, lease=self.lease, expected_revision=self.revision, delta=delta
        )
        if settle:
            self.claimed = []
        return self.revision


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=mailbox_ops)
async def test_random_mailbox_operations_behave_like_the_memory_store(
    tmp_path: Path, ops: list[tuple[Any, ...]]
) -> None:
    """Random queueing, leases, claims, cancellations, commands and commits (settling claims,
    applying commands, queueing input, releasing): the SQLite store answers every call as the
    reference MemoryStore does, and ends with the same inputs, commands, events and summary."""
    db = tmp_path / f"mailbox-{next(_examples)}.db"
    async with opened(db) as store:
        drivers = (Driver(lash.store.MemoryStore()), Driver(store))
        for n, op in enumerate(ops):
            got = [await d.run(op, f"t{n}") for d in drivers]
            assert got[0] == got[1], (op, got)
        for call in (
            lambda s: s.list_inputs("s", settled=True),
            lambda s: s.list_commands("s", settled=True),
        ):
            finals = [comparable(await call(d.store), d.ids) for d in drivers]
            assert finals[0] == finals[1]
        pages = [await d.store.read_events("s") for d in drivers]
        assert [(e.seq, e.type) for e in pages[0].events] == [
            (e.seq, e.type) for e in pages[1].events
        ]
        assert (pages[0].first, pages[0].last) == (pages[1].first, pages[1].last)
        summaries = [
            [attrs.evolve(r, created_at=0.0, updated_at=0.0) for r in await d.store.list_sessions()]
            for d in drivers
        ]
        assert summaries[0] == summaries[1]


async def test_the_store_conforms_with_statements_queued_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the one-function round trip (an aiosqlite lacking the private names it uses),
    statements go one request each through aiosqlite's public methods: the store still passes
    every conformance check."""
    import lash_plugins_builtin.sqlite as sqlite_module

    monkeypatch.setattr(sqlite_module, "ONE_HOP", False)
    calls: list[int] = []
    run_steps = sqlite_module._run_steps
    monkeypatch.setattr(
        sqlite_module, "_run_steps", lambda *args: calls.append(1) or run_steps(*args)
    )
    report = await lash.store.check_store(lambda: SQLiteStore(f"sqlite:///{tmp_path}/x.db"))
    assert report.checks == lash.store.STORE_CHECKS
    assert calls == []  # nothing went through the one-function path
