"""The plugin contract: every hook a lash plugin may implement.

Plugins implement hooks with ``@lash.hookimpl`` on a function (module plugins) or method (class
plugins) of the same name. An implementation may accept any *subset* of the documented arguments,
which is how hooks evolve: new arguments are only ever added.

Every hook has exactly one **dispatch shape**:

collect
    every implementation runs; results are gathered in order, each tagged with its plugin name.
chain
    each implementation receives the previous one's output; ``None`` means "no change".
first
    implementations run in order until one returns a value other than ``None``.
exclusive
    at most one plugin may implement the hook; a second is an error naming both.
broadcast
    every implementation runs; an exception is reported (log + error event) and isolated: it never
    reaches the caller or stops the other implementations.

**Order** is the config order of the enabled plugins (refined by their ``before``/``after``
declarations), adjusted per implementation with ``@lash.hookimpl(tryfirst=True)`` or
``trylast=True``. **Async**: hooks marked "may be async" accept ``async def`` implementations; the
kernel awaits them itself. **Errors**: unless a hook says otherwise, an exception raised by an
implementation is wrapped in :class:`lash.PluginError` naming the plugin and the hook.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lash._plugins.markers import hookspec

if TYPE_CHECKING:
    # Types only: `lash --help` and `lash plugins` load this module, and must not build the
    # turn data classes (directives, prompt views, session configs) just to read the hooks.
    import click

    from lash._contract.operations import RegisterOperation
    from lash._contract.providers import ModelRequest, ModelResponse
    from lash._contract.services import SessionView, ToolContext, TurnView
    from lash._contract.turn_types import (
        AgentFrame,
        Compaction,
        ProcessRecord,
        PromptContribution,
        PromptView,
        SessionConfig,
        ToolCallDirective,
        ToolCatalogEntry,
        TurnDirective,
    )
    from lash._contract.types import (
        RegisterCommand,
        RegisterProcessKind,
        RegisterProtocol,
        RegisterProvider,
        RegisterSessionCommand,
        RegisterStore,
        RegisterTool,
        ToolCall,
        ToolResult,
    )

__all__ = [
    "after_tool_call",
    "after_turn",
    "before_tool_call",
    "before_turn",
    "checkpoint",
    "compact_context",
    "filter_tool_catalog",
    "frame_opened",
    "model_call_finished",
    "mutate_session_config",
    "prepare_session",
    "process_finished",
    "project_tool_result",
    "prompt_contributions",
    "register_commands",
    "register_operations",
    "register_process_kinds",
    "register_protocol",
    "register_providers",
    "register_session_commands",
    "register_stores",
    "register_tools",
    "render_process_result",
    "session_closed",
    "session_config_changed",
    "session_opened",
    "session_parked",
    "transform_prompt_view",
    "turn_finalized",
    "turn_persisted",
]

#: Dispatch shape of every hook, by name. The kernel dispatches through this table and the docs
#: and meta-tests read it, so a hook's shape is stated in exactly one place.
SHAPES: dict[str, str] = {
    "register_tools": "collect",
    "register_providers": "collect",
    "register_protocol": "exclusive",
    "register_process_kinds": "collect",
    "register_stores": "collect",
    "register_commands": "collect",
    "register_session_commands": "collect",
    "register_operations": "collect",
    "prepare_session": "collect",
    "mutate_session_config": "chain",
    "session_config_changed": "broadcast",
    "compact_context": "first",
    "transform_prompt_view": "chain",
    "filter_tool_catalog": "collect",
    "prompt_contributions": "collect",
    "before_turn": "collect",
    "checkpoint": "collect",
    "after_turn": "collect",
    "model_call_finished": "broadcast",
    "before_tool_call": "collect",
    "after_tool_call": "collect",
    "project_tool_result": "exclusive",
    "session_opened": "broadcast",
    "turn_finalized": "broadcast",
    "turn_persisted": "broadcast",
    "frame_opened": "broadcast",
    "session_parked": "broadcast",
    "session_closed": "broadcast",
    "process_finished": "broadcast",
    "render_process_result": "first",
}

#: Renamed hooks: old name -> new name. An implementation under the old name still runs (as the
#: new hook, in the same order) for one release, with a DeprecationWarning naming its plugin when
#: the plugin is loaded. ``session_restored(session)`` runs as ``session_opened`` for resumed
#: sessions only, which is what it meant.
DEPRECATED: dict[str, str] = {
    "materialize_session": "prepare_session",
    "session_restored": "session_opened",
}

#: Hooks whose implementations may be ``async def``. Registration hooks run while the core is built
#: and must be synchronous.
ASYNC_ALLOWED: frozenset[str] = frozenset(SHAPES) - {
    "register_tools",
    "register_providers",
    "register_protocol",
    "register_process_kinds",
    "register_stores",
    "register_commands",
    "register_session_commands",
    "register_operations",
}


# ============================================================================================
# Registration: called once while a LashCore is built
# ============================================================================================


@hookspec
def register_tools(register: RegisterTool, options: Any) -> None:
    """Contribute tools.

    :param register: ``register(fn_or_tool, *, name=None, description=None)``. ``fn`` is a typed
        Python function (sync or ``async``); its name, docstring and type hints become the tool's
        name, description and JSON schema. A ready-made tool object (raw JSON schema) is accepted
        too.
    :param options: this plugin's options as configured by the host (an instance of its declared
        options class), or ``None`` when it declares none.

    **Shape:** collect. Tool names are unique across plugins: registering a name another plugin
    already registered is a :class:`lash.PluginError` naming both plugins.
    **Async:** no. **On error:** the core build fails with :class:`lash.PluginError`.

    .. versionadded:: 0.1
    """


@hookspec
def register_providers(register: RegisterProvider, options: Any) -> None:
    """Contribute model providers.

    :param register: ``register(name, provider)``; ``provider`` streams model responses. Build
        clients here once per core; do no network I/O until the provider is first used.
    :param options: this plugin's host-level options (or ``None``).

    **Shape:** collect, unique names (a clash names both plugins). **Async:** no.
    **On error:** the core build fails with :class:`lash.PluginError`.

    .. versionadded:: 0.1
    """


@hookspec
def register_protocol(register: RegisterProtocol, options: Any) -> None:
    """Contribute the turn protocol: the driver of the model → tools → model loop.

    :param register: ``register(name, protocol)``.
    :param options: this plugin's host-level options (or ``None``).

    **Shape:** exclusive and required: exactly one enabled plugin registers the protocol (the
    builtin is ``standard``); opening a session without one raises
    :class:`lash.ProtocolMissing`. A second implementation is a
    :class:`lash.ExclusiveHookConflict` naming both plugins. **Async:** no. **On error:** the core
    build fails.

    .. versionadded:: 0.1
    """


@hookspec
def register_process_kinds(register: RegisterProcessKind, options: Any) -> None:
    """Contribute background process kinds: durable work a worker (``lash worker``,
    ``core.run_worker()``) runs outside the turn that started it.

    :param register: ``register(kind, run, *, recovery=RecoveryDisposition.OWNER_BOUND,
        timeout=None, max_attempts=3)``. ``run`` is ``async def run(context, payload) ->
        result``: ``context`` is a :class:`lash.ProcessContext`; the payload and result types
        are read from ``run``'s annotations (attrs classes, primitives, containers of them;
        none or ``Any``: raw JSON), so a payload is validated when the process starts, and
        both have a JSON schema. ``recovery`` says what a worker's death means:
        ``RERUNNABLE`` runs it again (up to ``max_attempts`` runs: at-least-once),
        ``OWNER_BOUND`` marks it ``abandoned``, ``EXTERNALLY_OWNED`` leaves it to an external
        ``core.processes.complete``. ``timeout`` (seconds) fails a run that lasts longer.
    :param options: this plugin's host-level options (or ``None``).

    **Shape:** collect, unique kinds (a clash names both plugins). **Async:** no.
    **On error:** the core build fails with :class:`lash.PluginError` (a ``run`` that is not
    ``async``, that does not take ``(context, payload)``, or whose types have no JSON schema).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 ``run(context, payload)`` with typed payload and result;
       ``timeout`` and ``max_attempts``.
    """


@hookspec
def register_stores(register: RegisterStore, options: Any) -> None:
    """Contribute store backends by URL scheme.

    :param register: ``register(scheme, factory)``; ``factory(url)`` returns a store for URLs of
        that scheme (``memory`` and ``sqlite`` are builtins).
    :param options: this plugin's host-level options (or ``None``).

    **Shape:** collect, unique schemes. **Async:** no. **On error:** the core build fails.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 receives ``options``, like every ``register_*`` hook.
    """


@hookspec
def register_commands(register: RegisterCommand, options: Any, cli: click.Group) -> None:
    """Add subcommands to the ``lash`` command line.

    :param register: ``register(command)``: a :class:`click.Command` or group, added under its
        own name.
    :param options: this plugin's host-level options (or ``None``).
    :param cli: a group collecting this plugin's commands (``@cli.command()`` works too: what
        0.1 plugins do).

    **Shape:** collect. A command name that is already taken is reported and the later plugin's
    command skipped. **Async:** no. **On error:** reported by ``lash doctor``; the CLI keeps
    working without that plugin's commands.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 receives ``register`` and ``options``, like every ``register_*`` hook.
    """


@hookspec
def register_session_commands(register: RegisterSessionCommand, options: Any) -> None:
    """Contribute session commands: work any process may queue for a session, by name
    (``core.enqueue_command(session_id, name, key=..., args=...)``), that the session's next
    execution applies before its turn work, and commits with it.

    :param register: ``register(name, apply)``; ``apply(session, args)`` (sync or ``async``)
        receives the session's :class:`lash.SessionView` and the command's JSON ``args``, and
        changes the session through the view (its changes commit with the execution).
    :param options: this plugin's host-level options (or ``None``).

    **Shape:** collect, unique names (``refresh_tool_catalog`` and ``reset`` are the kernel's).
    **Async:** no (``apply`` may be). **On error:** the core build fails. A command whose
    ``apply`` raises is reported, naming the plugin, and settled: it is not retried.

    .. versionadded:: 0.2
    """


@hookspec
def register_operations(register: RegisterOperation, options: Any) -> None:
    """Contribute operations: named, typed entry points that hosts discover (``lash plugins
    --json``, ``core.operations.list()``) and call (``core.operations.call(name, args,
    session_id=...)``).

    :param register: ``register(name, fn, *, kind="query", session="optional",
        description=None, recovery=None, timeout=None)``. ``fn(context, args) -> result``
        (sync or ``async``) receives a :class:`lash.OperationContext` and, if it takes a second
        parameter, its arguments as an instance of the attrs class that parameter is annotated
        with (the arguments' JSON schema); its return annotation gives the result's schema.
        ``kind`` is ``"query"`` (reads: its session view refuses changes), ``"command"``
        (changes the session under its lease, committed atomically when it returns; it may
        queue input with ``context.enqueue``) or ``"task"`` (long-running: ``async def
        fn(context: lash.ProcessContext, args)`` runs as a process of the implicit kind
        ``operation:<name>``, with ``recovery`` and ``timeout`` as for a process kind; a call
        returns the pending process). ``session`` says whether a call names a session:
        ``"required"``, ``"optional"`` or ``"forbidden"``. ``description`` defaults to the
        docstring's summary.
    :param options: this plugin's host-level options (or ``None``).

    **Shape:** collect, unique names across plugins (a clash names both plugins). **Async:** no
    (``fn`` may be). **On error:** the core build fails with :class:`lash.PluginError` (a bad
    name, kind, session rule, signature or args class fails at registration). A call whose
    ``fn`` raises fails with :class:`lash.OperationError` naming the plugin and the operation;
    a command's changes are then not committed.

    .. versionadded:: 0.2
    """


# ============================================================================================
# Preparing a session: every open, resume and child creation
# ============================================================================================


@hookspec
def prepare_session(session: SessionView, options: Any, is_root: bool) -> None:
    """Prepare this plugin's part of a session being opened, from its per-session options.

    Called for **every** enabled plugin each time a session is built in memory (opened fresh,
    resumed, or created as a child), after its options are validated and its state restored and
    before :func:`session_opened`. Set tool membership defaults or initialize state here; what
    you change is committed with the session's next commit. Do no I/O: opening a session must
    stay cheap.

    :param session: the session being opened.
    :param options: this plugin's validated per-session options (or ``None`` if it declares none).
    :param is_root: ``False`` for child sessions (sub-agents).

    **Shape:** collect. **Async:** may be async. **On error:** the open fails with
    :class:`lash.PluginError`; nothing is committed.

    .. versionadded:: 0.2 (was ``materialize_session``, which still works until 0.3, with a
       deprecation warning naming the plugin).
    """


@hookspec
def materialize_session(session: SessionView, options: Any, is_root: bool) -> None:
    """Deprecated name of :func:`prepare_session` (removed in 0.3).

    .. deprecated:: 0.2 implement :func:`prepare_session` instead.
    """


# ============================================================================================
# Session config mutation
# ============================================================================================


@hookspec
def mutate_session_config(
    session: SessionView, previous: SessionConfig, proposed: SessionConfig
) -> SessionConfig | None:
    """Amend or reject a proposed session configuration change.

    :param previous: the configuration in force.
    :param proposed: the proposal as amended by the plugins before this one.
    :return: an amended :class:`lash.SessionConfig`, or ``None`` to pass ``proposed`` on unchanged.

    Runs only when ``session.configure(patch)`` actually changes something. Raise
    :class:`lash.ConfigRejected` with a reason to reject: the session is left untouched and the
    error names this plugin.

    **Shape:** chain. **Async:** may be async. **On error:** any other exception also rejects the
    change, wrapped in :class:`lash.PluginError`.

    .. versionadded:: 0.1
    """


@hookspec
def session_config_changed(
    session: SessionView, previous: SessionConfig, current: SessionConfig
) -> None:
    """A session's configuration changed (after the change is committed).

    **Shape:** broadcast. **Async:** may be async. **On error:** reported and isolated.

    .. versionadded:: 0.1
    """


# ============================================================================================
# Compaction and the prompt view
# ============================================================================================


@hookspec
def compact_context(session: SessionView, instructions: str | None) -> Compaction | None:
    """Compact the session's context into the seed of a new agent frame.

    :param instructions: what the host asked to keep, from ``session.compact(instructions)``;
        ``None`` for automatic compaction (token threshold reached).
    :return: a :class:`lash.Compaction` to open a new frame with, or ``None`` to let the next
        plugin decide. The old history stays in the graph.

    **Shape:** first (fallback implementations use ``trylast=True``). **Async:** may be async.
    **On error:** the compaction fails and commits nothing; the session keeps its current frame.

    .. versionadded:: 0.1
    """


@hookspec
def transform_prompt_view(session: SessionView, view: PromptView) -> PromptView | None:
    """Shape the messages of one model call without touching history.

    :return: a new :class:`lash.PromptView`, or ``None`` to leave the view as is.

    **Shape:** chain. **Async:** may be async. **On error:** the turn fails with
    :class:`lash.PluginError`.

    .. versionadded:: 0.1
    """


# ============================================================================================
# Tool catalog
# ============================================================================================


@hookspec
def filter_tool_catalog(
    session: SessionView, catalog: tuple[ToolCatalogEntry, ...]
) -> Iterable[str] | None:
    """Hide tools from a session's catalog for this resolution.

    :param catalog: the member tools, each with its contributing plugin.
    :return: names of tools to hide: an iterable of names, or one name as a ``str`` (never read
        as its characters); or ``None``. Filters only remove; they never add tools. Anything
        else is a :class:`lash.PluginError` naming the plugin.

    **Shape:** collect (the union of every plugin's names is hidden). **Async:** may be async.
    **On error:** the turn fails with :class:`lash.PluginError`.

    .. versionadded:: 0.1
    """


# ============================================================================================
# Prompt
# ============================================================================================


@hookspec
def prompt_contributions(
    session: SessionView,
) -> PromptContribution | Iterable[PromptContribution] | None:
    """Contribute fragments of the system prompt for this turn.

    :return: one :class:`lash.PromptContribution`, several, or ``None``.

    **Shape:** collect; fragments are ordered by slot, priority, then plugin order.
    **Async:** may be async. **On error:** the turn fails with :class:`lash.PluginError`.

    .. versionadded:: 0.1
    """


# ============================================================================================
# Turn
# ============================================================================================


@hookspec
def before_turn(turn: TurnView) -> TurnDirective | None:
    """Inspect a turn before the first model call.

    :return: a directive, an iterable of directives, or ``None``: :class:`lash.AbortTurn` to
        stop the turn (outcome ``stopped(plugin_abort)``), :class:`lash.EnqueueMessages` to queue
        input for a later turn (with ``target="current_turn"``: to add user messages to this
        turn, before its first model call), :class:`lash.Compact` to compact after the turn's
        commit, :class:`lash.EmitEvent` to log an event for the session's observers. Anything
        else is a :class:`lash.PluginError` naming the plugin (the turn fails).

    **Shape:** collect; every directive is applied, the first abort wins. **Async:** may be async.
    **On error:** the turn ends ``failed`` with a :class:`lash.PluginError`; it is still committed.

    .. versionadded:: 0.1
    """


@hookspec
def checkpoint(turn: TurnView, kind: str) -> TurnDirective | None:
    """A checkpoint of a running turn: ``kind`` is ``"after_tools"`` (after each round of tool
    calls) or ``"before_completion"`` (when the model answered without tool calls, before the
    turn completes; protocols call it with ``await turn.checkpoint()``).

    Input queued with ``ingress="active_turn"`` has joined the turn just before (its user
    messages are in ``turn.nodes``).

    :return: directives, as for :func:`before_turn`: :class:`lash.EnqueueMessages` with
        ``target="current_turn"`` adds user messages to the running turn (the model sees them in
        its next call; before completion, the turn goes on), with the default target it queues
        them for a later turn; :class:`lash.AbortTurn` stops the turn
        (``stopped(plugin_abort)``); :class:`lash.EmitEvent` logs an event for observers;
        :class:`lash.Compact` compacts after the turn's commit.

    **Shape:** collect. **Async:** may be async. **On error:** the turn ends ``failed`` with a
    :class:`lash.PluginError`; it is still committed.

    .. versionadded:: 0.2
    """


@hookspec
def after_turn(turn: TurnView) -> TurnDirective | None:
    """Inspect a finished turn before it is committed (every outcome, failed turns included:
    ``turn.result`` says how it ended).

    :return: directives as for :func:`before_turn`; an abort marks a completed turn
        ``stopped(plugin_abort)``; :class:`lash.Compact` compacts the context once the turn is
        committed (how the ``compaction`` builtin compacts automatically).

    **Shape:** collect. **Async:** may be async. **On error:** the turn ends ``failed`` with a
    :class:`lash.PluginError` (a turn that had already failed keeps its first error and this one
    is reported); it is still committed.

    .. versionadded:: 0.1
    """


# ============================================================================================
# Model calls
# ============================================================================================


@hookspec
def model_call_finished(
    turn: TurnView,
    provider: str,
    request: ModelRequest,
    response: ModelResponse | None,
    error: BaseException | None,
    started: float,
) -> None:
    """A model call of a turn ended: the provider's stream was drained, or it failed.

    For observers (tracing, metrics, cost accounting): it cannot change the response. It runs
    once per request a turn sends its provider (``turn.call_model()``; each retry of structured
    output is a request of its own), right after it, in the turn's task; ``session.complete()``
    calls made by plugins are not turn model calls and do not run it.

    :param turn: the turn making the call (``turn.id``, ``turn.session.id``).
    :param provider: the name the provider was registered under (``"openai"``...).
    :param request: what the provider was sent (model, messages, tools, options).
    :param response: the whole response (text, tool calls, usage, finish reason), or ``None``
        when the call failed.
    :param error: why the call failed (a :class:`lash.ProviderError`, or an
        :class:`asyncio.CancelledError` when the turn was cancelled during the call), else
        ``None``. The turn handles the error as it would without this hook. A failure before
        the request was built (a plugin's error while the prompt was shaped) is no model call:
        the hook does not run for it.
    :param started: when the call started, in seconds since the epoch (:func:`time.time`); the
        call ended when the hook runs.

    The kernel dispatches it only when a plugin implements it: without one, a model call takes
    no timestamp and makes no dispatch.

    **Shape:** broadcast. **Async:** may be async. **On error:** reported and isolated.

    .. versionadded:: 0.2
    """


# ============================================================================================
# Tool calls
# ============================================================================================


@hookspec
def before_tool_call(call: ToolCall, context: ToolContext) -> ToolCallDirective | None:
    """Inspect a tool call before the tool runs.

    :return: :class:`lash.ReplaceToolArguments`, :class:`lash.ShortCircuitToolCall`,
        :class:`lash.AbortToolCall`, :class:`lash.RequireApproval`, or ``None``.

    **Shape:** collect, folded in order: argument replacements apply one after another; the first
    short-circuit or abort ends the fold and the tool is not called. A :class:`lash.RequireApproval`
    does not end the fold (later plugins may still replace the arguments or refuse the call);
    when the fold ends without a short-circuit or abort, the call is held for a person's
    approval with the arguments as folded, and the turn stops ``awaiting_approval``
    (:doc:`/approvals`). **Async:** may be async. **On error:** the call's result is an error
    result naming the plugin; the turn goes on.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 may return :class:`lash.RequireApproval`.
    """


@hookspec
def after_tool_call(call: ToolCall, result: ToolResult, context: ToolContext) -> ToolResult | None:
    """Inspect or replace a tool result before it is recorded.

    :param result: the result so far (as replaced by earlier plugins).
    :return: a replacement :class:`lash.ToolResult`, or ``None`` to keep it.

    **Shape:** collect, folded in order (each plugin sees the result as amended so far).
    **Async:** may be async. **On error:** the call's result is an error result naming the plugin.

    .. versionadded:: 0.1
    """


@hookspec
def project_tool_result(session: SessionView, call: ToolCall, result: ToolResult) -> str | None:
    """Decide what the model sees of a tool result; the full result stays in the graph.

    :return: the text to show the model, or ``None`` to show the result unchanged.

    **Shape:** exclusive (one plugin decides, e.g. an output budget). **Async:** may be async.
    **On error:** the model sees the unprojected result and the error is reported.

    .. versionadded:: 0.1
    """


# ============================================================================================
# Lifecycle events (all broadcast: errors are reported and isolated)
# ============================================================================================


@hookspec
def session_opened(session: SessionView, restored: bool) -> None:
    """A session was opened, after :func:`prepare_session`.

    :param restored: ``True`` when the session was resumed from its store, ``False`` when it
        starts empty (new, or opened with ``open_fresh()``).

    **Shape:** broadcast. **Async:** may be async. **On error:** reported and isolated.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 receives ``restored`` (``session_restored`` is merged into it).
    """


@hookspec
def session_restored(session: SessionView) -> None:
    """Deprecated: implement :func:`session_opened` and test its ``restored`` argument (an
    implementation of this hook runs as ``session_opened`` for resumed sessions until 0.3).

    .. deprecated:: 0.2
    """


@hookspec
def turn_finalized(turn: TurnView) -> None:
    """A turn finished and is about to be committed.

    **Shape:** broadcast. **Async:** may be async. **On error:** reported and isolated.

    .. versionadded:: 0.1
    """


@hookspec
def turn_persisted(turn: TurnView, revision: int) -> None:
    """A turn was committed to the store as head revision ``revision``.

    **Shape:** broadcast. **Async:** may be async. **On error:** reported and isolated.

    .. versionadded:: 0.1
    """


@hookspec
def frame_opened(session: SessionView, frame: AgentFrame) -> None:
    """A new agent frame was opened and committed (compaction, automatic compaction, reset);
    not for a session's root frame.

    **Shape:** broadcast. **Async:** may be async. **On error:** reported and isolated.

    .. versionadded:: 0.1
    """


@hookspec
def session_parked(session: SessionView) -> None:
    """A session was parked: what was still pending committed, and its memory (graph, options,
    state) freed.

    **Shape:** broadcast. **Async:** may be async. **On error:** reported and isolated.

    .. versionadded:: 0.1
    """


@hookspec
def session_closed(session: SessionView) -> None:
    """A session was closed: a running turn committed, what was still pending committed, and the
    handle let go of the session.

    **Shape:** broadcast. **Async:** may be async. **On error:** reported and isolated.

    .. versionadded:: 0.1
    """


# ============================================================================================
# Background processes
# ============================================================================================


@hookspec
def process_finished(process: ProcessRecord) -> None:
    """A background process reached its terminal state (``succeeded``, ``failed``,
    ``cancelled`` or ``abandoned``); ``process`` is its record, with ``result`` or ``error``.

    The kernel broadcasts it once per process, in the process that settled it (the worker, or
    the host that completed or cancelled it), after the terminal state is committed and before
    the session is woken. If that process dies in between, a worker's sweep broadcasts it
    later (after ``lease_ttl``): exactly once while workers live, at least once across such a
    crash.

    **Shape:** broadcast. **Async:** may be async. **On error:** reported and isolated.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2 dispatched by the kernel; ``abandoned`` processes too.
    """


@hookspec
def render_process_result(process: ProcessRecord) -> str | None:
    """The text of the input that wakes a session when one of its processes finished: it is
    queued for the session (key ``process:<id>``) and becomes a turn when the session is
    drained (a worker does that), so the model learns the outcome.

    :param process: the finished process's record (``status``, ``result``, ``error``).
    :return: the text the model reads, or ``None`` to let the next plugin decide. With no
        answer the kernel writes one line naming the process, its kind, status and result or
        error.

    **Shape:** first. **Async:** may be async. **On error:** reported; the kernel's default
    text is used (the session is woken anyway).

    .. versionadded:: 0.2
    """
