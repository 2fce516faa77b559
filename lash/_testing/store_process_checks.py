"""Store conformance checks: process records, their claims and heartbeats, expiry per recovery
disposition, cancellation, the notification outbox, and the sessions a worker drains.

The rules come from the ``Store`` protocol docstrings and :mod:`lash._store.process_rules`:
starting is idempotent by key (keys are global), and a commit that starts processes starts them
in the same transaction (a refused commit starts nothing); a claim takes the oldest runnable
process with a new fencing token, and a stale token can neither heartbeat nor finish; an
expired claim reruns a rerunnable process (until ``max_attempts``, then it fails), abandons an
owner-bound one and keeps an externally owned one; the first settlement stands.

Checks claim only processes of a kind of their own (``kinds=[...]``), so they also pass against
a store whose database other checks (or other runs) share.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from lash._contract.turn_types import ProcessRecord
from lash._store.protocol import Store
from lash._store.records import CommandDraft, CommitDelta, EventDraft, InputDraft, ProcessDraft
from lash._testing.store_checks import (
    CLOCK_SLACK,
    EXPIRY_WAIT,
    LONG_TTL,
    SHORT_TTL,
    commit_at,
    expect,
    expect_equal,
    expect_raises,
    fail,
    new_lease,
    session_id_for,
)
from lash.errors import InputConflict, LeaseLost, RevisionConflict

#: Enough for ``runnable_sessions`` to reach a check's own sessions in a shared database.
MANY = 100_000


def _unique(label: str) -> str:
    """A process id, kind or key no other check (or earlier run) uses."""
    return f"conformance-{label}-{uuid.uuid4().hex[:12]}"


def _draft(kind: str, label: str = "p", **fields: Any) -> ProcessDraft:
    return ProcessDraft(id=_unique(label), kind=kind, **fields)


async def _get(store: Store, process_id: str) -> ProcessRecord:
    record = await store.get_process(process_id)
    if record is None:
        fail(f"get_process({process_id!r}) returned None for a process that was started")
    return record


async def _claim(store: Store, kind: str, owner: str = "worker-a", ttl: float = LONG_TTL) -> Any:
    """Claim a process of ``kind``, which must be there."""
    record = await store.claim_process(owner, ttl=ttl, kinds=[kind])
    if record is None:
        fail(f"claim_process(kinds=[{kind!r}]) returned None with a process runnable")
    return record


async def _process_events(store: Store, session_id: str, process_id: str) -> list[tuple[str, str]]:
    """``(type, status)`` of the session's events about ``process_id``, in order."""
    page = await store.read_events(session_id)
    out = []
    for event in page.events:
        data = event.data.get("process") if event.type.startswith("process_") else None
        if isinstance(data, dict) and data.get("id") == process_id:
            out.append((event.type, str(data.get("status"))))
    return out


# --------------------------------------------------------------------------------------------
# Starting
# --------------------------------------------------------------------------------------------


