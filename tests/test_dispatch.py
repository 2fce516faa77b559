"""Hook dispatch: collect, chain, first, exclusive and broadcast, in order, sync and async."""

from __future__ import annotations

import asyncio
import functools
import logging
import types
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lash
from lash import (
    ConfigRejected,
    ExclusiveHookConflict,
    HostConfig,
    LashError,
    PluginError,
)
from lash._plugins.dispatch import _HOT, HookDispatcher
from lash._plugins.loading import load_plugins


def plugin(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A module plugin named ``name`` implementing ``hooks`` (functions may be pre-marked)."""
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        marked = function if hasattr(function, "lash_impl") else lash.hookimpl(function)
        setattr(module, hook, marked)
    return module


def dispatcher(
    *plugins: object, on_error: Callable[[LashError], None] | None = None
) -> HookDispatcher:
    """A dispatcher over exactly ``plugins`` (no discovery), in the given order."""
    result = load_plugins(HostConfig(strict=True), explicit=list(plugins), discover=False)
    return HookDispatcher(result.pm, [p.name for p in result.loaded], on_error=on_error)


def pc(text: str) -> lash.PromptContribution:
    return lash.PromptContribution(text)


def pv(content: str) -> lash.PromptView:
    """A prompt view of one user message (what transform_prompt_view chains)."""
    return lash.PromptView((lash.Message("user", content),))


def text(view: lash.PromptView) -> str:
    return view.messages[0].content


def tryfirst(function: Callable[..., Any]) -> Callable[..., Any]:
    return lash.hookimpl(tryfirst=True)(function)  # type: ignore[no-any-return]


def trylast(function: Callable[..., Any]) -> Callable[..., Any]:
    return lash.hookimpl(trylast=True)(function)  # type: ignore[no-any-return]


# -- order ----------------------------------------------------------------------------------------


def test_order_is_plugin_order_not_registration_lifo() -> None:
    """Implementations run in plugin order (pluggy alone would call the last registered first)."""
    hooks = dispatcher(*(plugin(n, session_opened=lambda session: None) for n in ("a", "b", "c")))
    assert hooks.plugins_implementing("session_opened") == ["a", "b", "c"]


def test_tryfirst_and_trylast() -> None:
    """tryfirst implementations come first and trylast ones last, each group in plugin order."""

    def impl(session: object) -> None:
        return None

    hooks = dispatcher(
        plugin("late1", session_opened=trylast(lambda session: None)),
        plugin("mid1", session_opened=impl),
        plugin("early1", session_opened=tryfirst(lambda session: None)),
        plugin("late2", session_opened=trylast(lambda session: None)),
        plugin("mid2", session_opened=lambda session: None),
        plugin("early2", session_opened=tryfirst(lambda session: None)),
        plugin("other", session_closed=lambda session: None),
    )
    assert hooks.plugins_implementing("session_opened") == [
        "early1",
        "early2",
        "mid1",
        "mid2",
        "late1",
        "late2",
    ]
    assert hooks.plugins_implementing("session_closed") == ["other"]
    assert hooks.plugins_implementing("frame_opened") == []


def test_impls_describe_each_implementation() -> None:
    """``impls`` gives plugin, function, accepted arguments and whether it is async."""

    async def opened(session: object) -> None:
        return None

    def persisted(revision: int) -> None:
        return None

    hooks = dispatcher(plugin("a", session_opened=opened, turn_persisted=persisted))
    (impl,) = hooks.impls("session_opened")
    assert (impl.plugin, impl.function, impl.argnames, impl.is_async) == (
        "a",
        opened,
        ("session",),
        True,
    )
    (impl,) = hooks.impls("turn_persisted")
    assert (impl.argnames, impl.is_async) == (("revision",), False)


# -- collect --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_collect_tags_results_and_drops_none() -> None:
    """collect gathers every non-None result, tagged ``(plugin, value)``, in plugin order."""

    async def async_contribution(session: str) -> lash.PromptContribution:
        return pc(f"async:{session}")

    hooks = dispatcher(
        plugin("a", prompt_contributions=lambda session: pc(f"a:{session}")),
        plugin("none", prompt_contributions=lambda session: None),
        plugin("b", prompt_contributions=async_contribution),
    )
    assert await hooks.collect("prompt_contributions", session="s1") == [
        ("a", pc("a:s1")),
        ("b", pc("async:s1")),
    ]


@pytest.mark.anyio
async def test_collect_with_no_implementations() -> None:
    """collect over a hook nobody implements is an empty list."""
    assert await dispatcher().collect("prompt_contributions", session="s") == []


@pytest.mark.anyio
async def test_collect_binds_per_plugin_arguments() -> None:
    """``bind(plugin)`` supplies arguments that differ per plugin (such as its options)."""
    seen: list[tuple[str, object, object]] = []
    hooks = dispatcher(
        plugin("a", prepare_session=lambda session, options: seen.append(("a", session, options))),
        plugin("b", prepare_session=lambda options, is_root: seen.append(("b", options, is_root))),
    )
    results = await hooks.collect(
        "prepare_session",
        bind=lambda name: {"options": f"options-of-{name}"},
        session="s",
        is_root=True,
    )
    assert results == []
    assert seen == [("a", "s", "options-of-a"), ("b", "options-of-b", True)]


def test_collect_sync() -> None:
    """collect_sync gathers synchronous implementations the same way."""
    hooks = dispatcher(
        plugin("a", prompt_contributions=lambda: pc("a")),
        plugin("b", prompt_contributions=lambda session: None),
        plugin("c", prompt_contributions=lambda session: pc(session)),
    )
    assert hooks.collect_sync("prompt_contributions", session="s") == [
        ("a", pc("a")),
        ("c", pc("s")),
    ]


def test_collect_sync_rejects_async_implementations() -> None:
    """A synchronous dispatch over an async implementation is an error naming the plugin."""

    async def contribution(session: object) -> str:
        return "never"

    hooks = dispatcher(plugin("asyncy", prompt_contributions=contribution))
    with pytest.raises(PluginError, match="must be synchronous") as info:
        hooks.collect_sync("prompt_contributions", session="s")
    assert (info.value.plugin, info.value.hook) == ("asyncy", "prompt_contributions")


# -- chain ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_chain_passes_each_output_on() -> None:
    """chain hands each implementation the previous output; None means "no change"."""

    async def exclaim(session: object, view: lash.PromptView) -> lash.PromptView:
        return pv(text(view) + "!")

    hooks = dispatcher(
        plugin("upper", transform_prompt_view=lambda view: pv(text(view).upper())),
        plugin("noop", transform_prompt_view=lambda session, view: None),
        plugin("exclaim", transform_prompt_view=exclaim),
        plugin("suffix", transform_prompt_view=lambda view: pv(text(view) + "?")),
    )
    result = await hooks.chain("transform_prompt_view", "view", pv("hello"), session="s")
    assert result == pv("HELLO!?")


@pytest.mark.anyio
async def test_chain_without_implementations_returns_input() -> None:
    """chain over no implementations returns the value unchanged."""
    value = object()
    assert await dispatcher().chain("transform_prompt_view", "view", value, session="s") is value


# -- first ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_first_over_async_implementations() -> None:
    """first awaits async implementations: one returning None does not win (a coroutine would)."""
    called: list[str] = []

    async def declines(session: object, instructions: object) -> None:
        called.append("declines")

    async def answers(session: object) -> lash.Compaction:
        called.append("answers")
        return lash.Compaction("summary")

    def never(session: object) -> lash.Compaction:
        called.append("never")
        return lash.Compaction("too late")

    hooks = dispatcher(
        plugin("declines", compact_context=declines),
        plugin("answers", compact_context=answers),
        plugin("never", compact_context=never),
    )
    assert await hooks.first("compact_context", session="s", instructions=None) == (
        "answers",
        lash.Compaction("summary"),
    )
    assert called == ["declines", "answers"]


@pytest.mark.anyio
async def test_first_respects_trylast_fallback() -> None:
    """A trylast fallback only answers when every other implementation declines."""
    fallback = plugin(
        "fallback", compact_context=trylast(lambda session: lash.Compaction("fallback"))
    )
    specific = plugin(
        "specific",
        compact_context=lambda instructions: (
            lash.Compaction(instructions) if instructions else None
        ),
    )
    hooks = dispatcher(fallback, specific)
    assert await hooks.first("compact_context", session="s", instructions="keep") == (
        "specific",
        lash.Compaction("keep"),
    )
    assert await hooks.first("compact_context", session="s", instructions=None) == (
        "fallback",
        lash.Compaction("fallback"),
    )


@pytest.mark.anyio
async def test_first_when_all_decline() -> None:
    """first returns None when every implementation returns None."""
    hooks = dispatcher(plugin("a", compact_context=lambda session: None))
    assert await hooks.first("compact_context", session="s", instructions=None) is None


@pytest.mark.anyio
async def test_sync_function_returning_coroutine_is_awaited() -> None:
    """An implementation that is a sync wrapper returning a coroutine is awaited too."""

    async def real(session: object) -> lash.Compaction:
        return lash.Compaction("from coroutine")

    @functools.wraps(real)
    def wrapper(session: object) -> Any:
        return real(session)

    async def declines(session: object) -> None:
        return None

    @functools.wraps(declines)
    def declines_wrapper(session: object) -> Any:
        return declines(session)

    hooks = dispatcher(
        plugin("declines", compact_context=declines_wrapper),
        plugin("wrapped", compact_context=wrapper),
    )
    assert await hooks.first("compact_context", session="s", instructions=None) == (
        "wrapped",
        lash.Compaction("from coroutine"),
    )


# -- exclusive ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_exclusive_single_implementation() -> None:
    """exclusive calls the one implementation and tags its result."""

    async def project(result: str) -> str:
        return result[:3]

    hooks = dispatcher(plugin("budget", project_tool_result=project), plugin("other"))
    assert await hooks.exclusive("project_tool_result", session="s", call="c", result="abcdef") == (
        "budget",
        "abc",
    )
    assert hooks.exclusive_impl("project_tool_result") is not None


@pytest.mark.anyio
async def test_exclusive_without_implementation() -> None:
    """exclusive over no implementation is None."""
    hooks = dispatcher()
    assert hooks.exclusive_impl("project_tool_result") is None
    assert await hooks.exclusive("project_tool_result", session="s", call="c", result="r") is None


@pytest.mark.anyio
async def test_exclusive_conflict_names_both_plugins() -> None:
    """A second implementation of an exclusive hook is an error naming both plugins."""
    hooks = dispatcher(
        plugin("first_one", project_tool_result=lambda result: result),
        plugin("second_one", project_tool_result=lambda result: result),
    )
    with pytest.raises(ExclusiveHookConflict) as info:
        await hooks.exclusive("project_tool_result", session="s", call="c", result="r")
    error = info.value
    assert error.plugins == ("first_one", "second_one")
    assert error.hook == "project_tool_result"
    assert "'first_one' and 'second_one'" in str(error)
    assert isinstance(error, PluginError)


# -- broadcast ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_broadcast_isolates_failures() -> None:
    """broadcast runs every implementation; failures are reported to on_error, never raised."""
    seen: list[str] = []
    reported: list[LashError] = []

    def fails(session: object) -> None:
        raise RuntimeError("sync boom")

    async def fails_async(session: object) -> None:
        raise ValueError("async boom")

    async def records(session: str) -> None:
        seen.append(session)

    hooks = dispatcher(
        plugin("fails", session_opened=fails),
        plugin("records", session_opened=records),
        plugin("fails_async", session_opened=fails_async),
        plugin("also", session_opened=lambda session: seen.append("also")),
        on_error=reported.append,
    )
    errors = await hooks.broadcast("session_opened", session="s1")
    assert seen == ["s1", "also"]
    assert errors == reported
    assert [(e.plugin, e.hook) for e in errors] == [  # type: ignore[attr-defined]
        ("fails", "session_opened"),
        ("fails_async", "session_opened"),
    ]
    assert all(isinstance(e, PluginError) for e in errors)
    assert isinstance(errors[0].__cause__, RuntimeError)
    assert "RuntimeError: sync boom" in str(errors[0])


@pytest.mark.anyio
async def test_broadcast_logs_errors(caplog: pytest.LogCaptureFixture) -> None:
    """Isolated broadcast errors are logged, naming plugin and hook."""

    def fails(session: object) -> None:
        raise RuntimeError("logged boom")

    hooks = dispatcher(plugin("noisy", session_closed=fails))
    with caplog.at_level(logging.ERROR, logger="lash"):
        await hooks.broadcast("session_closed", session="s")
    (record,) = caplog.records
    assert "noisy" in record.getMessage()
    assert "session_closed" in record.getMessage()


@pytest.mark.anyio
async def test_broadcast_survives_a_failing_error_callback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An on_error callback that raises does not break the broadcast."""

    def broken_sink(error: LashError) -> None:
        raise RuntimeError("sink is broken")

    def fails(session: object) -> None:
        raise RuntimeError("boom")

    ran: list[str] = []
    hooks = dispatcher(
        plugin("fails", session_parked=fails),
        plugin("after", session_parked=lambda session: ran.append("after")),
        on_error=broken_sink,
    )
    with caplog.at_level(logging.ERROR, logger="lash"):
        errors = await hooks.broadcast("session_parked", session="s")
    assert len(errors) == 1
    assert ran == ["after"]
    assert any("error callback failed" in r.getMessage() for r in caplog.records)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_failure_wrapped_in_plugin_error() -> None:
    """An implementation's exception surfaces as PluginError naming plugin and hook."""

    async def fails(session: object, view: object) -> None:
        raise KeyError("missing")

    hooks = dispatcher(plugin("shaper", transform_prompt_view=fails))
    with pytest.raises(PluginError) as info:
        await hooks.chain("transform_prompt_view", "view", "v", session="s")
    error = info.value
    assert (error.plugin, error.hook) == ("shaper", "transform_prompt_view")
    assert isinstance(error.__cause__, KeyError)
    assert "plugin 'shaper' failed in hook 'transform_prompt_view'" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["collect", "first", "exclusive"])
