"""``core.processes``: starting, watching, cancelling and completing background processes, and
what happens once one finished (``process_finished``, waking its session).

A process is a durable record first (DESIGN.md, invariant 11): :meth:`Processes.start` writes
it at once; a tool or hook of a running turn adds it to the turn's commit instead
(:class:`ScopedProcesses`), so a turn that does not commit starts nothing. Workers
(:mod:`lash._kernel.worker`) run the records; whoever settles one notifies it
(:meth:`Processes.notify`): the kernel broadcasts ``process_finished``, queues the wake-up input
of its session (rendered by ``render_process_result``, idempotent by the key
``process:<id>``), then marks the record notified. A notifier that dies in between leaves the
record to a worker's sweep: so ``process_finished`` runs once per process while workers live,
and at least once across a crash in that window.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from lash._contract.processes import SessionProcesses
from lash._contract.turn_types import ProcessRecord
from lash._contract.types import RecoveryDisposition
from lash._plugins.process_kinds import ProcessKind, process_data
from lash._store.process_rules import new_process, same_process
from lash._store.records import ProcessDraft
from lash.errors import InputConflict, LashError, ProcessError, UnknownProcess

if TYPE_CHECKING:
    from lash._plugins.composition import Composition
    from lash._store.protocol import Store

__all__ = ["Processes", "ScopedProcesses", "default_rendering", "process_id_for"]

log = logging.getLogger("lash.processes")

#: Characters of a result or error the default wake-up text shows.
RENDERED_LIMIT = 4000
#: Longest pause between two reads of a process that :meth:`Processes.wait` waits for.
WAIT_POLL = 0.5


class TurnRuntime(Protocol):
    """What a start inside a running execution needs of the session's runtime
    (:class:`lash._kernel.runtime.SessionRuntime` is one)."""

    @property
    def pending_processes(self) -> list[ProcessDraft]: ...

    def joinable(self) -> object | None: ...


class ProcessCore(Protocol):
    """What :class:`Processes` needs of its core (:class:`lash.LashCore` is one)."""

    @property
    def composition(self) -> Composition: ...

    @property
    def store(self) -> Store: ...

    async def enqueue(
        self,
        session_id: str,
        input: str,
        *,
        key: str | None = None,
        ingress: Any = "next_turn",
        items: Sequence[Any] = (),
        source: str = "host",
    ) -> Any: ...


def _check_args(call: str, *, optional: bool = False, **values: Any) -> None:
    """The text arguments of ``processes.<call>`` (``optional``: ``None`` allowed too), refused
    before the store is reached: memory:// kept or looked up another value as it was, while
    SQLite and Postgres failed on it with a bare error (or stored it).

    :raises ProcessError: naming the call and the argument."""
    for name, value in values.items():
        if not isinstance(value, str) and not (optional and value is None):
            kind = "a string or None" if optional else "a string"
            raise ProcessError(f"processes.{call} got {name}={value!r}; it must be {kind}")


def process_id_for(key: str | None) -> str:
    """A new process id; for a keyed start, the key's own id (the same key names the same
    process, so a start that joins a turn's commit can return the right id at once)."""
    if key is None:
        return f"proc-{uuid.uuid4().hex[:20]}"
    return f"proc-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:20]}"


def default_rendering(process: ProcessRecord) -> str:
    """The kernel's wake-up text for a finished process (no ``render_process_result`` answer)."""
    head = f"Background process {process.id} ({process.kind}) {process.status}"
    if process.status == "succeeded":
        detail = json.dumps(process.result, ensure_ascii=False, default=str)
        text = f"{head}. Result: {detail}"
    else:
        text = f"{head}: {process.error or 'no reason given'}"
    if len(text) > RENDERED_LIMIT:
        text = text[:RENDERED_LIMIT] + " [...]"
    return text


