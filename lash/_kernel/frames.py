"""Opening agent frames: the seed of a new frame, and the invariant that tool pairs stay whole.

History is append-only, so a new frame never moves old nodes: it starts with a
:class:`FrameBoundary` (carrying the compaction summary, if any) followed by *copies* of the
recent turns it keeps, re-parented into the new frame.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import attrs

from lash._contract.graph import (
    AssistantMessage,
    FrameBoundary,
    GraphNode,
    ToolCallNode,
    ToolResultNode,
    UserMessage,
    new_node_id,
)


class SplitToolPair(ValueError):
    """A tool call and its result would end up in different agent frames."""


def unanswered_calls(nodes: Iterable[GraphNode]) -> list[str]:
    """Ids of tool calls (asked for by an assistant message, or recorded) without a result."""
    asked: list[str] = []
    answered: set[str] = set()
    for node in nodes:
        if isinstance(node, AssistantMessage):
            asked.extend(call.id for call in node.tool_calls)
        elif isinstance(node, ToolCallNode):
            if node.call.id not in asked:
                asked.append(node.call.id)
        elif isinstance(node, ToolResultNode):
            answered.add(node.call_id)
    return [call_id for call_id in asked if call_id not in answered]


def orphan_results(nodes: Iterable[GraphNode]) -> list[str]:
    """Ids of tool results whose call is not among ``nodes``."""
    called: set[str] = set()
    orphans: list[str] = []
    for node in nodes:
        if isinstance(node, AssistantMessage):
            called.update(call.id for call in node.tool_calls)
        elif isinstance(node, ToolCallNode):
            called.add(node.call.id)
        elif isinstance(node, ToolResultNode) and node.call_id not in called:
            orphans.append(node.call_id)
    return orphans


def check_tool_pairs(nodes: Sequence[GraphNode]) -> None:
    """Raise :class:`SplitToolPair` unless every tool call in ``nodes`` has its result there and
    every result its call."""
    missing = unanswered_calls(nodes)
    orphans = orphan_results(nodes)
    if missing or orphans:
        raise SplitToolPair(
            "a new agent frame would split tool calls from their results "
            f"(calls without results: {missing}, results without calls: {orphans})"
        )


def seed_frame(
    active: Sequence[GraphNode],
    *,
    turn: int,
    reason: str,
    summary: str | None,
    keep_recent_turns: int,
) -> list[GraphNode]:
    """The nodes that open a new frame after ``active`` (the current frame's nodes).

    The last ``keep_recent_turns`` whole turns of the current frame are copied into the new
    frame (new ids, same content), so a tool call is never separated from its result.
    """
    leaf = active[-1] if active else None
    previous = active[0].frame_id if active else None
    frame_id = uuid.uuid4().hex
    boundary = FrameBoundary(
        id=new_node_id(),
        parent_id=leaf.id if leaf is not None else None,
        frame_id=frame_id,
        turn=turn,
        previous_frame_id=previous,
        reason=reason,
        summary=summary,
    )
    seeded: list[GraphNode] = [boundary]
    if keep_recent_turns > 0:
        turns = [n.turn for n in active if isinstance(n, UserMessage)]
        kept = set(turns[-keep_recent_turns:])
        parent = boundary.id
        for node in active:
            if isinstance(node, FrameBoundary) or node.turn not in kept:
                continue
            copy = attrs.evolve(node, id=new_node_id(), parent_id=parent, frame_id=frame_id)
            seeded.append(copy)
            parent = copy.id
    check_tool_pairs(seeded[1:])
    return seeded
