"""Session operations between turns: configuration changes, compaction into agent frames, and
durable session commands. Each runs inside an execution (:meth:`SessionRuntime.execute`) that the
host-facing :class:`lash.Session` opens, and commits through it."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lash._contract.calls import CALLER, Caller
from lash._contract.graph import FrameBoundary, GraphNode
from lash._contract.serialization import describe_value, to_data
from lash._contract.turn_types import AgentFrame, SessionConfig
from lash._kernel import approvals
from lash._kernel.configpatch import apply_patch
from lash._kernel.frames import SplitToolPair, seed_frame
from lash._kernel.image import build_session_options
from lash._store.leases import command_event
from lash._store.records import EventDraft
from lash.errors import LashError, PluginError, SessionError

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime

# -- configuration -----------------------------------------------------------------------------


async def configure(runtime: SessionRuntime, patch: Mapping[str, Any]) -> SessionConfig:
    """Apply ``patch`` through ``mutate_session_config``, commit it, broadcast the change."""
    image = runtime.image
    previous = image.config
    patch = _legacy_protocol_options(runtime, patch)
    proposed = apply_patch(previous, patch)
    if proposed == previous:
        return previous
    hooks = runtime.composition.hooks
    final: SessionConfig = await hooks.chain(
        "mutate_session_config",
        key="proposed",
        value=proposed,
        session=runtime.view,
        previous=previous,
    )
    if final == previous:
        return previous
    runtime.composition.provider_for(final.provider, final.model)  # unknown provider: refused
    options = build_session_options(runtime.id, runtime.composition, runtime.overrides, final)
    # A failed commit marks the image stale: the next operation reloads what the store holds.
    image.config, image.config_dirty, image.options = final, True, options
    runtime.pending_events.append(
        EventDraft("config_changed", {"previous": to_data(previous), "current": to_data(final)})
    )
    await runtime.commit()
    await hooks.broadcast(
        "session_config_changed", session=runtime.view, previous=previous, current=final
    )
    return final


def _legacy_protocol_options(
    runtime: SessionRuntime, patch: Mapping[str, Any]
) -> Mapping[str, Any]:
    """``configure(protocol_options=...)`` of lash 0.1: the protocol plugin's options now."""
    if "protocol_options" not in patch:
        return patch
    plugin, _ = runtime.composition.protocol()
    warnings.warn(
        "configure(protocol_options=...) is deprecated since lash 0.2: protocol settings are "
        f"the protocol plugin's options; use configure(plugin_options={{{plugin!r}: {{...}}}})",
        DeprecationWarning,
        stacklevel=4,
    )
    rest = {k: v for k, v in patch.items() if k != "protocol_options"}
    merged = {k: dict(v) for k, v in rest.get("plugin_options", {}).items()}
    merged[plugin] = {**dict(patch["protocol_options"]), **merged.get(plugin, {})}
    rest["plugin_options"] = merged
    return rest


# -- compaction and frames ----------------------------------------------------------------------


async def compact(
    runtime: SessionRuntime, instructions: str | None, *, reason: str
) -> AgentFrame | None:
    """Ask ``compact_context`` (first) for a compaction and open the new frame with it."""
    if instructions is not None and not isinstance(instructions, str):
        # (Passed on to every plugin as they came, before.)
        raise SessionError(
            f"session {runtime.id!r}: compaction instructions must be a string or None, got "
            f"{describe_value(instructions)}",
            session_id=runtime.id,
        )
    answer = await runtime.composition.hooks.first(
        "compact_context", session=runtime.view, instructions=instructions
    )
    if answer is None:
        return None  # any completion usage is committed with the operation
    _plugin, compaction = answer  # a lash.Compaction: the dispatcher checked it
    return await open_frame(
        runtime,
        reason=reason,
        summary=compaction.summary,
        keep_recent_turns=compaction.keep_recent_turns,
    )


async def compact_after_turn(runtime: SessionRuntime, instructions: str | None) -> None:
    """The ``Compact`` directive: compact once the turn is committed. Errors are reported,
    never raised: the turn itself is already committed."""
    try:
        await compact(runtime, instructions, reason="auto_compaction")
    except (PluginError, SessionError) as exc:
        runtime.report(exc)


