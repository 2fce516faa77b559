"""Plain data that hooks receive and return, and the registrars of the ``register_*`` hooks.

These are the nouns of the hook contract in :mod:`lash.hookspecs`. Records that are persisted or
travel between plugins are frozen attrs classes. The services through which plugins reach a
session (``SessionView`` and friends) are in :mod:`lash._contract.services`.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.media import Image
from lash._contract.modeloptions import ModelOptions

__all__ = [
    "NO_USAGE",
    "AbortToolCall",
    "AbortTurn",
    "AgentFrame",
    "Compact",
    "Compaction",
    "EmitEvent",
    "EnqueueMessages",
    "Message",
    "PluginMeta",
    "ProcessRecord",
    "PromptContribution",
    "PromptView",
    "RecoveryDisposition",
    "RegisterCommand",
    "RegisterProcessKind",
    "RegisterProtocol",
    "RegisterProvider",
    "RegisterSessionCommand",
    "RegisterStore",
    "RegisterTool",
    "ReplaceToolArguments",
    "RequireApproval",
    "SessionConfig",
    "ShortCircuitToolCall",
    "StartProcess",
    "ToolCall",
    "ToolCallDirective",
    "ToolCatalogEntry",
    "ToolResult",
    "TurnDirective",
    "Usage",
]


# --------------------------------------------------------------------------------------------
# Plugin declaration
# --------------------------------------------------------------------------------------------


def _names(value: object) -> tuple[str, ...]:
    # Accept one name or any iterable of names; a bare string is one name, not its characters.
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]


@attrs.frozen
class PluginMeta:
    """What a plugin declares about itself, beside its hook implementations.

    A plugin exposes it as the attribute ``lash_plugin`` (module global or class attribute)::

        lash_plugin = lash.PluginMeta(options=Options, state=State, after=("files",))

    ``options`` is an attrs class of per-session options (host config ``[options.<name>]`` gives
    the defaults, ``core.session(id, options=...)`` overrides them); ``state`` is an attrs class of
    per-session state that the kernel snapshots inside every turn commit. ``before``/``after``
    refine the configured order; ``requires`` names plugins that must be enabled too. An
    ``opt_in`` plugin loads only when named in the ``plugins`` allowlist (or passed to
    :class:`lash.LashCore` explicitly), never just because it is installed: use it for plugins
    that grant powers a host must choose, like file access.
    """

    name: str | None = None
    description: str | None = None
    options: type | None = None
    state: type | None = None
    before: tuple[str, ...] = attrs.field(default=(), converter=_names)
    after: tuple[str, ...] = attrs.field(default=(), converter=_names)
    requires: tuple[str, ...] = attrs.field(default=(), converter=_names)
    opt_in: bool = False

    __module__ = "lash"


# --------------------------------------------------------------------------------------------
# Messages, tool calls, usage
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Usage:
    """Token usage of one model call (or a sum of them)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0

    __module__ = "lash"

    def __add__(self, other: Usage) -> Usage:
        # Frozen: a sum with nothing is the other amount itself, no new object (a turn adds
        # its model call's usage to none, a store the first amount of a source to none).
        if type(self) is Usage and type(other) is Usage:
            if not (other.input_tokens or other.output_tokens or other.cached_tokens):
                return self
            if not (self.input_tokens or self.output_tokens or self.cached_tokens):
                return other
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


#: No tokens: one shared instance (Usage is frozen) for the kernel's zero amounts.
NO_USAGE = Usage()


@attrs.frozen
class ToolCall:
    """A tool call the model asked for: ``id`` is the provider's call id.

    ``invalid_arguments`` holds the raw argument text when the model sent something that is not
    a JSON object; the kernel then answers with an error result instead of calling the tool.
    """

    id: str
    name: str
    arguments: Mapping[str, Any] = attrs.field(factory=dict)
    invalid_arguments: str | None = None

    __module__ = "lash"


@attrs.frozen
class ToolResult:
    """The result of one tool call; ``is_error`` marks a failure reported to the model."""

    call_id: str
    content: str
    is_error: bool = False

    __module__ = "lash"


