"""The turn after "kernel contract v2" against the code before it and a hand-written loop.

Run: ``.venv/bin/python benchmarks/bench_kernel_v2.py [--repeats 21] [--turns 200] [--quick]
[--old b4fc911] [--new DIR_OR_REF] [--profile]``

Targets (issue 11, "no regression"): the kernel's turn on ``memory://`` (per-turn kernel
overhead: no I/O) and the durable turn on ``sqlite://`` each <= 1.05x the code before the change,
as the median of per-repetition ratios. For information, each is also compared with the fastest
honest hand-written loop (issue 17): plain functions, the history as a list, and for the durable
turn raw aiosqlite writing the turn's rows with one ``executemany`` plus ``commit`` (WAL,
``synchronous=NORMAL``).

Method. The old code is ``git archive``d from ``--old`` (default ``b4fc911``, the commit before
the layout move and the kernel rewrite) into a temporary directory; the new code is this
checkout's working tree (``--new`` takes a directory or another ref). Each variant runs in its
own long-lived worker process (this script with ``--worker``), the same Python and the same
installed dependencies, with ``PYTHONPATH`` set to its tree (each worker reports the ``lash`` it
imported, and the run stops if it is not the intended one). Six workers: {loop, old, new} x
{memory, sqlite}. The workload is bench_turns.py's (its provider plugin, ``echo`` tool and 10
no-op plugins implementing the per-turn hooks; every other builtin disabled): each turn is user
message -> one tool call -> the tool's short result -> final text. After one warm-up session
each, every repetition asks each worker, in a rotating order, for one fresh session of
``--turns`` turns (a fresh core, and for ``sqlite://`` a fresh database file); only one worker
runs at a time. A worker times each ``await session.turn(text).run()`` (it returns once the turn
is committed) with ``time.perf_counter_ns`` (garbage collector on, as in production), and the
process CPU time of the whole session. A repetition's figure for a variant is the median of its
per-turn times; ``new/old`` is computed per repetition and the target is the median of those
ratios (each repetition's ratios are printed too).

The hand-written loop: ``await model(history)`` (a fake model returning the same scripted
replies: one tool call, then text), the tool called directly, every message a dict appended to
the history list; durable: ``json.dumps`` of the turn's 4 messages, one ``executemany`` of
``(session_id, seq, data)`` rows and ``commit`` (aiosqlite; two round trips to its thread).

Exits 0 whatever the result: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = 1.05
DEFAULT_OLD = "b4fc911"  # before "Layout: private subpackages" (714fcd6) and "Kernel contract v2"
STORES = ("memory", "sqlite")


# -- worker side --------------------------------------------------------------------------------
# Runs under either tree: it uses only the API both have (bench_turns.py's workload and
# LashCore's constructor), imported after PYTHONPATH chose the lash.


class Run:
    """One session of a variant, advanced a chunk of turns at a time (``advance``); each turn
    timed, and the process CPU time of the turns summed."""

    def __init__(self, store: str, directory: str, turns: int, run: int) -> None:
        self.store, self.turns = store, turns
        self.path = os.path.join(directory, f"run{run}.db")
        self.done = 0
        self.ns: list[int] = []
        self.cpu_ns = 0

    async def open(self) -> None:
        raise NotImplementedError

    async def turn(self, i: int) -> None:
        raise NotImplementedError

    async def close(self) -> int:
        """Close; return the rows (nodes, messages) the session holds, for the report."""
        raise NotImplementedError

    async def advance(self, n: int) -> None:
        cpu0 = time.process_time_ns()
        for i in range(self.done, min(self.done + n, self.turns)):
            t0 = time.perf_counter_ns()
            await self.turn(i)
            self.ns.append(time.perf_counter_ns() - t0)
            self.done += 1
        self.cpu_ns += time.process_time_ns() - cpu0

    async def finish(self) -> dict[str, Any]:
        rows = await self.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(self.path + suffix):
                os.remove(self.path + suffix)
        return {"ns": self.ns, "cpu_ns": self.cpu_ns, "rows": rows}


class LashRun(Run):
    """The kernel: ``await session.turn(text).run()``, which returns once the turn is committed."""

    async def open(self) -> None:
        from bench_turns import make_core

        url = "memory://" if self.store == "memory" else f"sqlite:///{self.path}"
        self.core = make_core(url, self.turns)
        self.session = await self.core.session("bench").open()
        # "held" (bench_loop.py's information row): sqlite://, every turn in one hold
        # (``Session.hold``), so each commits in one transaction.
        self.hold = self.session.hold() if self.store == "held" else None
        if self.hold is not None:
            await self.hold.__aenter__()
        gc.collect()

    async def turn(self, i: int) -> None:
        result = await self.session.turn(f"turn {i}").run()
        if result.outcome != "completed":
            raise AssertionError(result)

    async def close(self) -> int:
        nodes = len(self.session.nodes)
        if self.hold is not None:
            await self.hold.__aexit__(None, None, None)
        await self.session.close()
        await self.core.aclose()
        return nodes


# The hand-written loop -------------------------------------------------------------------------

LOOP_INSERT = "INSERT INTO messages (session_id, seq, data) VALUES (?, ?, ?)"


async def model(history: list[dict[str, Any]], replies: Iterator[dict[str, Any]]) -> Any:
    """The fake model: the next scripted reply (a real client would be awaited too)."""
    return next(replies)


async def loop_turn(
    history: list[dict[str, Any]], text: str, replies: Iterator[dict[str, Any]], tools: Any
) -> None:
    history.append({"role": "user", "content": text})
    while True:
        reply = await model(history, replies)
        calls = reply.get("tool_calls", [])
        history.append(
            {
                "role": "assistant",
                "content": reply.get("text", ""),
                "tool_calls": calls,
                "usage": reply["usage"],
            }
        )
        if not calls:
            return
        for n, call in enumerate(calls):
            content = await tools[call["name"]](**call["arguments"])
            history.append({"role": "tool", "tool_call_id": f"call_{n}", "content": content})


class LoopRun(Run):
    """The hand-written loop; durable: the turn's messages, one executemany + commit."""

    async def open(self) -> None:
        import aiosqlite
        from bench_turns import echo, script

        self.tools = {"echo": echo}
        self.replies = iter(script(self.turns))
        self.history: list[dict[str, Any]] = []
        self.conn: aiosqlite.Connection | None = None
        if self.store == "sqlite":
            self.conn = conn = await aiosqlite.connect(self.path)
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute(
                "CREATE TABLE messages (session_id TEXT NOT NULL, seq INTEGER NOT NULL, "
                "data TEXT NOT NULL, PRIMARY KEY (session_id, seq))"
            )
            await conn.commit()
        gc.collect()

    async def turn(self, i: int) -> None:
        history = self.history
        start = len(history)
        await loop_turn(history, f"turn {i}", self.replies, self.tools)
        if self.conn is not None:
            rows = [
                ("bench", seq, json.dumps(message))
                for seq, message in enumerate(history[start:], start)
            ]
            await self.conn.executemany(LOOP_INSERT, rows)
            await self.conn.commit()

    async def close(self) -> int:
        if self.conn is None:
            return len(self.history)
        async with self.conn.execute("SELECT count(*) FROM messages") as cursor:
            row = await cursor.fetchone()
        await self.conn.close()
        assert row is not None and row[0] == len(self.history), (row, len(self.history))
        return int(row[0])


