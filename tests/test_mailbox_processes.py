"""Sessions as mailboxes across real processes on one SQLite file: many enqueuers and drainers,
SIGKILLed executors, a dead lease holder taken over at once, cancellation by turn id.

Children are ``crash_child.py`` modes (``enqueue``, ``drain``, ``hold``); every turn they run
has the fixed shape ``verify_history`` checks, so a lost, doubled or interleaved turn shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
from pathlib import Path

import pytest
from crash_child import (
    KIT,
    Child,
    answer,
    build_core,
    verify_history,
    verify_tables,
)

import lash

SESSION = "inbox"


def finished(proc: Child, timeout: float) -> None:
    """Wait for ``proc`` to exit; it must exit 0 (its stderr says why not)."""
    code = proc.finish(timeout=timeout)
    assert code == 0, f"exit status {code}: {proc.events[-3:]} {proc.stderr_path.read_text()}"


def child(tmp_path: Path, mode: str, name: str, *options: str) -> Child:
    args = ["--db", str(tmp_path / "lash.db"), "--session", SESSION, "--name", name, *options]
    return Child(mode, *args, stderr=tmp_path / f"{name}.err")


async def settled(
    db: Path,
) -> tuple[lash.store.SessionRecord | None, list[lash.store.PendingInput]]:
    async with build_core(db) as core:
        record = await core.store.load(SESSION, full=True)
        inputs = await core.inputs(SESSION, settled=True)
    return record, inputs


def check_exactly_once(
    record: lash.store.SessionRecord | None, inputs: list[lash.store.PendingInput], texts: set[str]
) -> list[str]:
    """Every input is completed by exactly one committed turn whose user message is its text;
    returns the turns' texts in commit order."""
    assert record is not None
    ran = verify_history(record)
    assert len(ran) == len(set(ran)), f"an input ran twice: {sorted(ran)}"
    assert set(ran) == texts, f"missing {sorted(texts - set(ran))}, extra {set(ran) - texts}"
    by_text = {i.text: i for i in inputs}
    assert set(by_text) == texts and len(inputs) == len(texts)
    outcomes = {n.turn_id: n for n in record.nodes if isinstance(n, lash.TurnOutcome)}
    for text in texts:
        item = by_text[text]
        assert item.state == "completed", item
        assert item.turn_id in outcomes, f"{text!r} settled by turn {item.turn_id}, not stored"
    return ran


def test_eight_enqueuers_and_two_drainers_run_every_input_exactly_once(tmp_path: Path) -> None:
    """8 processes queue 10 inputs each while 2 processes drain: 80 turns, one per input."""
    enqueuers = [
        child(tmp_path, "enqueue", f"e{n}", "--commits", "10", "--seed", str(n)) for n in range(8)
    ]
    drainers = [
        child(tmp_path, "drain", f"d{n}", "--wait", "3", "--seed", str(n)) for n in range(2)
    ]
    everyone = enqueuers + drainers
    try:
        for proc in everyone:
            proc.expect("ready", timeout=120)
        for proc in drainers + enqueuers:
            proc.send("GO")
        for proc in everyone:
            finished(proc, 180)
    finally:
        for proc in everyone:
            proc.kill()
    texts = {e["text"] for proc in enqueuers for e in proc.of("queued")}
    assert len(texts) == 80
    record, inputs = asyncio.run(settled(tmp_path / "lash.db"))
    ran = check_exactly_once(record, inputs, texts)
    reported = [e["text"] for proc in drainers for e in proc.of("committed")]
    assert sorted(reported) == sorted(ran)
    assert record is not None and record.plugin_states[KIT]["count"] == 80
    verify_tables(tmp_path / "lash.db", SESSION, 80)


