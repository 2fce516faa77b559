"""The services hooks and tools receive: :class:`SessionView`, :class:`TurnView`,
:class:`ToolContext` and, for the turn protocol, :class:`TurnDriver`.

Plugins never get the host's :class:`lash.Session`: a hook or tool that could call
``session.configure()`` or start a turn of its own session during a turn would wait for the turn
that is running it. These views offer what plugins need instead, and nothing that waits on the
turn: a change made through a view while a turn (or another session operation) runs becomes part
of *that* operation's atomic commit; made outside any operation, it commits on its own.

The views are thin: each forwards to a backend the kernel implements (:class:`SessionBackend`,
:class:`TurnBackend`), so the contract plugins see is written here, once, and the kernel is free
to change behind it. Only the kernel builds views (the testing kit builds a stand-in session with
:class:`lash.testing.StubSession`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import attrs

from lash._contract.annotations import resolve_here

if TYPE_CHECKING:
    # Types only: hookspecs (and with it `lash plugins`, `lash --help`) loads this module, and
    # must not pay for the graph, event and provider classes, nor for asyncio (with ssl, sockets
    # and threads behind it), which is imported where a context is built.
    import asyncio

    from lash._contract.events import StopReason, TurnResult
    from lash._contract.graph import GraphNode, PluginNode
    from lash._contract.processes import SessionProcesses
    from lash._contract.providers import ModelResponse
    from lash._contract.turn_types import Message, SessionConfig, ToolCatalogEntry
    from lash._contract.types import ToolCall, ToolResult

T = TypeVar("T")

__all__ = [
    "SessionBackend",
    "SessionView",
    "ToolContext",
    "TurnBackend",
    "TurnDriver",
    "TurnView",
]


class SessionBackend(Protocol):
    """What a :class:`SessionView` forwards to (implemented by the kernel, and by the testing
    kit's stand-in session)."""

    @property
    def id(self) -> str: ...

    @property
    def is_root(self) -> bool: ...

    @property
    def config(self) -> SessionConfig: ...

    @property
    def revision(self) -> int: ...

    @property
    def turns(self) -> int: ...

    def active_nodes(self) -> Sequence[GraphNode]: ...

    def options_of(self, cls: type[T]) -> T: ...

    def state_of(self, cls: type[T]) -> T: ...

    def catalog(self) -> tuple[ToolCatalogEntry, ...]: ...

    async def set_tool_membership(self, changes: Mapping[str, bool]) -> int: ...

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        source: str,
        model: str | None,
        options: Mapping[str, Any] | None,
    ) -> ModelResponse: ...

    async def record(self, kind: str, data: Any) -> PluginNode: ...

    async def emit(self, type: str, data: Any) -> None: ...

    def usage_report(self) -> dict[str, Any]: ...

    def child(self, **spec: Any) -> Any: ...


