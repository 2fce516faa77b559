"""Tests of the hello plugin with lash's testing kit; the fixtures come with lash (pytest11)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hello
import pytest

import lash
from lash.testing import (
    HookRecorder,
    LashCoreFactory,
    Script,
    StubSession,
    check_plugin,
    record_hooks,
    run_tool,
    run_tool_sync,
)

HERE = Path(__file__).parent


@pytest.mark.anyio
async def test_the_model_greets(lash_core: LashCoreFactory) -> None:
    model = Script(
        [
            Script.tool_call("greet", name="Ada"),
            Script.text("I greeted Ada.", chunks=3, usage={"input_tokens": 50}),
        ]
    )
    core = lash_core(hello, script=model, options={"hello": {"greeting": "Welcome"}})
    async with core.session("s1") as session:
        result = await session.turn("Please greet Ada.").run()
        assert session.state(hello.State).greeted == ["Ada"]
    assert result.text == "I greeted Ada."
    assert result.tool_calls[0].result.content == "Welcome, Ada!"
    model.assert_consumed()  # every response was played
    assert "greet" in {tool.name for tool in model.requests[0].tools}


@pytest.mark.anyio
async def test_state_survives_a_restart(lash_core: LashCoreFactory) -> None:
    first = lash_core(
        hello, script=[Script.tool_call("greet", name="Ada"), "Done."], store="sqlite"
    )
    async with first.session("s1") as session:
        await session.turn("Greet Ada.").run()
    second = lash_core(hello, script=[], store="sqlite")  # the same file, in tmp_path
    async with second.session("s1") as session:
        assert session.state(hello.State).greeted == ["Ada"]


@pytest.mark.anyio
async def test_a_failing_model_fails_the_turn(lash_core: LashCoreFactory) -> None:
    core = lash_core(hello, script=[Script.error("connection reset", text="Hel")])
    async with core.session("s1") as session:
        result = await session.turn("Hi").run()
    assert (result.outcome, result.error) == ("failed", "connection reset")


def test_a_core_in_a_sync_test(lash_core: LashCoreFactory) -> None:
    core = lash_core(hello, builtins=())  # no protocol, no stores: just the plugin
    assert core.plugin_names == ["hello"]
    assert core.registry.of("tool")["greet"].plugin == "hello"


@pytest.mark.anyio
async def test_greet_on_its_own() -> None:
    state = hello.State()
    result = await run_tool(
        hello, "greet", options=hello.Options(greeting="Hi"), state=state, name="Ada"
    )
    assert result == lash.ToolResult("call_1", "Hi, Ada!")
    assert state.greeted == ["Ada"]
    invalid = await run_tool(hello.greet, name=42)  # validated as the model's arguments are
    assert invalid.is_error
    assert "name: expected str" in invalid.content


def test_greet_in_a_sync_test() -> None:
    session = StubSession("s1")
    assert run_tool_sync(hello.greet, session=session, name="Ada").content == "Hello, Ada!"
    assert session.state(hello.State).greeted == ["Ada"]


@pytest.mark.anyio
async def test_empty_input_is_refused(lash_core: LashCoreFactory) -> None:
    core = lash_core(hello, script=[])
    async with core.session("s1") as session:
        with record_hooks(core) as recorder:
            result = await session.turn("   ").run()
    assert (result.outcome, result.reason) == ("stopped", "plugin_abort")
    (call,) = recorder.calls("before_turn", plugin="hello")
    assert call.arguments["turn"].input == "   "
    assert call.result == lash.AbortTurn("empty input")


@pytest.mark.anyio
async def test_hooks_in_order(
    lash_core: LashCoreFactory, hook_recorder: Callable[[lash.LashCore], HookRecorder]
) -> None:
    core = lash_core(hello, script=["Hi!"])
    recorder = hook_recorder(core)  # stopped when the test ends
    async with core.session("s1") as session:
        await session.turn("Hi").run()
    assert recorder.hook_names(plugin="hello") == ["before_turn"]
    assert recorder.results("before_turn") == [None]


def test_the_plugin_is_valid() -> None:
    check_plugin(hello).assert_ok()


class Misspelled:
    """A plugin with three mistakes, which loading would report one at a time."""

    lash_plugin = lash.PluginMeta(name="misspelled")

    @lash.hookimpl
    def register_tool(self, register: lash.RegisterTool) -> None: ...

    @lash.hookimpl
    async def register_tools(self, register: lash.RegisterTool, optons: object) -> None: ...


def test_every_problem_at_once() -> None:
    check = check_plugin(Misspelled)
    assert len(check.problems) == 3
    assert str(check) == (HERE / "misspelled.txt").read_text(encoding="utf-8").rstrip("\n")
    with pytest.raises(AssertionError, match="plugin 'misspelled' has 3 problems"):
        check.assert_ok()
