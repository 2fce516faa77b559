"""Durable turn overhead on Postgres: the ``postgresql://`` store under the kernel-turn workload.

Workload (bench_sqlite.py's, on Postgres): scripted provider; each turn = user message -> one
tool call -> the tool returns a short string -> final text; 10 no-op plugins implementing the
turn and tool hooks. Each kernel turn is one execution: ``acquire_lease`` (one call: the lease,
the head revision and the pending counts, ``turn_started`` logged) and one ``commit`` that
writes the turn, stores its record, logs its events and releases the lease. Every figure is
compared with a raw-asyncpg baseline measured in the same run against the same server, so the
ratios isolate what lash adds on top of the Postgres work it cannot avoid. The baseline is issue
14's: per turn ``BEGIN``; ``UPDATE`` of the session's head row with compare-and-swap on revision
and lease token; ``executemany`` of the turn's rows (as many node rows, with JSON of the same
sizes, as lash wrote per turn, measured from lash's own ``lash_nodes`` table); ``COMMIT`` (four
round trips, one transaction; it takes no lease and logs no event).

The baseline holds its session (its lease token) from one turn to the next; so does lash's
session in a hold (``async with session.hold():``, docs/mailbox.rst): its turns claim nothing
and each commits in one transaction. The targets are measured on the held session, the
baseline's equal; a turn on its own (its lease claimed in a transaction of its own, then
released by its commit) is measured beside it, for information.

Targets (PASS/FAIL in the final table):

1. one session: per-turn lash time (in a hold) <= 1.5x the baseline's (median of the
   per-repetition ratios of per-repetition medians; interleaved turn by turn with the
   baseline, a turn on its own and the kernel on ``memory://``).
2. per committed turn, from ``pg_stat_database`` and ``pg_stat_wal`` deltas (the difference
   between a run of 20 turns and one of 220, so that opening, closing and the hold's claim and
   release do not count): exactly one transaction in a hold (two on its own: the lease's,
   committed without waiting for a WAL flush, and the turn's commit) and at most 1.05 WAL
   flushes; the baseline's are shown too.
4. aggregate committed turns/s of 4 and of 8 worker processes x 25 sessions each, started
   together, each running its sessions' turns round robin: lash >= 0.5x the baseline's with the
   same process count. The workers are store-level (``lash worker`` does not exist yet): per
   turn a lease and one releasing commit of the rows a kernel turn writes; the baseline's
   workers write the same node rows. lash runs as configured by default (NOTIFY on; no one
   waits on these sessions, so their writes send none), with ``notify=off``, and with every
   session watched (a listener registered on each, as ``wait_events`` registers), so that
   every write notifies: Postgres serialises the commits of transactions that notify,
   cluster-wide (information: the target is for the default). Each worker's own CPU time per
   turn is shown: on a machine with few cores the figure is CPU-bound.

Information: a store.commit into a session of ~10,000 nodes against one of ~16, alternating.
8 workers on one session come with ``lash worker``.

Run: .venv/bin/python benchmarks/bench_postgres.py [--repeats 5] [--quick] [--url URL] [--no-sync]

``--no-sync`` runs both sides with ``synchronous_commit=off``: commits then return before their
WAL flush, which shows what lash adds besides waiting for the disk (information only).

Without ``--url`` the benchmark starts a throwaway server (tests/_postgres.py: initdb and
pg_ctl, as the ``postgres`` user when run as root; fsync on, autovacuum on, no statement
tracking) and removes it at the end; with
``--url postgresql://superuser@host:port/postgres`` it uses that server and creates (and drops)
databases of its own on it. The script exits 0 whatever the result.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

# The workload and its helpers are bench_sqlite.py's; the throwaway server is the tests'.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)
from _postgres import PostgresServer  # type: ignore[import-not-found]  # the tests' helper
from bench_sqlite import (
    Writer,
    grow,
    median,
    ms,
    payload_template,
    run_turn,
    turn_nodes,
)
from bench_turns import make_core

import lash
import lash.store
from lash_plugins_builtin.postgres import PostgresStore

TURNS = 200
HISTORY = 10_000

RAW_SCHEMA = (
    """CREATE TABLE raw_sessions (session_id text PRIMARY KEY, revision bigint NOT NULL,
        lease_token bigint NOT NULL, updated_at double precision NOT NULL,
        turns bigint NOT NULL, next_seq bigint NOT NULL, last_user_message text)""",
    """CREATE TABLE raw_nodes (session_id text NOT NULL, seq bigint NOT NULL,
        node_id text NOT NULL, kind text NOT NULL, frame_id text NOT NULL, turn bigint NOT NULL,
        data text NOT NULL, PRIMARY KEY (session_id, seq))""",
)
RAW_UPDATE_HEAD = """UPDATE raw_sessions SET revision = $1, updated_at = $2, turns = $3,
    next_seq = $4, last_user_message = $5
    WHERE session_id = $6 AND revision = $7 AND lease_token = $8"""
RAW_INSERT_NODE = """INSERT INTO raw_nodes (session_id, seq, node_id, kind, frame_id, turn, data)
    VALUES ($1, $2, $3, $4, $5, $6, $7)"""


class Databases:
    """Databases of this run on the server: made on demand, dropped at the end."""

    def __init__(self, admin_url: str, query: str = "") -> None:
        self.admin_url = admin_url
        self.query = query  # connection settings of both sides (``--no-sync``)
        self.made: list[str] = []

    def url(self, name: str) -> str:
        head, _, _ = self.admin_url.rpartition("/")
        return f"{head}/{name}{self.query}"

    async def create(self) -> str:
        name = f"lash_bench_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.made.append(name)
        return self.url(name)

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            for name in self.made:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


# -- what lash writes per turn (the baseline copies its shape) --------------------------------


async def measure_turn_rows(url: str) -> list[tuple[str, int]]:
    """``(kind, JSON bytes)`` of each node row lash writes for one steady-state turn."""
    core = make_core(url, 10)
    try:
        session = await core.session("probe").open()
        for i in range(6):
            await run_turn(session, f"turn {i}")
        await session.close()
    finally:
        await core.aclose()
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT kind, octet_length(data) FROM lash_nodes "
            "WHERE session_id = 'probe' AND turn = 4 ORDER BY seq"
        )
        per_turn = await conn.fetch(
            "SELECT turn, count(*) FROM lash_nodes WHERE session_id = 'probe' GROUP BY turn"
        )
    finally:
        await conn.close()
    assert {n for t, n in per_turn if t > 1} == {len(rows)}, (per_turn, rows)
    return [(str(kind), int(size)) for kind, size in rows]


class RawWriter:
    """The baseline: one transaction per turn writing the same rows, guarded like lash's."""

    def __init__(self, conn: Any, shape: list[tuple[str, int]], session_id: str) -> None:
        self.conn = conn
        self.templates = [payload_template(kind, size) for kind, size in shape]
        self.session_id = session_id
        self.seq = 0
        self.revision = 0

    @classmethod
    async def open(cls, url: str, shape: list[tuple[str, int]], session_id: str) -> RawWriter:
        """A writer of a new session (in tables created when the database has none)."""
        conn = await asyncpg.connect(url)
        for statement in RAW_SCHEMA:
            await conn.execute(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        await conn.execute("INSERT INTO raw_sessions VALUES ($1, 0, 7, 0, 0, 0, NULL)", session_id)
        return cls(conn, shape, session_id)

    async def turn(self, i: int) -> None:
        # The application serializes its rows too: dumps is inside the timed region.
        rows = []
        for template in self.templates:
            template["turn"] = i
            rows.append(
                (
                    self.session_id,
                    self.seq,
                    template["id"],
                    template["type"],
                    template["frame_id"],
                    i,
                    json.dumps(template, separators=(",", ":")),
                )
            )
            self.seq += 1
        conn = self.conn
        async with conn.transaction():
            status = await conn.execute(
                RAW_UPDATE_HEAD,
                self.revision + 1,
                time.time(),
                self.revision + 1,
                self.seq,
                f"turn {i}",
                self.session_id,
                self.revision,
                7,
            )
            if status != "UPDATE 1":
                raise AssertionError(f"the baseline's compare-and-swap failed: {status}")
            await conn.executemany(RAW_INSERT_NODE, rows)
        self.revision += 1

    async def close(self) -> None:
        await self.conn.close()


# -- 1: one session, per turn -----------------------------------------------------------------


async def turn_run(
    dbs: Databases,
    shape: list[tuple[str, int]],
    repeat: int,
    turns: int = TURNS,
    cpu: dict[str, list[float]] | None = None,
) -> dict[str, list[float]]:
    """One repetition: a fresh lash database and a fresh raw one, and (for information) a
    memory-store session, advanced turn by turn in a rotating order; each turn's wall time
    (ms), and its CPU time of this process into ``cpu`` (when given). The lash session is run
    twice: its turns each on their own, and held (``Session.hold``) on a database of its own,
    when the lash imported has holds (``--old`` may run one that has not)."""
    pg_core = make_core(await dbs.create(), turns)
    held_core = make_core(await dbs.create(), turns)
    mem_core = make_core("memory://", turns)
    raw = await RawWriter.open(await dbs.create(), shape, "raw")
    try:
        pg_session = await pg_core.session("bench").open()
        held_session = await held_core.session("bench").open()
        mem_session = await mem_core.session("bench").open()
        hold = held_session.hold() if hasattr(held_session, "hold") else None
        steps: dict[str, Callable[[int], Awaitable[None]]] = {
            "postgres": lambda i: run_turn(pg_session, f"turn {i}"),
            "raw": raw.turn,
            "memory": lambda i: run_turn(mem_session, f"turn {i}"),
        }
        if hold is not None:
            await hold.__aenter__()
            steps["held"] = lambda i: run_turn(held_session, f"turn {i}")
        times: dict[str, list[float]] = {name: [] for name in steps}
        names = list(steps)
        gc.collect()
        gc.disable()
        try:
            for i in range(turns):
                k = (i + repeat) % len(names)
                for name in names[k:] + names[:k]:
                    c0 = time.process_time_ns()
                    t0 = time.perf_counter_ns()
                    await steps[name](i)
                    times[name].append(ms(time.perf_counter_ns() - t0))
                    if cpu is not None:
                        cpu.setdefault(name, []).append(ms(time.process_time_ns() - c0))
        finally:
            gc.enable()
        if hold is not None:
            await hold.__aexit__(None, None, None)
        await pg_session.close()
        await held_session.close()
        await mem_session.close()
    finally:
        await raw.close()
        await pg_core.aclose()
        await held_core.aclose()
        await mem_core.aclose()
    return times


# -- 2: transactions and WAL flushes per committed turn ----------------------------------------


async def counters(admin: Any, database: str) -> tuple[int, int]:
    """(transactions of ``database``, WAL syncs of the server), once the database's
    connections have gone (a backend reports its counters when it exits)."""
    for _ in range(1000):
        if not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
        ):
            break
        await asyncio.sleep(0.01)
    xacts = await admin.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", database
    )
    syncs = await admin.fetchval("SELECT wal_sync FROM pg_stat_wal")
    return int(xacts), int(syncs)


