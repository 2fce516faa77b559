"""lash.testing, the plugin authors' kit: the lash_core and hook_recorder fixtures, scripted models,
run_tool, the hook recorder and check_plugin; and the pytest plugin's registration (pytester)."""

from __future__ import annotations

import ast
import asyncio
import importlib.metadata
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import lash
import lash.store
from lash.testing import (
    HookCall,
    HookRecorder,
    LashCoreFactory,
    PluginCheck,
    Script,
    StubSession,
    check_plugin,
    record_hooks,
    run_tool,
    run_tool_sync,
    script,
)
from lash_plugins_builtin.plan import PlanOptions, PlanState, PlanStep
from lash_plugins_builtin.scripted import ScriptedResponse, ScriptedToolCall

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "testing"

#: The builtins, read from the installed metadata (what the fixture must disable).
BUILTINS = sorted(
    ep.name
    for ep in importlib.metadata.entry_points(group="lash.plugins")
    if ep.dist is not None and ep.dist.name == "lash-sdk"
)


# -- plugins used by these tests ---------------------------------------------------------------


@attrs.frozen
class CounterOptions:
    """Options of the counter plugin."""

    step: int = 1


@attrs.define
class CounterState:
    """State of the counter plugin."""

    count: int = 0


class Counter:
    """A plugin with two tools, options, state and a few lifecycle hooks."""

    lash_plugin = lash.PluginMeta(name="counter", options=CounterOptions, state=CounterState)

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool, options: CounterOptions) -> None:
        def bump(context: lash.ToolContext, times: int = 1) -> int:
            """Bump the counter."""
            state = context.state(CounterState)
            state.count += times * context.session.options(CounterOptions).step
            return state.count

        async def nap(seconds: float) -> str:
            """Sleep."""
            await asyncio.sleep(seconds)
            return "rested"

        register(bump)
        register(nap)

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> None:
        await asyncio.sleep(0)

    @lash.hookimpl
    def session_opened(self, session: lash.SessionView) -> None:
        raise RuntimeError("opening hook failed")

    @lash.hookimpl
    def after_turn(self, turn: lash.TurnView) -> Any:
        async def later() -> lash.EnqueueMessages:
            return lash.EnqueueMessages(("again",))

        return later()  # a sync implementation handing back a coroutine


class Single:
    """A plugin with one tool."""

    lash_plugin = lash.PluginMeta(name="single")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        def shout(text: str) -> str:
            """Shout."""
            return text.upper()

        register(shout)


@attrs.define
class Probe:
    """What the probe store saw: the loops it was used and closed in."""

    used: list[asyncio.AbstractEventLoop] = attrs.field(factory=list)
    closed: list[asyncio.AbstractEventLoop] = attrs.field(factory=list)
    fail_close: bool = False


def probe_plugin(probe: Probe) -> object:
    """A plugin registering ``probe://``: a memory store that records the loops it runs in."""

    class ProbeStore(lash.store.MemoryStore):
        async def acquire_lease(self, *args: Any, **kwargs: Any) -> lash.store.Lease:
            probe.used.append(asyncio.get_running_loop())
            return await super().acquire_lease(*args, **kwargs)

        async def close(self) -> None:
            probe.closed.append(asyncio.get_running_loop())
            if probe.fail_close:
                raise OSError("disk on fire")

    class ProbePlugin:
        lash_plugin = lash.PluginMeta(name="probe")

        @lash.hookimpl
        def register_stores(self, register: lash.RegisterStore) -> None:
            register("probe", ProbeStore)

    return ProbePlugin()


async def one_turn(core: lash.LashCore, text: str = "hi") -> lash.TurnResult:
    async with core.session("s") as session:
        return await session.turn(text).run()


# -- lash_core ---------------------------------------------------------------------------------


