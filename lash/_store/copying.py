"""Copying every session of one store into another (``lash store copy SRC DST``), through the
:class:`Store` protocol only, so it works between any two backends (SQLite to Postgres and back).

A copy writes what the protocol lets a writer write, so it carries the *content* of a session,
not the store's bookkeeping:

- carried: the head (every node of every frame, plugin states, config, usage, turn count, the
  parent link), the blobs of the images its messages and input refer to, every turn record
  (outcome, reason, result), every input (its text, items, key, ingress, source and state:
  ``completed`` ones with the turn that consumed them, ``cancelled`` ones, and ``pending`` ones,
  still queued at the destination), every session command (pending or applied), the events of
  the replay window (types and data, in order), and the processes (id, kind, payload, key,
  recovery, attempts bound, timeout, source; a finished one with its status, result, error and
  ``notified`` flag; a cancellation request);
- not carried: leases and claims (a ``claimed`` input is copied ``pending``; a ``running``
  process is copied ``pending``, except an owner-bound one, which ends ``abandoned`` as its
  worker's death would end it), revisions and times (the destination numbers its own commits and
  stamps its own times; input, command and event ids and sequence numbers are the
  destination's), cancellation requests of running turns, process progress and attempt counts,
  sessions that hold queued input but no commit (``list_sessions`` does not list them), and
  events already dropped from the source's replay window.

The destination's log of a copied session holds, after the copied events, the events the copy's
own writes log (``input_queued``, ``process_started``...), between a ``store_copy_started`` and a
``store_copied`` event; the latter marks the session as completely copied, which is how a re-run
with ``merge`` skips it (and how it finds, and redoes, a copy that was interrupted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Literal

import attrs

from lash._contract.graph import TurnOutcome, UserMessage
from lash._contract.media import image_ref
from lash._contract.turn_types import ProcessRecord
from lash._store.protocol import Store
from lash._store.records import (
    CommandDraft,
    CommitDelta,
    EventDraft,
    InputDraft,
    PendingInput,
    ProcessDraft,
    QueuedCommand,
    SessionSummary,
    TurnRecord,
)
from lash.errors import LashError, SessionBusy, UnknownSession

__all__ = ["COPIED", "COPY_STARTED", "CopyReport", "StoreCopyError", "copy_store"]

#: The event that opens a session's copy in the destination's log, and the one that closes it.
COPY_STARTED = "store_copy_started"
COPIED = "store_copied"

#: Who holds a destination session's lease while it is copied.
COPY_OWNER = "lash-store-copy"

#: What to do with a destination that already holds sessions or processes (see copy_store).
Mode = Literal["refuse", "merge", "force"]

_TTL = 300.0
_ALL = 2**31 - 1  # list_processes has a limit and no cursor: ask for every one


class StoreCopyError(LashError):
    """A copy that cannot start or go on (a non-empty destination, a session in the way)."""


@attrs.frozen
class CopyReport:
    """What a copy did, by session id and process id."""

    copied: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    processes: tuple[str, ...] = ()
    processes_skipped: tuple[str, ...] = ()


async def copy_store(
    src: Store,
    dst: Store,
    *,
    mode: Mode = "refuse",
    progress: Callable[[str], None] = lambda line: None,
    source_name: str = "",
) -> CopyReport:
    """Copy every session (and every process) of ``src`` into ``dst``.

    ``mode`` says what to do when ``dst`` is not empty: ``refuse`` (raise
    :class:`StoreCopyError` before writing anything), ``merge`` (copy the sessions ``dst`` does
    not hold; skip those a previous copy finished; redo those a previous copy left half done;
    refuse, before writing anything, a session of the same id that no copy wrote), ``force``
    (like ``merge``, but a session ``dst`` holds under a source session's id is deleted and
    copied again). Processes whose id ``dst`` holds are skipped in every mode. ``progress``
    gets one line per session copied or skipped.
    """
    ids = _parents_first(await src.list_sessions())
    held = {s.session_id for s in await dst.list_sessions()}
    held_processes = {p.id for p in await dst.list_processes(limit=_ALL)}
    if mode == "refuse" and (held or held_processes):
        raise StoreCopyError(
            f"the destination is not empty ({len(held)} sessions, {len(held_processes)} "
            "processes); pass --merge to add the sessions it does not hold (and finish an "
            "interrupted copy), or --force to replace the ones it holds under the same ids"
        )
    states = {sid: await _state(dst, sid) for sid in ids}
    if mode == "merge":
        foreign = [sid for sid in ids if states[sid] == "other"]
        if foreign:
            raise StoreCopyError(
                f"the destination already holds session(s) {', '.join(map(repr, foreign))}, "
                "which no copy wrote; pass --force to replace them"
            )
    copied: list[str] = []
    skipped: list[str] = []
    replaced: list[str] = []
    started: list[str] = []
    passed: list[str] = []  # processes the destination holds already
    for n, sid in enumerate(ids, 1):
        state = states[sid]
        if state == "copied" and mode == "merge":
            skipped.append(sid)
            progress(f"[{n}/{len(ids)}] {sid}: skipped (copied already)")
            continue
        if state != "absent":
            await _delete(dst, sid)
            replaced.append(sid)
        line = await _copy_session(src, dst, sid, source_name, started, passed)
        copied.append(sid)
        progress(f"[{n}/{len(ids)}] {sid}: {line}")
    # The host's processes (of no session). Those of sessions with no commit are not copied,
    # like their sessions.
    rest = [p for p in await src.list_processes(limit=_ALL) if p.session_id is None]
    before = len(started)
    for record in rest:
        await _copy_process(dst, record, started, passed)
    if rest:
        progress(f"host processes: {len(started) - before} of {len(rest)} copied")
    return CopyReport(
        copied=tuple(copied),
        skipped=tuple(skipped),
        replaced=tuple(replaced),
        processes=tuple(started),
        processes_skipped=tuple(passed),
    )


def _parents_first(sessions: list[SessionSummary]) -> list[str]:
    """The ids of ``sessions`` in the order they are copied: oldest first, but each child
    session right after its parent when it is the older (a sub-agent made in its parent's
    first turn commits before its parent). A destination stores a child's link with the
    incarnation its parent has there when the child is written: a parent replaced (deleted,
    by ``force`` or a redone partial copy) after its child was written would leave the child
    linked to the deleted copy, its usage rolling up into no one."""
    oldest_first = sorted(sessions, key=lambda s: (s.created_at, s.session_id))
    parents = {s.session_id: s.parent_id for s in oldest_first}
    ordered: dict[str, None] = {}
    for summary in oldest_first:
        line = [summary.session_id]  # the session, then its listed ancestors not placed yet
        parent = summary.parent_id
        while parent in parents and parent not in ordered and parent not in line:
            line.append(parent)
            parent = parents[parent]
        ordered.update(dict.fromkeys(reversed(line)))
    return list(ordered)


async def _state(dst: Store, session_id: str) -> Literal["absent", "copied", "partial", "other"]:
    """Whether ``dst`` holds ``session_id``, and whether a copy wrote it (completely or not)."""
    types: set[str] = set()
    after = 0
    while True:
        page = await dst.read_events(session_id, after=after)
        types.update(e.type for e in page.events)
        if not page.events or page.events[-1].seq >= page.last:
            break
        after = page.events[-1].seq
    if COPIED in types:
        return "copied"
    if COPY_STARTED in types:
        return "partial"
    if await dst.load(session_id) is None and not await dst.list_inputs(session_id, settled=True):
        return "absent"
    return "other"


async def _delete(dst: Store, session_id: str) -> None:
    """Delete ``session_id`` from ``dst``; a lease an interrupted copy left is the copy's own
    (same owner), so it is released first rather than waited out."""
    try:
        await dst.delete(session_id)
        return
    except UnknownSession:
        return  # a copy interrupted before its first commit left only events behind
    except SessionBusy as busy:
        if busy.owner != COPY_OWNER:
            raise
    lease = await dst.acquire_lease(session_id, COPY_OWNER, ttl=_TTL)
    await dst.release_lease(lease)
    with contextlib.suppress(UnknownSession):
        await dst.delete(session_id)


async def _copy_session(
    src: Store,
    dst: Store,
    sid: str,
    source_name: str,
    started: list[str],
    passed: list[str],
) -> str:
    record = await src.load(sid, full=True)
    if record is None:  # deleted since it was listed
        return "gone from the source"
    events = await _events(src, sid)
    inputs = await src.list_inputs(sid, settled=True)
    commands = await src.list_commands(sid, settled=True)
    turns: list[TurnRecord] = []
    for node in record.nodes:
        if isinstance(node, TurnOutcome) and node.turn_id not in {t.turn_id for t in turns}:
            found = await src.turn_record(sid, node.turn_id)
            if found is not None:
                turns.append(found)
    turns.sort(key=lambda t: t.index)
    # The images its messages and queued input refer to: blobs first, then what refers to them.
    items = [i for n in record.nodes if isinstance(n, UserMessage) for i in n.items]
    await _copy_blobs(src, dst, [*items, *(i for item in inputs for i in item.items)])

    lease = await dst.acquire_lease(
        sid,
        COPY_OWNER,
        ttl=_TTL,
        events=(EventDraft(COPY_STARTED, {"source": source_name}), *events),
    )
    for item in inputs:
        if item.state == "cancelled":
            queued = await dst.enqueue_input(sid, _draft(item))
            await dst.cancel_inputs(sid, [queued.id])
    applied = tuple(
        [(await dst.enqueue_command(sid, _command(c))).id for c in commands if c.state == "applied"]
    )
    # A commit carries one turn record: one commit per turn, each claiming the inputs its turn
    # consumed (the destination records them completed by that turn); inputs completed by no
    # turn the source knows come first, in a commit of their own. The last commit carries the
    # head.
    by_turn: dict[str | None, list[PendingInput]] = {}
    for item in inputs:
        if item.state == "completed":
            by_turn.setdefault(item.turn_id, []).append(item)
    steps: list[tuple[TurnRecord | None, list[PendingInput]]] = [
        (turn, by_turn.pop(turn.turn_id, [])) for turn in turns
    ]
    orphans = [item for group in by_turn.values() for item in group]
    if orphans or not steps:
        steps.insert(0, (None, orphans))
    revision = lease.revision
    for n, (turn, consumed) in enumerate(steps):
        lease = await dst.renew_lease(lease, ttl=_TTL)
        for item in consumed:
            await dst.enqueue_input(sid, _draft(item))
        # Nothing else is pending while the copy holds the lease (the session's pending input
        # is queued after its last commit): the oldest pending inputs are these.
        claimed = await dst.claim_inputs(lease, limit=len(consumed)) if consumed else []
        delta = CommitDelta(turn=turn, claimed=tuple(i.id for i in claimed))
        if n == len(steps) - 1:
            delta = attrs.evolve(
                delta,
                nodes=tuple(record.nodes),
                plugin_states=record.plugin_states,
                config=record.config,
                usage=record.usage,
                turns=record.turns,
                parent_id=record.parent_id,
                applied=applied,
                release=True,
            )
        revision = await dst.commit(sid, lease=lease, expected_revision=revision, delta=delta)
    pending = [i for i in inputs if i.state in ("pending", "claimed")]
    for item in pending:
        await dst.enqueue_input(sid, _draft(item))
    for command in commands:
        if command.state == "pending":
            await dst.enqueue_command(sid, _command(command))
    before = len(started)
    for process in await src.list_processes(session_id=sid, limit=_ALL):
        await _copy_process(dst, process, started, passed)
    processes = len(started) - before
    closing = await dst.acquire_lease(sid, COPY_OWNER, ttl=_TTL, events=(EventDraft(COPIED),))
    await dst.release_lease(closing)
    return (
        f"copied ({len(record.nodes)} nodes, {len(turns)} turn records, {len(inputs)} inputs "
        f"({len(pending)} pending), {len(commands)} commands, {len(events)} events, "
        f"{processes} processes)"
    )


async def _copy_blobs(src: Store, dst: Store, items: list[object]) -> None:
    """Put in ``dst`` the blobs of the image references among ``items`` (a blob the source
    lost is left out: the destination fails where the source would)."""
    digests = {ref.sha256 for ref in map(image_ref, items) if ref is not None and ref.sha256}
    for digest in sorted(digests):
        if await dst.get_blob(digest) is None:
            data = await src.get_blob(digest)
            if data is not None:
                await dst.put_blob(data)


async def _events(src: Store, sid: str) -> list[EventDraft]:
    events: list[EventDraft] = []
    after = 0
    while True:
        page = await src.read_events(sid, after=after)
        events.extend(EventDraft(e.type, e.data) for e in page.events)
        if not page.events or page.events[-1].seq >= page.last:
            return events
        after = page.events[-1].seq


def _draft(item: PendingInput) -> InputDraft:
    return InputDraft(
        text=item.text, items=item.items, key=item.key, ingress=item.ingress, source=item.source
    )


def _command(command: QueuedCommand) -> CommandDraft:
    return CommandDraft(
        name=command.name, key=command.key, args=command.args, source=command.source
    )


async def _copy_process(
    dst: Store, record: ProcessRecord, started: list[str], passed: list[str]
) -> None:
    """Start ``record`` in ``dst`` and bring it to the state the copy gives it (see the module
    docstring), adding its id to ``started``; to ``passed`` when a process with its id or key
    is there already."""
    if await dst.get_process(record.id) is not None:
        passed.append(record.id)
        return
    draft = ProcessDraft(
        id=record.id,
        kind=record.kind,
        payload=record.payload,
        session_id=record.session_id,
        key=record.key,
        recovery=record.recovery,
        max_attempts=record.max_attempts,
        timeout=record.timeout,
        source=record.source,
    )
    created = await dst.start_process(draft)
    if created.id != record.id:
        passed.append(record.id)  # its key is taken by another process there
        return
    started.append(record.id)
    if record.finished:
        await dst.finish_process(
            record.id, None, status=record.status, result=record.result, error=record.error
        )
        if record.notified:
            await dst.mark_process_notified(record.id)
    elif record.status == "running" and record.recovery == "owner_bound":
        await dst.finish_process(
            record.id,
            None,
            status="abandoned",
            error="running when `lash store copy` copied it: its claim is not carried",
        )
    elif record.cancel_requested is not None:
        await dst.request_process_cancel(record.id, record.cancel_requested)