async def open_frame(
    runtime: SessionRuntime, *, reason: str, summary: str | None, keep_recent_turns: int
) -> AgentFrame:
    nodes = seed(runtime, reason=reason, summary=summary, keep_recent_turns=keep_recent_turns)
    for node in nodes:
        runtime.add_node(node)
    await runtime.commit()  # broadcasts frame_opened once committed
    boundary = nodes[0]
    assert isinstance(boundary, FrameBoundary)
    return AgentFrame(id=boundary.frame_id, parent_id=boundary.previous_frame_id, reason=reason)


def seed(
    runtime: SessionRuntime, *, reason: str, summary: str | None, keep_recent_turns: int
) -> list[GraphNode]:
    try:
        return seed_frame(
            runtime.image.graph.active_path(),
            turn=runtime.image.turns,
            reason=reason,
            summary=summary,
            keep_recent_turns=keep_recent_turns,
        )
    except SplitToolPair as exc:
        raise SessionError(f"session {runtime.id!r}: {exc}", session_id=runtime.id) from None


# -- session commands ---------------------------------------------------------------------------

#: The commands the kernel itself applies; plugins add theirs (``register_session_commands``).
BUILTIN_COMMANDS: tuple[str, ...] = ("refresh_tool_catalog", "reset", approvals.APPROVAL_COMMAND)


def check_command(session_id: str, name: str, key: str, known: Sequence[str]) -> None:
    if not isinstance(key, str) or not key.strip():
        raise SessionError(
            f"session {session_id!r}: a command needs a non-empty idempotency key",
            session_id=session_id,
        )
    if name not in known:
        raise SessionError(
            f"session {session_id!r}: unknown command {name!r}; known: {', '.join(known)}",
            session_id=session_id,
        )


async def apply_queued_commands(runtime: SessionRuntime) -> int:
    """Apply the session's queued commands, oldest first (legacy commands queued by lash 0.1 in
    the kernel state first); their changes and their settlement commit with the execution.
    A plugin command that fails is reported and settled (it is not retried for ever)."""
    kernel = runtime.image.kernel
    count = 0
    while kernel.commands:  # lash 0.1 sessions: commands queued in the kernel state
        legacy = kernel.commands.pop(0)
        runtime.dirty = True
        await _apply(runtime, legacy.name, {})
        count += 1
    for command in await runtime.core.store.list_commands(runtime.id):
        error = await _apply(runtime, command.name, command.args, command.source)
        runtime.pending_applied.append(command.id)
        runtime.pending_events.append(command_event("command_applied", command, error=error))
        count += 1
    return count


async def _apply(
    runtime: SessionRuntime, name: str, args: Mapping[str, Any], source: str | None = None
) -> str | None:
    """Apply one command; returns the error text of a failed plugin command (reported)."""
    if name == "refresh_tool_catalog":
        available = runtime.composition.available_tools()
        runtime.dirty |= runtime.image.kernel.refresh(
            {tool: plugin for tool, (plugin, _) in available.items()}
        )
        return None
    if name == "reset":
        approvals.expire_on_reset(runtime)
        for node in seed(runtime, reason="reset", summary=None, keep_recent_turns=0):
            runtime.add_node(node)
        return None
    if name == approvals.APPROVAL_COMMAND:
        return approvals.apply_answer(runtime, dict(args))
    contribution = runtime.composition.registry.of("session_command").get(name)
    if contribution is None:
        error: LashError = SessionError(
            f"session {runtime.id!r}: queued command {name!r} is not known to this host (no "
            "enabled plugin registers it); it was settled without effect",
            session_id=runtime.id,
        )
        runtime.report(error)
        return str(error)
    token = CALLER.set(Caller(f"command {name!r}", contribution.plugin))
    try:
        value = contribution.value(runtime.view, dict(args))
        if inspect.isawaitable(value):
            await value
    except Exception as exc:
        error = PluginError(
            f"plugin {contribution.plugin!r} failed applying session command {name!r}: "
            f"{type(exc).__name__}: {exc}",
            plugin=contribution.plugin,
            hook="register_session_commands",
        )
        error.__cause__ = exc
        runtime.report(error)
        return str(error)
    finally:
        CALLER.reset(token)
    return None
