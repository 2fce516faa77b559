"""{{ cookiecutter.description }}

A lash plugin module: a typed tool, typed options, per-session state the tool
updates, a lifecycle hook, and a background process kind with the tool that
starts it. The ``lash.plugins`` entry point in pyproject.toml
names this module, so installing the distribution is all a host needs.
"""

from __future__ import annotations

import logging

import attrs
import lash

logger = logging.getLogger(__name__)


@attrs.frozen
class Options:
    """The plugin's options, set by a host in ``[options.<plugin name>]``."""

    greeting: str = lash.option("Hello", help="What every greeting starts with.")
    max_name_length: int = lash.option(40, help="The longest name say_hello accepts.")


@attrs.define
class State:
    """Per-session state: saved with every turn, restored when a session resumes."""

    greeted: list[str] = attrs.field(factory=list)


lash_plugin = lash.PluginMeta(
    # The entry point's name, so that tests passing this module get it too.
    name="{{ cookiecutter.name }}",
    description="{{ cookiecutter.description }}",
    options=Options,
    state=State,
)


async def say_hello(name: str, context: lash.ToolContext) -> str:
    """Greet someone by name; the answer counts everyone greeted in this session.

    :param name: who to greet.
    """
    # async: the tool does no blocking I/O, so it runs on the event loop (a plain
    # def would run in a worker thread).
    options = context.session.options(Options)
    if len(name) > options.max_name_length:
        # An exception becomes an error result that the model reads.
        raise ValueError(f"a name has at most {options.max_name_length} characters")
    state = context.state(State)
    state.greeted.append(name)
    return f"{options.greeting}, {name}! (greeted so far: {len(state.greeted)})"


@attrs.frozen
class CardRequest:
    """The payload of a card process: who the card is for."""

    name: str


@attrs.frozen
class Card:
    """The result of a card process."""

    name: str
    text: str


async def write_card(context: lash.ProcessContext, request: CardRequest) -> Card:
    """Write a greeting card, in the background: a worker runs this, not the turn."""
    await context.emit({"card_for": request.name})  # progress, seen by observers
    return Card(request.name, f"Dear {request.name}, warm greetings!")


async def send_card(name: str, context: lash.ToolContext) -> str:
    """Have a greeting card written for someone; it arrives in a later message.

    :param name: who the card is for.
    """
    # Written in the turn's commit: the turn does not wait for the card.
    record = await context.processes.start("{{ cookiecutter.name }}_card", CardRequest(name))
    return f"The card for {name} is on its way (process {record.id})."


@lash.hookimpl
def register_tools(register: lash.RegisterTool) -> None:
    """Contribute the tools; their JSON schemas come from their type hints."""
    register(say_hello)
    register(send_card)


@lash.hookimpl
def register_process_kinds(register: lash.RegisterProcessKind) -> None:
    """Contribute the card process kind (run by `lash worker`); a worker that dies
    while writing a card leaves it to be written again (rerunnable)."""
    register(
        "{{ cookiecutter.name }}_card",
        write_card,
        recovery=lash.RecoveryDisposition.RERUNNABLE,
        timeout=60,
    )


@lash.hookimpl
def turn_persisted(turn: lash.TurnView, revision: int) -> None:
    """Log who the session has greeted, once the turn is safely committed."""
    greeted = turn.session.state(State).greeted
    if greeted:
        logger.info(
            "session %s (revision %d) has greeted: %s",
            turn.session.id,
            revision,
            ", ".join(greeted),
        )