async def test_every_raising_shape_wraps_errors(shape: str) -> None:
    """collect, first and exclusive wrap failures the same way."""

    def fails(session: object) -> None:
        raise RuntimeError("boom")

    hook = {
        "collect": "prompt_contributions",
        "first": "compact_context",
        "exclusive": "project_tool_result",
    }[shape]
    hooks = dispatcher(plugin("bad", **{hook: fails}))
    kwargs = {"session": "s", "instructions": None, "call": "c", "result": "r"}
    with pytest.raises(PluginError) as info:
        await getattr(hooks, shape)(hook, **kwargs)
    assert (info.value.plugin, info.value.hook) == ("bad", hook)


@pytest.mark.anyio
async def test_config_rejected_keeps_its_type() -> None:
    """ConfigRejected raised by a plugin stays ConfigRejected, with plugin and hook filled in."""

    async def rejects(proposed: object) -> None:
        raise ConfigRejected("model not allowed")

    hooks = dispatcher(
        plugin("ok", mutate_session_config=lambda proposed: None),
        plugin("guard", mutate_session_config=rejects),
    )
    with pytest.raises(ConfigRejected) as info:
        await hooks.chain("mutate_session_config", "proposed", "new", session="s", previous="old")
    error = info.value
    assert error.plugin == "guard"
    assert error.hook == "mutate_session_config"  # type: ignore[attr-defined]
    assert error.reason == "model not allowed"
    assert str(error) == "plugin 'guard' rejected the configuration change: model not allowed"


