"""Store conformance checks: leases per execution (what a lease reports, taking over a dead
holder, releasing in the commit), the mailbox (pending input, claims, cancellation, commands),
turn records, cancellation requests and the event log.

The rules come from the ``Store`` protocol docstrings: input is queued without a lease,
idempotently by key; a claim lives exactly as long as the lease that made it; the commit that
settles a claim is refused when the claim is gone; every write logs its events, numbered per
session without gaps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import attrs

from lash._store.protocol import Store
from lash._store.records import (
    CommandDraft,
    CommitDelta,
    EventDraft,
    InputDraft,
    TurnRecord,
)
from lash._testing.store_checks import (
    EXPIRY_WAIT,
    LONG_TTL,
    SHORT_TTL,
    Chain,
    commit_at,
    describe,
    expect,
    expect_equal,
    expect_raises,
    fail,
    load_record,
    new_lease,
    session_id_for,
)
from lash.errors import InputConflict, LeaseLost, RevisionConflict, SessionBusy


def _record(sid: str, turn_id: str, index: int = 1) -> TurnRecord:
    return TurnRecord(sid, turn_id, index, "completed", 0, result={"turn_id": turn_id})


# --------------------------------------------------------------------------------------------
# Leases per execution
# --------------------------------------------------------------------------------------------


async def check_lease_reports_the_head(store: Store) -> None:
    """A lease says the head revision and how much input and how many commands are pending."""
    lease = await new_lease(store, "head")
    sid = lease.session_id
    got = (lease.revision, lease.pending_inputs, lease.pending_commands)
    expect_equal(got, (0, 0, 0), "(revision, pending_inputs, pending_commands) of a new session")
    await commit_at(store, lease, 0, turns=1)
    await store.enqueue_input(sid, InputDraft("one"))
    await store.enqueue_input(sid, InputDraft("two", ingress="active_turn"))
    await store.enqueue_command(sid, CommandDraft("reset", "k1"))
    again = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    got = (again.revision, again.pending_inputs, again.pending_commands)
    expect_equal(got, (1, 2, 1), "(revision, pending_inputs, pending_commands) re-acquired")


async def check_lease_take_over_dead_holder(store: Store) -> None:
    """A live lease is taken over at once when the caller presents it as ``take_over`` (it
    proved the holder dead), never when the lease presented is not the current one."""
    held = await new_lease(store, "take-over", owner="dead-owner")
    sid = held.session_id
    busy = await expect_raises(
        SessionBusy, store.acquire_lease(sid, "heir", ttl=LONG_TTL), "acquire a live lease"
    )
    expect_equal((busy.owner, busy.token), ("dead-owner", held.token), "SessionBusy holder")
    stale = attrs.evolve(held, token=held.token + 7)
    await expect_raises(
        SessionBusy,
        store.acquire_lease(sid, "heir", ttl=LONG_TTL, take_over=stale),
        "take over with a lease that is not the current one",
    )
    taken = await store.acquire_lease(sid, "heir", ttl=LONG_TTL, take_over=held)
    expect_equal(taken.owner, "heir", "owner after take-over")
    expect(taken.token > held.token, f"token after take-over: {taken.token} <= {held.token}")
    await expect_raises(
        LeaseLost,
        store.commit(sid, lease=held, expected_revision=0, delta=CommitDelta(turns=1)),
        "commit by the holder that was taken over",
    )


async def check_commit_releases_the_lease(store: Store) -> None:
    """``delta.release`` releases the lease in the commit: another owner takes it at once, with
    a higher token, and the released lease no longer commits."""
    lease = await new_lease(store, "release-in-commit")
    sid = lease.session_id
    revision = await store.commit(
        sid, lease=lease, expected_revision=0, delta=CommitDelta(turns=1, release=True)
    )
    expect_equal(revision, 1, "revision of the releasing commit")
    other = await store.acquire_lease(sid, "owner-b", ttl=LONG_TTL)
    expect(other.token > lease.token, "the next holder's token is higher")
    await expect_raises(
        LeaseLost,
        store.commit(sid, lease=lease, expected_revision=1, delta=CommitDelta(turns=1)),
        "commit with a lease the commit released",
    )


# --------------------------------------------------------------------------------------------
# Pending input
# --------------------------------------------------------------------------------------------


async def check_enqueue_is_idempotent_by_key(store: Store) -> None:
    """Same key and content: the input already queued; other content: InputConflict; no key: a
    new input each time; inputs are listed oldest first, each logged once."""
    sid = session_id_for("enqueue")
    first = await store.enqueue_input(sid, InputDraft("hello", key="k1", source="host"))
    expect_equal(
        (first.session_id, first.text, first.key, first.state, first.ingress, first.source),
        (sid, "hello", "k1", "pending", "next_turn", "host"),
        "(session_id, text, key, state, ingress, source) of a queued input",
    )
    again = await store.enqueue_input(sid, InputDraft("hello", key="k1"))
    expect_equal(again.id, first.id, "id of the same key queued again")
    conflict = await expect_raises(
        InputConflict,
        store.enqueue_input(sid, InputDraft("other text", key="k1")),
        "the same key with other content",
    )
    expect_equal(conflict.existing_id, first.id, "InputConflict.existing_id")
    await expect_raises(
        InputConflict,
        store.enqueue_input(sid, InputDraft("hello", key="k1", ingress="active_turn")),
        "the same key with another ingress",
    )
    second = await store.enqueue_input(sid, InputDraft("plain"))
    third = await store.enqueue_input(sid, InputDraft("plain"))
    expect(second.id != third.id, "inputs without a key are distinct")
    listed = await store.list_inputs(sid)
    expect_equal([i.id for i in listed], [first.id, second.id, third.id], "inputs, oldest first")
    expect(listed[0].seq < listed[1].seq < listed[2].seq, "seq increases in the order of queueing")
    page = await store.read_events(sid)
    queued = [e for e in page.events if e.type == "input_queued"]
    expect_equal(len(queued), 3, "input_queued events (one per new input, none for a repeat)")
    expect(await store.load(sid) is None, "load() of a session that only has input")
    expect(
        all(row.session_id != sid for row in await store.list_sessions()),
        "a session with input and no commit is not listed",
    )
    # A cancelled input stays as a tombstone: its key replayed returns it, cancelled (a retry
    # never resurrects what a user withdrew).
    await store.cancel_inputs(sid, ["k1"])
    replay = await store.enqueue_input(sid, InputDraft("hello", key="k1"))
    expect_equal((replay.id, replay.state), (first.id, "cancelled"), "a cancelled key replayed")
    expect_equal(
        [i.id for i in await store.list_inputs(sid)], [second.id, third.id], "pending after it"
    )


async def check_claims_settle_in_the_commit(store: Store) -> None:
    """Claims take the oldest pending inputs; the commit that settles them completes them,
    with the turn's id; completed inputs leave the pending list."""
    lease = await new_lease(store, "claim")
    sid = lease.session_id
    drafts = [InputDraft(f"in-{i}") for i in range(3)]
    queued = [await store.enqueue_input(sid, draft) for draft in drafts]
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    claimed = await store.claim_inputs(lease, limit=2)
    expect_equal([c.id for c in claimed], [q.id for q in queued[:2]], "claimed inputs")
    expect(all(c.state == "claimed" for c in claimed), "claimed inputs say 'claimed'")
    states = {i.id: i.state for i in await store.list_inputs(sid)}
    expect_equal(
        states,
        {queued[0].id: "claimed", queued[1].id: "claimed", queued[2].id: "pending"},
        "states while claimed",
    )
    await commit_at(
        store,
        lease,
        0,
        nodes=Chain().exchange("in-0", "a"),
        turns=1,
        claimed=(queued[0].id, queued[1].id),
        turn=_record(sid, "t-1"),
    )
    pending = await store.list_inputs(sid)
    expect_equal([i.id for i in pending], [queued[2].id], "pending inputs after the commit")
    settled = {i.id: i for i in await store.list_inputs(sid, settled=True)}
    for q in queued[:2]:
        got = (settled[q.id].state, settled[q.id].turn_id)
        expect_equal(got, ("completed", "t-1"), "(state, turn_id) of a settled input")
        expect(settled[q.id].settled_at is not None, "settled_at of a completed input")