@attrs.frozen
class Message:
    """One message of a model prompt (provider-neutral chat shape)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    #: Images given with a user message (each with its bytes or its URL).
    images: tuple[Image, ...] = ()

    __module__ = "lash"


@attrs.frozen
class PromptView:
    """The messages (and tool names) of one model call.

    ``transform_prompt_view`` receives and returns this; changing it never changes history.
    """

    messages: tuple[Message, ...]
    tools: tuple[str, ...] = ()

    __module__ = "lash"


@attrs.frozen
class AgentFrame:
    """An agent frame: a span of the session graph the model sees as its context.

    Compaction opens a new frame seeded with summary nodes; ``parent_id`` is the frame it replaced.
    """

    id: str
    parent_id: str | None = None
    reason: str = "root"

    __module__ = "lash"


@attrs.frozen
class SessionConfig:
    """The mutable configuration of one session (what ``session.configure(patch)`` changes).

    ``plugin_options`` override plugins' per-session options by plugin name (the protocol's
    settings are its plugin's options like any other plugin's). ``model_options`` are the
    session's layer of :class:`lash.ModelOptions` (over the host's, under a turn's).
    """

    provider: str | None = None
    model: str | None = None
    prompt_layers: tuple[str, ...] = ()
    plugin_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    model_options: ModelOptions = attrs.field(factory=ModelOptions)

    __module__ = "lash"


# --------------------------------------------------------------------------------------------
# Hook results and directives
# --------------------------------------------------------------------------------------------


@attrs.frozen
class PromptContribution:
    """A fragment a plugin adds to the system prompt.

    Fragments are ordered by ``slot`` (``"system"``, then ``"context"``, then ``"reminder"``), then
    by ``priority`` (lower first), then by plugin order. With ``requires_tool`` set, the fragment is
    included only while that tool is a member of the session's tool catalog.
    """

    text: str
    slot: Literal["system", "context", "reminder"] = "system"
    priority: int = 100
    requires_tool: str | None = None

    __module__ = "lash"


@attrs.frozen
class AbortTurn:
    """Turn directive: stop the turn with outcome ``stopped(plugin_abort)`` and this reason."""

    reason: str

    __module__ = "lash"


@attrs.frozen
class EnqueueMessages:
    """Turn directive: user messages for a later turn, or for the running turn.

    ``target="next_turn"`` (the default) queues them as pending input of the session, committed
    with the turn; each becomes a turn when the session is drained. ``target="current_turn"``
    adds them to the running turn: from ``before_turn``, before the first model call; from
    ``checkpoint``, at that checkpoint (the model sees them in its next call). From
    ``after_turn`` the running turn is over: they are queued for a later turn.
    """

    messages: tuple[str, ...]
    target: Literal["next_turn", "current_turn"] = "next_turn"

    __module__ = "lash"


@attrs.frozen
class EmitEvent:
    """Turn directive: log a plugin event (``type``, JSON-ready ``data``) with the turn, for
    the session's observers (``core.observe``); they also see it live, at once."""

    type: str
    data: Any = None

    __module__ = "lash"


@attrs.frozen
class StartProcess:
    """Turn directive: start a background process of ``kind`` with ``payload`` (an instance of
    the kind's payload class, or its JSON form) for the session, written in the turn's commit
    (a turn that does not commit starts nothing). ``key`` makes the start idempotent: a key
    already used starts nothing new."""

    kind: str
    payload: Any = None
    key: str | None = None

    __module__ = "lash"


@attrs.frozen
class Compact:
    """Turn directive (``after_turn``): compact the session's context into a new agent frame
    once this turn is committed, in the same session operation (``compact_context`` decides how;
    the frame's reason is ``"auto_compaction"``). A failing compaction is reported; the turn
    stays committed."""

    instructions: str | None = None

    __module__ = "lash"


#: What ``before_turn`` / ``checkpoint`` / ``after_turn`` may return (one, an iterable of them,
#: or ``None``).
TurnDirective = AbortTurn | EnqueueMessages | Compact | EmitEvent | StartProcess


@attrs.frozen
class ReplaceToolArguments:
    """Tool-call directive: call the tool with these arguments instead."""

    arguments: Mapping[str, Any]

    __module__ = "lash"


@attrs.frozen
class ShortCircuitToolCall:
    """Tool-call directive: do not call the tool; use this content as its result."""

    content: str
    is_error: bool = False

    __module__ = "lash"


@attrs.frozen
class AbortToolCall:
    """Tool-call directive: refuse the call; the model sees an error result with this reason."""

    reason: str

    __module__ = "lash"


@attrs.frozen
class RequireApproval:
    """Tool-call directive: the call needs a human's approval before it runs. The turn stops
    with reason ``awaiting_approval`` once its round of calls is done, the call held in its
    commit; ``core.approve()`` answers it and the session's next execution continues the turn
    (see :doc:`/approvals`). ``reason`` tells the person asked why (shown with the pending
    approval)."""

    reason: str | None = None

    __module__ = "lash"


#: What ``before_tool_call`` may return (or ``None`` for no directive).
ToolCallDirective = ReplaceToolArguments | ShortCircuitToolCall | AbortToolCall | RequireApproval


@attrs.frozen
class Compaction:
    """What a ``compact_context`` implementation returns: the seed of the new agent frame.

    ``summary`` becomes the first node of the new frame; ``keep_recent_turns`` turns of the old
    frame are carried over verbatim after it (never splitting a tool call from its result).
    """

    summary: str
    keep_recent_turns: int = 0

    __module__ = "lash"


@attrs.frozen
class ToolCatalogEntry:
    """One tool in a session's catalog, with the plugin that contributed it.

    ``member`` says whether the session offers it to the model; an ``orphaned`` tool's plugin is
    no longer enabled (it is kept, as a non-member, and comes back with its plugin).
    """

    name: str
    plugin: str
    description: str = ""
    member: bool = True
    orphaned: bool = False

    __module__ = "lash"