async def flush_run(dbs: Databases, shape: list[tuple[str, int]]) -> dict[str, tuple[float, float]]:
    """Per committed turn: (transactions, WAL flushes) of lash and of the baseline."""
    admin = await asyncpg.connect(dbs.admin_url)
    out: dict[str, tuple[float, float]] = {}
    try:
        lash_url = await dbs.create()
        held_url = await dbs.create()
        raw_url = await dbs.create()

        async def lash_turns(count: int, sid: str, url: str = lash_url) -> None:
            core = make_core(url, count)
            try:
                session = await core.session(sid).open()
                for i in range(count):
                    await run_turn(session, f"turn {i}")
                await session.close()
            finally:
                await core.aclose()

        async def held_turns(count: int, sid: str) -> None:
            core = make_core(held_url, count)
            try:
                session = await core.session(sid).open()
                async with session.hold():
                    for i in range(count):
                        await run_turn(session, f"turn {i}")
                await session.close()
            finally:
                await core.aclose()

        async def raw_turns(count: int, sid: str) -> None:
            writer = await RawWriter.open(raw_url, shape, sid)
            try:
                for i in range(count):
                    await writer.turn(i)
            finally:
                await writer.close()

        runs = (
            ("lash", lash_url, lash_turns),
            ("held", held_url, held_turns),
            ("raw", raw_url, raw_turns),
        )
        for name, url, run in runs:
            database = url.rpartition("/")[2].partition("?")[0]
            await run(1, "warm")  # the first store to open a database migrates it
            deltas = []
            for count in (20, 220):
                before = await counters(admin, database)
                await run(count, f"s{count}")
                after = await counters(admin, database)
                deltas.append((after[0] - before[0], after[1] - before[1]))
            (x1, w1), (x2, w2) = deltas
            out[name] = ((x2 - x1) / 200, (w2 - w1) / 200)
    finally:
        await admin.close()
    return out


