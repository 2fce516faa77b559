"""The ``sqlite://`` store's plain-statement lease acquisition (one ``UPDATE``, the events'
``INSERT`` and a read, on the inline connection) against the ``lease_requests`` trigger (on
the worker thread): random sequences of acquisitions by several owners (their own live
lease, another's live or expired one, a take-over, a released one, a new session), with
events logged, pending input and commands, and commits whose events overflow a small event
log, give the same outcomes and leave the same rows in two real SQLite files."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sqlite_plain_commit import assert_same_both_ways

import lash
import lash.store
from lash_plugins_builtin import sqlite as sqlite_module
from lash_plugins_builtin.sqlite import SQLiteStore

pytestmark = pytest.mark.anyio

#: One step: who acquires which session's lease, for how long, after how many seconds, with
#: which turn and events, whether it takes over the lease it saw last, then what it does with
#: the lease it got (commit with events and release, release, or keep it).
steps = st.fixed_dictionaries(
    {
        "session": st.sampled_from(["s", "t"]),
        "owner": st.sampled_from(["A", "B"]),
        "wait": st.sampled_from([0.0, 1.0, 40.0]),
        "ttl": st.sampled_from([5.0, 30.0]),
        "turn": st.sampled_from([None, "t1", "t\udcff"]),
        "events": st.lists(st.sampled_from(["turn_started", "x"]), max_size=4),
        "take_over": st.booleans(),
        "inputs": st.integers(0, 2),
        "commands": st.integers(0, 1),
        "claim": st.booleans(),
        "then": st.sampled_from(["commit", "release", "keep"]),
        "commit_events": st.integers(0, 4),
    }
)


#: The event logs' retentions tried, ``(events kept, max age)``: 3 events, trimmed on every
#: write (a batch of 1); 30, trimmed every 3 events, so that what an old event's age trims
#: shows.
RETENTIONS = [(3, 60.0), (30, 60.0)]


async def run(
    path: Path, inline: bool, script: list[dict[str, Any]], retention: tuple[int, float] = (3, 60.0)
) -> list[Any]:
    """Apply ``script`` to a fresh store on ``path`` (its event log's ``retention``: events
    kept, max age); the outcome of each acquisition and what followed."""
    kept, max_age = retention
    store = SQLiteStore(f"sqlite:///{path}", events_kept=kept, events_max_age=max_age)
    if not inline:
        store._inline = False  # every operation on the worker thread: the trigger
    outcomes: list[Any] = []
    seen: dict[str, lash.store.Lease] = {}
    revisions: dict[str, int] = {}
    try:
        for n, step in enumerate(script):
            sqlite_module.time.now += step["wait"]  # type: ignore[attr-defined]
            sid = step["session"]
            for i in range(step["inputs"]):
                await store.enqueue_input(sid, lash.store.InputDraft(f"input {n}.{i}"))
            for i in range(step["commands"]):
                await store.enqueue_command(sid, lash.store.CommandDraft("reset", key=f"k{n}.{i}"))
            events = tuple(lash.store.EventDraft(e, {"n": n}) for e in step["events"])
            try:
                lease = await store.acquire_lease(
                    sid,
                    step["owner"],
                    ttl=step["ttl"],
                    take_over=seen.get(sid) if step["take_over"] else None,
                    turn=step["turn"],
                    events=events,
                )
            except lash.SessionBusy as busy:
                outcomes.append(("busy", busy.owner, busy.expires_at, busy.token))
                continue
            seen[sid] = lease
            outcomes.append(lease)
            if step["claim"]:
                claimed = await store.claim_inputs(lease, limit=1)
                outcomes.append([i.id for i in claimed])
            if step["then"] == "release":
                await store.release_lease(lease)
            elif step["then"] == "commit":
                delta = lash.store.CommitDelta(
                    turns=1,
                    events=tuple(
                        lash.store.EventDraft("c", {"i": i}) for i in range(step["commit_events"])
                    ),
                    release=True,
                )
                try:
                    revisions[sid] = await store.commit(
                        sid, lease=lease, expected_revision=lease.revision, delta=delta
                    )
                    outcomes.append(revisions[sid])
                except lash.LashError as exc:
                    outcomes.append((type(exc).__name__, str(exc)))
    finally:
        await store.close()
    return outcomes


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=st.lists(steps, min_size=1, max_size=10))
@pytest.mark.parametrize("retention", RETENTIONS)
async def test_plain_leases_write_what_the_lease_statement_writes(
    monkeypatch: pytest.MonkeyPatch, script: list[dict[str, Any]], retention: tuple[int, float]
) -> None:
    """Same leases (owner, token, expiry, revision, pending counts), same refusals, same rows
    in every table (the event log trimmed alike, by count and by age), inline or through the
    trigger."""
    await assert_same_both_ways(monkeypatch, functools.partial(run, retention=retention), script)


async def test_the_plain_lease_is_the_one_taken_inline(tmp_path: Path) -> None:
    """Inline, a session's first lease (no head row yet) goes through the trigger, which creates
    the head; the next one is one ``UPDATE``, the read and the event's ``INSERT``. A busy
    lease falls back to the trigger, which refuses it."""
    store = SQLiteStore(f"sqlite:///{tmp_path / 'lash.db'}")
    try:
        first = await store.acquire_lease("s", "A", ttl=30)
        await store.release_lease(first)
        direct = store._direct()
        assert direct is not None
        statements: list[str] = []
        direct.set_trace_callback(statements.append)
        started = lash.store.EventDraft("turn_started", {"turn_id": "t"})
        second = await store.acquire_lease("s", "A", ttl=30, turn="t", events=(started,))
        assert second.token == first.token + 1
        # (SQLite's trace reports the UPDATE twice: once more as the trigger on the event
        # counter, the log's retention, runs.)
        ran = list(dict.fromkeys(s.split("\n")[0] for s in statements))
        assert ran[:2] == ["BEGIN IMMEDIATE", "UPDATE sessions SET"], statements
        assert ran[2].startswith("SELECT lease_owner"), statements
        assert ran[3].startswith("INSERT INTO events"), statements
        assert ran[4:] == ["COMMIT"], statements
        page = await store.read_events("s")
        assert [(e.type, e.seq) for e in page.events] == [("turn_started", 1)]
    finally:
        await store.close()
