"""``compaction``: summarize the context into a new agent frame.

A fallback ``compact_context`` (``trylast``, so any other compactor wins): it asks the session's
own provider for a summary through ``session.complete`` (usage attributed to the source
``compaction``) and keeps the most recent turns verbatim. With ``threshold_tokens`` set, it
compacts automatically: its ``after_turn`` asks for a compaction (a :class:`lash.Compact`
directive) once a turn's last prompt went over the threshold, and the kernel compacts right after
committing that turn.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

import lash

#: What the summarizer is asked to do (the conversation follows as the user message).
SUMMARY_INSTRUCTIONS = (
    "You compact a conversation between a user and an assistant that uses tools. Write a "
    "concise summary that lets the assistant continue the work: the user's goals and "
    "constraints, decisions made, facts learned from tool results, open questions and the "
    "next steps. Write plain prose, no preamble."
)


def _positive_or_none(_: object, attribute: attrs.Attribute[object], value: int | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be a positive number of tokens or unset")


def _not_negative(_: object, attribute: attrs.Attribute[object], value: int) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be 0 or more")


@attrs.frozen
class CompactionOptions:
    """Options of the compaction plugin."""

    threshold_tokens: int | None = lash.option(
        default=None,
        validator=_positive_or_none,
        help="compact automatically after a turn whose prompt exceeded this many input tokens",
    )
    keep_recent_turns: int = lash.option(
        default=2,
        validator=_not_negative,
        help="turns carried verbatim into the new frame (never splitting a tool call)",
    )


lash_plugin = lash.PluginMeta(
    options=CompactionOptions,
    description="Summarizing compactor: asks the session's provider for a summary.",
)


def render_transcript(nodes: Sequence[lash.GraphNode]) -> str:
    """The conversation as plain text for the summarizer (tool results as the model saw them)."""
    lines: list[str] = []
    for node in nodes:
        if isinstance(node, lash.FrameBoundary) and node.summary:
            lines.append(f"[earlier summary] {node.summary}")
        elif isinstance(node, lash.UserMessage):
            lines.append(f"user: {node.text}")
        elif isinstance(node, lash.AssistantMessage):
            if node.text:
                lines.append(f"assistant: {node.text}")
            for call in node.tool_calls:
                lines.append(f"assistant called {call.name} with {dict(call.arguments)}")
        elif isinstance(node, lash.ToolResultNode):
            shown = node.projected if node.projected is not None else node.content
            mark = " (error)" if node.is_error else ""
            lines.append(f"tool {node.name}{mark}: {shown}")
    return "\n".join(lines)


@lash.hookimpl
def after_turn(turn: lash.TurnView) -> lash.Compact | None:
    threshold = turn.session.options(CompactionOptions).threshold_tokens
    if threshold is None:
        return None
    # The last model call of the turn: its prompt is what the next turn's starts from.
    last = next((n for n in reversed(turn.nodes) if isinstance(n, lash.AssistantMessage)), None)
    if last is None or last.usage.input_tokens <= threshold:
        return None
    return lash.Compact()


@lash.hookimpl(trylast=True)
async def compact_context(session: lash.SessionView, instructions: str | None) -> lash.Compaction:
    options = session.options(CompactionOptions)
    nodes = session.nodes
    # The turns carried verbatim need no summary: summarize what comes before them.
    turns = [n.turn for n in nodes if isinstance(n, lash.UserMessage)]
    kept = set(turns[-options.keep_recent_turns :]) if options.keep_recent_turns else set()
    older = [n for n in nodes if n.turn not in kept or isinstance(n, lash.FrameBoundary)]
    request = render_transcript(older)
    if instructions:
        request += f"\n\nWhen summarizing, follow these instructions: {instructions}"
    response = await session.complete(
        [lash.Message("system", SUMMARY_INSTRUCTIONS), lash.Message("user", request)],
        source="compaction",
    )
    return lash.Compaction(
        summary=response.text.strip(), keep_recent_turns=options.keep_recent_turns
    )
