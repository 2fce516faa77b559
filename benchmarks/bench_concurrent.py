"""Many sessions at once: aggregate committed turns per second, lash against the hand-written loop.

Run: ``.venv/bin/python benchmarks/bench_concurrent.py [--sessions 100] [--turns 20]
[--repeats 7] [--quick] [--old REF]``

Target (issue 17): 100 concurrent sessions in one process: aggregate committed turns/s >= 0.5x
the loop's (one shared aiosqlite connection, one transaction per turn), as the median of
per-repetition ratios.

Workload: bench_turns.py's turn (user message -> one tool call -> the tool's short result ->
final text; 10 no-op plugins implementing the per-turn hooks), but the fake model answers from
the conversation rather than from one shared script (which concurrent sessions would consume in
an interleaved order): a tool call when the last message is not a tool result, else the text.
Both sides use the same rule.

- **lash**: one core on ``sqlite:///<tmp>/lash.db`` (one store, one connection; WAL,
  ``synchronous=NORMAL``), the sessions opened (untimed), then each runs ``--turns`` turns
  (``await session.turn(text).run()``: committed when it returns), all at once
  (``asyncio.gather``).
- **loop** (the baseline): the same number of histories (lists of dicts) and one shared
  aiosqlite connection (WAL, ``synchronous=NORMAL``); a turn is bench_kernel_v2.py's
  ``loop_turn`` (its fake model following the same rule),
  then its messages written in one transaction of its own: ``executemany`` + ``commit`` under an
  ``asyncio.Lock`` (on a shared connection two sessions' writes would otherwise land in one
  transaction).
  (Without the lock, concurrent turns' rows would share transactions; on one ``sqlite3``
  connection that also failed now and then with "bad parameter or other API misuse" from
  ``executemany``, so it is not measured.)

A repetition runs the variants in a rotating order, each on fresh files; the figure is all
turns / wall time from the first turn to the last commit (the process CPU time per turn is
printed too, and each variant's turn latency: p50, p99 and max over every turn of every
repetition, where a stall of the store shows), and the share of the wall time the event loop
spent waiting in ``select`` more than 2 ms at a time, every session waiting). Exits 0
whatever the result: a benchmark, not a test.

``--old REF`` (a git ref, or a directory) adds lash at that code as a third variant, for an
A/B of a change in the same run: both lash variants then run in a child process each
(``PYTHONPATH`` set to the tree, ``git archive``d like bench_kernel_v2.py's ``--old``; the
child checks which ``lash`` it imported), each after a dropped two-turn warm-up of its own, and
``new/old`` is printed per repetition (turns/s and CPU per turn).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import selectors
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import lash
from lash_plugins_builtin import standard, stores

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kernel_v2 import LOOP_INSERT, ROOT, LoopRun, loop_turn, tree_of
from bench_sqlite import run_turn, verdict
from bench_turns import DISABLE, echo, make_noop

TARGET = 0.5
USAGE = {"input_tokens": 10, "output_tokens": 3}


class ReactiveModel:
    """The fake model: a tool call, then (after the tool's result) the answer."""

    name = "bench"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, request: lash.ModelRequest) -> AsyncIterator[Any]:
        usage = lash.Usage(**USAGE)
        if request.messages and request.messages[-1].role == "tool":
            yield lash.TextDelta("answer")
            yield lash.ModelDone(usage=usage, finish_reason="stop")
            return
        self.calls += 1
        yield lash.ToolCallReady(lash.ToolCall(f"call_{self.calls}", "echo", {"text": "t"}))
        yield lash.ModelDone(usage=usage, finish_reason="tool_calls")


class Provider:
    lash_plugin = lash.PluginMeta(name="bench_provider")

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register("bench", ReactiveModel())

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(echo)


def make_core(url: str) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, Provider(), *(make_noop(i) for i in range(10))],
        autoload=False,
        disable=DISABLE,
        provider="bench",
        store=url,
    )


#: ``(wall s, CPU s, committed rows, each turn's latency in s, stalled s)`` of a run.
Run = tuple[float, float, int, list[float], float]

#: The event loop's waits in ``select`` (epoll) longer than ``STALL`` s: the loop had nothing to
#: run, every session waiting (for the store's lock, its thread, the file's write lock).
STALLS: list[float] = []
STALL = 0.002
_select = selectors.DefaultSelector.select