async def check_process_start_is_idempotent_by_key(store: Store) -> None:
    """A start writes a ``pending`` record with what the draft said; the same key with the same
    kind, session and payload returns that process (nothing new is written or logged); the key
    with another payload, kind or session is an InputConflict naming the process; listing
    filters by session, kind and status, oldest first."""
    sid = session_id_for("process-start")
    kind = _unique("kind")
    key = _unique("key")
    payload = {"n": 1, "items": ["a", "é"], "nested": {"ok": True}}
    draft = _draft(
        kind,
        payload=payload,
        session_id=sid,
        key=key,
        recovery="rerunnable",
        max_attempts=3,
        timeout=12.5,
        source="tool:x",
    )
    started = await store.start_process(draft)
    expect_equal(
        (
            started.id,
            started.kind,
            started.session_id,
            started.status,
            started.payload,
            started.key,
            started.recovery,
            started.attempts,
            started.max_attempts,
            started.timeout,
            started.source,
            started.token,
            started.finished,
            started.notified,
        ),
        (
            *(draft.id, kind, sid, "pending", payload, key, "rerunnable", 0, 3, 12.5),
            *("tool:x", 0, False, False),
        ),
        "(id, kind, session_id, status, payload, key, recovery, attempts, max_attempts, "
        "timeout, source, token, finished, notified) of a started process",
    )
    expect(
        abs(started.created_at - time.time()) < CLOCK_SLACK,
        f"created_at of a process started now: {started.created_at}",
    )
    expect_equal(await _get(store, draft.id), started, "get_process() of the started process")
    again = await store.start_process(_draft(kind, payload=payload, session_id=sid, key=key))
    expect_equal(again.id, draft.id, "id of a start repeated with the same key")
    for other, what in (
        (_draft(kind, payload={"n": 2}, session_id=sid, key=key), "another payload"),
        (_draft(_unique("kind"), payload=payload, session_id=sid, key=key), "another kind"),
        (_draft(kind, payload=payload, session_id=None, key=key), "another session"),
    ):
        conflict = await expect_raises(
            InputConflict, store.start_process(other), f"the same process key with {what}"
        )
        expect_equal(conflict.existing_id, draft.id, "InputConflict.existing_id of a process key")
        expect(await store.get_process(other.id) is None, f"a process refused for {what}")
    host = await store.start_process(_draft(kind, payload=[1, 2]))
    expect_equal((host.session_id, host.payload), (None, [1, 2]), "a host's process")
    listed = await store.list_processes(kind=kind)
    expect_equal([p.id for p in listed], [draft.id, host.id], "processes of the kind, oldest first")
    by_session = await store.list_processes(session_id=sid)
    expect_equal([p.id for p in by_session], [draft.id], "processes of the session")
    expect_equal(
        [p.id for p in await store.list_processes(kind=kind, status="running")],
        [],
        "running processes of the kind",
    )
    expect_equal(
        [p.id for p in await store.list_processes(kind=kind, limit=1)],
        [draft.id],
        "processes of the kind, limit 1",
    )
    expect(await store.get_process(_unique("nope")) is None, "get_process() of an unknown id")
    expect_equal(
        await _process_events(store, sid, draft.id),
        [("process_started", "pending")],
        "events of the process in its session (one start, none for the repeat)",
    )


async def check_process_start_in_commit(store: Store) -> None:
    """``delta.processes`` start in the commit, logged after its events; a key already used
    with the same content is skipped; a refused commit (stale revision, lost lease, a process
    key taken by other content, before or in the same commit) starts nothing and writes
    nothing."""
    lease = await new_lease(store, "process-commit")
    sid = lease.session_id
    kind = _unique("kind")
    first = _draft(kind, payload={"q": 1}, session_id=sid, key=_unique("key"))
    await commit_at(
        store, lease, 0, turns=1, events=(EventDraft("turn_event"),), processes=(first,)
    )
    record = await _get(store, first.id)
    expect_equal((record.status, record.session_id), ("pending", sid), "a process a commit started")
    kinds = [e.type for e in (await store.read_events(sid)).events]
    expect_equal(kinds[-2:], ["turn_event", "process_started"], "the commit's last events")
    stale = _draft(kind, session_id=sid)
    await expect_raises(
        RevisionConflict,
        store.commit(
            sid, lease=lease, expected_revision=0, delta=CommitDelta(turns=1, processes=(stale,))
        ),
        "a commit at a stale revision that starts a process",
    )
    expect(await store.get_process(stale.id) is None, "a process of a commit refused as stale")
    other = await store.acquire_lease(
        sid, "owner-b", ttl=LONG_TTL, take_over=await store.acquire_lease(sid, "owner-a", ttl=1.0)
    )
    lost = _draft(kind, session_id=sid)
    await expect_raises(
        LeaseLost,
        store.commit(
            sid, lease=lease, expected_revision=1, delta=CommitDelta(turns=1, processes=(lost,))
        ),
        "a commit with a lease taken over that starts a process",
    )
    expect(await store.get_process(lost.id) is None, "a process of a commit whose lease was lost")
    events = (await store.read_events(sid)).last
    conflicting = _draft(kind, payload={"q": "other"}, session_id=sid, key=first.key)
    fresh = _draft(kind, session_id=sid)
    await expect_raises(
        InputConflict,
        store.commit(
            sid,
            lease=other,
            expected_revision=1,
            delta=CommitDelta(turns=1, processes=(fresh, conflicting)),
        ),
        "a commit starting a process under a key taken by other content",
    )
    expect_equal((await store.load(sid) or fail("load")).revision, 1, "revision after the refusal")
    expect(await store.get_process(fresh.id) is None, "a process of a commit refused for a key")
    expect_equal((await store.read_events(sid)).last, events, "events after the refused commit")
    twice = _unique("key")
    one, other_one = (_draft(kind, payload=n, session_id=sid, key=twice) for n in (1, 2))
    await expect_raises(
        InputConflict,
        store.commit(
            sid,
            lease=other,
            expected_revision=1,
            delta=CommitDelta(turns=1, processes=(one, other_one)),
        ),
        "a commit starting two processes under one new key with other payloads",
    )
    expect(await store.get_process(one.id) is None, "a process of a commit refused for its keys")
    repeat = _draft(kind, payload={"q": 1}, session_id=sid, key=first.key)
    await commit_at(store, other, 1, turns=1, processes=(repeat,))
    expect(await store.get_process(repeat.id) is None, "a repeated key started a second process")
    expect_equal(
        [p.id for p in await store.list_processes(session_id=sid)],
        [first.id],
        "the session's processes",
    )