class RecoveryDisposition(enum.Enum):
    """What happens to a background process whose worker died (its claim expired).

    ``RERUNNABLE`` processes are run again, by any worker, up to their ``max_attempts`` (so their
    side effects may repeat: at-least-once); ``OWNER_BOUND`` ones are never run twice: they end
    ``abandoned``; ``EXTERNALLY_OWNED`` ones are left ``running`` until the system that owns
    them calls ``complete``.
    """

    RERUNNABLE = "rerunnable"
    OWNER_BOUND = "owner_bound"
    EXTERNALLY_OWNED = "externally_owned"

    __module__ = "lash"


#: ``pending`` (waiting for a worker), ``running`` (claimed by a worker, or started and waiting
#: for an external ``complete``), and the terminal states ``succeeded``, ``failed``,
#: ``cancelled``, ``abandoned`` (an owner-bound process whose worker died).
ProcessStatus = Literal["pending", "running", "succeeded", "failed", "cancelled", "abandoned"]

#: The terminal process states: a process in one of them never changes again.
PROCESS_TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "abandoned"})


@attrs.frozen
class ProcessRecord:
    """A durable record of a background process: what to run, and how far it got.

    ``payload`` and ``result`` are JSON-ready data (the kind's attrs classes, unstructured);
    ``key`` makes starting idempotent (same key, same process). ``attempts`` counts the runs
    started so far (a rerunnable process is run again after a crash, up to ``max_attempts``).
    ``owner``, ``token`` and ``expires_at`` are the claim of the worker running it (``token``
    grows with each claim: a worker whose claim was taken over cannot finish it).
    ``cancel_requested`` holds the reason once someone asked it to stop; ``progress`` is the last
    event it emitted; ``notified`` is set once ``process_finished`` ran and the session (if any)
    was woken for its terminal state.
    """

    id: str
    kind: str
    session_id: str | None
    status: ProcessStatus
    result: Any = None
    error: str | None = None
    payload: Any = None
    key: str | None = None
    recovery: str = "owner_bound"
    attempts: int = 0
    max_attempts: int = 1
    timeout: float | None = None
    source: str | None = None
    owner: str | None = None
    token: int = 0
    expires_at: float | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: str | None = None
    progress: Any = None
    notified: bool = False

    __module__ = "lash"

    @property
    def finished(self) -> bool:
        """Whether the process is in a terminal state."""
        return self.status in PROCESS_TERMINAL


# --------------------------------------------------------------------------------------------
# Registrars passed to register_* hooks
# --------------------------------------------------------------------------------------------


class RegisterTool(Protocol):
    """``register(fn_or_tool, *, name=None, description=None)`` inside ``register_tools``."""

    def __call__(
        self, tool: Any, /, *, name: str | None = None, description: str | None = None
    ) -> None: ...


class RegisterProvider(Protocol):
    """``register(name, provider)`` inside ``register_providers``."""

    def __call__(self, name: str, provider: Any, /) -> None: ...


class RegisterProtocol(Protocol):
    """``register(name, protocol)`` inside ``register_protocol``."""

    def __call__(self, name: str, protocol: Any, /) -> None: ...


class RegisterProcessKind(Protocol):
    """``register(kind, run, *, recovery, timeout, max_attempts)`` inside
    ``register_process_kinds``; ``run(context, payload)`` is ``async``."""

    def __call__(
        self,
        kind: str,
        run: Callable[..., Awaitable[Any]],
        /,
        *,
        recovery: RecoveryDisposition = RecoveryDisposition.OWNER_BOUND,
        timeout: float | None = None,
        max_attempts: int = 3,
    ) -> None: ...


class RegisterStore(Protocol):
    """``register(scheme, factory)`` inside ``register_stores``; ``factory(url)`` builds a store."""

    def __call__(self, scheme: str, factory: Callable[[str], Any], /) -> None: ...


class RegisterSessionCommand(Protocol):
    """``register(name, apply)`` inside ``register_session_commands``;
    ``apply(session, args)`` applies one queued command (sync or ``async``)."""

    def __call__(self, name: str, apply: Callable[..., Any], /) -> None: ...


class RegisterCommand(Protocol):
    """``register(command)`` inside ``register_commands``: a :class:`click.Command` (or group),
    added to the ``lash`` command line under its own name."""

    def __call__(self, command: Any, /) -> None: ...


# Protocol classes cannot set __module__ in their body (it would become a protocol member).
RegisterTool.__module__ = "lash"
RegisterProvider.__module__ = "lash"
RegisterProtocol.__module__ = "lash"
RegisterProcessKind.__module__ = "lash"
RegisterStore.__module__ = "lash"
RegisterCommand.__module__ = "lash"
RegisterSessionCommand.__module__ = "lash"


resolve_here(globals())