# -- information: commit at 10,000 nodes vs ~16 ------------------------------------------------


async def history_run(dbs: Databases, repeats: int) -> dict[str, Any]:
    core = make_core(await dbs.create(), 8 + 2 * repeats)
    try:
        long_nodes = await grow(core, "long", HISTORY)
        shorts = [f"short{k}" for k in range(repeats)]
        for sid in shorts:
            await grow(core, sid, 10)
        store = core.store
        long_writer = await Writer.take(store, "long")
        short_writers = [await Writer.take(store, sid) for sid in shorts]
        for writer in [long_writer, *short_writers]:  # warm: each connection prepares once
            await writer.commit(writer.delta(1))
        commit_long: list[float] = []
        commit_short: list[float] = []
        for k in range(repeats):
            pairs = [(long_writer, commit_long), (short_writers[k], commit_short)]
            for writer, sink in pairs if k % 2 else pairs[::-1]:
                delta = writer.delta(1)
                t0 = time.perf_counter_ns()
                await writer.commit(delta)
                sink.append(ms(time.perf_counter_ns() - t0))
        for writer in [long_writer, *short_writers]:
            await writer.release()
    finally:
        await core.aclose()
    return {"long_nodes": long_nodes, "long": commit_long, "short": commit_short}


# -- 4: many worker processes, 25 sessions each (store level) ---------------------------------