def _timed_select(self: selectors.BaseSelector, timeout: float | None = None) -> Any:
    start = time.perf_counter()
    try:
        return _select(self, timeout)  # type: ignore[arg-type]
    finally:
        waited = time.perf_counter() - start
        if waited > STALL:
            STALLS.append(waited)


selectors.DefaultSelector.select = _timed_select  # type: ignore[method-assign]


async def lash_run(directory: str, sessions: int, turns: int) -> Run:
    """:data:`Run` of ``sessions`` x ``turns`` lash turns."""
    core = make_core(f"sqlite:///{os.path.join(directory, 'lash.db')}")
    try:
        opened = [await core.session(f"s{k}").open() for k in range(sessions)]

        latencies: list[float] = []

        async def drive(session: lash.Session) -> None:
            for i in range(turns):
                start = time.perf_counter()
                await run_turn(session, f"turn {i}")
                latencies.append(time.perf_counter() - start)

        gc.collect()
        STALLS.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(drive(s) for s in opened))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stalled = sum(STALLS)
        for session in opened:
            await session.close()
    finally:
        await core.aclose()
    with sqlite3.connect(os.path.join(directory, "lash.db")) as db:
        (rows,) = db.execute("SELECT sum(node_count) FROM nodes").fetchone()
    return wall, cpu, rows, latencies, stalled


class LoopReplies:
    """The loop's fake model for one session (what bench_kernel_v2.py's ``loop_turn`` asks with
    ``next``): the reactive model's rule, read from that session's history."""

    def __init__(self, history: list[dict[str, Any]]) -> None:
        self.history = history

    def __iter__(self) -> LoopReplies:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.history[-1]["role"] == "tool":
            return {"text": "answer", "usage": USAGE}
        return {"tool_calls": [{"name": "echo", "arguments": {"text": "t"}}], "usage": USAGE}


async def loop_run(directory: str, sessions: int, turns: int) -> Run:
    """:data:`Run` of the loop on one shared connection (rows: messages)."""
    # bench_kernel_v2.py's loop opens its connection and table (WAL, synchronous=NORMAL); all
    # the sessions share that connection here.
    opened = LoopRun("sqlite", directory, turns, 0)
    await opened.open()
    conn = opened.conn
    assert conn is not None
    try:
        lock = asyncio.Lock()
        tools = {"echo": echo}
        latencies: list[float] = []

        async def drive(session_id: str) -> None:
            history: list[dict[str, Any]] = []
            replies = LoopReplies(history)
            for i in range(turns):
                began = time.perf_counter()
                start = len(history)
                await loop_turn(history, f"turn {i}", replies, tools)
                rows = [
                    (session_id, seq, json.dumps(message))
                    for seq, message in enumerate(history[start:], start)
                ]
                async with lock:  # one transaction per turn on the shared connection
                    await conn.executemany(LOOP_INSERT, rows)
                    await conn.commit()
                latencies.append(time.perf_counter() - began)

        gc.collect()
        STALLS.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(drive(f"s{k}") for k in range(sessions)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        stalled = sum(STALLS)
        async with conn.execute("SELECT count(*) FROM messages") as cursor:
            row = await cursor.fetchone()
    finally:
        await conn.close()
    assert row is not None
    return wall, cpu, int(row[0]), latencies, stalled


VARIANTS = ("lash", "loop")


def run_variant(
    name: str, root: str, sessions: int, turns: int, trees: dict[str, str] | None = None
) -> Run:
    """One run of variant ``name``; a name in ``trees`` runs lash from that tree in a child
    process (:func:`child`)."""
    directory = tempfile.mkdtemp(dir=root)
    try:
        if trees and name in trees:
            return in_child(trees[name], directory, sessions, turns)
        if name == "lash":
            return asyncio.run(lash_run(directory, sessions, turns))
        return asyncio.run(loop_run(directory, sessions, turns))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def in_child(tree: str, directory: str, sessions: int, turns: int) -> Run:
    """:func:`lash_run` in a child process importing lash from ``tree``."""
    out = subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            directory,
            str(sessions),
            str(turns),
        ],
        env={**os.environ, "PYTHONPATH": tree},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    answer = json.loads(out.strip().splitlines()[-1])
    expected = os.path.join(tree, "lash", "__init__.py")
    if os.path.realpath(answer["lash"]) != os.path.realpath(expected):
        raise RuntimeError(f"the child imported {answer['lash']}, not {expected}")
    return answer["wall"], answer["cpu"], answer["rows"], answer["latencies"], answer["stalled"]


