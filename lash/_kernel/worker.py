"""The worker: what ``lash worker`` and ``core.run_worker()`` run.

A worker claims runnable processes of the kinds its core registered, under a claim of
``lease_ttl`` seconds renewed by a heartbeat every third of it (the heartbeat also reads
cancellation requests), runs each in a task, and records its terminal state in one commit
fenced by the claim's token: a worker whose claim was taken over (it stalled past its TTL) can
no longer finish the process, and drops it. Then it notifies (``process_finished``, the
session's wake-up input; :meth:`lash.Processes.notify`). It also sweeps the notification
outbox (processes whose finisher died before notifying) and, with ``sessions``, drains the
sessions that have queued input, so a finished process's result becomes a turn.

Idle, a worker makes one store query per ``poll`` seconds, :meth:`~lash.store.Store.poll_work`:
it claims a process, lists the sessions with queued input and (every ``lease_ttl / 2``, or 10
polls if that is longer) the notification outbox, in one call, so a dead peer's processes and
sessions are taken over within a poll of their lease's expiry. Work started or queued by its own
core wakes it at once. Busy with processes, it claims back to back and polls for sessions once
a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from lash._contract.processes import ProcessContext
from lash._contract.turn_types import ProcessRecord
from lash._contract.types import RecoveryDisposition
from lash._plugins.process_kinds import ProcessKind, process_data
from lash.errors import LashError, LeaseLost, SessionBusy

if TYPE_CHECKING:
    from lash._kernel.observation import SessionSnapshot
    from lash._kernel.processes import Processes
    from lash._kernel.session import Session
    from lash._store.protocol import Store

__all__ = ["run_worker"]

log = logging.getLogger("lash.worker")

_workers = itertools.count(1)

#: The longest a session whose drain failed is left alone (seconds) before the worker tries it
#: again. The first failure leaves it alone for a poll, each further one in a row twice as long
#: (1, 2, 4, 8, 16 polls, then this): most failures are a store's hiccup (a connection a
#: failover dropped), over at the next try, when a fixed 30 s kept the session's input waiting
#: half a minute; one that keeps failing (a session its plugins cannot open) is still tried
#: only twice a minute, each try logged.
DRAIN_BACKOFF_MAX = 30.0
#: Idle rounds (polls) at least between two sweeps of the notification outbox.
SWEEP_POLLS = 10


class WorkerCore(Protocol):
    """What a worker needs of its core (:class:`lash.LashCore` is one)."""

    @property
    def store(self) -> Store: ...

    @property
    def processes(self) -> Processes: ...

    @property
    def owner_id(self) -> str: ...

    def session(self, session_id: str) -> Session: ...

    def child_session(
        self,
        parent_id: str,
        *,
        id: str | None = None,
        tools: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        inherit: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> Session: ...

    async def current(self, session_id: str) -> SessionSnapshot: ...


def _check(name: str, value: Any, *, minimum: float, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value >= minimum:
        what = "an int" if integer else "a number"
        raise ValueError(f"run_worker: {name} must be {what} >= {minimum:g}, got {value!r}")


async def run_worker(
    core: WorkerCore,
    *,
    concurrency: int = 4,
    lease_ttl: float = 30.0,
    sessions: bool = True,
    once: bool = False,
    kinds: Sequence[str] | None = None,
    poll: float = 1.0,
    grace: float = 5.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Run background processes until cancelled or ``stop`` is set (``once``: until nothing
    is runnable).

    :param concurrency: processes (and session drains) run at once.
    :param lease_ttl: seconds a claim lasts; heartbeats renew it every third of that. A worker
        that dies is taken over once its claims expire.
    :param sessions: also drain sessions with queued input (finished processes queue theirs).
    :param once: run what is runnable now (claim until none is left, drain, repeat while that
        made new work), then return: for tests and cron jobs.
    :param kinds: the kinds to run (default: every kind the core's plugins registered).
    :param poll: seconds between two store queries while idle.
    :param grace: seconds a cancelled (or timed-out) run has to stop before it is recorded
        ``cancelled`` (``failed``) anyway.
    :param stop: set it to stop gracefully: no more work is taken, each running drain ends
        after the turn it runs commits (its session's other input stays queued), the process
        runs are cancelled as when the worker is (their claims expire; with ``once``, the runs
        it started finish), and the worker returns.
        Cancelling the worker instead cancels its turns too: each commits as
        ``stopped(cancelled)``, consuming its input, which a deploy must not do to a user's
        request.
    :raises ProcessError: an unknown kind in ``kinds``.
    """
    _check("concurrency", concurrency, minimum=1, integer=True)
    _check("lease_ttl", lease_ttl, minimum=0.1)
    _check("poll", poll, minimum=0.001)
    _check("grace", grace, minimum=0)
    registered = core.processes.kinds()
    names = list(registered) if kinds is None else list(kinds)
    for name in names:
        core.processes.kind(name)  # raises, naming an unknown kind
    worker = _Worker(
        core, {n: registered[n] for n in names}, concurrency, lease_ttl, sessions, poll, grace
    )
    watch = None
    if stop is not None:
        worker.stop_asked = stop
        # The worker waits on its wake-up: setting `stop` must wake it too.
        watch = asyncio.ensure_future(stop.wait())
        watch.add_done_callback(lambda _: worker.wake.freed())
    try:
        await (worker.once() if once else worker.forever())
    finally:
        if watch is not None:
            watch.cancel()