def test_lash_core_loads_exactly_the_plugins_and_the_named_builtins(
    lash_core: LashCoreFactory,
) -> None:
    """Given plugins first, then the named builtins; every other builtin disabled; autoload off."""
    core = lash_core(Single(), script=["hi"])
    assert core.plugin_names == ["single", "standard", "stores", "script"]
    disabled = sorted(p.name for p in core.plugins if p.status == "disabled")
    assert disabled == sorted(set(BUILTINS) - {"standard", "stores"})
    assert core.config.autoload is False
    assert core.config.provider == "script"
    assert core.store_url == "memory://"
    bare = lash_core(Single(), builtins=())
    assert bare.plugin_names == ["single"]
    more = lash_core(Single(), "plan", builtins=["standard", "files"])
    assert more.plugin_names == ["single", "plan", "standard", "files"]


def test_lash_core_refuses_unknown_builtins(lash_core: LashCoreFactory) -> None:
    """A name in builtins that is no builtin is an error listing the builtins."""
    with pytest.raises(ValueError, match=r"'standrd' is not a builtin.*did you mean 'standard'"):
        lash_core(builtins=("standrd", "stores"))


def test_lash_core_is_strict_and_ignores_the_environment(
    lash_core: LashCoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin failing to load fails the test (unless strict=False); LASH_* is ignored."""

    class Broken:
        lash_plugin = lash.PluginMeta(name="broken")

        @lash.hookimpl
        def register_tool(self) -> None: ...

    with pytest.raises(lash.UnknownHookError, match="did you mean 'register_tools'"):
        lash_core(Broken())
    lenient = lash_core(Broken(), strict=False)
    assert "broken" not in lenient.plugin_names
    monkeypatch.setenv("LASH_PLUGINS", "plan")
    assert lash_core().plugin_names == ["standard", "stores"]


@pytest.mark.anyio
async def test_lash_core_runs_a_turn_with_a_script(lash_core: LashCoreFactory) -> None:
    """script= adds a scripted model and selects it; a Script keeps the requests."""
    model = script(Script.tool_call("bump", times=2), "Counted.")
    core = lash_core(Counter(), script=model, options={"counter": {"step": 5}})
    result = await one_turn(core)
    assert result.text == "Counted."
    assert result.tool_calls[0].result.content == "10"
    model.assert_consumed()
    assert {t.name for t in model.requests[0].tools} >= {"bump", "nap"}
    assert [m.role for m in model.requests[1].messages if m.role != "system"] == [
        "user",
        "assistant",
        "tool",
    ]


@pytest.mark.anyio
async def test_lash_core_sqlite_store_lives_in_tmp_path(
    lash_core: LashCoreFactory, tmp_path: Path
) -> None:
    """store="sqlite" is one database file in the test's tmp_path, shared by its cores."""
    first = lash_core(script=["one"], store="sqlite")
    assert first.store_url == f"sqlite:///{tmp_path}/lash.db"
    await one_turn(first)
    await lash_core.aclose()
    assert (tmp_path / "lash.db").is_file()
    second = lash_core(script=["two"], store="sqlite")
    async with second.session("s") as session:
        assert session.revision == 1


def test_factory_closes_cores_built_outside_a_loop(tmp_path: Path) -> None:
    """A core built in a sync test is closed at teardown, in a fresh loop."""
    probe = Probe()
    factory = LashCoreFactory(lambda: tmp_path)
    core = factory(probe_plugin(probe), script=["hi"], store="probe://")
    asyncio.run(one_turn(core))
    assert probe.closed == []
    factory.close_all()
    assert len(probe.closed) == 1 and probe.closed[0] is not probe.used[0]
    factory.close_all()
    assert len(probe.closed) == 1  # closed once


def test_factory_closes_cores_in_their_own_loop_when_it_shuts_down(tmp_path: Path) -> None:
    """A core built while a loop runs is closed in that loop, as the loop shuts down."""
    probe = Probe()
    factory = LashCoreFactory(lambda: tmp_path)

    async def test_body() -> asyncio.AbstractEventLoop:
        await one_turn(factory(probe_plugin(probe), script=["hi"], store="probe://"))
        return asyncio.get_running_loop()

    loop = asyncio.run(test_body())
    assert probe.used == [loop]
    assert probe.closed == [loop]
    factory.close_all()
    assert probe.closed == [loop]


def test_factory_closes_cores_in_a_loop_that_outlives_the_test(tmp_path: Path) -> None:
    """When the test's loop is still open at teardown, the core is closed in it."""
    probe = Probe()
    factory = LashCoreFactory(lambda: tmp_path)

    async def test_body() -> None:
        await one_turn(factory(probe_plugin(probe), script=["hi"], store="probe://"))

    with asyncio.Runner() as runner:
        runner.run(test_body())
        factory.close_all()
        assert probe.closed == [runner.get_loop()]


def test_factory_reports_errors_from_closing(tmp_path: Path) -> None:
    """A core failing to close fails the teardown with its error."""
    probe = Probe(fail_close=True)
    factory = LashCoreFactory(lambda: tmp_path)
    asyncio.run(one_turn(factory(probe_plugin(probe), script=["hi"], store="probe://")))
    with pytest.raises(OSError, match="disk on fire"):
        factory.close_all()
    assert factory.cores and "cores=1" in repr(factory)


@pytest.mark.anyio
async def test_factory_close_all_refuses_a_running_loop(tmp_path: Path) -> None:
    """close_all inside a running loop points at aclose."""
    factory = LashCoreFactory(lambda: tmp_path)
    with pytest.raises(RuntimeError, match=r"await lash_core\.aclose"):
        factory.close_all()
    await factory.aclose()


# -- Script --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_script_helpers_build_the_responses_they_name() -> None:
    """text (chunks, usage), tool_call, tool_calls, error: the responses and their streams."""
    assert Script.text("abcdefg", chunks=3, usage={"input_tokens": 4}) == ScriptedResponse(
        text="abcdefg", chunk_size=3, usage=lash.Usage(input_tokens=4)
    )
    assert Script.tool_call("look", id="c9", path="x", name="n") == ScriptedResponse(
        tool_calls=(ScriptedToolCall("look", {"path": "x", "name": "n"}, "c9"),)
    )
    both = Script.tool_calls(Script.call("a", x=1), Script.call("b"), text="two calls")
    assert [c.name for c in both.tool_calls] == ["a", "b"] and both.text == "two calls"
    assert Script.error("boom", text="par") == ScriptedResponse(text="par", error="boom")
    with pytest.raises(ValueError, match="chunks must be a positive integer"):
        Script.text("x", chunks=0)

    model = script(Script.text("abcdefg", chunks=3), Script.tool_call("look"), "plain")
    request = lash.ModelRequest(model="m", messages=(lash.Message("user", "hi"),))
    events = [event async for event in model.provider.stream(request)]
    assert [e.text for e in events if isinstance(e, lash.TextDelta)] == ["abc", "def", "g"]
    called = await lash.collect_response(model.provider.stream(request))
    assert [(c.id, c.name) for c in called.tool_calls] == [("call_1", "look")]
    assert (len(model.responses), model.consumed, model.remaining) == (3, 2, 1)
    assert len(model.requests) == 2
    with pytest.raises(AssertionError, match=r"1 of 3 responses not played:\n  - #3: text='plain'"):
        model.assert_consumed()
    model.extend(["more"])
    assert [r.text for r in model.responses] == ["abcdefg", "", "plain", "more"]
    assert "remaining=2" in repr(model)


@pytest.mark.anyio
async def test_script_error_fails_the_turn_and_exhaustion_too(lash_core: LashCoreFactory) -> None:
    """A scripted error fails one turn; a model call past the end of the script fails one too."""
    core = lash_core(script=[Script.error("connection reset", text="Hel")])
    async with core.session("s") as session:
        failed = await session.turn("hi").run()
        assert (failed.outcome, failed.error) == ("failed", "connection reset")
        exhausted = await session.turn("again").run()
        assert exhausted.outcome == "failed" and "all were used" in (exhausted.error or "")


@pytest.mark.anyio
async def test_two_scripts_with_their_own_names_share_a_core(lash_core: LashCoreFactory) -> None:
    """A Script's name is its plugin and provider name; the core's provider is chosen by it."""
    left, right = Script(["left"], name="left"), Script(["right"], name="right")
    core = lash_core(left, right, provider="right")
    assert (await one_turn(core)).text == "right"
    assert (left.consumed, right.consumed) == (0, 1)


# -- run_tool ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_run_tool_runs_a_typed_function_as_the_kernel_would() -> None:
    """Arguments are validated, the result rendered, failures are error results."""

    def add(a: int, b: int = 0) -> dict[str, int]:
        """Add."""
        return {"sum": a + b}

    ok = await run_tool(add, a=2, b=3)
    assert ok == lash.ToolResult("call_1", '{"sum": 5}')
    bad = await run_tool(add, a="two")
    assert bad.is_error and "a: expected int" in bad.content
    assert (await run_tool(lash.tool(add, name="plus"), a=1)).content == '{"sum": 1}'
    assert (await run_tool(add, "plus", a=1)).content == '{"sum": 1}'


@pytest.mark.anyio
async def test_run_tool_takes_a_plugins_tool_with_options_and_state() -> None:
    """A plugin's tool by name, with its options (registration too) and state objects."""
    state = CounterState(count=1)
    result = await run_tool(
        Counter(), "bump", options=CounterOptions(step=10), state=state, times=2
    )
    assert (result.content, state.count) == ("21", 21)
    assert (await run_tool(Single(), text="hey")).content == "HEY"
    slow = await run_tool(Counter(), "nap", timeout=0.05, seconds=5)
    assert slow.is_error and "timed out after 0.05 s" in slow.content


@pytest.mark.anyio
async def test_run_tool_by_entry_point_name() -> None:
    """An installed plugin's tool, by entry-point name: the builtin plan's update_plan."""
    state = PlanState()
    result = await run_tool("plan", "update_plan", state=state, steps=[{"step": "Pack"}])
    assert result.content == "plan updated:\n[ ] Pack"
    assert state == PlanState([PlanStep("Pack")], 1)
    refused = await run_tool(
        "plan", "update_plan", options=PlanOptions(max_steps=1), steps=[{"step": "a"}] * 2
    )
    assert refused.is_error and "at most 1 steps" in refused.content


@pytest.mark.anyio
async def test_run_tool_names_what_it_cannot_find() -> None:
    """Unknown tools get a suggestion; several tools need a name; session= excludes state=."""
    with pytest.raises(LookupError, match=r"registers no tool 'bunp'.*did you mean 'bump'"):
        await run_tool(Counter(), "bunp")
    with pytest.raises(ValueError, match=r"registers 2 tools \(bump, nap\); name the one"):
        await run_tool(Counter())
    with pytest.raises(TypeError, match="pass state= and options= to the StubSession"):
        await run_tool(Single(), session=StubSession(), state=CounterState(), text="x")
    with pytest.raises(TypeError, match="must be an instance of an attrs class"):
        await run_tool(Single(), state=[CounterState(), "nope"], text="x")


@pytest.mark.anyio
async def test_run_tool_uses_the_session_given() -> None:
    """A StubSession given as session= serves options and state, and keeps what it built."""
    session = StubSession("mine", options=CounterOptions(step=3))
    result = await run_tool(Counter(), "bump", session=session)
    assert result.content == "3"
    assert session.state(CounterState) == CounterState(3)
    assert (session.id, session.is_root, session.config) == ("mine", True, lash.SessionConfig())
    assert isinstance(session, lash.SessionView)

    @attrs.define
    class Needs:
        value: int

    with pytest.raises(LookupError, match=r"no state object of class .*Needs was given"):
        session.state(Needs)
    assert repr(session) == "<StubSession 'mine'>"


def test_run_tool_sync_in_a_sync_test() -> None:
    """The sync twin runs the tool in a new event loop."""
    assert run_tool_sync(Single(), "shout", text="hi").content == "HI"


@pytest.mark.anyio
async def test_run_tool_sync_refuses_a_running_loop() -> None:
    """Inside a running loop, run_tool_sync says to await run_tool instead."""
    with pytest.raises(RuntimeError, match=r"await run_tool\(\.\.\.\)"):
        run_tool_sync(Single(), text="hi")


# -- record_hooks --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_record_hooks_captures_calls_results_and_exceptions(
    lash_core: LashCoreFactory,
) -> None:
    """Every call: hook, plugin, arguments, result (awaited) or exception, in call order."""
    core = lash_core(Counter(), script=["hi", "hi again"])
    with record_hooks(core) as recorder:
        async with core.session("s") as session:
            await session.turn("first").run()
    (opened,) = recorder.calls("session_opened", plugin="counter")
    assert opened.done and opened.raised and isinstance(opened.exception, RuntimeError)
    assert opened.arguments == {"session": session.view}
    (before,) = recorder.calls("before_turn", plugin="counter")
    assert before.done and before.result is None and before.arguments["turn"].input == "first"
    (after,) = recorder.calls("after_turn", plugin="counter")
    assert after.result == lash.EnqueueMessages(("again",))
    assert recorder.results("after_turn", plugin="counter") == [lash.EnqueueMessages(("again",))]
    names = recorder.hook_names(plugin="counter")
    assert names.index("session_opened") < names.index("before_turn") < names.index("after_turn")
    assert all(isinstance(call, HookCall) for call in recorder)
    assert "register_tools" not in recorder.hook_names()  # ran while the core was built
    assert len(recorder) == len(recorder.calls()) and "stopped" in repr(recorder)


