"""Re-entrancy is an error, never a hang: a hook or tool calling a locked operation of its own
session gets a SessionError at once, naming the session, the operation and the hook or tool.

What the docs promise (lash/_kernel/session.py, lash/_kernel/runtime.py ``refuse_reentry``, the
hookspec failure rules): every ``Session`` method that holds the session (``turn``,
``configure``, ``compact``, ``set_tool_membership``, ``enqueue_command``, ``apply_commands``,
``run_pending``, ``open``, ``close``, ``park``) refuses to run from plugin code of an operation of
the same session, on any handle of that session on the same core; the hook then fails by its own
documented rule and the session stays usable. Every wait is bounded, so a regression fails
instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _cores import make_core, stored
from _recorder import Recorder

import lash

pytestmark = pytest.mark.anyio

#: Seconds any awaited operation may take before the test calls it a hang.
LIMIT = 5.0

Operation = Callable[[lash.Session], Awaitable[Any]]


async def _turn(session: lash.Session) -> Any:
    return await session.turn("nested").run()


async def _run_pending(session: lash.Session) -> Any:
    return await session.run_pending()


#: Every locked operation of lash.Session, by the name its refusal uses.
OPERATIONS: dict[str, Operation] = {
    "turn": _turn,
    "configure": lambda s: s.configure(model="other"),
    "compact": lambda s: s.compact(),
    "set_tool_membership": lambda s: s.set_tool_membership({"noop": False}),
    "enqueue_command": lambda s: s.enqueue_command("reset", key="k1"),
    "apply_commands": lambda s: s.apply_commands(),
    "run_pending": _run_pending,
    "open": lambda s: s.open(),
    "close": lambda s: s.close(),
    "park": lambda s: s.park(),
}


def noop() -> str:
    """Does nothing."""
    return "ok"


class Attempt:
    """Calls one operation on a session handle (once) and keeps what it raised."""

    def __init__(self, operation: str, *, second_handle: bool = False) -> None:
        self.operation = operation
        self.second_handle = second_handle
        self.session: lash.Session | None = None
        self.errors: list[BaseException] = []
        self.completed = False

    async def __call__(self) -> None:
        if self.completed or self.errors:
            return  # once: the turn that checks the session is usable must not re-enter
        assert self.session is not None
        target = self.session
        if self.second_handle:
            target = target.core.session(target.id)  # type: ignore[attr-defined]
        try:
            await OPERATIONS[self.operation](target)
        except lash.SessionError as exc:
            self.errors.append(exc)
            raise
        self.completed = True


def plugin_at(where: str, attempt: Attempt) -> types.ModuleType:
    """A plugin named ``reenter`` that makes ``attempt`` from hook ``where`` (or from its tool
    ``reenter_tool`` when ``where`` is ``"tool"``); it also registers the ``noop`` tool."""
    module = types.ModuleType("reenter")

    async def hook() -> None:
        await attempt()

    async def reenter_tool(context: lash.ToolContext) -> str:
        """Calls a session operation."""
        await attempt()
        return "unreachable"

    def register_tools(register: lash.RegisterTool) -> None:
        register(noop)
        if where == "tool":
            register(reenter_tool)

    module.register_tools = lash.hookimpl(register_tools)  # type: ignore[attr-defined]
    if where != "tool":
        # An implementation may take a subset of a hook's arguments: this one takes none.
        setattr(module, where, lash.hookimpl(hook))
    return module


def describe(where: str) -> str:
    if where == "tool":
        return "tool 'reenter_tool' of plugin 'reenter'"
    return f"hook {where!r} of plugin 'reenter'"


def assert_refused(attempt: Attempt, where: str, running: str) -> lash.SessionError:
    """The attempt raised one SessionError naming session, operation, hook or tool."""
    assert not attempt.completed, f"{attempt.operation}() ran from {where}"
    [error] = attempt.errors
    assert type(error) is lash.SessionError, repr(error)
    assert error.session_id == "s"
    expected = (
        f"session 's': {attempt.operation}() called from {describe(where)} while the "
        f"session's {running} is running"
    )
    assert str(error).startswith(expected), str(error)
    return error


def assert_names(error: BaseException, hook: str) -> None:
    assert isinstance(error, lash.PluginError), repr(error)
    assert (error.plugin, error.hook) == ("reenter", hook)


async def still_usable(session: lash.Session, tmp_path: Path, *, turns: int) -> None:
    """Another turn completes and commits; close releases the lease for another core."""
    again = await asyncio.wait_for(session.turn("again").run(), LIMIT)
    assert again.outcome == "completed", again
    await asyncio.wait_for(session.close(), LIMIT)
    async with make_core(tmp_path, Recorder([])) as core:
        reopened = await asyncio.wait_for(core.session("s").open(must_exist=True), LIMIT)
        assert reopened.turns == turns
        await reopened.close()


# -- from the hooks a turn awaits, and from a tool -------------------------------------------------

TURN_SITES = ("before_turn", "after_turn", "turn_finalized", "turn_persisted", "tool")


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("where", TURN_SITES)
async def test_turn_hook_or_tool_calling_a_locked_operation_is_refused_at_once(
    where: str, operation: str, tmp_path: Path
) -> None:
    """Each locked operation called from a turn hook or a tool raises SessionError at once; the
    turn ends as that hook's rule says, commits, and the session stays usable."""
    script: list[Any] = ["done", "again"]
    if where == "tool":
        script.insert(0, {"tool_calls": [{"name": "reenter_tool", "id": "c1", "arguments": {}}]})
    rec = Recorder(script)
    attempt = Attempt(operation)
    reported: list[lash.LashError] = []
    core = make_core(tmp_path, rec, plugin_at(where, attempt), on_error=reported.append)
    session = await core.session("s").open()
    attempt.session = session

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    error = assert_refused(attempt, where, "turn")
    if where in ("before_turn", "after_turn"):
        # A turn hook that raises fails the turn, naming plugin and hook; still committed.
        assert result.outcome == "failed", result
        assert (result.error_plugin, result.error_hook) == ("reenter", where)
        assert str(error) in (result.error or "")
    elif where == "tool":
        # A tool that raises gives its call an error result; the turn goes on.
        assert result.outcome == "completed", result
        [record] = result.tool_calls
        assert record.result.is_error
        assert str(error) in record.result.content
    else:
        # A broadcast reports and isolates the failure.
        assert result.outcome == "completed", result
        [failure] = reported
        assert_names(failure, where)
        assert failure.__cause__ is error
    assert (await stored(tmp_path)).turns == 1
    await still_usable(session, tmp_path, turns=2)
    await core.aclose()