class Processes:
    """The host API of background processes: ``core.processes``.

    ``start`` writes a process record; ``get``, ``list`` and ``wait`` read them (any process on
    the store); ``cancel`` asks one to stop; ``complete`` settles an externally owned one. The
    kinds are those the core's plugins registered (:meth:`kinds`).
    """

    __module__ = "lash"

    def __init__(self, core: ProcessCore) -> None:
        self._core = core
        # Set when this core settles a process (waiters re-read at once); replaced after each
        # use, and per event loop (a core may serve several asyncio.run calls).
        self._settled: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        # The idle workers of this core, woken when a process is started or input is queued.
        self._wakers: set[asyncio.Event] = set()
        # Processes this core's workers run now: a cancellation from here reaches them at once.
        self.running: dict[str, asyncio.Event] = {}

    # -- kinds -----------------------------------------------------------------------------------

    def kinds(self) -> dict[str, ProcessKind]:
        """The process kinds the core's plugins registered, by name."""
        return {
            name: contribution.value
            for name, contribution in self._core.composition.registry.of("process_kind").items()
        }

    def kind(self, name: str) -> ProcessKind:
        """The kind ``name``. :raises ProcessError: an unknown kind, naming it and the known."""
        kinds = self.kinds()
        found = kinds.get(name)
        if found is None:
            known = ", ".join(sorted(kinds)) or "none: no enabled plugin registers process kinds"
            raise ProcessError(
                f"unknown process kind {name!r} (registered kinds: {known}); is the plugin that "
                "registers it enabled?",
                kind=name,
            )
        return found

    # -- starting --------------------------------------------------------------------------------

    def draft(
        self,
        kind: str,
        payload: Any = None,
        *,
        session_id: str | None = None,
        key: str | None = None,
        source: str = "host",
    ) -> ProcessDraft:
        """A checked start of ``kind`` (its payload validated and in JSON form), not written:
        :meth:`start` writes it, a turn's commit does (``CommitDelta.processes``).

        :raises ProcessError: an unknown kind, or a payload that does not fit it.
        """
        _check_args("start()", source=source)
        found = self.kind(kind)
        if key is not None and (not isinstance(key, str) or not key):
            raise ProcessError(f"a process key must be a non-empty string, got {key!r}", kind=kind)
        return ProcessDraft(
            id=process_id_for(key),
            kind=kind,
            payload=found.payload_data(payload),
            session_id=session_id,
            key=key,
            recovery=found.recovery.value,
            max_attempts=found.max_attempts,
            timeout=found.timeout,
            source=source,
        )

    async def existing(self, draft: ProcessDraft) -> ProcessRecord | None:
        """The process a keyed ``draft`` is already, if it was started.

        :raises InputConflict: the key was used for another kind, session or payload."""
        if draft.key is None:
            return None
        found = await self._core.store.get_process(draft.id)
        if found is None:
            return None
        if found.key != draft.key or not same_process(found, draft):
            raise InputConflict(draft.session_id or "-", draft.key, found.id, what="process")
        return found

    async def start(
        self,
        kind: str,
        payload: Any = None,
        *,
        session_id: str | None = None,
        key: str | None = None,
        source: str = "host",
    ) -> ProcessRecord:
        """Start a process of ``kind`` now: its ``pending`` record is written, and a worker
        (``lash worker``, :meth:`lash.LashCore.run_worker`) runs it. ``session_id`` ties it to
        a session (its events are logged there, and its end wakes the session). ``key`` makes
        it idempotent: a key already used returns that process, whatever its state.

        :raises ProcessError: an unknown kind (named), or a payload that does not fit it.
        :raises InputConflict: ``key`` was used for another kind, session or payload.
        """
        return await self.start_draft(
            self.draft(kind, payload, session_id=session_id, key=key, source=source)
        )

    async def start_draft(self, draft: ProcessDraft) -> ProcessRecord:
        """Write ``draft`` (from :meth:`draft`) now; wake this core's workers."""
        record = await self._core.store.start_process(draft)
        self.wake()
        return record

    # -- reading ---------------------------------------------------------------------------------

    async def get(self, process_id: str) -> ProcessRecord | None:
        """The process ``process_id`` (``None``: no such process)."""
        _check_args("get()", process_id=process_id)
        return await self._core.store.get_process(process_id)

    async def list(
        self,
        *,
        session_id: str | None = None,
        kind: str | None = None,
        status: str | None = None,
        limit: int = 1000,
    ) -> list[ProcessRecord]:
        """Processes, oldest first, filtered by session, kind and status (``None``: any)."""
        _check_args("list()", optional=True, kind=kind, status=status)
        if type(limit) is not int:
            raise ProcessError(f"processes.list() got limit={limit!r}; it must be an int")
        return await self._core.store.list_processes(
            session_id=session_id, kind=kind, status=status, limit=limit
        )

    async def wait(self, process_id: str, *, timeout: float | None = None) -> ProcessRecord:
        """Wait until process ``process_id`` is finished (settled by any process on the store);
        return its record. The store is read again when this core settles a process, else
        every half second at most.

        :raises UnknownProcess: no such process.
        :raises TimeoutError: it is not finished after ``timeout`` seconds.
        """
        _check_args("wait()", process_id=process_id)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.01
        while True:
            settled = self._settled_event()
            record = await self.get(process_id)
            if record is None:
                raise UnknownProcess(process_id)
            if record.finished:
                return record
            pause = delay
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError(
                        f"process {process_id!r} ({record.kind}) is still {record.status} after "
                        f"{timeout:g} s"
                    )
                pause = min(pause, left)
            try:
                # (asyncio.timeout, not wait_for: see lash._kernel.worker._waited)
                async with asyncio.timeout(pause):
                    await settled.wait()
            except TimeoutError:
                delay = min(delay * 2, WAIT_POLL)

    # -- control ---------------------------------------------------------------------------------

    async def cancel(
        self, process_id: str, *, reason: str = "cancelled by the host"
    ) -> ProcessRecord:
        """Ask process ``process_id`` to stop; returns its record. A ``pending`` one is
        ``cancelled`` at once; a running one sees ``context.cancelled`` (and its task is
        cancelled) at its worker's next heartbeat, and is recorded ``cancelled`` when it stops,
        or after a grace period if it ignores the request; an externally owned one waiting for
        its owner is ``cancelled`` at once. A finished one is returned unchanged.

        :raises UnknownProcess: no such process.
        """
        _check_args("cancel()", process_id=process_id, reason=reason)
        store = self._core.store
        before = await store.get_process(process_id)
        if before is None:
            raise UnknownProcess(process_id)
        if before.finished:
            return before
        record = await store.request_process_cancel(process_id, reason)
        if record is None:
            raise UnknownProcess(process_id)
        if record.status == "running" and record.expires_at is None:
            # Parked: its worker is gone, only its owner would finish it.
            record = await store.finish_process(process_id, None, status="cancelled", error=reason)
            settled_here = record.status == "cancelled" and record.error == reason
        else:
            settled_here = before.status == "pending" and record.status == "cancelled"
        if settled_here:
            await self.notify(record)
        poke = self.running.get(process_id)
        if poke is not None:
            poke.set()  # this core's worker runs it: it heartbeats now
        return record

    async def complete(
        self, process_id: str, *, result: Any = None, error: str | None = None
    ) -> ProcessRecord:
        """Settle an externally owned process: ``succeeded`` with ``result``, or ``failed``
        with ``error``; returns the record. The first settlement stands: completing a finished
        process returns it unchanged.

        :raises UnknownProcess: no such process.
        :raises ProcessError: the process is not externally owned (its worker finishes it).
        """
        _check_args("complete()", process_id=process_id)
        _check_args("complete()", optional=True, error=error)
        store = self._core.store
        record = await store.get_process(process_id)
        if record is None:
            raise UnknownProcess(process_id)
        if record.finished:
            return record
        if record.recovery != RecoveryDisposition.EXTERNALLY_OWNED.value:
            raise ProcessError(
                f"process {process_id!r} ({record.kind}) is {record.recovery}, not externally "
                "owned: its worker finishes it (cancel it instead)",
                process_id=process_id,
                kind=record.kind,
            )
        data = process_data(process_id, record.kind, "result", result)
        status = "failed" if error is not None else "succeeded"
        settled = await store.finish_process(
            process_id, None, status=status, result=data, error=error
        )
        if (settled.status, settled.result, settled.error) == (status, data, error):
            await self.notify(settled)
        return settled

    # -- after the end ---------------------------------------------------------------------------

    async def notify(self, record: ProcessRecord) -> None:
        """What follows a terminal commit, once: ``process_finished``, then the session's
        wake-up input (when the process has a session), then the record marked notified."""
        self.settled()
        hooks = self._core.composition.hooks
        await hooks.broadcast("process_finished", process=record)
        if record.session_id is not None:
            text = await self.render(record)
            item = {
                "process": {
                    "id": record.id,
                    "kind": record.kind,
                    "status": record.status,
                    "result": record.result,
                    "error": record.error,
                }
            }
            try:
                await self._core.enqueue(
                    record.session_id,
                    text,
                    key=f"process:{record.id}",
                    items=(item,),
                    source=f"process:{record.id}",
                )
            except InputConflict:
                pass  # woken already (by a notifier that died before marking the record)
        await self._core.store.mark_process_notified(record.id)

    async def render(self, record: ProcessRecord) -> str:
        """The wake-up text of ``record`` (``render_process_result``, else the default)."""
        try:
            answer = await self._core.composition.hooks.first(
                "render_process_result", process=record
            )
        except LashError as exc:
            self._core.composition.hooks.report(exc)
            answer = None
        if answer is not None and answer[1].strip():
            text: str = answer[1]
            return text
        return default_rendering(record)

    def _settled_event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._settled is None or self._settled[0] is not loop:
            self._settled = (loop, asyncio.Event())
        return self._settled[1]

    def quiet(self, record: ProcessRecord) -> bool:
        """Whether finishing ``record`` leaves nothing to notify: no session to wake and no
        ``process_finished`` implementation (then it is settled notified, in one write)."""
        return record.session_id is None and not self._core.composition.hooks.impls(
            "process_finished"
        )

    def settled(self) -> None:
        """Tell this core's waiters that a process was settled."""
        if self._settled is not None:
            self._settled[1].set()
            self._settled = None

    def wake(self) -> None:
        """Wake this core's idle workers (a process was started, input was queued)."""
        for event in self._wakers:
            event.set()

    def add_waker(self, event: asyncio.Event) -> None:
        self._wakers.add(event)

    def remove_waker(self, event: asyncio.Event) -> None:
        self._wakers.discard(event)

    def scoped(
        self, session_id: str | None, *, source: str, runtime: TurnRuntime | None = None
    ) -> SessionProcesses:
        """The processes of one session, as its tools, hooks and processes see them."""
        return SessionProcesses(ScopedProcesses(self, session_id, source, runtime), session_id)

    def __repr__(self) -> str:
        return f"<Processes of {self._core!r}>"


