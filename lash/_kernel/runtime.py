"""The machinery behind one :class:`lash.Session` handle.

A :class:`SessionRuntime` holds the session's image (:mod:`lash._kernel.image`), its lock, and
the changes pending since the last commit. It runs every operation as an :class:`Execution`
(:meth:`SessionRuntime.execute`) that claims the session's **lease for its duration only**
(opening takes none, an idle session writes nothing), reloads a stale image before any work,
applies queued session commands, and commits (:meth:`SessionRuntime.commit`, releasing the
lease in the same transaction). It is the backend the session's :class:`lash.SessionView`
forwards to. The turn, the operations and the host-facing :class:`lash.Session` use this small
interface; none of them reaches into another's private members.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import json
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs

from lash._contract.calls import CALLER
from lash._contract.events import PluginEvent
from lash._contract.graph import FrameBoundary, GraphNode, PluginNode, new_node_id
from lash._contract.providers import (
    ModelDone,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    collect_response,
    usage_counts,
)
from lash._contract.serialization import describe_value, to_data
from lash._contract.services import SessionView
from lash._contract.turn_types import AgentFrame, Message, SessionConfig, ToolCatalogEntry
from lash._contract.types import NO_USAGE, Usage
from lash._kernel import children
from lash._kernel.image import SessionImage
from lash._kernel.liveness import provably_dead
from lash._kernel.prompt_cache import PromptCache
from lash._store.records import (
    EventDraft,
    InputDraft,
    Lease,
    ProcessDraft,
    QueuedCommand,
    SessionRecord,
    TurnRecord,
)
from lash.errors import LashError, RevisionConflict, SessionBusy, SessionError

if TYPE_CHECKING:
    from lash._contract.providers import Provider
    from lash._kernel.processes import Processes
    from lash._plugins.composition import Composition
    from lash._store.protocol import Store

T = TypeVar("T")

log = logging.getLogger("lash")

_handles = itertools.count(1)


class KernelCore(Protocol):
    """What a session runtime needs of the core that made it (:class:`lash.LashCore` is one)."""

    @property
    def composition(self) -> Composition: ...

    @property
    def store(self) -> Store: ...

    @property
    def lease_ttl(self) -> float: ...

    @property
    def lease_wait(self) -> float: ...

    @property
    def control_poll(self) -> float: ...

    @property
    def input_poll(self) -> float: ...

    @property
    def owner_id(self) -> str: ...

    @property
    def processes(self) -> Processes: ...

    def notify(
        self, session_id: str, live: Sequence[EventDraft] = (), *, input: bool = False
    ) -> None: ...

    def observed(self, session_id: str) -> bool: ...

    def rolled_up(self, rollup: Mapping[str, Mapping[str, Usage]]) -> None: ...

    # A child session handle (``LashCore.child_session``; typed loosely: it returns a Session,
    # which this module cannot import).
    @property
    def child_session(self) -> Callable[..., Any]: ...

    async def enqueue_command(
        self,
        session_id: str,
        name: str,
        *,
        key: str,
        args: Mapping[str, Any] | None = None,
        source: str = "host",
    ) -> QueuedCommand: ...


class Stoppable(Protocol):
    """A running turn, as the runtime tracks it (``cancel_running_turns``)."""

    def cancel(self) -> None: ...


# -- executions ---------------------------------------------------------------------------------
#
# An Execution is one operation holding a session: a turn, or a change that commits
# (``configure``, ``compact``, a tool-membership change, a command...), or an open. While it runs,
# plugins change the session through their lash.SessionView (nodes recorded, usage of direct
# completions, catalog membership, plugin state); the runtime keeps those changes pending until
# the next commit takes all of them, atomically, with the operation's own. An operation may
# commit more than once (a turn, then the compaction its Compact directive asked for); what is
# still pending when it ends is committed then (an open is the exception: opening writes
# nothing, so changes made while opening wait for the session's next commit).
#
# EXECUTION says which execution the running code belongs to. Session services use it to join
# the running operation instead of waiting for the session (which would wait for themselves),
# and the host API uses it to refuse a re-entrant operation with an error instead of a deadlock.


class Execution:
    """One operation holding a session (see the module docstring)."""

    __slots__ = ("done", "name", "on_event", "outer", "runtime", "turn")

    def __init__(
        self,
        runtime: SessionRuntime,
        name: str,
        *,
        turn: int | None = None,
        outer: Execution | None = None,
    ) -> None:
        self.runtime = runtime
        #: The execution whose code started this one: a hook of session A running a turn of
        #: session B (a sub-agent) is still inside A's turn, and so is every hook of B's turn.
        self.outer = outer
        #: What the operation is (``"turn"``, ``"configure"``...), for error messages.
        self.name = name
        #: The index of the turn this execution runs (``None``: not a turn).
        self.turn = turn
        self.done = False
        #: Where events of the operation go as they happen (a turn's stream), if anywhere.
        self.on_event: Callable[[Any], None] | None = None


#: The execution the running code belongs to (inherited by the tasks it starts).
EXECUTION: contextvars.ContextVar[Execution | None] = contextvars.ContextVar(
    "lash_execution", default=None
)


async def through_cancellation(commit: Coroutine[Any, Any, int]) -> tuple[int, bool]:
    """Await a store's commit to its end, even when the caller is cancelled meanwhile; return
    the revision and whether a cancellation arrived.

    A commit on its way may be durable already (SQLite runs what it was sent), and the
    session's memory must say what the store holds. So a cancellation that arrives during the
    commit waits for it: if the commit failed, the cancellation is raised at once (nothing was
    committed; the caller drops its changes); if it succeeded, the caller records the commit
    and the operation raises the cancellation when it ends (:meth:`SessionRuntime.execute`).
    """
    task = asyncio.ensure_future(commit)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait((task,))  # cancelled, it leaves the task running
        except asyncio.CancelledError:
            cancelled = True
    if cancelled and (task.cancelled() or task.exception() is not None):
        raise asyncio.CancelledError  # the caller's: the commit failed, nothing was committed
    return task.result(), cancelled


class Executing:
    """``async with runtime.execute(...) as ex:`` (:meth:`SessionRuntime.execute`). A class
    rather than a generator-based context manager: every turn enters one, and an async
    generator with its finalizer hook costs a turn ~3 us more."""

    __slots__ = (
        "commit_at_exit",
        "events",
        "ex",
        "lease",
        "name",
        "needs_open",
        "reuse",
        "runtime",
        "token",
        "turn",
        "turn_id",
    )

    def __init__(
        self,
        runtime: SessionRuntime,
        name: str,
        turn: int | None,
        turn_id: str | None,
        commit_at_exit: bool,
        needs_open: bool,
        lease: bool,
        events: Sequence[EventDraft],
        reuse: bool,
    ) -> None:
        self.runtime, self.name, self.turn, self.turn_id = runtime, name, turn, turn_id
        self.commit_at_exit, self.needs_open, self.lease = commit_at_exit, needs_open, lease
        self.events, self.reuse = events, reuse

    async def __aenter__(self) -> Execution:
        runtime = self.runtime
        runtime.refuse_reentry(self.name)
        await runtime.lock.acquire()
        try:
            ex = self.ex = Execution(runtime, self.name, turn=self.turn, outer=EXECUTION.get())
            self.token = EXECUTION.set(ex)
        except BaseException:
            runtime.unlock()
            raise
        try:
            if self.needs_open:
                runtime.require_open()
            if self.lease:
                if self.reuse and runtime.holds_lease() and runtime.image.kernel.awaiting is None:
                    # In a hold, under its lease: no claim, so the events the claim would
                    # have written (turn_started) are committed with the execution.
                    if self.events:
                        runtime.pending_events.extend(self.events)
                    runtime.commands_applied = 0
                    # Its first renewal, at its first poll, takes the lease again naming it, so
                    # that another process's cancel_turn finds it from then on.
                    runtime.naming = self.turn_id
                    runtime._renew_later(0.0)
                else:
                    await runtime.claim(turn_id=self.turn_id, events=self.events)
                    runtime._renew_later()
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return ex

    async def __aexit__(
        self, kind: object, failure: BaseException | None, traceback: object
    ) -> None:
        """End the execution: commit what is pending (unless it failed), stop renewing, release
        a lease still held, let go of the session; raise a cancellation that arrived while a
        commit was on its way, once the commit is recorded. (No coroutine of its own for this:
        one per execution.)"""
        runtime = self.runtime
        failed = failure is not None
        try:
            try:
                if not failed and self.commit_at_exit and runtime.has_pending:
                    await runtime.commit()
            except BaseException:
                failed = True
                raise
            finally:
                if failed and runtime.has_pending:
                    # Uncommitted changes of a failed operation: dropped, and the image is
                    # reloaded before the next one (it may hold some of them).
                    runtime.image.stale = True
                    runtime._clear_pending()
        finally:
            self.ex.done = True
            # A stream abandoned without closing is finalized in another task's context, where
            # the variable was never set: nothing to undo there (and `done` makes the execution
            # unjoinable wherever it is still seen). (try, not contextlib.suppress: three calls
            # fewer a turn.)
            try:
                EXECUTION.reset(self.token)
            except ValueError:
                pass
            try:
                renewing = runtime._stop_timer()
                if renewing is not None:
                    await runtime._stop_renewal(renewing)
                if runtime.lease is not None and (failed or runtime.held_until is None):
                    # (A hold keeps its lease for the next execution, unless this one failed:
                    # the next then claims the session again, reloading what it must.)
                    await runtime._release_quietly()
            finally:
                cancelled, runtime.cancel_after_commit = runtime.cancel_after_commit, False
                runtime.unlock()
        if cancelled and not failed:
            raise asyncio.CancelledError


async def _counted(name: str, events: AsyncIterator[ModelEvent]) -> AsyncIterator[ModelEvent]:
    """``events`` with each :class:`lash.ModelDone`'s usage checked as a turn's model call
    checks it (:func:`usage_counts`), before they are added up: a sum can hide a bad count
    (``Usage.__add__`` of counts that are all falsy, ``None`` or ``False``, adds nothing)."""
    async for event in events:
        if isinstance(event, ModelDone):
            event = attrs.evolve(event, usage=usage_counts(name, event.usage))
        yield event


class SessionRuntime:
    """One session handle's image, lock and pending changes (see the module docstring)."""

    # Slots: a host keeps thousands of idle sessions open, and with ~40 attributes the instance
    # dictionary alone was ~1.6 KiB of each (issue 17: <= 5 KiB per idle session).
    __slots__ = (
        "_apply_commands",
        "_blobs",
        "_handle",
        "_lock",
        "_pending_applied",
        "_pending_claimed",
        "_pending_enqueue",
        "_pending_events",
        "_pending_nodes",
        "_pending_processes",
        "_pending_usage",
        "_renewal",
        "_renewing",
        "_running",
        "cancel_after_commit",
        "child_spec",
        "commands_applied",
        "composition",
        "core",
        "dirty",
        "held_until",
        "id",
        "image",
        "incarnation",
        "input_hint",
        "last_catalog",
        "lease",
        "lineage",
        "naming",
        "on_poll_due",
        "on_wait",
        "opened",
        "overrides",
        "parent_id",
        "poll_passed",
        "prompt_cache",
        "view",
        "wait",
    )

    def __init__(
        self,
        core: KernelCore,
        session_id: str,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        child: children.ChildSpec | None = None,
        apply_commands: Callable[[SessionRuntime], Awaitable[int]] | None = None,
    ) -> None:
        self.core = core
        # How an execution applies the session's queued commands (the operations layer, above
        # this one, provides it).
        self._apply_commands = apply_commands
        self.composition = core.composition
        self.id = session_id
        #: What the creator of a child session asked for (``None``: opened as itself).
        self.child_spec = child
        #: The parent of a child session (from the spec, then from the stored head).
        self.parent_id: str | None = child.parent_id if child is not None else None
        #: The ancestors of a child session, root first (whose usage totals its commits add to).
        self.lineage: tuple[str, ...] = ()
        #: The stored session's incarnation (``None`` before its first commit, as loaded).
        self.incarnation: int | None = None
        self.overrides = {k: dict(v) for k, v in (options or {}).items()}
        self.image = SessionImage(session_id)
        # One execution at a time: `lock`, made when an execution first needs it (`unlock`).
        self._lock: asyncio.Lock | None = None
        #: The lease of the running execution (``None`` between executions), or of the
        #: handle's hold (:meth:`lash.Session.hold`) while it lasts.
        self.lease: Lease | None = None
        #: ``None`` outside a hold; in one, the ``time.monotonic()`` until which the held lease
        #: is certainly live (half its TTL after the request that took or renewed it was sent):
        #: a turn started before then runs under it without claiming the session again.
        self.held_until: float | None = None
        #: The id of a turn running in a hold that its lease does not name yet (its first
        #: renewal takes the lease again naming it: :meth:`renew`).
        self.naming: str | None = None
        self.opened = False
        #: Seconds an execution waits for the lease (``None``: the core's ``lease_wait``).
        self.wait: float | None = None
        #: Called with the SessionBusy an execution meets before it starts waiting (open()'s
        #: ``on_wait``: a command line tells its user why nothing happens yet).
        self.on_wait: Callable[[SessionBusy], object] | None = None
        # A lease owner per handle (`owner`): two handles on one session never share a lease.
        self._handle = next(_handles)
        #: What plugins and tools see of the session.
        self.view = SessionView(self)
        # Image bytes by sha256, loaded for model calls: `blobs`, made on first use.
        self._blobs: dict[str, bytes] | None = None
        # Turns running (or waiting for the session) now: `running`, made on first use.
        self._running: set[Stoppable] | None = None
        #: The tools offered at the last model call (a call of any other tool is refused).
        self.last_catalog: tuple[str, ...] = ()
        #: Prompt parts only this handle's state decides, reused while it is unchanged.
        self.prompt_cache = PromptCache()
        #: Input was queued for this session in this process since a running turn last read
        #: the store (its next checkpoint reads it at once).
        self.input_hint = False
        #: How many queued commands the running execution applied when it claimed the session.
        self.commands_applied = 0
        # The running execution's timer: the poll clock it is armed in until its first poll,
        # then its own timer for each lease renewal (see _renew_later).
        self._renewal: asyncio.TimerHandle | _PollClock | None = None
        #: Called once when the running execution's first poll is due (``control_poll`` seconds
        #: after it claimed the session): a turn that lasts starts its keeper then.
        self.on_poll_due: Callable[[], object] | None = None
        #: The running execution's first poll is past due (what registers late starts at once).
        self.poll_passed = False
        self._renewing: asyncio.Task[None] | None = None
        self._clear_pending()
        # A cancellation that arrived while a commit was on its way (see through_cancellation).
        self.cancel_after_commit = False

    def _clear_pending(self) -> None:
        # Changes since the last commit that the image cannot diff: each list (or dict) is made
        # when something is first added to it (the `pending_*` properties), so an idle session
        # holds none of them (seven empty containers were ~450 bytes of each).
        self._pending_nodes: list[GraphNode] | None = None
        self._pending_usage: dict[str, Usage] | None = None
        self._pending_claimed: list[str] | None = None
        self._pending_applied: list[str] | None = None
        self._pending_enqueue: list[InputDraft] | None = None
        self._pending_events: list[EventDraft] | None = None
        # Processes started by the running execution (its tools and hooks): its commit writes
        # them, so an execution that does not commit starts nothing.
        self._pending_processes: list[ProcessDraft] | None = None
        self.dirty = False

    @property
    def pending_nodes(self) -> list[GraphNode]:
        """Nodes added since the last commit."""
        if self._pending_nodes is None:
            self._pending_nodes = []
        return self._pending_nodes

    @property
    def pending_usage(self) -> dict[str, Usage]:
        """Token usage by source since the last commit."""
        if self._pending_usage is None:
            self._pending_usage = {}
        return self._pending_usage

    @property
    def pending_claimed(self) -> list[str]:
        """Ids of queued input the running execution claimed."""
        if self._pending_claimed is None:
            self._pending_claimed = []
        return self._pending_claimed

    @property
    def pending_applied(self) -> list[str]:
        """Ids of queued commands the running execution applied."""
        if self._pending_applied is None:
            self._pending_applied = []
        return self._pending_applied

    @property
    def pending_enqueue(self) -> list[InputDraft]:
        """Input the running execution queues (for this session or others)."""
        if self._pending_enqueue is None:
            self._pending_enqueue = []
        return self._pending_enqueue

    @property
    def pending_events(self) -> list[EventDraft]:
        """Events the running execution's commit records."""
        if self._pending_events is None:
            self._pending_events = []
        return self._pending_events

    @property
    def pending_processes(self) -> list[ProcessDraft]:
        """Processes the running execution started (written by its commit)."""
        if self._pending_processes is None:
            self._pending_processes = []
        return self._pending_processes

    @property
    def lock(self) -> asyncio.Lock:
        """The lock an execution holds (one at a time, first come first served); made when
        needed."""
        lock = self._lock
        if lock is None:
            lock = self._lock = asyncio.Lock()
        return lock

    def unlock(self) -> None:
        """Release :attr:`lock`; it goes with the last execution (an idle session holds no
        lock: ~150 bytes of each). Dropped only when no task holds it or waits for it: a waiter
        stays in ``_waiters`` until it has the lock, also once woken, so no task can still be
        about to take a dropped lock while a new one is made. Where that private list cannot
        be read, the lock is kept."""
        lock = self.lock
        lock.release()
        if not lock.locked() and not getattr(lock, "_waiters", True):
            self._lock = None

    @property
    def owner(self) -> str:
        """This handle's lease owner: the core's owner id and the handle's number (made when
        asked, once per execution, rather than kept: one string less per open session)."""
        return f"{self.core.owner_id}/{self._handle}"

    @property
    def blobs(self) -> dict[str, bytes]:
        """Image bytes by sha256, loaded for model calls (lash._kernel.media); made on first
        use (a session without images holds no dict)."""
        if self._blobs is None:
            self._blobs = {}
        return self._blobs

    @property
    def running(self) -> set[Stoppable]:
        """Turns running (or waiting for the session) now: cancel_running_turns. The set is
        made when a turn first uses it, and dropped when the last turn leaves it: an idle
        session holds no empty set (216 bytes)."""
        running = self._running
        if running is None:
            running = self._running = set()
        return running

    def leave_running(self, turn: Stoppable) -> None:
        """``turn`` ended: no longer among :attr:`running` (whose set goes once empty)."""
        running = self._running
        if running is not None:
            running.discard(turn)
            if not running:
                self._running = None

    # -- the session services backend (what SessionView forwards to) --------------------------

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    @property
    def config(self) -> SessionConfig:
        return self.image.config

    @property
    def revision(self) -> int:
        return self.image.revision

    @property
    def turns(self) -> int:
        return self.image.turns

    def active_nodes(self) -> Sequence[GraphNode]:
        return self.image.graph.nodes

    def options_of(self, cls: type[T]) -> T:
        plugin = self.composition.options_owner(cls)
        try:
            return self.image.options[plugin]  # type: ignore[no-any-return]
        except KeyError:
            raise self._not_open("options are validated at open") from None

    def state_of(self, cls: type[T]) -> T:
        plugin = self.composition.state_owner(cls)
        try:
            return self.image.states[plugin]  # type: ignore[no-any-return]
        except KeyError:
            raise self._not_open("state is restored at open") from None

    def catalog(self) -> tuple[ToolCatalogEntry, ...]:
        return self.image.kernel.entries(self.composition.available_tools())

    async def list_sources_for(self, names: Mapping[str, bool] | Sequence[str]) -> None:
        """List the tool sources when ``names`` has a tool not known yet (a source's, maybe)."""
        if not set(names) <= set(self.composition.available_tools()):
            await self.composition.list_tool_sources()

    async def set_tool_membership(self, changes: Mapping[str, bool]) -> int:
        check_membership(self.id, changes)
        await self.list_sources_for(changes)
        joined = self.joinable()
        if joined is not None:
            return self.change_membership(changes)
        async with self.execute("set_tool_membership"):
            return self.change_membership(changes)

    def change_membership(self, changes: Mapping[str, bool]) -> int:
        """Apply membership changes to the image (committed with the running operation)."""
        self.require_open()
        kernel = self.image.kernel
        known = set(self.composition.available_tools()) | set(kernel.tool_plugins)
        try:
            changed = kernel.set_members(changes, known)
        except KeyError as exc:
            raise SessionError(
                f"session {self.id!r}: unknown tool(s) {exc.args[0]}", session_id=self.id
            ) from None
        except PermissionError as exc:
            raise SessionError(
                f"session {self.id!r}: tool(s) {exc.args[0]} are outside the child session's "
                f"tool allowlist {kernel.allowed}",
                session_id=self.id,
            ) from None
        self.dirty |= changed
        return kernel.generation

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        source: str,
        model: str | None,
        options: Mapping[str, Any] | None,
    ) -> ModelResponse:
        self.require_open()
        self._check_completion(messages, source, model, options)
        name, provider, default_model = self.provider()
        request = ModelRequest(
            model=model or default_model, messages=tuple(messages), options=dict(options or {})
        )
        response = await collect_response(_counted(name, provider.stream(request)))
        if self.joinable() is not None:
            self.add_usage(source, response.usage)
        else:
            async with self.execute("complete"):
                self.add_usage(source, response.usage)
        return response

    def _check_completion(self, messages: Any, source: Any, model: Any, options: Any) -> None:
        """``complete()``'s arguments, checked before the provider is called: before, a string
        went to the provider as its messages, and a source that is not a name was committed
        as the usage's (failing the commit on a store that checks it).

        :raises SessionError: naming the session and the argument."""
        problem = None
        if not isinstance(messages, list | tuple):
            problem = f"messages must be a list of lash.Message, got {describe_value(messages)}"
        elif not messages:
            problem = "messages is empty: a completion needs at least one lash.Message"
        else:
            for index, message in enumerate(messages):
                if not isinstance(message, Message):
                    problem = (
                        f"messages[{index}] must be a lash.Message, got {describe_value(message)}"
                    )
                    break
        if problem is None and (not isinstance(source, str) or not source.strip()):
            problem = f"source must be a non-empty string (a usage source), got {source!r}"
        if problem is None and model is not None and not isinstance(model, str):
            problem = f"model must be a string or None, got {describe_value(model)}"
        if problem is None and options is not None and not isinstance(options, Mapping):
            problem = f"options must be a mapping or None, got {describe_value(options)}"
        if problem is not None:
            raise SessionError(f"session {self.id!r}: complete(): {problem}", session_id=self.id)

    def _plugin_of_caller(self, what: str) -> str:
        caller = CALLER.get()
        if caller is None or caller.plugin is None:
            raise SessionError(
                f"session {self.id!r}: {what}() is attributed to the calling plugin, so it must "
                "be called from a hook or a tool",
                session_id=self.id,
            )
        return caller.plugin

    def _storable(self, plugin: str, what: str, data: Any) -> None:
        try:
            # Refused now, not at the commit: unstorable data would fail the whole commit.
            # to_data alone passes unknown objects through; JSON is what stores keep. NaN and
            # the infinities are not JSON: the stores kept them as Python writes them, and
            # every JSON reader of the session (lash serve's clients) then refused it.
            json.dumps(to_data(data), allow_nan=False)
        except Exception as exc:
            raise SessionError(
                f"session {self.id!r}: plugin {plugin!r} {what} data that cannot be stored as "
                f"JSON: {exc}",
                session_id=self.id,
            ) from None

    async def record(self, kind: str, data: Any) -> PluginNode:
        plugin = self._plugin_of_caller("record")
        if not isinstance(kind, str) or not kind:
            raise SessionError(
                f"session {self.id!r}: record() needs a non-empty kind, got {kind!r}",
                session_id=self.id,
            )
        self._storable(plugin, "recorded", data)
        joined = self.joinable()
        if joined is not None:
            return self.add_plugin_node(joined, plugin, kind, data)
        async with self.execute("record") as own:
            return self.add_plugin_node(own, plugin, kind, data)

    def add_plugin_node(self, ex: Execution, plugin: str, kind: str, data: Any) -> PluginNode:
        self.require_open()
        graph = self.image.graph
        leaf = graph.leaf
        node = PluginNode(
            id=new_node_id(),
            parent_id=leaf.id if leaf is not None else None,
            frame_id=graph.frame_id or "",
            turn=ex.turn if ex.turn is not None else self.image.turns,
            plugin=plugin,
            kind=kind,
            data=data,
        )
        self.add_node(node)
        return node

    async def emit(self, type: str, data: Any) -> None:
        plugin = self._plugin_of_caller("emit")
        self.emit_as(plugin, type, data)
        if self.joinable() is None:
            async with self.execute("emit"):
                pass  # the event commits on its own

    def emit_as(self, plugin: str, type: str, data: Any) -> None:
        """Log a plugin event with the running operation's commit (and show it live now)."""
        if not isinstance(type, str) or not type:
            raise SessionError(
                f"session {self.id!r}: plugin {plugin!r} emitted an event without a type",
                session_id=self.id,
            )
        self._storable(plugin, "emitted", data)
        event = EventDraft("plugin_event", {"plugin": plugin, "type": type, "data": to_data(data)})
        self.pending_events.append(event)
        self.core.notify(self.id, live=[event])
        ex = self.joinable()
        if ex is not None and ex.on_event is not None:
            ex.on_event(PluginEvent(plugin, type, event.data["data"]))

    def usage_report(self) -> dict[str, Any]:
        return self.image.usage_report()

    def child(self, **spec: Any) -> Any:
        """A handle on a new (or existing) child session of this one (the arguments of
        :meth:`lash.SessionView.child`): it inherits this handle's configuration and per-handle
        options as they are in memory."""
        return self.core.child_session(self.id, parent=self, **spec)

    # -- pending changes and the commit --------------------------------------------------------

    def add_node(self, node: GraphNode) -> None:
        """Append ``node`` to the graph; it is committed with the next commit."""
        self.image.graph.append(node)
        pending = self._pending_nodes  # (pending_nodes, without its call: six times a turn)
        if pending is None:
            pending = self._pending_nodes = []
        pending.append(node)

    def add_usage(self, source: str, usage: Usage) -> None:
        self.pending_usage[source] = self.pending_usage.get(source, NO_USAGE) + usage

    @property
    def has_pending(self) -> bool:
        return bool(
            self._pending_nodes
            or self._pending_usage
            or self.dirty
            or self._pending_claimed
            or self._pending_applied
            or self._pending_enqueue
            or self._pending_events
            or self._pending_processes
        )

    async def commit(
        self, *, turns: int = 0, turn: TurnRecord | None = None, shield: bool = True
    ) -> int:
        """One atomic commit of everything that changed since the last one, releasing the
        execution's lease in the same transaction (a later commit of the same execution takes
        the lease again), unless the handle holds it (:meth:`lash.Session.hold`).

        The store's commit runs to its end even when the calling task is cancelled meanwhile
        (:func:`through_cancellation`, which costs a task). ``shield=False`` is for a caller
        whose task nothing cancels while it commits: a turn's own runner task, which
        :meth:`lash.Turn.cancel` interrupts only in its interruptible phases."""
        self.require_open()
        renewing = self._stop_timer()  # the commit releases the lease
        if renewing is not None:
            await self._stop_renewal(renewing)
        if self.lease is None:
            await self._reclaim()  # a commit after the execution's first (it released the lease)
        lease = self.lease
        assert lease is not None
        image = self.image
        # (The pending containers read as they are: most are None, never made, in most commits.)
        nodes = self._pending_nodes or ()
        usage = self._pending_usage or {}
        frames = _frames(nodes)
        events = tuple(self._pending_events or ())
        delta = image.delta(
            nodes,
            usage,
            turns,
            self.composition,
            claimed=tuple(self._pending_claimed or ()),
            applied=tuple(self._pending_applied or ()),
            enqueue=tuple(self._pending_enqueue or ()),
            turn=turn,
            events=(*events, *map(_frame_opened_event, frames)) if frames else events,
            processes=tuple(self._pending_processes or ()),
            parent_id=self.parent_id,
            rollup=children.rollup(self.lineage, self.id, usage) if self.lineage else {},
            release=self.held_until is None,
        )
        store = self.core.store
        try:
            commit = store.commit(
                self.id, lease=lease, expected_revision=image.revision, delta=delta
            )
            if shield:
                revision, cancelled = await through_cancellation(commit)
            else:
                revision, cancelled = await commit, False
        except BaseException:
            # The pending changes are in memory, not in the store; a LeaseLost or
            # RevisionConflict means another writer committed: either way, reload first next
            # time (the lease was not released: it is left to expire, or to the next claim).
            image.stale = True
            self.lease = None
            self._clear_pending()  # not stored, and made on a view that is no longer the head
            raise
        # Only after the store accepted the commit does the in-memory head move.
        if delta.release:
            self.lease = None
        elif self.joinable() is not None:
            # The execution goes on under the held lease (turn_persisted, compaction): renewed
            # once it is a third of a TTL old, as a lease claimed for the execution would be.
            assert self.held_until is not None
            ttl = self.core.lease_ttl
            self._renew_later(self.held_until - ttl / 6 - time.monotonic())
        image.committed(delta, revision)
        self._clear_pending()
        self.cancel_after_commit |= cancelled
        if delta.rollup:
            self.core.rolled_up(delta.rollup)
        # Work for workers (processes started, input queued) wakes this core's idle ones.
        self.core.notify(self.id, input=bool(delta.processes or delta.enqueue))
        if frames:
            await self._frames_opened(frames)
        return revision

    async def _frames_opened(self, frames: Sequence[FrameBoundary]) -> None:
        """Broadcast ``frame_opened`` for every frame a commit opened (:func:`_frames`)."""
        for node in frames:
            frame = AgentFrame(
                id=node.frame_id, parent_id=node.previous_frame_id, reason=node.reason
            )
            await self.composition.hooks.broadcast("frame_opened", session=self.view, frame=frame)

    # -- executions ----------------------------------------------------------------------------

    def joinable(self) -> Execution | None:
        """The running execution of this handle the calling code belongs to, if any."""
        ex = EXECUTION.get()
        while ex is not None:
            if ex.runtime is self and not ex.done:
                return ex
            ex = ex.outer
        return None

    def refuse_reentry(self, operation: str) -> None:
        """Raise a :class:`lash.SessionError` when called from plugin code (or code it started)
        inside an operation of this same session: waiting for the session there would wait for
        the very operation that runs the caller."""
        ex = EXECUTION.get()
        # Outer executions too: code of session B's turn that runs inside a hook of session A's
        # turn would wait for A just the same.
        while ex is not None and (
            ex.done or ex.runtime.id != self.id or ex.runtime.core is not self.core
        ):
            ex = ex.outer
        if ex is None:
            return
        caller = CALLER.get()
        where = f" from {caller.describe()}" if caller is not None else ""
        raise SessionError(
            f"session {self.id!r}: {operation}() called{where} while the session's "
            f"{ex.name} is running; a hook or tool cannot run an operation of its own session "
            "(it would wait for itself). Use the lash.SessionView it was given: "
            "set_tool_membership(), complete(), record() and state changes are committed with "
            f"the running {ex.name}",
            session_id=self.id,
        )

    def execute(
        self,
        name: str,
        *,
        turn: int | None = None,
        turn_id: str | None = None,
        commit_at_exit: bool = True,
        needs_open: bool = True,
        lease: bool = True,
        events: Sequence[EventDraft] = (),
        reuse: bool = False,
    ) -> Executing:
        """Hold the session for one operation (one at a time per handle).

        Re-entry from the operation's own plugin code is refused at once. The session must be
        open (unless ``needs_open`` is false: open, close). With ``lease`` (every operation but
        opening and closing) the session's lease is claimed first: waiting while another
        execution holds it, reloading a stale image, applying queued session commands (see
        :meth:`claim`). What is still pending when the operation ends is committed, releasing
        the lease (unless ``commit_at_exit`` is false); a lease still held is released. A
        cancellation that arrived while a commit was on its way is raised here, once the
        operation has recorded the commit. With ``reuse``, an execution started in a hold runs
        under the hold's lease while it is certainly live (:meth:`holds_lease`), claiming
        nothing: its ``events`` are committed with it.
        """
        return Executing(
            self, name, turn, turn_id, commit_at_exit, needs_open, lease, events, reuse
        )

    def require_open(self) -> None:
        if not self.opened:
            raise self._not_open("call `await session.open()` first")

    def _not_open(self, what: str) -> SessionError:
        return SessionError(f"session {self.id!r} is not open; {what}", session_id=self.id)

    # -- loading --------------------------------------------------------------------------------

    async def load(self, *, fresh: bool, must_exist: bool) -> bool:
        """Read the session from the store into the image and prepare it (``prepare_session``);
        returns whether a stored session was found."""
        from lash.errors import UnknownSession

        store = self.core.store
        record = await store.load(self.id)
        if record is None and must_exist:
            # A session with queued input or commands and no commit yet exists too (work waits
            # in its mailbox).
            if not (await store.list_inputs(self.id) or await store.list_commands(self.id)):
                raise UnknownSession(self.id)
        self.incarnation = record.incarnation if record is not None else None
        initial = await self._link(record)
        self._clear_pending()
        self.image.load(record, self.composition, self.overrides, fresh=fresh, initial=initial)
        spec = self.child_spec
        if spec is not None and (record is None or fresh):
            if spec.tools is not None:
                await self.list_sources_for(spec.tools)
                self._restrict(spec.tools)
            # A new child is stored (with its link and allowlist) by its first commit, at the
            # latest when it is closed, even if it ran no turn.
            self.dirty = True
        await self.composition.hooks.collect(
            "prepare_session",
            bind=lambda name: {"options": self.image.options.get(name)},
            session=self.view,
            is_root=self.is_root,
        )
        for message in self.image.migrated:
            log.warning("lash: session %r migrated: %s", self.id, message)
        return record is not None

    async def _link(self, record: SessionRecord | None) -> SessionConfig | None:
        """Settle the session's parent link and lineage before it is built in memory; return
        the configuration a new child starts from (``None``: the host's default)."""
        spec = self.child_spec
        if spec is not None:
            children.check_link(self.id, record, spec)
        self.parent_id = record.parent_id if record is not None else self.parent_id
        if self.parent_id is None:
            self.lineage = ()
            return None
        parent_config: SessionConfig | None = None
        handed = spec.parent_lineage if spec is not None else None
        if children.older_link(record, spec):
            # A child of a deleted session, opened from the handle of the one created again
            # under its id: no ancestor of it (nor, then, of the handle's ancestors).
            self.lineage = ()
        elif (
            spec is not None
            and handed is not None
            and (record is None or spec.parent_incarnation is not None)
        ):
            self.lineage = (*handed, self.parent_id)
            parent_config = spec.parent_config
        else:
            # A stored child whose parent handle does not know its incarnation (a session new
            # when the handle opened it) is checked link by link in the store; if the parent
            # is not committed yet (its first turn runs), the handle's lineage is the one.
            link = record.parent_incarnation if record is not None else None
            self.lineage, parent = await children.lineage(
                self.core.store, self.id, self.parent_id, link
            )
            if parent is None and handed is not None:
                self.lineage = (*handed, self.parent_id)
            parent_config = parent.config if parent is not None else None
        if record is not None or spec is None:
            return None
        host = self.composition.config
        default = SessionConfig(provider=host.provider, model=host.model)
        return children.initial_config(self.id, spec, parent_config, default)

    def _restrict(self, tools: Sequence[str]) -> None:
        """Give a new child session its tool allowlist (committed with its first commit)."""
        kernel = self.image.kernel
        known = set(self.composition.available_tools())
        unknown = sorted(set(tools) - known)
        if unknown:
            raise SessionError(
                f"session {self.id!r}: the tool allowlist names unknown tool(s) "
                f"{', '.join(unknown)}; known: {', '.join(sorted(known)) or 'none'}",
                session_id=self.id,
            )
        kernel.allowed = list(tools)
        kernel.generation += 1

    async def reload(self) -> None:
        """Reload a stale image from the store (another writer committed, or a commit failed)."""
        await self.load(fresh=False, must_exist=False)

    # -- leases ---------------------------------------------------------------------------------

    async def claim(self, *, turn_id: str | None = None, events: Sequence[EventDraft] = ()) -> None:
        """Take the session's lease for an execution, then make the image current: reload it
        when another writer committed since it was read (before any model call), and apply the
        session commands queued in the store (their changes commit with the execution)."""
        sent = time.monotonic()
        lease = await self._acquire(turn_id=turn_id, events=events)
        self.lease = lease
        if self.held_until is not None:
            self.held_until = sent + self.core.lease_ttl / 2
        image = self.image
        if image.fresh:
            image.revision = lease.revision  # starting over replaces whatever the store holds
        elif image.stale or lease.revision != image.revision:
            await self.reload()
        self.commands_applied = 0
        if (lease.pending_commands or image.kernel.commands) and self._apply_commands:
            self.commands_applied = await self._apply_commands(self)

    async def _reclaim(self) -> None:
        """Take the lease again for a second commit of one execution (compaction after a turn,
        changes made in ``turn_persisted``). The pending changes were made on the image as the
        first commit left it: if another writer committed since, they no longer apply."""
        lease = await self._acquire(turn_id=None, events=())
        self.lease = lease
        if not self.image.fresh and lease.revision != self.image.revision:
            self.image.stale = True
            await self._release_quietly()
            raise RevisionConflict(self.id, expected=self.image.revision, actual=lease.revision)

    async def _acquire(self, *, turn_id: str | None, events: Sequence[EventDraft]) -> Lease:
        """``acquire_lease``, waiting up to the handle's (or the core's) wait while another
        execution holds it; a holder proved dead (same host, process gone) is taken over at
        once. :raises SessionBusy: naming the holder, once the wait is over."""
        store = self.core.store
        ttl = self.core.lease_ttl
        wait = self.wait if self.wait is not None else self.core.lease_wait
        deadline = time.monotonic() + wait
        delay = 0.005
        take_over: Lease | None = None
        while True:
            try:
                return await store.acquire_lease(
                    self.id, self.owner, ttl=ttl, take_over=take_over, turn=turn_id, events=events
                )
            except SessionBusy as busy:
                if busy.token is not None and provably_dead(busy.owner):
                    take_over = Lease(self.id, busy.owner, busy.token, busy.expires_at)
                    continue
                if time.monotonic() >= deadline:
                    raise
                if delay == 0.005 and self.on_wait is not None:  # the first wait of this one
                    self.on_wait(busy)
                # Back off from 5 ms to 100 ms: a short wait for a turn that is ending, without
                # hammering the store during a long one.
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.1)

    async def _release_quietly(self) -> None:
        lease, self.lease = self.lease, None
        if lease is None:
            return
        try:
            # Shielded: a release cut short by a cancellation would keep the session busy
            # until the lease expires.
            await asyncio.shield(self.core.store.release_lease(lease))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the lease expires anyway; the operation's outcome stands
            log.warning("lash: releasing the lease of session %r failed: %s", self.id, exc)

    async def renew(self) -> None:
        """Renew the running execution's lease."""
        if self.lease is not None:
            sent = time.monotonic()
            store, ttl = self.core.store, self.core.lease_ttl
            name, self.naming = self.naming, None
            if name is not None:  # a held turn (see Executing): the lease names it from now on
                self.lease = await store.acquire_lease(self.id, self.owner, ttl=ttl, turn=name)
            else:
                self.lease = await store.renew_lease(self.lease, ttl=ttl)
            if self.held_until is not None and not self.lease.pending_commands:
                self.held_until = sent + ttl / 2

    def holds_lease(self) -> bool:
        """Whether the handle's hold has a lease an execution can start under without claiming
        the session: taken (or renewed) less than half its TTL ago, and the image not known to
        be stale. Past that, the next execution claims the session again (keeping the token
        when the lease is still the handle's), so that a hold idle for longer than the TTL
        never commits under a lease another process may have taken over meanwhile."""
        until = self.held_until
        return (
            until is not None
            and self.lease is not None
            and not self.image.stale
            and time.monotonic() < until
        )

    def _renew_later(self, renew_in: float | None = None) -> None:
        """Arm the running execution's timer: when the first poll is due (``control_poll``) it
        starts the running turn's keeper if it asked (:attr:`on_poll_due`), then the lease is
        renewed every third of its TTL while the execution runs. Most executions end long
        before either is due: the first is an entry in the event loop's :class:`_PollClock`
        (one loop timer for every execution of the loop, not one each), and only an execution
        still running then gets a timer of its own for its renewals. ``renew_in``: seconds to
        the first renewal instead of a third of the TTL (a lease the execution did not take
        itself: a hold's), at the first poll at the soonest."""
        full = self.core.lease_ttl / 3
        poll_in = min(self.core.control_poll, full)
        renew_in = max(poll_in, full if renew_in is None else renew_in)
        self.poll_passed = False
        # (The loop asked for once: get_running_loop makes a getpid system call each time.)
        loop = asyncio.get_running_loop()
        try:
            clock = _poll_clock(loop)
        except TypeError:  # a loop that cannot be weakly referenced: a timer of its own
            self._renewal = loop.call_later(poll_in, self._poll_due, renew_in - poll_in)
        else:
            self._renewal = clock.arm(self, poll_in, renew_in - poll_in, loop)

    def _poll_due(self, renew_after: float) -> None:
        """The running execution's first poll is due (its :class:`_PollClock` entry fired):
        start what asked for it, and renew the lease ``renew_after`` seconds later."""
        self.poll_passed = True
        # The renewal first: a keeper that fails to start (reported by the clock) must not
        # leave the execution without its lease renewals.
        self._renewal = asyncio.get_running_loop().call_later(renew_after, self._renew_due)
        start, self.on_poll_due = self.on_poll_due, None
        if start is not None:
            start()

    def _renew_due(self) -> None:
        self._renewal = None
        self._renewing = asyncio.get_running_loop().create_task(self._renew_and_rearm())

    async def _renew_and_rearm(self) -> None:
        try:
            await self.renew()
        except LashError as exc:  # LeaseLost: the execution's commit will say so
            log.warning("lash: renewing the lease of session %r failed: %s", self.id, exc)
        else:
            if self.lease is not None:
                loop = asyncio.get_running_loop()
                self._renewal = loop.call_later(self.core.lease_ttl / 3, self._renew_due)
        finally:
            self._renewing = None

    def _stop_timer(self) -> asyncio.Task[None] | None:
        """Stop renewing: disarm the timer; returns the renewal under way (if any), which
        :meth:`_stop_renewal` cancels and waits for."""
        self.on_poll_due = None
        self.naming = None  # a held turn that ended before its first renewal: left unnamed
        renewal = self._renewal
        if renewal is not None:
            self._renewal = None
            if isinstance(renewal, _PollClock):
                renewal.disarm(self)
            else:
                renewal.cancel()
        task, self._renewing = self._renewing, None
        return task

    async def _stop_renewal(self, task: asyncio.Task[None] | None = None) -> None:
        """Stop renewing (before a commit, which releases the lease, and at the end); ``task``:
        the renewal under way that :meth:`_stop_timer` returned, when the caller called it
        first (a caller with no renewal under way, most, then makes no coroutine)."""
        if task is None:
            task = self._stop_timer()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- helpers --------------------------------------------------------------------------------

    def provider(self) -> tuple[str, Provider, str]:
        config = self.image.config
        return self.composition.provider_for(config.provider, config.model)

    def report(self, error: LashError) -> None:
        self.composition.hooks.report(error)

    def redact(self, text: str) -> str:
        """``text`` with the session's secret option values (``option(secret=True)``) masked:
        what a failed turn stores as its error, since errors may echo what they were given."""
        for plugin, options in self.image.options.items():
            for name in self.composition.secret_fields(plugin):
                value = getattr(options, name, None)
                if isinstance(value, str) and len(value) >= 4 and value in text:
                    text = text.replace(value, "***")
        return text