def profile_text(kind: str, store: str, directory: str, turns: int) -> str:
    """cProfile of one whole session (open, every turn, close), top functions by own time."""

    async def session() -> None:
        run = (LashRun if kind == "lash" else LoopRun)(store, directory, turns, -1)
        await run.open()
        await run.advance(turns)
        await run.finish()

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(session())
    profiler.disable()
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("tottime").print_stats(25)
    return buf.getvalue()


def worker(kind: str, store: str, directory: str) -> None:
    """Answer the parent's commands (``open``, ``advance``, ``finish``, ``profile``,
    ``quit``), one JSON line each, on stdout; the session lives in one event loop throughout."""
    sys.path.insert(0, HERE)  # bench_turns.py
    out = sys.stdout
    lash_file = None
    if kind == "lash":
        import lash

        lash_file = lash.__file__
    out.write(json.dumps({"lash": lash_file, "pid": os.getpid()}) + "\n")
    out.flush()
    loop = asyncio.new_event_loop()
    run: Run | None = None
    for line in sys.stdin:
        command = json.loads(line)
        reply: Any = None
        if command["cmd"] == "quit":
            break
        if command["cmd"] == "open":
            run = (LashRun if kind == "lash" else LoopRun)(
                store, directory, command["turns"], command["run"]
            )
            loop.run_until_complete(run.open())
        elif command["cmd"] == "advance":
            assert run is not None
            loop.run_until_complete(run.advance(command["n"]))
        elif command["cmd"] == "finish":
            assert run is not None
            reply = loop.run_until_complete(run.finish())
            run = None
        else:  # profile
            reply = {"text": profile_text(kind, store, directory, command["turns"])}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    loop.close()