AGG_SESSIONS = 25
#: The variants of section 4: name -> (worker kind, the lash store's URL options, whether
#: every session is watched: someone waits on its events, so its writes notify).
AGG_VARIANTS = {
    "raw": ("raw", "", False),
    "lash": ("lash", "", False),
    "lash notify=off": ("lash", "?notify=off", False),
    "lash all watched": ("lash", "", True),
}


async def agg_worker(kind: str, url: str, worker: int, turns: int) -> None:
    """One worker process of section 4 (this script with ``--agg-worker``): warm each of its
    sessions with one turn, say ``ready``, wait for ``go``, run ``turns`` turns on each session
    (round robin) and print when it started and ended."""
    sids = [f"w{worker}-s{k}" for k in range(AGG_SESSIONS)]
    leaves: dict[str, str | None] = dict.fromkeys(sids)
    step: Callable[[str, int], Awaitable[None]]
    if kind == "raw":
        conn = await asyncpg.connect(url)
        heads = {sid: [0, 0] for sid in sids}  # revision, next seq
        for sid in sids:
            await conn.execute("INSERT INTO raw_sessions VALUES ($1, 0, 7, 0, 0, 0, NULL)", sid)

        async def raw_turn(sid: str, i: int) -> None:
            nodes = turn_nodes(leaves[sid] or "root", "f", i)
            leaves[sid] = nodes[-1].id
            revision, seq = heads[sid]
            rows = []
            for node in nodes:
                data = lash.to_data(node, lash.GraphNode)
                text = json.dumps(data, separators=(",", ":"))
                rows.append((sid, seq, node.id, data["type"], node.frame_id, i, text))
                seq += 1
            async with conn.transaction():
                status = await conn.execute(
                    RAW_UPDATE_HEAD, revision + 1, time.time(), revision + 1, seq, f"turn {i}",
                    sid, revision, 7,
                )  # fmt: skip
                if status != "UPDATE 1":
                    raise AssertionError(f"the baseline's compare-and-swap failed: {status}")
                await conn.executemany(RAW_INSERT_NODE, rows)
            heads[sid] = [revision + 1, seq]

        step = raw_turn
    else:
        store = PostgresStore(url, pool_size=1)
        owner = f"worker-{worker}"

        async def lash_turn(sid: str, i: int) -> None:
            turn_id = f"{sid}-t{i}"
            lease = await store.acquire_lease(
                sid, owner, ttl=30, turn=turn_id,
                events=[lash.store.EventDraft("turn_started", {"turn_id": turn_id})],
            )  # fmt: skip
            nodes = turn_nodes(leaves[sid] or "root", "f", i)
            leaves[sid] = nodes[-1].id
            events = tuple(
                lash.store.EventDraft(kind, {"turn_id": turn_id})
                for kind in ("tool_call_started", "tool_call_finished", "turn_committed")
            )
            await store.commit(
                sid, lease=lease, expected_revision=lease.revision,
                delta=lash.store.CommitDelta(
                    nodes=tuple(nodes), usage={"turn": lash.Usage(22, 5)}, turns=1,
                    turn=lash.store.TurnRecord(sid, turn_id, i + 1, "completed", 0),
                    events=events, release=True,
                ),
            )  # fmt: skip

        step = lash_turn
    for sid in sids:
        await step(sid, 0)
    print("ready", flush=True)
    sys.stdin.readline()
    started, cpu = time.time(), time.process_time()
    for i in range(1, turns + 1):
        for sid in sids:
            await step(sid, i)
    ended, cpu = time.time(), time.process_time() - cpu
    result = {"start": started, "end": ended, "turns": turns * len(sids), "cpu": cpu}
    print(json.dumps(result), flush=True)


