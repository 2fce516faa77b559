"""Turn results and the typed events a streaming turn yields."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.types import ToolCall, ToolResult, Usage

Outcome = Literal["completed", "stopped", "failed"]
StopReason = Literal["cancelled", "max_tool_rounds", "plugin_abort", "awaiting_approval"]


@attrs.frozen
class ToolCallRecord:
    """A tool call of a turn and the (full) result it produced."""

    call: ToolCall
    result: ToolResult

    __module__ = "lash"


@attrs.frozen
class TurnResult:
    """How a turn ended.

    ``outcome`` is ``"completed"``, ``"stopped"`` (``reason``: ``"cancelled"``,
    ``"max_tool_rounds"``, ``"plugin_abort"`` or ``"awaiting_approval"``: tool calls wait for a
    human's answer, :doc:`/approvals`) or ``"failed"`` (``error`` says why, secrets
    redacted). ``text`` is the final assistant text, ``tool_calls`` every call with its result,
    ``usage`` the sum over the turn's model calls, ``revision`` the head revision the turn was
    committed as (for a turn cancelled before it started, the revision it found; nothing was
    committed). ``turn_id`` identifies the turn in its session; a cancelled turn says who asked
    (``cancelled_by``: ``"host"`` for ``turn.cancel()`` and ``cancel_running_turns()``, the
    ``origin`` given to ``core.cancel_turn()``) and why (``cancel_reason``).
    """

    session_id: str
    index: int
    outcome: Outcome
    text: str = ""
    reason: StopReason | None = None
    error: str | None = None
    #: For a turn failed by a plugin: which plugin, in which hook.
    error_plugin: str | None = None
    error_hook: str | None = None
    detail: str | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()
    usage: Usage = Usage()
    revision: int = 0
    turn_id: str = ""
    cancelled_by: str | None = None
    cancel_reason: str | None = None

    __module__ = "lash"

    @property
    def ok(self) -> bool:
        return self.outcome == "completed"


@attrs.frozen
class TextDeltaEvent:
    """A chunk of assistant text, as the model streams it."""

    text: str

    __module__ = "lash"


@attrs.frozen
class ToolCallStarted:
    """A tool call is about to run."""

    call: ToolCall

    __module__ = "lash"


@attrs.frozen
class ToolCallFinished:
    """A tool call finished; ``result`` is the full result."""

    call: ToolCall
    result: ToolResult

    __module__ = "lash"


@attrs.frozen
class PluginEvent:
    """A plugin emitted an event during the turn (``SessionView.emit`` or the
    :class:`lash.EmitEvent` directive); observers of the session see it too."""

    plugin: str
    type: str
    data: Any = None

    __module__ = "lash"


@attrs.frozen
class TurnFinished:
    """The turn ended and was committed (always the last event of a stream)."""

    result: TurnResult

    __module__ = "lash"


#: What ``turn.stream()`` yields.
TurnEvent = TextDeltaEvent | ToolCallStarted | ToolCallFinished | PluginEvent | TurnFinished


resolve_here(globals())