async def check_claims_die_with_their_lease(store: Store) -> None:
    """A claim whose lease is released or expires is pending again; the next holder claims it,
    and the first holder's commit that would settle it is refused with nothing written."""
    lease = await new_lease(store, "claim-dies")
    sid = lease.session_id
    queued = await store.enqueue_input(sid, InputDraft("work"))
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    (claimed,) = await store.claim_inputs(lease)
    await store.release_lease(lease)
    (after,) = await store.list_inputs(sid)
    expect_equal(after.state, "pending", "state of an input whose lease was released")
    short = await store.acquire_lease(sid, "owner-b", ttl=SHORT_TTL)
    (again,) = await store.claim_inputs(short)
    expect_equal(again.id, queued.id, "the input claimed again")
    await asyncio.sleep(EXPIRY_WAIT)
    (expired,) = await store.list_inputs(sid)
    expect_equal(expired.state, "pending", "state of an input whose lease expired")
    heir = await store.acquire_lease(sid, "owner-c", ttl=LONG_TTL)
    (third,) = await store.claim_inputs(heir)
    expect_equal(third.id, queued.id, "the input claimed by the next holder")
    events = (await store.read_events(sid)).last
    await expect_raises(
        LeaseLost,
        store.commit(
            sid,
            lease=heir,
            expected_revision=0,
            delta=CommitDelta(turns=1, claimed=(claimed.id, "no-such-input")),
        ),
        "commit settling an input that is not claimed by its lease",
    )
    expect(await store.load(sid) is None, "the session after the refused commit")
    expect_equal((await store.read_events(sid)).last, events, "events after the refused commit")
    await expect_raises(
        LeaseLost, store.claim_inputs(short), "claim_inputs with a lease that was taken over"
    )
    await store.release_lease(heir)
    fresh = await store.acquire_lease(sid, "owner-c", ttl=LONG_TTL)
    await expect_raises(
        LeaseLost,
        store.commit(
            sid, lease=fresh, expected_revision=0, delta=CommitDelta(turns=1, claimed=(third.id,))
        ),
        "commit settling an input its lease never claimed (an earlier lease of the same owner did)",
    )
    expect(await store.load(sid) is None, "the session after the second refused commit")


