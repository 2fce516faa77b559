"""Resume: open a 10,000-message session and run one turn, against the hand-written loop's read.

Run: ``.venv/bin/python benchmarks/bench_resume.py [--repeats 11] [--messages 10000] [--quick]``

Target (issue 17): resume of a 10,000-message session + one turn <= 1.5x the loop's read of the
same messages (one query + ``json.loads``), as the median of per-repetition ratios.

The same conversation on both sides: ``messages / 4`` turns of bench_turns.py's workload (user
message -> one tool call -> the tool's short result -> final text: 4 chat messages per turn),
each side in a SQLite file of its own (WAL, ``synchronous=NORMAL``). lash's session is built by
running the real turns (6 nodes a turn: user, assistant, tool call, tool result, assistant, turn
outcome; its prompt holds the same 4 messages); the loop's by running bench_kernel_v2.py's
hand-written loop, which stores each message as one row ``(session_id, seq, json)``.

Each repetition times, in an alternating order, with the garbage collector on (as in
production; ``gc.collect()`` before each):

- lash: ``await core.session(id).open(must_exist=True)`` (head, active frame, states, usage:
  one round trip) then ``await session.turn(text).run()`` (committed when it returns), on a
  core that lives across repetitions, as a host's does (the session is closed, untimed, after);
- the loop's read: ``SELECT data FROM messages WHERE session_id = ? ORDER BY seq`` on its open
  aiosqlite connection, ``fetchall``, ``json.loads`` of each row: the history list back.

Printed for information: lash's open alone, the loop's read plus one loop turn (its commit
included), and the CPU time of each side (``time.process_time``: the whole process, the
database thread included), whose ratio moves less when other work shares the machine.
Exits 0 whatever the result: a benchmark, not a test.
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
from typing import Any

import aiosqlite

import lash

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kernel_v2 import LoopRun
from bench_sqlite import ms, run_turn, verdict
from bench_turns import make_core

TARGET = 1.5
LOOP_READ = "SELECT data FROM messages WHERE session_id = ? ORDER BY seq"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def loop_read(conn: aiosqlite.Connection) -> list[Any]:
    """The loop's resume: one query, ``json.loads`` of each row."""
    async with conn.execute(LOOP_READ, ("bench",)) as cursor:
        rows = await cursor.fetchall()
    return [json.loads(data) for (data,) in rows]


async def run(directory: str, messages: int, repeats: int) -> dict[str, Any]:
    turns = messages // 4
    extra = repeats + 2  # one turn after each resume, and the warm-up
    out: dict[str, list[float]] = {
        "open": [],
        "lash": [],
        "read": [],
        "read_turn": [],
        "lash_cpu": [],
        "read_cpu": [],
    }
    core = make_core(f"sqlite:///{os.path.join(directory, 'lash.db')}", turns + extra)
    loop = LoopRun("sqlite", directory, turns + extra, 0)
    try:
        t0 = time.perf_counter_ns()
        session = await core.session("bench").open()
        for i in range(turns):
            await run_turn(session, f"turn {i}")
        # What the model sees: a message per user, assistant and tool-result node.
        chat = (lash.UserMessage, lash.AssistantMessage, lash.ToolResultNode)
        lash_messages = sum(isinstance(node, chat) for node in session.nodes)
        await session.close()
        await loop.open()
        await loop.advance(turns)
        built = (time.perf_counter_ns() - t0) / 1e9
        read = await loop_read(loop.conn)  # type: ignore[arg-type]
        assert len(read) == messages == lash_messages, (len(read), messages, lash_messages)

        async def lash_side(k: int) -> None:
            gc.collect()
            c0 = time.process_time_ns()
            t0 = time.perf_counter_ns()
            session = await core.session("bench").open(must_exist=True)
            t1 = time.perf_counter_ns()
            await run_turn(session, f"after resume {k}")
            t2 = time.perf_counter_ns()
            c2 = time.process_time_ns()
            await session.close()
            out["open"].append(ms(t1 - t0))
            out["lash"].append(ms(t2 - t0))
            out["lash_cpu"].append(ms(c2 - c0))

        async def loop_side(k: int) -> None:
            gc.collect()
            c0 = time.process_time_ns()
            t0 = time.perf_counter_ns()
            await loop_read(loop.conn)  # type: ignore[arg-type]
            t1 = time.perf_counter_ns()
            out["read_cpu"].append(ms(time.process_time_ns() - c0))
            await loop.turn(turns + k)  # one turn after the read, committed (information)
            t2 = time.perf_counter_ns()
            out["read"].append(ms(t1 - t0))
            out["read_turn"].append(ms(t2 - t0))

        # Warm-up of each (the first open of a file pays for its pages), dropped.
        await lash_side(-1)
        await loop_side(-1)
        for key in out:
            out[key].clear()
        for k in range(repeats):
            sides = (lash_side, loop_side) if k % 2 == 0 else (loop_side, lash_side)
            for side in sides:
                await side(k)
        with sqlite3.connect(os.path.join(directory, "lash.db")) as db:
            (nodes,) = db.execute("SELECT sum(node_count) FROM nodes").fetchone()
        return {**out, "built_s": built, "nodes": nodes, "turns": turns}
    finally:
        await loop.close()
        await core.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="5 repetitions")
    args = parser.parse_args()
    repeats = 5 if args.quick else args.repeats
    print(
        f"bench_resume: python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"load average {load_average()}"
    )
    directory = tempfile.mkdtemp(prefix="lash-bench-resume-")
    try:
        out = asyncio.run(run(directory, args.messages, repeats))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ratios = [a / b for a, b in zip(out["lash"], out["read"], strict=True)]
    med = statistics.median
    print(
        f"\nsession: {out['turns']:,} turns = {args.messages:,} chat messages (lash: "
        f"{out['nodes']:,} nodes in the file after the runs; built in {out['built_s']:.1f} s); "
        f"{repeats} interleaved repetitions, medians, gc on"
    )
    print(f"   lash open + one turn          {med(out['lash']):8.2f} ms")
    print(f"   lash open alone (info)        {med(out['open']):8.2f} ms")
    print(f"   loop read (baseline)          {med(out['read']):8.2f} ms")
    print(f"   loop read + one turn (info)   {med(out['read_turn']):8.2f} ms")
    print(f"   per-repetition ratios         {' '.join(f'{r:.2f}' for r in ratios)}")
    # CPU time (the process's, both threads): less sensitive to other work on the machine.
    cpu = [a / b for a, b in zip(out["lash_cpu"], out["read_cpu"], strict=True)]
    print(
        f"   CPU time (info)               lash {med(out['lash_cpu']):.2f} ms, loop read "
        f"{med(out['read_cpu']):.2f} ms; ratio {med(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f})"
    )
    ratio = med(ratios)
    print("\nRESULTS")
    ok = verdict(ratio <= TARGET)
    print(f"   resume + turn / loop read   {ratio:6.2f} x   <= {TARGET} x   {ok}")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
