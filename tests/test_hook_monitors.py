"""The dispatch path's guards and instruments: each shape method refuses a hook declared with
another shape (a kernel bug guard), ``LashCore.add_hook_monitor`` observes every implementation,
and ``LashCore(hook_timeout=...)`` turns a hook that runs too long into a PluginError.

Expected behaviour from lash/_plugins/dispatch.py's docstrings (``add_monitor``,
``_start``, ``_bounded``), ``LashCore``'s docstring and the hookspecs' failure rules.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _cores import Echo, make_core, stored
from _recorder import Recorder

import lash
from lash import hookspecs
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio

LIMIT = 5.0


# -- shape assertions ---------------------------------------------------------------------------

Dispatch = Callable[[lash.LashCore, str], Awaitable[Any]]


async def _collect(core: lash.LashCore, hook: str) -> Any:
    return await core.hooks.collect(hook)


async def _collect_sync(core: lash.LashCore, hook: str) -> Any:
    return core.hooks.collect_sync(hook)


async def _chain(core: lash.LashCore, hook: str) -> Any:
    return await core.hooks.chain(hook, "value", None)


async def _first(core: lash.LashCore, hook: str) -> Any:
    return await core.hooks.first(hook)


async def _exclusive(core: lash.LashCore, hook: str) -> Any:
    return await core.hooks.exclusive(hook)


async def _broadcast(core: lash.LashCore, hook: str) -> Any:
    return await core.hooks.broadcast(hook)


async def _fold(core: lash.LashCore, hook: str) -> Any:
    return await core.hooks.fold(hook, lambda plugin, value, kwargs: False)


#: Each dispatch method, and the declared shapes it serves (lash/_plugins/dispatch.py).
METHODS: dict[str, tuple[Dispatch, frozenset[str]]] = {
    "collect": (_collect, frozenset({"collect"})),
    "collect_sync": (_collect_sync, frozenset({"collect", "exclusive"})),
    "chain": (_chain, frozenset({"chain"})),
    "first": (_first, frozenset({"first"})),
    "exclusive": (_exclusive, frozenset({"exclusive"})),
    "broadcast": (_broadcast, frozenset({"broadcast"})),
    "fold": (_fold, frozenset({"collect", "chain"})),
}

MISMATCHES = [
    pytest.param(hook, method, id=f"{hook}-via-{method}")
    for hook, shape in hookspecs.SHAPES.items()
    for method, (_, serves) in METHODS.items()
    if shape not in serves
]


@pytest.mark.parametrize(("hook", "method"), MISMATCHES)
async def test_dispatching_a_hook_through_another_shape_is_an_assertion_error(
    hook: str, method: str
) -> None:
    """A call site using the wrong shape method for a hook fails at once (a kernel bug)."""
    core = lash.LashCore(plugins=[standard, stores], builtins=(), store="memory://")
    dispatch, _ = METHODS[method]

    with pytest.raises(AssertionError) as info:
        await dispatch(core, hook)

    message = str(info.value)
    assert message.startswith(f"kernel bug: hook {hook!r} is declared ")
    assert repr(hookspecs.SHAPES[hook]) in message


@pytest.mark.parametrize("method", METHODS)
async def test_dispatching_a_name_that_is_no_hook_is_an_assertion_error(method: str) -> None:
    """A name that is not in lash.hookspecs.SHAPES cannot be dispatched at all."""
    core = lash.LashCore(plugins=[standard, stores], builtins=(), store="memory://")
    dispatch, _ = METHODS[method]

    with pytest.raises(AssertionError, match="'before_turm' is not a hook"):
        await dispatch(core, "before_turm")


# -- monitors -------------------------------------------------------------------------------------


class Watched:
    """A sync hook, an async hook and a raising broadcast, for monitors to observe."""

    lash_plugin = lash.PluginMeta(name="watched")

    def __init__(self) -> None:
        self.error = ValueError("boom")

    @lash.hookimpl
    def prompt_contributions(self) -> lash.PromptContribution:
        return lash.PromptContribution("fragment")

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> lash.EnqueueMessages:
        await asyncio.sleep(0)  # really suspends: the monitor must see the awaited value
        return lash.EnqueueMessages(("later",))

    @lash.hookimpl
    def turn_persisted(self, turn: lash.TurnView, revision: int) -> None:
        raise self.error


Call = tuple[str, str, str, dict[str, Any], Any, BaseException | None]


def monitor(log: list[Call]) -> tuple[Any, Any]:
    def before(hook: str, plugin: str, kwargs: Any) -> None:
        log.append(("before", hook, plugin, dict(kwargs), None, None))

    def after(hook: str, plugin: str, kwargs: Any, result: Any, exc: BaseException | None) -> None:
        log.append(("after", hook, plugin, dict(kwargs), result, exc))

    return before, after


def of(log: list[Call], hook: str, plugin: str = "watched") -> list[Call]:
    return [entry for entry in log if entry[1] == hook and entry[2] == plugin]


async def test_monitor_sees_arguments_awaited_results_and_exceptions_as_raised(
    tmp_path: Path,
) -> None:
    """A monitor sees each implementation's own arguments before it runs, and after it what
    it returned (awaited for async implementations) or raised (the plugin's exception, not
    the PluginError it becomes); dispatch itself is unchanged."""
    watched = Watched()
    errors: list[lash.LashError] = []
    core = make_core(tmp_path, Recorder(["done"]), watched, on_error=errors.append)
    log: list[Call] = []
    core.add_hook_monitor(*monitor(log))
    session = await core.session("s").open()

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.outcome == "completed"
    # The directive still applied.
    assert [i.text for i in await session.inputs()] == ["later"]

    [(_, _, _, args, _, _), after] = of(log, "before_turn")
    assert list(args) == ["turn"] and args["turn"].input == "hi"
    assert after[0] == "after" and after[4] == lash.EnqueueMessages(("later",))
    assert after[5] is None

    [_, after] = of(log, "prompt_contributions")
    assert after[3] == {} and after[4] == lash.PromptContribution("fragment")

    [before, after] = of(log, "turn_persisted")
    assert set(before[3]) == {"turn", "revision"} and before[3]["revision"] == 1
    assert after[4] is None and after[5] is watched.error
    [reported] = errors
    assert isinstance(reported, lash.PluginError) and reported.__cause__ is watched.error
    await core.aclose()


async def test_monitor_sees_a_wrong_result_before_lash_checks_it(tmp_path: Path) -> None:
    """The monitor gets what the plugin returned, even when lash then refuses it."""

    class Wrong:
        lash_plugin = lash.PluginMeta(name="wrong")

        @lash.hookimpl
        def before_turn(self) -> Any:
            return "oops"

    core = make_core(tmp_path, Recorder([]), Wrong())
    log: list[Call] = []
    core.add_hook_monitor(*monitor(log))
    session = await core.session("s").open()

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.outcome == "failed" and result.error_plugin == "wrong"
    [after] = [e for e in of(log, "before_turn", "wrong") if e[0] == "after"]
    assert after[4] == "oops" and after[5] is None
    await core.aclose()


async def test_undo_removes_the_monitor(tmp_path: Path) -> None:
    """After undo() the monitor sees nothing more; a second undo() is harmless; other monitors
    stay."""
    core = make_core(tmp_path, Recorder(["one", "two"]), Watched(), on_error=lambda e: None)
    first: list[Call] = []
    second: list[Call] = []
    undo = core.add_hook_monitor(*monitor(first))
    core.add_hook_monitor(*monitor(second))
    session = await core.session("s").open()
    await asyncio.wait_for(session.turn("one").run(), LIMIT)
    seen = len(first)
    assert seen > 0 and len(second) == seen

    undo()
    undo()
    await asyncio.wait_for(session.turn("two").run(), LIMIT)

    assert len(first) == seen
    assert len(second) == 2 * seen
    await core.aclose()


async def test_a_monitor_that_raises_fails_the_hook_call(tmp_path: Path) -> None:
    """A monitor raising in ``before`` fails that hook call (documented: keep monitors
    simple): before_turn's failure fails the turn."""

    def before(hook: str, plugin: str, kwargs: Any) -> None:
        if hook == "before_turn":
            raise RuntimeError("monitor broke")

    core = make_core(tmp_path, Recorder([]), Watched())
    core.add_hook_monitor(before, lambda *args: None)
    session = await core.session("s").open()

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.outcome == "failed" and "monitor broke" in (result.error or "")
    await core.aclose()