def test_a_drainer_killed_at_random_moments_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """While one process enqueues, drainers are SIGKILLed at random points, one after another;
    a last drainer finishes: each input completed by one committed turn, none twice."""
    rng = random.Random(20261206)
    db = tmp_path / "lash.db"
    producer = child(tmp_path, "enqueue", "producer", "--commits", "40", "--seed", "7")
    killed = 0
    try:
        producer.expect("ready", timeout=120)
        producer.send("GO")
        for round_number in range(6):
            # A short lease, so a drainer killed mid-turn is taken over quickly even if its pid
            # were still there; here it is gone, so the next drainer takes over at once.
            drainer = child(tmp_path, "drain", f"k{round_number}", "--wait", "30", "--ttl", "2")
            drainer.expect("ready", timeout=120)
            drainer.send("GO")
            time.sleep(rng.uniform(0.05, 0.6))
            drainer.kill()  # SIGKILL, wherever it is
            killed += 1
        finished(producer, 120)
        last = child(tmp_path, "drain", "last", "--wait", "2")
        last.expect("ready", timeout=120)
        last.send("GO")
        finished(last, 180)
    finally:
        producer.kill()
    texts = {e["text"] for e in producer.of("queued")}
    assert len(texts) == 40 and killed == 6
    record, inputs = asyncio.run(settled(db))
    check_exactly_once(record, inputs, texts)
    verify_tables(db, SESSION, 40)


@pytest.mark.anyio
async def test_a_dead_holder_s_lease_is_taken_over_at_once(tmp_path: Path) -> None:
    """A process SIGKILLed mid-turn holds a 60 s lease; the next turn, in this process, takes
    the session over at once (same host, the holder's process is gone), not after 60 s."""
    db = tmp_path / "lash.db"
    holder = child(tmp_path, "hold", "held", "--ttl", "60")
    try:
        holder.expect("in_tool", timeout=120)
    finally:
        holder.kill()
    async with build_core(db, lease_ttl=60) as core:
        session = await core.session(SESSION).open()
        started = time.monotonic()
        result = await session.turn("after the crash").run()
        took = time.monotonic() - started
    assert (result.outcome, result.text) == ("completed", answer("after the crash"))
    assert took < 10, f"the dead holder's lease was waited out ({took:.1f} s)"
    assert result.revision == 1  # the killed turn committed nothing


@pytest.mark.anyio
async def test_cancel_turn_from_another_process_stops_it_and_records_who(tmp_path: Path) -> None:
    """core.cancel_turn in this process stops a turn running in a child, by its id: the child's
    result says stopped/cancelled, by whom and why; the receipt said requested."""
    db = tmp_path / "lash.db"
    runner = child(tmp_path, "hold", "t-42")
    try:
        runner.expect("in_tool", timeout=120)
        async with build_core(db) as core:
            receipt = await core.cancel_turn(
                SESSION, "t-42", reason="user pressed stop", origin="ops"
            )
            assert receipt.status == "requested"
            report = runner.expect("finished", timeout=30)
            assert report == {
                "event": "finished",
                "outcome": "stopped",
                "reason": "cancelled",
                "cancelled_by": "ops",
                "cancel_reason": "user pressed stop",
                "revision": 1,
            }
            again = await core.cancel_turn(SESSION, "t-42")
            assert again.status == "already_finished"
            assert again.record is not None and again.record.reason == "cancelled"
            unknown = await core.cancel_turn(SESSION, "t-nope")
            assert unknown.status == "unknown"
        finished(runner, 30)
    finally:
        runner.kill()


@pytest.mark.anyio
async def test_an_idle_open_session_writes_nothing(tmp_path: Path) -> None:
    """An open session between turns, watched by an observer, makes no database write: no
    lease renewal, no keep-alive (PRAGMA data_version moves with any other connection's
    commit)."""
    db = tmp_path / "lash.db"
    async with build_core(db, lease_ttl=0.3) as core:
        session = await core.session(SESSION).open()
        result = await session.turn("one turn").run()
        assert result.outcome == "completed"
        watcher = asyncio.create_task(_watch(core))
        await asyncio.sleep(0.1)
        probe = sqlite3.connect(db)
        try:
            before = probe.execute("PRAGMA data_version").fetchone()
            await asyncio.sleep(1.2)  # four lease lifetimes
            after = probe.execute("PRAGMA data_version").fetchone()
            assert after == before, "the idle session wrote to the database"
            await session.turn("another").run()
            moved = probe.execute("PRAGMA data_version").fetchone()
            assert moved != before  # the probe does see a commit
        finally:
            probe.close()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def _watch(core: lash.LashCore) -> None:
    async for _ in core.observe(SESSION):
        pass
