"""Mailbox operations: cancel a turn by its id from another core, input for the running turn, a
``checkpoint`` hook, and a plugin's session command.

Two cores over one SQLite file stand in for two processes: ``desk`` (a support desk's front end,
which never opens the session) and ``worker`` (the process that runs the session's turns). Run
it with ``python docs/examples/mailbox_ops.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

import attrs

import lash

# -- the plugins -------------------------------------------------------------------------------


class Shop:
    """A ``check_stock`` tool; the warehouse answers once the host opens it."""

    lash_plugin = lash.PluginMeta(name="shop")

    def __init__(self) -> None:
        self.warehouse_open = asyncio.Event()

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(lash.tool(self.check_stock))

    async def check_stock(self, item: str) -> str:
        """Ask the warehouse whether ``item`` is in stock."""
        await self.warehouse_open.wait()  # cancelling the turn interrupts it here
        return f"{item}: 3 in stock"


class Reviewer:
    """Before a turn completes, asks the model to cite its source, and tells observers."""

    lash_plugin = lash.PluginMeta(name="reviewer")

    @lash.hookimpl
    def checkpoint(self, turn: lash.TurnView, kind: str) -> list[lash.TurnDirective] | None:
        if kind != "before_completion":
            return None  # "after_tools": after each round of tool calls
        answer = next(n for n in reversed(turn.nodes) if isinstance(n, lash.AssistantMessage))
        if "Source:" in answer.text:
            return None  # the turn completes with this answer
        return [
            # Joins the running turn: the model is called again, and sees it.
            lash.EnqueueMessages(("Cite your source, please.",), target="current_turn"),
            lash.EmitEvent("review", {"asked_for": "a source"}),
        ]


@attrs.define
class NotesState:
    """Notes about the customer: per-session state."""

    notes: list[str] = attrs.field(factory=list)


class Notes:
    """Any process may add a note to a session, with the ``add_note`` session command."""

    lash_plugin = lash.PluginMeta(name="notes", state=NotesState)

    @lash.hookimpl
    def register_session_commands(self, register: lash.RegisterSessionCommand) -> None:
        register("add_note", self.add_note)

    def add_note(self, session: lash.SessionView, args: dict[str, Any]) -> None:
        # Applied by the session's next execution; the state change commits with it.
        session.state(NotesState).notes.append(args["text"])


def build_core(db: Path, *answers: Any, shop: Shop | None = None) -> lash.LashCore:
    """A host on the SQLite file ``db``; its model plays ``answers`` (a string is a plain
    answer)."""
    responses = [{"text": a} if isinstance(a, str) else a for a in answers]
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", shop or Shop(), Reviewer, Notes],
        autoload=False,
        store=f"sqlite:///{db.resolve()}",
        provider="scripted",
        options={"scripted": {"responses": responses}},
    )


def ask_stock(item: str) -> dict[str, Any]:
    """A model response that calls ``check_stock``."""
    return {"tool_calls": [{"name": "check_stock", "arguments": {"item": item}}]}


# -- the host ----------------------------------------------------------------------------------


async def cancel_by_turn_id(db: Path) -> lash.TurnResult:
    """The worker runs turn ``order-7``; the desk, another core, asks it to stop by its id."""
    async with build_core(db, ask_stock("red bike")) as worker, build_core(db) as desk:
        session = await worker.session("orders").open()
        cursor = (await desk.current("orders")).cursor  # the desk follows from here
        running = asyncio.create_task(session.turn("Is the red bike in stock?", id="order-7").run())
        async with contextlib.aclosing(desk.observe("orders", after=cursor)) as events:
            async for event in events:
                if isinstance(event, lash.ObservedEvent) and event.type == "turn_started":
                    break  # order-7 runs (its tool waits for the warehouse)
        receipt = await desk.cancel_turn(
            "orders", "order-7", reason="the customer hung up", origin="desk:alice"
        )
        print(f"desk: cancel order-7: {receipt.status}")
        result = await running  # the worker reads the request within control_poll seconds
        print(f"worker: order-7 {result.outcome} ({result.reason}), revision {result.revision}")
        print(f"  cancelled by {result.cancelled_by!r}: {result.cancel_reason!r}")

        again = await desk.cancel_turn("orders", "order-7")
        assert again.record is not None
        print(f"desk: cancel order-7 again: {again.status} ({again.record.outcome})")
        print(f"desk: cancel order-8: {(await desk.cancel_turn('orders', 'order-8')).status}")

        # A turn id the session has committed is not run again: its stored result comes back.
        retried = await session.turn("Is the red bike in stock?", id="order-7").run()
        print(f"worker: order-7 resubmitted: {retried.outcome}, revision {retried.revision}")
        print(f"  the session is still at revision {session.revision}")
        return result


async def input_for_the_running_turn(db: Path) -> lash.TurnResult:
    """Input queued with ``ingress="active_turn"`` joins the turn running when it arrives; the
    reviewer's checkpoint asks for a source before the turn completes."""
    shop = Shop()
    script = (
        ask_stock("blue bike"),
        "The blue bike is in stock, and Friday works.",
        "Source: the warehouse, just now.",
    )
    async with build_core(db, *script, shop=shop) as worker, build_core(db) as desk:
        session = await worker.session("orders").open()
        turn = session.turn("Is the blue bike in stock?")
        async with contextlib.aclosing(turn.stream()) as events:
            async for event in events:
                if isinstance(event, lash.ToolCallStarted):
                    # While the tool waits, the desk adds to the question. The running turn
                    # reads such input at its checkpoints, at most every input_poll seconds.
                    await desk.enqueue("orders", "Can it come on Friday?", ingress="active_turn")
                    await asyncio.sleep(worker.input_poll)
                    shop.warehouse_open.set()
                elif isinstance(event, lash.PluginEvent):
                    print(f"worker: plugin event {event.plugin}/{event.type}: {event.data}")
                elif isinstance(event, lash.TurnFinished):
                    result = event.result
        print(f"worker: turn {result.index} {result.outcome}; the turn's messages:")
        for node in session.nodes:
            if node.turn == result.index and isinstance(node, lash.UserMessage):
                print(f"  user: {node.text}")
            elif node.turn == result.index and isinstance(node, lash.AssistantMessage):
                print(f"  assistant: {node.text or '(calls check_stock)'}")
        left = await desk.inputs("orders")
        print(f"desk: inputs still queued: {len(left)}")
        return result


async def plugin_command(db: Path) -> list[str]:
    """The desk queues a plugin's session command; the worker's next execution applies it."""
    async with build_core(db) as worker, build_core(db) as desk:
        note = {"text": "VIP customer: deliver before noon."}
        queued = await desk.enqueue_command("orders", "add_note", key="note-1", args=note)
        again = await desk.enqueue_command("orders", "add_note", key="note-1", args=note)
        print(f"desk: queued {queued.name} ({queued.state}); again: {again.id == queued.id}")
        try:
            await desk.enqueue_command("orders", "add_note", key="note-1", args={"text": "?"})
        except lash.InputConflict as conflict:
            print(f"desk: InputConflict for key {conflict.key!r}")
        session = await worker.session("orders").open()
        applied = await session.apply_commands()  # a turn would apply it first, too
        notes = session.state(NotesState).notes
        print(f"worker: applied {applied} command(s) at revision {session.revision}: {notes}")
        return notes


async def main(directory: Path | None = None) -> None:
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        db = directory / "lash.db"
        await cancel_by_turn_id(db)
        await input_for_the_running_turn(db)
        await plugin_command(db)


if __name__ == "__main__":
    asyncio.run(main())
