"""Every hook's return value is checked: a wrong type is a PluginError naming the plugin, the
hook, what was returned and what is expected, and the hook's documented failure rule applies.

Expected behaviour comes from lash/hookspecs.py (each hook's ``:return:`` and "On error") and
lash/_plugins/results.py's documented choices: a ``str`` from ``filter_tool_catalog`` is one tool
name; directives and fragments may come as any iterable. Each hook is driven through a real core
(the scripted Recorder provider, a SQLite file) at its real call site.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import _cores as cores
import pytest
from _recorder import Recorder

import lash
from lash import hookspecs
from lash._plugins.composition import compose
from lash._plugins.hostconfig import HostConfig
from lash_plugins_builtin import plan, standard, stores

pytestmark = pytest.mark.anyio

LIMIT = 5.0


class Compactor:
    """A compactor that always answers (so frame_opened fires)."""

    lash_plugin = lash.PluginMeta(name="compactor")

    @lash.hookimpl(trylast=True)
    def compact_context(self) -> lash.Compaction:
        return lash.Compaction(summary="short", keep_recent_turns=0)


def bad(hook: str, value: Any, *, is_async: bool = False) -> types.ModuleType:
    """A plugin named ``bad`` whose implementation of ``hook`` returns ``value``."""
    module = types.ModuleType("bad")
    if is_async:

        async def impl() -> Any:
            return value

    else:

        def impl() -> Any:  # type: ignore[misc]
            return value

    setattr(module, hook, lash.hookimpl(impl))
    return module


#: A tool round trip: the model calls echo, then answers.
ROUND_TRIP = [{"tool_calls": [{"name": "echo", "id": "c1", "arguments": {"text": "hi"}}]}, "done"]


def make_core(tmp_path: Path, rec: Recorder, *plugins: object, **kwargs: Any) -> lash.LashCore:
    return cores.make_core(tmp_path, rec, cores.Echo(), Compactor(), *plugins, **kwargs)


# -- each hook's failure rule, with what it observed -------------------------------------------

#: ``failure(tmp_path, plugin) -> the error text`` for one hook: drives the hook at its call
#: site, checks the hook's documented failure rule and returns the error it produced.
Failure = Callable[[Path, types.ModuleType], Awaitable[str]]


def turn_fails(hook: str) -> Failure:
    """The turn ends ``failed`` naming plugin and hook, and is still committed."""

    async def failure(tmp_path: Path, plugin: types.ModuleType) -> str:
        async with make_core(tmp_path, Recorder(ROUND_TRIP), plugin) as core:
            session = await core.session("s").open()
            result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)
            assert result.outcome == "failed", result
            assert (result.error_plugin, result.error_hook) == ("bad", hook)
        assert (await cores.stored(tmp_path)).turns == 1
        return result.error or ""

    return failure


def call_fails(hook: str) -> Failure:
    """The tool call gets an error result naming the plugin; the turn goes on and completes."""

    async def failure(tmp_path: Path, plugin: types.ModuleType) -> str:
        rec = Recorder(ROUND_TRIP)
        async with make_core(tmp_path, rec, plugin) as core:
            session = await core.session("s").open()
            result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)
            assert result.outcome == "completed", result
            [record] = result.tool_calls
            assert record.result.is_error, record
        # What the model was shown is that error result.
        [tool_message] = [m for m in rec.requests[1].messages if m.role == "tool"]
        assert tool_message.content == record.result.content
        return record.result.content

    return failure


Trigger = Callable[[lash.Session], Awaitable[Any]]


async def _turn(session: lash.Session) -> Any:
    result = await session.turn("hi").run()
    assert result.outcome == "completed", result
    return result


async def _configure(session: lash.Session) -> Any:
    return await session.configure(model="m2")


async def _compact(session: lash.Session) -> Any:
    await session.turn("first").run()
    return await session.compact()


async def _compact_only(session: lash.Session) -> Any:
    return await session.compact()


async def _close(session: lash.Session) -> Any:
    return await session.close()


async def _park(session: lash.Session) -> Any:
    return await session.park()


async def _nothing(session: lash.Session) -> Any:
    return None


def reported(hook: str, trigger: Trigger, *, times: int = 1) -> Failure:
    """A broadcast (or project_tool_result): the error is reported and isolated, each of the
    ``times`` the operation runs the hook; the operation succeeds."""

    async def failure(tmp_path: Path, plugin: types.ModuleType) -> str:
        errors: list[lash.LashError] = []
        rec = Recorder([*ROUND_TRIP, "again"])
        async with make_core(tmp_path, rec, plugin, on_error=errors.append) as core:
            session = await core.session("s").open()
            await asyncio.wait_for(trigger(session), LIMIT)
            matching = [e for e in errors if getattr(e, "hook", None) == hook]
            assert len(matching) == times, errors
            error = matching[0]
            assert isinstance(error, lash.PluginError) and error.plugin == "bad"
        return str(error)

    return failure


def raises(hook: str, trigger: Trigger | None) -> Failure:
    """The operation raises the PluginError and commits nothing (``trigger`` None: the open
    itself fails)."""

    async def failure(tmp_path: Path, plugin: types.ModuleType) -> str:
        async with make_core(tmp_path, Recorder(["one"]), plugin) as core:
            session = core.session("s")
            with pytest.raises(lash.PluginError) as info:
                await asyncio.wait_for(session.open(), LIMIT)
                assert trigger is not None, "the open should have failed"
                await session.turn("first").run()
                before = session.revision
                await asyncio.wait_for(trigger(session), LIMIT)
            assert (info.value.plugin, info.value.hook) == ("bad", hook)
            if trigger is not None:
                # The configuration or compaction was not committed.
                assert session.revision == before
                assert session.config.model != "m2"
        return str(info.value)

    return failure


#: Every hook the kernel calls with real arguments, and its documented failure rule.
RULES: dict[str, Failure] = {
    "prepare_session": raises("prepare_session", None),
    "mutate_session_config": raises("mutate_session_config", _configure),
    "session_config_changed": reported("session_config_changed", _configure),
    "compact_context": raises("compact_context", _compact_only),
    "transform_prompt_view": turn_fails("transform_prompt_view"),
    "filter_tool_catalog": turn_fails("filter_tool_catalog"),
    "prompt_contributions": turn_fails("prompt_contributions"),
    "before_turn": turn_fails("before_turn"),
    "after_turn": turn_fails("after_turn"),
    "checkpoint": turn_fails("checkpoint"),
    "before_tool_call": call_fails("before_tool_call"),
    "after_tool_call": call_fails("after_tool_call"),
    "project_tool_result": reported("project_tool_result", _turn),
    # Twice: the round trip's turn calls the model twice, and the turn goes on after each.
    "model_call_finished": reported("model_call_finished", _turn, times=2),
    "session_opened": reported("session_opened", _nothing),
    "turn_finalized": reported("turn_finalized", _turn),
    "turn_persisted": reported("turn_persisted", _turn),
    "frame_opened": reported("frame_opened", _compact),
    "session_parked": reported("session_parked", _park),
    "session_closed": reported("session_closed", _close),
}

#: The registration hooks: a result other than None fails the core build.
REGISTRATION = (
    "register_tools",
    "register_providers",
    "register_protocol",
    "register_process_kinds",
    "register_stores",
    "register_session_commands",
    "register_operations",
)

#: Hooks called by workers and ``core.processes``, not by a session: their result and failure
#: rules are tested in tests/test_processes.py.
NOT_CALLED = frozenset({"process_finished", "render_process_result"})

DIRECTIVES = (
    "expected a turn directive (lash.AbortTurn, lash.EnqueueMessages, lash.Compact, "
    "lash.EmitEvent, lash.StartProcess)"
)

#: What each hook's error says is expected (from its hookspec's ``:return:``).
EXPECTED = {
    "mutate_session_config": "expected a lash.SessionConfig, or None",
    "compact_context": "expected a lash.Compaction, or None",
    "transform_prompt_view": "expected a lash.PromptView, or None",
    "filter_tool_catalog": "expected tool names to hide (a str is one name), or None",
    "prompt_contributions": "expected a lash.PromptContribution, an iterable of them, or None",
    "before_turn": DIRECTIVES,
    "after_turn": DIRECTIVES,
    "checkpoint": DIRECTIVES,
    "before_tool_call": (
        "expected lash.ReplaceToolArguments, lash.ShortCircuitToolCall, lash.AbortToolCall, "
        "lash.RequireApproval, or None"
    ),
    "after_tool_call": "expected a lash.ToolResult, or None",
    "project_tool_result": "expected the text the model sees (str), or None",
}
NOTHING = "expected None (this hook returns nothing)"

#: A value of the right family but the wrong class, per hook.
WRONG_CLASS: dict[str, Any] = {
    "mutate_session_config": lash.PromptView(()),
    "compact_context": lash.AbortTurn("no"),
    "transform_prompt_view": lash.SessionConfig(),
    "filter_tool_catalog": [1, 2],
    "prompt_contributions": lash.Compact(),
    "before_turn": lash.AbortToolCall("no"),
    "after_turn": lash.ShortCircuitToolCall("no"),
    "checkpoint": lash.ReplaceToolArguments({}),
    "before_tool_call": lash.AbortTurn("no"),
    "after_tool_call": lash.ShortCircuitToolCall("no"),
    "project_tool_result": lash.ToolResult("c1", "text"),
}


def wrong_values(hook: str) -> list[tuple[str, Any]]:
    """Values ``hook`` must refuse: a str (unless a str is its answer), an int, a dict, the
    wrong class, and an iterable with one wrong element."""
    values: list[tuple[str, Any]] = [("int", 7), ("dict", {"k": 1})]
    if hook not in ("filter_tool_catalog", "project_tool_result"):
        values.append(("str", "oops"))
    values.append(("wrong class", WRONG_CLASS.get(hook, lash.AbortTurn("no"))))
    if hook in ("before_turn", "after_turn", "checkpoint"):
        values.append(("list with a wrong element", [lash.AbortTurn("no"), 7]))
    if hook == "prompt_contributions":
        values.append(("list with a wrong element", [lash.PromptContribution("x"), "text"]))
    return values


CASES = [
    pytest.param(hook, value, id=f"{hook}-{label}")
    for hook in RULES
    for label, value in wrong_values(hook)
]


def test_every_hook_is_covered_or_listed_as_not_called() -> None:
    """Each hook of SHAPES has a result test here, or is named as having no call site."""
    covered = set(RULES) | set(REGISTRATION) | {"register_commands"} | NOT_CALLED
    assert covered == set(hookspecs.SHAPES)


@pytest.mark.parametrize(("hook", "value"), CASES)
async def test_wrong_result_is_a_plugin_error_naming_plugin_hook_value_and_expectation(
    hook: str, value: Any, tmp_path: Path
) -> None:
    """A hook returning a wrong type fails by the hook's rule, with a PluginError that names
    the plugin, the hook, the type returned and what the hook expects."""
    message = await RULES[hook](tmp_path, bad(hook, value))

    assert f"plugin 'bad' returned {type(value).__name__} " in message, message
    assert f"from hook {hook!r}; {EXPECTED.get(hook, NOTHING)}" in message, message


@pytest.mark.parametrize("hook", ["before_turn", "transform_prompt_view", "turn_persisted"])
async def test_an_async_implementation_returning_a_wrong_type_is_refused_too(
    hook: str, tmp_path: Path
) -> None:
    """What an async implementation returns is checked once awaited."""
    message = await RULES[hook](tmp_path, bad(hook, "oops", is_async=True))

    assert f"plugin 'bad' returned str 'oops' from hook {hook!r}" in message, message


# -- the documented readings ---------------------------------------------------------------------


class Tools:
    """Tools named like the characters of 'update_plan' would be, if it were read as letters."""

    lash_plugin = lash.PluginMeta(name="tools")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        for name in ("u", "p"):
            register(cores.echo, name=name)


async def test_filter_tool_catalog_returning_a_str_hides_that_one_tool(tmp_path: Path) -> None:
    """A bare str from filter_tool_catalog is one tool name: that tool is hidden, not the tools
    named by its characters."""
    rec = Recorder(["done"])
    hider = bad("filter_tool_catalog", "update_plan")
    async with make_core(tmp_path, rec, plan, Tools(), hider) as core:
        session = await core.session("s").open()
        result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.outcome == "completed", result
    assert sorted(spec.name for spec in rec.requests[0].tools) == ["echo", "p", "u"]


@pytest.mark.parametrize(
    "names",
    [("update_plan",), ["update_plan"], (n for n in ["update_plan"]), frozenset({"update_plan"})],
    ids=["tuple", "list", "generator", "frozenset"],
)
async def test_filter_tool_catalog_accepts_any_iterable_of_names(
    names: Any, tmp_path: Path
) -> None:
    """Names to hide may come as any iterable of str."""
    rec = Recorder(["done"])
    async with make_core(tmp_path, rec, plan, bad("filter_tool_catalog", names)) as core:
        session = await core.session("s").open()
        await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert [spec.name for spec in rec.requests[0].tools] == ["echo"]


@pytest.mark.parametrize(
    "make",
    [list, tuple, lambda items: (d for d in items), lambda items: iter(items)],
    ids=["list", "tuple", "generator", "iterator"],
)
async def test_turn_directives_as_an_iterable_are_all_applied(
    make: Callable[[list[Any]], Any], tmp_path: Path
) -> None:
    """before_turn returning several directives as any iterable: each is applied (the message
    is queued, and the abort stops the turn)."""
    directives = [lash.EnqueueMessages(("later",)), lash.AbortTurn("enough")]
    async with make_core(tmp_path, Recorder([]), bad("before_turn", make(directives))) as core:
        session = await core.session("s").open()
        result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

        assert (result.outcome, result.reason, result.detail) == (
            "stopped",
            "plugin_abort",
            "enough",
        )
        assert [i.text for i in await session.inputs()] == ["later"]


async def test_prompt_contributions_as_a_generator_are_all_used(tmp_path: Path) -> None:
    """prompt_contributions returning a generator of fragments: each reaches the prompt."""
    fragments = (lash.PromptContribution(text) for text in ("alpha", "beta"))
    rec = Recorder(["done"])
    async with make_core(tmp_path, rec, bad("prompt_contributions", fragments)) as core:
        session = await core.session("s").open()
        await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    system = rec.requests[0].messages[0]
    assert system.role == "system" and system.content == "alpha\n\nbeta"


# -- registration hooks -------------------------------------------------------------------------


def registering(hook: str, value: Any) -> types.ModuleType:
    """A plugin named ``bad`` whose ``hook`` registers nothing and returns ``value``."""
    module = types.ModuleType("bad")

    def impl(register: Any) -> Any:
        return value

    setattr(module, hook, lash.hookimpl(impl))
    return module


@pytest.mark.parametrize("value", ["oops", 7, ["echo"]], ids=["str", "int", "list"])
@pytest.mark.parametrize("hook", REGISTRATION)
def test_registration_hook_returning_a_value_fails_the_core_build(hook: str, value: Any) -> None:
    """register_* hooks register through their callback: returning anything else fails the
    core build with a PluginError naming the plugin, the hook and the value."""
    # register_protocol is exclusive: leave standard out, so the bad plugin is the only one.
    base = [stores] if hook == "register_protocol" else [standard, stores]
    with pytest.raises(lash.PluginError) as info:
        lash.LashCore(plugins=[*base, registering(hook, value)], builtins=(), store="memory://")

    assert (info.value.plugin, info.value.hook) == ("bad", hook)
    assert f"plugin 'bad' returned {type(value).__name__} " in str(info.value)
    assert NOTHING in str(info.value)


def test_register_commands_returning_a_value_loses_that_plugins_commands_only() -> None:
    """register_commands returning a value is reported for that plugin (its commands are not
    available); the other plugins' commands are."""
    import click

    def good_commands(register: Any) -> None:
        register(click.Command("hello"))

    good = types.ModuleType("good")
    good.register_commands = lash.hookimpl(good_commands)  # type: ignore[attr-defined]
    composition = compose(
        HostConfig(),
        explicit=[good, registering("register_commands", "oops")],
        builtins=(),
        isolate=True,
        commands=set(),
    )

    assert list(composition.commands) == ["hello"]
    [problem] = [p for p in composition.problems if p.plugin == "bad"]
    assert problem.hook == "register_commands"
    assert "plugin 'bad' returned str 'oops' from hook 'register_commands'" in problem.message


def test_result_checks_need_classes_only_for_hooks_that_return_them() -> None:
    """The hooks whose result must be one value of a class are those the table lists (the
    table's classes load when first needed, its names are known up front); the other hooks'
    checks take no class, so building them for the ``register_*`` hooks (all that plugin loading
    calls) needs none of the turn data classes."""
    from lash._plugins import results

    assert set(results._one()) == results._ONE_HOOKS
    assert results._ONE_HOOKS <= set(hookspecs.SHAPES)
    for hook in hookspecs.SHAPES:
        check = results.checker(hook)
        if hook.startswith("register_"):
            assert check.accepted == frozenset()
            assert check.expected == "None (this hook returns nothing)"
    # (None passes unchecked: a config's fields are checked too, test_config_fields.py)
    assert results.checker("mutate_session_config").accepted == frozenset()
    assert results.checker("before_turn").accepted == {
        lash.AbortTurn,
        lash.EnqueueMessages,
        lash.Compact,
        lash.EmitEvent,
        lash.StartProcess,
    }