async def check_claims_one_at_a_time_reach_every_input(store: Store) -> None:
    """Under one lease, claims of one input at a time take every pending input in order (a
    claim never gets stuck on inputs its own lease holds), then nothing; two claims at once
    never take the same input."""
    lease = await new_lease(store, "claim-scan")
    sid = lease.session_id
    queued = [await store.enqueue_input(sid, InputDraft(f"in-{i}")) for i in range(34)]
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    taken = []
    for _ in range(34):
        (claimed,) = await store.claim_inputs(lease, limit=1)
        taken.append(claimed.id)
    expect_equal(taken, [q.id for q in queued], "inputs claimed one at a time")
    expect_equal(await store.claim_inputs(lease, limit=1), [], "a claim with nothing left")
    await store.release_lease(lease)
    other = session_id_for("claim-race")
    (only,) = [await store.enqueue_input(other, InputDraft("one"))]
    lease = await store.acquire_lease(other, "owner-a", ttl=LONG_TTL)
    first, second = await asyncio.gather(
        store.claim_inputs(lease, limit=1), store.claim_inputs(lease, limit=1)
    )
    expect_equal(
        sorted(len(batch) for batch in (first, second)), [0, 1], "two claims at once of one input"
    )
    expect_equal([i.id for i in first + second], [only.id], "the input claimed")


async def check_claim_by_ingress(store: Store) -> None:
    """``claim_inputs(ingress="active_turn")`` takes only input queued for the running turn."""
    lease = await new_lease(store, "claim-ingress")
    sid = lease.session_id
    nxt = await store.enqueue_input(sid, InputDraft("later"))
    active = await store.enqueue_input(sid, InputDraft("now", ingress="active_turn"))
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    got = await store.claim_inputs(lease, limit=10, ingress="active_turn")
    expect_equal([i.id for i in got], [active.id], "active-turn claim")
    rest = await store.claim_inputs(lease, limit=10)
    expect_equal([i.id for i in rest], [nxt.id], "what a plain claim takes next")