class SessionView:
    """A session as hooks and tools see it: what it holds, and the changes a plugin may make.

    Every hook that concerns a session receives one (``session`` argument, ``turn.session``,
    ``context.session``). Reads (``id``, ``config``, ``nodes``, ``options(cls)``,
    ``state(cls)``, ``tools()``) reflect the session as the running operation sees it. Changes
    (``set_tool_membership``, ``complete``'s usage, ``record``, and any change to a ``state(cls)``
    object) made while a turn or another session operation runs are committed with **that**
    operation, atomically; made when nothing runs, they commit on their own. Nothing here waits
    for the turn that is running the calling hook or tool.
    """

    __slots__ = ("_backend",)

    def __init__(self, backend: SessionBackend) -> None:
        self._backend = backend

    @property
    def id(self) -> str:
        """The session id."""
        return self._backend.id

    @property
    def is_root(self) -> bool:
        """``False`` for child sessions (sub-agents)."""
        return self._backend.is_root

    @property
    def config(self) -> SessionConfig:
        """The configuration in force (provider, model, prompt layers, plugin options)."""
        return self._backend.config

    @property
    def revision(self) -> int:
        """The head revision the session is at (0: never committed)."""
        return self._backend.revision

    @property
    def turns(self) -> int:
        """How many turns have been committed."""
        return self._backend.turns

    @property
    def nodes(self) -> tuple[GraphNode, ...]:
        """The nodes of the active agent frame, boundary first, including those the running
        turn has added so far (what the model's context is built from)."""
        return tuple(self._backend.active_nodes())

    def options(self, cls: type[T]) -> T:
        """The validated per-session options instance of the plugin that declared ``cls``."""
        return self._backend.options_of(cls)

    def state(self, cls: type[T]) -> T:
        """The per-session state of the plugin that declared ``cls``: a mutable object whose
        changes are snapshotted into the commit of the operation that made them."""
        return self._backend.state_of(cls)

    def tools(self) -> tuple[ToolCatalogEntry, ...]:
        """The session's tool catalog: every tool with its plugin and membership, orphaned tools
        (whose plugin is gone) last, as non-members."""
        return self._backend.catalog()

    async def set_tool_membership(self, changes: Mapping[str, bool]) -> int:
        """Make tools members (offered to the model) or not; returns the catalog generation.

        During a turn the change is part of the turn's commit and the turn's next model call
        sees the new catalog. :raises SessionError: naming unknown tools.
        """
        return await self._backend.set_tool_membership(changes)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        source: str,
        model: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> ModelResponse:
        """A direct completion with the session's provider (no tools, nothing recorded in the
        graph); its usage is committed under ``source`` with the running operation, its token
        counts taken as a turn's model call takes them (a whole float is its int).

        :raises lash.ProviderError: the provider's, or for token counts that are not ints in 64
            bits (naming the provider and the count; nothing of the completion is committed).
        :raises lash.SessionError: before the provider is called, for ``messages`` that are
            not a non-empty list of :class:`lash.Message`, a ``source`` that is not a
            non-empty string, a ``model`` that is not a string or ``None``, ``options`` that
            are not a mapping or ``None``.
        """
        return await self._backend.complete(messages, source=source, model=model, options=options)

    async def record(self, kind: str, data: Any = None) -> PluginNode:
        """Append a :class:`lash.PluginNode` of ``kind`` (JSON-ready ``data``) to the history,
        attributed to the calling plugin; the model does not see it."""
        return await self._backend.record(kind, data)

    async def emit(self, type: str, data: Any = None) -> None:
        """Log a plugin event (``type``, JSON-ready ``data``) for the session's observers
        (``core.observe``), attributed to the calling plugin: they see it at once, live, and in
        the event log once the running operation commits (outside any operation, it commits on
        its own)."""
        await self._backend.emit(type, data)

    def usage_report(self) -> dict[str, Any]:
        """Committed token usage: ``{"total": {...}, "by_source": {source: {...}}}`` (a child
        session's usage is under ``child:<id>``)."""
        return self._backend.usage_report()

    def child(
        self,
        *,
        id: str | None = None,
        tools: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        inherit: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> Any:
        """A handle (a :class:`lash.Session`) on a child session of this one: a sub-agent with
        its own history, starting from this session's configuration and per-handle options
        (``inherit=False``: the host's), with ``config`` (a ``configure()`` patch) and
        ``options`` on top, and restricted to the ``tools`` allowlist when given. Open it, run
        its turns and close it::

            async with session.child(tools=["search"]) as child:
                result = await child.turn("Find the release date").run()

        Its turns commit on their own (not with the running turn); each adds its usage to
        this session's usage report under ``child:<id>``. See
        :meth:`lash.LashCore.child_session`.
        """
        return self._backend.child(
            id=id, tools=tools, options=options, inherit=inherit, config=config
        )

    def __repr__(self) -> str:
        return f"<SessionView {self.id!r} revision={self.revision}>"


class TurnView:
    """The turn that ``before_turn`` / ``checkpoint`` / ``after_turn`` / ``turn_finalized`` /
    ``turn_persisted`` see: its session, input, index, the nodes it added so far, and (from
    ``after_turn`` on) its result."""

    __slots__ = ("_nodes", "id", "index", "input", "items", "result", "session")

    def __init__(
        self,
        session: SessionView,
        input: str,
        index: int,
        *,
        items: tuple[Any, ...] = (),
        nodes: Sequence[GraphNode] = (),
        id: str = "",
    ) -> None:
        #: The session the turn runs in.
        self.session = session
        #: The turn's id in its session (``session.turn(text, id=...)``, else a generated one).
        self.id = id
        #: The user input.
        self.input = input
        #: The turn's number in the session (1 for the first turn).
        self.index = index
        #: Structured input given with the text (``session.turn(text, items=...)``).
        self.items = items
        #: How the turn ended: ``None`` in ``before_turn``; set for ``after_turn`` and later.
        self.result: TurnResult | None = None
        self._nodes = nodes

    @property
    def nodes(self) -> tuple[GraphNode, ...]:
        """The nodes this turn has added so far (its user message first)."""
        return tuple(self._nodes)

    def __repr__(self) -> str:
        return f"<TurnView {self.session.id!r} index={self.index}>"


def _new_event() -> asyncio.Event:
    import asyncio  # see the note at the imports

    return asyncio.Event()


def check_timeout(value: float | None) -> None:
    if value is None or (type(value) is float and value > 0):  # (the common case, first)
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {value!r}")


@attrs.define
class ToolContext:
    """What a tool learns about the call in progress.

    A tool receives it by declaring a parameter annotated ``lash.ToolContext`` (whatever its
    name); that parameter is left out of the JSON schema. ``session`` is the session's
    :class:`lash.SessionView`; ``state(cls)`` the calling plugin's per-session state, committed
    with the turn. ``cancelled`` is set when the call is cancelled or abandoned after its
    timeout: a long-running tool checks :attr:`is_cancelled` (or calls
    :meth:`raise_if_cancelled`) to stop early, which matters most for sync tools, since a thread
    cannot be interrupted. ``timeout`` is the default limit, in seconds, for tools that set none.
    ``processes`` starts and watches background processes of the session (started processes
    are written in the turn's commit).
    """

    session: SessionView
    call_id: str
    timeout: float = attrs.field(default=60.0, kw_only=True)
    cancelled: asyncio.Event = attrs.field(factory=_new_event, kw_only=True)
    _processes: SessionProcesses | None = attrs.field(
        default=None, kw_only=True, alias="processes", repr=False
    )

    def __attrs_post_init__(self) -> None:
        check_timeout(self.timeout)

    @property
    def session_id(self) -> str:
        """The id of the session the call belongs to."""
        return self.session.id

    @property
    def is_cancelled(self) -> bool:
        """Whether the call was cancelled (or timed out) and its result will not be used."""
        return self.cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`asyncio.CancelledError` if the call was cancelled."""
        if self.cancelled.is_set():
            import asyncio  # see the note at the imports

            raise asyncio.CancelledError(f"tool call {self.call_id} was cancelled")

    def state(self, cls: type[T]) -> T:
        """The per-session state of the plugin that declared ``cls`` (see ``PluginMeta.state``)."""
        return self.session.state(cls)

    @property
    def processes(self) -> SessionProcesses:
        """The background processes of this session (:class:`lash.SessionProcesses`): start
        one (written in the turn's commit), get, list, wait for or cancel one of them.

        :raises SessionError: when the context was built without them (a stand-in context)."""
        if self._processes is None:
            from lash.errors import SessionError

            raise SessionError(
                f"session {self.session.id!r}: this tool context has no processes (built "
                "outside a turn); pass processes=... to build one",
                session_id=self.session.id,
            )
        return self._processes


class TurnStopped(Exception):
    """Raised by :meth:`TurnDriver.stop` inside a protocol to end the turn as ``stopped``."""

    def __init__(self, reason: StopReason, detail: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(reason)


class TurnBackend(Protocol):
    """What a :class:`TurnDriver` forwards to (the kernel's turn)."""

    async def call_model(self) -> ModelResponse: ...

    async def run_tool_calls(self, calls: Sequence[ToolCall]) -> list[ToolResult]: ...

    def finish(self, text: str) -> None: ...

    async def checkpoint(self, kind: str) -> bool: ...


class TurnDriver:
    """What a protocol plugin drives a turn with.

    ``await call_model()`` makes one model call over the current context and records the
    assistant message; ``await run_tool_calls(calls)`` runs the calls of one assistant message
    concurrently and records their results in emission order; ``finish(text)`` ends the turn
    completed; ``stop(reason)`` ends it stopped. A protocol reads its settings from its plugin's
    typed options: ``turn.session.options(MyOptions)``.
    """

    __slots__ = ("_backend", "session")

    def __init__(self, backend: TurnBackend, session: SessionView) -> None:
        self._backend = backend
        #: The session the turn runs in.
        self.session = session

    async def call_model(self) -> ModelResponse:
        """Call the model once over the current context; stream its text as events; record the
        assistant message (with its tool calls and usage) and return the whole response.

        In a structured-output turn (``session.turn(text, output=...)``) the kernel calls the
        model again while the answer does not validate (sending the problems back, within the
        turn's ``output_retries``; then the turn fails): the response returned then is either
        one that calls tools (run them as usual) or the accepted answer, without tool calls,
        whose text is the answer as JSON."""
        return await self._backend.call_model()

    async def run_tool_calls(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Run the calls of one assistant message concurrently, through the tool-call hooks;
        record calls and results in emission order and return the (full) results."""
        return await self._backend.run_tool_calls(calls)

    def finish(self, text: str) -> None:
        """Set the turn's final answer (the outcome is ``completed`` when the protocol returns)."""
        self._backend.finish(text)

    async def checkpoint(self) -> bool:
        """The turn's "before completion" checkpoint: call it when the model answered without
        tool calls, before finishing. Input queued for the running turn (``active_turn``) joins
        here, and ``checkpoint`` hooks may add messages; returns True when new messages joined
        the turn (then call the model again instead of finishing). After each round of tool
        calls, :meth:`run_tool_calls` runs the "after tools" checkpoint itself."""
        return await self._backend.checkpoint("before_completion")

    def stop(self, reason: StopReason, detail: str | None = None) -> NoReturn:
        """End the turn now with outcome ``stopped(reason)`` (raises; does not return)."""
        raise TurnStopped(reason, detail)


for _cls in (SessionView, TurnView, ToolContext, TurnDriver):
    _cls.__module__ = "lash"

resolve_here(globals())