@pytest.mark.anyio
async def test_recording_stops_and_restores_the_dispatcher(lash_core: LashCoreFactory) -> None:
    """Stopped recorders record nothing more; once all stop, no monitor is left on the core."""
    core = lash_core(Counter(), script=["a", "b", "c"])
    assert core.hooks._monitors == []
    outer = record_hooks(core)
    inner = record_hooks(core)
    assert inner.active and outer.active and "recording" in repr(inner)
    await one_turn(core)
    assert len(inner) == len(outer) > 0
    recorded = len(outer)
    outer.stop()  # an independent monitor: the other one keeps recording
    inner.clear()
    await one_turn(core)
    assert len(inner) > 0 and len(outer) == recorded
    inner.stop()
    assert core.hooks._monitors == []
    inner.clear()
    await one_turn(core)
    assert len(inner) == 0 and len(outer) == recorded
    assert inner.start() is inner and inner.start() is inner
    inner.stop()
    inner.stop()
    assert core.hooks._monitors == []


@pytest.mark.anyio
async def test_hook_recorder_fixture_starts_a_recorder(
    lash_core: LashCoreFactory, hook_recorder: Callable[[lash.LashCore], HookRecorder]
) -> None:
    """hook_recorder(core) records; the fixture stops it at teardown."""
    core = lash_core(Counter(), script=["hi"])
    recorder = hook_recorder(core)
    await one_turn(core)
    assert recorder.active and recorder.results("before_turn", plugin="counter") == [None]


