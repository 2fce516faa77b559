"""Sessions: open/resume, per-plugin options and state, turns, the per-turn commit."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from lash._contract.graph import FrameBoundary, SessionGraph, new_node_id
from lash._contract.serialization import structure, unstructure, validation_problems
from lash._contract.types import Message, PromptContribution, PromptView, SessionConfig, Usage
from lash._kernel.operations import SessionAdmin
from lash._kernel.state import KERNEL_STATE_KEY, KernelState
from lash._kernel.turn import Turn
from lash._plugins.options import build_options
from lash._store.protocol import CommitDelta, Lease, SessionRecord
from lash._tools.tool import ToolContext
from lash.errors import (
    LeaseLost,
    PluginError,
    RevisionConflict,
    SessionBusy,
    SessionError,
    UnknownSession,
)

if TYPE_CHECKING:
    from lash._contract.providers import Provider
    from lash._kernel.core import LashCore

T = TypeVar("T")

_SLOT_ORDER = {"system": 0, "context": 1, "reminder": 2}
_handles = itertools.count(1)


@attrs.frozen
class ParkedSession:
    """What :meth:`Session.park` returns: enough to reopen the session later."""

    session_id: str
    revision: int
    options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    __module__ = "lash"


async def _through_cancellation(commit: Coroutine[Any, Any, int]) -> tuple[int, bool]:
    """Await a store's commit to its end, even when the caller is cancelled meanwhile; return
    the revision and whether a cancellation arrived.

    A commit on its way may be durable already (SQLite runs what it was sent), and the
    session's memory must say what the store holds. So a cancellation that arrives during the
    commit waits for it: if the commit failed, the cancellation is raised at once (nothing was
    committed; the caller undoes its changes); if it succeeded, the caller records the commit
    and :meth:`Session._exclusive` raises the cancellation when the operation ends.
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


