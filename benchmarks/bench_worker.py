"""An idle worker's store queries per second, and no-op processes through one worker.

Run: ``.venv/bin/python benchmarks/bench_worker.py [--idle 10] [--processes 2000]
[--concurrency 8]``

Idle (issue 13: "an idle worker makes <= 1 store query per second"): a worker with the default
``poll`` (1 s), sessions on, runs for ``--idle`` seconds on a fresh SQLite file with nothing to
do; every call of a ``Store`` method is counted (a proxy in front of the SQLite store), and the
figure is calls per second after the first round.

Throughput, for information (the issue's benchmark with two worker processes and a raw
aiosqlite baseline is separate): ``--processes`` no-op processes are started by the host, then
one in-process worker (``--concurrency``) runs them all on a fresh SQLite file; reported are
processes per second and the median and p99 time from start to running (``started_at -
created_at``). Exits 0 whatever the result: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lash
from lash_plugins_builtin import standard, stores


class Counting:
    """A store proxy counting every call of a coroutine method."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not callable(value) or name.startswith("_"):
            return value

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await value(*args, **kwargs)

        return counted


class Noop:
    lash_plugin = lash.PluginMeta(name="noop")

    @lash.hookimpl
    def register_process_kinds(self, register: lash.RegisterProcessKind) -> None:
        async def noop(context: lash.ProcessContext, payload: Any) -> None:
            return None

        register("noop", noop)


def build(db: Path) -> tuple[lash.LashCore, Counting]:
    core = lash.LashCore(plugins=[standard, stores, Noop()], builtins=(), store=f"sqlite:///{db}")
    counting = Counting(core.store)
    core._store = counting  # a benchmark's probe
    return core, counting


async def idle(seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        core, counting = build(Path(tmp) / "idle.db")
        async with core:
            worker = asyncio.create_task(core.run_worker())
            await asyncio.sleep(1.0)  # the first round (claim, sessions, sweep) is not idling
            before = counting.calls
            await asyncio.sleep(seconds)
            calls = counting.calls - before
            worker.cancel()
            try:
                await worker
            except asyncio.CancelledError:
                pass
        return calls / seconds


async def throughput(count: int, concurrency: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        core, _ = build(Path(tmp) / "throughput.db")
        async with core:
            for _ in range(count):
                await core.processes.start("noop")
            began = time.perf_counter()
            await core.run_worker(once=True, concurrency=concurrency, sessions=False)
            took = time.perf_counter() - began
            records = await core.processes.list(limit=count)
        latencies = sorted((r.started_at or 0.0) - r.created_at for r in records)
        assert all(r.status == "succeeded" for r in records), "a no-op process did not succeed"
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        return count / took, statistics.median(latencies), p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    rate = asyncio.run(idle(args.idle))
    print(f"idle worker: {rate:.2f} store queries per second over {args.idle:g} s (target <= 1)")
    per_second, p50, p99 = asyncio.run(throughput(args.processes, args.concurrency))
    print(
        f"{args.processes} no-op processes, one worker (concurrency {args.concurrency}), "
        f"SQLite: {per_second:.0f} processes/s (start to running, including the queue wait: "
        f"p50 {p50:.2f} s, p99 {p99:.2f} s)"
    )


if __name__ == "__main__":
    main()