# -- check_plugin --------------------------------------------------------------------------------


@attrs.define
class NoDefaults:
    """A state class the kernel cannot build."""

    count: int


class Broken:
    """A plugin with one of nearly every mistake."""

    lash_plugin = lash.PluginMeta(name="broken", state=NoDefaults)

    @lash.hookimpl
    def register_tool(self, register: lash.RegisterTool) -> None: ...

    @lash.hookimpl
    async def register_tools(self, register: lash.RegisterTool, optons: Any) -> None: ...

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView, extra: Any = None) -> None: ...

    @lash.hookimpl
    def after_turn(self, *, turn: lash.TurnView) -> None: ...

    @lash.hookimpl
    def session_closed(self, session: Any = None) -> None: ...

    @lash.hookimpl
    def turn_finalized(self, *args: Any) -> None: ...

    @lash.hookimpl(wrapper=True)
    def session_parked(self, session: lash.SessionView) -> Any:
        return (yield)

    @lash.hookimpl
    async def prompt_contributions(self) -> AsyncIterator[None]:
        yield None

    def session_opened(self, session: lash.SessionView) -> None:
        """Named like a hook, but not marked."""


def test_check_plugin_reports_every_problem_at_once() -> None:
    """Every mistake is reported, each once, and assert_ok lists them all."""
    check = check_plugin(Broken)
    expected = [
        "hook 'after_turn': argument 'turn' is keyword-only, so it is never passed",
        "hook 'before_turn': 'extra' is not an argument of the hook (its arguments: turn)",
        "hook 'prompt_contributions': an async generator cannot be awaited",
        "implements 'register_tool', which is not a lash hook; did you mean 'register_tools'?",
        "hook 'register_tools': must be synchronous",
        "'optons' is not an argument of the hook (its arguments: register, options); "
        "did you mean 'options'?",
        "hook 'session_closed': argument 'session' has a default, so it is never passed",
        "'session_opened' is named like a lash hook but not marked @lash.hookimpl",
        "hook 'session_parked': hook wrappers are not supported",
        "hook 'turn_finalized': *args receives nothing",
        "state class NoDefaults cannot be built from its defaults",
    ]
    for text in expected:
        assert sum(text in problem for problem in check.problems) == 1, text
    assert len(check.problems) == len(expected)
    assert all(p.startswith("plugin 'broken'") for p in check.problems)
    assert not check.ok
    with pytest.raises(AssertionError) as raised:
        check.assert_ok()
    message = str(raised.value)
    assert message.startswith(f"plugin 'broken' has {len(expected)} problems:\n  - ")
    assert all(problem in message for problem in check.problems)