# -- parent side --------------------------------------------------------------------------------


def tree_of(spec: str, root: str, label: str) -> tuple[str, str]:
    """``(directory, description)`` of the code ``spec`` names: a directory as it is, or a git
    ref exported (``git archive``) into ``root``."""
    if os.path.isdir(spec):
        return os.path.abspath(spec), f"{os.path.abspath(spec)} (working tree)"
    # A tree-ish: a commit, or a tree (e.g. what ``git merge-tree --write-tree A B`` prints).
    tree = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", f"{spec}^{{tree}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", ROOT, "archive", "--format=tar", tree], check=True, capture_output=True
    ).stdout
    target = os.path.join(root, label)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target, f"git {spec} (tree {tree}, exported to {target})"


class Worker:
    def __init__(self, name: str, kind: str, store: str, tree: str, directory: str) -> None:
        self.name, self.kind, self.store = name, kind, store
        env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
        env["PYTHONPATH"] = tree
        self.process = subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                kind,
                "--store",
                store,
                "--dir",
                directory,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=directory,
            env=env,
            text=True,
        )
        hello = self._read()
        self.lash = hello["lash"]
        if kind == "lash" and not os.path.realpath(self.lash).startswith(os.path.realpath(tree)):
            raise RuntimeError(f"worker {name} imported {self.lash}, not the lash of {tree}")

    def _read(self) -> Any:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited (status {self.process.wait()})")
        return json.loads(line)

    def ask(self, **command: Any) -> Any:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.ask(cmd="quit")
            except (BrokenPipeError, RuntimeError, ValueError):
                pass
            self.process.wait(timeout=30)


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _ms(ns: float) -> float:
    return ns / 1e6


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{ordered[0]:.2f}-{ordered[-1]:.2f}"