@pytest.mark.parametrize("operation", ["turn", "configure", "open", "close"])
@pytest.mark.parametrize("where", ["before_turn", "turn_persisted", "tool"])
async def test_a_second_handle_of_the_same_session_is_refused_too(
    where: str, operation: str, tmp_path: Path
) -> None:
    """A new handle on the same session id and core, made inside a hook or tool, cannot run an
    operation either: it would wait for the running turn's lease or lock."""
    script: list[Any] = ["done", "again"]
    if where == "tool":
        script.insert(0, {"tool_calls": [{"name": "reenter_tool", "id": "c1", "arguments": {}}]})
    attempt = Attempt(operation, second_handle=True)
    core = make_core(tmp_path, Recorder(script), plugin_at(where, attempt), on_error=[].append)
    session = await core.session("s").open()
    attempt.session = session

    await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert_refused(attempt, where, "turn")
    await still_usable(session, tmp_path, turns=2)
    await core.aclose()


# -- from the hooks a turn calls on its way --------------------------------------------------------

#: Hooks that run inside a turn, and what their failure does to it.
IN_TURN = {
    "filter_tool_catalog": "fails",
    "prompt_contributions": "fails",
    "transform_prompt_view": "fails",
    "before_tool_call": "error result",
    "after_tool_call": "error result",
    "project_tool_result": "reported",
}


@pytest.mark.parametrize("operation", ["configure", "turn", "close"])
@pytest.mark.parametrize("where", IN_TURN)
async def test_other_hooks_inside_a_turn_are_refused_too(
    where: str, operation: str, tmp_path: Path
) -> None:
    """Catalog, prompt and tool-call hooks run inside the turn: re-entry from them is refused
    and each fails by its documented rule."""
    script = [{"tool_calls": [{"name": "noop", "id": "c1", "arguments": {}}]}, "done", "again"]
    attempt = Attempt(operation)
    reported: list[lash.LashError] = []
    core = make_core(
        tmp_path, Recorder(script), plugin_at(where, attempt), on_error=reported.append
    )
    session = await core.session("s").open()
    attempt.session = session

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    error = assert_refused(attempt, where, "turn")
    rule = IN_TURN[where]
    if rule == "fails":
        assert result.outcome == "failed", result
        assert (result.error_plugin, result.error_hook) == ("reenter", where)
    elif rule == "error result":
        assert result.outcome == "completed", result
        [record] = result.tool_calls
        assert record.result.is_error and str(error) in record.result.content
    else:
        assert result.outcome == "completed", result
        [failure] = reported
        assert_names(failure, where)
    assert (await stored(tmp_path)).turns == 1
    await still_usable(session, tmp_path, turns=2)
    await core.aclose()