# -- hook_timeout ---------------------------------------------------------------------------------


class Hangs:
    """An async implementation of ``hook`` that waits for an event nobody sets."""

    lash_plugin = lash.PluginMeta(name="hangs")

    def __init__(self, hook: str) -> None:
        self.never = asyncio.Event()
        self.cancelled = asyncio.Event()

        async def impl() -> None:
            try:
                await self.never.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise

        setattr(self, hook, lash.hookimpl(specname=hook)(impl))


async def test_before_turn_over_the_hook_timeout_fails_the_turn_and_commits(
    tmp_path: Path,
) -> None:
    """An async before_turn running past hook_timeout is cancelled and becomes a PluginError
    naming plugin and hook: the turn fails, soon after the limit, and is committed."""
    hangs = Hangs("before_turn")
    core = make_core(tmp_path, Recorder([]), hangs, hook_timeout=0.2)
    session = await core.session("s").open()

    started = time.monotonic()
    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)
    elapsed = time.monotonic() - started

    assert result.outcome == "failed", result
    assert (result.error_plugin, result.error_hook) == ("hangs", "before_turn")
    assert result.error == (
        "plugin 'hangs' did not return from hook 'before_turn' within 0.2 s (the core's "
        "hook_timeout); it was cancelled"
    )
    assert hangs.cancelled.is_set()
    assert 0.2 <= elapsed < 2.0
    assert (await stored(tmp_path)).turns == 1
    await core.aclose()


