"""Background processes on ``sqlite://``: real worker processes on one file.

Run: ``.venv/bin/python benchmarks/bench_processes.py [--processes 10000] [--repeats 3]
[--quick]``

Targets (issue 13, "Performance"):

1. **Throughput** of N (10,000) no-op processes through 2 worker processes on one SQLite file
   >= 0.5x a raw aiosqlite claim-run-complete loop of the same rows in 2 processes, measured in
   the same run. Each worker is a real OS process (this script, ``--worker``) running
   ``core.run_worker()`` (what ``lash worker`` runs; its defaults: concurrency 4, sessions on,
   poll 1 s) over a kind whose ``run`` returns at once. The N records are started with
   ``core.processes.start`` before the workers are released (``GO``); the figure is N / (the
   last ``finished_at`` - the release). The raw loop, on a file of its own with the store's
   settings (WAL, ``synchronous=NORMAL``, the same busy timeout): one ``UPDATE ... RETURNING``
   that claims the oldest pending row (its own transaction), the no-op run, one ``UPDATE`` that
   finishes it (its own transaction), one at a time; a claim that finds nothing sleeps the
   same poll. The variants alternate their order per repetition; the target is the median of
   the per-repetition ratios. Also printed: each worker's share of the rows (one worker
   starving the other shows there) and the queue wait of the burst (start -> running: the rows
   were all queued at the release, so this is the backlog, for information).
2. **Start latency** (start -> running, ``started_at - created_at`` of each record, one clock):
   after the burst, the same workers stay up and M processes are started from the parent, one
   every 1/rate seconds; p50 and p99. No target: a start in another process is seen at a
   worker's next poll (SQLite has no notification across processes), so this is mostly the
   poll interval; the raw loop, polling alike, is printed beside it.
3. **Takeover** within lease TTL + 1 s: two workers (lease TTL 2 s, the default poll), a
   rerunnable process that runs until killed; its worker is SIGKILLed; the time from the kill
   to the process's ``started_at`` of its second attempt, several times; with workers that
   serve processes only and with workers that also drain sessions (the default).
4. **Idle**: one worker (defaults) on a file with nothing to do, for 10 s: <= 1 store query a
   second. Counted inside the worker: calls of the store's methods, and SQL statements (the
   ``sqlite3`` trace callback of both of the store's connections).

Exits 0 whatever the result: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any

import aiosqlite

import lash

THROUGHPUT_TARGET = 0.5
TAKEOVER_TTL = 2.0
IDLE_TARGET = 1.0  # store queries a second
FIRST_ROUND = 0.5  # s: an idle worker's first round is over by then
POLL = 1.0  # the workers' poll (run_worker's and lash worker's default)
BUSY_TIMEOUT = 5000  # ms, the store's default

lash_plugin = lash.PluginMeta(name="benchprocesses")


async def noop(context: lash.ProcessContext, payload: Any) -> Any:
    """Does nothing: the benchmark measures what running a process costs around its work."""
    return payload


async def hang(context: lash.ProcessContext, payload: Any) -> Any:
    """Runs until its worker dies (the takeover)."""
    await asyncio.sleep(3600)


@lash.hookimpl
def register_process_kinds(register: lash.RegisterProcessKind) -> None:
    register("noop", noop, recovery=lash.RecoveryDisposition.RERUNNABLE)
    register("hang", hang, recovery=lash.RecoveryDisposition.RERUNNABLE, max_attempts=100)


RAW_SCHEMA = (
    """CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL, status TEXT NOT NULL, payload TEXT NOT NULL, result TEXT,
        owner TEXT, token INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
        expires_at REAL, created_at REAL NOT NULL, started_at REAL, finished_at REAL)""",
    "CREATE INDEX jobs_pending ON jobs (seq) WHERE status = 'pending'",
)
RAW_CLAIM = """UPDATE jobs SET status = 'running', owner = :owner, token = token + 1,
    attempts = attempts + 1, expires_at = :expires, started_at = :now
    WHERE seq = (SELECT seq FROM jobs WHERE status = 'pending' ORDER BY seq LIMIT 1)
    RETURNING id, token, payload"""
RAW_FINISH = """UPDATE jobs SET status = 'succeeded', result = :result, finished_at = :now,
    expires_at = NULL WHERE id = :id AND token = :token AND status = 'running'"""
RAW_INSERT = "INSERT INTO jobs (id, kind, status, payload, created_at) VALUES (?, ?, ?, ?, ?)"


def url_of(db: str) -> str:
    return f"sqlite:///{db}"


def say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


def make_core(db: str) -> lash.LashCore:
    from lash_plugins_builtin import stores

    return lash.LashCore(plugins=[stores, sys.modules[__name__]], builtins=(), store=url_of(db))


# -- worker processes ------------------------------------------------------------------------


class Counted:
    """Counts the store's method calls and the SQL statements of its connections."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.times: list[tuple[str, float]] = []  # the first calls, and when (monotonic)
        self.statements = 0

    def traced(self, statement: str) -> None:
        self.statements += 1  # (the GIL makes the increment safe enough for a count)

    async def install(self, store: Any) -> None:
        for name in dir(type(store)):
            method = getattr(store, name)
            if name.startswith("_") or not asyncio.iscoroutinefunction(method):
                continue
            setattr(store, name, self.counting(name, method))
        await store._conn.set_trace_callback(self.traced)  # the worker thread's connection
        open_inline = store._open_inline

        def traced_inline() -> sqlite3.Connection:
            direct: sqlite3.Connection = open_inline()
            direct.set_trace_callback(self.traced)
            return direct

        store._open_inline = traced_inline

    def counting(self, name: str, method: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if len(self.times) < 1000:
                self.times.append((name, time.monotonic()))
            return await method(*args, **kwargs)

        return counted


def stdin_line() -> asyncio.Future[str]:
    """The next line of stdin, read on a daemon thread (the loop stays free)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def read() -> None:
        line = sys.stdin.readline().strip()

        def answer() -> None:
            if not future.done():
                future.set_result(line)

        loop.call_soon_threadsafe(answer)

    threading.Thread(target=read, daemon=True).start()
    return future


async def lash_worker(db: str, ttl: float, poll: float, sessions: bool) -> None:
    """``core.run_worker()`` between ``GO`` and ``STOP`` (stdin); then the counts."""
    core = make_core(db)
    await core.store.open()  # type: ignore[attr-defined]
    counted = Counted()
    await counted.install(core.store)
    say(ready=True, owner=core.owner_id, pid=os.getpid())
    if await stdin_line() != "GO":
        return
    counted.calls.clear()
    counted.times.clear()
    counted.statements = 0
    started = time.monotonic()
    task = asyncio.ensure_future(core.run_worker(lease_ttl=ttl, poll=poll, sessions=sessions))
    stop = stdin_line()
    waited: list[asyncio.Future[Any]] = [task, stop]
    await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    elapsed = time.monotonic() - started
    calls, statements = dict(counted.calls), counted.statements
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
    await core.aclose()
    times = [(name, at - started) for name, at in counted.times]
    say(calls=calls, statements=statements, elapsed=elapsed, times=times)


async def raw_worker(db: str, name: str, poll: float) -> None:
    """The hand-written loop: claim (one UPDATE ... RETURNING), run, finish (one UPDATE)."""
    conn = await aiosqlite.connect(db, isolation_level=None)
    await conn.execute("PRAGMA synchronous = NORMAL")
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT}")
    say(ready=True, owner=name, pid=os.getpid())
    if await stdin_line() != "GO":
        return
    stop = stdin_line()
    done = 0
    while not stop.done():
        now = time.time()
        rows = list(
            await conn.execute_fetchall(RAW_CLAIM, {"owner": name, "expires": now + 30, "now": now})
        )
        if not rows:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await asyncio.shield(stop)
            continue
        job_id, token, payload = rows[0]
        result = await noop(None, json.loads(payload))  # type: ignore[arg-type]
        await conn.execute(
            RAW_FINISH,
            {"result": json.dumps(result), "now": time.time(), "id": job_id, "token": token},
        )
        done += 1
    await conn.close()
    say(calls={"done": done}, statements=2 * done, elapsed=0)


# -- the parent ------------------------------------------------------------------------------


class Child:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", *args],
            stdin=subprocess.PIPE,
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

    def send(self, line: str) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> Any:
        """STOP, and its last report (``None``: it had died)."""
        if self.process.poll() is not None:
            return None
        self.send("STOP")
        reply = self.read()
        self.process.wait(timeout=30)
        return reply


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Reader:
    """Reads the benchmark's file from the parent (its own connection, reads only)."""

    def __init__(self, db: str, table: str) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        self.table = table

    def unfinished(self) -> int:
        (row,) = self.conn.execute(f"SELECT count(*) FROM {self.table} WHERE finished_at IS NULL")
        return int(row[0])

    async def until_finished(self) -> None:
        while self.unfinished():
            await asyncio.sleep(0.05)

    def times(self, after: float = 0.0) -> list[tuple[float, float, float, str]]:
        return list(
            self.conn.execute(
                f"SELECT created_at, started_at, finished_at, owner FROM {self.table} "
                "WHERE created_at >= ? ORDER BY seq",
                (after,),
            )
        )


async def one_run(
    variant: str, root: str, count: int, stream: int, rate: float, workers: int
) -> dict[str, Any]:
    """A burst of ``count`` processes through ``workers`` workers, then a stream of ``stream``."""
    directory = tempfile.mkdtemp(dir=root)
    db = os.path.join(directory, "bench.db")
    core = None
    raw = None
    if variant == "lash":
        core = make_core(db)
        await core.store.open()  # type: ignore[attr-defined]
        children = [Child("lash", db, "30", str(POLL), "sessions") for _ in range(workers)]
        table = "processes"
    else:
        raw = await aiosqlite.connect(db, isolation_level=None)
        await raw.execute("PRAGMA journal_mode = WAL")
        await raw.execute("PRAGMA synchronous = NORMAL")
        for sql in RAW_SCHEMA:
            await raw.execute(sql)
        children = [Child("raw", db, f"raw-{i}", str(POLL)) for i in range(workers)]
        table = "jobs"

    async def start(n: int) -> None:
        if core is not None:
            await core.processes.start("noop", {"n": n})
        else:
            assert raw is not None
            await raw.execute(
                RAW_INSERT, (f"job-{n}", "noop", "pending", json.dumps({"n": n}), time.time())
            )

    t0 = time.perf_counter()
    if raw is not None:  # the fastest honest load: one transaction
        await raw.execute("BEGIN")
        await raw.executemany(
            RAW_INSERT,
            [
                (f"job-{n}", "noop", "pending", json.dumps({"n": n}), time.time())
                for n in range(count)
            ],
        )
        await raw.execute("COMMIT")
    else:
        for n in range(count):
            await start(n)
    load = time.perf_counter() - t0
    reader = Reader(db, table)
    try:
        for child in children:
            await asyncio.to_thread(child.read)
        released = time.time()
        for child in children:
            child.send("GO")
        await reader.until_finished()
        burst = reader.times()
        # The stream: one start every 1/rate s, from this process.
        streamed_from = time.time()
        t0 = time.perf_counter()
        for n in range(count, count + stream):
            await start(n)
            pause = t0 + (n - count + 1) / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
        await reader.until_finished()
        streamed = reader.times(after=streamed_from)
        reports = [child.stop() for child in children]
    finally:
        for child in children:
            if child.process.poll() is None:
                child.kill()
        reader.conn.close()
        if core is not None:
            await core.aclose()
        if raw is not None:
            await raw.close()
        shutil.rmtree(directory, ignore_errors=True)
    last = max(f for _, _, f, _ in burst)
    owners: dict[str, int] = {}
    for *_, owner in burst:
        owners[owner] = owners.get(owner, 0) + 1
    return {
        "throughput": count / (last - released),
        "load": load,
        "wait": [(s - released) * 1000 for _, s, _, _ in burst],
        "latency": [(s - c) * 1000 for c, s, _, _ in streamed],
        "share": max(owners.values()) / count,
        "reports": reports,
    }


async def takeover(root: str, times: int, sessions: bool) -> list[float]:
    """SIGKILL the worker of a running rerunnable process; seconds until it runs again."""
    directory = tempfile.mkdtemp(dir=root)
    db = os.path.join(directory, "takeover.db")
    core = make_core(db)
    await core.store.open()  # type: ignore[attr-defined]
    children: list[Child] = []
    owners: dict[str, Child] = {}

    async def spawn() -> None:
        child = Child("lash", db, str(TAKEOVER_TTL), str(POLL), "sessions" if sessions else "-")
        ready = await asyncio.to_thread(child.read)
        child.send("GO")
        children.append(child)
        owners[ready["owner"]] = child

    took: list[float] = []
    try:
        await spawn()
        await spawn()
        for _ in range(times):
            record = await core.processes.start("hang", None)
            while (found := await core.processes.get(record.id)) is None or found.owner is None:
                await asyncio.sleep(0.02)
            victim = next(c for o, c in owners.items() if found.owner.startswith(o + "/"))
            killed = time.time()
            victim.kill()
            while True:
                again = await core.processes.get(record.id)
                assert again is not None
                if again.attempts >= 2 and again.status == "running":
                    break
                await asyncio.sleep(0.02)
            assert again.started_at is not None
            took.append(again.started_at - killed)
            await spawn()  # two workers again for the next round
    finally:
        for child in children:
            if child.process.poll() is None:
                child.kill()
        await core.aclose()
        shutil.rmtree(directory, ignore_errors=True)
    return took


async def idle(root: str, seconds: float) -> dict[str, Any]:
    """One worker (defaults) with nothing to do for ``seconds``: its store calls and SQL."""
    directory = tempfile.mkdtemp(dir=root)
    db = os.path.join(directory, "idle.db")
    core = make_core(db)
    await core.store.open()  # type: ignore[attr-defined]
    await core.aclose()
    child = Child("lash", db, "30", str(POLL), "sessions")
    try:
        await asyncio.to_thread(child.read)
        child.send("GO")
        await asyncio.sleep(seconds)
        report: dict[str, Any] = await asyncio.to_thread(child.stop)
    finally:
        if child.process.poll() is None:
            child.kill()
        shutil.rmtree(directory, ignore_errors=True)
    return report


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--processes", type=int, default=10_000, help="per burst")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream", type=int, default=500, help="processes streamed")
    parser.add_argument("--rate", type=float, default=250.0, help="starts a second, streamed")
    parser.add_argument("--takeovers", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=2, help="worker processes of each variant (target: 2)"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="seconds idle")
    parser.add_argument("--quick", action="store_true", help="2,000 processes, 1 repetition")
    parser.add_argument("--only", choices=("throughput", "takeover", "idle"))
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        role, db, *rest = args.worker
        if role == "lash":
            job = lash_worker(db, float(rest[0]), float(rest[1]), rest[2] == "sessions")
            profile_to = os.environ.get("BENCH_PROFILE")
            if profile_to:  # --profile: this worker's own time, by function
                import cProfile

                profiler = cProfile.Profile()
                profiler.runcall(asyncio.run, job)
                profiler.dump_stats(os.path.join(profile_to, f"{os.getpid()}.prof"))
            else:
                asyncio.run(job)
        else:
            asyncio.run(raw_worker(db, rest[0], float(rest[1])))
        return
    count, repeats, takeovers, idle_for, stream = (
        (2000, 1, 2, 5.0, 200)
        if args.quick
        else (args.processes, args.repeats, args.takeovers, args.idle, args.stream)
    )
    root = tempfile.mkdtemp(prefix="lash-bench-processes-")
    print(
        f"bench_processes: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
        f"aiosqlite {getattr(aiosqlite, '__version__', '?')}, {os.cpu_count()} CPUs, load "
        f"average {loadavg()}\n  {repeats} repetitions of {count} processes through {args.workers} "
        f"workers, then {stream} streamed at {args.rate:g}/s; workers poll every {POLL:g} s"
    )
    began = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {"lash": [], "raw": []}
    ratios: list[float] = []
    took: list[float] = []
    took_sessions: list[float] = []
    quiet: dict[str, Any] | None = None
    try:
        if args.only in (None, "throughput"):
            for r in range(repeats):
                order = ["lash", "raw"] if r % 2 == 0 else ["raw", "lash"]
                for variant in order:
                    runs[variant].append(
                        asyncio.run(one_run(variant, root, count, stream, args.rate, args.workers))
                    )
                ratios.append(runs["lash"][-1]["throughput"] / runs["raw"][-1]["throughput"])
        if args.only in (None, "takeover"):
            took = asyncio.run(takeover(root, takeovers, sessions=False))
            took_sessions = asyncio.run(takeover(root, takeovers, sessions=True))
        if args.only in (None, "idle"):
            quiet = asyncio.run(idle(root, idle_for))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = statistics.median
    print(f"\n(ran {time.perf_counter() - began:.0f} s; load average now {loadavg()})")
    results: list[tuple[str, str, str, bool]] = []
    if ratios:
        print(
            f"\n1. {count} no-op processes through {args.workers} worker processes "
            "(medians over repetitions)"
        )
        print("   variant  processes/s  busier worker's share  load (s)  queue wait p50/p99 ms")
        for variant, rows in runs.items():
            waits = [x for run in rows for x in run["wait"]]
            print(
                f"   {variant:7s}  {med(r['throughput'] for r in rows):11.0f}  "
                f"{med(r['share'] for r in rows):21.2f}  {med(r['load'] for r in rows):8.2f}  "
                f"{percentile(waits, 0.5):9.0f} / {percentile(waits, 0.99):.0f}"
            )
        print(f"   lash / raw, per repetition: {' '.join(f'{x:.2f}' for x in ratios)}")
        calls: dict[str, int] = {}
        for run in runs["lash"]:
            for report in run["reports"]:
                for name, n in (report or {}).get("calls", {}).items():
                    calls[name] = calls.get(name, 0) + n
        per = count + stream
        print(
            "   lash store calls per process: "
            + ", ".join(
                f"{name} {n / (per * len(runs['lash'])):.2f}" for name, n in sorted(calls.items())
            )
        )
        print(f"\n2. start latency, {stream} started at {args.rate:g}/s from another process (ms)")
        for variant, rows in runs.items():
            lat = [x for run in rows for x in run["latency"]]
            print(
                f"   {variant:7s}  p50 {percentile(lat, 0.5):7.1f}  "
                f"p99 {percentile(lat, 0.99):7.1f}  max {max(lat):7.1f}"
            )
        ratio = med(ratios)
        results.append(
            (
                "throughput, lash / raw loop",
                f"{ratio:6.2f} x",
                f">= {THROUGHPUT_TARGET} x",
                ratio >= THROUGHPUT_TARGET,
            )
        )
    if took:
        print(
            f"\n3. takeover after SIGKILL, lease TTL {TAKEOVER_TTL:g} s, poll {POLL:g} s\n"
            f"   process-only workers (--no-sessions): {' '.join(f'{t:.2f}' for t in took)} s\n"
            "   workers that also drain sessions (the default; an idle round claims and\n"
            f"   looks for sessions in one query): {' '.join(f'{t:.2f}' for t in took_sessions)} s"
        )
        for label, times in (("--no-sessions", took), ("--sessions", took_sessions)):
            results.append(
                (
                    f"takeover, slowest ({label})",
                    f"{max(times):6.2f} s",
                    f"<= {TAKEOVER_TTL + 1:g} s",
                    max(times) <= TAKEOVER_TTL + 1,
                )
            )
    if quiet is not None:
        elapsed = quiet["elapsed"]
        n_calls = sum(quiet["calls"].values())
        # Its first round (at ~0 s) sweeps, claims and looks for sessions at once; the target
        # is the steady rate after it.
        steady = [at for _, at in quiet["times"] if FIRST_ROUND <= at < elapsed]
        rate = len(steady) / (elapsed - FIRST_ROUND)
        print(
            f"\n4. an idle worker, {elapsed:.1f} s: {n_calls} store calls "
            f"({', '.join(f'{k} {v}' for k, v in sorted(quiet['calls'].items()))}), "
            f"{quiet['statements']} SQL statements; after its first round (from "
            f"{FIRST_ROUND:g} s): {len(steady)} calls in {elapsed - FIRST_ROUND:.1f} s"
        )
        results.append(
            ("idle worker, store queries", f"{rate:6.2f} /s", f"<= {IDLE_TARGET:g} /s", rate <= 1)
        )
    print("\nRESULTS")
    for what, figure, target, ok in results:
        print(f"   {what:30s} {figure:10s} {target:10s} {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # a benchmark reports, it never fails the caller
        print(f"\nbenchmark aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(0)