async def agg_run(
    dbs: Databases, kind: str, processes: int, turns: int, query: str, watched: bool = False
) -> tuple[float, float]:
    """Aggregate committed turns/s of ``processes`` workers started together on a new
    database (``kind``: ``raw`` or ``lash``; ``query``: the lash store's URL options;
    ``watched``: a connection listens and is registered as waiting on every session, as a
    store's ``wait_events`` registers, so every write notifies), and the workers' own CPU
    time per turn (ms)."""
    url = await dbs.create()
    listener = None
    if kind == "raw":
        conn = await asyncpg.connect(url)
        for statement in RAW_SCHEMA:
            await conn.execute(statement)
        await conn.close()
    else:
        store = PostgresStore(url)
        await store.open()  # migrated once, before the workers start
        await store.close()
        if watched:
            listener = await asyncpg.connect(url)
            await listener.add_listener("lash_events", lambda *args: None)
            await listener.execute(
                "INSERT INTO lash_watchers SELECT 'w' || w || '-s' || s, pg_backend_pid(), 0 "
                "FROM generate_series(0, $1 - 1) AS w, generate_series(0, $2 - 1) AS s",
                processes,
                AGG_SESSIONS,
            )
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--agg-worker",
                kind,
                with_options(url, query),
                str(w),
                str(turns),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(processes)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            if line != "ready\n":
                raise RuntimeError(f"an aggregate worker failed to start: {line!r}")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(worker.communicate(timeout=600)[0]) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()
        if listener is not None:
            await listener.close()
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    total = sum(r["turns"] for r in results)
    return total / elapsed, 1000 * sum(r["cpu"] for r in results) / total


def with_options(url: str, query: str) -> str:
    """``url`` with the options ``query`` (``?a=b``) added to those it has (``--no-sync``'s)."""
    if query and "?" in url:
        return f"{url}&{query[1:]}"
    return url + query