def interleave(
    workers: list[Worker], repeats: int, turns: int, chunk: int
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    """Run ``repeats`` repetitions (after one warm-up) of a fresh ``turns``-turn session in each
    worker, advanced ``chunk`` turns at a time in a rotating, alternating order; return, per
    worker, each repetition's median turn (ms), its mean process CPU per turn (ms), and the
    rows its last session held."""
    per: dict[str, list[float]] = {w.name: [] for w in workers}
    cpu: dict[str, list[float]] = {w.name: [] for w in workers}
    rows: dict[str, int] = {}
    chunks = -(-turns // chunk)
    for r in range(repeats + 1):  # repetition 0 warms up (imports, converters, pages)
        for w in workers:
            w.ask(cmd="open", turns=turns, run=r)
        for c in range(chunks):
            k = (r + c) % len(workers)
            order = workers[k:] + workers[:k]
            for w in order if c % 2 else order[::-1]:
                w.ask(cmd="advance", n=chunk)
        for w in workers:
            reply = w.ask(cmd="finish")
            assert len(reply["ns"]) == turns, (w.name, len(reply["ns"]))
            if r == 0:
                continue
            per[w.name].append(_ms(statistics.median(reply["ns"])))
            cpu[w.name].append(_ms(reply["cpu_ns"] / turns))
            rows[w.name] = reply["rows"]
    return per, cpu, rows


def measure(
    variants: list[tuple[str, str, str, str]],
    root: str,
    repeats: int,
    turns: int,
    chunk: int,
    *,
    profile: bool,
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int], float, dict[str, str]]:
    """Start one worker per variant ``(name, kind, store, tree)`` (each in a directory of its own
    under ``root``), run :func:`interleave`, and with ``profile`` a cProfile of one session in
    each lash worker; then stop the workers. Returns interleave's figures, the seconds it took
    and the profiles."""
    workers: list[Worker] = []
    try:
        for name, kind, store, tree in variants:
            workers.append(Worker(name, kind, store, tree, tempfile.mkdtemp(dir=root)))
        started = time.perf_counter()
        per, cpu, rows = interleave(workers, repeats, turns, chunk)
        elapsed = time.perf_counter() - started
        profiles = {
            w.name: w.ask(cmd="profile", turns=turns)["text"]
            for w in workers
            if profile and w.kind == "lash"
        }
    finally:
        for w in workers:
            w.close()
    return per, cpu, rows, elapsed, profiles


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="repetitions (default 21)")
    parser.add_argument("--turns", type=int, default=200, help="turns per session (default 200)")
    parser.add_argument("--quick", action="store_true", help="5 repetitions, a smoke run")
    parser.add_argument(
        "--chunk", type=int, default=10, help="turns a worker runs per turn of the rotation"
    )
    parser.add_argument(
        "--old", default=DEFAULT_OLD, help=f"ref, tree or directory (default {DEFAULT_OLD})"
    )
    parser.add_argument(
        "--new", default=ROOT, help="ref, tree or directory (default: this checkout)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one session of each")
    parser.add_argument("--worker", choices=("lash", "loop"), help=argparse.SUPPRESS)
    parser.add_argument("--store", choices=(*STORES, "held"), help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.store, args.dir)
        return
    repeats = 5 if args.quick else max(args.repeats, 3)
    root = tempfile.mkdtemp(prefix="lash-bench-v2-")
    try:
        old_tree, old_desc = tree_of(args.old, root, "old")
        new_tree, new_desc = tree_of(args.new, root, "new")
        print(
            f"bench_kernel_v2: Python {platform.python_version()} {platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average {_loadavg()}\n  old: {old_desc}\n"
            f"  new: {new_desc}\n  {repeats} repetitions x {args.turns} turns per variant, "
            f"advanced {args.chunk} turns at a time in rotating order, one worker process each"
        )
        variants = [
            (f"{label} {store}", kind, store, tree)
            for store in STORES
            for kind, label, tree in (
                ("loop", "loop", new_tree),
                ("lash", "old", old_tree),
                ("lash", "new", new_tree),
            )
        ]
        per, cpu, rows, elapsed, profiles = measure(
            variants, root, repeats, args.turns, args.chunk, profile=args.profile
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def ratios(a: str, b: str, table: dict[str, list[float]] = per) -> list[float]:
        return [x / y for x, y in zip(table[a], table[b], strict=True)]

    med = statistics.median
    print(f"\n(ran {elapsed:.0f} s; load average now {_loadavg()})")
    print("\nper-turn time, ms: median over repetitions of each repetition's median turn")
    print(
        f"  {'':14s}{'memory://':>12s}{'sqlite://':>12s}   "
        "(mean process CPU per turn, ms: memory / sqlite)"
    )
    for label in ("loop", "old", "new"):
        m, s = f"{label} memory", f"{label} sqlite"
        print(
            f"  {label:14s}{med(per[m]):12.4f}{med(per[s]):12.4f}   "
            f"({med(cpu[m]):.4f} / {med(cpu[s]):.4f})"
        )
    print(
        f"  rows per session: lash nodes {rows['new memory']} (old {rows['old memory']}); "
        f"loop messages {rows['loop sqlite']} (sqlite rows written)"
    )
    print("\nper-repetition ratios (median, min-max; then every repetition in order)")
    verdicts = []
    for store in STORES:
        new_old = ratios(f"new {store}", f"old {store}")
        ok = med(new_old) <= TARGET
        verdicts.append(ok)
        print(
            f"  new/old  {store:7s} {med(new_old):6.3f}  ({_spread(new_old)})   target <= "
            f"{TARGET}  {'PASS' if ok else 'FAIL'}\n      {' '.join(f'{x:.2f}' for x in new_old)}"
        )
        cpu_new_old = ratios(f"new {store}", f"old {store}", cpu)
        print(
            f"  new/old  {store:7s} CPU per turn {med(cpu_new_old):.3f}  "
            f"({_spread(cpu_new_old)})   info"
        )
    print("  against the hand-written loop (information; issue 17's targets in brackets):")
    for a, b, note in (
        ("sqlite", "sqlite", "durable turn / the loop's durable turn [<= 2.5x]"),
        ("memory", "sqlite", "kernel on memory:// / the loop's whole durable turn [<= 1.5x]"),
        ("memory", "memory", "kernel on memory:// / the loop without I/O"),
    ):
        for label in ("old", "new"):
            vs_loop = ratios(f"{label} {a}", f"loop {b}")
            print(f"    {label} {a}/loop {b:7s} {med(vs_loop):8.2f}  ({_spread(vs_loop)})   {note}")
    print(
        f"\nRESULT: memory:// {'PASS' if verdicts[0] else 'FAIL'}, sqlite:// "
        f"{'PASS' if verdicts[1] else 'FAIL'} (new/old <= {TARGET}, median of per-repetition "
        "ratios)"
    )
    for name, text in profiles.items():
        print(f"\n==== cProfile: {name}, one session of {args.turns} turns ====\n{text}")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # a benchmark reports, it never fails the caller
        print(f"\nbenchmark aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(0)