async def check_cancel_outcomes(store: Store) -> None:
    """Cancellation by id or key says what it did, one outcome per target; a suffix stops at
    nothing: a claimed input in the middle stays, the later ones are cancelled."""
    lease = await new_lease(store, "cancel")
    sid = lease.session_id
    a = await store.enqueue_input(sid, InputDraft("a", key="ka"))
    b = await store.enqueue_input(sid, InputDraft("b"))
    c = await store.enqueue_input(sid, InputDraft("c", ingress="active_turn"))
    d = await store.enqueue_input(sid, InputDraft("d"))
    e = await store.enqueue_input(sid, InputDraft("e"))
    outcomes = await store.cancel_inputs(sid, ["ka", b.id, "nope", "ka"])
    expect_equal(
        [(o.target, o.outcome) for o in outcomes],
        [
            ("ka", "cancelled"),
            (b.id, "cancelled"),
            ("nope", "unknown"),
            ("ka", "already_cancelled"),
        ],
        "(target, outcome) of a set cancellation",
    )
    expect_equal(outcomes[0].input and outcomes[0].input.id, a.id, "the input cancelled by key")
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    (claimed,) = await store.claim_inputs(lease, ingress="active_turn")
    expect_equal(claimed.id, c.id, "the claimed input")
    suffix = await store.cancel_inputs(sid, [c.id], suffix=True)
    expect_equal(
        [(o.target, o.outcome) for o in suffix],
        [(c.id, "already_claimed"), (d.id, "cancelled"), (e.id, "cancelled")],
        "(target, outcome) of a suffix cancellation",
    )
    await commit_at(store, lease, 0, turns=1, claimed=(c.id,), turn=_record(sid, "t-c"))
    (done,) = await store.cancel_inputs(sid, [c.id])
    expect_equal(done.outcome, "already_completed", "cancelling a completed input")
    expect_equal(await store.list_inputs(sid), [], "pending inputs after it all")
    kinds = [ev.type for ev in (await store.read_events(sid)).events]
    expect_equal(kinds.count("input_cancelled"), 4, "input_cancelled events")
    missing = await store.cancel_inputs(sid, ["no-such"], suffix=True)
    expect_equal([o.outcome for o in missing], ["unknown"], "a suffix from an unknown input")


async def check_commit_enqueues_input(store: Store) -> None:
    """``delta.enqueue`` queues input in the commit (pending afterwards, logged)."""
    lease = await new_lease(store, "commit-enqueue")
    sid = lease.session_id
    await commit_at(store, lease, 0, turns=1, enqueue=(InputDraft("follow-up", source="plugin:x"),))
    (queued,) = await store.list_inputs(sid)
    expect_equal(
        (queued.text, queued.state, queued.source),
        ("follow-up", "pending", "plugin:x"),
        "(text, state, source) of input queued by a commit",
    )
    kinds = [ev.type for ev in (await store.read_events(sid)).events]
    expect("input_queued" in kinds, f"input_queued among the commit's events: {kinds}")


# --------------------------------------------------------------------------------------------
# Session commands
# --------------------------------------------------------------------------------------------


