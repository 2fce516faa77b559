"""The mailbox on ``sqlite://`` across processes: queueing input, and watching a session.

Run: ``.venv/bin/python benchmarks/bench_mailbox.py [--repeats 7] [--enqueues 300]
[--turns 60] [--quick]``

Targets (issue 12, "Performance"):

1. **Enqueue from another process** <= 2x a raw one-row insert, both measured in the same run.
   A host process holds the session open (idle: no lease while nothing runs); a second process
   queues input with ``await core.enqueue(session_id, text)`` (the host API: the input checked,
   ``store.enqueue_input``, the local wake-up) and, interleaved one for one, the raw insert:
   aiosqlite on its own file (WAL, ``synchronous=NORMAL``, the store's settings), one
   ``INSERT`` of ``(session_id, seq, text, created_at)`` with a primary key on
   ``(session_id, seq)``, in autocommit: one round trip to aiosqlite's thread, the least a
   durable insert costs there. For information, ``store.enqueue_input`` alone and the raw
   insert written the way aiosqlite's docs show it (``execute`` then ``commit``: two round
   trips). Per repetition the median of each; the target is the median over repetitions of
   the per-repetition ratio.
2. **Observe latency** <= 50 ms median: the host runs turns (the bench_turns.py workload) and
   a watcher process follows the session with ``core.observe(session_id)``, which polls the
   store's event log every ``observe_poll`` seconds (0.02 by default). Latency is the time from
   the host's ``store.commit`` returning to the watcher receiving that turn's
   ``turn_committed`` event, both read from ``time.monotonic()`` (one clock for every process
   of the machine). Turns are spaced by a random pause (0-40 ms) so commits land at every
   phase of the watcher's poll. Medians, 90th percentile and maximum over all turns.

Exits 0 whatever the result: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

import aiosqlite

SESSION = "mailbox"
ENQUEUE_TARGET = 2.0
OBSERVE_TARGET_MS = 50.0

RAW_SCHEMA = """CREATE TABLE IF NOT EXISTS inputs (session_id TEXT NOT NULL, seq INTEGER NOT NULL,
    text TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (session_id, seq))"""
RAW_INSERT = "INSERT INTO inputs (session_id, seq, text, created_at) VALUES (?, ?, ?, ?)"


def url_of(db: str) -> str:
    return f"sqlite:///{db}"


def say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


# -- worker processes ------------------------------------------------------------------------


async def enqueue_worker(db: str, raw_db: str, count: int, repeat: int) -> None:
    """Queue ``count`` inputs each way, interleaved (the order rotates with the repetition),
    and print each way's times (ms)."""
    from bench_turns import make_core

    core = make_core(url_of(db), 1)
    store = core.store
    piped = await aiosqlite.connect(raw_db, isolation_level=None)
    await piped.execute("PRAGMA journal_mode = WAL")
    await piped.execute("PRAGMA synchronous = NORMAL")
    await piped.execute(RAW_SCHEMA)
    documented = await aiosqlite.connect(raw_db)  # the default: implicit BEGIN, then commit()
    await documented.execute("PRAGMA synchronous = NORMAL")
    seq = [int(time.time() * 1000) * 10]

    async def raw() -> None:
        seq[0] += 1
        await piped.execute(RAW_INSERT, (SESSION, seq[0], f"raw {seq[0]}", time.time()))

    async def raw_commit() -> None:
        seq[0] += 1
        await documented.execute(RAW_INSERT, (SESSION, seq[0], f"raw {seq[0]}", time.time()))
        await documented.commit()

    async def enqueue() -> None:
        await core.enqueue(SESSION, f"input {seq[0]}")
        seq[0] += 1

    async def store_enqueue() -> None:
        import lash.store

        await store.enqueue_input(SESSION, lash.store.InputDraft(f"input {seq[0]}"))
        seq[0] += 1

    ways = {
        "core.enqueue": enqueue,
        "raw insert": raw,
        "store.enqueue_input": store_enqueue,
        "raw insert + commit": raw_commit,
    }
    names = list(ways)
    times: dict[str, list[float]] = {name: [] for name in names}
    for way in ways.values():  # warm: connections, converters, pages
        for _ in range(20):
            await way()
    for i in range(count):
        k = (i + repeat) % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter_ns()
            await ways[name]()
            times[name].append((time.perf_counter_ns() - t0) / 1e6)
    await piped.close()
    await documented.close()
    await core.aclose()
    say(times=times)


async def watch_worker(db: str) -> None:
    """Follow the session; print the monotonic time each ``turn_committed`` arrives."""
    from bench_turns import make_core

    import lash

    core = make_core(url_of(db), 1)
    say(event="ready", poll=core.observe_poll)
    try:
        async for event in core.observe(SESSION):
            if isinstance(event, lash.ObservedEvent) and event.type == "turn_committed":
                say(event="seen", turn_id=event.data["turn_id"], at=time.monotonic())
    finally:
        await core.aclose()


# -- the parent ------------------------------------------------------------------------------


class Child:
    def __init__(self, *args: str) -> None:
        # The script's directory comes first on the child's path: bench_turns.py is there.
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", *args],
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> Any:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited ({self.process.wait()})")
        return json.loads(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)


async def host_session(db: str, turns: int) -> Any:
    from bench_turns import make_core

    core = make_core(url_of(db), turns + 10)
    session = await core.session(SESSION).open()
    result = await session.turn("hello").run()
    assert result.outcome == "completed", result
    return core, session