#: How early a loop runs a timer (asyncio's ``BaseEventLoop._clock_resolution``): a timer may
#: fire up to this much before its time.
_RESOLUTION = time.get_clock_info("monotonic").resolution


def check_membership(session_id: str, changes: Any) -> None:
    """``set_tool_membership``'s changes: a mapping of tool names to ``True`` or ``False``.
    Before, a list failed with a bare ``AttributeError`` and a value such as ``"yes"`` or ``0``
    was taken for its truth.

    :raises SessionError: naming the session and what is wrong."""
    if not isinstance(changes, Mapping):
        raise SessionError(
            f"session {session_id!r}: set_tool_membership() takes a mapping of tool names to "
            f"True or False, got {describe_value(changes)}",
            session_id=session_id,
        )
    for name, member in changes.items():
        if not isinstance(name, str) or type(member) is not bool:
            raise SessionError(
                f"session {session_id!r}: set_tool_membership() got {name!r}: "
                f"{describe_value(member)}; it takes a tool name (str) and True or False",
                session_id=session_id,
            )


class _PollClock:
    """The first-poll timers of the running executions of one event loop (see
    :meth:`SessionRuntime._renew_later`), on one loop timer armed for the earliest of them.

    A turn arms its execution here and disarms it when it ends: a dictionary entry set and
    removed, where a timer of its own cost a handle made, pushed on the loop's heap, cancelled
    and popped again (~2 % of a turn). Each entry fires at its own time, in the context it was
    armed in (what the timer of its own captured), and a failure of one is reported as the
    loop reports a failed callback, without keeping the others from firing. An entry holds its
    runtime (and its context: the execution, its turn) only while armed; the loop timer holds
    the clock, in an empty context of its own (it outlives the execution that armed it: a timer
    that kept a runtime's context pinned that runtime and its last turn in memory)."""

    # (No reference to its loop: the clocks are kept by loop, weakly, and a clock holding its
    # loop would keep every loop that ever ran a turn alive. Its loop timer is held weakly for
    # the same reason: a TimerHandle refers to its loop, and a loop closed while the timer was
    # pending would be kept, with its clock. The loop holds the timer while it is pending.)
    __slots__ = ("__weakref__", "due", "handle", "ordered", "when")

    def __init__(self) -> None:
        #: Armed executions: the loop time their first poll is due, how long after it their
        #: first renewal is, and the context they were armed in.
        self.due: dict[SessionRuntime, tuple[float, float, contextvars.Context]] = {}
        #: The loop timer (weakly) and the loop time it is armed for.
        self.handle: weakref.ref[asyncio.TimerHandle] | None = None
        self.when: float | None = None
        #: Whether `due`'s entries are in the order of their times (each armed no earlier than
        #: the one before it: the usual case, every execution of a core arming with the same
        #: delay). Then a firing reads only the entries due and the first one left, not every
        #: entry: a burst of N executions would otherwise cost N^2.
        self.ordered = True

    def arm(
        self,
        runtime: SessionRuntime,
        delay: float,
        renew_after: float,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> _PollClock:
        """Call ``runtime._poll_due(renew_after)`` in ``delay`` seconds, in the current context
        (on the running loop, this clock's: ``loop``, when the caller has it)."""
        if loop is None:
            loop = asyncio.get_running_loop()
        when = loop.time() + delay
        due = self.due
        due.pop(runtime, None)  # armed again: at the end, in the order of arming
        if due and self.ordered and when < next(reversed(due.values()))[0]:
            self.ordered = False
        due[runtime] = (when, renew_after, contextvars.copy_context())
        if self.when is None or when < self.when:
            handle = self.handle() if self.handle is not None else None
            if handle is not None:
                handle.cancel()
            self._arm_timer(loop, when)
        return self

    def disarm(self, runtime: SessionRuntime) -> None:
        # (The loop timer stays: when it fires with nothing due, it is not armed again.)
        self.due.pop(runtime, None)

    def _arm_timer(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self.handle = weakref.ref(loop.call_at(when, self._fire, context=contextvars.Context()))
        self.when = when

    def _fire(self) -> None:
        self.handle = self.when = None
        loop = asyncio.get_running_loop()
        end = loop.time() + _RESOLUTION  # what the loop itself counts as due
        due = self.due
        fired: list[tuple[SessionRuntime, tuple[float, float, contextvars.Context]]] = []
        if self.ordered:
            for item in due.items():
                if item[1][0] > end:
                    break
                fired.append(item)
        else:
            fired = [(r, entry) for r, entry in due.items() if entry[0] <= end]
        for runtime, _entry in fired:
            del due[runtime]
        if not due:
            self.ordered = True
        for runtime, (_when, renew_after, context) in fired:
            try:
                context.run(runtime._poll_due, renew_after)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # as asyncio's Handle reports a callback's failure
                loop.call_exception_handler(
                    {
                        "message": f"lash: the first poll of session {runtime.id!r} failed",
                        "exception": exc,
                    }
                )
        if due and self.handle is None:
            if self.ordered:
                first = next(iter(due.values()))[0]
            else:
                first = min(entry[0] for entry in due.values())
            self._arm_timer(loop, first)


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _PollClock] = (
    weakref.WeakKeyDictionary()
)


#: The loop that last asked for its clock, and that clock, both weakly (what _clocks keeps):
#: a loop asks at every execution, and a lookup in the weak dictionary costs a weak reference
#: made and a call of its Python-level ``get`` each time.
_last_clock: tuple[weakref.ref[asyncio.AbstractEventLoop], weakref.ref[_PollClock]] | None = None


def _poll_clock(loop: asyncio.AbstractEventLoop | None = None) -> _PollClock:
    """The running event loop's :class:`_PollClock` (``loop``, when the caller has it)."""
    global _last_clock
    if loop is None:
        loop = asyncio.get_running_loop()
    last = _last_clock
    if last is not None and last[0]() is loop:
        clock = last[1]()
        if clock is not None:
            return clock
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = _PollClock()
    _last_clock = (weakref.ref(loop), weakref.ref(clock))
    return clock


def _frames(nodes: Sequence[GraphNode]) -> list[FrameBoundary]:
    """The frames a commit of ``nodes`` opens (a session's root frame excepted): what its
    ``frame_opened`` events and hooks are for."""
    return [n for n in nodes if isinstance(n, FrameBoundary) and n.reason != "root"]


def _frame_opened_event(node: FrameBoundary) -> EventDraft:
    """The event a commit logs for a frame it opens."""
    return EventDraft(
        "frame_opened",
        {
            "frame_id": node.frame_id,
            "previous_frame_id": node.previous_frame_id,
            "reason": node.reason,
        },
    )
