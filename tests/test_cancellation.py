"""A hung plugin can always be cancelled: an async before_turn, after_turn, turn_finalized or
turn_persisted that never returns is interrupted by ``turn.cancel()``,
``session.cancel_running_turns()`` and ``task.cancel()`` of the task running the turn.

What lash/_kernel/turn.py documents: cancelled before the commit, the turn commits as
``stopped(cancelled)`` (``turn.cancel()`` returns that result; ``task.cancel()`` raises
CancelledError in the task, the turn committed all the same); cancelled after the commit
(turn_persisted), ``turn.cancel()`` returns the committed result and ``task.cancel()`` raises
CancelledError with the turn committed. Either way the handle stays usable, and closing it
releases the lease so another core opens the session. Real SQLite files; every wait bounded.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import _cores as cores
import pytest
from _recorder import Recorder

import lash

pytestmark = pytest.mark.anyio

LIMIT = 5.0

HOOKS = ("before_turn", "after_turn", "turn_finalized", "turn_persisted")
WAYS = ("turn.cancel", "cancel_running_turns", "task.cancel")


class Hung:
    """An async implementation of ``hook`` that waits for an event nobody sets, the first
    time it runs (later turns pass)."""

    lash_plugin = lash.PluginMeta(name="hung")

    def __init__(self, hook: str, *, swallow: bool = False) -> None:
        self.started = asyncio.Event()
        self.interrupted = asyncio.Event()
        never = asyncio.Event()

        async def impl() -> None:
            if self.started.is_set():
                return
            self.started.set()
            try:
                await never.wait()
            except asyncio.CancelledError:
                self.interrupted.set()
                if not swallow:
                    raise

        setattr(self, hook, lash.hookimpl(specname=hook)(impl))


def make_core(tmp_path: Path, *plugins: object, script: Any = ("done", "again")) -> lash.LashCore:
    return cores.make_core(tmp_path, Recorder(list(script)), *plugins)


async def cancel_hung_turn(
    session: lash.Session, hung: Hung, way: str
) -> lash.TurnResult | BaseException:
    """Start a turn, wait until the hung hook runs, cancel it ``way``; return the turn's result
    (or the exception its task ended with)."""
    turn = session.turn("hi")
    task = asyncio.ensure_future(turn.run())
    await asyncio.wait_for(hung.started.wait(), LIMIT)
    if way == "turn.cancel":
        turn.cancel()
    elif way == "cancel_running_turns":
        assert session.cancel_running_turns() == 1
    else:
        task.cancel()
    done, _ = await asyncio.wait((task,), timeout=LIMIT)
    assert done, f"the turn did not end within {LIMIT} s of {way}"
    if task.cancelled():
        return asyncio.CancelledError()
    exc = task.exception()
    return exc if exc is not None else task.result()


async def usable_then_released(session: lash.Session, tmp_path: Path) -> None:
    """The handle runs another turn; closing it releases the lease for another core."""
    again = await asyncio.wait_for(session.turn("again").run(), LIMIT)
    assert again.outcome == "completed", again
    await asyncio.wait_for(session.close(), LIMIT)
    async with make_core(tmp_path) as other:
        reopened = await asyncio.wait_for(other.session("s").open(must_exist=True), LIMIT)
        assert reopened.turns == 2
        await reopened.close()


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("hook", HOOKS)
async def test_a_hung_turn_hook_is_cancelled_and_the_turn_ends_as_documented(
    hook: str, way: str, tmp_path: Path
) -> None:
    """A hook that never returns is interrupted; before the commit the turn commits as
    stopped(cancelled), after it the committed result stands; the session stays usable and its
    lease is released on close."""
    hung = Hung(hook)
    core = make_core(tmp_path, hung)
    session = await core.session("s").open()

    outcome = await cancel_hung_turn(session, hung, way)

    assert hung.interrupted.is_set(), "the hook was never interrupted"
    if way == "task.cancel":
        assert isinstance(outcome, asyncio.CancelledError), outcome
    else:
        assert isinstance(outcome, lash.TurnResult), outcome
        if hook == "turn_persisted":
            # Already committed: the caller gets the committed result.
            assert (outcome.outcome, outcome.revision) == ("completed", 1), outcome
        else:
            assert (outcome.outcome, outcome.reason) == ("stopped", "cancelled"), outcome
            assert outcome.revision == 1
    record = await cores.stored(tmp_path)
    assert (record.revision, record.turns) == (1, 1)
    assert session.revision == 1
    await usable_then_released(session, tmp_path)
    await core.aclose()


@pytest.mark.parametrize("hook", ["before_turn", "after_turn"])
async def test_a_hook_that_swallows_the_cancellation_still_ends_the_turn_cancelled(
    hook: str, tmp_path: Path
) -> None:
    """A hook that catches the CancelledError and returns: the cancellation was asked for, so
    the turn still ends stopped(cancelled) and commits."""
    hung = Hung(hook, swallow=True)
    core = make_core(tmp_path, hung)
    session = await core.session("s").open()

    outcome = await cancel_hung_turn(session, hung, "turn.cancel")

    assert isinstance(outcome, lash.TurnResult), outcome
    assert (outcome.outcome, outcome.reason) == ("stopped", "cancelled"), outcome
    assert (await cores.stored(tmp_path)).turns == 1
    await usable_then_released(session, tmp_path)
    await core.aclose()


async def test_a_cancelled_before_turn_never_calls_the_model(tmp_path: Path) -> None:
    """Cancelled while before_turn hangs, the turn ends without calling the model."""
    hung = Hung("before_turn")
    rec = Recorder(["unused"])
    core = cores.make_core(tmp_path, rec, hung)
    session = await core.session("s").open()

    outcome = await cancel_hung_turn(session, hung, "turn.cancel")

    assert isinstance(outcome, lash.TurnResult) and outcome.reason == "cancelled"
    assert rec.requests == []
    await core.aclose()


async def test_an_after_turn_cancelled_turn_keeps_what_the_model_said(tmp_path: Path) -> None:
    """Cancelled in after_turn, the turn's model answer is committed with it (only its outcome
    becomes stopped(cancelled))."""
    hung = Hung("after_turn")
    core = make_core(tmp_path, hung)
    session = await core.session("s").open()

    outcome = await cancel_hung_turn(session, hung, "turn.cancel")

    assert isinstance(outcome, lash.TurnResult) and outcome.text == "done"
    texts = [
        n.text for n in (await cores.stored(tmp_path)).nodes if isinstance(n, lash.AssistantMessage)
    ]
    assert texts == ["done"]
    await core.aclose()
