"""Session operations between turns: configuration changes, compaction into agent frames, and
durable session commands. Each runs inside an execution (:meth:`SessionRuntime.execute`) that the
host-facing :class:`lash.Session` opens, and commits through it."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.graph import FrameBoundary, GraphNode
from lash._contract.types import AgentFrame, SessionConfig
from lash._kernel.frames import SplitToolPair, seed_frame
from lash._kernel.image import build_session_options
from lash._kernel.state import COMMANDS, QueuedCommand
from lash.errors import PluginError, SessionError

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime

#: The fields ``configure()`` accepts.
CONFIG_FIELDS = ("provider", "model", "prompt_layers", "plugin_options")


# -- configuration -----------------------------------------------------------------------------


def check_patch(session_id: str, patch: Mapping[str, Any]) -> None:
    unknown = sorted(set(patch) - set(CONFIG_FIELDS) - {"protocol_options"})
    if unknown:
        raise SessionError(
            f"configure() got unknown field(s) {unknown}; known: {', '.join(CONFIG_FIELDS)}",
            session_id=session_id,
        )


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


def apply_patch(config: SessionConfig, patch: Mapping[str, Any]) -> SessionConfig:
    changes: dict[str, Any] = {}
    for field, value in patch.items():
        if field == "plugin_options":
            merged = {k: dict(v) for k, v in config.plugin_options.items()}
            for plugin, values in value.items():
                merged[plugin] = {**merged.get(plugin, {}), **values}
            changes[field] = merged
        elif field == "prompt_layers":
            changes[field] = tuple(value)
        else:
            changes[field] = value
    return attrs.evolve(config, **changes)


# -- compaction and frames ----------------------------------------------------------------------


async def compact(
    runtime: SessionRuntime, instructions: str | None, *, reason: str
) -> AgentFrame | None:
    """Ask ``compact_context`` (first) for a compaction and open the new frame with it."""
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
    await runtime.commit()
    await frames_opened(runtime, nodes)
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


async def frames_opened(runtime: SessionRuntime, nodes: Sequence[GraphNode]) -> None:
    """Broadcast ``frame_opened`` for every frame boundary among committed ``nodes``."""
    for node in nodes:
        if isinstance(node, FrameBoundary):
            frame = AgentFrame(
                id=node.frame_id, parent_id=node.previous_frame_id, reason=node.reason
            )
            await runtime.composition.hooks.broadcast(
                "frame_opened", session=runtime.view, frame=frame
            )


# -- session commands ---------------------------------------------------------------------------


def check_command(session_id: str, name: str, key: str) -> None:
    if not key or not key.strip():
        raise SessionError(
            f"session {session_id!r}: a command needs a non-empty idempotency key",
            session_id=session_id,
        )
    if name not in COMMANDS:
        raise SessionError(
            f"session {session_id!r}: unknown command {name!r}; known: {', '.join(COMMANDS)}",
            session_id=session_id,
        )


async def enqueue_command(runtime: SessionRuntime, name: str, key: str) -> bool:
    kernel = runtime.image.kernel
    if kernel.knows_key(key):
        return False
    kernel.commands.append(QueuedCommand(name, key))  # type: ignore[arg-type]
    await runtime.commit()
    return True


def run_commands(runtime: SessionRuntime) -> list[GraphNode]:
    """Apply and dequeue every queued command; return the nodes they add (reset frames, not yet
    in the graph: the caller records them in its commit)."""
    kernel = runtime.image.kernel
    nodes: list[GraphNode] = []
    while kernel.commands:
        command = kernel.commands.pop(0)
        if command.name == "refresh_tool_catalog":
            available = runtime.composition.available_tools()
            kernel.refresh({name: plugin for name, (plugin, _) in available.items()})
        elif command.name == "reset":
            # The frame a reset leaves: the graph's, or the one an earlier reset just opened.
            active = nodes[-1:] if nodes else list(runtime.image.graph.active_path())
            nodes.extend(
                seed_frame(
                    active,
                    turn=runtime.image.turns,
                    reason="reset",
                    summary=None,
                    keep_recent_turns=0,
                )
            )
        kernel.mark_applied(command.key)
    return nodes


async def apply_commands(runtime: SessionRuntime) -> int:
    count = len(runtime.image.kernel.commands)
    if count == 0:
        return 0
    nodes = run_commands(runtime)
    for node in nodes:
        runtime.add_node(node)
    await runtime.commit()
    await frames_opened(runtime, nodes)
    return count
