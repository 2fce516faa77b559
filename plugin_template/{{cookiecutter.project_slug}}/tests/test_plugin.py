"""Tests of the plugin, with lash's pytest plugin and a scripted model."""

from __future__ import annotations

import logging

import lash
import pytest
from lash.testing import LashCoreFactory, Script, check_plugin, run_tool, script

import {{ cookiecutter.package_name }} as plugin
from {{ cookiecutter.package_name }} import Options, State


def test_the_plugin_is_valid() -> None:
    """The installed plugin passes lash's checks, as hosts will load it."""
    check = check_plugin("{{ cookiecutter.name }}")
    check.assert_ok()
    # At least these: a hook or tool added later must not break this test.
    assert {"register_tools", "register_process_kinds", "turn_persisted"} <= set(check.hooks)
    assert {"say_hello", "send_card"} <= set(check.contributions["tool"])
    assert "{{ cookiecutter.name }}_card" in check.contributions["process_kind"]


@pytest.mark.anyio
async def test_say_hello_greets_and_remembers() -> None:
    """The tool uses the configured greeting and adds the name to the state."""
    state = State()
    options = Options(greeting="Welcome")
    result = await run_tool(
        plugin, "say_hello", options=options, state=state, name="Ada"
    )
    assert result.content == "Welcome, Ada! (greeted so far: 1)"
    assert state.greeted == ["Ada"]


@pytest.mark.anyio
async def test_a_name_too_long_is_an_error_the_model_reads() -> None:
    """The tool's exception becomes an error result, as the model will see it."""
    options = Options(max_name_length=3)
    result = await run_tool(plugin, "say_hello", options=options, name="Bartholomew")
    assert result.is_error
    assert "at most 3 characters" in result.content


@pytest.mark.anyio
async def test_a_session_remembers_who_was_greeted(lash_core: LashCoreFactory) -> None:
    """In a session, the state is committed with each turn and restored on resume."""
    model = script(
        Script.tool_call("say_hello", name="Ada"),
        "Greeted Ada.",
        Script.tool_call("say_hello", name="Grace"),
        "Greeted Grace.",
    )
    options = {"{{ cookiecutter.name }}": {"greeting": "Hi"}}
    core = lash_core(plugin, script=model, options=options)
    async with core.session("s1") as session:
        first = await session.turn("Greet Ada.").run()
    assert first.tool_calls[0].result.content == "Hi, Ada! (greeted so far: 1)"

    async with core.session("s1") as session:  # resumed from the store
        second = await session.turn("Greet Grace.").run()
        assert session.state(State).greeted == ["Ada", "Grace"]
    assert second.text == "Greeted Grace."
    model.assert_consumed()


@pytest.mark.anyio
async def test_turn_persisted_logs_the_greetings(
    lash_core: LashCoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Once a turn is committed, the lifecycle hook logs the session's greetings."""
    caplog.set_level(logging.INFO, logger=plugin.__name__)
    model = script(Script.tool_call("say_hello", name="Ada"), "Done.")
    async with lash_core(plugin, script=model).session("s1") as session:
        await session.turn("Greet Ada.").run()
    assert "session s1 (revision 1) has greeted: Ada" in caplog.messages


@pytest.mark.anyio
async def test_a_card_is_written_by_a_worker_and_read_in_a_later_turn(
    lash_core: LashCoreFactory,
) -> None:
    """send_card starts a process and the turn ends; a worker writes the card, and
    the session's next turn (queued by the finished process) reads it."""
    model = script(
        Script.tool_call("send_card", name="Ada"),
        "A card is on its way.",
        "Ada's card is written.",  # the turn the finished card wakes
    )
    core = lash_core(plugin, script=model)
    async with core.session("s1") as session:
        first = await session.turn("Send Ada a card.").run()
    assert first.text == "A card is on its way."
    (process,) = await core.processes.list(session_id="s1")
    assert (process.status, process.payload) == ("pending", {"name": "Ada"})

    # What `lash worker --once` does: run the process, then the session it woke.
    await core.run_worker(once=True)

    done = await core.processes.get(process.id)
    assert done is not None and done.status == "succeeded"
    assert done.result == {"name": "Ada", "text": "Dear Ada, warm greetings!"}
    async with core.session("s1") as session:
        assert session.turns == 2
    model.assert_consumed()


def test_invalid_options_are_refused(lash_core: LashCoreFactory) -> None:
    """A host option of the wrong type stops the core, naming the field."""
    options = {"{{ cookiecutter.name }}": {"max_name_length": "many"}}
    with pytest.raises(lash.PluginError, match="max_name_length: expected int"):
        lash_core(plugin, options=options)