async def check_commands_queue_and_apply(store: Store) -> None:
    """Commands queue without a lease, idempotently by key; the commit that applies them
    settles them; an applied command's key still returns it."""
    sid = session_id_for("commands")
    first = await store.enqueue_command(sid, CommandDraft("reset", "k1", {"why": "x"}))
    expect_equal(
        (first.name, first.key, dict(first.args), first.state),
        ("reset", "k1", {"why": "x"}, "pending"),
        "(name, key, args, state) of a queued command",
    )
    again = await store.enqueue_command(sid, CommandDraft("reset", "k1", {"why": "x"}))
    expect_equal(again.id, first.id, "the same key queued again")
    await expect_raises(
        InputConflict,
        store.enqueue_command(sid, CommandDraft("refresh_tool_catalog", "k1")),
        "a command key used again for another command",
    )
    second = await store.enqueue_command(sid, CommandDraft("refresh_tool_catalog", "k2"))
    expect_equal(
        [c.id for c in await store.list_commands(sid)], [first.id, second.id], "pending commands"
    )
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    expect_equal(lease.pending_commands, 2, "pending_commands of the lease")
    await commit_at(store, lease, 0, turns=0, applied=(first.id,))
    expect_equal(
        [c.id for c in await store.list_commands(sid)], [second.id], "pending after applying one"
    )
    settled = {c.id: c.state for c in await store.list_commands(sid, settled=True)}
    expect_equal(settled, {first.id: "applied", second.id: "pending"}, "states")
    replay = await store.enqueue_command(sid, CommandDraft("reset", "k1", {"why": "x"}))
    expect_equal((replay.id, replay.state), (first.id, "applied"), "an applied key queued again")


async def check_turn_paused_then_continued(store: Store) -> None:
    """What tool approval relies on: a commit may settle its claimed input and count a turn
    without a turn record (the turn stopped for approval); a later commit writes that turn's
    record; an answer queued by key keeps the first answer (another one is ``InputConflict``,
    and the settled listing returns the first, applied)."""
    sid = session_id_for("paused")
    queued = await store.enqueue_input(sid, InputDraft("delete the logs"))
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL, turn="t-1")
    claimed = await store.claim_inputs(lease, limit=1)
    expect_equal([c.id for c in claimed], [queued.id], "claimed input")
    chain = Chain()
    await commit_at(
        store,
        lease,
        0,
        nodes=chain.exchange("delete the logs", ""),
        turns=1,
        claimed=(queued.id,),
        plugin_states={"lash": {"awaiting": {"turn_id": "t-1", "calls": [{"call_id": "c1"}]}}},
        release=True,
    )
    settled = {i.id: i.state for i in await store.list_inputs(sid, settled=True)}
    expect_equal(settled, {queued.id: "completed"}, "input settled by a commit with no turn")
    expect_equal(await store.turn_record(sid, "t-1"), None, "turn record of a paused turn")
    first = await store.enqueue_command(
        sid, CommandDraft("approval", "approval:t-1:c1", {"decision": "approve", "key": "a"})
    )
    await expect_raises(
        InputConflict,
        store.enqueue_command(
            sid, CommandDraft("approval", "approval:t-1:c1", {"decision": "reject", "key": "b"})
        ),
        "a second answer under the same key",
    )
    lease = await store.acquire_lease(sid, "owner-b", ttl=LONG_TTL)
    expect_equal((lease.revision, lease.pending_commands), (1, 1), "(revision, pending_commands)")
    await commit_at(
        store,
        lease,
        1,
        nodes=chain.exchange("", "done"),
        turns=0,
        applied=(first.id,),
        plugin_states={"lash": {"awaiting": None}},
        turn=_record(sid, "t-1"),
    )
    record = await store.turn_record(sid, "t-1")
    expect(record is not None, "the continued turn's record is written by the later commit")
    assert record is not None
    expect_equal((record.index, record.revision), (1, 2), "(index, revision) of its record")
    head = await load_record(store, sid)
    expect_equal((head.revision, head.turns), (2, 1), "(revision, turns): one turn, two commits")
    expect_equal(
        dict(head.plugin_states)["lash"], {"awaiting": None}, "the state the later commit wrote"
    )
    answers = [c for c in await store.list_commands(sid, settled=True) if c.name == "approval"]
    expect_equal(
        [(c.id, dict(c.args)["decision"], c.state) for c in answers],
        [(first.id, "approve", "applied")],
        "answers in the settled listing",
    )


# --------------------------------------------------------------------------------------------
# Turns and cancellation requests
# --------------------------------------------------------------------------------------------