@pytest.mark.parametrize("hook", ["turn_finalized", "turn_persisted"])
async def test_broadcast_over_the_hook_timeout_is_reported_and_the_turn_completes(
    hook: str, tmp_path: Path
) -> None:
    """A broadcast implementation running past hook_timeout is reported as a PluginError
    naming plugin and hook; the turn completes and is committed."""
    errors: list[lash.LashError] = []
    core = make_core(
        tmp_path, Recorder(["done"]), Hangs(hook), hook_timeout=0.2, on_error=errors.append
    )
    session = await core.session("s").open()

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.outcome == "completed", result
    [error] = errors
    assert isinstance(error, lash.PluginError)
    assert (error.plugin, error.hook) == ("hangs", hook)
    assert f"did not return from hook {hook!r} within 0.2 s" in str(error)
    assert (await stored(tmp_path)).turns == 1
    await core.aclose()


async def test_tool_call_hook_over_the_hook_timeout_gives_the_call_an_error_result(
    tmp_path: Path,
) -> None:
    """before_tool_call running past hook_timeout: the call's result is the error naming
    plugin and hook; the turn goes on."""

    script = [{"tool_calls": [{"name": "echo", "arguments": {"text": "x"}}]}, "done"]
    core = make_core(
        tmp_path, Recorder(script), Echo(), Hangs("before_tool_call"), hook_timeout=0.2
    )
    session = await core.session("s").open()

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.outcome == "completed", result
    [record] = result.tool_calls
    assert record.result.is_error
    assert "plugin 'hangs' did not return from hook 'before_tool_call'" in record.result.content
    await core.aclose()


class OwnTimeout:
    """A before_turn whose own timeout expires (its TimeoutError, not the core's)."""

    lash_plugin = lash.PluginMeta(name="own")

    @lash.hookimpl
    async def before_turn(self) -> None:
        async with asyncio.timeout(0.01):
            await asyncio.Event().wait()


@pytest.mark.parametrize("hook_timeout", [None, 5.0])
async def test_a_plugins_own_timeout_error_is_attributed_like_any_failure(
    hook_timeout: float | None, tmp_path: Path
) -> None:
    """A TimeoutError the plugin raises itself is its failure, named as such, not mistaken for
    the core's hook_timeout."""
    core = make_core(tmp_path, Recorder([]), OwnTimeout(), hook_timeout=hook_timeout)
    session = await core.session("s").open()

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.outcome == "failed", result
    assert (result.error_plugin, result.error_hook) == ("own", "before_turn")
    assert (result.error or "").startswith(
        "plugin 'own' failed in hook 'before_turn': TimeoutError"
    ), result.error
    await core.aclose()


async def test_a_hook_within_the_hook_timeout_is_unaffected(tmp_path: Path) -> None:
    """An async hook that returns in time runs normally under hook_timeout."""

    class Quick:
        lash_plugin = lash.PluginMeta(name="quick")

        @lash.hookimpl
        async def before_turn(self) -> lash.EnqueueMessages:
            await asyncio.sleep(0)
            return lash.EnqueueMessages(("later",))

    core = make_core(tmp_path, Recorder(["done"]), Quick(), hook_timeout=0.5)
    session = await core.session("s").open()

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.outcome == "completed"
    assert [i.text for i in await session.inputs()] == ["later"]
    await core.aclose()
