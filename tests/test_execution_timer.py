"""The running execution's one timer (its first poll, then each lease renewal), reused by the
executions that follow a short one: one timer per ``control_poll`` seconds for a session running
turn after turn, and still every execution's poll and renewals when they are due."""

from __future__ import annotations

import asyncio
import time

import pytest
from test_mailbox import Model, SlowSummary, answer, make_core

import lash
import lash.store

pytestmark = pytest.mark.anyio


def scheduled() -> int:
    """Timers in the running loop's heap (cancelled ones stay there until due or cleaned)."""
    return len(asyncio.get_running_loop()._scheduled)  # type: ignore[attr-defined]


async def test_quick_turns_in_a_row_share_one_timer() -> None:
    """50 quick turns on one session leave one timer in the loop's heap, not 50 (one armed
    and cancelled per turn), and it lapses once due, leaving the idle session none."""
    model = Model(*(answer(f"a{i}") for i in range(50)))
    core = make_core(model, control_poll=0.2)
    session = await core.session("s").open()
    before = scheduled()
    for i in range(50):
        await session.turn(f"t{i}").run()
    assert scheduled() - before <= 1
    runtime = session._runtime
    assert runtime._renewal is not None  # the first turn's, kept by the 49 others
    await asyncio.sleep(0.3)
    assert runtime._renewal is None
    assert scheduled() == before


async def test_a_turn_after_a_quick_one_is_cancelled_from_another_core_in_time() -> None:
    """Turn t2 starts right after a quick turn (whose timer it keeps) and blocks in its model
    call; another core cancels it by id: it stops within about control_poll of the request (its
    first poll: the kept timer armed itself again for t2)."""
    shared = lash.store.MemoryStore()
    model = Model(answer("quick"), answer("never"))
    session = await make_core(model, store=shared, control_poll=0.1).session("s").open()
    await session.turn("first", id="t1").run()
    hold = model.block()
    task = asyncio.create_task(session.turn("long", id="t2").run())
    await model.entered.wait()
    other = make_core(Model(), store=shared)
    asked = time.monotonic()
    receipt = await other.cancel_turn("s", "t2", reason="stop", origin="web-ui")
    assert receipt.status == "requested"
    result = await asyncio.wait_for(task, 5)
    took = time.monotonic() - asked
    hold.set()
    assert (result.outcome, result.reason, result.cancelled_by) == (
        "stopped",
        "cancelled",
        "web-ui",
    )
    assert took < 1.0


async def test_a_turn_after_a_quick_one_does_not_poll_before_its_own_poll_is_due() -> None:
    """The kept timer fires at the earlier turn's poll time; the running turn (started later)
    has its first poll control_poll after its own claim, not then: no cancel request is read
    before that."""

    class Counting(lash.store.MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.reads: list[float] = []

        async def cancel_request(self, session_id: str, turn_id: str) -> object:
            self.reads.append(time.monotonic())
            return await super().cancel_request(session_id, turn_id)

    shared = Counting()
    model = Model(answer("quick"), answer("slow"))
    session = await make_core(model, store=shared, control_poll=0.3).session("s").open()
    await session.turn("first").run()
    await asyncio.sleep(0.15)  # half way to the first turn's poll time
    hold = model.block()
    task = asyncio.create_task(session.turn("second").run())
    await model.entered.wait()
    started = time.monotonic()
    await asyncio.sleep(0.5)
    hold.set()
    assert (await task).text == "slow"
    assert shared.reads, "the running turn never read cancellation requests"
    assert shared.reads[0] - started >= 0.25  # its own poll (0.3 s after its claim)


async def test_a_long_operation_after_quick_turns_still_renews_its_lease() -> None:
    """Quick turns, then a compaction that outlasts two lease TTLs: its lease is renewed (the
    kept timer armed the renewal), so another core's turn finds the session busy, and the
    compaction commits."""
    shared = lash.store.MemoryStore()
    slow = SlowSummary()
    compacting = make_core(
        Model(answer("one"), answer("two")), slow, store=shared, lease_ttl=0.3, control_poll=0.05
    )
    session = await compacting.session("s").open()
    await session.turn("one").run()
    await session.turn("two").run()
    task = asyncio.create_task(session.compact())
    await slow.started.wait()
    await asyncio.sleep(0.6)  # two TTLs: without renewal the lease would have run out
    other = await make_core(Model(answer("never")), store=shared).session("s").open(wait=0)
    with pytest.raises(lash.SessionBusy):
        await other.turn("sneak in").run()
    frame = await task
    assert frame is not None and session.revision == 3
