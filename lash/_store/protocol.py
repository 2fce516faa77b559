"""The ``Store`` protocol the kernel commits through, and the in-memory backend.

One turn is one :meth:`Store.commit`: the graph delta, plugin state snapshots, config, usage
deltas and pending input, applied atomically, and only if

- the writer still holds the session's **lease** (its fencing token is the current one), and
- the head revision is still the one the writer read (compare-and-swap).

A commit carries only the delta, so its cost never grows with history.

Leases: ``acquire_lease`` gives a writer the session for ``ttl`` seconds; every change of hands
increments the session's fencing token. A live lease held by another owner makes
``acquire_lease`` raise :class:`lash.SessionBusy`; an expired one is taken over. A writer whose
token is no longer current cannot commit (:class:`lash.LeaseLost`). A lease may be taken on a
session id that has no commits yet; ``load`` returns ``None`` until the first commit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.graph import FrameBoundary, GraphNode, UserMessage
from lash._contract.types import SessionConfig, Usage
from lash._store.ids import check_session_id
from lash.errors import LeaseLost, RevisionConflict, SessionBusy, UnknownSession


@attrs.frozen
class Lease:
    """A writer's hold on one session: ``token`` is the fencing token, ``expires_at`` epoch
    seconds. Only the holder of the current token may commit."""

    session_id: str
    owner: str
    token: int
    expires_at: float

    __module__ = "lash.store"

    def remaining(self, now: float | None = None) -> float:
        """Seconds until the lease expires (negative once expired)."""
        return self.expires_at - (time.time() if now is None else now)


@attrs.frozen
class SessionRecord:
    """A session as loaded from a store: its head and the nodes of its active frame (or all)."""

    session_id: str
    revision: int
    created_at: float
    updated_at: float
    nodes: tuple[GraphNode, ...]
    config: SessionConfig = SessionConfig()
    plugin_states: Mapping[str, Any] = attrs.field(factory=dict)
    pending: tuple[str, ...] = ()
    usage: Mapping[str, Usage] = attrs.field(factory=dict)
    turns: int = 0

    __module__ = "lash.store"


@attrs.frozen
class CommitDelta:
    """What one commit adds. ``None`` fields are unchanged; ``replace`` starts the session over
    (the session's previous nodes, states and usage are dropped in the same transaction)."""

    nodes: tuple[GraphNode, ...] = ()
    plugin_states: Mapping[str, Any] = attrs.field(factory=dict)
    config: SessionConfig | None = None
    pending: tuple[str, ...] | None = None
    usage: Mapping[str, Usage] = attrs.field(factory=dict)
    turns: int = 0
    replace: bool = False

    __module__ = "lash.store"


@attrs.frozen
class SessionSummary:
    """One row of a session listing."""

    session_id: str
    created_at: float
    updated_at: float
    turns: int
    revision: int
    last_user_message: str | None = None
    usage: Usage = Usage()

    __module__ = "lash.store"


@runtime_checkable
class Store(Protocol):
    """What a store backend implements (contributed by URL scheme through ``register_stores``).

    Every method is a coroutine. ``lash.testing`` ships a conformance suite that checks a backend
    against this contract. Every method that takes a ``session_id`` first checks it with
    :func:`lash.store.check_session_id`, raising :class:`lash.SessionError` for an id that breaks
    the session id rule (and doing nothing else).
    """

    async def acquire_lease(self, session_id: str, owner: str, *, ttl: float) -> Lease:
        """Take the session's lease for ``ttl`` seconds (re-acquiring one's own live lease
        refreshes it and keeps its token).

        :raises SessionBusy: when another owner holds a live lease.
        """

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        """Extend a lease that is still current (same token), even if it has just expired.

        :raises LeaseLost: when the token is no longer current.
        """

    async def release_lease(self, lease: Lease) -> None:
        """Give the lease up (nothing happens if it is no longer current)."""

    async def load(self, session_id: str, *, full: bool = False) -> SessionRecord | None:
        """The session's head and nodes (active frame, or every node with ``full``), or None."""

    async def commit(
        self, session_id: str, *, lease: Lease, expected_revision: int, delta: CommitDelta
    ) -> int:
        """Apply ``delta`` atomically and return the new revision.

        :raises LeaseLost: when ``lease`` is not the current lease; nothing is written.
        :raises RevisionConflict: when the head is not at ``expected_revision`` (0: no commits).
        """

    async def delete(self, session_id: str) -> None:
        """Delete a session and everything it stored.

        :raises UnknownSession: when there is none.
        :raises SessionBusy: while any lease on it is live.
        """

    async def list_sessions(self) -> list[SessionSummary]:
        """Every committed session, most recently updated first."""

    async def close(self) -> None:
        """Release connections and files."""


def check_lease(current: Lease | None, lease: Lease) -> None:
    """Raise :class:`LeaseLost` unless ``lease`` is the session's current lease.

    A released lease (kept with ``expires_at == 0`` so the next holder's token is higher) no
    longer commits; an expired one that nobody took over still does, since its token is current.
    """
    if current is None:
        raise LeaseLost(lease.session_id, "the session has no lease (it was released)")
    if current.owner == lease.owner and current.token == lease.token and current.expires_at == 0:
        raise LeaseLost(lease.session_id, "the lease was released")
    if current.session_id != lease.session_id:
        raise LeaseLost(
            current.session_id, f"the lease presented is for session {lease.session_id!r}"
        )
    if current.token != lease.token or current.owner != lease.owner:
        raise LeaseLost(
            lease.session_id,
            f"taken over by {current.owner!r} (fencing token {current.token}, ours {lease.token})",
        )


def take_lease(current: Lease | None, session_id: str, owner: str, ttl: float) -> Lease:
    """The lease ``owner`` gets given the ``current`` one (the rule every backend applies)."""
    now = time.time()
    if current is not None and current.owner != owner and current.expires_at > now:
        raise SessionBusy(session_id, owner=current.owner, expires_at=current.expires_at)
    if current is not None and current.owner == owner:
        return attrs.evolve(current, expires_at=now + ttl)
    token = (current.token if current is not None else 0) + 1
    return Lease(session_id, owner, token, now + ttl)


@attrs.define
class _MemorySession:
    revision: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    nodes: list[GraphNode] = attrs.field(factory=list)
    frame_start: int = 0
    config: SessionConfig = SessionConfig()
    plugin_states: dict[str, Any] = attrs.field(factory=dict)
    pending: tuple[str, ...] = ()
    usage: dict[str, Usage] = attrs.field(factory=dict)
    turns: int = 0
    last_user_message: str | None = None


class MemoryStore:
    """``memory://``: a store in process memory, for tests and throwaway sessions."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._sessions: dict[str, _MemorySession] = {}
        self._leases: dict[str, Lease] = {}

    async def acquire_lease(self, session_id: str, owner: str, *, ttl: float) -> Lease:
        check_session_id(session_id)
        lease = take_lease(self._leases.get(session_id), session_id, owner, ttl)
        self._leases[session_id] = lease
        return lease

    async def renew_lease(self, lease: Lease, *, ttl: float) -> Lease:
        check_lease(self._leases.get(lease.session_id), lease)
        renewed = attrs.evolve(lease, expires_at=time.time() + ttl)
        self._leases[lease.session_id] = renewed
        return renewed

    async def release_lease(self, lease: Lease) -> None:
        current = self._leases.get(lease.session_id)
        if current is not None and current.token == lease.token and current.owner == lease.owner:
            # Keep the token (as an expired lease) so the next holder's token is still higher.
            self._leases[lease.session_id] = attrs.evolve(current, expires_at=0.0)

    async def load(self, session_id: str, *, full: bool = False) -> SessionRecord | None:
        check_session_id(session_id)
        s = self._sessions.get(session_id)
        if s is None:
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
            pending=s.pending,
            usage=dict(s.usage),
            turns=s.turns,
        )

    async def commit(
        self, session_id: str, *, lease: Lease, expected_revision: int, delta: CommitDelta
    ) -> int:
        check_session_id(session_id)
        check_lease(self._leases.get(session_id), lease)
        now = time.time()
        old = self._sessions.get(session_id)
        current = old.revision if old is not None else 0
        if current != expected_revision:
            raise RevisionConflict(session_id, expected=expected_revision, actual=current)
        s = _MemorySession(created_at=now) if old is None or delta.replace else old
        if old is not None and delta.replace:
            s.created_at = old.created_at
        for node in delta.nodes:
            if isinstance(node, FrameBoundary):
                s.frame_start = len(s.nodes)
            elif isinstance(node, UserMessage):
                s.last_user_message = node.text
            s.nodes.append(node)
        s.plugin_states.update(delta.plugin_states)
        if delta.config is not None:
            s.config = delta.config
        if delta.pending is not None:
            s.pending = delta.pending
        for source, usage in delta.usage.items():
            s.usage[source] = s.usage.get(source, Usage()) + usage
        s.turns += delta.turns
        s.revision = current + 1
        s.updated_at = now
        self._sessions[session_id] = s
        return s.revision

    async def delete(self, session_id: str) -> None:
        check_session_id(session_id)
        if session_id not in self._sessions:
            raise UnknownSession(session_id)
        lease = self._leases.get(session_id)
        if lease is not None and lease.expires_at > time.time():
            raise SessionBusy(session_id, owner=lease.owner, expires_at=lease.expires_at)
        del self._sessions[session_id]

    async def list_sessions(self) -> list[SessionSummary]:
        rows = []
        for sid, s in self._sessions.items():
            total = Usage()
            for usage in s.usage.values():
                total = total + usage
            rows.append(
                SessionSummary(
                    sid, s.created_at, s.updated_at, s.turns, s.revision, s.last_user_message, total
                )
            )
        return sorted(rows, key=lambda r: r.updated_at, reverse=True)

    async def close(self) -> None:
        return None


# Protocol classes cannot set __module__ in their body (it would become a protocol member).
Store.__module__ = "lash.store"
MemoryStore.__module__ = "lash.store"

resolve_here(globals())