# -- from the hooks of other operations ------------------------------------------------------------


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_prepare_session_calling_an_operation_fails_the_open_and_commits_nothing(
    operation: str, tmp_path: Path
) -> None:
    """prepare_session runs inside the open: re-entry is refused, the open fails naming the
    plugin and hook, the lease is released, and the next open succeeds."""
    attempt = Attempt(operation)
    core = make_core(tmp_path, Recorder(["done"]), plugin_at("prepare_session", attempt))
    session = core.session("s")
    attempt.session = session

    with pytest.raises(lash.PluginError) as info:
        await asyncio.wait_for(session.open(), LIMIT)

    assert_names(info.value, "prepare_session")
    assert_refused(attempt, "prepare_session", "open")
    async with make_core(tmp_path, Recorder([])) as other:
        assert await other.store.load("s") is None  # nothing committed
        # The lease was released: another core opens the session at once.
        await (await asyncio.wait_for(other.session("s").open(), LIMIT)).close()
    await asyncio.wait_for(session.open(), LIMIT)  # the attempt runs once
    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)
    assert result.outcome == "completed", result
    await core.aclose()


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_session_opened_calling_an_operation_is_reported_and_the_open_succeeds(
    operation: str, tmp_path: Path
) -> None:
    """session_opened runs inside the open: re-entry is refused, reported as that broadcast's
    failure, and the session opens and runs turns."""
    attempt = Attempt(operation)
    reported: list[lash.LashError] = []
    core = make_core(
        tmp_path,
        Recorder(["again"]),
        plugin_at("session_opened", attempt),
        on_error=reported.append,
    )
    session = core.session("s")
    attempt.session = session

    await asyncio.wait_for(session.open(), LIMIT)

    error = assert_refused(attempt, "session_opened", "open")
    [failure] = reported
    assert_names(failure, "session_opened")
    assert failure.__cause__ is error
    await still_usable(session, tmp_path, turns=1)
    await core.aclose()


async def _configure(session: lash.Session) -> Any:
    return await session.configure(model="m2")


async def _compact(session: lash.Session) -> Any:
    return await session.compact()


#: Hooks of configure() and compact(): (operation that triggers it, its failure rule).
IN_OPERATIONS: dict[str, tuple[str, Operation, str]] = {
    "mutate_session_config": ("configure", _configure, "raises"),
    "session_config_changed": ("configure", _configure, "reported"),
    "compact_context": ("compact", _compact, "raises"),
}


@pytest.mark.parametrize("operation", ["turn", "configure", "compact", "close"])
@pytest.mark.parametrize("where", IN_OPERATIONS)
async def test_hooks_of_configure_and_compact_are_refused_too(
    where: str, operation: str, tmp_path: Path
) -> None:
    """configure() and compact() hold the session while their hooks run: re-entry from them
    is refused, naming the running operation."""
    running, trigger, rule = IN_OPERATIONS[where]
    attempt = Attempt(operation)
    reported: list[lash.LashError] = []
    core = make_core(
        tmp_path, Recorder(["one", "again"]), plugin_at(where, attempt), on_error=reported.append
    )
    session = await core.session("s").open()
    await session.turn("first").run()
    attempt.session = session

    if rule == "raises":
        with pytest.raises(lash.PluginError) as info:
            await asyncio.wait_for(trigger(session), LIMIT)
        assert_names(info.value, where)
    else:
        await asyncio.wait_for(trigger(session), LIMIT)
        [failure] = reported
        assert_names(failure, where)

    assert_refused(attempt, where, running)
    await still_usable(session, tmp_path, turns=2)
    await core.aclose()


async def test_frame_opened_calling_an_operation_is_refused_and_reported(tmp_path: Path) -> None:
    """frame_opened runs inside the compaction that opened the frame: configure() from it is
    refused and reported; the compaction stands."""

    class Compactor:
        lash_plugin = lash.PluginMeta(name="compactor")

        @lash.hookimpl
        def compact_context(self) -> lash.Compaction:
            return lash.Compaction(summary="short", keep_recent_turns=0)

    attempt = Attempt("configure")
    reported: list[lash.LashError] = []
    core = make_core(
        tmp_path,
        Recorder(["one", "again"]),
        Compactor(),
        plugin_at("frame_opened", attempt),
        on_error=reported.append,
    )
    session = await core.session("s").open()
    await session.turn("first").run()
    attempt.session = session

    frame = await asyncio.wait_for(session.compact(), LIMIT)

    assert frame is not None
    assert_refused(attempt, "frame_opened", "compact")
    [failure] = reported
    assert_names(failure, "frame_opened")
    await still_usable(session, tmp_path, turns=2)
    await core.aclose()


# -- code a hook starts ----------------------------------------------------------------------------


