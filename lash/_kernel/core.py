"""``LashCore``: one host's composition of plugins, store and provider."""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.config_check import options_problems
from lash._contract.modeloptions import ModelOptions
from lash._contract.modeloptions_check import model_options as checked_model_options
from lash._contract.serialization import describe_value, to_data
from lash._contract.types import Usage
from lash._kernel import approvals as _approvals
from lash._kernel.approvals import ApprovalAnswer, Decision, PendingApproval
from lash._kernel.children import ChildSpec, check_tools, child_id
from lash._kernel.liveness import owner_id
from lash._kernel.mailbox import check_source, checked_input, items_problem
from lash._kernel.media import put_blobs, stage_items
from lash._kernel.observation import (
    EventHub,
    ObservationGap,
    ObservedEvent,
    SessionSnapshot,
    cursor_of,
    observe,
)
from lash._kernel.operations import BUILTIN_COMMANDS, check_command
from lash._kernel.plugin_ops import Operations
from lash._plugins.arguments import check_core_arguments
from lash._plugins.composition import DEFAULT_MODEL, Composition, compose
from lash._plugins.dispatch import HookDispatcher, MonitorAfter, MonitorBefore
from lash._plugins.hostconfig import HostConfig
from lash._plugins.loading import Builtins, PluginInfo
from lash._plugins.registry import Registry
from lash._store.ids import check_session_id
from lash._store.records import (
    CancelReceipt,
    CommandDraft,
    EventDraft,
    Ingress,
    InputCancellation,
    PendingInput,
    QueuedCommand,
    TurnRecord,
)
from lash.errors import LashError, SessionError

if TYPE_CHECKING:
    import asyncio

    from lash._kernel.processes import Processes
    from lash._kernel.runtime import SessionRuntime
    from lash._kernel.session import ParkedSession, Session
    from lash._store.protocol import Store

__all__ = ["DEFAULT_MODEL", "DEFAULT_STORE_PATH", "LashCore", "store_url"]

#: Where sessions are stored when no ``store`` is configured: an embedded SQLite file under the
#: project directory (the config file's directory, else the working directory).
DEFAULT_STORE_PATH = ".lash/lash.db"


def store_url(config: HostConfig) -> str:
    """The store URL a host with ``config`` uses: its ``store``, or the default embedded
    ``sqlite:///<project>/.lash/lash.db`` (project: the config file's directory, else the
    working directory)."""
    if config.store:
        return config.store
    project = Path(config.path).parent if config.path else Path.cwd()
    return f"sqlite:///{(project / DEFAULT_STORE_PATH).resolve()}?create_dirs=1"


