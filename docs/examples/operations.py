"""A plugin with operations: a query hosts call to read a session's notes, and a command that
adds a note and queues a follow-up turn, atomically."""

from __future__ import annotations

import attrs

import lash


@attrs.define
class Notes:
    """The plugin's per-session state: the notes taken so far."""

    items: list[str] = attrs.field(factory=list)


@attrs.frozen
class AddNote:
    """Arguments of ``notes.add``."""

    text: str
    follow_up: bool = False


@attrs.frozen
class Added:
    count: int


@attrs.frozen
class Listing:
    notes: list[str]
    turns: int


async def list_notes(context: lash.OperationContext) -> Listing:
    """The session's notes and how many turns it ran."""
    assert context.session is not None  # session="required"
    return Listing(list(context.session.state(Notes).items), context.session.turns)


async def add_note(context: lash.OperationContext, args: AddNote) -> Added:
    """Add a note (and, with follow_up, queue a turn about it)."""
    assert context.session is not None
    notes = context.session.state(Notes)
    notes.items.append(args.text)  # committed with the command
    if args.follow_up:
        await context.enqueue(f"Consider this note: {args.text}", key=f"note:{args.text}")
    return Added(len(notes.items))


class NotesPlugin:
    lash_plugin = lash.PluginMeta(name="notes", state=Notes)

    @lash.hookimpl
    def register_operations(self, register: lash.RegisterOperation) -> None:
        register("notes.list", list_notes, session="required")
        register("notes.add", add_note, kind="command", session="required")
