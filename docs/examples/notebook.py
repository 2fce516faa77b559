"""A plugin contributing tools: typed functions, a tool context, a timeout and a raw schema."""

from __future__ import annotations

import math
import re
from typing import Any, Literal

import attrs

import lash

Priority = Literal["low", "normal", "high"]


@attrs.define
class Note:
    """A note kept in the session."""

    id: int
    text: str
    tags: list[str] = attrs.field(factory=list)
    priority: Priority = "normal"


@attrs.define
class NotebookState:
    """The session's notes: per-session state, committed with every turn."""

    notes: list[Note] = attrs.field(factory=list)


@attrs.frozen
class NotebookOptions:
    """Host defaults in ``[options.notebook]``."""

    max_notes: int = lash.option(100, help="Most notes a session may keep.")
    prime_timeout: float = lash.option(10.0, help="Seconds count_primes may run.")


lash_plugin = lash.PluginMeta(
    name="notebook",
    description="Notes kept in the session, and a few tools to work with them.",
    options=NotebookOptions,
    state=NotebookState,
)


# -- typed tools -------------------------------------------------------------------------------


def add_note(
    text: str,
    context: lash.ToolContext,
    tags: list[str] | None = None,
    priority: Priority = "normal",
) -> str:
    """Save a note in this conversation's notebook.

    Args:
        text: What to remember, in one or two sentences.
        tags: Lowercase keywords to find the note by later.
        priority: How much the note matters.
    """
    state = context.state(NotebookState)
    limit = context.session.options(NotebookOptions).max_notes
    if len(state.notes) >= limit:
        # An exception becomes an error result: the model reads this message.
        raise ValueError(f"the notebook is full (at most {limit} notes)")
    note = Note(len(state.notes) + 1, text, list(tags or []), priority)
    state.notes.append(note)
    return f"saved note {note.id}"


async def find_notes(query: str, context: lash.ToolContext, limit: int = 5) -> list[Note]:
    """Find notes whose text or tags contain the query (case-insensitive)."""
    query = query.lower()
    notes = context.state(NotebookState).notes
    hits = [n for n in notes if query in n.text.lower() or query in n.tags]
    return hits[:limit]  # attrs instances are sent to the model as JSON


def count_primes(below: int, context: lash.ToolContext) -> int:
    """Count the prime numbers below a bound (slow for big bounds)."""
    count = 0
    for n in range(2, below):
        # A sync tool runs in a thread, which cannot be interrupted: after a timeout or a
        # cancellation the kernel sets `cancelled`, and the tool should notice and stop.
        if n % 10_000 == 0 and context.is_cancelled:
            raise RuntimeError("cancelled")  # nobody reads this result any more
        if all(n % d for d in range(2, math.isqrt(n) + 1)):
            count += 1
    return count


# -- a raw JSON-schema tool --------------------------------------------------------------------

TAG = re.compile(r"[a-z][a-z0-9-]*")

RETAG_SCHEMA = {
    "type": "object",
    "properties": {
        "old": {"type": "string", "description": "The tag to replace."},
        "new": {"type": "string", "pattern": TAG.pattern, "description": "The new tag."},
    },
    "required": ["old", "new"],
    "additionalProperties": False,
}


def retag(arguments: dict[str, Any], context: lash.ToolContext) -> str | lash.ToolResult:
    """Rename a tag on every note. A raw tool checks its arguments itself."""
    old, new = arguments.get("old"), arguments.get("new")
    if not isinstance(old, str) or not isinstance(new, str) or not TAG.fullmatch(new):
        return lash.ToolResult(context.call_id, f"invalid tag {new!r}: use a-z, 0-9, '-'", True)
    changed = 0
    for note in context.state(NotebookState).notes:
        if old in note.tags:
            note.tags = [new if tag == old else tag for tag in note.tags]
            changed += 1
    return f"retagged {changed} note(s)"


@lash.hookimpl
def register_tools(register: lash.RegisterTool, options: NotebookOptions) -> None:
    register(add_note)
    register(find_notes, name="search_notes")
    register(lash.tool(count_primes, timeout=options.prime_timeout))
    register(lash.raw_tool("retag", "Rename a tag on every note.", RETAG_SCHEMA, retag))
