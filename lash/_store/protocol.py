"""The ``Store`` protocol the kernel commits through (public in ``lash.store``).

A session lives in a store as a head (revision, config, plugin states, usage), an append-only
graph of nodes, a **mailbox** (pending input and session commands that any process may queue
without the session's lease), **turn records** (how each committed turn ended, by turn id),
**cancellation requests**, and an **event log** observers read after a cursor.

One execution (a turn, a change that commits) is guarded by the session's **lease**:
``acquire_lease`` gives a writer the session for ``ttl`` seconds; every change of hands
increments the fencing token. A live lease held by another owner makes ``acquire_lease`` raise
:class:`lash.SessionBusy`; an expired one is taken over, and so is a live one the caller proves
dead (``take_over``). One :meth:`Store.commit` applies everything an execution changed, only if
the writer still holds the lease (fencing) and the head is still at the revision the writer read
(compare-and-swap); it can release the lease in the same transaction. A commit carries only its
delta, so its cost never grows with history.

A store may also offer ``async wait_events(session_id, after, timeout) -> bool`` (not part of
the protocol: optional): return ``True`` once the session's event log may have grown past event
``after``, ``False`` after ``timeout`` seconds. Observers in other processes then wait on it
instead of polling the log (the Postgres store implements it with LISTEN/NOTIFY). A lost
notification may only delay: callers read the log after either answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from lash._contract.turn_types import ProcessRecord
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
    TurnRecord,
    WorkPoll,
)


@runtime_checkable
class Store(Protocol):
    """What a store backend implements (contributed by URL scheme through ``register_stores``).

    Every method is a coroutine. ``lash.store.check_store`` runs the conformance suite that checks
    a backend against this contract. Every method that takes a ``session_id`` first checks it with
    :func:`lash.store.check_session_id`, raising :class:`lash.SessionError` for an id that breaks
    the session id rule (and doing nothing else).
    """

    # -- leases ---------------------------------------------------------------------------------

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
        """Take the session's lease for ``ttl`` seconds, following :func:`lash.store.take_lease`
        (re-acquiring one's own live lease refreshes it and keeps its token; ``take_over``, the
        lease the caller saw and proved dead, is taken even if live, while it is still the
        session's current lease). A session that does not exist yet gets a head at revision 0.

        ``turn`` records the id of the turn this lease runs (until the lease is released), so a
        cancellation request can find it; ``events`` are appended to the session's log in the
        same transaction. The lease returned says the head revision and the pending input and
        commands (:class:`lash.store.Lease`).

        :raises SessionBusy: when another owner holds a live lease (``owner``, ``token`` and
            ``expires_at`` name it).
        """

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend a lease that is still current (same token), even if it has just expired.

        :raises LeaseLost: when the token is no longer current.
        """

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up (nothing happens if it is no longer current). Inputs it claimed and
        did not settle are pending again."""

    # -- the head and the graph -------------------------------------------------------------------

    async def load(self, session_id: str, *, full: bool = False) -> SessionRecord | None:
        """The session's head and nodes (active frame, or every node with ``full``), or None
        when it has no commit."""

    async def commit(
        self, session_id: str, *, lease: Lease, expected_revision: int, delta: CommitDelta
    ) -> int:
        """Apply ``delta`` atomically and return the new revision (see
        :class:`lash.store.CommitDelta`).

        :raises LeaseLost: when ``lease`` is not the current lease, or an input in
            ``delta.claimed`` is not claimed by it; nothing is written.
        :raises RevisionConflict: when the head is not at ``expected_revision`` (0: no commits).
        """

    async def delete(self, session_id: str) -> None:
        """Delete a session and everything it stored (mailbox, turn records, events included).

        :raises UnknownSession: when it has no commit.
        :raises SessionBusy: while any lease on it is live.
        """

    async def list_sessions(self) -> list[SessionSummary]:
        """Every committed session, most recently updated first."""

    # -- the mailbox: no lease needed ------------------------------------------------------------

    async def enqueue_input(self, session_id: str, draft: InputDraft) -> PendingInput:
        """Queue input (a session with no commit yet is created, at revision 0) and log an
        ``input_queued`` event.

        A ``key`` already used in the session with the same text, items and ingress returns
        that input, whatever its state (nothing is queued or logged again).

        :raises InputConflict: the key was used with other content.
        """

    async def list_inputs(self, session_id: str, *, settled: bool = False) -> list[PendingInput]:
        """The session's pending and claimed inputs, oldest first (with ``settled``, completed
        and cancelled ones too)."""

    async def cancel_inputs(
        self, session_id: str, targets: Sequence[str], *, suffix: bool = False
    ) -> list[InputCancellation]:
        """Cancel inputs by id or key, atomically, one outcome per target in target order
        (``cancelled``, ``already_claimed``, ``already_completed``, ``already_cancelled``,
        ``unknown``), logging ``input_cancelled`` for each cancelled input. With ``suffix``,
        ``targets`` is one input and the outcomes are its and every later input's (queue
        order): a claimed one in the middle stays, the others are cancelled."""

    async def claim_inputs(
        self, lease: Lease, *, limit: int = 1, ingress: Ingress | None = None
    ) -> list[PendingInput]:
        """Claim up to ``limit`` pending inputs (oldest first; only ``ingress`` ones if given)
        for the execution holding ``lease``, logging ``input_claimed`` for each. A claim lives as
        long as the lease: the commit that settles it (``delta.claimed``) completes the input,
        and a lease released, expired or taken over leaves it pending.

        :raises LeaseLost: when ``lease`` is not the current lease.
        """

    async def enqueue_command(self, session_id: str, draft: CommandDraft) -> QueuedCommand:
        """Queue a session command (creating the session at revision 0 if needed) and log
        ``command_queued``. A key already used in the session returns that command, whatever its
        state, when the name and args are the same.

        :raises InputConflict: the key was used with another name or other args.
        """

    async def list_commands(self, session_id: str, *, settled: bool = False) -> list[QueuedCommand]:
        """The session's pending commands, oldest first (with ``settled``, applied ones too)."""

    # -- turns and their cancellation ------------------------------------------------------------

    async def turn_record(self, session_id: str, turn_id: str) -> TurnRecord | None:
        """The committed turn ``turn_id``, or ``None``."""

    async def request_cancel(
        self, session_id: str, turn_id: str, *, origin: str, reason: str | None = None
    ) -> CancelReceipt:
        """Ask the turn ``turn_id`` to stop: ``already_finished`` when it is committed,
        ``already_requested`` when a request is stored already (the first one stands),
        ``requested`` (stored) when it runs now under a live lease, else ``unknown``."""

    async def cancel_request(self, session_id: str, turn_id: str) -> CancelRequest | None:
        """The stored request to cancel ``turn_id``, or ``None``."""

    # -- observation -----------------------------------------------------------------------------

    async def read_events(self, session_id: str, *, after: int = 0, limit: int = 1000) -> EventPage:
        """Up to ``limit`` events with ``seq > after``, oldest first, and the store's replay
        window (``first``, ``last``)."""

    # -- processes: durable records, claimed by workers ------------------------------------------

    async def start_process(self, draft: ProcessDraft) -> ProcessRecord:
        """Write a ``pending`` process record (``attempts`` 0) and, when it belongs to a session,
        log ``process_started`` there. A ``key`` already used returns that process, whatever its
        state (nothing is written), when kind, session and payload are the same.

        :raises InputConflict: the key was used for another kind, session or payload.
        """

    async def get_process(self, process_id: str) -> ProcessRecord | None:
        """The process ``process_id``, or ``None``."""

    async def list_processes(
        self,
        *,
        session_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[ProcessRecord]:
        """Processes, oldest first, filtered by session, kind and status (``None``: any)."""

    async def claim_process(
        self, owner: str, *, ttl: float, kinds: Sequence[str] | None = None
    ) -> ProcessRecord | None:
        """Claim the oldest runnable process (of ``kinds`` if given) for ``ttl`` seconds and
        return it ``running``, with ``owner``, a new ``token``, ``expires_at`` and ``attempts``
        increased by one; ``None`` when none is runnable. Runnable: ``pending`` ones, and
        ``running`` rerunnable ones whose claim expired with attempts left. First, in the same
        transaction, every ``running`` process whose claim expired and that may not run again
        is settled: an owner-bound one ``abandoned``, a rerunnable one with no attempts left
        ``failed``; an externally owned one stays as it is."""

    async def heartbeat_process(
        self, process_id: str, token: int, *, ttl: float, progress: Any = None
    ) -> ProcessRecord:
        """Extend the claim ``token`` by ``ttl`` seconds (and store ``progress`` when given,
        logging ``process_progress`` in its session); the record returned says whether
        cancellation was requested.

        :raises LeaseLost: when ``token`` is no longer the process's claim, or it is finished.
        """

    async def park_process(self, process_id: str, token: int) -> ProcessRecord:
        """Give up the claim on an externally owned process whose ``run`` returned: it stays
        ``running``, with no claim (``expires_at`` None), until an external ``finish_process``.

        :raises LeaseLost: when ``token`` is no longer the process's claim.
        """

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
        """Settle a process in a terminal ``status`` (logging ``process_finished`` in its
        session) and return it. With a ``token``, only the worker holding that claim may
        (:class:`lash.LeaseLost` otherwise). ``token=None`` is an external completion: allowed for
        a process that is not finished (for an externally owned one, or a cancellation of a
        ``pending`` one); a process already finished is returned unchanged (first settlement
        stands). ``notified`` settles it as notified at once: its finisher has nothing to
        notify (no ``process_finished`` implementation, no session to wake), so the outbox
        needs no second write."""

    async def request_process_cancel(self, process_id: str, reason: str) -> ProcessRecord | None:
        """Ask a process to stop: a ``pending`` one is ``cancelled`` at once; a ``running`` one
        gets ``cancel_requested`` (its worker sees it at its next heartbeat); a finished one is
        returned unchanged. ``None`` for an unknown id."""

    async def unnotified_processes(self, *, finished_before: float) -> list[ProcessRecord]:
        """Finished processes not yet ``notified`` that finished before ``finished_before``
        (epoch seconds, by the caller's clock: ``time.time()`` less a lease TTL), oldest first:
        those whose finisher died before notifying. A store whose times come from another
        clock (a database server's) reads it as an age, ``time.time() - finished_before``
        seconds before its own now: the two clocks may differ by more than a TTL."""

    async def mark_process_notified(self, process_id: str) -> None:
        """Record that ``process_finished`` ran (and the session was woken) for the process."""

    async def runnable_sessions(self, *, limit: int = 100) -> list[str]:
        """Ids of sessions with pending input or commands and no live lease, the one waiting
        longest first: what a worker drains."""

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
        """A worker's idle round in one call (one transaction where the store has them): what
        :meth:`claim_process` claims (when ``claim``), then what :meth:`runnable_sessions`
        lists (up to ``sessions``; none when 0) and what :meth:`unnotified_processes` lists
        (when ``finished_before`` is given). An idle worker makes one query a poll, so neither a
        dead peer's processes nor its sessions wait for a rotation of separate queries."""

    # -- blobs: content-addressed bytes (the images of turn input) ------------------------------

    async def put_blob(self, data: bytes) -> str:
        """Store ``data`` under its sha256 (64 lowercase hex digits) and return that digest.
        Bytes the store holds already are not stored again. Blobs belong to no session: deleting
        a session leaves them (another session may refer to the same bytes)."""

    async def get_blob(self, digest: str) -> bytes | None:
        """The bytes stored under sha256 ``digest``, or ``None`` when the store has none."""

    async def close(self) -> None:
        """Release connections and files."""


# Protocol classes cannot set __module__ in their body (it would become a protocol member).
Store.__module__ = "lash.store"