class ScopedProcesses:
    """The backend of a :class:`lash.SessionProcesses`: one session's processes. Inside an
    execution of ``runtime`` (a turn), starts join its commit."""

    def __init__(
        self,
        processes: Processes,
        session_id: str | None,
        source: str,
        runtime: TurnRuntime | None,
    ) -> None:
        self._processes = processes
        self._session_id = session_id
        self._source = source
        self._runtime = runtime

    async def start(self, kind: str, payload: Any, *, key: str | None) -> ProcessRecord:
        processes = self._processes
        draft = processes.draft(
            kind, payload, session_id=self._session_id, key=key, source=self._source
        )
        runtime = self._runtime
        if runtime is None or runtime.joinable() is None:
            return await processes.start_draft(draft)
        existing = await processes.existing(draft)
        if existing is not None:
            return existing
        for pending in runtime.pending_processes:
            if pending.id == draft.id:  # the same key twice in one turn
                if not same_process(new_process(pending, 0.0), draft):
                    raise InputConflict(draft.session_id or "-", key or "", draft.id, "process")
                return new_process(pending, time.time())
        runtime.pending_processes.append(draft)
        return new_process(draft, time.time())

    async def _own(self, process_id: str) -> ProcessRecord:
        record = await self._processes.get(process_id)
        if record is None or record.session_id != self._session_id:
            raise UnknownProcess(process_id)
        return record

    async def get(self, process_id: str) -> ProcessRecord | None:
        record = await self._processes.get(process_id)
        return record if record is not None and record.session_id == self._session_id else None

    async def list(self, *, kind: str | None, status: str | None) -> list[ProcessRecord]:
        found = await self._processes.list(session_id=self._session_id, kind=kind, status=status)
        # (the store reads session None as "any session": keep the host's own only)
        return [p for p in found if p.session_id == self._session_id]

    async def wait(self, process_id: str, *, timeout: float | None) -> ProcessRecord:
        await self._own(process_id)
        return await self._processes.wait(process_id, timeout=timeout)

    async def cancel(self, process_id: str, *, reason: str) -> ProcessRecord:
        await self._own(process_id)
        return await self._processes.cancel(process_id, reason=reason)
