"""Many sessions at once: aggregate committed turns per second, lash against the hand-written loop.

Run: ``.venv/bin/python benchmarks/bench_concurrent.py [--sessions 100] [--turns 20]
[--repeats 7] [--quick]``

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
printed too). Exits 0 whatever the result: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import lash
from lash_plugins_builtin import standard, stores

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kernel_v2 import LOOP_INSERT, LoopRun, loop_turn
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


async def lash_run(directory: str, sessions: int, turns: int) -> tuple[float, float, int]:
    """``(wall s, CPU s, committed node rows)`` of ``sessions`` x ``turns`` lash turns."""
    core = make_core(f"sqlite:///{os.path.join(directory, 'lash.db')}")
    try:
        opened = [await core.session(f"s{k}").open() for k in range(sessions)]

        async def drive(session: lash.Session) -> None:
            for i in range(turns):
                await run_turn(session, f"turn {i}")

        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(drive(s) for s in opened))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        for session in opened:
            await session.close()
    finally:
        await core.aclose()
    with sqlite3.connect(os.path.join(directory, "lash.db")) as db:
        (rows,) = db.execute("SELECT count(*) FROM nodes").fetchone()
    return wall, cpu, rows


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


async def loop_run(directory: str, sessions: int, turns: int) -> tuple[float, float, int]:
    """``(wall s, CPU s, committed message rows)`` of the loop on one shared connection."""
    # bench_kernel_v2.py's loop opens its connection and table (WAL, synchronous=NORMAL); all
    # the sessions share that connection here.
    opened = LoopRun("sqlite", directory, turns, 0)
    await opened.open()
    conn = opened.conn
    assert conn is not None
    try:
        lock = asyncio.Lock()
        tools = {"echo": echo}

        async def drive(session_id: str) -> None:
            history: list[dict[str, Any]] = []
            replies = LoopReplies(history)
            for i in range(turns):
                start = len(history)
                await loop_turn(history, f"turn {i}", replies, tools)
                rows = [
                    (session_id, seq, json.dumps(message))
                    for seq, message in enumerate(history[start:], start)
                ]
                async with lock:  # one transaction per turn on the shared connection
                    await conn.executemany(LOOP_INSERT, rows)
                    await conn.commit()

        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(drive(f"s{k}") for k in range(sessions)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        async with conn.execute("SELECT count(*) FROM messages") as cursor:
            row = await cursor.fetchone()
    finally:
        await conn.close()
    assert row is not None
    return wall, cpu, int(row[0])


VARIANTS = ("lash", "loop")


def run_variant(name: str, root: str, sessions: int, turns: int) -> tuple[float, float, int]:
    directory = tempfile.mkdtemp(dir=root)
    try:
        if name == "lash":
            return asyncio.run(lash_run(directory, sessions, turns))
        return asyncio.run(loop_run(directory, sessions, turns))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--turns", type=int, default=20, help="turns per session")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repetitions")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    sessions, turns = args.sessions, args.turns
    print(
        f"bench_concurrent: python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"{sessions} sessions x {turns} turns, {repeats} repetitions, load average "
        f"{load_average()}"
    )
    root = tempfile.mkdtemp(prefix="lash-bench-concurrent-")
    rate: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    rows: dict[str, int] = {}
    try:
        for name in VARIANTS:  # warm-up (imports, converters), dropped
            run_variant(name, root, sessions, 2)
        for r in range(repeats):
            order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
            for name in order:
                wall, used, rows[name] = run_variant(name, root, sessions, turns)
                rate[name].append(sessions * turns / wall)
                cpu[name].append(used / (sessions * turns) * 1e3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    expected = {"lash": sessions * (1 + 6 * turns), "loop": sessions * 4 * turns}
    assert rows["lash"] == expected["lash"] and rows["loop"] == expected["loop"], rows
    med = statistics.median
    ratios = [a / b for a, b in zip(rate["lash"], rate["loop"], strict=True)]
    print(f"\n   {'variant':34s} {'turns/s':>9s} {'CPU ms/turn':>12s}")
    labels = {
        "lash": "lash (one store)",
        "loop": "loop, a transaction per turn",
    }
    for name in VARIANTS:
        print(f"   {labels[name]:34s} {med(rate[name]):9.0f} {med(cpu[name]):12.3f}")
    print(f"   per-repetition lash/loop     {' '.join(f'{x:.2f}' for x in ratios)}")
    ratio = med(ratios)
    print("\nRESULTS")
    ok = verdict(ratio >= TARGET)
    print(f"   lash turns/s / loop's      {ratio:6.2f} x   >= {TARGET} x   {ok}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