async def enqueue_run(root: str, count: int, repeat: int) -> dict[str, list[float]]:
    directory = tempfile.mkdtemp(dir=root)
    db = os.path.join(directory, "lash.db")
    core, session = await host_session(db, 1)  # the host: the session open, idle
    try:
        child = Child("enqueue", db, os.path.join(directory, "raw.db"), str(count), str(repeat))
        reply = await asyncio.to_thread(child.read)
        child.stop()
        pending = len(await core.inputs(SESSION))
        expected = 2 * (count + 20)
        assert pending == expected, (pending, expected)
    finally:
        await session.close()
        await core.aclose()
    times: dict[str, list[float]] = reply["times"]
    return times


async def observe_run(root: str, turns: int) -> list[float]:
    directory = tempfile.mkdtemp(dir=root)
    db = os.path.join(directory, "lash.db")
    core, session = await host_session(db, turns)
    committed: dict[str, float] = {}
    store = core.store
    commit = store.commit

    async def timed_commit(session_id: str, **kwargs: Any) -> int:
        revision: int = await commit(session_id, **kwargs)
        turn = kwargs["delta"].turn
        if turn is not None:
            committed[turn.turn_id] = time.monotonic()
        return revision

    store.commit = timed_commit
    watcher = Child("watch", db)
    try:
        ready = await asyncio.to_thread(watcher.read)
        # The watcher's first read of the log ("from now") must precede the first turn.
        await asyncio.sleep(4 * ready["poll"])
        seen: dict[str, float] = {}
        for i in range(turns):
            await asyncio.sleep(random.uniform(0, 0.04))
            result = await session.turn(f"turn {i}").run()
            assert result.outcome == "completed", result
        while len(seen) < turns:
            message = await asyncio.to_thread(watcher.read)
            if message.get("event") == "seen" and message["turn_id"] in committed:
                seen[message["turn_id"]] = message["at"]
    finally:
        watcher.stop()
        await session.close()
        await core.aclose()
    return [(seen[t] - committed[t]) * 1000 for t in seen]


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--enqueues", type=int, default=300, help="per way, per repetition")
    parser.add_argument("--turns", type=int, default=60, help="observed turns per repetition")
    parser.add_argument("--quick", action="store_true", help="3 repetitions, fewer of each")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        role, *rest = args.worker
        if role == "enqueue":
            db, raw_db, count, repeat = rest
            asyncio.run(enqueue_worker(db, raw_db, int(count), int(repeat)))
        else:
            asyncio.run(watch_worker(rest[0]))
        return
    repeats = 3 if args.quick else args.repeats
    count = 100 if args.quick else args.enqueues
    turns = 30 if args.quick else args.turns
    root = tempfile.mkdtemp(prefix="lash-bench-mailbox-")
    print(
        f"bench_mailbox: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"aiosqlite {getattr(aiosqlite, '__version__', '?')}, {os.cpu_count()} CPUs, load "
        f"average {loadavg()}\n  {repeats} repetitions; {count} enqueues per way and "
        f"{turns} observed turns per repetition"
    )
    medians: dict[str, list[float]] = {}
    ratios: list[float] = []
    latencies: list[float] = []
    started = time.perf_counter()
    try:
        for r in range(repeats):
            times = asyncio.run(enqueue_run(root, count, r))
            for name, values in times.items():
                medians.setdefault(name, []).append(statistics.median(values))
            ratios.append(
                statistics.median(times["core.enqueue"]) / statistics.median(times["raw insert"])
            )
            latencies += asyncio.run(observe_run(root, turns))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    print(f"\n(ran {time.perf_counter() - started:.0f} s; load average now {loadavg()})")
    print(
        "\n1. enqueue from another process (ms: median over repetitions of per-repetition medians)"
    )
    for name, values in medians.items():
        print(f"   {name:22s} {med(values):8.3f}")
    enqueue_ratio = med(ratios)
    print(f"   core.enqueue / raw insert, per repetition: {' '.join(f'{x:.2f}' for x in ratios)}")
    print(
        f"   store.enqueue_input / raw insert + commit (info): "
        f"{med(medians['store.enqueue_input']) / med(medians['raw insert + commit']):.2f}"
    )
    ordered = sorted(latencies)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    print(f"\n2. observe latency, commit -> watcher in another process ({len(latencies)} turns)")
    print(
        f"   median {med(latencies):.1f} ms, p90 {p90:.1f} ms, max {ordered[-1]:.1f} ms, "
        f"min {ordered[0]:.1f} ms (the watcher polls every 20 ms)"
    )
    print("\nRESULTS")
    ok_enqueue = enqueue_ratio <= ENQUEUE_TARGET
    ok_observe = med(latencies) <= OBSERVE_TARGET_MS
    print(
        f"   enqueue / raw one-row insert   {enqueue_ratio:6.2f} x   <= {ENQUEUE_TARGET} x   "
        f"{'PASS' if ok_enqueue else 'FAIL'}"
    )
    print(
        f"   observe latency, median        {med(latencies):6.1f} ms  "
        f"<= {OBSERVE_TARGET_MS:.0f} ms  {'PASS' if ok_observe else 'FAIL'}"
    )


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # a benchmark reports, it never fails the caller
        print(f"\nbenchmark aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(0)