@pytest.mark.anyio
async def test_lash_error_keeps_plugin_it_names() -> None:
    """A LashError that already names a plugin keeps that name."""

    def fails(session: object) -> None:
        raise PluginError("delegated failure", plugin="inner", hook=None)

    hooks = dispatcher(plugin("outer", prompt_contributions=fails))
    with pytest.raises(PluginError) as info:
        await hooks.collect("prompt_contributions", session="s")
    assert (info.value.plugin, info.value.hook) == ("inner", "prompt_contributions")


@pytest.mark.anyio
async def test_plain_lash_error_is_wrapped_naming_plugin_and_hook() -> None:
    """A LashError other than PluginError/ConfigRejected is wrapped in a PluginError whose
    message names plugin and hook, with the original as its cause."""

    def fails(session: object) -> None:
        raise lash.ConfigError("bad setting")

    hooks = dispatcher(plugin("cfg", session_opened=fails))
    (error,) = await hooks.broadcast("session_opened", session="s")
    assert type(error) is lash.PluginError
    assert (error.plugin, error.hook) == ("cfg", "session_opened")
    assert (
        "'cfg'" in str(error) and "'session_opened'" in str(error) and "bad setting" in str(error)
    )
    assert isinstance(error.__cause__, lash.ConfigError)


@pytest.mark.anyio
async def test_missing_argument_is_not_blamed_on_plugin() -> None:
    """A dispatch that omits an argument an implementation takes is a caller bug (KeyError)."""
    hooks = dispatcher(plugin("p", compact_context=lambda session, instructions: None))
    with pytest.raises(KeyError):
        await hooks.first("compact_context", session="s")


