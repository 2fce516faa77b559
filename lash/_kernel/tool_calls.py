"""Running one tool call: the tool-call hooks folded around the tool, and what the model sees.

A turn's calls run concurrently (``asyncio.gather``), each through :func:`run_tool_call`:
``before_tool_call`` (folded: replaced arguments, a short-circuit or a refusal), the tool itself
(with its :class:`lash.ToolContext` and time limit, attributed to its plugin), then
``after_tool_call`` (folded: a replaced result). A failing hook gives the model an error result;
the turn goes on. :func:`project` asks ``project_tool_result`` what the model sees of the result.

A call that needs a human's approval (its tool declared ``approval="always"``, or a
``RequireApproval`` directive) does not run: :func:`run_tool_call` returns a :class:`Hold`, the
turn stops ``awaiting_approval``, and once it is approved the continuation runs it with
:func:`run_approved` (the tool and ``after_tool_call``: ``before_tool_call`` ran already).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.calls import CALLER, Caller
from lash._contract.services import ToolContext
from lash._contract.turn_types import (
    AbortToolCall,
    ReplaceToolArguments,
    RequireApproval,
    ShortCircuitToolCall,
)
from lash._contract.types import ToolCall, ToolResult
from lash._tools.arguments import invalid_arguments_result
from lash.errors import LashError

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime
    from lash._tools.tool import Tool


@attrs.frozen
class Hold:
    """A call held for approval: ``plugin`` asked (``None``: the tool's own declaration), and
    ``reason`` says why."""

    plugin: str | None = None
    reason: str | None = None


async def run_tool_call(
    runtime: SessionRuntime, call: ToolCall, context: ToolContext
) -> tuple[ToolCall, ToolResult | Hold]:
    """Run one call through the tool-call hooks; returns the call as run (or as it would run)
    and its result, or a :class:`Hold` when the call waits for approval."""
    hooks = runtime.composition.hooks
    outcome: list[ToolResult] = []
    holds: list[Hold] = []

    def before(plugin: str, directive: Any, kwargs: dict[str, Any]) -> bool:
        current: ToolCall = kwargs["call"]
        if isinstance(directive, ReplaceToolArguments):
            kwargs["call"] = attrs.evolve(current, arguments=dict(directive.arguments))
            return False
        if isinstance(directive, RequireApproval):
            # The fold goes on: a later plugin may still replace the arguments (the person
            # approves the call as it would run), or refuse the call outright.
            holds.append(Hold(plugin, directive.reason))
            return False
        if isinstance(directive, ShortCircuitToolCall):
            outcome.append(ToolResult(current.id, directive.content, directive.is_error))
        elif isinstance(directive, AbortToolCall):
            outcome.append(
                ToolResult(
                    current.id,
                    f"tool call {current.name!r} refused by plugin {plugin!r}: {directive.reason}",
                    True,
                )
            )
        return True

    try:
        folded = await hooks.fold("before_tool_call", before, call=call, context=context)
        call = folded["call"]
    except LashError as exc:
        return call, ToolResult(call.id, str(exc), True)
    if outcome:
        return call, outcome[0]
    entry = None
    if call.invalid_arguments is None and call.name in runtime.last_catalog:
        # (A call the tool would refuse anyway, unknown or with bad arguments, is not held.)
        if holds:
            return call, holds[0]
        entry = runtime.composition.tool_entry(call.name)
        if entry is not None and entry[1].approval == "always":
            return call, Hold()
    # (The entry found here is what _tool_of would find: nothing runs in between.)
    return await run_approved(runtime, call, context, offered_only=True, entry=entry)


async def run_approved(
    runtime: SessionRuntime,
    call: ToolCall,
    context: ToolContext,
    *,
    offered_only: bool = False,
    entry: tuple[str, Tool] | None = None,
) -> tuple[ToolCall, ToolResult]:
    """Run the tool and fold ``after_tool_call`` around its result. ``offered_only``: refuse a
    tool the last model call was not offered (an approved call, continued by another process,
    ran no model call: its tool was offered when the model asked). ``entry``: the call's
    offered tool (its plugin and the tool), when the caller just found it (one lookup a call,
    not two)."""
    hooks = runtime.composition.hooks
    found = entry if entry is not None else _tool_of(runtime, call, offered_only=offered_only)
    if isinstance(found, ToolResult):
        result = found  # refused
    else:
        plugin, tool = found
        token = CALLER.set(Caller(f"tool {call.name!r}", plugin))
        try:
            result = await tool.invoke(call.arguments, context)
        finally:
            CALLER.reset(token)
        # The tool answers with its context's call id, which is this call's: evolve only a
        # result that says otherwise.
        if result.call_id != call.id:
            result = attrs.evolve(result, call_id=call.id)
    final = call

    def after(plugin: str, replaced: Any, kwargs: dict[str, Any]) -> bool:
        kwargs["result"] = attrs.evolve(replaced, call_id=final.id)
        return False

    try:
        folded = await hooks.fold(
            "after_tool_call", after, call=call, result=result, context=context
        )
        result = folded["result"]
    except LashError as exc:
        result = ToolResult(call.id, str(exc), True)
    return call, result


def _tool_of(
    runtime: SessionRuntime, call: ToolCall, *, offered_only: bool
) -> tuple[str, Tool] | ToolResult:
    """The tool ``call`` runs (its plugin, and the tool), or the error result that refuses the
    call (arguments that are not a JSON object, a tool that is unknown or, ``offered_only``,
    not offered)."""
    if call.invalid_arguments is not None:
        return invalid_arguments_result(call)
    offered = runtime.last_catalog
    entry = runtime.composition.tool_entry(call.name)
    if entry is None or (offered_only and call.name not in offered):
        available = ", ".join(sorted(offered)) or "none"
        return ToolResult(
            call.id, f"unknown tool {call.name!r}; available tools: {available}", True
        )
    return entry


async def project(runtime: SessionRuntime, call: ToolCall, result: ToolResult) -> str | None:
    """What the model sees of ``result`` (``None``: the result as it is)."""
    hooks = runtime.composition.hooks
    if not hooks.impls("project_tool_result"):
        return None  # (without making the dispatch's coroutine: most sessions have none)
    try:
        answer = await hooks.exclusive(
            "project_tool_result", session=runtime.view, call=call, result=result
        )
    except LashError as exc:
        hooks.report(exc)  # documented: the model sees the unprojected result
        return None
    if answer is None:
        return None
    value: str = answer[1]
    return value if value != result.content else None
