"""The records a store reads and writes: leases, session heads, commit deltas, the mailbox
(pending input, session commands), turn records, cancellation requests and the event log.

All are frozen attrs classes, public in ``lash.store`` (hosts meet some of them too:
:class:`PendingInput` from ``core.enqueue``, :class:`TurnRecord` from ``core.turn_record``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.graph import GraphNode
from lash._contract.turn_types import ProcessRecord, SessionConfig
from lash._contract.types import Usage

__all__ = [
    "CancelOutcome",
    "CancelReceipt",
    "CancelRequest",
    "CommandDraft",
    "CommitDelta",
    "EventDraft",
    "EventPage",
    "Ingress",
    "InputCancellation",
    "InputDraft",
    "InputState",
    "Lease",
    "PendingInput",
    "ProcessDraft",
    "QueuedCommand",
    "SessionRecord",
    "SessionSummary",
    "StoredEvent",
    "TurnRecord",
]

#: How input enters a session: as the input of a later turn (``next_turn``), or into the turn
#: running when it arrives, at its next checkpoint (``active_turn``; when no turn runs, the next
#: turn takes it like ``next_turn`` input).
Ingress = Literal["next_turn", "active_turn"]

#: ``pending`` (waiting), ``claimed`` (taken by the running execution: its lease is live),
#: ``completed`` (consumed by a committed turn), ``cancelled``. A claim whose lease is gone
#: (released without settling it, expired, taken over) is ``pending`` again.
InputState = Literal["pending", "claimed", "completed", "cancelled"]

#: What cancelling one pending input did.
CancelOutcome = Literal[
    "cancelled", "already_claimed", "already_completed", "already_cancelled", "unknown"
]


@attrs.frozen
class Lease:
    """A writer's hold on one session: ``token`` is the fencing token, ``expires_at`` epoch
    seconds. Only the holder of the current token may commit.

    What the store saw when it granted (or renewed) the lease comes with it, so an execution
    learns in the same round trip whether it must reload (``revision``, the head revision) and
    whether work is queued (``pending_inputs``: next-turn and active-turn inputs not claimed;
    ``pending_commands``).
    """

    session_id: str
    owner: str
    token: int
    expires_at: float
    revision: int = 0
    pending_inputs: int = 0
    pending_commands: int = 0

    __module__ = "lash.store"

    def remaining(self, now: float | None = None) -> float:
        """Seconds until the lease expires (negative once expired)."""
        return self.expires_at - (time.time() if now is None else now)


@attrs.frozen
class SessionRecord:
    """A session as loaded from a store: its head and the nodes of its active frame (or all).

    ``event_seq`` is the sequence number of its latest event (0: none): a view loaded with it
    is the state observers see up to that event. ``parent_id`` is the session a child session
    (a sub-agent) was created from (``None``: a root session).

    ``incarnation`` counts the deletes of the session id before this session was created (a
    deleted session's tombstone keeps it, raised); ``parent_incarnation`` is the parent's when
    the link was stored. A link whose incarnation is not its parent's any more names a session
    created again under a deleted parent's id: not this child's parent.

    ``nodes`` is a tuple, or a :class:`StoredNodes` (which reads as the tuple of the same
    nodes and builds each when first read: the SQLite store's, so that resuming a long session
    builds only the nodes it needs).
    """

    session_id: str
    revision: int
    created_at: float
    updated_at: float
    nodes: Sequence[GraphNode]
    config: SessionConfig = SessionConfig()
    plugin_states: Mapping[str, Any] = attrs.field(factory=dict)
    usage: Mapping[str, Usage] = attrs.field(factory=dict)
    turns: int = 0
    event_seq: int = 0
    parent_id: str | None = None
    incarnation: int = 0
    parent_incarnation: int = 0

    __module__ = "lash.store"


@attrs.frozen
class InputDraft:
    """Input to queue: the text (and structured ``items``) of a user message.

    ``key`` makes queueing idempotent (the same key with the same content returns the input
    already queued; with other content it is an :class:`lash.InputConflict`). ``source`` says
    who queued it (``"host"``, ``"plugin:NAME"``, ``"process:ID"``...).
    """

    text: str
    items: tuple[Any, ...] = ()
    key: str | None = None
    ingress: Ingress = "next_turn"
    source: str | None = None

    __module__ = "lash.store"


@attrs.frozen
class PendingInput:
    """One input of a session's mailbox (see :data:`InputState` for ``state``).

    ``seq`` orders a session's inputs (oldest first); ``turn_id`` is the turn that consumed a
    ``completed`` input; ``settled_at`` when it was completed or cancelled.
    """

    id: str
    session_id: str
    seq: int
    text: str
    items: tuple[Any, ...] = ()
    key: str | None = None
    ingress: Ingress = "next_turn"
    source: str | None = None
    state: InputState = "pending"
    created_at: float = 0.0
    settled_at: float | None = None
    turn_id: str | None = None

    __module__ = "lash.store"


@attrs.frozen
class InputCancellation:
    """The outcome of cancelling one input (``input``: the input as it is now, ``None`` when
    ``unknown``)."""

    target: str
    outcome: CancelOutcome
    input: PendingInput | None = None

    __module__ = "lash.store"


@attrs.frozen
class CommandDraft:
    """A session command to queue: ``name`` (``refresh_tool_catalog``, ``reset``, or one a
    plugin registers) with JSON-ready ``args``, idempotent by ``key``."""

    name: str
    key: str
    args: Mapping[str, Any] = attrs.field(factory=dict)
    source: str | None = None

    __module__ = "lash.store"


@attrs.frozen
class QueuedCommand:
    """A session command in the queue: ``pending`` until the next execution applies it
    (``applied``) in its commit."""

    id: str
    session_id: str
    seq: int
    name: str
    key: str
    args: Mapping[str, Any] = attrs.field(factory=dict)
    source: str | None = None
    state: Literal["pending", "applied"] = "pending"
    created_at: float = 0.0
    applied_at: float | None = None

    __module__ = "lash.store"


@attrs.frozen
class TurnRecord:
    """A committed turn, by id: how it ended and at which revision. ``result`` is the turn's
    :class:`lash.TurnResult` in JSON form (what a resubmitted turn id returns)."""

    session_id: str
    turn_id: str
    index: int
    outcome: Literal["completed", "stopped", "failed"]
    revision: int
    reason: str | None = None
    result: Mapping[str, Any] = attrs.field(factory=dict)
    committed_at: float = 0.0

    __module__ = "lash.store"


@attrs.frozen
class CancelRequest:
    """A request to cancel a running turn, stored so the process running it sees it."""

    session_id: str
    turn_id: str
    origin: str
    reason: str | None = None
    requested_at: float = 0.0

    __module__ = "lash.store"


@attrs.frozen
class CancelReceipt:
    """What ``request_cancel`` did: ``requested`` (the running turn will stop),
    ``already_requested`` (``request`` is the first request, which stands), ``already_finished``
    (``record`` says how it ended), or ``unknown`` (no such turn runs or ran)."""

    status: Literal["requested", "already_requested", "already_finished", "unknown"]
    session_id: str
    turn_id: str
    request: CancelRequest | None = None
    record: TurnRecord | None = None

    __module__ = "lash.store"


@attrs.frozen
class EventDraft:
    """An event a commit (or another store write) appends to the session's event log."""

    type: str
    data: Mapping[str, Any] = attrs.field(factory=dict)

    __module__ = "lash.store"


@attrs.frozen
class StoredEvent:
    """An event of a session's log: ``seq`` numbers a session's events from 1, gap-free."""

    session_id: str
    seq: int
    type: str
    data: Mapping[str, Any] = attrs.field(factory=dict)
    at: float = 0.0

    __module__ = "lash.store"


@attrs.frozen
class EventPage:
    """Events after a sequence number: ``first`` is the oldest event the store still keeps
    (its replay window starts there; ``last + 1`` when it keeps none), ``last`` the latest."""

    events: tuple[StoredEvent, ...]
    first: int
    last: int

    __module__ = "lash.store"


@attrs.frozen
class WorkPoll:
    """What one :meth:`Store.poll_work` call found: the ``process`` it claimed (``None``: none,
    or no claim was asked), the ``sessions`` a worker may drain (ids, the one waiting longest
    first) and the ``unnotified`` processes whose finisher died before notifying."""

    process: ProcessRecord | None = None
    sessions: tuple[str, ...] = ()
    unnotified: tuple[ProcessRecord, ...] = ()

    __module__ = "lash.store"


@attrs.frozen
class ProcessDraft:
    """A process to start: its ``id`` (chosen by the caller, so a tool can name the process
    before the turn that starts it commits), ``kind`` and JSON-ready ``payload``; the session it
    belongs to (``None``: the host's); ``key`` makes starting idempotent (a key already used,
    with the same kind, session and payload, returns that process; otherwise it is a
    :class:`lash.InputConflict`). ``recovery`` is a :class:`lash.RecoveryDisposition` value;
    ``max_attempts`` bounds the runs of a rerunnable process; ``source`` says who started it
    (``"host"``, ``"tool:NAME"``, ``"plugin:NAME"``...).
    """

    id: str
    kind: str
    payload: Any = None
    session_id: str | None = None
    key: str | None = None
    recovery: str = "owner_bound"
    max_attempts: int = 1
    timeout: float | None = None
    source: str | None = None

    __module__ = "lash.store"


@attrs.frozen
class CommitDelta:
    """What one commit adds, applied atomically. ``None`` fields are unchanged.

    - ``nodes``, ``plugin_states``, ``config``, ``usage``, ``turns``: the session's head;
      ``replace`` starts the session over (its previous nodes, states and usage are dropped in
      the same transaction).
    - ``claimed``: ids of inputs this commit consumes (each claimed by this lease: otherwise the
      commit is refused with :class:`lash.LeaseLost`); they become ``completed``.
    - ``applied``: ids of pending session commands this commit applied.
    - ``enqueue``: inputs this commit queues (``EnqueueMessages`` directives).
    - ``turn``: the record of the turn this commit completes (its id unique in the session).
    - ``events``: events appended to the session's log, in order.
    - ``processes``: processes this commit starts (``pending``; a key already used with the
      same content is skipped, as by :meth:`Store.start_process`; with other content it is an
      :class:`lash.InputConflict` that refuses the whole commit), so a turn that does not
      commit starts nothing.
    - ``parent_id``: the session's parent (a child session's commits carry it; ``None`` leaves
      the head's link as it is). The store keeps the parent's current incarnation with the
      link when it first stores it.
    - ``rollup``: usage added to *other* sessions' usage totals, by session id then source, in
      the same transaction, without their lease and without moving their revision (how a
      child session's usage rolls up into its ancestors, under ``child:<id>``). Only the
      sessions on the committing session's stored chain of parent links get theirs, as far as
      each link names its parent's current incarnation: a deleted ancestor, and a session
      created again under its id, get nothing (nor does a session id with no head).
    - ``release``: release the lease in the same transaction.
    """

    nodes: tuple[GraphNode, ...] = ()
    plugin_states: Mapping[str, Any] = attrs.field(factory=dict)
    config: SessionConfig | None = None
    usage: Mapping[str, Usage] = attrs.field(factory=dict)
    turns: int = 0
    replace: bool = False
    claimed: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()
    enqueue: tuple[InputDraft, ...] = ()
    turn: TurnRecord | None = None
    events: tuple[EventDraft, ...] = ()
    processes: tuple[ProcessDraft, ...] = ()
    parent_id: str | None = None
    rollup: Mapping[str, Mapping[str, Usage]] = attrs.field(factory=dict)
    release: bool = False

    __module__ = "lash.store"


@attrs.frozen
class SessionSummary:
    """One row of a session listing. ``status`` is how its last turn ended (``completed``,
    ``stopped``, ``failed``; ``None`` before any turn); ``pending_inputs`` counts its queued
    input; ``parent_id`` is the parent of a child session (``None``: a root session)."""

    session_id: str
    created_at: float
    updated_at: float
    turns: int
    revision: int
    last_user_message: str | None = None
    usage: Usage = Usage()
    status: str | None = None
    pending_inputs: int = 0
    parent_id: str | None = None

    __module__ = "lash.store"


resolve_here(globals())
