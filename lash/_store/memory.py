"""``memory://``: a store in process memory, for tests, demos and throwaway sessions.

It is also the reference implementation of the :class:`lash.store.Store` contract: plain data
structures and the shared rules of :mod:`lash._store.leases`, with nothing else in the way.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.graph import FrameBoundary, GraphNode, TurnOutcome, UserMessage
from lash._contract.slots import evolver, maker
from lash._contract.turn_types import ProcessRecord, SessionConfig
from lash._contract.types import NO_USAGE, Usage
from lash._store.ids import check_session_id
from lash._store.leases import (
    EVENTS_KEPT,
    EVENTS_MAX_AGE,
    check_lease,
    command_event,
    effective_state,
    input_event,
    lease_is_live,
    same_input,
    take_lease,
)
from lash._store.process_rules import (
    cancel_record,
    check_claim,
    claim_expired,
    claimed_by,
    finish_record,
    new_process,
    on_expiry,
    process_event,
    same_process,
    settled_on_expiry,
)
from lash._store.records import (
    CancelReceipt,
    CancelRequest,
    CommandDraft,
    CommitDelta,
    EventDraft,
    EventPage,
    Ingress,
    InputCancellation,
    InputDraft,
    Lease,
    PendingInput,
    ProcessDraft,
    QueuedCommand,
    SessionRecord,
    SessionSummary,
    StoredEvent,
    TurnRecord,
    WorkPoll,
)
from lash.errors import (
    InputConflict,
    LeaseLost,
    RevisionConflict,
    SessionBusy,
    SessionError,
    UnknownSession,
)


@attrs.define
class _Input:
    record: PendingInput
    claim_token: int | None = None


@attrs.define
class _MemorySession:
    revision: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    nodes: list[GraphNode] = attrs.field(factory=list)
    frame_start: int = 0
    config: SessionConfig = SessionConfig()
    plugin_states: dict[str, Any] = attrs.field(factory=dict)
    usage: dict[str, Usage] = attrs.field(factory=dict)
    turns: int = 0
    last_user_message: str | None = None
    status: str | None = None
    lease: Lease | None = None
    running_turn: str | None = None
    inputs: list[_Input] = attrs.field(factory=list)
    input_seq: int = 0
    commands: list[QueuedCommand] = attrs.field(factory=list)
    command_seq: int = 0
    turn_records: dict[str, TurnRecord] = attrs.field(factory=dict)
    cancel_requests: dict[str, CancelRequest] = attrs.field(factory=dict)
    events: list[StoredEvent] = attrs.field(factory=list)
    event_seq: int = 0
    parent_id: str | None = None
    #: Raised by each delete and kept by the tombstone: a session created again under the id
    #: is another incarnation, which its predecessor's children do not roll up into.
    incarnation: int = 0
    #: The parent's incarnation when the link was stored (see ``commit``).
    parent_incarnation: int = 0


# Records rebuilt on every turn's path (lease taken, turn recorded, lease released), by
# generated evolvers: attrs.evolve takes about five times as long.
#: ``_lease(lease, expires_at, revision, pending_inputs, pending_commands)``
_lease = evolver(Lease, "expires_at", "revision", "pending_inputs", "pending_commands")
#: ``_recorded(turn, revision, committed_at)``: ``turn`` as committed.
_recorded = evolver(TurnRecord, "revision", "committed_at")
#: The nodes a commit notes in the session's summary (its frame, last input, status).
_SUMMARIZED = (FrameBoundary, UserMessage, TurnOutcome)
#: A logged event (by its maker: a turn logs two).
_stored = maker(StoredEvent)


class MemoryStore:
    """``memory://``: a store in process memory, for tests and throwaway sessions.

    ``events_kept`` and ``events_max_age`` bound each session's event log (the replay window
    observers resume in): older events are dropped.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        events_kept: int = EVENTS_KEPT,
        events_max_age: float = EVENTS_MAX_AGE,
    ) -> None:
        self.url = url
        self.events_kept = events_kept
        self.events_max_age = events_max_age
        self._sessions: dict[str, _MemorySession] = {}
        # Processes in start order (oldest first), and their keys.
        self._processes: dict[str, ProcessRecord] = {}
        self._process_keys: dict[str, str] = {}
        self._blobs: dict[str, bytes] = {}
        # The session ids that passed check_session_id here (see _check_id).
        self._checked_ids: set[str] = set()

    # -- helpers ----------------------------------------------------------------------------------

    def _check_id(self, session_id: Any) -> None:
        """``check_session_id``, once per id: a turn's lease and commit name the same session
        (the check's scan of the id was ~1 us of each)."""
        if type(session_id) is not str or session_id not in self._checked_ids:
            check_session_id(session_id)
            self._checked_ids.add(session_id)

    def _session(self, session_id: str) -> _MemorySession:
        s = self._sessions.get(session_id)
        if s is None:
            s = self._sessions[session_id] = _MemorySession()
        return s

    def _state(self, s: _MemorySession, item: _Input) -> PendingInput:
        state = effective_state(item.record.state, item.claim_token, s.lease)
        return item.record if state == item.record.state else attrs.evolve(item.record, state=state)

    def _log(self, session_id: str, s: _MemorySession, drafts: Sequence[EventDraft]) -> None:
        now = time.time()
        for draft in drafts:
            s.event_seq += 1
            s.events.append(_stored(session_id, s.event_seq, draft.type, dict(draft.data), now))
        # The replay window: the newest `events_kept`, younger than `events_max_age`.
        excess = len(s.events) - self.events_kept
        if excess > 0:
            del s.events[:excess]
        cutoff = now - self.events_max_age
        while s.events and s.events[0].at < cutoff:
            s.events.pop(0)

    def _counts(self, s: _MemorySession) -> tuple[int, int]:
        if not s.inputs and not s.commands:
            return 0, 0  # (most sessions, at every lease taken)
        pending = sum(1 for item in s.inputs if self._state(s, item).state == "pending")
        commands = sum(1 for c in s.commands if c.state == "pending")
        return pending, commands

    def _with_head(self, lease: Lease, s: _MemorySession) -> Lease:
        pending, commands = self._counts(s)
        return _lease(lease, lease.expires_at, s.revision, pending, commands)

    # -- leases -----------------------------------------------------------------------------------

    async def acquire_lease(
        self,
        session_id: str,
        owner: str,
        *,
        ttl: float,
        take_over: Lease | None = None,
        turn: str | None = None,
        events: Sequence[EventDraft] = (),
    ) -> Lease:
        self._check_id(session_id)
        s = self._session(session_id)
        lease = take_lease(s.lease, session_id, owner, ttl, take_over=take_over)
        # Stored without the head's counts (a new lease has none: kept as it is).
        if lease.revision or lease.pending_inputs or lease.pending_commands:
            lease = _lease(lease, lease.expires_at, 0, 0, 0)
        s.lease = lease
        s.running_turn = turn
        self._log(session_id, s, events)
        return self._with_head(lease, s)

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        s = self._sessions.get(lease.session_id)
        check_lease(s.lease if s is not None else None, lease)
        assert s is not None and s.lease is not None
        s.lease = attrs.evolve(s.lease, expires_at=time.time() + ttl)
        return self._with_head(s.lease, s)

    async def release_lease(self, lease: Lease) -> None:
        s = self._sessions.get(lease.session_id)
        current = s.lease if s is not None else None
        if s is not None and current is not None:
            if (current.token, current.owner) == (lease.token, lease.owner):
                # Keep the token (as an expired lease) so the next holder's token is higher.
                s.lease = attrs.evolve(current, expires_at=0.0)
                s.running_turn = None

    # -- the head and the graph -------------------------------------------------------------------

    async def load(self, session_id: str, *, full: bool = False) -> SessionRecord | None:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        if s is None or s.revision == 0:
            return None
        nodes = s.nodes if full else s.nodes[s.frame_start :]
        return SessionRecord(
            session_id=session_id,
            revision=s.revision,
            created_at=s.created_at,
            updated_at=s.updated_at,
            nodes=tuple(nodes),
            config=s.config,
            plugin_states=dict(s.plugin_states),
            usage=dict(s.usage),
            turns=s.turns,
            event_seq=s.event_seq,
            parent_id=s.parent_id,
            incarnation=s.incarnation,
            parent_incarnation=s.parent_incarnation,
        )

    async def commit(
        self, session_id: str, *, lease: Lease, expected_revision: int, delta: CommitDelta
    ) -> int:
        self._check_id(session_id)
        s = self._sessions.get(session_id)
        check_lease(s.lease if s is not None else None, lease)
        assert s is not None
        if s.revision != expected_revision:
            raise RevisionConflict(session_id, expected=expected_revision, actual=s.revision)
        # (Most commits settle no input and apply no command: no lookups built for them.)
        by_id = {item.record.id: item for item in s.inputs} if delta.claimed else {}
        for input_id in delta.claimed:
            item = by_id.get(input_id)
            if item is None or item.record.state != "claimed" or item.claim_token != lease.token:
                raise LeaseLost(
                    session_id, f"input {input_id!r} is not claimed by this lease any more"
                )
        pending_commands = (
            {c.id for c in s.commands if c.state == "pending"} if delta.applied else ()
        )
        for command_id in delta.applied:
            if command_id not in pending_commands:
                raise LeaseLost(session_id, f"command {command_id!r} is not pending any more")
        if delta.turn is not None and delta.turn.turn_id in s.turn_records:
            raise RevisionConflict(session_id, expected=expected_revision, actual=s.revision)
        for draft in delta.enqueue:
            self._keyed(session_id, s, draft)  # a key conflict refuses the whole commit
        starts: dict[str, ProcessRecord] = {}  # by key: the processes this commit starts
        for process in delta.processes:
            found = self._keyed_process(process) or starts.get(process.key or "")
            if found is not None and not same_process(found, process):
                raise InputConflict(
                    process.session_id or "-", process.key or "", found.id, "process"
                )
            if found is None and process.id in self._processes:
                raise SessionError(
                    f"process id {process.id!r} is taken", session_id=process.session_id
                )
            if found is None and process.key is not None:
                starts[process.key] = new_process(process, 0.0)
        # Checked: from here on nothing fails, so the commit applies whole.
        now = time.time()
        if delta.replace:
            keep = s
            s = _MemorySession(
                created_at=keep.created_at or now,
                lease=keep.lease,
                running_turn=keep.running_turn,
                inputs=keep.inputs,
                input_seq=keep.input_seq,
                commands=keep.commands,
                command_seq=keep.command_seq,
                turn_records=keep.turn_records,
                cancel_requests=keep.cancel_requests,
                events=keep.events,
                event_seq=keep.event_seq,
                parent_id=keep.parent_id,
                incarnation=keep.incarnation,
                parent_incarnation=keep.parent_incarnation,
            )
            self._sessions[session_id] = s
        elif s.revision == 0:
            s.created_at = now
        nodes = s.nodes
        for node in delta.nodes:
            if isinstance(node, _SUMMARIZED):  # (one test for the other nodes: most of them)
                if isinstance(node, FrameBoundary):
                    s.frame_start = len(nodes)
                elif isinstance(node, UserMessage):
                    s.last_user_message = node.text
                else:
                    s.status = node.outcome
            nodes.append(node)
        s.plugin_states.update(delta.plugin_states)
        if delta.config is not None:
            s.config = delta.config
        for source, usage in delta.usage.items():
            s.usage[source] = s.usage.get(source, NO_USAGE) + usage
        s.turns += delta.turns
        if delta.parent_id is not None and delta.parent_id != s.parent_id:
            # The link names the parent's incarnation as the store has it now: the kernel
            # cannot know it for a parent still in its first turn (not committed yet). A
            # parent deleted and not created again (its tombstone: deleted once at least, no
            # commit, no first turn running) is the deleted one, whose incarnation is below.
            parent = self._sessions.get(delta.parent_id)
            s.parent_id = delta.parent_id
            s.parent_incarnation = 0
            if parent is not None:
                tombstone = (
                    parent.revision == 0
                    and parent.incarnation > 0
                    and (parent.lease is None or parent.lease.expires_at <= now)
                )
                s.parent_incarnation = parent.incarnation - 1 if tombstone else parent.incarnation
        if delta.rollup:
            for other_id in self._ancestors(s).intersection(delta.rollup):
                other = self._sessions[other_id]
                for source, usage in delta.rollup[other_id].items():
                    other.usage[source] = other.usage.get(source, NO_USAGE) + usage
        s.revision = expected_revision + 1
        s.updated_at = now
        turn_id = delta.turn.turn_id if delta.turn is not None else None
        for input_id in delta.claimed:
            item = by_id[input_id]
            item.record = attrs.evolve(
                item.record, state="completed", settled_at=now, turn_id=turn_id
            )
            item.claim_token = None
        for command in s.commands:
            if command.id in delta.applied:
                s.commands[s.commands.index(command)] = attrs.evolve(
                    command, state="applied", applied_at=now
                )
        for draft in delta.enqueue:
            self._enqueue(session_id, s, draft, now)
        if delta.turn is not None:
            s.turn_records[delta.turn.turn_id] = _recorded(delta.turn, s.revision, now)
            s.cancel_requests.pop(delta.turn.turn_id, None)
        self._log(session_id, s, delta.events)
        for process in delta.processes:
            self._start(process, now)
        if delta.release and s.lease is not None:
            held = s.lease
            s.lease = _lease(held, 0.0, held.revision, held.pending_inputs, held.pending_commands)
            s.running_turn = None
        return s.revision

    async def delete(self, session_id: str) -> None:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        if s is None or (s.revision == 0 and not s.inputs and not s.commands):
            raise UnknownSession(session_id)
        if lease_is_live(s.lease):
            assert s.lease is not None
            raise SessionBusy(
                session_id, owner=s.lease.owner, expires_at=s.lease.expires_at, token=s.lease.token
            )
        # A tombstone stays: its lease token and event numbers go on rising, so a lease or a
        # cursor from before the delete never applies to a session created again under the id.
        self._sessions[session_id] = _MemorySession(
            lease=s.lease,
            event_seq=s.event_seq,
            input_seq=s.input_seq,
            command_seq=s.command_seq,
            incarnation=s.incarnation + 1,
        )
        for process in [p for p in self._processes.values() if p.session_id == session_id]:
            del self._processes[process.id]
            if process.key is not None:
                self._process_keys.pop(process.key, None)

    def _ancestors(self, s: _MemorySession) -> set[str]:
        """The ids a commit of ``s`` may roll usage up into: its stored chain of parent links,
        as far as each link names its parent's current incarnation (a deleted ancestor, or
        a session created again under its id, ends the chain). O(depth)."""
        found: set[str] = set()
        parent_id, incarnation = s.parent_id, s.parent_incarnation
        while parent_id is not None and parent_id not in found:  # (a loop ends too)
            parent = self._sessions.get(parent_id)
            if parent is None or parent.incarnation != incarnation:
                break
            found.add(parent_id)
            parent_id, incarnation = parent.parent_id, parent.parent_incarnation
        return found

    async def list_sessions(self) -> list[SessionSummary]:
        rows = []
        for sid, s in self._sessions.items():
            if s.revision == 0:
                continue
            total = Usage()
            for usage in s.usage.values():
                total = total + usage
            pending, _ = self._counts(s)
            rows.append(
                SessionSummary(
                    sid,
                    s.created_at,
                    s.updated_at,
                    s.turns,
                    s.revision,
                    s.last_user_message,
                    total,
                    s.status,
                    pending,
                    s.parent_id,
                )
            )
        return sorted(rows, key=lambda r: r.updated_at, reverse=True)

    # -- the mailbox ------------------------------------------------------------------------------

    def _keyed(self, session_id: str, s: _MemorySession, draft: InputDraft) -> _Input | None:
        """The input already queued under ``draft``'s key, if any. :raises InputConflict: it
        holds other content."""
        if draft.key is None:
            return None
        for item in s.inputs:
            if item.record.key == draft.key:
                if not same_input(item.record, draft):
                    raise InputConflict(session_id, draft.key, item.record.id)
                return item
        return None

    def _enqueue(
        self, session_id: str, s: _MemorySession, draft: InputDraft, now: float
    ) -> PendingInput:
        existing = self._keyed(session_id, s, draft)
        if existing is not None:
            return self._state(s, existing)
        s.input_seq += 1
        record = PendingInput(
            id=f"in-{uuid.uuid4().hex[:16]}",
            session_id=session_id,
            seq=s.input_seq,
            text=draft.text,
            items=tuple(draft.items),
            key=draft.key,
            ingress=draft.ingress,
            source=draft.source,
            created_at=now,
        )
        s.inputs.append(_Input(record))
        self._log(session_id, s, [input_event("input_queued", record)])
        return record

    async def enqueue_input(self, session_id: str, draft: InputDraft) -> PendingInput:
        check_session_id(session_id)
        return self._enqueue(session_id, self._session(session_id), draft, time.time())

    async def list_inputs(self, session_id: str, *, settled: bool = False) -> list[PendingInput]:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        if s is None:
            return []
        records = [self._state(s, item) for item in s.inputs]
        if not settled:
            records = [r for r in records if r.state in ("pending", "claimed")]
        return records

    async def cancel_inputs(
        self, session_id: str, targets: Sequence[str], *, suffix: bool = False
    ) -> list[InputCancellation]:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        items = s.inputs if s is not None else []

        def find(target: str) -> _Input | None:
            for item in items:
                if target in (item.record.id, item.record.key):
                    return item
            return None

        chosen: list[tuple[str, _Input | None]] = []
        if suffix:
            if len(targets) != 1:
                raise ValueError("a suffix cancellation takes one target: the first input")
            anchor = find(targets[0])
            if anchor is None:
                return [InputCancellation(targets[0], "unknown")]
            chosen = [
                (item.record.id, item) for item in items if item.record.seq >= anchor.record.seq
            ]
        else:
            chosen = [(target, find(target)) for target in targets]
        now = time.time()
        outcomes: list[InputCancellation] = []
        for target, item in chosen:
            if item is None or s is None:
                outcomes.append(InputCancellation(target, "unknown"))
                continue
            current = self._state(s, item)
            if current.state == "pending":
                item.record = attrs.evolve(item.record, state="cancelled", settled_at=now)
                item.claim_token = None
                self._log(session_id, s, [input_event("input_cancelled", item.record)])
                outcomes.append(InputCancellation(target, "cancelled", item.record))
            else:
                outcome = {
                    "claimed": "already_claimed",
                    "completed": "already_completed",
                    "cancelled": "already_cancelled",
                }[current.state]
                outcomes.append(InputCancellation(target, outcome, current))  # type: ignore[arg-type]
        return outcomes

    async def claim_inputs(
        self, lease: Lease, *, limit: int = 1, ingress: Ingress | None = None
    ) -> list[PendingInput]:
        s = self._sessions.get(lease.session_id)
        check_lease(s.lease if s is not None else None, lease)
        assert s is not None
        claimed: list[PendingInput] = []
        for item in s.inputs:
            if len(claimed) >= limit:
                break
            if self._state(s, item).state != "pending":
                continue
            if ingress is not None and item.record.ingress != ingress:
                continue
            item.record = attrs.evolve(item.record, state="claimed")
            item.claim_token = lease.token
            claimed.append(item.record)
        self._log(lease.session_id, s, [input_event("input_claimed", r) for r in claimed])
        return claimed

    async def enqueue_command(self, session_id: str, draft: CommandDraft) -> QueuedCommand:
        check_session_id(session_id)
        s = self._session(session_id)
        for command in s.commands:
            if command.key == draft.key:
                if (command.name, dict(command.args)) != (draft.name, dict(draft.args)):
                    raise InputConflict(session_id, draft.key, command.id, "command")
                return command
        s.command_seq += 1
        command = QueuedCommand(
            id=f"cmd-{uuid.uuid4().hex[:16]}",
            session_id=session_id,
            seq=s.command_seq,
            name=draft.name,
            key=draft.key,
            args=dict(draft.args),
            source=draft.source,
            created_at=time.time(),
        )
        s.commands.append(command)
        self._log(session_id, s, [command_event("command_queued", command)])
        return command

    async def list_commands(self, session_id: str, *, settled: bool = False) -> list[QueuedCommand]:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        if s is None:
            return []
        return [c for c in s.commands if settled or c.state == "pending"]

    # -- turns ------------------------------------------------------------------------------------

    async def turn_record(self, session_id: str, turn_id: str) -> TurnRecord | None:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        return s.turn_records.get(turn_id) if s is not None else None

    async def request_cancel(
        self, session_id: str, turn_id: str, *, origin: str, reason: str | None = None
    ) -> CancelReceipt:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        if s is not None and turn_id in s.turn_records:
            return CancelReceipt(
                "already_finished", session_id, turn_id, record=s.turn_records[turn_id]
            )
        if s is not None and turn_id in s.cancel_requests:
            return CancelReceipt(
                "already_requested", session_id, turn_id, request=s.cancel_requests[turn_id]
            )
        if s is not None and s.running_turn == turn_id and lease_is_live(s.lease):
            request = CancelRequest(session_id, turn_id, origin, reason, time.time())
            s.cancel_requests[turn_id] = request
            return CancelReceipt("requested", session_id, turn_id, request=request)
        return CancelReceipt("unknown", session_id, turn_id)

    async def cancel_request(self, session_id: str, turn_id: str) -> CancelRequest | None:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        return s.cancel_requests.get(turn_id) if s is not None else None

    # -- observation ------------------------------------------------------------------------------

    async def read_events(self, session_id: str, *, after: int = 0, limit: int = 1000) -> EventPage:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        if s is None:
            return EventPage((), 1, 0)
        first = s.events[0].seq if s.events else s.event_seq + 1
        events = tuple(e for e in s.events if e.seq > after)[:limit]
        return EventPage(events, first, s.event_seq)

    # -- processes --------------------------------------------------------------------------------

    def _keyed_process(self, draft: ProcessDraft) -> ProcessRecord | None:
        if draft.key is None:
            return None
        existing_id = self._process_keys.get(draft.key)
        if existing_id is None:
            return None
        existing = self._processes[existing_id]
        if not same_process(existing, draft):
            raise InputConflict(draft.session_id or "-", draft.key, existing.id, what="process")
        return existing

    def _start(self, draft: ProcessDraft, now: float) -> ProcessRecord:
        existing = self._keyed_process(draft)
        if existing is not None:
            return existing
        if draft.id in self._processes:
            raise SessionError(f"process id {draft.id!r} is taken", session_id=draft.session_id)
        record = new_process(draft, now)
        self._processes[record.id] = record
        if draft.key is not None:
            self._process_keys[draft.key] = record.id
        self._log_process("process_started", record)
        return record

    def _log_process(self, kind: str, record: ProcessRecord) -> None:
        if record.session_id is not None:
            session = self._session(record.session_id)
            self._log(record.session_id, session, [process_event(kind, record)])

    def _put(self, record: ProcessRecord, event: str | None = None) -> ProcessRecord:
        self._processes[record.id] = record
        if event is not None:
            self._log_process(event, record)
        return record

    async def start_process(self, draft: ProcessDraft) -> ProcessRecord:
        if draft.session_id is not None:
            check_session_id(draft.session_id)
        return self._start(draft, time.time())

    async def get_process(self, process_id: str) -> ProcessRecord | None:
        return self._processes.get(process_id)

    async def list_processes(
        self,
        *,
        session_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[ProcessRecord]:
        return [
            p
            for p in self._processes.values()
            if (session_id is None or p.session_id == session_id)
            and (kind is None or p.kind == kind)
            and (status is None or p.status == status)
        ][:limit]

    async def claim_process(
        self, owner: str, *, ttl: float, kinds: Sequence[str] | None = None
    ) -> ProcessRecord | None:
        now = time.time()
        for record in list(self._processes.values()):
            if claim_expired(record, now):
                settled = settled_on_expiry(record, now)
                if settled is not None:
                    self._put(settled, "process_finished")
        for record in self._processes.values():
            if kinds is not None and record.kind not in kinds:
                continue
            if record.status == "pending" or (
                claim_expired(record, now) and on_expiry(record) == "rerun"
            ):
                return self._put(claimed_by(record, owner, ttl=ttl, now=now), "process_running")
        return None

    def _claimed(self, process_id: str, token: int) -> ProcessRecord:
        return check_claim(process_id, token, self._processes.get(process_id))

    async def heartbeat_process(
        self, process_id: str, token: int, *, ttl: float, progress: Any = None
    ) -> ProcessRecord:
        record = self._claimed(process_id, token)
        record = attrs.evolve(record, expires_at=time.time() + ttl)
        if progress is None:
            return self._put(record)
        return self._put(attrs.evolve(record, progress=progress), "process_progress")

    async def park_process(self, process_id: str, token: int) -> ProcessRecord:
        record = self._claimed(process_id, token)
        return self._put(attrs.evolve(record, expires_at=None))

    async def finish_process(
        self,
        process_id: str,
        token: int | None,
        *,
        status: str,
        result: Any = None,
        error: str | None = None,
        notified: bool = False,
    ) -> ProcessRecord:
        record = self._processes.get(process_id)
        done = finish_record(
            process_id,
            record,
            token,
            status=status,
            result=result,
            error=error,
            now=time.time(),
            notified=notified,
        )
        return record if done is record else self._put(done, "process_finished")

    async def request_process_cancel(self, process_id: str, reason: str) -> ProcessRecord | None:
        record = self._processes.get(process_id)
        if record is None:
            return None
        asked = cancel_record(record, reason, time.time())
        if asked is record:
            return record
        return self._put(asked, "process_finished" if asked.finished else None)

    async def unnotified_processes(self, *, finished_before: float) -> list[ProcessRecord]:
        return [
            p
            for p in self._processes.values()
            if p.finished and not p.notified and (p.finished_at or 0.0) < finished_before
        ]

    async def mark_process_notified(self, process_id: str) -> None:
        record = self._processes.get(process_id)
        if record is not None:
            self._put(attrs.evolve(record, notified=True))

    async def runnable_sessions(self, *, limit: int = 100) -> list[str]:
        now = time.time()
        waiting: list[tuple[float, str]] = []
        for sid, s in self._sessions.items():
            if lease_is_live(s.lease, now):
                continue
            oldest = [
                item.record.created_at
                for item in s.inputs
                if self._state(s, item).state == "pending"
            ] + [c.created_at for c in s.commands if c.state == "pending"]
            if oldest:
                waiting.append((min(oldest), sid))
        return [sid for _, sid in sorted(waiting)[:limit]]

    async def poll_work(
        self,
        owner: str,
        *,
        ttl: float,
        kinds: Sequence[str] | None = None,
        claim: bool = True,
        sessions: int = 0,
        finished_before: float | None = None,
    ) -> WorkPoll:
        # The parts never suspend, so the round is as atomic as one transaction.
        process = await self.claim_process(owner, ttl=ttl, kinds=kinds) if claim else None
        return WorkPoll(
            process=process,
            sessions=tuple(await self.runnable_sessions(limit=sessions)) if sessions > 0 else (),
            unnotified=()
            if finished_before is None
            else tuple(await self.unnotified_processes(finished_before=finished_before)),
        )

    async def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self._blobs.setdefault(digest, bytes(data))
        return digest

    async def get_blob(self, digest: str) -> bytes | None:
        return self._blobs.get(digest)

    async def close(self) -> None:
        return None


MemoryStore.__module__ = "lash.store"

resolve_here(globals())
