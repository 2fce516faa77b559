"""Durable turn overhead: the ``sqlite://`` store under the kernel-turn workload.

Workload (bench_turns.py's, made durable): scripted provider; each turn = user message -> one
tool call -> the tool returns a short string -> final text; 10 no-op plugins implementing the
turn and tool hooks; store ``sqlite:///<tmpdir>/bench.db`` (WAL, default ``synchronous=NORMAL``).
Every figure is compared with a baseline measured in the same run, so the ratios isolate what
lash adds on top of the work it cannot avoid.

Targets (PASS/FAIL in the final table):

1. per-turn median <= 2.5x the hand-written loop of issue 17 (bench_kernel_v2.py's ``LoopRun``:
   plain functions, the history as a list, the turn's 4 messages written with one
   ``executemany`` + ``commit`` through aiosqlite, WAL, ``synchronous=NORMAL``), as the median of
   per-repeat ratios; and <= 1.0 ms absolute. For information, the older baseline: a raw
   aiosqlite transaction writing the same rows as lash (as many node rows with JSON of the same
   sizes as lash wrote per turn, measured from lash's own ``nodes`` table, plus a usage row and
   a head-row update, BEGIN IMMEDIATE ... COMMIT: five awaits, which nobody would write).
2. flatness: last-50 median <= 1.2x first-50 median over 200 turns; and one turn's
   ``store.commit`` into a session with 10,000 prior nodes <= 1.2x one into a 10-node session.
3. resume (``open()``) of a 10,000-node session plus one turn <= 1.5x a raw read of the same
   rows (head row + the active frame's node rows, each JSON-decoded).
4. memory: 1,000 open idle sessions (one turn each) <= 10 KB each (tracemalloc), and a parked
   session holds no graph (0 nodes), with the memory parking released.

Run: .venv/bin/python benchmarks/bench_sqlite.py [--repeats 5] [--quick] [--profile]
    [--candidate path/to/store.py]

Everything lives in a temporary directory, removed at the end; the script exits 0 whatever the
result. ``--profile`` adds cProfile summaries of the durable turn loop and of the resume.
``--candidate`` runs the whole benchmark with the ``SQLiteStore`` class of another file (a
proposed store) in place of the builtin one; the raw baselines are unchanged, so its table
compares directly with a run without it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import io
import json
import os
import pstats
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite

import lash
import lash.store

# The workload is bench_turns.py's: the same provider plugin, tool and no-op plugins.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kernel_v2 import LoopRun
from bench_turns import make_core

TURNS = 200
HISTORY = 10_000  # nodes of the "long" session (targets 2b and 3)
SESSIONS = 1_000  # idle sessions (target 4)
# user, assistant(tool call), tool_call, tool_result, assistant(text), outcome
NODES_PER_TURN = 6

# -- the raw-aiosqlite baseline's schema: the shape of lash's tables it writes ----------------

RAW_SCHEMA = (
    """CREATE TABLE sessions (session_id TEXT PRIMARY KEY NOT NULL, revision INTEGER NOT NULL,
        created_at REAL NOT NULL, updated_at REAL NOT NULL, turns INTEGER NOT NULL,
        next_seq INTEGER NOT NULL, frame_start INTEGER NOT NULL, last_user_message TEXT)""",
    """CREATE TABLE nodes (session_id TEXT NOT NULL, seq INTEGER NOT NULL,
        node_id TEXT NOT NULL, kind TEXT NOT NULL, frame_id TEXT NOT NULL,
        turn INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (session_id, seq))""",
    """CREATE TABLE usage_ledger (session_id TEXT NOT NULL, revision INTEGER NOT NULL,
        source TEXT NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL, recorded_at REAL NOT NULL,
        PRIMARY KEY (session_id, revision, source)) WITHOUT ROWID""",
)
RAW_INSERT_NODE = """INSERT INTO nodes (session_id, seq, node_id, kind, frame_id, turn, data)
    VALUES (?, ?, ?, ?, ?, ?, ?)"""
RAW_INSERT_USAGE = """INSERT INTO usage_ledger (session_id, revision, source, input_tokens,
    output_tokens, cached_tokens, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)"""
RAW_UPDATE_HEAD = """UPDATE sessions SET revision = ?, updated_at = ?, turns = ?, next_seq = ?,
    last_user_message = ? WHERE session_id = ?"""
RAW_HEAD = "SELECT * FROM sessions WHERE session_id = ?"
RAW_ACTIVE = "SELECT data FROM nodes WHERE session_id = ? AND seq >= ? ORDER BY seq"


def ms(ns: float) -> float:
    return ns / 1e6


def median(values: list[float]) -> float:
    return statistics.median(values)


def sqlite_url(directory: str) -> str:
    return f"sqlite:///{os.path.join(directory, 'bench.db')}"


async def run_turn(session: lash.Session, text: str) -> None:
    result = await session.turn(text).run()
    if result.outcome != "completed":
        raise AssertionError(result)


# -- what lash writes per turn (the baseline copies its shape) --------------------------------


async def measure_turn_rows(directory: str) -> list[tuple[str, int]]:
    """``(kind, JSON bytes)`` of each node lash writes for one steady-state turn (lash keeps a
    commit's nodes in one row, their kinds and texts joined by newlines: the baseline writes
    them as a row each, as a hand-written loop would)."""
    core = make_core(sqlite_url(directory), 10)
    try:
        session = await core.session("probe").open()
        for i in range(6):
            await run_turn(session, f"turn {i}")
        await session.close()
    finally:
        await core.aclose()
    with sqlite3.connect(os.path.join(directory, "bench.db")) as db:
        per_turn = db.execute(
            "SELECT turn, sum(node_count) FROM nodes WHERE session_id = 'probe' GROUP BY turn"
        ).fetchall()
        packed = db.execute(
            "SELECT kind, data FROM nodes WHERE session_id = 'probe' AND turn = 4 ORDER BY seq"
        ).fetchall()
        rows = [
            (kind, len(text.encode()))
            for kinds, texts in packed
            for kind, text in zip(kinds.split("\n"), texts.split("\n"), strict=True)
        ]
        ledger = db.execute(
            "SELECT count(*) FROM usage_ledger WHERE session_id = 'probe' AND revision = 4"
        ).fetchone()[0]
    counts = {n for t, n in per_turn if t > 1}
    assert counts == {len(rows)} and ledger == 1, (per_turn, rows, ledger)
    return [(str(kind), int(size)) for kind, size in rows]


def payload_template(kind: str, size: int) -> dict[str, Any]:
    """A node-shaped dict whose compact JSON is exactly ``size`` bytes."""
    data: dict[str, Any] = {
        "id": secrets.token_hex(8),
        "parent_id": secrets.token_hex(8),
        "frame_id": secrets.token_hex(16),
        "turn": 1000,
        "text": "",
        "type": kind,
    }
    pad = size - len(json.dumps(data, separators=(",", ":")))
    data["text"] = "x" * max(pad, 0)
    return data


class RawWriter:
    """The baseline writer: one transaction per turn, the same rows lash writes.

    ``pipelined`` (information only, not the baseline of any target): the same statements with
    the writes queued together between ``BEGIN`` and ``COMMIT`` (three round trips to
    aiosqlite's worker thread instead of five; lash's commit is one).
    """

    def __init__(
        self, conn: aiosqlite.Connection, shape: list[tuple[str, int]], *, pipelined: bool
    ) -> None:
        self.conn = conn
        self.templates = [payload_template(kind, size) for kind, size in shape]
        self.seq = 0
        self.revision = 0
        self.pipelined = pipelined

    @classmethod
    async def open(
        cls, path: str, shape: list[tuple[str, int]], *, pipelined: bool = False
    ) -> RawWriter:
        conn = await aiosqlite.connect(path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        for statement in RAW_SCHEMA:
            await conn.execute(statement)
        await conn.execute(
            "INSERT INTO sessions VALUES ('raw', 0, ?, ?, 0, 0, 0, NULL)", (time.time(),) * 2
        )
        return cls(conn, shape, pipelined=pipelined)

    async def turn(self, i: int) -> None:
        # The application must serialize its rows too: dumps is inside the timed region.
        rows = []
        for template in self.templates:
            template["turn"] = i
            rows.append(
                (
                    "raw",
                    self.seq,
                    template["id"],
                    template["type"],
                    template["frame_id"],
                    i,
                    json.dumps(template, separators=(",", ":")),
                )
            )
            self.seq += 1
        self.revision += 1
        conn = self.conn
        usage = ("raw", self.revision, "turn", 22, 5, 0, time.time())
        head = (self.revision, time.time(), self.revision, self.seq, f"turn {i}", "raw")
        await conn.execute("BEGIN IMMEDIATE")
        if self.pipelined:
            await asyncio.gather(
                conn.executemany(RAW_INSERT_NODE, rows),
                conn.execute(RAW_INSERT_USAGE, usage),
                conn.execute(RAW_UPDATE_HEAD, head),
            )
        else:
            await conn.executemany(RAW_INSERT_NODE, rows)
            await conn.execute(RAW_INSERT_USAGE, usage)
            await conn.execute(RAW_UPDATE_HEAD, head)
        await conn.execute("COMMIT")


# -- section 1: per-turn cost, 200 turns -----------------------------------------------------


async def turn_run(root: str, shape: list[tuple[str, int]], repeat: int) -> dict[str, list[float]]:
    """One repeat: a fresh lash sqlite session, a fresh hand-written loop's database, a fresh
    raw database and (for information) a memory-store session, advanced turn by turn in a
    rotating order."""
    lash_dir = tempfile.mkdtemp(dir=root)
    raw_dir = tempfile.mkdtemp(dir=root)
    sql_core = make_core(sqlite_url(lash_dir), TURNS)
    mem_core = make_core("memory://", TURNS)
    loop = LoopRun("sqlite", raw_dir, TURNS, repeat)
    await loop.open()
    raw = await RawWriter.open(os.path.join(raw_dir, "raw.db"), shape)
    piped = await RawWriter.open(os.path.join(raw_dir, "piped.db"), shape, pipelined=True)
    times: dict[str, list[float]] = {
        "sqlite": [],
        "loop": [],
        "raw": [],
        "raw_piped": [],
        "memory": [],
    }
    timed_store_calls(sql_core.store, times)
    try:
        sql_session = await sql_core.session("bench").open()
        mem_session = await mem_core.session("bench").open()
        steps: dict[str, Callable[[int], Awaitable[None]]] = {
            "sqlite": lambda i: run_turn(sql_session, f"turn {i}"),
            "loop": loop.turn,
            "raw": raw.turn,
            "raw_piped": piped.turn,
            "memory": lambda i: run_turn(mem_session, f"turn {i}"),
        }
        names = list(steps)
        gc.collect()
        gc.disable()
        try:
            for i in range(TURNS):
                k = (i + repeat) % len(names)
                for name in names[k:] + names[:k]:
                    t0 = time.perf_counter_ns()
                    await steps[name](i)
                    times[name].append(ms(time.perf_counter_ns() - t0))
        finally:
            gc.enable()
        await sql_session.close()
        await mem_session.close()
    finally:
        await loop.close()
        await raw.conn.close()
        await piped.conn.close()
        await sql_core.aclose()
        await mem_core.aclose()
    return times


def timed_store_calls(store: Any, times: dict[str, list[float]]) -> None:
    """Time the store's ``acquire_lease`` and ``commit`` (what a durable turn asks of it: the
    lease, then the commit that releases it) into ``times["acquire"]`` / ``times["commit"]``."""
    for name in ("acquire_lease", "commit"):
        sink = times.setdefault(name.removesuffix("_lease"), [])

        def wrap(call: Any, sink: list[float] = sink) -> Any:
            async def timed(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter_ns()
                try:
                    return await call(*args, **kwargs)
                finally:
                    sink.append(ms(time.perf_counter_ns() - t0))

            return timed

        setattr(store, name, wrap(getattr(store, name)))


# -- building long sessions quickly ----------------------------------------------------------


def turn_nodes(leaf: str, frame: str, turn: int) -> list[Any]:
    """The six nodes of one workload turn, as the kernel records them."""
    call = lash.ToolCall(id=f"bulk_{turn}", name="echo", arguments={"text": f"t{turn}"})
    ids = [secrets.token_hex(8) for _ in range(NODES_PER_TURN)]
    parents = [leaf, *ids[:-1]]
    common: list[dict[str, Any]] = [
        {"id": i, "parent_id": p, "frame_id": frame, "turn": turn}
        for i, p in zip(ids, parents, strict=True)
    ]
    model = "bench:default"
    return [
        lash.UserMessage(**common[0], text=f"turn {turn}"),
        lash.AssistantMessage(
            **common[1], text="", tool_calls=(call,), usage=lash.Usage(10, 3), model=model
        ),
        lash.ToolCallNode(**common[2], call=call, plugin="bench_provider"),
        lash.ToolResultNode(**common[3], call_id=call.id, name="echo", content=f"t{turn}"),
        lash.AssistantMessage(
            **common[4], text=f"answer {turn}", usage=lash.Usage(12, 2), model=model
        ),
        lash.TurnOutcome(**common[5], turn_id=f"bulk-{turn}", outcome="completed"),
    ]


class Writer:
    """Appends turns to a session straight through ``store.commit`` under its own lease."""

    def __init__(
        self,
        store: lash.store.Store,
        session_id: str,
        lease: lash.store.Lease,
        head: dict[str, Any],
    ):
        self.store = store
        self.session_id = session_id
        self.lease = lease
        self.revision: int = head["revision"]
        self.turns: int = head["turns"]
        self.leaf: str = head["leaf"]
        self.frame: str = head["frame"]

    @classmethod
    async def take(cls, store: lash.store.Store, session_id: str) -> Writer:
        lease = await store.acquire_lease(session_id, "bench-writer", ttl=3600)
        record = await store.load(session_id)
        assert record is not None
        head = {
            "revision": record.revision,
            "turns": record.turns,
            "leaf": record.nodes[-1].id,
            "frame": record.nodes[0].frame_id,
        }
        return cls(store, session_id, lease, head)

    def delta(self, turns: int, *, new_frame: bool = False) -> lash.store.CommitDelta:
        nodes: list[Any] = []
        if new_frame:
            boundary = lash.FrameBoundary(
                id=secrets.token_hex(8),
                parent_id=self.leaf,
                frame_id=secrets.token_hex(16),
                turn=self.turns + 1,
                previous_frame_id=self.frame,
                reason="compaction",
                summary="what happened so far",
            )
            nodes.append(boundary)
            self.leaf, self.frame = boundary.id, boundary.frame_id
        for t in range(self.turns + 1, self.turns + turns + 1):
            nodes += turn_nodes(self.leaf, self.frame, t)
            self.leaf = nodes[-1].id
        self.turns += turns
        return lash.store.CommitDelta(
            nodes=tuple(nodes), usage={"turn": lash.Usage(22 * turns, 5 * turns)}, turns=turns
        )

    async def commit(self, delta: lash.store.CommitDelta) -> None:
        self.revision = await self.store.commit(
            self.session_id, lease=self.lease, expected_revision=self.revision, delta=delta
        )

    async def release(self) -> None:
        await self.store.release_lease(self.lease)


async def grow(core: lash.LashCore, session_id: str, nodes: int, *, compact: bool = False) -> int:
    """A session of about ``nodes`` nodes: two real turns, then bulk commits of whole turns
    (1,000 nodes each); with ``compact``, the last turn opens a new frame first."""
    session = await core.session(session_id).open()
    for i in range(2):
        await run_turn(session, f"turn {i}")
    await session.close()
    writer = await Writer.take(core.store, session_id)
    have = 1 + 2 * NODES_PER_TURN
    while have < nodes - NODES_PER_TURN:
        turns = min(200, (nodes - have - (NODES_PER_TURN if compact else 0)) // NODES_PER_TURN)
        if turns <= 0:
            break
        await writer.commit(writer.delta(turns))
        have += turns * NODES_PER_TURN
    if compact:
        await writer.commit(writer.delta(1, new_frame=True))
        have += 1 + NODES_PER_TURN
    await writer.release()
    return have


# -- section 2b/3: history -------------------------------------------------------------------


async def alternate_commits(long: Writer, shorts: list[Writer]) -> tuple[list[float], list[float]]:
    """One turn's commit into ``long`` and into each of ``shorts`` in turn, alternating which
    goes first; the milliseconds of each (garbage collector off). The writers are released."""
    # Untimed: each writer's first commit (a store whose lease did not read the head reads it
    # then); both sides measure the ones after it.
    for writer in [long, *shorts]:
        await writer.commit(writer.delta(1))
    long_ms: list[float] = []
    short_ms: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for k, short in enumerate(shorts):
            pairs = [(long, long_ms), (short, short_ms)]
            for writer, sink in pairs if k % 2 else pairs[::-1]:
                delta = writer.delta(1)
                t0 = time.perf_counter_ns()
                await writer.commit(delta)
                sink.append(ms(time.perf_counter_ns() - t0))
    finally:
        gc.enable()
    for writer in [long, *shorts]:
        await writer.release()
    return long_ms, short_ms


async def history_run(root: str, repeats: int, profile: cProfile.Profile | None) -> dict[str, Any]:
    directory = tempfile.mkdtemp(dir=root)
    path = os.path.join(directory, "bench.db")
    core = make_core(sqlite_url(directory), 4 * repeats + 4 * repeats + 200)
    out: dict[str, Any] = {}
    raw: aiosqlite.Connection | None = None
    try:
        t0 = time.perf_counter_ns()
        out["long_nodes"] = await grow(core, "long", HISTORY)
        out["compacted_nodes"] = await grow(core, "compacted", HISTORY, compact=True)
        shorts = [f"short{k}" for k in range(repeats)]
        for sid in shorts:
            await grow(core, sid, 10)  # two turns: 11 nodes
        out["build_s"] = (time.perf_counter_ns() - t0) / 1e9
        with sqlite3.connect(path) as db:
            out["db_nodes"] = db.execute("SELECT sum(node_count) FROM nodes").fetchone()[0]

        # 2b: one turn's commit into the long session versus into a ~16-node one, alternating.
        store = core.store
        long_writer = await Writer.take(store, "long")
        short_writers = [await Writer.take(store, sid) for sid in shorts]
        commit_long, commit_short = await alternate_commits(long_writer, short_writers)
        out["commit_long"], out["commit_short"] = commit_long, commit_short

        # 3: resume + one turn versus a raw read of the same rows, alternating; and (info) the
        # same for a 10,000-node session compacted into a short active frame.
        raw = await aiosqlite.connect(path, isolation_level=None)
        await raw.execute("PRAGMA journal_mode = WAL")

        async def raw_read(sid: str) -> int:
            await raw.execute("BEGIN")
            (head,) = await raw.execute_fetchall(RAW_HEAD, (sid,))
            rows = await raw.execute_fetchall(RAW_ACTIVE, (sid, head[6]))  # frame_start
            decoded = [json.loads(data) for (data,) in rows]
            await raw.execute("COMMIT")
            return len(decoded)

        async def lash_resume(sid: str, prof: cProfile.Profile | None) -> tuple[float, float, int]:
            if prof is not None:
                prof.enable()
            t0 = time.perf_counter_ns()
            session = await core.session(sid).open(must_exist=True)
            t1 = time.perf_counter_ns()
            loaded = len(session.nodes)
            await run_turn(session, "after resume")
            t2 = time.perf_counter_ns()
            if prof is not None:
                prof.disable()
            await session.close()
            return ms(t1 - t0), ms(t2 - t0), loaded

        resume_reps = max(3, repeats // 4)
        for sid in ("long", "compacted"):
            opens, totals, raws, loaded, read = [], [], [], [], []
            await lash_resume(sid, None)  # warm: the first open of a file pays for its pages
            await raw_read(sid)
            for k in range(resume_reps):
                gc.collect()
                gc.disable()
                try:
                    for variant in ("lash", "raw") if k % 2 == 0 else ("raw", "lash"):
                        if variant == "lash":
                            prof = profile if (sid == "long" and k == 0) else None
                            t_open, t_total, n = await lash_resume(sid, prof)
                            opens.append(t_open)
                            totals.append(t_total)
                            loaded.append(n)
                        else:
                            t0 = time.perf_counter_ns()
                            read.append(await raw_read(sid))
                            raws.append(ms(time.perf_counter_ns() - t0))
                finally:
                    gc.enable()
            out[f"resume_{sid}"] = {
                "open": opens,
                "open_turn": totals,
                "raw": raws,
                "loaded": loaded,
                "read": read,
            }

        # Information: a whole turn (kernel + commit) at 10,000 active-frame nodes vs 10.
        long_session = await core.session("long").open()
        short_session = await core.session(shorts[0]).open()
        turn_long: list[float] = []
        turn_short: list[float] = []
        gc.collect()
        gc.disable()
        try:
            for k in range(repeats):
                pairs = [(long_session, turn_long), (short_session, turn_short)]
                for session, sink in pairs if k % 2 else pairs[::-1]:
                    t0 = time.perf_counter_ns()
                    await run_turn(session, f"more {k}")
                    sink.append(ms(time.perf_counter_ns() - t0))
        finally:
            gc.enable()
        await long_session.close()
        await short_session.close()
        out["turn_long"], out["turn_short"] = turn_long, turn_short
    finally:
        if raw is not None:
            await raw.close()
        await core.aclose()
    return out


# -- section 4: memory -----------------------------------------------------------------------


async def memory_run(root: str, count: int, *, drop_sessions: bool = False) -> dict[str, Any]:
    """Memory of ``count`` open idle sessions, then parked. ``drop_sessions``: once parked, keep
    only the handles (what a host that parks sessions keeps), and report what is still alive
    (``sessions_alive``), the handles' own size (``handle``) and the largest allocations left
    (``parked_top``)."""
    directory = tempfile.mkdtemp(dir=root)
    from lash_plugins_builtin.sqlite import INLINE_CHECKPOINT

    # One warm-up session runs enough turns (two inline writes each) for the store's first
    # WAL checkpoint, which makes its checkpointer: a thread and a connection, once per store.
    checkpoint_turns = INLINE_CHECKPOINT // 2 + 1
    core = make_core(sqlite_url(directory), count + 10 + checkpoint_turns)
    provider = next(
        c.value for c in core.registry.of("provider").values() if c.plugin == "bench_provider"
    )
    out: dict[str, Any] = {}
    try:
        # Warm every lazy cache (converters, tool specs, the connection, the checkpointer)
        # before measuring.
        warm = [await core.session(f"warm{k}").open() for k in range(3)]
        for session in warm:
            await run_turn(session, "warm")
        for _ in range(checkpoint_turns):
            await run_turn(warm[0], "warm")
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter_ns()
        sessions = []
        for k in range(count):
            session = await core.session(f"idle{k:04d}").open()
            await run_turn(session, f"hello {k}")
            sessions.append(session)
        out["build_s"] = (time.perf_counter_ns() - t0) / 1e9
        # The scripted provider keeps every request it served (for tests): not session memory.
        provider.requests.clear()
        gc.collect()
        opened = tracemalloc.get_traced_memory()[0]
        out["nodes_open"] = median([len(s.nodes) for s in sessions])
        handles = [await s.park() for s in sessions]
        out["graph_nodes_parked"] = max(len(s.nodes) for s in sessions)
        out["nodes_parked"] = max(len(s.nodes) for s in sessions)
        if drop_sessions:
            del sessions, session
        gc.collect()
        parked = tracemalloc.get_traced_memory()[0]
        if drop_sessions:
            snapshot = tracemalloc.take_snapshot()
            out["parked_top"] = [
                str(stat) for stat in snapshot.statistics("lineno")[:8] if stat.size > count * 16
            ]
            out["sessions_alive"] = sum(
                isinstance(o, lash.Session) and o.id.startswith("idle") for o in gc.get_objects()
            )
            # What the host holds: the handle, its session id, its options overrides.
            out["handle"] = sum(
                sys.getsizeof(h) + sys.getsizeof(h.session_id) + sys.getsizeof(h.options)
                for h in handles
            ) / len(handles)
        tracemalloc.stop()
        out["per_open"] = (opened - base) / count
        out["released"] = (opened - parked) / count
        out["per_parked"] = (parked - base) / count
        if drop_sessions:
            # The parked sessions resumed (each loaded from the file, none run since): what
            # an idle session holds that a restart or a park brought back.
            gc.collect()
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
            resumed_all = [await core.resume(h) for h in handles]
            gc.collect()
            out["per_resumed"] = (tracemalloc.get_traced_memory()[0] - before) / count
            tracemalloc.stop()
            out["resume_ok"] = all(len(s.nodes) == 1 + NODES_PER_TURN for s in resumed_all)
            for resumed in resumed_all:
                await resumed.close()
        else:
            resumed = await core.resume(handles[0])
            out["resume_ok"] = len(resumed.nodes) == 1 + NODES_PER_TURN
            await resumed.close()
        for session in warm:
            await session.close()
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        await core.aclose()
    return out


# -- profiling -------------------------------------------------------------------------------


async def profiled_turns(root: str, prof: cProfile.Profile) -> None:
    directory = tempfile.mkdtemp(dir=root)
    core = make_core(sqlite_url(directory), TURNS)
    try:
        session = await core.session("bench").open()
        prof.enable()
        for i in range(TURNS):
            await run_turn(session, f"turn {i}")
        prof.disable()
        await session.close()
    finally:
        await core.aclose()


def profile_summary(prof: cProfile.Profile, title: str, lines: int = 22) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)
    return f"\n==== profile: {title} ====\n" + buf.getvalue()


def use_candidate(path: str) -> str:
    """Make ``sqlite://`` stores of this run instances of ``path``'s ``SQLiteStore``."""
    import lash_plugins_builtin.sqlite as builtin

    spec = importlib.util.spec_from_file_location("bench_sqlite_candidate", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    # The builtin `stores` plugin imports SQLiteStore from this module each time it builds one.
    builtin.SQLiteStore = module.SQLiteStore  # type: ignore[misc]
    return os.path.abspath(path)


# -- report ----------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5, help="200-turn runs (default 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer repeats)")
    parser.add_argument("--profile", action="store_true", help="print cProfile summaries")
    parser.add_argument("--candidate", help="a .py file whose SQLiteStore replaces the builtin")
    args = parser.parse_args()
    if args.candidate:
        print(f"candidate store: {use_candidate(args.candidate)}")
    repeats = 2 if args.quick else args.repeats
    commit_repeats = 11 if args.quick else 41
    idle = 200 if args.quick else SESSIONS
    root = tempfile.mkdtemp(prefix="lash-bench-sqlite-")
    started = time.perf_counter_ns()
    print(
        f"bench_sqlite: python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"aiosqlite {getattr(aiosqlite, '__version__', '?')}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    try:
        shape = asyncio.run(measure_turn_rows(tempfile.mkdtemp(dir=root)))
        asyncio.run(turn_run(root, shape, 0))  # warm-up: imports, converters, page cache
        per: dict[str, list[float]] = {
            "sqlite": [],
            "loop": [],
            "raw": [],
            "raw_piped": [],
            "memory": [],
            "acquire": [],
            "commit": [],
        }
        first50: dict[str, list[float]] = {"sqlite": [], "raw": []}
        last50: dict[str, list[float]] = {"sqlite": [], "raw": []}
        ratios: list[float] = []
        raw_ratios: list[float] = []
        drift: list[float] = []
        for r in range(repeats):
            times = asyncio.run(turn_run(root, shape, r))
            for name, values in times.items():
                per[name].append(median(values))
            for name in first50:
                first50[name].append(median(times[name][:50]))
                last50[name].append(median(times[name][-50:]))
            ratios.append(median(times["sqlite"]) / median(times["loop"]))
            raw_ratios.append(median(times["sqlite"]) / median(times["raw"]))
            # Drift of the machine (I/O of other processes, WAL growth) hits both alike: the
            # per-turn lash/raw ratio, last 50 against first 50, shows lash's own drift.
            paired = [a / b for a, b in zip(times["sqlite"], times["raw"], strict=True)]
            drift.append(median(paired[-50:]) / median(paired[:50]))
        prof_resume = cProfile.Profile() if args.profile else None
        hist = asyncio.run(history_run(root, commit_repeats, prof_resume))
        mem = asyncio.run(memory_run(root, idle))
        prof_turns = None
        if args.profile:
            prof_turns = cProfile.Profile()
            asyncio.run(profiled_turns(root, prof_turns))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    sqlite_turn = median(per["sqlite"])
    loop_turn = median(per["loop"])
    raw_turn = median(per["raw"])
    piped_turn = median(per["raw_piped"])
    mem_turn = median(per["memory"])
    ratio = median(ratios)  # the target: the median of per-repeat lash/loop ratios
    flat = median(last50["sqlite"]) / median(first50["sqlite"])
    raw_flat = median(last50["raw"]) / median(first50["raw"])
    c_long, c_short = median(hist["commit_long"]), median(hist["commit_short"])
    res = hist["resume_long"]
    res_c = hist["resume_compacted"]
    r_open, r_total, r_raw = median(res["open"]), median(res["open_turn"]), median(res["raw"])
    rc_open, rc_total, rc_raw = (
        median(res_c["open"]),
        median(res_c["open_turn"]),
        median(res_c["raw"]),
    )
    t_long, t_short = median(hist["turn_long"]), median(hist["turn_short"])
    row_bytes = sum(size for _, size in shape)

    print(
        f"\nworkload: {TURNS} turns x {repeats} repeats; per turn lash writes {len(shape)} node "
        f"rows ({'/'.join(k for k, _ in shape)}; {row_bytes} B of JSON: "
        f"{', '.join(str(s) for _, s in shape)}) + 1 usage row + head update"
    )
    print("\n1. per turn (median of per-repeat medians; variants interleaved turn by turn)")
    print(f"   lash turn, sqlite://             {sqlite_turn:8.3f} ms")
    print(
        f"   hand-written loop                {loop_turn:8.3f} ms   (the baseline: its 4 "
        "messages, one executemany + commit)"
    )
    print(
        f"   raw transaction (info)           {raw_turn:8.3f} ms   (lash's rows, BEGIN IMMEDIATE, "
        "five awaits: the old baseline)"
    )
    print(
        f"   raw, writes pipelined (info)     {piped_turn:8.3f} ms   "
        "(the same, writes queued together: 3 round trips, not 5)"
    )
    print(f"   lash turn, memory:// (info)      {mem_turn:8.3f} ms   (the kernel without I/O)")
    print(
        f"   of the sqlite turn (info)        {median(per['acquire']):8.3f} ms acquire_lease + "
        f"{median(per['commit']):.3f} ms commit (releasing the lease): one round trip each"
    )
    print(
        f"   sqlite - memory (info)           {sqlite_turn - mem_turn:8.3f} ms   "
        "(what the durable commit adds to a turn)"
    )
    print(
        f"   memory + raw pipelined (info)    {mem_turn + piped_turn:8.3f} ms   "
        "(kernel + the bare transaction in 3 round trips; lash commits in 1)"
    )
    print(f"   per-repeat ratios lash/loop      {' '.join(f'{x:.2f}' for x in ratios)}")
    print(f"   per-repeat lash/raw (info)       {' '.join(f'{x:.2f}' for x in raw_ratios)}")
    print("\n2. flatness")
    print(
        f"   lash first-50 / last-50          {median(first50['sqlite']):8.3f} / "
        f"{median(last50['sqlite']):.3f} ms"
    )
    print(
        f"   raw  first-50 / last-50          {median(first50['raw']):8.3f} / "
        f"{median(last50['raw']):.3f} ms   (ratio {raw_flat:.2f}, for comparison)"
    )
    print(
        f"   lash/raw per turn, last/first 50 {median(drift):8.3f}      "
        "(info: the drift the environment does not explain)"
    )
    print(
        f"   store.commit of one turn         {c_short:8.3f} ms at ~16 prior nodes, "
        f"{c_long:.3f} ms at ~{hist['long_nodes'] + NODES_PER_TURN:,} "
        f"({len(hist['commit_long'])} each, "
        f"alternating; database {hist['db_nodes']:,} nodes, built in {hist['build_s']:.1f} s)"
    )
    print(
        f"   whole turn (info)                {t_short:8.3f} ms at ~10 nodes, {t_long:.3f} ms "
        f"at {hist['long_nodes']:,} active-frame nodes"
    )
    print(
        "\n3. resume (open + one turn), medians of "
        f"{len(res['open'])}; the raw read is head row + active-frame rows + json.loads each"
    )
    for label, data, o, t, rw in (
        (f"{hist['long_nodes']:,} nodes, one frame", res, r_open, r_total, r_raw),
        (f"{hist['compacted_nodes']:,} nodes, compacted (info)", res_c, rc_open, rc_total, rc_raw),
    ):
        print(
            f"   {label:32s} lash loads {min(data['loaded']):,}-{max(data['loaded']):,} "
            f"nodes, raw reads {min(data['read']):,}-{max(data['read']):,} (each turn adds "
            f"{NODES_PER_TURN}): open {o:.2f} ms, open+turn {t:.2f} ms, raw read {rw:.2f} ms "
            f"-> {t / rw:.2f}x (open alone {o / rw:.2f}x)"
        )
    print(f"\n4. memory ({idle} sessions, one turn each, tracemalloc, after gc)")
    print(
        f"   open idle session                {mem['per_open'] / 1024:8.2f} KB each "
        f"({mem['nodes_open']:.0f} nodes in memory; built in {mem['build_s']:.1f} s)"
    )
    print(
        f"   park() released                  {mem['released'] / 1024:8.2f} KB each; a parked "
        f"Session object + handle keeps {mem['per_parked'] / 1024:.2f} KB"
    )
    print(
        f"   parked graph nodes (max)         {mem['graph_nodes_parked']:8d}   "
        f"(resume of a parked session reloads {1 + NODES_PER_TURN} nodes: {mem['resume_ok']})"
    )

    print("\nRESULTS")
    rows = [
        ("1a", "turn / hand-written loop", f"{ratio:.2f} x", "<= 2.5 x", ratio <= 2.5),
        ("1b", "turn, absolute", f"{sqlite_turn:.3f} ms", "<= 1.0 ms", sqlite_turn <= 1.0),
        ("2a", "last-50 / first-50", f"{flat:.2f} x", "<= 1.2 x", flat <= 1.2),
        (
            "2b",
            "commit @10k / @10 nodes",
            f"{c_long / c_short:.2f} x",
            "<= 1.2 x",
            c_long / c_short <= 1.2,
        ),
        (
            "3",
            "resume 10k + turn / raw read",
            f"{r_total / r_raw:.2f} x",
            "<= 1.5 x",
            r_total / r_raw <= 1.5,
        ),
        (
            "4a",
            "open idle session",
            f"{mem['per_open'] / 1024:.2f} KB",
            "<= 10 KB",
            mem["per_open"] <= 10 * 1024,
        ),
        (
            "4b",
            "parked graph nodes",
            f"{mem['graph_nodes_parked']}",
            "== 0",
            mem["graph_nodes_parked"] == 0 and mem["nodes_parked"] == 0 and mem["released"] > 0,
        ),
    ]
    print(f"   {'#':3s} {'target':30s} {'measured':>12s}   {'limit':10s} verdict")
    for num, what, measured, limit, ok in rows:
        print(f"   {num:3s} {what:30s} {measured:>12s}   {limit:10s} {verdict(ok)}")
    print(f"\n(total {(time.perf_counter_ns() - started) / 1e9:.0f} s)")
    if prof_turns is not None:
        print(profile_summary(prof_turns, f"{TURNS} durable turns"))
    if prof_resume is not None:
        print(profile_summary(prof_resume, f"resume of {hist['long_nodes']:,} nodes + one turn"))


if __name__ == "__main__":
    main()