async def aggregate(dbs: Databases, turns: int) -> dict[tuple[int, str], list[tuple[float, float]]]:
    """Section 4: for 4 and 8 processes, the baseline and lash (no session watched, NOTIFY
    off, every session watched), in a rotating order, three times: (turns/s, client CPU ms
    per turn) of each run."""
    out: dict[tuple[int, str], list[tuple[float, float]]] = {}
    variants = [(name, *spec) for name, spec in AGG_VARIANTS.items()]
    for processes in (4, 8):
        for round_ in range(3):
            k = round_ % len(variants)
            for name, kind, query, watched in variants[k:] + variants[:k]:
                measured = await agg_run(dbs, kind, processes, turns, query, watched)
                out.setdefault((processes, name), []).append(measured)
    return out


# -- --old REF: section 1 of this code against another commit's, by turns -------------------


async def turn_worker(admin_url: str, shape_json: str, repeat: int) -> None:
    """One repetition of section 1 in a process of its own (``--old``; the lash it imports is
    the one on ``PYTHONPATH``): a short warm-up run, then the medians of each side's wall and
    CPU time per turn, as JSON."""
    dbs = Databases(admin_url)
    shape = [(str(kind), int(size)) for kind, size in json.loads(shape_json)]
    try:
        await turn_run(dbs, shape, repeat, turns=20)  # imports, converters, statement caches
        cpu: dict[str, list[float]] = {}
        times = await turn_run(dbs, shape, repeat, cpu=cpu)
    finally:
        await dbs.drop_all()
    print(json.dumps({name: [median(times[name]), median(cpu[name])] for name in times}))