# --------------------------------------------------------------------------------------------
# Claims, heartbeats, fencing
# --------------------------------------------------------------------------------------------


async def check_process_claim_order_and_fencing(store: Store) -> None:
    """Claims take the oldest pending process of the kinds asked for, with a new token and an
    attempt; a heartbeat extends the claim and stores progress; a stale token can neither
    heartbeat nor finish; a finished process is never claimed again."""
    kind = _unique("kind")
    other_kind = _unique("other")
    drafts = [_draft(kind, f"p{i}", payload={"i": i}) for i in range(3)]
    for draft in drafts:
        await store.start_process(draft)
    await store.start_process(_draft(other_kind))
    before = time.time()
    first = await _claim(store, kind, "worker-a", ttl=LONG_TTL)
    expect_equal(first.id, drafts[0].id, "the process claimed first (the oldest)")
    expect_equal(
        (first.status, first.owner, first.attempts, first.payload),
        ("running", "worker-a", 1, {"i": 0}),
        "(status, owner, attempts, payload) of a claimed process",
    )
    expect(first.token > 0, f"the token of a claim: {first.token}")
    expect(
        first.expires_at is not None and first.expires_at > before + LONG_TTL - CLOCK_SLACK,
        f"expires_at of a claim for {LONG_TTL} s: {first.expires_at}",
    )
    expect(first.started_at is not None, "started_at of a claimed process")
    expect_equal(await _get(store, first.id), first, "get_process() of the claimed process")
    second = await _claim(store, kind, "worker-b")
    expect_equal(second.id, drafts[1].id, "the process claimed second")
    beat = await store.heartbeat_process(first.id, first.token, ttl=LONG_TTL * 2)
    expect(
        beat.expires_at is not None
        and first.expires_at is not None
        and beat.expires_at > first.expires_at,
        f"a heartbeat extends the claim: {first.expires_at} -> {beat.expires_at}",
    )
    expect_equal(
        (beat.status, beat.token, beat.cancel_requested),
        ("running", first.token, None),
        "(status, token, cancel_requested) after a heartbeat",
    )
    beat = await store.heartbeat_process(
        first.id, first.token, ttl=LONG_TTL, progress={"done": 3, "of": 10}
    )
    expect_equal(beat.progress, {"done": 3, "of": 10}, "progress stored by a heartbeat")
    stale = first.token + 1
    calls: tuple[tuple[Callable[[], Awaitable[object]], str], ...] = (
        (lambda: store.heartbeat_process(first.id, stale, ttl=LONG_TTL), "heartbeat"),
        (lambda: store.finish_process(first.id, stale, status="succeeded"), "finish"),
        (lambda: store.park_process(first.id, stale), "park"),
        (
            lambda: store.heartbeat_process(_unique("nope"), 1, ttl=LONG_TTL),
            "heartbeat of unknown id",
        ),
    )
    for call, what in calls:  # made one at a time: a failure leaves no coroutine unawaited
        await expect_raises(LeaseLost, call(), f"{what} with a token that is not the claim's")
    done = await store.finish_process(
        first.id, first.token, status="succeeded", result={"answer": [42, "x"]}
    )
    expect_equal(
        (done.status, done.result, done.error, done.finished, done.expires_at, done.notified),
        ("succeeded", {"answer": [42, "x"]}, None, True, None, False),
        "(status, result, error, finished, expires_at, notified) of a finished process",
    )
    expect(done.finished_at is not None, "finished_at of a finished process")
    expect_equal(await _get(store, first.id), done, "get_process() of the finished process")
    await expect_raises(
        LeaseLost,
        store.heartbeat_process(first.id, first.token, ttl=LONG_TTL),
        "heartbeat of a finished process",
    )
    await expect_raises(
        LeaseLost,
        store.finish_process(first.id, first.token, status="failed", error="again"),
        "finish of a finished process with its old token",
    )
    failed = await store.finish_process(second.id, second.token, status="failed", error="boom")
    expect_equal((failed.status, failed.error), ("failed", "boom"), "(status, error) of a failure")
    third = await _claim(store, kind)
    expect_equal(third.id, drafts[2].id, "the process claimed third")
    expect(
        await store.claim_process("worker-a", ttl=LONG_TTL, kinds=[kind]) is None,
        "claim_process() with nothing of the kind runnable",
    )
    expect_equal(
        [p.id for p in await store.list_processes(kind=kind, status="pending")],
        [],
        "pending processes of the kind",
    )
    await expect_raises(
        ValueError,
        store.finish_process(third.id, third.token, status="running"),
        "finish_process() with a status that is not terminal",
    )