async def test_a_task_started_by_a_hook_and_awaited_by_it_is_refused_too(tmp_path: Path) -> None:
    """A task a hook starts and awaits belongs to the turn: its configure() is refused, not a
    deadlock."""
    errors: list[BaseException] = []
    holder: list[lash.Session] = []

    class Spawner:
        lash_plugin = lash.PluginMeta(name="spawner")

        @lash.hookimpl
        async def before_turn(self) -> None:
            task = asyncio.ensure_future(holder[0].configure(model="other"))
            try:
                await task
            except lash.SessionError as exc:
                errors.append(exc)

    core = make_core(tmp_path, Recorder(["done"]), Spawner())
    session = await core.session("s").open()
    holder.append(session)

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.outcome == "completed", result
    [error] = errors
    assert "configure() called from hook 'before_turn' of plugin 'spawner'" in str(error)
    await core.aclose()


async def test_a_task_that_outlives_the_turn_runs_its_operation_afterwards(
    tmp_path: Path,
) -> None:
    """A task a hook leaves running is no longer part of the turn once the turn has ended: its
    configure() then runs and commits on its own."""
    tasks: list[asyncio.Task[lash.SessionConfig]] = []
    holder: list[lash.Session] = []
    turn_over = asyncio.Event()

    async def later() -> lash.SessionConfig:
        await turn_over.wait()
        return await holder[0].configure(model="later")

    class Spawner:
        lash_plugin = lash.PluginMeta(name="spawner")

        @lash.hookimpl
        def turn_persisted(self) -> None:
            tasks.append(asyncio.ensure_future(later()))

    core = make_core(tmp_path, Recorder(["done"]), Spawner())
    session = await core.session("s").open()
    holder.append(session)

    await asyncio.wait_for(session.turn("hi").run(), LIMIT)
    turn_over.set()
    config = await asyncio.wait_for(tasks[0], LIMIT)

    assert config.model == "later"
    assert session.revision == 2  # the turn, then the configuration
    assert (await stored(tmp_path)).config.model == "later"
    await core.aclose()


class Nest:
    """Session 'outer''s before_turn runs a turn of session 'inner' (a sub-agent); inner's
    before_turn runs ``inner(handles)``."""

    lash_plugin = lash.PluginMeta(name="nest")

    def __init__(self, inner: Callable[[dict[str, lash.Session]], Awaitable[None]]) -> None:
        self.inner = inner
        self.handles: dict[str, lash.Session] = {}
        self.inner_results: list[lash.TurnResult] = []

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> None:
        if turn.session.id == "outer":
            self.inner_results.append(await self.handles["inner"].turn("child").run())
        else:
            await self.inner(self.handles)

    async def open(self, core: lash.LashCore) -> lash.Session:
        """Open both sessions; return the outer one."""
        for name in ("outer", "inner"):
            self.handles[name] = await core.session(name).open()
        return self.handles["outer"]


async def test_a_hook_of_a_nested_session_calling_the_outer_session_is_refused(
    tmp_path: Path,
) -> None:
    """A hook of session A that runs a turn of session B (a sub-agent): B's hooks are still
    inside A's turn, so B's hook calling A.configure() is refused instead of waiting for A."""
    errors: list[BaseException] = []

    async def reconfigure_outer(handles: dict[str, lash.Session]) -> None:
        try:
            await handles["outer"].configure(model="other")
        except lash.SessionError as exc:
            errors.append(exc)
            raise

    nest = Nest(reconfigure_outer)
    core = make_core(tmp_path, Recorder(["done"]), nest)
    outer = await nest.open(core)

    result = await asyncio.wait_for(outer.turn("hi").run(), LIMIT)

    assert result.outcome == "completed", result
    assert [r.outcome for r in nest.inner_results] == ["failed"]
    [error] = errors
    assert str(error).startswith(
        "session 'outer': configure() called from hook 'before_turn' of plugin 'nest' while "
        "the session's turn is running"
    ), str(error)
    await core.aclose()


async def test_a_nested_sessions_hook_changing_the_outer_view_joins_the_outer_turn(
    tmp_path: Path,
) -> None:
    """Session A's view, used by a hook of session B's turn that runs inside A's turn, joins
    A's turn: the change is committed with A's turn instead of waiting for it."""

    async def hide_from_outer(handles: dict[str, lash.Session]) -> None:
        await handles["outer"].view.set_tool_membership({"noop": False})

    nest = Nest(hide_from_outer)
    rec = Recorder(["child answer", "done"])
    core = make_core(tmp_path, rec, plugin_at("tool", Attempt("configure")), nest)
    outer = await nest.open(core)

    result = await asyncio.wait_for(outer.turn("hi").run(), LIMIT)

    assert result.outcome == "completed", result
    assert [r.outcome for r in nest.inner_results] == ["completed"]
    assert [spec.name for spec in rec.requests[0].tools] == ["noop", "reenter_tool"]  # inner
    assert [spec.name for spec in rec.requests[1].tools] == ["reenter_tool"]  # outer
    assert outer.revision == 1  # one commit: the turn, with the membership change
    await core.aclose()