async def check_turn_records_and_cancel_requests(store: Store) -> None:
    """A cancel request for the running turn is stored (the first stands); a committed turn's
    record comes back by id, with its revision; requests for anything else are ``unknown``."""
    sid = session_id_for("turns")
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL, turn="t-1")
    unknown = await store.request_cancel(sid, "t-other", origin="host")
    expect_equal(unknown.status, "unknown", "a request for a turn that is not running")
    first = await store.request_cancel(sid, "t-1", origin="worker-9", reason="too slow")
    expect_equal(first.status, "requested", "a request for the running turn")
    second = await store.request_cancel(sid, "t-1", origin="other")
    expect_equal(second.status, "already_requested", "a second request")
    request = await store.cancel_request(sid, "t-1")
    if request is None:
        fail("cancel_request() returned None after a request")
    expect_equal((request.origin, request.reason), ("worker-9", "too slow"), "the stored request")
    await commit_at(store, lease, 0, turns=1, turn=_record(sid, "t-1"), release=True)
    record = await store.turn_record(sid, "t-1")
    if record is None:
        fail("turn_record() of a committed turn returned None")
    expect_equal(
        (record.turn_id, record.outcome, record.revision, dict(record.result)),
        ("t-1", "completed", 1, {"turn_id": "t-1"}),
        "(turn_id, outcome, revision, result) of the record",
    )
    expect(
        await store.cancel_request(sid, "t-1") is None,
        "the cancel request of a committed turn is dropped by its commit",
    )
    finished = await store.request_cancel(sid, "t-1", origin="late")
    expect_equal(finished.status, "already_finished", "a request after the commit")
    expect(finished.record is not None, "already_finished carries the record")
    expect(await store.turn_record(sid, "t-2") is None, "turn_record() of an unknown turn")
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    await expect_raises(
        RevisionConflict,
        store.commit(
            sid,
            lease=lease,
            expected_revision=1,
            delta=CommitDelta(turns=1, turn=_record(sid, "t-1", 2)),
        ),
        "a second commit of the same turn id",
    )


# --------------------------------------------------------------------------------------------
# The event log
# --------------------------------------------------------------------------------------------


async def check_event_log(store: Store) -> None:
    """Events get gap-free sequence numbers per session, in the order written: acquire's,
    a commit's (in delta order), the mailbox's; reads resume after a number, within a limit;
    the session's head says its latest event."""
    sid = session_id_for("events")
    lease = await store.acquire_lease(
        sid, "owner-a", ttl=LONG_TTL, events=[EventDraft("turn_started", {"n": 1})]
    )
    await store.enqueue_input(sid, InputDraft("x"))
    await commit_at(
        store,
        lease,
        0,
        turns=1,
        events=(EventDraft("a", {"k": [1, "two"]}), EventDraft("b")),
    )
    page = await store.read_events(sid)
    expect_equal(
        [(e.seq, e.type) for e in page.events],
        [(1, "turn_started"), (2, "input_queued"), (3, "a"), (4, "b")],
        "(seq, type) of the events",
    )
    expect_equal(dict(page.events[2].data), {"k": [1, "two"]}, "data of an event")
    expect_equal((page.first, page.last), (1, 4), "(first, last) of the window")
    later = await store.read_events(sid, after=2, limit=1)
    expect_equal([e.seq for e in later.events], [3], "events after 2, limit 1")
    expect_equal((await load_record(store, sid)).event_seq, 4, "SessionRecord.event_seq")
    empty = await store.read_events(session_id_for("no-events"))
    expect_equal((empty.events, empty.last), ((), 0), "the events of an unknown session")


async def check_commit_enqueue_conflict_writes_nothing(store: Store) -> None:
    """A commit whose ``enqueue`` reuses a key with other content is an InputConflict, and
    nothing of the commit is written (nodes, revision, claims, events)."""
    lease = await new_lease(store, "enqueue-conflict")
    sid = lease.session_id
    await store.enqueue_input(sid, InputDraft("original", key="k"))
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    (claimed,) = await store.claim_inputs(lease)
    events = (await store.read_events(sid)).last
    await expect_raises(
        InputConflict,
        store.commit(
            sid,
            lease=lease,
            expected_revision=0,
            delta=CommitDelta(
                nodes=Chain().exchange("original", "a"),
                turns=1,
                claimed=(claimed.id,),
                enqueue=(InputDraft("something else", key="k"),),
            ),
        ),
        "a commit enqueueing a key already used for other content",
    )
    expect(await store.load(sid) is None, "the session after the refused commit")
    (still,) = await store.list_inputs(sid)
    expect_equal((still.id, still.state), (claimed.id, "claimed"), "the claim after it")
    expect_equal((await store.read_events(sid)).last, events, "events after the refused commit")