def child(directory: str, sessions: int, turns: int) -> None:
    """The child of :func:`in_child`: a dropped two-turn warm-up, then the measured run."""
    warm = os.path.join(directory, "warm")
    os.mkdir(warm)
    asyncio.run(lash_run(warm, sessions, 2))
    run = os.path.join(directory, "run")
    os.mkdir(run)
    wall, cpu, rows, latencies, stalled = asyncio.run(lash_run(run, sessions, turns))
    answer = {"lash": lash.__file__, "wall": wall, "cpu": cpu, "rows": rows}
    print(json.dumps({**answer, "latencies": latencies, "stalled": stalled}))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20, help="turns per session")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repetitions")
    parser.add_argument("--old", help="also lash at this git ref or directory (an A/B)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        directory, n, k = args.child
        child(directory, int(n), int(k))
        return
    repeats = 3 if args.quick else args.repeats
    sessions, turns = args.sessions, args.turns
    print(
        f"bench_concurrent: python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"{sessions} sessions x {turns} turns, {repeats} repetitions, load average "
        f"{load_average()}"
    )
    root = tempfile.mkdtemp(prefix="lash-bench-concurrent-")
    variants: tuple[str, ...] = VARIANTS
    trees: dict[str, str] = {}
    labels = {"lash": "lash (one store)", "loop": "loop, a transaction per turn"}
    rate: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    rows: dict[str, int] = {}
    latency: dict[str, list[float]] = {}
    stalls: dict[str, list[float]] = {}
    try:
        if args.old:
            trees["old"], described = tree_of(args.old, root, "old")
            trees["lash"] = ROOT
            variants = ("lash", "old", "loop")
            labels["old"] = "lash at --old"
            print(f"   old: {described}\n   lash: {ROOT} (both in child processes)")
        for name in variants:  # warm-up (imports, converters), dropped; a child warms itself
            if name not in trees:
                run_variant(name, root, sessions, 2)
        for r in range(repeats):
            shift = r % len(variants)  # a rotating order
            for name in variants[shift:] + variants[:shift]:
                wall, used, rows[name], took, stalled = run_variant(
                    name, root, sessions, turns, trees
                )
                latency.setdefault(name, []).extend(took)
                stalls.setdefault(name, []).append(stalled / wall)
                rate.setdefault(name, []).append(sessions * turns / wall)
                cpu.setdefault(name, []).append(used / (sessions * turns) * 1e3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    expected = {"lash": sessions * (1 + 6 * turns), "loop": sessions * 4 * turns}
    expected["old"] = expected["lash"]
    assert all(rows[name] == expected[name] for name in variants), rows
    med = statistics.median
    ratios = [a / b for a, b in zip(rate["lash"], rate["loop"], strict=True)]
    print(f"\n   {'variant':34s} {'turns/s':>9s} {'CPU ms/turn':>12s}")
    for name in variants:
        print(f"   {labels[name]:34s} {med(rate[name]):9.0f} {med(cpu[name]):12.3f}")
    print(f"   per-repetition lash/loop     {' '.join(f'{x:.2f}' for x in ratios)}")
    print(
        f"\n   {'turn latency, ms (all turns)':34s} {'p50':>7s} {'p99':>7s} {'max':>7s}"
        f"   loop stalled > {STALL * 1e3:.0f} ms (median % of wall)"
    )
    for name in variants:
        ms = sorted(x * 1e3 for x in latency[name])
        p50, p99 = ms[len(ms) // 2], ms[min(len(ms) - 1, len(ms) * 99 // 100)]
        stalled = med(stalls[name]) * 100
        print(f"   {labels[name]:34s} {p50:7.2f} {p99:7.2f} {ms[-1]:7.2f}   {stalled:5.1f}")
    if args.old:
        faster = [a / b for a, b in zip(rate["lash"], rate["old"], strict=True)]
        cheaper = [a / b for a, b in zip(cpu["lash"], cpu["old"], strict=True)]
        print(
            f"   new/old turns/s  {med(faster):.3f}  ({' '.join(f'{x:.2f}' for x in faster)})\n"
            f"   new/old CPU/turn {med(cheaper):.3f}  ({' '.join(f'{x:.2f}' for x in cheaper)})"
        )
    ratio = med(ratios)
    print("\nRESULTS")
    ok = verdict(ratio >= TARGET)
    print(f"   lash turns/s / loop's      {ratio:6.2f} x   >= {TARGET} x   {ok}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
