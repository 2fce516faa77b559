"""An idle worker, run as a real subprocess by test_worker_polling.py.

Run as ``python idle_worker_child.py DB SECONDS``: it builds a core on the SQLite file ``DB``
with one process kind, counts every call of its store's methods (by name, with the time since
the worker started) and every SQL statement its two connections run (``sqlite3`` trace
callbacks), runs ``core.run_worker()`` with its defaults for ``SECONDS``, and prints one JSON
object: ``{"calls": [[name, seconds], ...], "statements": n}`` (``poll_work`` is named with
the parts the call asked for, e.g. ``poll_work:claim+sessions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from typing import Any

import lash
from lash_plugins_builtin import stores

lash_plugin = lash.PluginMeta(name="idlejobs")


async def nothing(context: lash.ProcessContext, payload: Any) -> Any:
    return payload


@lash.hookimpl
def register_process_kinds(register: lash.RegisterProcessKind) -> None:
    register("nothing", nothing)


async def main(db: str, seconds: float) -> None:
    core = lash.LashCore(
        plugins=[stores, sys.modules[__name__]], builtins=(), store=f"sqlite:///{db}"
    )
    store: Any = core.store
    await store.open()
    calls: list[tuple[str, float]] = []
    statements = [0]
    started = time.monotonic()
    recording = [True]  # not the closing of the store after the worker stopped

    def counting(name: str, method: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            if recording[0]:
                label = name
                if name == "poll_work":  # which parts the round asked for
                    parts = [
                        ("claim", kwargs.get("claim", True)),
                        ("sessions", kwargs.get("sessions", 0) > 0),
                        ("outbox", kwargs.get("finished_before") is not None),
                    ]
                    label += ":" + "+".join(part for part, asked in parts if asked)
                calls.append((label, time.monotonic() - started))
            return await method(*args, **kwargs)

        return counted

    for name in dir(type(store)):
        method = getattr(store, name)
        if not name.startswith("_") and asyncio.iscoroutinefunction(method):
            setattr(store, name, counting(name, method))

    def traced(statement: str) -> None:
        if recording[0]:
            statements[0] += 1

    # Both connections: aiosqlite's (on its thread) and the inline one (made on first use).
    await store._conn.set_trace_callback(traced)
    open_inline = store._open_inline

    def traced_inline() -> sqlite3.Connection:
        direct: sqlite3.Connection = open_inline()
        direct.set_trace_callback(traced)
        return direct

    store._open_inline = traced_inline
    started = time.monotonic()
    worker = asyncio.ensure_future(core.run_worker())
    await asyncio.sleep(seconds)
    recording[0] = False
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await worker
    await core.aclose()
    print(json.dumps({"calls": calls, "statements": statements[0]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
