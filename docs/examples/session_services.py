"""What a hook or tool may change during a turn, and when the change is committed.

A ``setup`` plugin walks a user through setting up a widget. Its tool changes the plugin's state,
takes itself out of the tool catalog and records a plugin node, all through the
``lash.SessionView`` it is given; its ``after_turn`` hook names the conversation with a direct
model call. Everything they change is part of the turn's one commit. Run it with
``python docs/examples/session_services.py``.
"""

from __future__ import annotations

import asyncio

import attrs

import lash


@attrs.define
class SetupState:
    """Per-session state: the widget's colour, the conversation's title."""

    colour: str | None = None
    title: str | None = None


async def set_colour(colour: str, context: lash.ToolContext) -> str:
    """Set the widget's colour; this finishes the setup.

    Args:
        colour: a colour name.
    """
    # State: snapshotted into the turn's commit.
    context.state(SetupState).colour = colour
    session = context.session
    # Out of the catalog: the turn's next model call no longer offers it.
    await session.set_tool_membership({"set_colour": False})
    # A PluginNode in the history, attributed to the plugin "setup".
    await session.record("setup_finished", {"colour": colour})
    return f"The widget is {colour} now."


class Setup:
    lash_plugin = lash.PluginMeta(name="setup", state=SetupState)

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(set_colour)

    @lash.hookimpl
    async def after_turn(self, turn: lash.TurnView) -> None:
        state = turn.session.state(SetupState)
        if state.title is None:
            ask = f"A title of three words at most for: {turn.input}"
            # A direct model call: its usage is committed with the turn.
            answer = await turn.session.complete([lash.Message("user", ask)], source="titles")
            state.title = answer.text


USAGE = {"input_tokens": 100, "output_tokens": 10}
SCRIPT = [
    {"tool_calls": [{"name": "set_colour", "arguments": {"colour": "teal"}}], "usage": USAGE},
    {"text": "Done: your widget is teal.", "usage": USAGE},
    {"text": "Teal widget setup", "usage": USAGE},  # the answer to after_turn's complete()
]


async def main(store: str = "memory://") -> lash.Session:
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted", Setup],
        store=store,
        provider="scripted",
        options={"scripted": {"responses": SCRIPT}},
    )
    async with core:
        session = await core.session("widget").open()
        print(f"before the turn: revision {session.revision}")
        result = await session.turn("Make my widget teal.").run()
        print(f"{result.outcome}, committed as revision {result.revision}")

        # What the tool and the hook changed is all in that one commit:
        print(f"  state: {session.state(SetupState)}")
        member = {entry.name: entry.member for entry in session.tools()}
        print(f"  set_colour offered: {member['set_colour']}")
        for node in session.nodes:
            if isinstance(node, lash.PluginNode):
                print(f"  {node.plugin!r} recorded {node.kind} {node.data}")
        usage = session.usage_report()["by_source"]
        for source, tokens in usage.items():
            print(f"  usage of {source!r}: {tokens['input_tokens']} tokens in")
        model = core.registry.of("provider")["scripted"].value
        offered = [[tool.name for tool in r.tools] for r in model.requests]
        print(f"  tools offered at each model call: {offered}")

        # The same service, used when no operation runs, commits on its own.
        await session.view.set_tool_membership({"set_colour": True})
        print(f"after a change outside any operation: revision {session.revision}")
        return session


if __name__ == "__main__":
    asyncio.run(main())
