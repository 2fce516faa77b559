"""The ``Store`` protocol the kernel commits through, and the in-memory backend.

One turn is one :meth:`Store.commit`: the graph delta, plugin state snapshots, config, usage
deltas and pending input, applied atomically if the head revision is still the one the writer read
(compare-and-swap). A commit carries only the delta, so its cost never grows with history.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from lash._annotations import resolve_here
from lash._graph import FrameBoundary, GraphNode
from lash._types import SessionConfig, Usage
from lash.errors import RevisionConflict, UnknownSession


@attrs.frozen
class SessionRecord:
    """A session as loaded from a store: its head and the nodes of its active frame."""

    session_id: str
    revision: int
    created_at: float
    updated_at: float
    nodes: tuple[GraphNode, ...]
    config: SessionConfig = SessionConfig()
    protocol_options: Mapping[str, Any] = attrs.field(factory=dict)
    plugin_states: Mapping[str, Any] = attrs.field(factory=dict)
    pending: tuple[str, ...] = ()
    usage: Mapping[str, Usage] = attrs.field(factory=dict)
    turns: int = 0

    __module__ = "lash"


@attrs.frozen
class CommitDelta:
    """What one commit adds. ``None`` fields are unchanged; ``replace`` starts the session over."""

    nodes: tuple[GraphNode, ...] = ()
    plugin_states: Mapping[str, Any] = attrs.field(factory=dict)
    config: SessionConfig | None = None
    protocol_options: Mapping[str, Any] | None = None
    pending: tuple[str, ...] | None = None
    usage: Mapping[str, Usage] = attrs.field(factory=dict)
    turns: int = 0
    replace: bool = False

    __module__ = "lash"


@attrs.frozen
class SessionSummary:
    """One row of a session listing."""

    session_id: str
    created_at: float
    updated_at: float
    turns: int
    revision: int

    __module__ = "lash"


@runtime_checkable
class Store(Protocol):
    """What a store backend implements (contributed by URL scheme through ``register_stores``)."""

    async def load(self, session_id: str, *, full: bool = False) -> SessionRecord | None:
        """The session's head and nodes (active frame, or every node with ``full``), or None."""

    async def commit(self, session_id: str, *, expected_revision: int, delta: CommitDelta) -> int:
        """Apply ``delta`` atomically if the head is at ``expected_revision`` (0: no session yet);
        return the new revision.

        :raises RevisionConflict: when the head moved.
        """

    async def delete(self, session_id: str) -> None:
        """Delete a session.

        :raises UnknownSession: when there is none.
        """

    async def list_sessions(self) -> list[SessionSummary]:
        """Every session, most recently updated first."""

    async def close(self) -> None:
        """Release connections and files."""


@attrs.define
class _MemorySession:
    revision: int
    created_at: float
    updated_at: float
    nodes: list[GraphNode]
    frame_start: int
    config: SessionConfig
    protocol_options: Mapping[str, Any]
    plugin_states: dict[str, Any]
    pending: tuple[str, ...]
    usage: dict[str, Usage]
    turns: int


class MemoryStore:
    """``memory://``: a store in process memory, for tests and throwaway sessions."""

    __module__ = "lash"

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self._sessions: dict[str, _MemorySession] = {}

    async def load(self, session_id: str, *, full: bool = False) -> SessionRecord | None:
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
            protocol_options=dict(s.protocol_options),
            plugin_states=dict(s.plugin_states),
            pending=s.pending,
            usage=dict(s.usage),
            turns=s.turns,
        )

    async def commit(self, session_id: str, *, expected_revision: int, delta: CommitDelta) -> int:
        now = time.time()
        s = self._sessions.get(session_id)
        current = s.revision if s is not None else 0
        if current != expected_revision:
            raise RevisionConflict(session_id, expected=expected_revision, actual=current)
        if s is None or delta.replace:
            s = _MemorySession(
                revision=current,
                created_at=now if s is None else s.created_at,
                updated_at=now,
                nodes=[],
                frame_start=0,
                config=SessionConfig(),
                protocol_options={},
                plugin_states={},
                pending=(),
                usage={},
                turns=0,
            )
            self._sessions[session_id] = s
        for node in delta.nodes:
            if isinstance(node, FrameBoundary):
                s.frame_start = len(s.nodes)
            s.nodes.append(node)
        s.plugin_states.update(delta.plugin_states)
        if delta.config is not None:
            s.config = delta.config
        if delta.protocol_options is not None:
            s.protocol_options = delta.protocol_options
        if delta.pending is not None:
            s.pending = delta.pending
        for source, usage in delta.usage.items():
            s.usage[source] = s.usage.get(source, Usage()) + usage
        s.turns += delta.turns
        s.revision = current + 1
        s.updated_at = now
        return s.revision

    async def delete(self, session_id: str) -> None:
        if self._sessions.pop(session_id, None) is None:
            raise UnknownSession(session_id)

    async def list_sessions(self) -> list[SessionSummary]:
        rows = [
            SessionSummary(sid, s.created_at, s.updated_at, s.turns, s.revision)
            for sid, s in self._sessions.items()
        ]
        return sorted(rows, key=lambda r: r.updated_at, reverse=True)

    async def close(self) -> None:
        return None


# Protocol classes cannot set __module__ in their body (it would become a protocol member).
Store.__module__ = "lash"


resolve_here(globals())
