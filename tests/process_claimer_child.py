"""A worker of process records, run as a real subprocess by test_sqlite_processes.py.

Run as ``python process_claimer_child.py --db FILE --name NAME --kind KIND [--ttl S]
[--die-after N] [--work S]``: it opens the store, reports ``{"ready": NAME}``, waits for
``GO`` on stdin, then claims processes of ``KIND`` from the SQLite file and finishes each after
``--work`` seconds (``succeeded``, result ``{"by": NAME, "attempt": N}``) until a claim finds
nothing ``--idle`` seconds in a row. It reports on stdout, one JSON object per line, flushed at
once: ``{"claimed": id, "token": t}`` before it finishes one, then ``{"finished": id}`` or
``{"lost": id}`` (the finish was refused: its claim was taken over). With ``--die-after N`` it
SIGKILLs itself after its Nth claim, before finishing it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

import lash
from lash_plugins_builtin.sqlite import SQLiteStore


def report(**data: object) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def work(args: argparse.Namespace) -> None:
    store = SQLiteStore(f"sqlite:///{args.db}", busy_timeout=30_000)
    await store.open()
    report(ready=args.name)
    # Read off the event loop's thread: nothing else runs on it yet.
    if sys.stdin.readline().strip() != "GO":
        return
    claims = 0
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < args.idle:
            record = await store.claim_process(args.name, ttl=args.ttl, kinds=[args.kind])
            if record is None:
                await asyncio.sleep(0.02)
                continue
            idle_since = time.monotonic()
            claims += 1
            report(claimed=record.id, token=record.token, attempt=record.attempts)
            if args.die_after and claims >= args.die_after:
                os.kill(os.getpid(), signal.SIGKILL)
            await asyncio.sleep(args.work)  # the process's run
            try:
                await store.finish_process(
                    record.id,
                    record.token,
                    status="succeeded",
                    result={"by": args.name, "attempt": record.attempts},
                )
            except lash.LeaseLost:
                report(lost=record.id)
            else:
                report(finished=record.id)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--kind", required=True)
    parser.add_argument("--ttl", type=float, default=30.0)
    parser.add_argument("--idle", type=float, default=1.0)
    parser.add_argument("--die-after", type=int, default=0)
    parser.add_argument("--work", type=float, default=0.002)
    args = parser.parse_args()
    asyncio.run(work(args))


if __name__ == "__main__":
    main()