# -- arguments ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_implementations_accept_a_subset_of_arguments() -> None:
    """An implementation receives only the arguments it names, whatever their order."""
    seen: list[object] = []
    hooks = dispatcher(
        plugin("none", turn_persisted=lambda: seen.append("none")),
        plugin("revision", turn_persisted=lambda revision: seen.append(revision)),
        plugin("swapped", turn_persisted=lambda revision, turn: seen.append((turn, revision))),
    )
    assert await hooks.broadcast("turn_persisted", turn="t", revision=7) == []
    assert seen == ["none", 7, ("t", 7)]


def test_class_plugin_methods_do_not_take_self_as_argument() -> None:
    """Methods of class plugins are called bound: ``self`` is not a hook argument."""

    class Plugin:
        def __init__(self) -> None:
            self.prefix = "bound"

        @lash.hookimpl
        def prompt_contributions(self, session: str) -> lash.PromptContribution:
            return pc(f"{self.prefix}:{session}")

    hooks = dispatcher(Plugin)
    assert hooks.collect_sync("prompt_contributions", session="s") == [("Plugin", pc("bound:s"))]


# -- the generated fast path against the loop ------------------------------------------------------

#: What an implementation does in the property test below.
BEHAVIOURS = ("none", "valid", "invalid", "raises", "coroutine", "async", "several")


