"""Testing a host offline: the scripted provider plays a script file, and tests assert on it."""

from pathlib import Path

import pytest

import lash
from lash_plugins_builtin.scripted import ScriptedProvider, ScriptedResponse

HERE = Path(__file__).parent


def scripted_core(script: str) -> lash.LashCore:
    """A core whose model plays ``script`` (a JSON or TOML file)."""
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", "plan"],
        autoload=False,
        provider="scripted",
        options={"scripted": {"script": str(HERE / script)}},
    )


@pytest.mark.anyio
async def test_the_model_plans() -> None:
    async with scripted_core("script.toml") as core:
        session = await core.session("dinner").open()
        result = await session.turn("Plan dinner with Ada.").run()
        assert result.outcome == "completed"
        assert result.text == "Planned: book a table, then invite Ada."
        assert [record.call.name for record in result.tool_calls] == ["update_plan"]
        assert result.usage == lash.Usage(input_tokens=360, output_tokens=31)

        model = core.registry.of("provider")["scripted"].value
        model.assert_consumed()  # every response of the script was played
        assert "update_plan" in {tool.name for tool in model.requests[0].tools}

        # One model call more than the script holds: ScriptExhausted fails the turn.
        extra = await session.turn("And then?").run()
        assert extra.outcome == "failed"
        assert "all were used" in (extra.error or "")


@pytest.mark.anyio
async def test_a_provider_error_fails_one_turn() -> None:
    async with scripted_core("script.json") as core:
        session = await core.session("quiz").open()
        failed = await session.turn("What is the answer?").run()
        assert failed.outcome == "failed"
        assert "connection reset by peer" in (failed.error or "")
        retried = await session.turn("Try again.").run()
        assert retried.text == "The answer is 42."


@pytest.mark.anyio
async def test_the_provider_on_its_own() -> None:
    model = ScriptedProvider(["Hello!", ScriptedResponse(text="chunked", chunk_size=3)])
    request = lash.ModelRequest(model="any", messages=(lash.Message("user", "Hi"),))
    first = await lash.collect_response(model.stream(request))
    assert (first.text, first.finish_reason) == ("Hello!", "stop")
    events = [event async for event in model.stream(request)]
    assert events[:3] == [lash.TextDelta("chu"), lash.TextDelta("nke"), lash.TextDelta("d")]
    assert isinstance(events[-1], lash.ModelDone)
    with pytest.raises(lash.ScriptExhausted):
        await lash.collect_response(model.stream(request))
