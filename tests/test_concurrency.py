"""One writer per session, with real processes on one SQLite file: racing writers never lose an
update, and a writer whose lease was taken over mid-turn commits nothing (DESIGN invariant 3)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

from crash_child import (
    AGAIN,
    KIT,
    SETUP,
    STALLED,
    TAKEOVER,
    Child,
    build_core,
    call_id,
    verify_history,
    verify_tables,
)

import lash
import lash.store

RACERS = 4


async def load(db: Path, session_id: str) -> lash.store.SessionRecord:
    core = build_core(db)
    try:
        record = await core.store.load(session_id, full=True)
    finally:
        await core.aclose()
    assert record is not None
    return record


async def start_session(db: Path, session_id: str, text: str) -> None:
    core = build_core(db)
    try:
        session = await core.session(session_id).open()
        result = await session.turn(text).run()
        assert (result.outcome, result.revision) == ("completed", 1)
        await session.close()
    finally:
        await core.aclose()


def racer(tmp_path: Path, name: str, *options: str) -> Child:
    db = str(tmp_path / "lash.db")
    args = ["--db", db, "--session", "race", "--name", name, "--commits", "4", *options]
    return Child("race", *args, stderr=tmp_path / f"{name}.err")


def test_racing_writers_lose_no_update(tmp_path: Path) -> None:
    """Racing processes, one frozen mid-turn and taken over: no update is lost, losers are told."""
    db = tmp_path / "lash.db"
    asyncio.run(start_session(db, "race", "setup"))
    racers: list[Child] = []
    try:
        for number in range(RACERS):
            # Half the racers hold short leases: stalled on a busy machine, they get taken over.
            ttl = "0.3" if number % 2 else "5"
            racers.append(racer(tmp_path, f"p{number}", "--seed", str(number), "--ttl", ttl))
        victim = racer(tmp_path, "victim", "--seed", "99", "--ttl", "0.3", "--victim")
        racers.append(victim)
        for child in racers:
            child.expect("ready", timeout=120)
        # The victim takes the session first and is frozen inside its turn, lease held...
        victim.send("GO")
        victim.expect("in_tool")
        stop_outside_transaction(victim, db)
        for child in racers[:-1]:
            child.send("GO")
        # ...until its lease runs out and another racer commits over it.
        deadline = time.monotonic() + 180
        while not any(child.of("committed") for child in racers[:-1]):
            assert time.monotonic() < deadline, "no racer took the frozen victim's session over"
            for child in racers[:-1]:
                child.pump(0.01)
        victim.signal(signal.SIGCONT)
        victim.send("THAW")
        assert victim.expect("lost")["text"] == "race victim attempt 1"
        for child in racers:
            assert child.finish(timeout=120) == 0, child.stderr()
    finally:
        for child in racers:
            child.kill()
    committed: dict[int, str] = {}
    refused: list[str] = []
    for child in racers:
        kinds = {event["event"] for event in child.events}
        assert kinds <= {"ready", "in_tool", "busy", "lost", "committed", "done"}, child.events
        assert child.events[-1]["event"] == "done", child.events
        revisions = [event["revision"] for event in child.of("committed")]
        assert revisions == sorted(revisions) and len(revisions) >= 4
        for event in child.of("committed"):
            assert event["revision"] not in committed, f"revision {event['revision']} twice"
            committed[event["revision"]] = event["text"]
        refused += [event["text"] for event in child.of("busy") + child.of("lost")]
    texts = verify_history(asyncio.run(load(db, "race")))
    # One commit per revision, none lost, no gap: the history is exactly what was reported.
    assert sorted(committed) == list(range(2, len(texts) + 1))
    assert texts == ["setup", *(committed[revision] for revision in sorted(committed))]
    assert not set(refused) & set(texts), "a refused writer's turn is visible"
    verify_tables(db, "race", len(texts))
    busy = sum(len(child.of("busy")) for child in racers)
    lost = sum(len(child.of("lost")) for child in racers)
    assert busy, "no writer was ever refused a busy session: the race had no contention"
    print(f"\n{len(committed)} racing commits, {busy} refused as busy, {lost} leases lost")


def stop_outside_transaction(child: Child, db: Path) -> None:
    """SIGSTOP ``child`` at a moment it holds no SQLite write lock, so only its session lease
    (not the database) is left hanging for the next writer."""
    for _ in range(1000):
        child.stop()
        conn = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            pass  # stopped inside a write: let it finish, then try again
        finally:
            conn.close()
        child.signal(signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError("could not stop the writer outside a write transaction")


def test_writer_taken_over_mid_turn_commits_nothing(tmp_path: Path) -> None:
    """A writer frozen mid-turn past its lease loses it: its commit raises LeaseLost, B's stays."""
    db = tmp_path / "lash.db"
    release = tmp_path / "release"
    a_args = ["--db", str(db), "--session", "stall", "--ttl", "0.5", "--wait", "120"]
    a = Child("stall", *a_args, "--release-file", str(release), stderr=tmp_path / "a.err")
    b = None
    try:
        assert a.expect("committed", timeout=120)["revision"] == 1
        a.expect("in_tool")
        # Frozen, A cannot renew its lease; B waits for it to run out and takes the session.
        stop_outside_transaction(a, db)
        b_args = ["--db", str(db), "--session", "stall", "--wait", "120"]
        b = Child("takeover", *b_args, stderr=tmp_path / "b.err")
        assert b.expect("committed", timeout=180) == {
            "event": "committed",
            "text": TAKEOVER,
            "revision": 2,
        }
        release.touch()
        a.signal(signal.SIGCONT)
        # B still holds the lease when A, thawed, finishes its turn and tries to commit it.
        lost = a.expect("lost")
        assert lost["text"] == STALLED and "lease lost" in lost["error"]
        b.send("close")
        b.expect("closed")
        assert b.finish() == 0, b.stderr()
        # Reopening reloads what the store holds: B's turn, not A's lost one.
        assert a.expect("reopened", timeout=180) == {
            "event": "reopened",
            "revision": 2,
            "turns": 2,
        }
        assert a.expect("committed")["revision"] == 3
        assert a.finish() == 0, a.stderr()
    finally:
        for child in (a, b):
            if child is not None:
                child.kill()
    record = asyncio.run(load(db, "stall"))
    assert verify_history(record) == [SETUP, TAKEOVER, AGAIN]
    for node in record.nodes:
        assert STALLED not in repr(node) and call_id(STALLED) not in repr(node), node
    assert record.plugin_states[KIT] == {"count": 3, "notes": 3, "last": AGAIN}
    verify_tables(db, "stall", 3)