def test_check_plugin_passes_a_good_plugin() -> None:
    """A sound plugin has no problems; the check lists its hooks and contributions."""
    check = check_plugin(Counter)
    check.assert_ok()
    assert check == PluginCheck(
        "counter",
        [],
        hooks=("after_turn", "before_turn", "register_tools", "session_opened"),
        contributions={"tool": ["bump", "nap"]},
    )
    assert str(check) == "plugin 'counter': no problems"


@attrs.frozen
class Required:
    """Options with a required field."""

    token: str


@attrs.frozen
class Shouting:
    """Options whose converter changes the value each time it is read back."""

    word: str = attrs.field(default="hi", converter=lambda s: s + "!")


@attrs.define
class Unwritable:
    """State holding something that is not JSON data."""

    stuff: Any = attrs.field(factory=lambda: {1, 2})


@attrs.define
class Unvalidatable:
    """Options with a field type lash cannot validate."""

    either: int | str = 1


def meta_plugin(name: str, **meta: Any) -> object:
    """A plugin object that declares only ``lash_plugin``."""
    plugin = type(name.title(), (), {})()
    plugin.lash_plugin = lash.PluginMeta(name=name, **meta)
    return plugin


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ({"options": dict}, "options must be an attrs class"),
        ({"options": Unvalidatable}, "field 'either' has type int | str, which lash cannot"),
        ({"options": Required}, "options class Required cannot be built from its defaults"),
        ({"options": Shouting}, "options class Shouting changes when written and read back"),
        ({"state": Unwritable}, "state class Unwritable does not convert to JSON data"),
    ],
)
def test_check_plugin_checks_options_and_state_classes(meta: dict[str, Any], problem: str) -> None:
    """Options and state classes must be attrs, validatable, buildable and round-trip."""
    (found,) = check_plugin(meta_plugin("classy", **meta)).problems
    assert problem in found


