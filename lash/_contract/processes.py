"""What background processes see, and what tools and hooks start them with:
:class:`ProcessContext` (given to a process kind's ``run``) and :class:`SessionProcesses` (the
processes of one session, as ``context.processes``).

Like the session services, these are thin views over a backend the kernel implements
(:class:`ProcessesBackend`), so the contract plugins see is written here, once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from lash._contract.annotations import resolve_here
from lash.errors import ProcessError

if TYPE_CHECKING:
    import asyncio  # see lash._contract.services: asyncio is imported where a context is built

    from lash._contract.turn_types import ProcessRecord

__all__ = ["ProcessContext", "ProcessesBackend", "SessionProcesses"]


class ProcessesBackend(Protocol):
    """What :class:`SessionProcesses` forwards to (implemented by the kernel)."""

    async def start(self, kind: str, payload: Any, *, key: str | None) -> ProcessRecord: ...

    async def get(self, process_id: str) -> ProcessRecord | None: ...

    async def list(self, *, kind: str | None, status: str | None) -> list[ProcessRecord]: ...

    async def wait(self, process_id: str, *, timeout: float | None) -> ProcessRecord: ...

    async def cancel(self, process_id: str, *, reason: str) -> ProcessRecord: ...


class SessionProcesses:
    """The background processes of one session, as its tools, hooks and processes see them
    (``context.processes``): they start processes for that session, and see only its processes.

    Started from a tool during a turn, a process is written in the turn's commit: ``start``
    returns its ``pending`` record at once, and a turn that does not commit starts nothing (the
    record then never exists). Elsewhere (a process starting another) it is written at once.
    """

    __slots__ = ("_backend", "session_id")

    def __init__(self, backend: ProcessesBackend, session_id: str | None) -> None:
        self._backend = backend
        #: The session these processes belong to (``None``: the host's, for a process started
        #: without a session).
        self.session_id = session_id

    async def start(
        self, kind: str, payload: Any = None, *, key: str | None = None
    ) -> ProcessRecord:
        """Start a process of ``kind`` with ``payload`` (an instance of the kind's payload class,
        or its JSON form) for this session; returns its record. ``key`` makes it idempotent:
        a key already used returns that process.

        :raises ProcessError: an unknown kind (named), or a payload that does not fit the kind.
        :raises InputConflict: ``key`` was used for another kind, session or payload.
        """
        return await self._backend.start(kind, payload, key=key)

    async def get(self, process_id: str) -> ProcessRecord | None:
        """The process ``process_id`` if it belongs to this session, else ``None``."""
        return await self._backend.get(process_id)

    async def list(
        self, *, kind: str | None = None, status: str | None = None
    ) -> list[ProcessRecord]:
        """This session's processes, oldest first, filtered by kind and status."""
        return await self._backend.list(kind=kind, status=status)

    async def wait(self, process_id: str, *, timeout: float | None = None) -> ProcessRecord:
        """Wait until process ``process_id`` (of this session) is finished; return its record.

        :raises UnknownProcess: no such process in this session.
        :raises TimeoutError: it is not finished after ``timeout`` seconds.
        """
        return await self._backend.wait(process_id, timeout=timeout)

    async def cancel(self, process_id: str, *, reason: str = "cancelled") -> ProcessRecord:
        """Ask process ``process_id`` (of this session) to stop (see
        :meth:`lash.LashCore.processes` ``cancel``). :raises UnknownProcess: not in this
        session."""
        return await self._backend.cancel(process_id, reason=reason)

    def __repr__(self) -> str:
        return f"<SessionProcesses {self.session_id!r}>"


def _new_event() -> asyncio.Event:
    import asyncio  # see the note at the imports

    return asyncio.Event()


@attrs.define
class ProcessContext:
    """What a process kind's ``run(context, payload)`` receives.

    ``id``, ``kind``, ``attempt`` (1 for the first run; a rerunnable process runs again after a
    crash with the next number) and ``session_id`` (``None`` for a process started without a
    session) describe the run; ``payload`` is the structured payload (also passed as ``run``'s
    second argument). ``session`` is a read-only :class:`lash.SessionSnapshot` of the session,
    read from the store when the run started (no lease is held: the session may move on).
    ``processes`` starts and watches processes of the same session, and ``child(...)`` creates
    a child session of it (a sub-agent run in the background).

    ``cancelled`` is set when someone asked the process to stop (``core.processes.cancel``,
    ``lash processes cancel``): the worker also cancels ``run``'s task, and a run that ignores
    both is recorded ``cancelled`` after a grace period anyway. ``await emit(data)`` records
    progress (JSON-ready ``data``): it is stored on the record and logged as a
    ``process_progress`` event in the session, for its observers.
    """

    id: str
    kind: str
    payload: Any
    attempt: int
    session_id: str | None
    processes: SessionProcesses
    session: Any = None
    cancelled: asyncio.Event = attrs.field(factory=_new_event)
    _emit: Callable[[Any], Awaitable[None]] | None = attrs.field(default=None, repr=False)
    _child: Callable[..., Any] | None = attrs.field(default=None, repr=False)

    @property
    def is_cancelled(self) -> bool:
        """Whether cancellation was requested."""
        return self.cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`asyncio.CancelledError` if cancellation was requested."""
        if self.cancelled.is_set():
            import asyncio  # see the note at the imports

            raise asyncio.CancelledError(f"process {self.id} was cancelled")

    async def emit(self, data: Any = None) -> None:
        """Record progress: stored on the process record (``progress``) and logged as a
        ``process_progress`` event in its session (observers see it)."""
        if self._emit is not None:
            await self._emit(data)

    def child(
        self,
        *,
        id: str | None = None,
        tools: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        inherit: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> Any:
        """A handle (a :class:`lash.Session`) on a child session of the process's session,
        as :meth:`lash.SessionView.child` gives a tool: open it, run its turns, close it::

            async with context.child(tools=["search"]) as child:
                result = await child.turn(payload.question).run()

        The child starts from the parent's configuration **as stored** (provider, model,
        prompt layers, plugin options; a parent handle's per-handle options are not stored, so
        they do not reach it), with ``config`` and ``options`` on top, restricted to ``tools``
        when given. Its usage rolls up into the parent's report under ``child:<id>``; the
        parent's lease is not needed (its turns may run meanwhile).

        :raises ProcessError: the process belongs to no session.
        """
        if self._child is None or self.session_id is None:
            raise ProcessError(
                f"process {self.id} ({self.kind}) belongs to no session, so it has no session "
                "to create a child of (start it with a session_id)",
                process_id=self.id,
                kind=self.kind,
            )
        return self._child(id=id, tools=tools, options=options, inherit=inherit, config=config)


for _cls in (ProcessContext, SessionProcesses):
    _cls.__module__ = "lash"

resolve_here(globals())