async def check_process_claimers_never_share(store: Store) -> None:
    """Claims made at once never take the same process: each is claimed once, and the claims
    beyond the processes there are get None."""
    kind = _unique("kind")
    drafts = [_draft(kind, f"p{i}") for i in range(12)]
    for draft in drafts:
        await store.start_process(draft)
    claims = await asyncio.gather(
        *(store.claim_process(f"worker-{i}", ttl=LONG_TTL, kinds=[kind]) for i in range(16))
    )
    got = [c.id for c in claims if c is not None]
    expect_equal(
        sorted(got), sorted(d.id for d in drafts), "processes claimed by 16 claims at once"
    )
    expect_equal(sum(1 for c in claims if c is None), 4, "claims that found nothing")


# --------------------------------------------------------------------------------------------
# Expiry, per recovery disposition
# --------------------------------------------------------------------------------------------


async def check_process_rerunnable_reruns_then_fails(store: Store) -> None:
    """A rerunnable process whose claim expired is claimed again (attempts + 1, a higher token;
    the old token is fenced off) until ``max_attempts``; then the next claim settles it
    ``failed``, and it is never claimed again."""
    sid = session_id_for("process-rerun")
    kind = _unique("kind")
    draft = _draft(kind, session_id=sid, recovery="rerunnable", max_attempts=2)
    await store.start_process(draft)
    first = await _claim(store, kind, "worker-a", ttl=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    second = await _claim(store, kind, "worker-b", ttl=SHORT_TTL)
    expect_equal(
        (second.id, second.attempts, second.owner),
        (draft.id, 2, "worker-b"),
        "(id, attempts, owner) of a rerunnable process claimed again",
    )
    expect(second.token > first.token, f"token of the rerun: {second.token} <= {first.token}")
    await expect_raises(
        LeaseLost,
        store.heartbeat_process(draft.id, first.token, ttl=LONG_TTL),
        "heartbeat by the worker whose claim expired and was taken over",
    )
    await expect_raises(
        LeaseLost,
        store.finish_process(draft.id, first.token, status="succeeded"),
        "finish by the worker whose claim expired and was taken over",
    )
    await asyncio.sleep(EXPIRY_WAIT)
    expect(
        await store.claim_process("worker-c", ttl=LONG_TTL, kinds=[kind]) is None,
        "claim of a rerunnable process out of attempts",
    )
    failed = await _get(store, draft.id)
    expect_equal(
        (failed.status, failed.attempts, failed.finished),
        ("failed", 2, True),
        "(status, attempts, finished) of a rerunnable process out of attempts",
    )
    expect(bool(failed.error), "a process failed on expiry says why (error)")
    await expect_raises(
        LeaseLost,
        store.finish_process(draft.id, second.token, status="succeeded"),
        "finish by the last worker after the process failed on expiry",
    )
    expect_equal(
        [t for t, _ in await _process_events(store, sid, draft.id)],
        ["process_started", "process_running", "process_running", "process_finished"],
        "events of a process run twice then failed",
    )


async def check_process_owner_bound_is_abandoned(store: Store) -> None:
    """An owner-bound process whose claim expired is never run again: the next claim (of any
    kind) settles it ``abandoned``, and its worker's token is fenced off."""
    sid = session_id_for("process-abandon")
    kind = _unique("kind")
    draft = _draft(kind, session_id=sid, recovery="owner_bound", max_attempts=5)
    await store.start_process(draft)
    claimed = await _claim(store, kind, ttl=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    # A claim of another kind settles it too: every claim settles what expired first.
    await store.claim_process("worker-z", ttl=LONG_TTL, kinds=[_unique("unrelated")])
    abandoned = await _get(store, draft.id)
    expect_equal(
        (abandoned.status, abandoned.attempts, abandoned.finished),
        ("abandoned", 1, True),
        "(status, attempts, finished) of an owner-bound process whose worker died",
    )
    expect(bool(abandoned.error), "an abandoned process says why (error)")
    expect(
        await store.claim_process("worker-b", ttl=LONG_TTL, kinds=[kind]) is None,
        "claim of an abandoned process",
    )
    await expect_raises(
        LeaseLost,
        store.finish_process(draft.id, claimed.token, status="succeeded"),
        "finish by the worker of an abandoned process",
    )
    expect_equal(
        await _process_events(store, sid, draft.id),
        [
            ("process_started", "pending"),
            ("process_running", "running"),
            ("process_finished", "abandoned"),
        ],
        "events of an abandoned process",
    )


async def check_process_externally_owned_waits(store: Store) -> None:
    """An externally owned process whose claim expired stays ``running`` (never claimed again);
    one its worker parked stays ``running`` with no claim; an external completion finishes
    either, and the first settlement stands."""
    kind = _unique("kind")
    crashed = _draft(kind, "crashed", recovery="externally_owned", max_attempts=3)
    parked = _draft(kind, "parked", recovery="externally_owned")
    await store.start_process(crashed)
    await store.start_process(parked)
    first = await _claim(store, kind, ttl=SHORT_TTL)
    expect_equal(first.id, crashed.id, "the externally owned process claimed first")
    second = await _claim(store, kind, ttl=LONG_TTL)
    await expect_raises(
        LeaseLost, store.park_process(parked.id, second.token + 1), "park with a stale token"
    )
    resting = await store.park_process(parked.id, second.token)
    expect_equal(
        (resting.status, resting.expires_at), ("running", None), "(status, expires_at) parked"
    )
    await asyncio.sleep(EXPIRY_WAIT)
    expect(
        await store.claim_process("worker-b", ttl=LONG_TTL, kinds=[kind]) is None,
        "claim with only externally owned processes running",
    )
    kept = await _get(store, crashed.id)
    expect_equal(
        (kept.status, kept.attempts), ("running", 1), "an externally owned process after expiry"
    )
    for record in (kept, resting):
        done = await store.finish_process(
            record.id, None, status="succeeded", result={"by": "owner"}
        )
        expect_equal(
            (done.status, done.result), ("succeeded", {"by": "owner"}), "an external completion"
        )
        late = await store.finish_process(record.id, None, status="failed", error="too late")
        expect_equal(
            (late.status, late.result, late.error),
            ("succeeded", {"by": "owner"}, None),
            "a second external completion (the first settlement stands)",
        )
    await expect_raises(
        LeaseLost,
        store.finish_process(_unique("nope"), None, status="succeeded"),
        "external completion of an unknown process",
    )


# --------------------------------------------------------------------------------------------
# Cancellation
# --------------------------------------------------------------------------------------------


async def check_process_cancel(store: Store) -> None:
    """Cancelling a pending process cancels it at once; a running one gets
    ``cancel_requested``, seen by its worker's heartbeat (the first reason stands); a finished
    one is unchanged; an unknown id is None."""
    kind = _unique("kind")
    waiting = await store.start_process(_draft(kind, "waiting"))
    running_draft = _draft(kind, "running")
    await store.start_process(running_draft)
    cancelled = await store.request_process_cancel(waiting.id, "not needed")
    if cancelled is None:
        fail("request_process_cancel() of a pending process returned None")
    expect_equal(
        (cancelled.status, cancelled.cancel_requested, cancelled.finished),
        ("cancelled", "not needed", True),
        "(status, cancel_requested, finished) of a pending process cancelled",
    )
    running = await _claim(store, kind)
    expect_equal(running.id, running_draft.id, "the process claimed (not the cancelled one)")
    asked = await store.request_process_cancel(running.id, "user pressed stop")
    if asked is None:
        fail("request_process_cancel() of a running process returned None")
    expect_equal(
        (asked.status, asked.cancel_requested),
        ("running", "user pressed stop"),
        "(status, cancel_requested) of a running process asked to stop",
    )
    again = await store.request_process_cancel(running.id, "second reason")
    expect_equal(
        again and again.cancel_requested, "user pressed stop", "the first cancel reason stands"
    )
    beat = await store.heartbeat_process(running.id, running.token, ttl=LONG_TTL)
    expect_equal(beat.cancel_requested, "user pressed stop", "cancel_requested seen by heartbeat")
    done = await store.finish_process(
        running.id, running.token, status="cancelled", error="stopped"
    )
    expect_equal(done.status, "cancelled", "status of a process its worker cancelled")
    after = await store.request_process_cancel(running.id, "late")
    expect_equal(after, done, "cancelling a finished process changes nothing")
    expect(
        await store.request_process_cancel(_unique("nope"), "x") is None,
        "request_process_cancel() of an unknown id",
    )


# --------------------------------------------------------------------------------------------
# The notification outbox, runnable sessions, events, delete
# --------------------------------------------------------------------------------------------


async def check_process_notification_outbox(store: Store) -> None:
    """Finished processes not yet notified are listed (oldest first) by
    ``unnotified_processes`` when they finished before the time given; once marked notified
    they are not, nor is one finished with ``notified=True``; pending and running ones never
    are."""
    kind = _unique("kind")
    drafts = [_draft(kind, f"p{i}") for i in range(3)]
    for draft in drafts:
        await store.start_process(draft)
    a = await _claim(store, kind)
    b = await _claim(store, kind)
    await store.finish_process(a.id, a.token, status="succeeded", result=1)
    await store.finish_process(b.id, b.token, status="failed", error="x")
    ours = {d.id for d in drafts}

    async def unnotified(before: float) -> list[str]:
        rows = await store.unnotified_processes(finished_before=before)
        return [p.id for p in rows if p.id in ours]

    later = time.time() + CLOCK_SLACK
    expect_equal(await unnotified(later), [a.id, b.id], "unnotified finished processes")
    expect_equal(await unnotified(time.time() - 3600), [], "unnotified, finished an hour ago")
    await store.mark_process_notified(a.id)
    expect_equal(await unnotified(later), [b.id], "unnotified after marking one notified")
    expect((await _get(store, a.id)).notified, "notified of a process marked notified")
    expect(not (await _get(store, b.id)).notified, "notified of a process not marked")
    await store.mark_process_notified(_unique("nope"))  # an unknown id is no error
    # A finisher with nothing to notify settles the process notified, in the same write.
    c = await _claim(store, kind)
    quiet = await store.finish_process(c.id, c.token, status="succeeded", notified=True)
    expect(quiet.notified, "notified of a process finished with notified=True")
    expect((await _get(store, c.id)).notified, "notified, as stored, of a quiet finish")
    expect_equal(await unnotified(later), [b.id], "unnotified after a quiet finish")


async def check_process_events_logged_in_session(store: Store) -> None:
    """A session's process logs ``process_started``, ``process_running``, ``process_progress``
    and ``process_finished`` in its session, each with the record as it was then."""
    sid = session_id_for("process-events")
    kind = _unique("kind")
    draft = _draft(kind, session_id=sid, payload={"x": 1})
    await store.start_process(draft)
    claimed = await _claim(store, kind)
    await store.heartbeat_process(draft.id, claimed.token, ttl=LONG_TTL)
    await store.heartbeat_process(draft.id, claimed.token, ttl=LONG_TTL, progress={"step": 1})
    await store.finish_process(draft.id, claimed.token, status="succeeded", result={"y": 2})
    expect_equal(
        await _process_events(store, sid, draft.id),
        [
            ("process_started", "pending"),
            ("process_running", "running"),
            ("process_progress", "running"),
            ("process_finished", "succeeded"),
        ],
        "(type, status) of the process's events (a heartbeat without progress logs nothing)",
    )
    page = await store.read_events(sid)
    data = {e.type: e.data["process"] for e in page.events}
    expect_equal(
        (data["process_progress"]["progress"], data["process_finished"]["result"]),
        ({"step": 1}, {"y": 2}),
        "progress and result in the events' records",
    )
    expect_equal(data["process_started"]["payload"], {"x": 1}, "payload in process_started")


async def check_runnable_sessions(store: Store) -> None:
    """Sessions with pending input or commands and no live lease are runnable, the one waiting
    longest first; a live lease hides a session, its release shows it again."""
    by_input = session_id_for("runnable-input")
    by_command = session_id_for("runnable-command")
    idle = session_id_for("runnable-idle")
    await store.enqueue_input(by_input, InputDraft("work"))
    await store.enqueue_command(by_command, CommandDraft("reset", "k1"))
    lease = await store.acquire_lease(idle, "owner-a", ttl=LONG_TTL)
    await commit_at(store, lease, 0, turns=1, release=True)
    ours = (by_input, by_command, idle)

    async def runnable() -> list[str]:
        return [sid for sid in await store.runnable_sessions(limit=MANY) if sid in ours]

    expect_equal(await runnable(), [by_input, by_command], "runnable sessions, oldest first")
    held = await store.acquire_lease(by_input, "owner-a", ttl=LONG_TTL)
    expect_equal(await runnable(), [by_command], "runnable sessions while one is leased")
    await store.release_lease(held)
    expect_equal(await runnable(), [by_input, by_command], "runnable after the release")
    short = await store.acquire_lease(by_command, "owner-a", ttl=SHORT_TTL)
    await asyncio.sleep(EXPIRY_WAIT)
    expect(by_command in await runnable(), "a session whose lease expired is runnable")
    again = await store.acquire_lease(by_command, "owner-a", ttl=LONG_TTL, take_over=short)
    (command,) = await store.list_commands(by_command)
    await commit_at(store, again, 0, turns=0, applied=(command.id,), release=True)
    expect_equal(await runnable(), [by_input], "runnable after the command was applied")
    expect_equal(
        len(await store.runnable_sessions(limit=1)), 1, "runnable_sessions(limit=1) gives one"
    )


async def check_poll_work(store: Store) -> None:
    """``poll_work`` claims like ``claim_process`` and lists like ``runnable_sessions`` and
    ``unnotified_processes`` in one call, each part only when asked for."""
    kind = _unique("kind")
    other = _unique("kind")
    waiting = session_id_for("poll-work")
    await store.enqueue_input(waiting, InputDraft("work"))
    first = await store.start_process(_draft(kind, "first"))
    await store.start_process(_draft(other, "done"))
    done = await _claim(store, other)
    await store.finish_process(done.id, done.token, status="succeeded", result=1)

    listed = await store.poll_work("worker-a", ttl=LONG_TTL, kinds=[kind], claim=False)
    expect_equal(
        (listed.process, listed.sessions, listed.unnotified),
        (None, (), ()),
        "poll_work(claim=False) with no sessions or outbox asked for",
    )
    expect_equal(
        (await _get(store, first.id)).status, "pending", "a process poll_work was not to claim"
    )
    later = time.time() + CLOCK_SLACK
    polled = await store.poll_work(
        "worker-a", ttl=LONG_TTL, kinds=[kind], sessions=MANY, finished_before=later
    )
    claimed = polled.process
    if claimed is None:
        fail(f"poll_work(kinds=[{kind!r}]) claimed nothing with a process runnable")
    expect_equal(
        (claimed.id, claimed.status, claimed.owner, claimed.attempts),
        (first.id, "running", "worker-a", 1),
        "(id, status, owner, attempts) of the process poll_work claimed",
    )
    expect(waiting in polled.sessions, "a session with pending input in poll_work's sessions")
    expect_equal(
        [p.id for p in polled.unnotified if p.id == done.id],
        [done.id],
        "a finished, unnotified process in poll_work's unnotified",
    )
    beat = await store.heartbeat_process(first.id, claimed.token, ttl=LONG_TTL)
    expect_equal(beat.token, claimed.token, "the claim poll_work made is fenced by its token")
    again = await store.poll_work("worker-b", ttl=LONG_TTL, kinds=[kind], sessions=1)
    expect_equal(again.process, None, "poll_work with nothing left to claim")
    expect_equal(len(again.sessions), 1, "poll_work(sessions=1) lists one session")


async def check_delete_removes_processes(store: Store) -> None:
    """Deleting a session deletes its processes (their keys can start new ones); other
    sessions' and the host's processes stay."""
    lease = await new_lease(store, "process-delete")
    sid = lease.session_id
    kind = _unique("kind")
    key = _unique("key")
    mine = _draft(kind, session_id=sid, key=key)
    await commit_at(store, lease, 0, turns=1, processes=(mine,), release=True)
    host = await store.start_process(_draft(kind))
    await store.delete(sid)
    expect(await store.get_process(mine.id) is None, "a deleted session's process")
    expect_equal(await store.list_processes(session_id=sid), [], "a deleted session's processes")
    expect((await store.get_process(host.id)) is not None, "the host's process after the delete")
    anew = await store.start_process(_draft(kind, session_id=sid, key=key, payload={"new": 1}))
    expect(anew.id != mine.id, "the key of a deleted session's process starts a new one")


CHECKS: tuple[Callable[[Store], Awaitable[None]], ...] = (
    check_process_start_is_idempotent_by_key,
    check_process_start_in_commit,
    check_process_claim_order_and_fencing,
    check_process_claimers_never_share,
    check_process_rerunnable_reruns_then_fails,
    check_process_owner_bound_is_abandoned,
    check_process_externally_owned_waits,
    check_process_cancel,
    check_process_notification_outbox,
    check_process_events_logged_in_session,
    check_runnable_sessions,
    check_poll_work,
    check_delete_removes_processes,
)