def test_check_plugin_builds_options_from_those_given() -> None:
    """Required options build from options=; wrong ones are reported per field."""
    plugin = meta_plugin("needy", options=Required)
    assert check_plugin(plugin, options={"token": "t"}).ok
    (problem,) = check_plugin(plugin, options={"token": 5}).problems
    assert "cannot be built from the options given" in problem
    assert "options.needy.token: expected str" in problem


def test_check_plugin_names_and_metadata() -> None:
    """The reserved name, a lash_plugin of the wrong type, a class needing arguments."""
    (reserved,) = check_plugin(meta_plugin("lash")).problems
    assert "plugin name 'lash' is reserved" in reserved

    class WrongMeta:
        lash_plugin = ("not", "meta")

    (wrong,) = check_plugin(WrongMeta).problems
    assert "`lash_plugin` must be a lash.PluginMeta, got tuple" in wrong

    class NeedsArgs:
        def __init__(self, client: object) -> None: ...

    (needs,) = check_plugin(NeedsArgs).problems
    assert "class plugin" in needs and "cannot be built without arguments" in needs


def test_check_plugin_loads_the_plugin_to_find_the_rest() -> None:
    """What only loading shows: registration failures, missing requirements, command clashes."""

    class Untyped:
        lash_plugin = lash.PluginMeta(name="untyped", requires=("plan", "missing_plugin"))

        @lash.hookimpl
        def register_tools(self, register: lash.RegisterTool) -> None:
            register(lambda x: x)

    (requires,) = check_plugin(Untyped).problems
    assert "requires 'missing_plugin', which is not loaded" in requires

    class Loads:
        lash_plugin = lash.PluginMeta(name="loads", requires=("plan",))

        @lash.hookimpl
        def register_tools(self, register: lash.RegisterTool) -> None:
            def untyped(x):
                """No type hints."""

            register(untyped)

        @lash.hookimpl
        def register_commands(self, cli: Any) -> None:
            @cli.command("run")
            def run() -> None:
                """Clash with lash run."""

    problems = check_plugin(Loads).problems
    assert len(problems) == 2
    assert "failed in hook 'register_tools'" in problems[0] and "has no type hint" in problems[0]
    assert "adds command 'run', which lash already provides" in problems[1]


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Install fake distributions (a .dist-info directory and modules) on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules: list[str] = []

    def install(dist: str, plugins: dict[str, str], sources: dict[str, str]) -> None:
        info = site / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n", encoding="utf-8"
        )
        lines = "".join(f"{name} = {target}\n" for name, target in plugins.items())
        (info / "entry_points.txt").write_text(f"[lash.plugins]\n{lines}", encoding="utf-8")
        for module, source in sources.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            modules.append(module)

    yield install
    for module in modules:
        sys.modules.pop(module, None)


