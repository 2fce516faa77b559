"""The hook data that turns, sessions and background processes use: what a model call sees
(:class:`lash.Message`, :class:`lash.PromptView`), a session's configuration, frames and tool
catalog, the directives and fragments hooks return, compaction seeds, and process records.

Apart from :mod:`lash._contract.types` so that loading plugins (and with it ``lash --help`` and
``lash plugins``) does not build these classes: nothing on that path uses them. Like every public
name, they are imported from ``lash``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.media import Image
from lash._contract.modeloptions import ModelOptions
from lash._contract.types import ToolCall

__all__ = [
    "PROCESS_TERMINAL",
    "AbortToolCall",
    "AbortTurn",
    "AgentFrame",
    "Compact",
    "Compaction",
    "EmitEvent",
    "EnqueueMessages",
    "Message",
    "ProcessRecord",
    "ProcessStatus",
    "PromptContribution",
    "PromptView",
    "ReplaceToolArguments",
    "RequireApproval",
    "SessionConfig",
    "ShortCircuitToolCall",
    "StartProcess",
    "ToolCallDirective",
    "ToolCatalogEntry",
    "TurnDirective",
]


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


resolve_here(globals())