async def _waited(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; whether it was set. (Not ``asyncio.wait_for``: on
    Python 3.11 it swallows a cancellation that arrives as the event is set, and a worker must
    stop when cancelled.)"""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True


class _Wake(asyncio.Event):
    """A worker's wake-up. Set by its core (:meth:`Processes.wake`: a process was started,
    input was queued; ``asked_at`` says when) or by a run that ended (:meth:`freed`: a slot is
    free, so claim more, but sessions need no new look)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked_at = time.monotonic()  # the first round looks for sessions at once

    def set(self) -> None:
        self.asked_at = time.monotonic()
        super().set()

    def freed(self) -> None:
        super().set()


def _storable_text(text: str) -> str:
    """``text`` with NUL characters and lone surrogates escaped (``\\x00``, ``\\udcff``).

    An error the worker records is a message it wrote from what a run raised, which may quote
    anything (a subprocess's output decoded with ``surrogateescape``, binary data): written as
    is, a store whose text cannot hold those characters (Postgres) refuses the finish, and the
    process stays claimed until its claim expires, then counts as a worker that died. Escaped,
    the message reads the same on every store."""
    if "\0" not in text and text.isascii():
        return text
    return text.replace("\0", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


async def _run(kind: ProcessKind, context: ProcessContext, payload: Any) -> Any:
    return await kind.run(context, payload)


class _StopDraining(Exception):
    """Raised after a committed turn of a drain once the worker is asked to stop."""


class _Worker:
    def __init__(
        self,
        core: WorkerCore,
        kinds: dict[str, ProcessKind],
        concurrency: int,
        lease_ttl: float,
        sessions: bool,
        poll: float,
        grace: float,
    ) -> None:
        self.core = core
        self.store = core.store
        self.processes = core.processes
        self.kinds = kinds
        self.slots = concurrency
        self.ttl = lease_ttl
        self.sessions = sessions
        self.poll = poll
        self.grace = grace
        self.owner = f"{core.owner_id}/worker-{next(_workers)}"
        self.tasks: set[asyncio.Task[None]] = set()
        self.draining: set[str] = set()
        self.drains: set[asyncio.Task[None]] = set()  # the tasks of self.draining
        self.stop_asked: asyncio.Event | None = None
        #: session id -> until when it is left alone (monotonic), its drain having failed
        self.backoff: dict[str, float] = {}
        #: session id -> (failed drains in a row, until when left alone after the last)
        self.failures: dict[str, tuple[int, float]] = {}
        self.wake = _Wake()
        self.looked = -math.inf  # when runnable_sessions was last queried (monotonic)
        self.last_sweep = 0.0
        # Not more often than every SWEEP_POLLS idle rounds: a sweep takes a round's query,
        # and with a short lease against the poll it would take every round (never claiming).
        self.sweep_every = max(lease_ttl / 2, SWEEP_POLLS * poll)

    # -- loops -----------------------------------------------------------------------------------

    async def forever(self) -> None:
        self.processes.add_waker(self.wake)
        try:
            while not self.stopping():
                self.wake.clear()
                busy = False
                try:
                    busy = await self.round()
                except Exception as exc:  # the store is away for a moment: try again later
                    log.warning("lash: worker %s: store query failed: %s", self.owner, exc)
                if busy:
                    await asyncio.sleep(0)
                    if self.free():
                        continue
                await _waited(self.wake, self.poll)
            await self.wind_down()
        finally:
            self.processes.remove_waker(self.wake)
            await self.stop()

    async def round(self) -> bool:
        """One store query: a claim alone while busy with processes (back to back), else a
        poll of all the worker's work: claim, runnable sessions (when it serves them: once a
        poll, and when its core queued input) and, when due, the notification outbox. Whether
        anything was started."""
        now = time.monotonic()
        look = self.sessions and (
            self.looked <= self.wake.asked_at or now - self.looked >= self.poll
        )
        sweep = now - self.last_sweep >= self.sweep_every
        if not look and not sweep:
            return await self.claim_more()
        free = self.free()
        if look:
            self.looked = now
            self.forget_backoffs(now)
        work = await self.store.poll_work(
            self.owner,
            ttl=self.ttl,
            kinds=list(self.kinds),
            claim=bool(self.kinds) and free > 0,
            sessions=free + len(self.draining) + len(self.backoff) if look and free else 0,
            finished_before=time.time() - self.ttl if sweep else None,
        )
        if sweep:
            self.last_sweep = now
            await self.notify(work.unnotified)
        started = work.process is not None
        if work.process is not None:
            self.spawn(self.run(work.process))
        return await self.start_drains(work.sessions) or started

    async def once(self) -> None:
        try:
            while not self.stopping():
                await self.sweep()
                progressed = False
                while not self.stopping():
                    if not self.free():
                        await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)
                        continue
                    if not await self.claim_more():
                        break
                    progressed = True
                if self.sessions and not self.stopping():
                    progressed |= await self.drain_runnable(everything=True)
                if self.tasks:
                    await asyncio.wait(set(self.tasks))
                if not progressed:
                    return
            await self.wind_down()
        finally:
            await self.stop()

    def stopping(self) -> bool:
        """Whether the worker was asked to stop gracefully (``run_worker(stop=...)``)."""
        return self.stop_asked is not None and self.stop_asked.is_set()

    async def wind_down(self) -> None:
        """Stop gracefully: cancel the process runs (their claims expire, as when the worker is
        cancelled), and wait for the drains, each of which ends once its running turn has
        committed. A turn is the user's request: finished, it is answered; cancelled, it would
        be committed as stopped and its input consumed unanswered."""
        for task in self.tasks - self.drains:
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks))

    async def stop(self) -> None:
        """Cancel what still runs (a cancelled worker): its claims expire, and another worker
        takes over as each process's recovery disposition says."""
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks))

    def free(self) -> int:
        return self.slots - len(self.tasks)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            self.drains.discard(task)
            self.wake.freed()

        task.add_done_callback(done)
        return task

    # -- one query each --------------------------------------------------------------------------

    async def claim_more(self) -> bool:
        """Claim one runnable process (when a slot is free) and start it; whether one was."""
        if not self.kinds or not self.free():
            return False
        record = await self.store.claim_process(self.owner, ttl=self.ttl, kinds=list(self.kinds))
        if record is None:
            return False
        self.spawn(self.run(record))
        return True

    async def drain_runnable(self, *, everything: bool = False) -> bool:
        """Start draining sessions with queued input (as many as slots are free)."""
        free = self.free() if not everything else self.slots
        if free <= 0:
            return False
        now = self.looked = time.monotonic()
        self.forget_backoffs(now)
        limit = free + len(self.draining) + len(self.backoff)
        return await self.start_drains(await self.store.runnable_sessions(limit=limit), everything)

    def forget_backoffs(self, now: float) -> None:
        self.backoff = {sid: until for sid, until in self.backoff.items() if until > now}
        # (a session not tried again for long was drained elsewhere, or deleted: start afresh)
        if self.failures:
            oldest = now - DRAIN_BACKOFF_MAX
            self.failures = {s: f for s, f in self.failures.items() if f[1] > oldest}

    async def start_drains(self, runnable: Sequence[str], everything: bool = False) -> bool:
        """Start draining ``runnable`` sessions while slots are free (the limit asked of the
        store counted the sessions left alone for now, so they do not hide the others)."""
        now = time.monotonic()
        started = False
        for session_id in runnable:
            if session_id in self.draining or self.backoff.get(session_id, 0.0) > now:
                continue
            if not self.free():
                if not everything:
                    break
                await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED)
            self.draining.add(session_id)
            self.drains.add(self.spawn(self.drain(session_id)))
            started = True
        return started

    async def sweep(self) -> None:
        """Notify processes whose finisher died before notifying (finished over a TTL ago)."""
        self.last_sweep = time.monotonic()
        try:
            found = await self.store.unnotified_processes(finished_before=time.time() - self.ttl)
        except LashError as exc:
            log.warning("lash: worker %s: the notification sweep failed: %s", self.owner, exc)
            return
        await self.notify(found)

    async def notify(self, records: Sequence[ProcessRecord]) -> None:
        try:
            for record in records:
                await self.processes.notify(record)
        except LashError as exc:
            log.warning("lash: worker %s: the notification sweep failed: %s", self.owner, exc)

    # -- a session ---------------------------------------------------------------------------------

    async def drain(self, session_id: str) -> None:
        session = self.core.session(session_id)
        try:
            # A session another worker drains is left to it (no wait for its lease).
            await session.open(wait=0)
            # A stop that came while the drain started (a store query, the open) leaves its
            # first turn to the next worker, as after_turn leaves the others.
            if not self.stopping():
                await session.drain(on_result=self.after_turn)
        except (SessionBusy, _StopDraining):
            pass
        except Exception as exc:
            failed = self.failures.get(session_id, (0, 0.0))[0] + 1
            wait = min(DRAIN_BACKOFF_MAX, self.poll * 2 ** min(failed - 1, 30))
            log.error(
                "lash: worker %s: draining session %r failed (%d in a row; trying again in "
                "%.3g s): %s",
                self.owner,
                session_id,
                failed,
                wait,
                exc,
            )
            until = time.monotonic() + wait
            self.backoff[session_id] = until
            self.failures[session_id] = (failed, until)
        else:
            self.failures.pop(session_id, None)
        finally:
            self.draining.discard(session_id)
            with contextlib.suppress(Exception):
                await session.close()

    def after_turn(self, result: object) -> None:
        """After each committed turn of a drain: end the drain when the worker is stopping."""
        if self.stopping():
            raise _StopDraining

    # -- a process ---------------------------------------------------------------------------------

    async def run(self, record: ProcessRecord) -> None:
        try:
            await self._run(record)
        except Exception:
            log.exception(
                "lash: worker %s: process %s (%s) failed", self.owner, record.id, record.kind
            )

    async def _run(self, record: ProcessRecord) -> None:
        kind = self.kinds[record.kind]
        if record.cancel_requested is not None:  # asked to stop before this attempt began
            await self.finish(record, "cancelled", error=record.cancel_requested)
            return
        try:
            payload = kind.structured_payload(record.payload)
        except LashError as exc:
            await self.finish(record, "failed", error=str(exc))
            return
        poke = asyncio.Event()
        self.processes.running[record.id] = poke
        try:
            await self._supervise(record, kind, payload, poke)
        finally:
            self.processes.running.pop(record.id, None)

    async def _supervise(
        self, record: ProcessRecord, kind: ProcessKind, payload: Any, poke: asyncio.Event
    ) -> None:
        store = self.store
        token = record.token
        lost = False

        async def emit(progress: Any) -> None:
            nonlocal lost
            # (checked here, as the payload and result are: stores differ on what is not JSON,
            # and NaN they all kept, as text no other JSON reader takes)
            data = process_data(record.id, record.kind, "progress", progress)
            try:
                seen = await store.heartbeat_process(record.id, token, ttl=self.ttl, progress=data)
            except LeaseLost:
                lost = True
                raise asyncio.CancelledError(
                    f"process {record.id}: its claim was taken over"
                ) from None
            if seen.cancel_requested is not None:
                poke.set()

        snapshot = None
        if record.session_id is not None:
            with contextlib.suppress(LashError):
                snapshot = await self.core.current(record.session_id)
        context = ProcessContext(
            id=record.id,
            kind=record.kind,
            payload=payload,
            attempt=record.attempts,
            session_id=record.session_id,
            processes=self.processes.scoped(record.session_id, source=f"process:{record.id}"),
            session=snapshot,
            emit=emit,
            child=None if record.session_id is None else self.child_of(record.session_id),
        )
        loop = asyncio.get_running_loop()
        task: asyncio.Task[Any] = loop.create_task(_run(kind, context, payload))
        started = loop.time()
        deadline = started + kind.timeout if kind.timeout is not None else None
        beat = started + self.ttl / 3
        stop_by: float | None = None  # the end of a grace period
        reason: str | None = None  # why the run was stopped (cancellation, timeout)
        status = "cancelled"
        while not task.done() and not lost:
            now = loop.time()
            until = min(t for t in (beat, deadline, stop_by) if t is not None)
            poked = loop.create_task(poke.wait())
            try:
                await asyncio.wait(
                    {task, poked},
                    timeout=max(0.0, until - now),
                    return_when=asyncio.FIRST_COMPLETED,
                )
            except asyncio.CancelledError:
                # The worker stops: so does the run (its claim expires; another worker takes
                # the process over as its disposition says).
                context.cancelled.set()
                task.cancel()
                raise
            finally:
                poked.cancel()
            if task.done():
                break
            now = loop.time()
            if stop_by is not None and now >= stop_by:
                break  # it ignored the cancellation: settled anyway
            if deadline is not None and now >= deadline and reason is None:
                reason, status = f"timed out after {kind.timeout:g} s", "failed"
                context.cancelled.set()
                task.cancel()
                stop_by = now + self.grace
            if now >= beat or poke.is_set():
                poke.clear()
                beat = now + self.ttl / 3
                try:
                    seen = await store.heartbeat_process(record.id, token, ttl=self.ttl)
                except LeaseLost:
                    lost = True
                    break
                except Exception as exc:  # a store hiccup: the next beat tries again
                    log.warning("lash: heartbeat of process %s failed: %s", record.id, exc)
                    continue
                if seen.cancel_requested is not None and reason is None:
                    reason, status = seen.cancel_requested, "cancelled"
                    context.cancelled.set()
                    task.cancel()
                    stop_by = now + self.grace
        if not task.done():
            task.cancel()
            # It may never end: its outcome is no longer read, but must not warn when it does.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        if lost:
            log.warning(
                "lash: worker %s lost its claim on process %s; left to its new owner",
                self.owner,
                record.id,
            )
            return
        if reason is not None:
            await self.finish(record, status, error=reason)
            return
        if task.cancelled():
            await self.finish(record, "cancelled", error="the run was cancelled")
            return
        failure = task.exception()
        if failure is not None:
            if isinstance(failure, LeaseLost):
                return
            await self.finish(record, "failed", error=f"{type(failure).__name__}: {failure}")
            return
        try:
            result = kind.result_data(task.result())
        except Exception as exc:
            await self.finish(record, "failed", error=f"its result cannot be stored as JSON: {exc}")
            return
        if kind.recovery is RecoveryDisposition.EXTERNALLY_OWNED:
            # Handed over: it stays running, without a claim, until its owner completes it.
            with contextlib.suppress(LeaseLost):
                await store.park_process(record.id, token)
            return
        await self.finish(record, "succeeded", result=result)

    def child_of(self, session_id: str) -> Any:
        """What ``context.child(...)`` calls: a child session of ``session_id``, from the
        stored parent (the worker holds no handle on it)."""

        def child(**spec: Any) -> Session:
            return self.core.child_session(session_id, **spec)

        return child

    async def finish(
        self, record: ProcessRecord, status: str, *, result: Any = None, error: str | None = None
    ) -> None:
        """Record the terminal state (fenced by the claim's token), then notify (when there is
        anything to notify: otherwise the record is settled notified, in the same write)."""
        if error is not None:
            error = _storable_text(error)
        quiet = self.processes.quiet(record)
        try:
            for attempt in itertools.count(1):
                try:
                    settled = await self.store.finish_process(
                        record.id,
                        record.token,
                        status=status,
                        result=result,
                        error=error,
                        notified=quiet,
                    )
                    break
                except LeaseLost:
                    raise
                except Exception as exc:
                    # A store hiccup: retry while the claim lasts (after it, the process is
                    # another worker's, and its disposition decides).
                    if attempt * 0.5 >= self.ttl / 2:
                        raise
                    log.warning("lash: finishing process %s failed (retrying): %s", record.id, exc)
                    await asyncio.sleep(0.5)
        except LeaseLost:
            log.warning(
                "lash: worker %s lost its claim on process %s before finishing it",
                self.owner,
                record.id,
            )
            return
        if quiet:
            self.processes.settled()
            return
        await self.processes.notify(settled)