def _behaving(name: str, behaviour: str, hook: str, log: list[str]) -> Callable[..., Any]:
    """An implementation of ``hook`` for plugin ``name`` that logs its call (with the plugin
    the dispatcher says is running) and then does ``behaviour``."""
    from lash._contract.calls import CALLER

    def value(args: dict[str, Any]) -> Any:
        if hook == "transform_prompt_view":  # a chain: each sees the previous output
            return pv(f"{text(args['view'])}+{name}")
        if hook == "compact_context":
            return lash.Compaction(f"by {name}")
        return pc(f"from {name}")

    def act(args: dict[str, Any]) -> Any:
        caller = CALLER.get()  # (the running hook and plugin, as the dispatcher records them)
        log.append(f"{name}:{(caller.what, caller.plugin) if caller else None}")
        if behaviour == "none":
            return None
        if behaviour == "raises":
            raise ValueError(f"{name} broke")
        if behaviour == "invalid":
            return 42  # no hook accepts an int
        if behaviour == "several" and hook == "prompt_contributions":
            return (pc(f"{name} 1"), pc(f"{name} 2"))  # checked element by element
        return value(args)

    if behaviour == "async":

        async def run_async(**args: Any) -> Any:
            return act(args)

        function: Callable[..., Any] = run_async
    elif behaviour == "coroutine":  # a sync function handing back a coroutine

        async def later(args: dict[str, Any]) -> Any:
            return value(args)

        def function(**args: Any) -> Any:
            act({**args})
            return later(args)

    else:

        def function(**args: Any) -> Any:
            return act(args)

    params = {
        "prompt_contributions": "session",
        "transform_prompt_view": "session, view",
        "turn_finalized": "turn",
        "compact_context": "session, instructions",
        "before_turn": "turn",
    }[hook]
    # pluggy reads the parameter names: give the implementation the hook's own.
    namespace: dict[str, Any] = {"function": function}
    prefix = "async " if behaviour == "async" else ""
    call = "await function" if behaviour == "async" else "function"
    keywords = ", ".join(f"{p}={p}" for p in params.split(", "))
    exec(f"{prefix}def impl({params}):\n    return {call}({keywords})", namespace)
    return namespace["impl"]  # type: ignore[no-any-return]