class LashCore:
    """A host's plugin composition: its own plugin manager, registries and settings.

    Build one from config with :meth:`from_config`, or from explicit arguments::

        core = lash.LashCore(plugins=["standard", "scripted", my_plugin], builtins=())

    ``plugins`` is the allowlist and order: entry-point names or plugin objects (module, class or
    instance). ``builtins`` chooses the builtin plugins that load without being listed:
    ``"default"`` (all of them, unless disabled), a list of builtin names, or ``()`` (none: the
    core loads exactly ``plugins``); left unset, it is ``"default"`` when no allowlist is given
    and ``()`` when one is (an allowlist means what it says; the config key ``builtins`` sets it
    too). ``disable`` removes plugins by name (with ``LASH_DISABLE_PLUGINS`` and ``lash
    --disable``). Each core builds its own plugin composition: nothing is global, and nothing is
    discovered at import time.

    ``model_options`` (a :class:`lash.ModelOptions` or a mapping of its fields) are the host's
    layer of model options, over the config file's ``[model_options]`` field by field.

    ``hook_timeout`` (seconds) bounds every awaited hook implementation: one that runs longer
    fails as a :class:`lash.PluginError` naming its plugin and hook (a synchronous hook that
    blocks cannot be interrupted: that is the plugin's bug).

    Sessions are durable mailboxes shared by every process on the store. An execution (a turn,
    a change that commits) holds the session's lease for ``lease_ttl`` seconds, renewed while it
    runs; another one waits for it up to ``lease_wait`` seconds (then :class:`lash.SessionBusy`
    names the holder). A running turn reads cancellation requests from other processes every
    ``control_poll`` seconds, and input queued for it from another process joins at its first
    checkpoint ``input_poll`` seconds after it was queued (input queued in this process, at the
    next one). Observers in other processes poll the event log every ``observe_poll`` seconds.
    """

    __module__ = "lash"

    def __init__(
        self,
        plugins: Sequence[object | str] | None = None,
        *,
        builtins: Builtins = None,
        config: HostConfig | None = None,
        store: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        model_options: ModelOptions | Mapping[str, Any] | None = None,
        disable: Sequence[str] | None = None,
        autoload: bool | None = None,
        strict: bool | None = None,
        on_error: Callable[[LashError], None] | None = None,
        lease_ttl: float = 30.0,
        hook_timeout: float | None = None,
        lease_wait: float = 30.0,
        control_poll: float = 0.25,
        input_poll: float = 0.05,
        observe_poll: float = 0.02,
    ) -> None:
        check_core_arguments(locals())  # first: a bad argument must fail before it is used
        base = config if config is not None else HostConfig().with_env(os.environ)
        overrides: dict[str, Any] = {
            key: value
            for key, value in (
                ("store", store),
                ("provider", provider),
                ("model", model),
                ("autoload", autoload),
                ("strict", strict),
            )
            if value is not None
        }
        if options is not None:
            overrides["options"] = {**base.options, **options}
        if model_options is not None:  # checked above
            layer = checked_model_options(model_options)
            overrides["model_options"] = base.model_options.merged(layer)
        if disable is not None:
            # HostConfig's converter turns it into a tuple (a bare string being one name).
            overrides["disable"] = (
                *base.disable,
                *((disable,) if isinstance(disable, str) else disable),
            )
        if builtins is not None:
            overrides["builtins"] = builtins
        self.config: HostConfig = attrs.evolve(base, **overrides) if overrides else base
        #: The plugins, assembled: what the kernel reads about plugins comes from here.
        self.composition: Composition = compose(
            self.config, explicit=plugins, on_error=on_error, hook_timeout=hook_timeout
        )
        #: Problems that did not stop the build (unused option sections...), for ``lash doctor``.
        self.warnings: list[str] = self.composition.warnings
        self._store: Store | None = None
        # Sessions handed out, so aclose() can release their leases; weak: a session the host
        # dropped must not be kept alive by the core.
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        #: Seconds a session lease lasts; running turns renew it every third of that.
        self.lease_ttl = lease_ttl
        #: Seconds an execution waits for a session another one holds.
        self.lease_wait = lease_wait
        #: Seconds between reads of cancellation requests while a turn runs.
        self.control_poll = control_poll
        #: Seconds between reads of input queued for a running turn (at its checkpoints).
        self.input_poll = input_poll
        #: Seconds between reads of the event log by an observer with nothing new.
        self.observe_poll = observe_poll
        #: This core's identity as a lease owner (host, process and its start, random suffix).
        self.owner_id = owner_id()
        self._hub = EventHub()
        self._processes: Processes | None = None

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> LashCore:
        """Build a core from ``lash.toml`` / ``[tool.lash]`` (see :meth:`HostConfig.load`);
        keyword ``overrides`` are passed to the constructor and win over the file."""
        config = HostConfig.load(path, cwd=cwd)
        return cls(config=config, **overrides)

    @property
    def hooks(self) -> HookDispatcher:
        """The core's hook dispatcher (``add_monitor`` observes every hook call)."""
        return self.composition.hooks

    def add_hook_monitor(self, before: MonitorBefore, after: MonitorAfter) -> Callable[[], None]:
        """Observe every hook implementation this core calls (tracing, debugging, tests).

        ``before(hook, plugin, kwargs)`` runs before each implementation with the arguments it
        is given; ``after(hook, plugin, kwargs, result, exception)`` after it, with what it
        returned (awaited, for async implementations) or raised, before lash checks the result.
        Returns a function that removes the monitor. Dispatch is unchanged, and costs nothing
        extra while no monitor is installed. A monitor that raises fails the hook call: keep
        monitors simple.
        """
        return self.composition.hooks.add_monitor(before, after)

    @property
    def registry(self) -> Registry:
        """Everything the plugins registered (tools, providers, the protocol, stores...)."""
        return self.composition.registry

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin lash considered, in order: loaded first, then failed and disabled ones."""
        return list(self.composition.infos)

    @property
    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, in dispatch order."""
        return self.composition.plugin_names

    @property
    def operations(self) -> Operations:
        """The operations plugins registered (``register_operations``): ``list()``,
        ``info(name)``, ``await call(name, args, session_id=...)``."""
        return Operations(self)

    def plugin_options(self, name: str) -> Any:
        """The host-level (config) options instance of plugin ``name`` (``None`` if it has none).

        :raises KeyError: when no plugin of that name is loaded.
        """
        return self.composition.plugin(name).options

    # -- sessions ----------------------------------------------------------------------------

    def session(
        self,
        session_id: str,
        *,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Session:
        """A handle on session ``session_id``; ``options`` overrides plugin options by plugin name
        (validated at open). Call ``await session.open()`` or ``open_fresh()`` next.

        :raises SessionError: when ``session_id`` breaks the session id rule (see
            :func:`lash.store.check_session_id`)."""
        from lash._kernel.session import Session

        check_session_id(session_id)
        _check_options(session_id, "session()", options)
        session = Session(self, session_id, options=options)
        self._sessions.add(session)
        return session

    def child_session(
        self,
        parent_id: str,
        *,
        id: str | None = None,
        tools: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        inherit: bool = True,
        config: Mapping[str, Any] | None = None,
        parent: SessionRuntime | None = None,
    ) -> Session:
        """A handle on a child session (a sub-agent) of session ``parent_id``; call ``await
        child.open()`` next, run turns with ``child.turn(...)``, and ``await child.close()``.

        The child's head links it to its parent; it is built with ``is_root=False``. A new child
        starts from its parent's configuration (provider, model, prompt layers, plugin options:
        ``inherit=False`` starts from the host's instead), with ``config`` (a
        :meth:`lash.Session.configure` patch) applied on top, and ``options`` overriding plugin
        options for this handle. ``tools`` restricts it to an allowlist of tool names, for
        good: no plugin can make another tool a member. ``id`` names it (default:
        ``<parent id>/<12 hex digits>``); reopening an existing child with ``id`` keeps what it
        was created with. Every commit of the child adds its usage to its ancestors' usage
        reports under ``child:<id>``, in the same transaction.

        Hooks and tools create children through their view: ``session.child(...)`` (a
        :class:`lash.SessionView` method), which also passes on the parent's in-memory
        configuration and per-handle options.

        :raises SessionError: an invalid id, a bad allowlist, ``options`` or ``config`` that
            are not mappings; at open, a ``config`` field of the wrong shape, a parent that
            was never committed, an id that exists as another session's child or as a root
            session, or an allowlist naming unknown tools (each names the session).
        """
        from lash._kernel.session import Session

        check_session_id(parent_id)
        session_id = id if id is not None else child_id(parent_id)
        check_session_id(session_id)
        allowlist = check_tools(session_id, tools)
        _check_options(session_id, "child_session()", options)
        if config is not None and not isinstance(config, Mapping):
            # (dict() below would take a list apart, failing with a bare ValueError)
            raise SessionError(
                f"session {session_id!r}: a child session's config must be a mapping of "
                f"configure() fields, got {describe_value(config)}",
                session_id=session_id,
            )
        overrides: dict[str, dict[str, Any]] = {}
        if parent is not None and inherit:
            overrides = {k: dict(v) for k, v in parent.overrides.items()}
        for plugin, values in (options or {}).items():
            overrides[plugin] = {**overrides.get(plugin, {}), **values}
        spec = ChildSpec(
            parent_id,
            tools=allowlist,
            inherit=inherit,
            config=dict(config or {}),
            parent_config=parent.image.config if parent is not None else None,
            parent_lineage=parent.lineage if parent is not None else None,
            parent_incarnation=parent.incarnation if parent is not None else None,
        )
        session = Session(self, session_id, options=overrides, child=spec)
        self._sessions.add(session)
        return session

    def rolled_up(self, rollup: Mapping[str, Mapping[str, Usage]]) -> None:
        """A child's commit added ``rollup`` to its ancestors' usage in the store: the handles
        on them in this core count it too (handles in other processes see it at their next
        load)."""
        for session in list(self._sessions):
            amounts = rollup.get(session.id)
            if amounts and session._runtime.opened:
                usage = session._runtime.image.usage
                for source, amount in amounts.items():
                    usage[source] = usage.get(source, Usage()) + amount

    async def resume(self, handle: ParkedSession, *, wait: float = 0.0) -> Session:
        """Reopen a session parked with :meth:`lash.Session.park`."""
        session = self.session(handle.session_id, options=handle.options)
        return await session.open(must_exist=True, wait=wait)

    async def delete_session(self, session_id: str) -> None:
        """Delete a session from the store (its mailbox, turn records and events too).

        :raises UnknownSession: when there is none.
        :raises SessionBusy: while an execution holds it (here or in another process).
        """
        await self.store.delete(session_id)
        # Its children open here roll up into it no more, nor into its ancestors (the store
        # would not add it; a handle here on a session created again under the id must not
        # count it either).
        for session in list(self._sessions):
            lineage = session._runtime.lineage
            if session_id in lineage:
                session._runtime.lineage = lineage[lineage.index(session_id) + 1 :]

    # -- the mailbox: any process, no lease -------------------------------------------------------

    async def enqueue(
        self,
        session_id: str,
        input: str,
        *,
        key: str | None = None,
        ingress: Ingress = "next_turn",
        items: Sequence[Any] = (),
        source: str = "host",
    ) -> PendingInput:
        """Queue input for a session, from any process on the store, without its lease.

        ``ingress="next_turn"`` input becomes a turn of its own when the session is drained
        (``session.drain()``, ``lash sessions drain``, a worker), oldest first;
        ``"active_turn"`` input joins the turn running when it arrives, at its next checkpoint
        (else the next turn takes it). A session that does not exist yet is created (at revision
        0: it has input, no history). ``key`` makes it idempotent: the same key with the same
        content returns the input already queued; with other content it is an
        :class:`lash.InputConflict`.

        :raises SessionError: an empty input, one larger than 1 MiB (of UTF-8), items that
            are not a list of JSON values and images, an unknown ingress, a ``source`` that is
            not a string, or an invalid session id.
        """
        check_source(session_id, "enqueue()", source)
        problem = items_problem(items)  # (before staging, which would take a str apart)
        if problem is not None:
            raise SessionError(
                f"session {session_id!r}: cannot queue this input: {problem}",
                session_id=session_id,
            )
        # Images are queued as references, their bytes put in the store first. (Read once into
        # a tuple: staging looks at the items twice, and would use a generator up looking.)
        items, images = stage_items(session_id, tuple(items))
        draft = checked_input(session_id, input, items=items, key=key, ingress=ingress)
        await put_blobs(self.store, images)
        pending = await self.store.enqueue_input(session_id, attrs.evolve(draft, source=source))
        self.notify(session_id, input=True)
        return pending

    async def inputs(self, session_id: str, *, settled: bool = False) -> list[PendingInput]:
        """The session's queued input, oldest first (``settled``: completed and cancelled too)."""
        return await self.store.list_inputs(session_id, settled=settled)

    async def cancel_inputs(
        self, session_id: str, *targets: str, suffix: bool = False
    ) -> list[InputCancellation]:
        """Cancel queued input by id or key, atomically: one outcome per target
        (``cancelled``, ``already_claimed``, ``already_completed``, ``already_cancelled``,
        ``unknown``). With ``suffix``, one target: it and every input queued after it."""
        if suffix and len(targets) != 1:
            raise SessionError(
                f"session {session_id!r}: a suffix cancellation takes one target (the first "
                f"input to cancel), got {len(targets)}",
                session_id=session_id,
            )
        for target in targets:
            if not isinstance(target, str):
                # (memory:// answered it unknown, SQLite and Postgres failed on it, bare)
                raise SessionError(
                    f"session {session_id!r}: cancel_inputs() got target "
                    f"{describe_value(target)}; a target is an input's id or key (a string)",
                    session_id=session_id,
                )
        outcomes = await self.store.cancel_inputs(session_id, targets, suffix=suffix)
        self.notify(session_id)
        return outcomes

    async def enqueue_command(
        self,
        session_id: str,
        name: str,
        *,
        key: str,
        args: Mapping[str, Any] | None = None,
        source: str = "host",
    ) -> QueuedCommand:
        """Queue a session command (``refresh_tool_catalog``, ``reset``, or one a plugin
        registers) from any process, idempotent by ``key``; the session's next execution applies
        it before its turn work, in its commit.

        :raises SessionError: an empty key, an unknown command, or ``args`` that are not a
            mapping of names to JSON data.
        :raises InputConflict: the key was used with another command or other args.
        """
        check_source(session_id, "enqueue_command()", source)
        draft = self.command_draft(session_id, name, key=key, args=args, source=source)
        command = await self.store.enqueue_command(session_id, draft)
        self.notify(session_id)
        return command

    def command_draft(
        self,
        session_id: str,
        name: str,
        *,
        key: str,
        args: Mapping[str, Any] | None = None,
        source: str = "host",
    ) -> CommandDraft:
        """A checked command for :meth:`enqueue_command`. :raises SessionError: an empty key or
        an unknown command."""
        known = (*BUILTIN_COMMANDS, *self.registry.of("session_command"))
        check_command(session_id, name, key, known)
        return CommandDraft(name, key, _command_args(session_id, name, args), source)

    # -- tool approval: any process, no lease ------------------------------------------------------

    async def approvals(self, session_id: str) -> list[PendingApproval]:
        """The session's tool calls waiting for a human's answer (a :class:`lash.PendingApproval`
        each, in the order the model asked for them), from any process on the store: the calls
        held by the turn that stopped with reason ``awaiting_approval``, less those answered
        already. Empty when no turn waits (:doc:`/approvals`)."""
        return await _approvals.pending(self.store, session_id)

    async def approve(
        self,
        session_id: str,
        call_id: str,
        *,
        decision: Decision = "approve",
        reason: str | None = None,
        key: str | None = None,
        source: str = "host",
    ) -> ApprovalAnswer:
        """Answer a held tool call from any process, without the session's lease: ``decision``
        ``"approve"`` (the tool runs) or ``"reject"`` (the model gets ``reason`` as the call's
        error result). The answer is queued durably; the session's next execution applies it,
        and once every held call of the turn is answered, continues the turn (a worker on the
        store is woken for it). Returns a :class:`lash.ApprovalAnswer`: ``approved`` /
        ``rejected``, or, changing nothing, ``already_answered`` (with the first answer),
        ``expired`` (the turn was reset or superseded) or ``unknown``. ``key`` makes a retry
        of the same answer idempotent.

        :raises SessionError: an invalid session id, call id, decision, reason or key.
        """
        check_source(session_id, "approve()", source)
        answer = await _approvals.answer(
            self.store,
            session_id,
            call_id,
            decision=decision,
            reason=reason,
            key=key,
            source=source,
        )
        if answer.outcome in ("approved", "rejected"):
            self.notify(session_id, input=True)  # wakes this core's idle workers
        return answer

    async def turn_record(self, session_id: str, turn_id: str) -> TurnRecord | None:
        """How the committed turn ``turn_id`` ended (``None``: no such committed turn)."""
        _check_turn_call(session_id, "turn_record()", turn_id=turn_id)
        return await self.store.turn_record(session_id, turn_id)

    async def cancel_turn(
        self, session_id: str, turn_id: str, *, reason: str | None = None, origin: str = "host"
    ) -> CancelReceipt:
        """Ask turn ``turn_id`` of a session to stop, wherever it runs. A turn of this core stops
        at once; one running in another process reads the request from the store within
        ``control_poll`` seconds. The receipt says ``requested``, ``already_requested``,
        ``already_finished`` (with its record) or ``unknown``. The turn's result records the
        ``origin`` and ``reason``."""
        _check_turn_call(session_id, "cancel_turn()", turn_id=turn_id, reason=reason, origin=origin)
        for session in list(self._sessions):
            if session.id == session_id:
                for turn in session._runtime.running:
                    if getattr(turn, "id", None) == turn_id:
                        turn.cancel(reason=reason, origin=origin)  # type: ignore[call-arg]
                        return CancelReceipt("requested", session_id, turn_id)
        return await self.store.request_cancel(session_id, turn_id, origin=origin, reason=reason)

    # -- observation --------------------------------------------------------------------------

    def observe(
        self, session_id: str, *, after: str | None = None
    ) -> AsyncIterator[ObservedEvent | ObservationGap]:
        """The session's events, from any process on the store, without its lease: the events
        committed after cursor ``after`` (``None``: from now on), then each new one as it comes,
        live events of turns run by this core included, until the consumer stops. A cursor older
        than the store's replay window yields an :class:`lash.ObservationGap` first.

        :raises SessionError: a cursor that is not one (names it).
        """
        check_session_id(session_id)
        return observe(
            self.store,
            self._hub,
            session_id,
            after=after,
            poll=self.observe_poll,
            snapshot=lambda: self.current(session_id),
        )

    async def current(self, session_id: str) -> SessionSnapshot:
        """The session as it is settled in the store now (active frame, config, usage, queued
        input), with the cursor of its latest event: observe after it to follow from there."""
        store = self.store
        record = await store.load(session_id)
        inputs = await store.list_inputs(session_id)
        if record is None:
            page = await store.read_events(session_id, after=0, limit=0)
            return SessionSnapshot(session_id, 0, 0, cursor_of(page.last), inputs=tuple(inputs))
        return SessionSnapshot(
            session_id,
            record.revision,
            record.turns,
            cursor_of(record.event_seq),
            nodes=tuple(record.nodes),  # (a StoredNodes builds them here)
            config=record.config,
            usage=dict(record.usage),
            inputs=tuple(inputs),
        )

    def notify(
        self, session_id: str, live: Sequence[EventDraft] = (), *, input: bool = False
    ) -> None:
        """Wake this core's observers of a session (the log grew), or hand them live events;
        with ``input``, tell its running turns that input was queued."""
        if input:
            for session in list(self._sessions):
                if session.id == session_id:
                    session._runtime.input_hint = True
            if self._processes is not None:
                self._processes.wake()  # this core's idle workers drain it at once
        self._hub.notify(session_id, live)

    def observed(self, session_id: str) -> bool:
        """Whether anything in this core observes the session (live events are made then)."""
        return self._hub.observed(session_id)

    # -- background processes ------------------------------------------------------------------

    @property
    def processes(self) -> Processes:
        """Background processes (a :class:`lash.Processes`): ``start``, ``get``, ``list``,
        ``wait``, ``cancel``, ``complete``, for any process on the store."""
        if self._processes is None:
            from lash._kernel.processes import Processes

            self._processes = Processes(self)
        return self._processes

    async def run_worker(
        self,
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
        """Run background processes (and, with ``sessions``, drain sessions with queued
        input) until cancelled; with ``once``, run what is runnable now and return. What
        ``lash worker`` runs; see :func:`lash._kernel.worker.run_worker` for the details.

        Setting ``stop`` stops the worker gracefully: it takes no more work, the turns it is
        running finish and commit (the input queued behind them stays queued), its process
        runs are cancelled (their claims expire), and it returns. Cancelling the worker stops
        it at once: a running turn then commits as ``stopped(cancelled)``, consuming its input.

        .. versionchanged:: 0.2
           ``stop``.
        """
        from lash._kernel.worker import run_worker

        await run_worker(
            self,
            concurrency=concurrency,
            lease_ttl=lease_ttl,
            sessions=sessions,
            once=once,
            kinds=kinds,
            poll=poll,
            grace=grace,
            stop=stop,
        )

    async def aclose(self) -> None:
        """Close the sessions still open (releasing their leases), then the store, the
        provider clients and the tool sources (:class:`lash.ToolSource`). ``async with core:``
        does this on exit."""
        for session in list(self._sessions):
            await session.close()
        if self._store is not None:
            await self._store.close()
            self._store = None
        for contribution in self.registry.of("provider").values():
            closer = getattr(contribution.value, "aclose", None)
            if closer is not None:
                await closer()
        await self.composition.close_tool_sources()

    async def __aenter__(self) -> LashCore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def store_url(self) -> str:
        """The configured store URL, or the default ``sqlite:///<project>/.lash/lash.db`` where
        the project directory is the config file's directory (else the working directory)."""
        return store_url(self.config)

    @property
    def store(self) -> Store:
        """The store, built on first use from the configured URL (default: the embedded SQLite
        file ``.lash/lash.db`` under the project directory, see :attr:`store_url`)."""
        if self._store is None:
            url = self.store_url
            self._store = self.composition.store_factory(url)(url)
        return self._store

    def __repr__(self) -> str:
        return f"<LashCore plugins={self.plugin_names!r}>"


def _command_args(session_id: str, name: str, args: Any) -> dict[str, Any]:
    """A command's ``args`` as stored: a mapping of names (str) to JSON data. Before, a string
    or a list failed with a bare ``ValueError``/``TypeError``, and a value that is not JSON, or
    a key that is not a str (JSON would make ``1`` ``"1"``), was queued as it was.

    :raises SessionError: naming the session, the command and what is wrong."""
    problem = None
    if args is None:
        return {}
    if not isinstance(args, Mapping):
        problem = f"expected a mapping of names to values, got {describe_value(args)}"
    elif not all(isinstance(k, str) for k in args):
        bad = next(k for k in args if not isinstance(k, str))
        problem = f"an argument name must be a str, got {describe_value(bad)}"
    else:
        data = to_data(dict(args))
        try:
            json.dumps(data, allow_nan=False)  # (NaN is not JSON: stores differ on it)
        except (TypeError, ValueError) as exc:
            problem = f"they cannot be stored as JSON: {exc}"
        else:
            return data  # type: ignore[no-any-return]
    raise SessionError(
        f"session {session_id!r}: the args of command {name!r}: {problem}", session_id=session_id
    )


def _check_turn_call(session_id: str, call: str, **values: Any) -> None:
    """The arguments of a call about a turn (``turn_record``, ``cancel_turn``): ``turn_id``
    and ``origin`` non-empty strings, ``reason`` a string or None, as ``session.turn(id=...)``
    takes a turn id. Before, another value was looked up as it was (``cancel_turn("s", 5)``
    answered ``unknown``, with 5 as the receipt's turn id) or stored as the request's origin.

    :raises SessionError: naming the session, the call and the argument."""
    check_session_id(session_id)
    for name, value in values.items():
        if value is None and name == "reason":
            continue
        if not isinstance(value, str) or (name != "reason" and not value.strip()):
            kind = "a string or None" if name == "reason" else "a non-empty string"
            raise SessionError(
                f"session {session_id!r}: {call} got {name}={value!r}; it must be {kind}",
                session_id=session_id,
            )


def _check_options(session_id: str, call: str, options: Any) -> None:
    """A handle's ``options`` (plugin options by plugin name), refused naming the bad entries
    before they are merged or used: another shape failed at open with a bare ``TypeError`` or
    ``AttributeError``. (Their values are checked against each plugin's class at open.)

    :raises SessionError: naming the session and each problem."""
    if options is None:
        return
    problems = options_problems(options, "options")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise SessionError(
            f"session {session_id!r}: {call} got invalid options:\n{lines}",
            session_id=session_id,
        )
