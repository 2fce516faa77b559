"""``Session``: the host's handle on one session (open, turns, operations, close).

Every method that changes the session runs as one execution of the handle's runtime
(:mod:`lash._kernel.runtime`): one at a time, committed atomically, and refused with a
:class:`lash.SessionError` when called from a hook or tool of the same session (which would wait
for itself). Hooks and tools never get a ``Session``: they get the session's
:class:`lash.SessionView`, :attr:`Session.view`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import attrs

from lash._contract.events import TurnResult
from lash._contract.graph import GraphNode
from lash._contract.services import SessionView
from lash._contract.types import AgentFrame, PromptView, SessionConfig, ToolCatalogEntry
from lash._kernel import operations
from lash._kernel.prompt import prompt_view
from lash._kernel.runtime import KernelCore, SessionRuntime
from lash._kernel.turn import Turn
from lash.errors import SessionError

T = TypeVar("T")


@attrs.frozen
class ParkedSession:
    """What :meth:`Session.park` returns: enough to reopen the session later."""

    session_id: str
    revision: int
    options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    __module__ = "lash"


class Session:
    """One conversation: an append-only graph, per-plugin options and state, committed per turn.

    Get one with ``core.session(id, options=...)``, then ``await session.open()`` (resume, or
    start if new) or ``await session.open_fresh()`` (start over). Hooks and tools receive the
    session's :attr:`view` (a :class:`lash.SessionView`), never the session itself.
    """

    __module__ = "lash"

    def __init__(
        self,
        core: KernelCore,
        session_id: str,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        is_root: bool = True,
    ) -> None:
        if not session_id:
            raise SessionError("a session id must be a non-empty string", session_id=session_id)
        #: The core that made this handle (a :class:`lash.LashCore`).
        self.core = core
        self._runtime = SessionRuntime(core, session_id, options=options, is_root=is_root)

    # -- what the session holds ----------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._runtime.id

    @property
    def is_root(self) -> bool:
        return self._runtime.is_root

    @property
    def view(self) -> SessionView:
        """The session as hooks and tools see it (a :class:`lash.SessionView`)."""
        return self._runtime.view

    @property
    def config(self) -> SessionConfig:
        return self._runtime.image.config

    @property
    def revision(self) -> int:
        """The head revision this session last read or committed (0: never committed)."""
        return self._runtime.image.revision

    @property
    def turns(self) -> int:
        """How many turns have been committed."""
        return self._runtime.image.turns

    @property
    def nodes(self) -> tuple[GraphNode, ...]:
        """The nodes of the active agent frame, boundary first (what the model's context is
        built from; earlier frames are in the store: ``core.store.load(id, full=True)``)."""
        return tuple(self._runtime.image.graph.nodes)

    @property
    def pending(self) -> tuple[str, ...]:
        """Input queued for later turns (by ``EnqueueMessages`` directives)."""
        return tuple(self._runtime.image.pending)

    def options(self, cls: type[T]) -> T:
        """The validated per-session options instance of the plugin that declared ``cls``."""
        return self._runtime.options_of(cls)

    def state(self, cls: type[T]) -> T:
        """The per-session state of the plugin that declared ``cls`` (persisted every turn)."""
        return self._runtime.state_of(cls)

    def tools(self) -> tuple[ToolCatalogEntry, ...]:
        """The session's tool catalog: every tool with its plugin and membership, orphaned
        tools (whose plugin is gone) last, as non-members."""
        return self._runtime.catalog()

    def usage_report(self) -> dict[str, Any]:
        """Committed token usage: ``{"total": {...}, "by_source": {source: {...}}}``."""
        return self._runtime.usage_report()

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self, *, must_exist: bool = False, wait: float = 0.0) -> Session:
        """Take the session's lease, then resume it from the store (only the active agent frame
        is loaded), or start it if it does not exist yet.

        :param must_exist: raise :class:`lash.UnknownSession` instead of starting a new session.
        :param wait: seconds to keep retrying while another writer holds the lease.
        :raises SessionBusy: when another writer holds the lease (after ``wait`` seconds).
        :raises OptionsError: when this session's options do not validate (names plugin, field).
        """
        return await self._open(fresh=False, must_exist=must_exist, wait=wait)

    async def open_fresh(self, *, wait: float = 0.0) -> Session:
        """Start the session over: the next commit replaces whatever the store holds.

        :raises SessionBusy: when another writer holds the lease (after ``wait`` seconds).
        """
        return await self._open(fresh=True, must_exist=False, wait=wait)

    async def _open(self, *, fresh: bool, must_exist: bool, wait: float) -> Session:
        runtime = self._runtime
        async with runtime.execute("open", commit_at_exit=False, needs_open=False):
            if runtime.opened:
                raise SessionError(f"session {self.id!r} is already open", session_id=self.id)
            # Fail fast on a missing protocol or provider, before any I/O.
            runtime.composition.protocol()
            runtime.provider()
            await runtime.acquire(wait)
            try:
                found = await runtime.load(fresh=fresh, must_exist=must_exist)
                runtime.opened = True
            except BaseException:
                await runtime.release()
                raise
            await runtime.composition.hooks.broadcast(
                "session_opened", session=runtime.view, restored=found and not fresh
            )
        return self

    async def close(self) -> None:
        """Close the session: wait for a running turn to commit, then release the lease."""
        runtime = self._runtime
        async with runtime.execute("close", commit_at_exit=False, needs_open=False):
            if not runtime.opened and runtime.lease is None:
                return
            if runtime.has_pending:
                await runtime.commit()  # changes made since the last commit (state, membership)
            await runtime.release()
        await runtime.composition.hooks.broadcast("session_closed", session=runtime.view)

    async def park(self) -> ParkedSession:
        """Release the lease and the session's memory (graph, options, state); return a small
        handle that :meth:`lash.LashCore.resume` reopens from the store."""
        runtime = self._runtime
        async with runtime.execute("park", commit_at_exit=False, needs_open=False):
            runtime.require_open()
            if runtime.has_pending:
                await runtime.commit()
            await runtime.release()
            handle = ParkedSession(self.id, runtime.image.revision, runtime.overrides)
            runtime.image.clear()
        await runtime.composition.hooks.broadcast("session_parked", session=runtime.view)
        return handle

    async def __aenter__(self) -> Session:
        if not self._runtime.opened:
            await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- turns ---------------------------------------------------------------------------------

    def turn(self, text: str, *, items: Sequence[Any] = ()) -> Turn:
        """A new turn with this input; ``await turn.run()`` or ``async for e in turn.stream()``.

        ``items`` are optional structured input (JSON-ready values: attachments, form data...)
        recorded on the user message node with the text; plugins read them from
        ``turn.items`` or the node, and shape what the model sees (``transform_prompt_view``).
        """
        self._runtime.refuse_reentry("turn")
        self._runtime.require_open()
        return Turn(self._runtime, text, items=tuple(items))

    async def run_pending(self) -> list[TurnResult]:
        """Run queued input (from ``EnqueueMessages``), one turn each, oldest first."""
        runtime = self._runtime
        runtime.refuse_reentry("run_pending")
        results = []
        while runtime.image.pending:
            text = runtime.image.pending.pop(0)
            runtime.image.pending_dirty = True
            results.append(await self.turn(text).run())
        return results

    def cancel_running_turns(self) -> int:
        """Stop running turns cooperatively; each commits as ``stopped(cancelled)``.
        Returns how many turns were asked to stop."""
        running = list(self._runtime.running)
        for turn in running:
            turn.cancel()
        return len(running)

    async def prompt_preview(self) -> PromptView:
        """The prompt the next model call would get: system prompt (layers and plugin
        fragments), the active frame's messages, and the tool catalog, after
        ``transform_prompt_view``. Nothing is recorded."""
        self._runtime.require_open()
        return await prompt_view(self._runtime)

    # -- operations ----------------------------------------------------------------------------

    async def configure(self, **patch: Any) -> SessionConfig:
        """Change the session's configuration: ``provider``, ``model``, ``prompt_layers`` and
        ``plugin_options`` (merged per plugin).

        When something changes, ``mutate_session_config`` runs as a chain (each plugin may amend
        the proposal or reject it by raising :class:`lash.ConfigRejected`), the result is
        validated (provider exists, plugin options fit their classes), committed durably, and
        ``session_config_changed`` is broadcast. Returns the configuration in force. Plugin
        options apply at once: plugins read them when they need them.

        :raises ConfigRejected: naming the plugin that rejected the change and why; the session
            is left untouched.
        """
        operations.check_patch(self.id, patch)
        async with self._runtime.execute("configure"):
            return await operations.configure(self._runtime, patch)

    async def compact(self, instructions: str | None = None) -> AgentFrame | None:
        """Compact the context into a new agent frame (``compact_context``, a "first" hook).

        Returns the new frame, or ``None`` when no plugin compacted. The old history stays in
        the graph. A failing or cancelled compaction commits nothing (see the module's note on
        a cancellation during the commit).
        """
        async with self._runtime.execute("compact"):
            return await operations.compact(self._runtime, instructions, reason="compaction")

    async def set_tool_membership(self, changes: Mapping[str, bool]) -> int:
        """Make tools members (offered to the model) or not; committed at once. Returns the
        catalog generation. :raises SessionError: naming unknown tools."""
        async with self._runtime.execute("set_tool_membership"):
            return self._runtime.change_membership(changes)

    async def enqueue_command(self, name: str, *, key: str) -> bool:
        """Queue a durable session command (``refresh_tool_catalog`` or ``reset``), applied
        before the next turn (or by :meth:`apply_commands`).

        ``key`` makes it idempotent: a key already queued or applied is ignored (returns
        ``False``). :raises SessionError: for an empty key or an unknown command.
        """
        operations.check_command(self.id, name, key)
        async with self._runtime.execute("enqueue_command"):
            return await operations.enqueue_command(self._runtime, name, key)

    async def apply_commands(self) -> int:
        """Apply queued commands now (a turn does this first anyway); returns how many ran."""
        async with self._runtime.execute("apply_commands"):
            return await operations.apply_commands(self._runtime)

    def __repr__(self) -> str:
        image = self._runtime.image
        return f"<Session {self.id!r} revision={image.revision} turns={image.turns}>"


__all__ = ["ParkedSession", "Session"]