GOOD_MODULE = """
    import lash

    lash_plugin = lash.PluginMeta(name="tidy")

    @lash.hookimpl
    def register_tools(register):
        def tidy(text: str) -> str:
            '''Tidy text.'''
            return text.strip()

        register(tidy)
"""


def test_check_plugin_by_entry_point_or_distribution_name(installed: Callable[..., None]) -> None:
    """A name is looked up among installed entry points, then distributions."""
    installed("tidy-tools", {"tidy": "lash_probe_tidy"}, {"lash_probe_tidy": GOOD_MODULE})
    by_entry_point = check_plugin("tidy")
    assert by_entry_point == PluginCheck(
        "tidy",
        [],
        distribution="tidy-tools",
        version="1.0",
        hooks=("register_tools",),
        contributions={"tool": ["tidy"]},
    )
    assert check_plugin("Tidy_Tools").contributions == {"tool": ["tidy"]}
    (missing,) = check_plugin("tidyy").problems
    assert "no installed distribution declares a lash plugin named 'tidyy'" in missing
    assert "did you mean 'tidy'?" in missing


def test_check_plugin_reports_entry_point_problems(installed: Callable[..., None]) -> None:
    """Import failures and name clashes, for every entry point of a distribution."""
    installed(
        "bad-tools",
        {"plan": "lash_probe_mismatch", "crashes": "lash_probe_crash", "tidy": "lash_probe_tidy2"},
        {
            "lash_probe_mismatch": GOOD_MODULE.replace('name="tidy"', 'name="other"'),
            "lash_probe_crash": "raise ImportError('no such backend')\n",
            "lash_probe_tidy2": GOOD_MODULE,
        },
    )
    installed("more-tools", {"tidy": "lash_probe_tidy3"}, {"lash_probe_tidy3": GOOD_MODULE})
    check = check_plugin("bad-tools")
    assert check.plugin == "bad-tools" and check.distribution == "bad-tools"
    expected = [
        "plugin 'plan': the name is taken by a builtin plugin of lash",
        "plugin 'plan': lash_plugin.name is 'other' but the entry point is named 'plan'",
        "plugin 'crashes': its entry point 'lash_probe_crash' cannot be imported: "
        "ImportError: no such backend",
        "plugin 'tidy' is declared by two distributions, 'bad-tools' and 'more-tools'",
    ]
    for text in expected:
        assert sum(text in problem for problem in check.problems) == 1, (text, check.problems)
    assert check.contributions == {"tool": ["tidy", "tidy"]}