async def _outcome(hooks: HookDispatcher, hook: str) -> Any:
    """What dispatching ``hook`` in its shape gives back (a raised error as a comparable
    summary), and the caller record left once it returned (none: the dispatch restores it)."""
    from lash._contract.calls import CALLER

    outcome = await _dispatched(hooks, hook)
    return outcome, CALLER.get()


async def _dispatched(hooks: HookDispatcher, hook: str) -> Any:
    try:
        if hook == "prompt_contributions":
            return await hooks.collect(hook, session="s")
        if hook == "transform_prompt_view":
            return text(await hooks.chain(hook, key="view", value=pv("v"), session="s"))
        if hook == "compact_context":
            return await hooks.first(hook, session="s", instructions=None)
        if hook == "before_turn":
            seen: list[Any] = []

            def step(plugin: str, value: Any, kwargs: dict[str, Any]) -> bool:
                seen.append((plugin, value))
                return len(seen) == 2

            await hooks.fold(hook, step, turn="t")
            return seen
        errors = await hooks.broadcast(hook, turn="t")
        return [(type(e).__name__, str(e), e.plugin, e.hook) for e in errors]
    except LashError as exc:
        return ("raised", type(exc).__name__, str(exc), getattr(exc, "plugin", None))


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(
        [
            "prompt_contributions",
            "transform_prompt_view",
            "turn_finalized",
            "compact_context",
            "before_turn",
        ]
    ),
    st.lists(st.sampled_from(BEHAVIOURS), min_size=1, max_size=6),
)
def test_the_generated_fast_path_dispatches_as_the_loop(hook: str, behaviours: list[str]) -> None:
    """Every shape, over implementations that return nothing, a valid or invalid result, a
    coroutine, or raise, sync or async: the dispatcher with its generated fast path calls the
    same implementations in the same order (each seeing itself as the running plugin of the
    hook) and gives the same results and errors as the plain loop, the caller record restored
    after it."""
    outcomes = []
    for fast in (True, False):
        log: list[str] = []
        hooks = dispatcher(
            *(
                plugin(f"p{i}", **{hook: _behaving(f"p{i}", b, hook, log)})
                for i, b in enumerate(behaviours)
            ),
            on_error=lambda error: None,
        )
        plan = hooks._plan(hook)
        if any(b == "async" for b in behaviours):
            assert plan.fast is None  # the loop awaits
        elif fast:
            assert plan.fast is not None
            plan.fast.dispatched = _HOT  # no warm-up: this dispatch takes the fast path
        else:
            hooks._plans[hook] = plan._replace(fast=None)
        outcome, left = asyncio.run(_outcome(hooks, hook))
        assert left is None  # (the record of the dispatch, not of a plugin, once it is over)
        outcomes.append((outcome, log))
        if fast and plan.fast is not None:
            assert plan.fast.prefix is not None
    assert outcomes[0] == outcomes[1]


def test_a_hook_gets_its_fast_path_once_it_is_dispatched_repeatedly() -> None:
    """Building the fast path costs more than a few dispatches: registration hooks (per-plugin
    arguments) and hooks called a few times keep the loop; a hook dispatched over and over
    gets it."""
    hooks = dispatcher(
        plugin("a", before_turn=lambda turn: None),
        plugin("b", register_tools=lambda register: None),
    )
    hooks.collect_sync("register_tools", bind=lambda plugin: {"register": None})
    for _ in range(_HOT - 1):
        asyncio.run(hooks.collect("before_turn", turn="t"))
    fast = hooks._plan("before_turn").fast
    assert fast is not None and fast.prefix is None
    asyncio.run(hooks.collect("before_turn", turn="t"))
    assert fast.prefix is not None
    registration = hooks._plan("register_tools").fast
    assert registration is not None and registration.prefix is None
