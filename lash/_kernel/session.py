"""``Session``: the host's handle on one session (open, turns, operations, close).

Every method that changes the session runs as one execution of the handle's runtime
(:mod:`lash._kernel.runtime`): one at a time, committed atomically, and refused with a
:class:`lash.SessionError` when called from a hook or tool of the same session (which would wait
for itself). Hooks and tools never get a ``Session``: they get the session's
:class:`lash.SessionView`, :attr:`Session.view`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from lash._contract.events import TurnResult
from lash._contract.graph import GraphNode
from lash._contract.modeloptions import ModelOptions
from lash._contract.modeloptions_check import model_options as checked_model_options
from lash._contract.services import SessionView
from lash._contract.turn_types import AgentFrame, PromptView, SessionConfig, ToolCatalogEntry
from lash._kernel import operations
from lash._kernel.children import ChildSpec
from lash._kernel.configpatch import apply_patch, check_patch
from lash._kernel.mailbox import checked_turn_input
from lash._kernel.output import DEFAULT_RETRIES, build_output
from lash._kernel.prompt import prompt_view
from lash._kernel.runtime import KernelCore, SessionRuntime, check_membership
from lash._kernel.turn import Turn
from lash._store.records import PendingInput, QueuedCommand
from lash.errors import RevisionConflict, SessionBusy, SessionError, ValidationError

T = TypeVar("T")
log = logging.getLogger("lash")


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
    # No instance dict: hosts keep thousands of handles open (the core tracks them weakly).
    __slots__ = ("__weakref__", "_runtime", "core")

    def __init__(
        self,
        core: KernelCore,
        session_id: str,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        child: ChildSpec | None = None,
    ) -> None:
        if not session_id:
            raise SessionError("a session id must be a non-empty string", session_id=session_id)
        #: The core that made this handle (a :class:`lash.LashCore`).
        self.core = core
        self._runtime = SessionRuntime(
            core,
            session_id,
            options=options,
            child=child,
            apply_commands=operations.apply_queued_commands,
        )

    # -- what the session holds ----------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._runtime.id

    @property
    def is_root(self) -> bool:
        """``False`` for a child session (a sub-agent): one whose head links it to a parent.
        Known once the session is open."""
        return self._runtime.is_root

    @property
    def parent_id(self) -> str | None:
        """The parent of a child session (``None``: a root session). Known once it is open."""
        return self._runtime.parent_id

    def child(
        self,
        *,
        id: str | None = None,
        tools: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        inherit: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> Session:
        """A handle on a child session of this one (see :meth:`lash.LashCore.child_session`);
        an open handle passes on its configuration and per-handle options as they are in
        memory. Call ``await child.open()`` next."""
        runtime = self._runtime
        return self.core.child_session(  # type: ignore[no-any-return]
            self.id,
            id=id,
            tools=tools,
            options=options,
            inherit=inherit,
            config=config,
            parent=runtime if runtime.opened else None,
        )

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

    async def open(
        self,
        *,
        must_exist: bool = False,
        wait: float | None = None,
        on_wait: Callable[[SessionBusy], object] | None = None,
    ) -> Session:
        """Load the session from the store (only the active agent frame), or start it if it
        does not exist yet. Opening takes no lease and writes nothing: each turn or change
        claims the session's lease for its own duration.

        :param must_exist: raise :class:`lash.UnknownSession` instead of starting a new session.
        :param wait: seconds this handle's executions wait for the session while another one
            holds it (default: the core's ``lease_wait``), then :class:`lash.SessionBusy`.
        :param on_wait: called with a :class:`lash.SessionBusy` (who holds the session, until
            when) when one of this handle's executions finds the session held and starts to
            wait for it: to tell a user why nothing happens yet (``lash run`` does).
        :raises OptionsError: when this session's options do not validate (names plugin, field).
        """
        return await self._open(fresh=False, must_exist=must_exist, wait=wait, on_wait=on_wait)

    async def open_fresh(
        self,
        *,
        wait: float | None = None,
        on_wait: Callable[[SessionBusy], object] | None = None,
    ) -> Session:
        """Start the session over: the next commit replaces whatever the store holds."""
        return await self._open(fresh=True, must_exist=False, wait=wait, on_wait=on_wait)

    async def _open(
        self,
        *,
        fresh: bool,
        must_exist: bool,
        wait: float | None,
        on_wait: Callable[[SessionBusy], object] | None = None,
    ) -> Session:
        runtime = self._runtime
        async with runtime.execute("open", commit_at_exit=False, needs_open=False, lease=False):
            if runtime.opened:
                raise SessionError(f"session {self.id!r} is already open", session_id=self.id)
            # Fail fast on a missing protocol or provider, before any I/O.
            runtime.composition.protocol()
            runtime.provider()
            runtime.wait, runtime.on_wait = wait, on_wait
            found = await runtime.load(fresh=fresh, must_exist=must_exist)
            runtime.opened = True
            await runtime.composition.hooks.broadcast(
                "session_opened", session=runtime.view, restored=found and not fresh
            )
        return self

    async def close(self) -> None:
        """Close the session: wait for a running turn to commit, commit what is still pending
        (changes made through its view since), and let go of it."""
        runtime = self._runtime
        async with runtime.execute("close", commit_at_exit=False, needs_open=False, lease=False):
            runtime.held_until = None  # closing ends a hold: its lease is released below
            if not runtime.opened:
                return
            if runtime.has_pending:
                try:
                    await runtime.commit()
                except RevisionConflict as conflict:
                    # Changes made since the last commit (by prepare_session or a hook between
                    # operations) on a view another writer has moved past: closing drops them
                    # rather than failing the close.
                    log.warning("lash: %s; closing without them", conflict)
            runtime.opened = False
        await runtime.composition.hooks.broadcast("session_closed", session=runtime.view)

    async def park(self) -> ParkedSession:
        """Let go of the session's memory (graph, options, state), committing what is still
        pending first; return a small handle that :meth:`lash.LashCore.resume` reopens."""
        runtime = self._runtime
        async with runtime.execute("park", commit_at_exit=False, lease=False):
            runtime.held_until = None  # parking ends a hold: its lease is released below
            if runtime.has_pending:
                await runtime.commit()
            runtime.opened = False
            handle = ParkedSession(self.id, runtime.image.revision, runtime.overrides)
            runtime.image.clear()
        await runtime.composition.hooks.broadcast("session_parked", session=runtime.view)
        return handle

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[Session]:
        """``async with session.hold():`` keep the session's lease from one turn to the next
        while the block runs, for a host that runs several turns of a session in a row (a
        worker, a batch, a script): each turn started in it commits in **one** transaction,
        where a turn on its own claims the lease in one and commits (releasing it) in another.

        Entering claims the session as a turn would (waiting up to the handle's ``wait`` while
        another execution holds it, then :class:`lash.SessionBusy`; reloading a stale image;
        applying queued session commands); leaving commits what is pending and releases the
        lease. Meanwhile the session is this handle's, as during a turn: another handle or
        process that wants it waits, or gets :class:`lash.SessionBusy`. Turns started with
        input (``session.turn(...)``) run under the held lease without claiming it, while it
        was taken or renewed less than half the core's ``lease_ttl`` ago; later, or after a
        failed operation, the next turn claims the session again (the token stays the same
        while the lease is still the handle's). Every other operation (``drain``,
        ``configure``, ``apply_commands``...) claims as it always does, keeping the lease.

        A turn in a hold commits its ``turn_started`` event with the turn (observers see both
        at once). Its lease names it only from its first poll (``control_poll`` seconds in: a
        turn still running then takes the lease again naming itself, one more write), so
        another process's :meth:`lash.LashCore.cancel_turn` answers ``unknown`` before that;
        :meth:`lash.Turn.cancel` in this process stops it at any moment. A turn claims the
        session first, not reusing the held lease, while a turn of the session awaits approval
        (the claim applies the answers) and after a renewal saw session commands queued by
        another process (the claim applies them). A process killed in a hold leaves the
        session to the lease's expiry, as a killed turn does. ``close()`` and ``park()`` end a
        hold.

        :raises SessionError: called from a hook or tool of this session, on a session that is
            not open, or in a hold of this handle already.
        :raises SessionBusy: another execution held the session for longer than the wait.
        """
        runtime = self._runtime
        runtime.refuse_reentry("hold")
        runtime.require_open()
        if runtime.held_until is not None:
            raise SessionError(
                f"session {self.id!r} is already held by this handle (hold() blocks do not nest)",
                session_id=self.id,
            )
        runtime.held_until = 0.0  # in a hold; its lease is taken next
        try:
            async with runtime.execute("hold"):
                pass  # the claim; what queued commands changed commits, the lease kept
            yield self
        finally:
            runtime.held_until = None
            # What is pending commits (releasing the lease), and a lease still held is released.
            async with runtime.execute("hold", needs_open=False, lease=False):
                pass

    async def __aenter__(self) -> Session:
        if not self._runtime.opened:
            await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- turns ---------------------------------------------------------------------------------

    def turn(
        self,
        text: str,
        *,
        items: Sequence[Any] = (),
        id: str | None = None,
        model_options: ModelOptions | Mapping[str, Any] | None = None,
        output: Any = None,
        output_retries: int = DEFAULT_RETRIES,
    ) -> Turn:
        """A new turn with this input; ``await turn.run()`` or ``async for e in turn.stream()``.

        ``items`` are optional structured input (JSON-ready values: attachments, form data...)
        recorded on the user message node with the text; plugins read them from
        ``turn.items`` or the node, and shape what the model sees (``transform_prompt_view``).
        A :class:`lash.Image` item is checked here (a bad one raises :class:`lash.ImageError`
        naming it), stored once in the store, and recorded as a reference; the model gets it
        with the message's text.
        ``id`` names the turn in the session (default: a new id): a turn id the session has
        committed already is not run again, its stored result is returned (so a host may retry
        a submission after a crash); that result's ``tool_calls`` is empty: the calls and
        their results are in the graph, as the turn committed them.

        ``model_options`` (a :class:`lash.ModelOptions` or a mapping of its fields) apply to
        this turn's model calls, over the session's and the host's, field by field.
        ``output`` asks for structured output: an attrs class, a JSON schema dict or a
        :class:`lash.OutputSpec`; the validated answer is the result's ``output``. An invalid
        answer is sent back to the model with its problems, ``output_retries`` times at most,
        then the turn fails (:class:`lash.OutputInvalid`; ``result.output_errors``).

        :raises SessionError: for an input whose text is not a ``str`` or whose items are not
            a list of JSON values and images, an invalid ``id``, ``model_options`` (naming
            each bad field) or ``output``; nothing runs then.
        """
        self._runtime.refuse_reentry("turn")
        self._runtime.require_open()
        items = checked_turn_input(self.id, text, items)
        if id is not None and (not isinstance(id, str) or not id.strip()):
            raise SessionError(
                f"session {self.id!r}: a turn id must be a non-empty string, got {id!r}",
                session_id=self.id,
            )
        try:
            options = checked_model_options(model_options)
        except ValidationError as exc:
            lines = "\n".join(f"  - {p}" for p in exc.problems)
            raise SessionError(
                f"session {self.id!r}: turn() got invalid model_options:\n{lines}",
                session_id=self.id,
            ) from None
        wanted = None
        if output is not None:
            wanted = build_output(output, output_retries, session_id=self.id)
        return Turn(
            self._runtime,
            text,
            items=items,
            turn_id=id,
            model_options=options,
            output=wanted,
        )

    async def drain(
        self, *, on_result: Callable[[TurnResult], object] | None = None
    ) -> list[TurnResult]:
        """Run the session's queued input (:meth:`lash.LashCore.enqueue`, ``EnqueueMessages``
        directives, finished processes), one turn per input, oldest first, until none is left;
        return the results. Several processes may drain one session: each input is consumed
        once, by the turn whose commit settles it.

        ``on_result(result)``, when given, is called with each turn's result as soon as the
        turn is committed, before the next one starts (to report progress: ``lash sessions
        drain`` prints each answer with it). What it returns is ignored; what it raises ends the
        drain (the turn is committed already).
        """
        runtime = self._runtime
        runtime.refuse_reentry("drain")
        runtime.require_open()
        results: list[TurnResult] = []
        while True:
            result = await Turn(runtime, "", from_queue=True).run_queued()
            if result is None:
                return results
            results.append(result)
            if on_result is not None:
                on_result(result)

    async def run_pending(self) -> list[TurnResult]:
        """The lash 0.1 name of :meth:`drain`."""
        self._runtime.refuse_reentry("run_pending")
        return await self.drain()

    async def inputs(self, *, settled: bool = False) -> list[PendingInput]:
        """The session's queued input, oldest first (``settled``: completed and cancelled too)."""
        return await self.core.store.list_inputs(self.id, settled=settled)

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
        """Change the session's configuration: ``provider``, ``model``, ``prompt_layers``,
        ``plugin_options`` (merged per plugin) and ``model_options`` (a mapping of
        :class:`lash.ModelOptions` fields, or an instance's set fields, merged field by field
        into the session's; a field given as ``None`` is unset; ``extra`` merges per key).

        When something changes, ``mutate_session_config`` runs as a chain (each plugin may amend
        the proposal or reject it by raising :class:`lash.ConfigRejected`), the result is
        validated (provider exists, plugin options fit their classes), committed durably, and
        ``session_config_changed`` is broadcast. Returns the configuration in force. Plugin
        options apply at once: plugins read them when they need them.

        :raises ConfigRejected: naming the plugin that rejected the change and why; the session
            is left untouched.
        """
        check_patch(self.id, patch)
        config = self._runtime.image.config
        if "protocol_options" not in patch and apply_patch(config, patch) == config:
            return config  # nothing changes: no lease, no hook, no commit
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
        catalog generation. :raises SessionError: naming unknown tools, or for changes that
        are not a mapping of tool names to ``True`` or ``False``."""
        check_membership(self.id, changes)
        await self._runtime.list_sources_for(changes)
        async with self._runtime.execute("set_tool_membership"):
            return self._runtime.change_membership(changes)

    async def enqueue_command(
        self, name: str, *, key: str, args: Mapping[str, Any] | None = None
    ) -> QueuedCommand:
        """Queue a durable session command (``refresh_tool_catalog``, ``reset``, or one a plugin
        registers), applied before the next turn (or by :meth:`apply_commands`): the same as
        :meth:`lash.LashCore.enqueue_command`. ``key`` makes it idempotent: a key already
        queued or applied returns that command. :raises SessionError: for an empty key or an
        unknown command."""
        runtime = self._runtime
        runtime.refuse_reentry("enqueue_command")
        runtime.require_open()
        return await self.core.enqueue_command(self.id, name, key=key, args=args)

    async def apply_commands(self) -> int:
        """Apply queued commands now (a turn does this first anyway); returns how many ran."""
        async with self._runtime.execute("apply_commands"):
            return self._runtime.commands_applied

    def __repr__(self) -> str:
        image = self._runtime.image
        return f"<Session {self.id!r} revision={image.revision} turns={image.turns}>"


__all__ = ["ParkedSession", "Session"]
