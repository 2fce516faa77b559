"""Crash safety with real processes: a host SIGKILLed at random moments loses no committed turn
and leaves no partial one (DESIGN invariant 2), on a real SQLite file."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

from crash_child import KIT, Child, KitState, build_core, verify_history, verify_tables

#: Override with LASH_CRASH_SEED=<int> to replay or explore other kill schedules.
SEED = int(os.environ.get("LASH_CRASH_SEED", "20240611"))
KILLS = 50
SESSION = "crash"
TTL = 0.3


def spawn(tmp_path: Path, number: int, seed: int) -> Child:
    """Start child ``number``; it imports lash, then waits for ``GO`` to open the session."""
    args = ["--db", str(tmp_path / "lash.db"), "--session", SESSION, "--ttl", str(TTL)]
    # The dead owner's lease runs out within TTL; a loaded machine may need longer to start.
    args += ["--wait", "60", "--seed", str(seed)]
    return Child("crash", *args, stderr=tmp_path / f"child-{number}.err")


def wait_for(child: Child, event: str, count: int) -> None:
    """Read the child's events until ``count`` events of kind ``event`` have arrived."""
    seen = 0
    while seen < count:
        got = child.next_event(60)
        assert got is not None, f"the child ended by itself; stderr:\n{child.stderr()}"
        seen += got["event"] == event


def kill_at_random(child: Child, rng: random.Random) -> str:
    """Let the child run, then SIGKILL it; returns how the moment was chosen: after a random
    delay (anywhere in a turn), right as a commit starts, or right after one returned."""
    draw = rng.random()
    if draw < 0.25:
        kind = "as-commit-starts"
        wait_for(child, "finalized", rng.randint(1, 3))
    elif draw < 0.4:
        kind = "after-commit"
        wait_for(child, "committed", rng.randint(1, 3))
        time.sleep(rng.uniform(0.0, 0.005))
    else:
        kind = "timed"
        # A turn takes ~10 ms: any delay lands anywhere in one (up to 0.6 s took 4 s more).
        time.sleep(rng.uniform(0.05, 0.3))
    assert child.proc.poll() is None, f"the child exited by itself; stderr:\n{child.stderr()}"
    child.signal(signal.SIGKILL)
    child.finish()
    assert child.proc.returncode == -signal.SIGKILL
    return kind


def outcome(child: Child, turns: int) -> tuple[int, int | None]:
    """``(last turn the child reported committed, turn it was committing when killed or None)``;
    ``turns`` is how many turns the session had when the child opened it."""
    last, committing = turns, None
    for event in child.events:
        if event["event"] == "committed":
            assert event["index"] == event["revision"] == last + 1, event
            last, committing = event["index"], None
        elif event["event"] == "finalized":
            committing = event["index"]
    return last, committing


def check_resumed(ready: dict[str, int], before: tuple[int, int | None]) -> str:
    """Check the turns a resumed session holds against what the killed child said it did, and
    say where the kill landed: every reported turn is there, plus at most the one that was
    being committed (and only if its commit started)."""
    assert ready["revision"] == ready["turns"] == ready["count"], ready
    last, committing = before
    if ready["turns"] == last:
        return "mid-turn" if committing is None else "in-commit, not stored"
    assert committing == last + 1 == ready["turns"], (ready, before)
    return "in-commit, stored"


async def reopen_and_check(db: Path, committed: dict[int, int]) -> int:
    core = build_core(db)
    try:
        record = await core.store.load(SESSION, full=True)
        assert record is not None
        texts = verify_history(record)
        for index, revision in committed.items():
            assert revision == index, (index, revision)
            assert texts[index - 1] == f"crash turn {index}", f"committed turn {index} lost"
        assert texts == [f"crash turn {i}" for i in range(1, len(texts) + 1)]
        session = await core.session(SESSION).open(must_exist=True, wait=60)
        assert session.turns == len(texts) and session.state(KitState).count == len(texts)
        text = f"crash turn {len(texts) + 1}"
        result = await session.turn(text).run()
        assert result.outcome == "completed"
        assert result.index == result.revision == len(texts) + 1
        await session.close()
        record = await core.store.load(SESSION, full=True)
        assert record is not None
        assert verify_history(record) == [*texts, text]
        assert record.plugin_states[KIT]["count"] == len(texts) + 1
        return len(texts)
    finally:
        await core.aclose()


def test_sigkilled_host_loses_no_committed_turn_and_leaves_no_partial_one(tmp_path: Path) -> None:
    """SIGKILL a host ≥50 times mid-run: every reported turn survives, none is partial."""
    rng = random.Random(SEED)
    db = tmp_path / "lash.db"
    committed: dict[int, int] = {}
    kinds: collections.Counter[str] = collections.Counter()
    landed: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    before: tuple[int, int | None] = (0, None)
    waited = 0.0  # in open(): the dead owner's lease running out, then loading the session
    # Children are started two ahead, so importing lash costs no kill time.
    upcoming = collections.deque(spawn(tmp_path, n, rng.randrange(2**32)) for n in range(2))
    try:
        for number in range(KILLS):
            child = upcoming.popleft()
            try:
                child.send("GO existing" if before[0] else "GO")
                if number + 2 < KILLS:
                    upcoming.append(spawn(tmp_path, number + 2, rng.randrange(2**32)))
                opening = time.monotonic()
                ready = child.expect("ready")
                waited += time.monotonic() - opening
                if number:
                    landed[check_resumed(ready, before)] += 1
                kinds[kill_at_random(child, rng)] += 1
            finally:
                child.kill()
            before = outcome(child, ready["turns"])
            for event in child.of("committed"):
                committed[event["index"]] = event["revision"]
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
        stored = asyncio.run(reopen_and_check(db, committed))
        last, committing = before
        assert stored == last or stored == committing == last + 1, (stored, before)
        verify_tables(db, SESSION, stored + 1)
    except BaseException:
        print(f"crash test failed with LASH_CRASH_SEED={SEED}")
        raise
    finally:
        for spare in upcoming:
            spare.kill()
    print(
        f"\nseed {SEED}: {KILLS} kills {dict(kinds)}, landed {dict(landed)}, "
        f"{len(committed)} turns reported, {stored} stored, {time.monotonic() - started:.1f} s "
        f"({waited:.1f} s reopening)"
    )
    assert kinds["as-commit-starts"] and kinds["after-commit"] and kinds["timed"]
