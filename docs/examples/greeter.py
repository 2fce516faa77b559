"""An example plugin module: typed options (one of them secret), per-session state, a tool.

Installed as a distribution that declares it in the ``lash.plugins`` entry-point group (see
``plugin_pyproject.toml``), or passed to ``lash.LashCore(plugins=[greeter])`` as a module.
"""

from __future__ import annotations

import attrs

import lash
import lash.store


@attrs.frozen
class Options:
    """The greeter's options; the host sets them in ``[options.greeter]``."""

    greeting: str = lash.option("Hello", help="What every greeting starts with.")
    max_names: int = lash.option(3, help="How many names one call of the greet tool accepts.")
    # secret=True: never persisted, and shown as *** by `lash plugins` and in error messages.
    api_key: str | None = lash.option(None, secret=True, help="Token for the directory service.")


@attrs.define
class State:
    """Per-session state: the kernel snapshots it inside every turn commit."""

    greeted: list[str] = attrs.field(factory=list)


lash_plugin = lash.PluginMeta(
    name="greeter",
    description="Greets people by name.",
    options=Options,
    state=State,
)


@lash.hookimpl
def register_tools(register: lash.RegisterTool, options: Options) -> None:
    """Contribute the ``greet`` tool; its JSON schema comes from the type hints."""

    def greet(names: list[str], shout: bool = False) -> str:
        """Greet one or more people by name."""
        if len(names) > options.max_names:
            raise ValueError(f"at most {options.max_names} names per call")
        text = f"{options.greeting}, {' and '.join(names)}!"
        return text.upper() if shout else text

    register(greet)


@lash.hookimpl
def prompt_contributions(session: lash.SessionView) -> lash.PromptContribution:
    """Tell the model about the tool, only while ``greet`` is in the session's catalog."""
    return lash.PromptContribution(
        "When someone introduces themselves, greet them with the greet tool.",
        slot="system",
        requires_tool="greet",
    )


@lash.hookimpl
def before_tool_call(call: lash.ToolCall) -> lash.ToolCallDirective | None:
    """Tidy the names before ``greet`` runs; an implementation takes only the arguments it uses."""
    if call.name != "greet":
        return None
    names = [str(n).strip() for n in call.arguments.get("names", [])]
    return lash.ReplaceToolArguments({**call.arguments, "names": names})


@lash.hookimpl
def after_tool_call(
    call: lash.ToolCall, result: lash.ToolResult, context: lash.ToolContext
) -> None:
    """Remember who was greeted: state changes are committed with the turn."""
    if call.name == "greet" and not result.is_error:
        context.session.state(State).greeted.extend(call.arguments["names"])