def test_builtins_pass_check_plugin() -> None:
    """Every builtin passes, checked by its entry-point name."""
    for name in BUILTINS:
        check_plugin(name).assert_ok()


# -- the pytest plugin -----------------------------------------------------------------------------

INI = """
[pytest]
addopts = --strict-markers -p no:cacheprovider
filterwarnings = error
"""

CONFTEST = """
import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"
"""

USES_THE_KIT = """
import asyncio

import pytest

import lash
from lash.testing import Script, check_plugin, record_hooks, run_tool, run_tool_sync

EVENTS = []


class Events:
    lash_plugin = lash.PluginMeta(name="events")

    @lash.hookimpl
    def session_opened(self, restored):
        EVENTS.append(("opened", restored))

    @lash.hookimpl
    def register_tools(self, register):
        def echo(text: str) -> str:
            '''Echo.'''
            return text

        register(echo)

    @lash.hookimpl
    def register_stores(self, register):
        class Recording(lash.store.MemoryStore):
            async def acquire_lease(self, *args, **kwargs):
                EVENTS.append(("used", asyncio.get_running_loop()))
                return await super().acquire_lease(*args, **kwargs)

            async def close(self):
                EVENTS.append(("closed", asyncio.get_running_loop()))

        register("recording", Recording)


@pytest.mark.anyio
async def test_async_turn(lash_core, hook_recorder):
    core = lash_core(Events(), script=[Script.tool_call("echo", text="x"), "done"],
                     store="recording://")
    recorder = hook_recorder(core)
    async with core.session("s") as session:
        result = await session.turn("hi").run()
    assert result.text == "done"
    assert recorder.calls("session_opened", plugin="events")
    EVENTS.remove(("opened", False))
    EVENTS.append(("recorder", recorder))


def test_sync_core(lash_core, tmp_path):
    core = lash_core(Events(), script=["hi"], store="sqlite")
    assert core.store_url == f"sqlite:///{tmp_path}/lash.db"
    assert run_tool_sync(Events(), text="plain").content == "plain"
    check_plugin(Events).assert_ok()


def test_after():
    (used, recorder, closed) = EVENTS
    assert used[0] == "used" and closed == ("closed", used[1])
    assert not recorder[1].active
"""

UNRELATED = """
import pytest


@pytest.fixture(autouse=True)
def mine():
    yield


def test_sees_only_its_own_fixtures(request):
    assert sorted(request.fixturenames) == ["mine", "request"]


def test_lash_adds_no_hooks(request):
    plugin = request.config.pluginmanager.get_plugin("lash")
    if plugin is not None:  # None under -p no:lash
        assert plugin.__name__ == "lash.testing"
        assert request.config.pluginmanager.get_hookcallers(plugin) == []
"""


def test_the_kit_works_through_the_pytest11_registration(pytester: pytest.Pytester) -> None:
    """In a fresh pytest process the entry point provides the kit; cores close in their loop."""
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_kit=USES_THE_KIT)
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=3)


def test_an_unrelated_suite_sees_no_side_effects(pytester: pytest.Pytester) -> None:
    """lash.testing is loaded, but adds no autouse fixture and implements no pytest hook."""
    pytester.makeini(INI)
    pytester.makepyfile(test_unrelated=UNRELATED)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)
    listed = pytester.runpytest_inprocess("--fixtures")
    listed.stdout.fnmatch_lines(["*fixtures defined from lash.testing*", "lash_core*"])
    without = pytester.runpytest_inprocess("-p", "no:lash")
    without.assert_outcomes(passed=2)


def test_the_docs_examples_pass(pytester: pytest.Pytester) -> None:
    """The testing page's example tests pass, run as a plugin author would run them."""
    pytester.makeini(INI)
    for path in sorted(EXAMPLES.iterdir()):
        if path.is_file():
            (pytester.path / path.name).write_text(path.read_text("utf-8"), encoding="utf-8")
    tree = ast.parse((EXAMPLES / "test_hello.py").read_text(encoding="utf-8"))
    tests = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    ]
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=len(tests))
