"""The machinery behind one :class:`lash.Session` handle.

A :class:`SessionRuntime` holds the session's image (:mod:`lash._kernel.image`), its lock and
lease, and the changes pending since the last commit. It runs every operation as an
:class:`Execution` (:meth:`SessionRuntime.execute`), commits
(:meth:`SessionRuntime.commit`), and is the backend the session's :class:`lash.SessionView`
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
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lash._contract.calls import CALLER
from lash._contract.graph import GraphNode, PluginNode, new_node_id
from lash._contract.providers import ModelRequest, ModelResponse, collect_response
from lash._contract.serialization import to_data
from lash._contract.services import SessionView
from lash._contract.types import Message, SessionConfig, ToolCatalogEntry, Usage
from lash._kernel.image import SessionImage
from lash._store.protocol import Lease
from lash.errors import (
    LashError,
    LeaseLost,
    RevisionConflict,
    SessionBusy,
    SessionError,
)

if TYPE_CHECKING:
    from lash._contract.providers import Provider
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
    def owner_id(self) -> str: ...


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

    __slots__ = ("done", "name", "outer", "runtime", "turn")

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




class SessionRuntime:
    """One session handle's image, lock, lease and pending changes (see the module docstring)."""

    def __init__(
        self,
        core: KernelCore,
        session_id: str,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        is_root: bool = True,
    ) -> None:
        self.core = core
        self.composition = core.composition
        self.id = session_id
        self.is_root = is_root
        self.overrides = {k: dict(v) for k, v in (options or {}).items()}
        self.image = SessionImage(session_id)
        self.lock = asyncio.Lock()
        self.lease: Lease | None = None
        self.opened = False
        # A lease owner per handle: two handles on one session never share a lease.
        self.owner = f"{core.owner_id}/{next(_handles)}"
        #: What plugins and tools see of the session.
        self.view = SessionView(self)
        #: Turns running now (cancel_running_turns).
        self.running: set[Stoppable] = set()
        #: The tools offered at the last model call (a call of any other tool is refused).
        self.last_catalog: list[str] = []
        # Changes since the last commit that the image cannot diff: nodes and usage.
        self.pending_nodes: list[GraphNode] = []
        self.pending_usage: dict[str, Usage] = {}
        self.dirty = False
        # A cancellation that arrived while a commit was on its way (see through_cancellation).
        self.cancel_after_commit = False

    # -- the session services backend (what SessionView forwards to) --------------------------

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

    async def set_tool_membership(self, changes: Mapping[str, bool]) -> int:
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
        _name, provider, default_model = self.provider()
        request = ModelRequest(
            model=model or default_model, messages=tuple(messages), options=dict(options or {})
        )
        response = await collect_response(provider.stream(request))
        if self.joinable() is not None:
            self.add_usage(source, response.usage)
        else:
            async with self.execute("complete"):
                self.add_usage(source, response.usage)
        return response

    async def record(self, kind: str, data: Any) -> PluginNode:
        caller = CALLER.get()
        if caller is None or caller.plugin is None:
            raise SessionError(
                f"session {self.id!r}: record() is attributed to the calling plugin, so it must "
                "be called from a hook or a tool",
                session_id=self.id,
            )
        if not isinstance(kind, str) or not kind:
            raise SessionError(
                f"session {self.id!r}: record() needs a non-empty kind, got {kind!r}",
                session_id=self.id,
            )
        try:
            # Refused now, not at the commit: an unstorable node would fail the whole turn's
            # commit. to_data alone passes unknown objects through; JSON is what stores keep.
            json.dumps(to_data(data))
        except Exception as exc:
            raise SessionError(
                f"session {self.id!r}: plugin {caller.plugin!r} recorded data that cannot be "
                f"stored as JSON: {exc}",
                session_id=self.id,
            ) from None
        plugin = caller.plugin
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

    def usage_report(self) -> dict[str, Any]:
        return self.image.usage_report()

    # -- pending changes and the commit --------------------------------------------------------

    def add_node(self, node: GraphNode) -> None:
        """Append ``node`` to the graph; it is committed with the next commit."""
        self.image.graph.append(node)
        self.pending_nodes.append(node)

    def add_usage(self, source: str, usage: Usage) -> None:
        self.pending_usage[source] = self.pending_usage.get(source, Usage()) + usage

    @property
    def has_pending(self) -> bool:
        return bool(self.pending_nodes or self.pending_usage or self.dirty)

    async def commit(self, *, turns: int = 0) -> int:
        """One atomic commit of everything that changed since the last one."""
        lease = self.lease
        if lease is None or not self.opened:
            raise self._not_open("call `await session.open()` first")
        image = self.image
        delta = image.delta(self.pending_nodes, self.pending_usage, turns, self.composition)
        store = self.core.store
        ttl = self.core.lease_ttl
        try:
            if lease.remaining() < ttl / 2:
                lease = self.lease = await store.renew_lease(lease, ttl=ttl)
            revision, cancelled = await through_cancellation(
                store.commit(self.id, lease=lease, expected_revision=image.revision, delta=delta)
            )
        except (LeaseLost, RevisionConflict):
            # Another writer owns the session now: this handle's memory is stale. Close it;
            # reopening reloads what the store holds.
            self.lease = None
            self.opened = False
            image.stale = True
            raise
        except BaseException:
            image.stale = True  # the pending changes are in memory, not in the store
            raise
        # Only after the store accepted the commit does the in-memory head move.
        image.committed(delta, revision)
        self.pending_nodes, self.pending_usage, self.dirty = [], {}, False
        self.cancel_after_commit |= cancelled
        return revision

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

    @contextlib.asynccontextmanager
    async def execute(
        self,
        name: str,
        *,
        turn: int | None = None,
        commit_at_exit: bool = True,
        needs_open: bool = True,
    ) -> AsyncIterator[Execution]:
        """Hold the session for one operation (one at a time per handle).

        Re-entry from the operation's own plugin code is refused at once. The session must be
        open (unless ``needs_open`` is false: open, close); a stale image is reloaded first.
        What is still pending when the operation ends is committed (unless ``commit_at_exit`` is
        false: opening writes nothing). A cancellation that arrived while a commit was on its
        way is raised here, once the operation has recorded the commit.
        """
        self.refuse_reentry(name)
        async with self.lock:
            ex = Execution(self, name, turn=turn, outer=EXECUTION.get())
            token = EXECUTION.set(ex)
            try:
                if needs_open:
                    self.require_open()
                    if self.image.stale:
                        await self.reload()
                yield ex
                if commit_at_exit and self.has_pending:
                    await self.commit()
            except BaseException:
                if self.has_pending:
                    self.image.stale = True  # uncommitted changes: reload before the next one
                raise
            finally:
                ex.done = True
                # A stream abandoned without closing is finalized in another task's context,
                # where the variable was never set: nothing to undo there (and `done` makes the
                # execution unjoinable wherever it is still seen).
                with contextlib.suppress(ValueError):
                    EXECUTION.reset(token)
                cancelled, self.cancel_after_commit = self.cancel_after_commit, False
            if cancelled:
                raise asyncio.CancelledError

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

        record = await self.core.store.load(self.id)
        if record is None and must_exist:
            raise UnknownSession(self.id)
        self.pending_nodes, self.pending_usage, self.dirty = [], {}, False
        self.image.load(record, self.composition, self.overrides, fresh=fresh)
        await self.composition.hooks.collect(
            "prepare_session",
            bind=lambda name: {"options": self.image.options.get(name)},
            session=self.view,
            is_root=self.is_root,
        )
        for message in self.image.migrated:
            log.warning("lash: session %r migrated: %s", self.id, message)
        return record is not None

    async def reload(self) -> None:
        """Reload a stale image from the store (what a failed commit leaves)."""
        await self.load(fresh=False, must_exist=False)

    # -- leases ---------------------------------------------------------------------------------

    async def acquire(self, wait: float) -> None:
        store = self.core.store
        deadline = time.monotonic() + wait
        while True:
            try:
                self.lease = await store.acquire_lease(self.id, self.owner, ttl=self.core.lease_ttl)
                return
            except SessionBusy:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def release(self) -> None:
        lease, self.lease = self.lease, None
        self.opened = False
        if lease is not None:
            await self.core.store.release_lease(lease)

    async def keep_lease(self) -> None:
        """Renew the lease while a turn runs, so a long turn does not lose it."""
        ttl = self.core.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            if self.lease is not None:
                self.lease = await self.core.store.renew_lease(self.lease, ttl=ttl)

    # -- helpers --------------------------------------------------------------------------------

    def provider(self) -> tuple[str, Provider, str]:
        config = self.image.config
        return self.composition.provider_for(config.provider, config.model)

    def report(self, error: LashError) -> None:
        self.composition.hooks.report(error)
