"""The plugin the testing page tests: a tool that reads options and keeps state, and a turn hook."""

from __future__ import annotations

import attrs

import lash


@attrs.frozen
class Options:
    """The plugin's options (``[options.hello]``)."""

    greeting: str = lash.option("Hello", help="What every greeting starts with.")


@attrs.define
class State:
    """Per-session state: who was greeted."""

    greeted: list[str] = attrs.field(factory=list)


lash_plugin = lash.PluginMeta(
    name="hello", description="Greets people by name.", options=Options, state=State
)


def greet(name: str, context: lash.ToolContext) -> str:
    """Greet someone by name.

    :param name: who to greet.
    """
    context.state(State).greeted.append(name)
    return f"{context.session.options(Options).greeting}, {name}!"


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    """Contribute the ``greet`` tool."""
    register(greet)


@lash.hookimpl
def before_turn(turn: lash.TurnView) -> lash.TurnDirective | None:
    """Stop turns whose input is empty, before the model is called."""
    if not turn.input.strip():
        return lash.AbortTurn("empty input")
    return None