async def check_replace_keeps_the_mailbox(store: Store) -> None:
    """A replacing commit replaces the history, not the mailbox, turn records or event log:
    queued input and commands stay pending, event numbers go on."""
    lease = await new_lease(store, "replace-mailbox")
    sid = lease.session_id
    await commit_at(store, lease, 0, nodes=Chain().exchange("q", "a"), turns=1)
    queued = await store.enqueue_input(sid, InputDraft("still here"))
    command = await store.enqueue_command(sid, CommandDraft("reset", "k1"))
    before = (await store.read_events(sid)).last
    lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
    await commit_at(
        store, lease, 1, nodes=Chain().exchange("new", "b"), turns=1, replace=True, release=True
    )
    expect_equal([i.id for i in await store.list_inputs(sid)], [queued.id], "inputs after")
    expect_equal([c.id for c in await store.list_commands(sid)], [command.id], "commands after")
    await store.enqueue_input(sid, InputDraft("after"))
    page = await store.read_events(sid)
    expect_equal(page.first, 1, "the oldest event kept across a replacing commit")
    expect_equal(page.events[-1].seq, before + 1, "the number of the next event")


async def check_delete_keeps_fencing_and_event_numbers(store: Store) -> None:
    """A session created again under a deleted one's id starts above it: the old lease never
    commits, lease tokens and event numbers go on rising; a session with only queued input can
    be deleted too (its mailbox goes)."""
    lease = await new_lease(store, "delete-fencing")
    sid = lease.session_id
    await store.enqueue_input(sid, InputDraft("x"))
    await commit_at(store, lease, 0, turns=1, release=True)
    last = (await store.read_events(sid)).last
    await store.delete(sid)
    again = await store.acquire_lease(sid, lease.owner, ttl=LONG_TTL)
    expect(again.token > lease.token, f"token after delete: {again.token} <= {lease.token}")
    await expect_raises(
        LeaseLost,
        store.commit(sid, lease=lease, expected_revision=0, delta=CommitDelta(turns=1)),
        "commit with a lease from before the delete",
    )
    await store.release_lease(again)
    await store.enqueue_input(sid, InputDraft("y"))
    page = await store.read_events(sid)
    expect(
        bool(page.events) and page.events[0].seq > last,
        f"event numbers after the delete start above {last}: {[e.seq for e in page.events]}",
    )
    only_input = session_id_for("delete-inbox")
    await store.enqueue_input(only_input, InputDraft("queued, never run"))
    try:
        await store.delete(only_input)
    except Exception as exc:
        raise AssertionError(
            f"delete of a session with only queued input: expected it deleted, got {describe(exc)}"
        ) from exc
    expect_equal(await store.list_inputs(only_input), [], "inputs of a deleted inbox")


CHECKS: tuple[Callable[[Store], Awaitable[None]], ...] = (
    check_lease_reports_the_head,
    check_lease_take_over_dead_holder,
    check_commit_releases_the_lease,
    check_enqueue_is_idempotent_by_key,
    check_claims_settle_in_the_commit,
    check_claims_die_with_their_lease,
    check_claims_one_at_a_time_reach_every_input,
    check_claim_by_ingress,
    check_cancel_outcomes,
    check_commit_enqueues_input,
    check_commands_queue_and_apply,
    check_turn_paused_then_continued,
    check_turn_records_and_cancel_requests,
    check_event_log,
    check_commit_enqueue_conflict_writes_nothing,
    check_replace_keeps_the_mailbox,
    check_delete_keeps_fencing_and_event_numbers,
)