class Session(SessionAdmin):
    """One conversation: an append-only graph, per-plugin options and state, committed per turn.

    Get one with ``core.session(id, options=...)``, then ``await session.open()`` (resume, or
    start if new) or ``await session.open_fresh()`` (start over). Hooks receive the session as
    their :class:`lash.SessionView`.
    """

    __module__ = "lash"

    def __init__(
        self,
        core: LashCore,
        session_id: str,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        is_root: bool = True,
    ) -> None:
        if not session_id:
            raise SessionError("a session id must be a non-empty string", session_id=session_id)
        self.core = core
        self._id = session_id
        self._is_root = is_root
        self._overrides = {k: dict(v) for k, v in (options or {}).items()}
        self._graph: SessionGraph = SessionGraph()
        self._revision: int = 0
        self._turns: int = 0
        self._fresh: bool = False
        self._opened: bool = False
        self._config: SessionConfig = SessionConfig(
            provider=core.config.provider, model=core.config.model
        )
        self._config_dirty: bool = False
        self._protocol_options: dict[str, Any] = {}
        self._protocol_options_committed: dict[str, Any] | None = None
        self._pending: list[str] = []
        self._pending_dirty: bool = False
        self._usage: dict[str, Usage] = {}
        self._options: dict[str, Any] = {}
        self._states: dict[str, Any] = {}
        self._snapshots: dict[str, Any] = {}
        self._turn_lock: asyncio.Lock = asyncio.Lock()
        self._cancel_after_commit = False  # see _exclusive
        self._running: set[Turn] = set()
        self._last_catalog: list[str] = []
        self._lease: Lease | None = None
        # Usage of direct completions (session.complete) not yet committed, by source.
        self._pending_usage: dict[str, Usage] = {}
        self._compact_threshold: int | None = None
        # A lease owner per Session object: two handles on one session never share a lease.
        self._owner = f"{core.owner_id}/{next(_handles)}"

    # -- SessionView -----------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    @property
    def is_root(self) -> bool:
        return self._is_root

    @property
    def config(self) -> SessionConfig:
        return self._config

    @property
    def revision(self) -> int:
        """The head revision this session last read or committed (0: never committed)."""
        return self._revision

    @property
    def turns(self) -> int:
        """How many turns have been committed."""
        return self._turns

    @property
    def protocol_options(self) -> Mapping[str, Any]:
        """The protocol's turn options for this session (set by the protocol at materialization)."""
        return self._protocol_options

    def set_protocol_options(self, **values: Any) -> None:
        """Set protocol turn options (the protocol plugin calls this in ``materialize_session``);
        they are committed with the session's next commit."""
        self._protocol_options.update(values)

    def options(self, cls: type[T]) -> T:
        """The validated per-session options instance of the plugin that declared ``cls``."""
        plugin = self.core._options_owner(cls)
        try:
            return self._options[plugin]  # type: ignore[no-any-return]
        except KeyError:
            raise SessionError(
                f"session {self.id!r} is not open yet: options are validated at open",
                session_id=self.id,
            ) from None

    def state(self, cls: type[T]) -> T:
        """The per-session state of the plugin that declared ``cls`` (persisted every turn)."""
        plugin = self.core._state_owner(cls)
        try:
            return self._states[plugin]  # type: ignore[no-any-return]
        except KeyError:
            raise SessionError(
                f"session {self.id!r} is not open yet: state is restored at open",
                session_id=self.id,
            ) from None

    @property
    def _kernel(self) -> KernelState:
        kernel: KernelState = self._states[KERNEL_STATE_KEY]
        return kernel

    def _require_open(self) -> None:
        if not self._opened:
            raise SessionError(
                f"session {self.id!r} is not open; call `await session.open()` first",
                session_id=self.id,
            )

    def _build_options(self, configured: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Every plugin's options for this session: host config, then the options given when
        the session handle was made, then options set with ``configure()`` (durable)."""
        core = self.core
        built: dict[str, Any] = {}
        for plugin in core._loaded_plugins():
            meta = plugin.info.meta
            if meta.options is not None:
                data = {**core.config.options.get(plugin.name, {})}
                data.update(self._overrides.get(plugin.name, {}))
                data.update(configured.get(plugin.name, {}))
                built[plugin.name] = build_options(plugin.name, meta.options, data)
        unknown = (set(self._overrides) | set(configured)) - set(built)
        if unknown:
            raise SessionError(
                f"session {self.id!r}: options given for {sorted(unknown)}, which are not "
                "enabled plugins declaring options",
                session_id=self.id,
            )
        return built

    @property
    def nodes(self) -> tuple[Any, ...]:
        """The nodes of the active agent frame, boundary first (what the model's context is
        built from; earlier frames are in the store: ``core.store.load(id, full=True)``)."""
        return tuple(self._graph.nodes)

    @property
    def pending(self) -> tuple[str, ...]:
        """Input queued for later turns (by ``EnqueueMessages`` directives)."""
        return tuple(self._pending)

    # -- lifecycle -------------------------------------------------------------------------

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
        if self._opened:
            raise SessionError(f"session {self.id!r} is already open", session_id=self.id)
        # Fail fast on a missing protocol or provider, before any I/O.
        self.core._protocol  # noqa: B018 - resolving it raises ProtocolMissing
        self._provider()
        store = self.core.store
        self._lease = await self._acquire(wait)
        try:
            record = await store.load(self.id)
            if record is None and must_exist:
                raise UnknownSession(self.id)
            self._fresh = fresh
            await self._materialize(None if fresh else record)
            if fresh:
                self._revision = record.revision if record is not None else 0
        except BaseException:
            await self._release()
            raise
        await self.core.hooks.broadcast("session_opened", session=self)
        if record is not None and not fresh:
            await self.core.hooks.broadcast("session_restored", session=self)
        return self

    async def _acquire(self, wait: float) -> Lease:
        store = self.core.store
        deadline = time.monotonic() + wait
        while True:
            try:
                return await store.acquire_lease(self.id, self._owner, ttl=self.core.lease_ttl)
            except SessionBusy:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def _release(self) -> None:
        lease, self._lease = self._lease, None
        self._opened = False
        if lease is not None:
            await self.core.store.release_lease(lease)

    async def _keep_lease(self) -> None:
        """Renew the lease while a turn runs, so a long turn does not lose it."""
        ttl = self.core.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            if self._lease is not None:
                self._lease = await self.core.store.renew_lease(self._lease, ttl=ttl)

    async def _materialize(self, record: SessionRecord | None) -> None:
        core = self.core
        if record is not None:
            config = record.config
        else:
            config = SessionConfig(provider=core.config.provider, model=core.config.model)
        self._options = self._build_options(config.plugin_options)
        saved = record.plugin_states if record is not None else {}
        declared: list[tuple[str, type]] = [(KERNEL_STATE_KEY, KernelState)]
        declared += [
            (p.name, p.info.meta.state) for p in core._loaded_plugins() if p.info.meta.state
        ]
        self._states = {}
        self._snapshots = {}
        # States saved for plugins that are not enabled now are left untouched in the store
        # (commits only write states that changed), ready for when the plugin returns.
        for name, cls in declared:
            if name in saved:
                try:
                    self._states[name] = structure(saved[name], cls)
                except Exception as exc:
                    problems = validation_problems(exc, saved[name], f"state.{name}")
                    raise SessionError(
                        f"session {self.id!r}: saved state of plugin {name!r} no longer "
                        f"fits its state class: {'; '.join(problems) or exc}",
                        session_id=self.id,
                    ) from None
                self._snapshots[name] = saved[name]
            else:
                self._states[name] = cls()
        self._graph = SessionGraph()
        self._config = config
        self._pending_usage = {}
        if record is not None:
            self._graph.extend(record.nodes)
            self._revision = record.revision
            self._turns = record.turns
            self._protocol_options = dict(record.protocol_options)
            self._protocol_options_committed = dict(record.protocol_options)
            self._pending = list(record.pending)
            self._usage = dict(record.usage)
            self._config_dirty = False
        else:
            self._revision = 0
            self._turns = 0
            self._protocol_options = {}
            self._protocol_options_committed = None
            self._pending = []
            self._usage = {}
            self._config_dirty = True
        # Record which plugin provides each tool now (committed with the next commit), so a
        # tool whose plugin later goes away is still known, as an orphan.
        available = core._available_tools()
        self._kernel.refresh({name: plugin for name, (plugin, _) in available.items()})
        await core.hooks.collect(
            "materialize_session",
            bind=lambda name: {"options": self._options.get(name)},
            session=self,
            is_root=self.is_root,
        )
        # Protocol options set with configure() win over the defaults plugins apply at open.
        self._protocol_options.update(self._config.protocol_options)
        self._opened = True

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """The session's turn lock, held by every turn and operation (one at a time).

        A cancellation that arrived while the block's commit was on its way was held back
        until the commit ended (:func:`_through_cancellation`); once the block has recorded
        the commit, it is raised here.
        """
        async with self._turn_lock:
            try:
                yield
            finally:
                cancelled, self._cancel_after_commit = self._cancel_after_commit, False
            if cancelled:
                raise asyncio.CancelledError

    async def close(self) -> None:
        """Close the session: wait for a running turn to commit, then release the lease."""
        async with self._exclusive():
            if not self._opened and self._lease is None:
                return
            await self._release()
        await self.core.hooks.broadcast("session_closed", session=self)

    async def park(self) -> ParkedSession:
        """Release the lease and the session's memory (graph, options, state); return a small
        handle that :meth:`lash.LashCore.resume` reopens from the store."""
        async with self._exclusive():
            if not self._opened:
                raise SessionError(f"session {self.id!r} is not open", session_id=self.id)
            await self._release()
            handle = ParkedSession(self.id, self._revision, self._overrides)
            self._graph = SessionGraph()
            self._states = {}
            self._snapshots = {}
            self._options = {}
        await self.core.hooks.broadcast("session_parked", session=self)
        return handle

    async def __aenter__(self) -> Session:
        if not self._opened:
            await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- turns -----------------------------------------------------------------------------

    def turn(self, text: str, *, items: Sequence[Any] = ()) -> Turn:
        """A new turn with this input; ``await turn.run()`` or ``async for e in turn.stream()``.

        ``items`` are optional structured input (JSON-ready values: attachments, form data...)
        recorded on the user message node with the text; plugins read them from
        ``turn.items`` or the node, and shape what the model sees (``transform_prompt_view``).
        """
        if not self._opened:
            raise SessionError(
                f"session {self.id!r} is not open; call `await session.open()` first",
                session_id=self.id,
            )
        return Turn(self, text, items=tuple(items))

    async def run_pending(self) -> list[Any]:
        """Run queued input (from ``EnqueueMessages``), one turn each, oldest first."""
        results = []
        while self._pending:
            text = self._pending.pop(0)
            self._pending_dirty = True
            results.append(await self.turn(text).run())
        return results

    def cancel_running_turns(self) -> int:
        """Stop running turns cooperatively; each commits as ``stopped(cancelled)``.
        Returns how many turns were asked to stop."""
        running = list(self._running)
        for turn in running:
            turn.cancel()
        return len(running)

    def usage_report(self) -> dict[str, Any]:
        """Committed token usage: ``{"total": {...}, "by_source": {source: {...}}}``."""
        total = Usage()
        for usage in self._usage.values():
            total = total + usage
        return {
            "total": unstructure(total),
            "by_source": {k: unstructure(v) for k, v in sorted(self._usage.items())},
        }

    # -- kernel internals used by turns ------------------------------------------------------

    def _ensure_frame(self, turn: Turn) -> None:
        if self._graph.frame_id is None:
            frame_id = uuid.uuid4().hex
            turn._append(
                FrameBoundary(
                    id=new_node_id(),
                    parent_id=None,
                    frame_id=frame_id,
                    turn=turn.index,
                    previous_frame_id=None,
                    reason="root",
                )
            )

    async def _commit_turn(self, nodes: list[Any], usage: Usage) -> int:
        """Commit a turn: its nodes, its usage and any direct-completion usage it caused."""
        by_source = dict(self._pending_usage)
        if usage != Usage():
            by_source["turn"] = by_source.get("turn", Usage()) + usage
        self._pending_usage.clear()
        return await self._commit(nodes, by_source, turns=1)

    async def _commit(self, nodes: list[Any], usage: Mapping[str, Usage], *, turns: int) -> int:
        """One atomic commit of everything that changed since the last one."""
        states: dict[str, Any] = {}
        for plugin, state in self._states.items():
            snapshot = unstructure(state)
            if self._snapshots.get(plugin) != snapshot:
                states[plugin] = snapshot
        protocol_options = None
        if self._protocol_options != self._protocol_options_committed:
            protocol_options = dict(self._protocol_options)
        delta = CommitDelta(
            nodes=tuple(nodes),
            plugin_states=states,
            config=self._persistable_config() if self._config_dirty else None,
            protocol_options=protocol_options,
            pending=tuple(self._pending) if self._pending_dirty else None,
            usage={k: v for k, v in usage.items() if v != Usage()},
            turns=turns,
            replace=self._fresh,
        )
        lease = self._lease
        if lease is None:
            raise SessionError(f"session {self.id!r} is not open", session_id=self.id)
        store = self.core.store
        try:
            if lease.remaining() < self.core.lease_ttl / 2:
                lease = self._lease = await store.renew_lease(lease, ttl=self.core.lease_ttl)
            revision, cancelled = await _through_cancellation(
                store.commit(self.id, lease=lease, expected_revision=self._revision, delta=delta)
            )
        except (LeaseLost, RevisionConflict):
            # Another writer owns the session now: this object's memory is stale. Close it;
            # reopening reloads what the store holds.
            self._lease = None
            self._opened = False
            raise
        # Only after the store accepted the commit does the in-memory head move.
        self._revision = revision
        self._turns += turns
        self._fresh = False
        self._config_dirty = False
        self._pending_dirty = False
        self._snapshots.update(states)
        if protocol_options is not None:
            self._protocol_options_committed = protocol_options
        for source, amount in delta.usage.items():
            self._usage[source] = self._usage.get(source, Usage()) + amount
        self._cancel_after_commit |= cancelled
        return revision

    def _persistable_config(self) -> SessionConfig:
        """The config as stored: option fields marked secret are dropped (secrets are never
        persisted; they come back from host config or the environment at open)."""
        config = self._config
        if not config.plugin_options:
            return config
        stripped: dict[str, dict[str, Any]] = {}
        for plugin, values in config.plugin_options.items():
            secret = self.core._secret_option_fields(plugin)
            stripped[plugin] = {k: v for k, v in values.items() if k not in secret}
        return attrs.evolve(config, plugin_options=stripped)

    async def _resolve_catalog(self) -> list[str]:
        core = self.core
        entries = tuple(e for e in self.tools() if e.member and not e.orphaned)
        hidden: set[str] = set()
        for _plugin, names in await core.hooks.collect(
            "filter_tool_catalog", session=self, catalog=entries
        ):
            hidden.update(names)
        self._last_catalog = [e.name for e in entries if e.name not in hidden]
        return self._last_catalog

    async def _system_prompt(self, catalog: list[str]) -> str:
        members = set(catalog)
        fragments: list[tuple[int, int, int, str]] = []
        results = await self.core.hooks.collect("prompt_contributions", session=self)
        for position, (plugin, value) in enumerate(results):
            items = [value] if isinstance(value, PromptContribution) else list(value)
            for item in items:
                if not isinstance(item, PromptContribution):
                    raise PluginError(
                        f"plugin {plugin!r} returned {type(item).__name__} from "
                        "prompt_contributions; return lash.PromptContribution objects",
                        plugin=plugin,
                        hook="prompt_contributions",
                    )
                if item.requires_tool is not None and item.requires_tool not in members:
                    continue
                fragments.append((_SLOT_ORDER[item.slot], item.priority, position, item.text))
        layers = list(self._config.prompt_layers)
        layers += [text for *_, text in sorted(fragments)]
        return "\n\n".join(layers)

    async def prompt_preview(self) -> PromptView:
        """The prompt the next model call would get: system prompt (layers and plugin
        fragments), the active frame's messages, and the tool catalog, after
        ``transform_prompt_view``. Nothing is recorded."""
        catalog = await self._resolve_catalog()
        system = await self._system_prompt(catalog)
        messages: list[Message] = [Message("system", system)] if system else []
        messages += self._graph.messages()
        view = PromptView(tuple(messages), tuple(catalog))
        result: PromptView = await self.core.hooks.chain(
            "transform_prompt_view", key="view", value=view, session=self
        )
        return result

    def _provider(self) -> tuple[str, Provider, str]:
        return self.core._provider_for(self._config)

    def _tool_context(self, call_id: str, turn: Turn) -> ToolContext:
        # One event per call: a tool timing out sets its own event, never its siblings'.
        cancelled = asyncio.Event()
        turn._call_events.append(cancelled)
        if turn._cancel_requested:
            cancelled.set()
        return ToolContext(session=self, call_id=call_id, cancelled=cancelled)

    def __repr__(self) -> str:
        return f"<Session {self.id!r} revision={self._revision} turns={self._turns}>"


__all__ = ["Session"]
