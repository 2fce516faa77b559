"""A plugin with operations: a query hosts call to read a session's notes, and a command that
adds a note and queues a follow-up turn, atomically. ``main()`` is a host calling them.

Run it with ``python docs/examples/operations.py`` (a scripted model: no network).
"""

from __future__ import annotations

import asyncio
import json

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


@attrs.frozen
class DigestText:
    text: str


@attrs.frozen
class Digest:
    words: int


async def digest(context: lash.ProcessContext, args: DigestText) -> Digest:
    """Digest a long text, as a process (a worker runs it)."""
    await context.emit({"stage": "counting"})  # progress, seen by the session's observers
    return Digest(len(args.text.split()))


class NotesPlugin:
    lash_plugin = lash.PluginMeta(name="notes", state=Notes)

    @lash.hookimpl
    def register_operations(self, register: lash.RegisterOperation) -> None:
        register("notes.list", list_notes, session="required")
        register("notes.add", add_note, kind="command", session="required")
        register("notes.digest", digest, kind="task", session="required")


# -- a host --------------------------------------------------------------------------------


async def main() -> None:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", NotesPlugin()],
        store="memory://",
        provider="scripted",
        options={"scripted": {"responses": [{"text": "Hello."}, {"text": "Noted: milk."}]}},
    )
    async with core:
        print("discovered:")
        for info in core.operations.list():
            args = json.dumps(info.args_schema["properties"])
            print(f"  {info.name} ({info.kind}, session {info.session}): args {args}")
        session = await core.session("kitchen").open()
        await session.turn("Hi").run()
        added = await core.operations.call(
            "notes.add", {"text": "buy milk", "follow_up": True}, session_id="kitchen"
        )
        print(f"notes.add -> {added}")
        print(f"queued: {[i.text for i in await core.inputs('kitchen')]}")
        print(f"notes.list -> {await core.operations.call('notes.list', session_id='kitchen')}")
        try:
            await core.operations.call("notes.add", {"txt": "eggs"}, session_id="kitchen")
        except lash.OperationError as exc:
            print(f"refused: {exc} (field {exc.field!r})")
        (turn,) = await session.drain()
        print(f"drained: {turn.text!r}")
        started = await core.operations.call(
            "notes.digest", {"text": "a long text to digest"}, session_id="kitchen"
        )
        print(f"notes.digest -> process of kind {started.kind!r}: {started.status}")
        await core.run_worker(once=True, sessions=False)  # what `lash worker` does, once
        done = await core.processes.wait(started.id)
        print(f"  {done.status}: {done.result}, last progress {done.progress}")


if __name__ == "__main__":
    asyncio.run(main())