def compare(admin_url: str, ref: str, repeats: int) -> None:
    """Section 1 of the code at ``ref`` and of this tree, one process per repetition, the
    two alternating (old, new, new, old, ...) against the same server, so that the machine's
    load falls on both alike."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tree = tempfile.mkdtemp(prefix="lash-bench-old-")
    try:
        archive = subprocess.run(
            ["git", "-C", here, "archive", ref], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        dbs = Databases(admin_url)

        async def probe() -> list[tuple[str, int]]:
            try:
                return await measure_turn_rows(await dbs.create())
            finally:
                await dbs.drop_all()

        shape = json.dumps(asyncio.run(probe()))
        print(
            f"bench_postgres --old {ref}: section 1, {TURNS} turns a repetition, {repeats} "
            f"each, alternating; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        runs: dict[str, list[dict[str, list[float]]]] = {"old": [], "new": []}
        sides = [("old", tree), ("new", here)]
        for r in range(repeats):
            for side, path in sides if r % 2 == 0 else sides[::-1]:
                out = subprocess.run(
                    [sys.executable, __file__, "--turn-worker", admin_url, shape, str(r)],
                    env={**os.environ, "PYTHONPATH": path},
                    cwd=tempfile.gettempdir(),  # not a tree: lash comes from PYTHONPATH
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                result = json.loads(out.splitlines()[-1])
                runs[side].append(result)
                pg, raw, mem = result["postgres"], result["raw"], result["memory"]
                held = result.get("held")
                print(
                    f"  {side}: lash {pg[0]:.3f} ms (CPU {pg[1]:.3f}), raw {raw[0]:.3f} ms "
                    f"(CPU {raw[1]:.3f}), memory {mem[0]:.3f} ms; ratio {pg[0] / raw[0]:.2f}"
                    + (f"; held {held[0]:.3f} ms, ratio {held[0] / raw[0]:.2f}" if held else ""),
                    flush=True,
                )
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    print(f"medians (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}):")
    for side, results in runs.items():
        ratios = [r["postgres"][0] / r["raw"][0] for r in results]
        pg_ms, pg_cpu, raw_ms = (
            median([r[name][k] for r in results])
            for name, k in (("postgres", 0), ("postgres", 1), ("raw", 0))
        )
        print(
            f"  {side}: ratio {median(ratios):.2f} ({' '.join(f'{x:.2f}' for x in ratios)}); "
            f"lash {pg_ms:.3f} ms, its CPU {pg_cpu:.3f} ms; raw {raw_ms:.3f} ms"
        )


# -- report ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def bench(
    admin_url: str, repeats: int, commit_repeats: int, query: str, agg_turns: int
) -> None:
    dbs = Databases(admin_url, query)
    started = time.perf_counter_ns()
    try:
        admin = await asyncpg.connect(admin_url)
        version = await admin.fetchval("SHOW server_version")
        fsync = await admin.fetchval("SHOW fsync")
        sync_commit = await admin.fetchval("SHOW synchronous_commit")
        await admin.close()
        print(
            f"bench_postgres: python {sys.version.split()[0]}, PostgreSQL {version} (fsync "
            f"{fsync}, synchronous_commit {sync_commit}{query and ' but ' + query[1:]}), "
            f"asyncpg {asyncpg.__version__}, load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        )
        shape = await measure_turn_rows(await dbs.create())
        await turn_run(dbs, shape, 0)  # warm-up: imports, converters, statement caches
        per: dict[str, list[float]] = {"held": [], "postgres": [], "raw": [], "memory": []}
        ratios: list[float] = []
        alone: list[float] = []
        for r in range(repeats):
            times = await turn_run(dbs, shape, r)
            for name, values in times.items():
                per[name].append(median(values))
            ratios.append(median(times["held"]) / median(times["raw"]))
            alone.append(median(times["postgres"]) / median(times["raw"]))
        flushes = await flush_run(dbs, shape)
        hist = await history_run(dbs, commit_repeats)
        agg = await aggregate(dbs, agg_turns)
    finally:
        await dbs.drop_all()

    held_turn, pg_turn, raw_turn, mem_turn = (
        median(per[k]) for k in ("held", "postgres", "raw", "memory")
    )
    ratio = median(ratios)
    held_x, held_w = flushes["held"]
    lash_x, lash_w = flushes["lash"]
    raw_x, raw_w = flushes["raw"]
    c_long, c_short = median(hist["long"]), median(hist["short"])
    row_bytes = sum(size for _, size in shape)
    print(
        f"\nworkload: {TURNS} turns x {repeats} repetitions; per turn lash writes {len(shape)} "
        f"node rows ({'/'.join(k for k, _ in shape)}; {row_bytes} B of JSON), usage rows and "
        "the head row, in one statement; the baseline writes the same node rows and the head"
    )
    print("\n1. one session, per turn (median of per-repetition medians; interleaved)")
    print(f"   lash turn in a hold, postgresql:// {held_turn:8.3f} ms")
    print(
        f"   raw asyncpg transaction            {raw_turn:8.3f} ms   (BEGIN; UPDATE head CAS; "
        "executemany; COMMIT)"
    )
    print(
        f"   lash turn on its own (info)        {pg_turn:8.3f} ms   (its lease claimed, then "
        f"released by its commit: {median(alone):.2f} x raw)"
    )
    print(f"   lash turn, memory:// (info)        {mem_turn:8.3f} ms   (the kernel without I/O)")
    print(f"   per-repetition ratios held/raw     {' '.join(f'{x:.2f}' for x in ratios)}")
    print(f"   per-repetition ratios alone/raw    {' '.join(f'{x:.2f}' for x in alone)}")
    print("\n2. per committed turn (differences of pg_stat_* between 220 and 20 turns)")
    print(f"   lash in a hold: transactions {held_x:.3f}, WAL flushes {held_w:.3f}")
    print(
        f"   lash on its own: transactions {lash_x:.3f}, WAL flushes {lash_w:.3f}   (info: the "
        "lease, committed without waiting for a flush; the turn's commit)"
    )
    print(f"   raw:  transactions {raw_x:.3f}, WAL flushes {raw_w:.3f}")
    print(
        f"\n3. store.commit of one turn (info)   {c_short:8.3f} ms at ~16 prior nodes, "
        f"{c_long:.3f} ms at ~{hist['long_nodes']:,} ({len(hist['long'])} each, alternating)"
    )
    print(
        f"\n4. aggregate committed turns/s, N processes x {AGG_SESSIONS} sessions, {agg_turns} "
        "turns per session (store level: lease + releasing commit per turn; median of 3)"
    )
    agg_ratio = {}
    for processes in (4, 8):
        rate = {name: median([r for r, _ in agg[(processes, name)]]) for name in AGG_VARIANTS}
        cpu = {name: median([c for _, c in agg[(processes, name)]]) for name in AGG_VARIANTS}
        agg_ratio[processes] = rate["lash"] / rate["raw"]
        print(f"   {processes} processes:")
        for name in AGG_VARIANTS:
            print(
                f"     {name:16s} {rate[name]:7.0f} turns/s ({rate[name] / rate['raw']:.2f} x "
                f"raw); the workers' CPU {cpu[name]:.2f} ms per turn"
            )
    print("\nRESULTS")
    rows = [
        ("1", "held turn / raw transaction", f"{ratio:.2f} x", "<= 1.5 x", ratio <= 1.5),
        ("2a", "transactions per held turn", f"{held_x:.3f}", "== 1", held_x == 1),
        ("2b", "WAL flushes per held turn", f"{held_w:.3f}", "<= 1.05", held_w <= 1.05),
        ("i", "turn on its own / raw", f"{median(alone):.2f} x", "(info)", True),
        ("i", "transactions, turn on its own", f"{lash_x:.3f}", "(info)", True),
        ("i", "WAL flushes, turn on its own", f"{lash_w:.3f}", "(info)", True),
        ("4a", "4 workers: lash / raw turns/s", f"{agg_ratio[4]:.2f} x", ">= 0.5 x",
         agg_ratio[4] >= 0.5),
        ("4b", "8 workers: lash / raw turns/s", f"{agg_ratio[8]:.2f} x", ">= 0.5 x",
         agg_ratio[8] >= 0.5),
        ("i", "commit @10k / @16 nodes", f"{c_long / c_short:.2f} x", "(info)", True),
    ]  # fmt: skip
    print(f"   {'#':3s} {'target':28s} {'measured':>10s}   {'limit':9s} verdict")
    for num, what, measured, limit, ok in rows:
        shown = "-" if limit == "(info)" else verdict(ok)
        print(f"   {num:3s} {what:28s} {measured:>10s}   {limit:9s} {shown}")
    print("   the kernel's turn under many workers, and 8 workers on one session: with lash worker")
    print(f"\n(total {(time.perf_counter_ns() - started) / 1e9:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5, help="200-turn repetitions (default 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer repetitions)")
    parser.add_argument("--url", help="a superuser URL of a server to use instead of a new one")
    parser.add_argument(
        "--no-sync",
        action="store_true",
        help="both sides with synchronous_commit=off: what remains without the WAL flush wait "
        "(information; the targets are for durable commits)",
    )
    parser.add_argument(
        "--old",
        metavar="REF",
        help="section 1 only: this code against the commit REF, alternating (one process "
        "per repetition, --repeats of each)",
    )
    parser.add_argument("--agg-worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--turn-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agg_worker:
        kind, url, worker, turns = args.agg_worker
        asyncio.run(agg_worker(kind, url, int(worker), int(turns)))
        return
    if args.turn_worker:
        url, shape, repeat = args.turn_worker
        asyncio.run(turn_worker(url, shape, int(repeat)))
        return
    repeats = 2 if args.quick else args.repeats
    agg_turns = 4 if args.quick else 8
    commit_repeats = 11 if args.quick else 41
    server = None
    url = args.url
    if url is None:
        # As a deployment runs it: no statement tracking (the tests' server tracks every
        # statement, nested ones too, which costs a function like lash_commit more than the
        # baseline's plain statements), autovacuum on.
        server = PostgresServer().start(
            shared_preload_libraries=None, **{"pg_stat_statements.track": None}, autovacuum="on"
        )
        url = server.url()
    try:
        query = "?synchronous_commit=off" if args.no_sync else ""
        if args.old:
            compare(url, args.old, args.repeats)
        else:
            asyncio.run(bench(url, repeats, commit_repeats, query, agg_turns))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
