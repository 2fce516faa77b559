"""A hook or tool must not run an operation of its own session: lash refuses it at once.

This host keeps its open sessions in a dict, and the first tool of its ``setup`` plugin looks its
session up there to take itself out of the catalog. ``Session.set_tool_membership`` is an
operation that holds the session, which the running turn already holds: waiting for it would wait
for ever, so lash raises a ``lash.SessionError`` instead. The second tool makes the same change
through the ``lash.SessionView`` it was given, which joins the running turn. Run it with
``python docs/examples/reentrancy.py``.
"""

from __future__ import annotations

import asyncio
import textwrap

import lash

#: The host's open sessions, by id.
OPEN: dict[str, lash.Session] = {}


async def finish_setup_wrong(context: lash.ToolContext) -> str:
    """Finish the setup (the wrong way: through the host's Session)."""
    session = OPEN[context.session_id]
    # Raises SessionError: the operation would wait for this very turn.
    await session.set_tool_membership({"finish_setup_wrong": False})
    return "Setup finished."


async def finish_setup(context: lash.ToolContext) -> str:
    """Finish the setup (the right way: through the session view)."""
    # Joins the running turn: committed with it.
    await context.session.set_tool_membership({"finish_setup": False})
    return "Setup finished."


class Setup:
    lash_plugin = lash.PluginMeta(name="setup")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(finish_setup_wrong)
        register(finish_setup)


SCRIPT = [
    {"tool_calls": [{"name": "finish_setup_wrong", "arguments": {}}]},
    {"tool_calls": [{"name": "finish_setup", "arguments": {}}]},
    {"text": "Your setup is finished."},
]


async def main() -> lash.TurnResult:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", Setup],
        store="memory://",
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}},
    )
    async with core:
        session = OPEN["setup"] = await core.session("setup").open()
        result = await session.turn("I am done with the setup.").run()
        for record in result.tool_calls:
            status = "error" if record.result.is_error else "ok"
            print(f"{record.call.name} ({status}):")
            print(textwrap.indent(textwrap.fill(record.result.content, 72), "    "))
        print(f"{result.outcome}, committed as revision {result.revision}")
        members = [entry.name for entry in session.tools() if entry.member]
        print(f"tools still offered: {members}")
        return result


if __name__ == "__main__":
    asyncio.run(main())
