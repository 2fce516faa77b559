"""How often a worker queries the store: idle (a real worker subprocess, its queries counted),
with a lease short against its poll, and busy with processes while it also serves sessions."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import lash
from lash_plugins_builtin import stores

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).resolve().parent


class Quick:
    lash_plugin = lash.PluginMeta(name="quickjobs")

    @lash.hookimpl
    def register_process_kinds(self, register: lash.RegisterProcessKind) -> None:
        register("quick", self.quick)

    async def quick(self, context: lash.ProcessContext, payload: Any) -> Any:
        return payload


def core_on(db: Path) -> lash.LashCore:
    return lash.LashCore(plugins=[stores, Quick()], builtins=(), store=f"sqlite:///{db}")


def count_calls(core: lash.LashCore, name: str, **asked: Any) -> list[float]:
    """Record the time of every call of the store's method ``name`` (with ``asked``: of those
    whose keyword arguments say so, by a predicate each)."""
    store: Any = core.store
    method = getattr(store, name)
    times: list[float] = []

    async def counted(*args: Any, **kwargs: Any) -> Any:
        if all(test(kwargs.get(key)) for key, test in asked.items()):
            times.append(time.monotonic())
        return await method(*args, **kwargs)

    setattr(store, name, counted)
    return times


@pytest.mark.slow
def test_an_idle_worker_queries_the_store_at_most_once_a_second(tmp_path: Path) -> None:
    """A real worker process with its defaults (poll 1 s, sessions on) and nothing to do makes
    at most one store query a second, each of which both claims and looks for sessions (so a
    dead peer's processes and sessions are both seen within a poll of their expiry)."""
    db = tmp_path / "lash.db"
    seconds = 7.5
    done = subprocess.run(
        [sys.executable, str(TESTS / "idle_worker_child.py"), str(db), str(seconds)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(done.stdout)
    calls = [(name, at) for name, at in report["calls"]]
    # One query a poll, each claiming and looking for sessions (the outbox now and then): in
    # the 6 s from 1.5 s on, the rounds at ~2, 3, 4, 5, 6 and 7 s.
    window = [name for name, at in calls if 1.5 <= at < 7.5]
    assert len(window) <= 6, calls
    assert len(window) >= 5, calls  # still looking for work
    assert all(name.startswith("poll_work:claim+sessions") for name in window), calls
    assert calls[0][0] == "poll_work:claim+sessions+outbox", calls  # the first round: all
    assert len(calls) <= 1 + 7, calls
    assert report["statements"] <= 8 * len(calls)  # a query is a handful of statements


async def test_a_worker_with_a_lease_short_against_its_poll_still_claims(tmp_path: Path) -> None:
    """The notification sweep (due every lease_ttl / 2) takes an idle round's query, but not
    every round: a worker whose lease is no longer than two polls still claims a process
    started by another core on the file (which cannot wake it)."""
    db = tmp_path / "lash.db"
    async with core_on(db) as host, core_on(db) as workers:
        worker = asyncio.create_task(workers.run_worker(lease_ttl=0.4, poll=0.2, sessions=False))
        try:
            await asyncio.sleep(0.3)  # idle: its rounds are polls now
            record = await host.processes.start("quick", {"n": 1})
            done = await host.processes.wait(record.id, timeout=5)
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
    assert (done.status, done.result) == ("succeeded", {"n": 1})


async def test_a_worker_busy_with_processes_looks_for_sessions_once_a_poll(
    tmp_path: Path,
) -> None:
    """A worker that also serves sessions, claiming 40 processes back to back, does not look
    for runnable sessions after every claim: at most once a poll (and when its core queues
    input)."""
    db = tmp_path / "lash.db"
    async with core_on(db) as host, core_on(db) as workers:
        started = [(await host.processes.start("quick", {"n": n})).id for n in range(40)]
        looked = count_calls(workers, "poll_work", sessions=lambda n: n is not None and n > 0)
        claims = count_calls(workers, "claim_process")
        polls = count_calls(workers, "poll_work", claim=lambda claim: claim is not False)
        began = time.monotonic()
        worker = asyncio.create_task(workers.run_worker(poll=0.5))
        try:
            for process_id in started:
                await host.processes.wait(process_id, timeout=30)
            elapsed = time.monotonic() - began
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
    assert len(claims) + len(polls) >= 40
    assert 1 <= len(looked) <= 2 + elapsed / 0.5, (len(looked), elapsed)


async def test_a_session_whose_drain_fails_is_tried_again_after_a_poll_then_less_often(
    tmp_path: Path,
) -> None:
    """A drain that fails (a store hiccup: here loading the session fails three times in a
    row) leaves the session alone for a poll, then twice as long after each further failure
    (1, 2, 4 polls... at most 30 s), and its input is answered once the store is back: a
    fixed 30 s after every failure (before) kept a session's input waiting half a minute
    for a failover's dropped connection. The waits are lower bounds (load only lengthens
    them); the input must be answered long before the first 30 s would have passed."""
    poll = 0.1
    db = tmp_path / "lash.db"
    script = {"responses": [{"text": "answered"}]}
    (tmp_path / "script.json").write_text(json.dumps(script), encoding="utf-8")
    options = {"scripted": {"script": str(tmp_path / "script.json")}}

    def core() -> lash.LashCore:
        return lash.LashCore(
            plugins=["standard", "stores", "scripted"],
            builtins=(),
            store=f"sqlite:///{db}",
            provider="scripted",
            options=options,
        )

    async with core() as host, core() as workers:
        store: Any = workers.store
        load = store.load
        tries: list[float] = []

        async def failing_load(session_id: str, *args: Any, **kwargs: Any) -> Any:
            if session_id == "s":
                tries.append(time.monotonic())
                if len(tries) <= 3:
                    raise ConnectionResetError("the store went away for a moment")
            return await load(session_id, *args, **kwargs)

        store.load = failing_load
        await host.enqueue("s", "hello")
        worker = asyncio.create_task(workers.run_worker(poll=poll, sessions=True))
        try:
            deadline = time.monotonic() + 20
            while await host.inputs("s") and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            worker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await worker
        assert await host.inputs("s") == [], f"not answered; tried at {tries}"
        assert len(tries) >= 4
        gaps = [later - earlier for earlier, later in itertools.pairwise(tries[:4])]
        for n, gap in enumerate(gaps):
            assert gap >= poll * 2**n * 0.99, (n, gaps)
