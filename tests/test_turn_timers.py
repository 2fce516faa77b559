"""The timers and fast paths of a running turn (issue 17's kernel work).

- A running execution's first poll (``control_poll``: a long turn starts reading cancellation
  requests from the store, then its lease is renewed every third of its TTL) is an entry in
  the event loop's poll clock, one loop timer for all executions: each entry still fires at its
  own time, a disarmed one never, and nothing holds a runtime once its execution ended.
- A turn's closing of dangling tool calls skips its general pass when every call asked for has
  its result (``_all_answered``): checked against the general rule here.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any, cast

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from test_mailbox import Model, Tools, answer, call, make_core

import lash
import lash.store
from lash._contract.graph import AssistantMessage, GraphNode, ToolResultNode, UserMessage
from lash._kernel.runtime import _PollClock
from lash._kernel.turn import _all_answered

pytestmark = pytest.mark.anyio


class Armed:
    """Stands for a runtime in the poll clock: records when its first poll fired."""

    def __init__(self, name: str, fired: list[tuple[str, float, float]]) -> None:
        self.name, self.fired = name, fired

    def _poll_due(self, renew_after: float) -> None:
        self.fired.append((self.name, asyncio.get_running_loop().time(), renew_after))


async def test_each_armed_execution_fires_at_its_own_time_and_a_disarmed_one_never() -> None:
    loop = asyncio.get_running_loop()
    clock = _PollClock()
    fired: list[tuple[str, float, float]] = []
    # (Stand-ins for runtimes: Any.)
    late, early, gone, last = (
        cast(Any, Armed(n, fired)) for n in ("late", "early", "gone", "last")
    )
    start = loop.time()
    clock.arm(late, 0.06, 1.0)
    clock.arm(early, 0.02, 2.0)  # earlier than the timer armed
    clock.arm(gone, 0.04, 3.0)
    clock.arm(last, 0.09, 4.0)
    clock.disarm(gone)
    await asyncio.sleep(0.2)
    assert [(name, renew) for name, _, renew in fired] == [
        ("early", 2.0),
        ("late", 1.0),
        ("last", 4.0),
    ]
    for (_, at, _), delay in zip(fired, (0.02, 0.06, 0.09), strict=True):
        assert at >= start + delay - 1e-3  # never early (beyond the loop's own resolution)
    # Nothing left: no entry, and the loop timer is not armed again.
    assert clock.due == {} and clock.handle is None


async def test_the_clock_holds_a_runtime_only_while_it_is_armed() -> None:
    clock = _PollClock()
    armed: Any = Armed("x", [])
    ref = weakref.ref(armed)
    clock.arm(armed, 10.0, 1.0)
    clock.disarm(armed)
    del armed
    gc.collect()
    assert ref() is None  # the loop timer still armed holds the clock, not the runtime
    handle = clock.handle() if clock.handle is not None else None
    assert handle is not None
    handle.cancel()


def test_a_loop_closed_with_its_clock_timer_pending_is_freed() -> None:
    """The clocks are kept by loop, weakly: a loop closed while its clock's timer was still
    pending (a turn that ended before its first poll was due: most turns, at the end of an
    ``asyncio.run``) is freed with its clock (the timer refers to its loop; the clock must not
    hold the timer)."""
    from lash._kernel import runtime

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def arm_and_disarm() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        armed = cast(Any, Armed("x", []))
        runtime._poll_clock().arm(armed, 10.0, 1.0)
        runtime._poll_clock().disarm(armed)

    for _ in range(3):
        asyncio.run(arm_and_disarm())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]


async def test_entries_armed_in_order_fire_in_order_and_a_rearmed_one_moves_to_its_new_time() -> (
    None
):
    """Entries armed no earlier than the one before (the clock reads only those due then) fire
    at their times, in order; one armed again goes to its new time, and an entry armed earlier
    than the last one still fires first (the clock then reads every entry)."""
    loop = asyncio.get_running_loop()
    clock = _PollClock()
    fired: list[tuple[str, float, float]] = []
    armed = {n: cast(Any, Armed(n, fired)) for n in "abcdef"}
    start = loop.time()
    for i, name in enumerate("abcd"):
        clock.arm(armed[name], 0.01 * (i + 1), float(i))
    assert clock.ordered
    clock.arm(armed["a"], 0.05, 9.0)  # armed again, later: now after d
    assert clock.ordered and list(clock.due) == [armed[n] for n in "bcda"]
    await asyncio.sleep(0.07)
    assert [(name, renew) for name, _, renew in fired] == [
        ("b", 1.0),
        ("c", 2.0),
        ("d", 3.0),
        ("a", 9.0),
    ]
    for (_, at, _), delay in zip(fired, (0.02, 0.03, 0.04, 0.05), strict=True):
        assert at >= start + delay - 1e-3
    fired.clear()
    clock.arm(armed["e"], 0.04, 1.0)
    clock.arm(armed["f"], 0.01, 2.0)  # earlier than e: out of order
    assert not clock.ordered
    await asyncio.sleep(0.06)
    assert [name for name, _, _ in fired] == ["f", "e"]
    assert clock.ordered and clock.due == {}  # ordered again once empty


async def test_the_lease_renewal_is_armed_even_when_the_keeper_fails_to_start() -> None:
    """When the first poll is due, the renewal timer is armed before the running turn's keeper
    starts: a keeper that raises (reported by the clock) leaves the lease renewed."""
    from lash._kernel.runtime import SessionRuntime

    class Stand:
        poll_passed = False
        _renewal: Any = None

        def on_poll_due(self) -> None:
            raise RuntimeError("keeper failed")

        def _renew_due(self) -> None:
            pass

    stand = Stand()
    with pytest.raises(RuntimeError, match="keeper failed"):
        SessionRuntime._poll_due(cast(Any, stand), 5.0)
    assert isinstance(stand._renewal, asyncio.TimerHandle) and stand.poll_passed
    assert stand._renewal.when() >= asyncio.get_running_loop().time() + 4.9
    stand._renewal.cancel()


_MARK: contextvars.ContextVar[str] = contextvars.ContextVar("_MARK", default="none")


class Failing(Armed):
    def _poll_due(self, renew_after: float) -> None:
        raise RuntimeError("boom")


async def test_each_entry_fires_in_the_context_it_was_armed_in_and_alone_if_it_fails() -> None:
    """An entry's first poll runs in the context the execution armed it in (what a timer of its
    own captured: the keeper and renewal tasks it starts inherit it); one that fails is
    reported as the loop reports a failed callback, and the others still fire."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    clock = _PollClock()
    seen: list[str] = []

    class Marking(Armed):
        def _poll_due(self, renew_after: float) -> None:
            seen.append(f"{self.name}:{_MARK.get()}")

    fired: list[tuple[str, float, float]] = []
    for name in ("a", "b"):
        token = _MARK.set(name)
        clock.arm(cast(Any, Marking(name, fired)), 0.01, 1.0)
        _MARK.reset(token)
    failing = cast(Any, Failing("bad", fired))
    failing.id = "s-bad"
    clock.arm(failing, 0.01, 1.0)
    token = _MARK.set("c")
    clock.arm(cast(Any, Marking("c", fired)), 0.01, 1.0)
    _MARK.reset(token)
    await asyncio.sleep(0.05)
    loop.set_exception_handler(None)
    assert seen == ["a:a", "b:b", "c:c"]
    assert [type(r["exception"]) for r in reported] == [RuntimeError]
    assert "s-bad" in reported[0]["message"]


async def test_a_parked_session_is_not_kept_by_the_poll_clock() -> None:
    """While the clock's loop timer is still pending (armed by a turn that ended), nothing
    holds that turn, its execution or its session's runtime: a parked session's handle is all
    that is left of it."""
    from lash._kernel.runtime import SessionRuntime

    core = make_core(Model(answer("one"), answer("two")))
    for name in ("p1", "p2"):
        session = await core.session(name).open()
        await session.turn("hi").run()
        await session.park()
    del session
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, lash.Turn)]
    assert not [
        o for o in gc.get_objects() if isinstance(o, SessionRuntime) and o.id in ("p1", "p2")
    ]
    await core.aclose()


def test_a_clock_does_not_keep_its_event_loop_alive() -> None:
    """The clocks are kept by event loop, weakly: once a loop that ran turns is gone, so is its
    clock (a clock referring to its loop would keep every loop alive)."""
    from lash._kernel import runtime

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def arm_and_fire() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        runtime._poll_clock().arm(cast(Any, Armed("x", [])), 0.001, 1.0)
        await asyncio.sleep(0.01)

    for _ in range(3):
        asyncio.run(arm_and_fire())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]


async def test_concurrent_long_turns_each_renew_their_lease_and_read_cancellations() -> None:
    """Two sessions' long turns, started apart, each renew their lease (another process finds
    both busy after two TTLs) and each reads a cancellation request from another process
    (their keepers start when their first poll is due), on the one poll clock."""
    shared = lash.store.MemoryStore()
    tools = Tools()
    tools.go_on.clear()  # the tool runs until the turn is cancelled
    model = Model(call("lookup", "c1", query="a"), call("lookup", "c2", query="b"))
    core = make_core(model, tools, store=shared, lease_ttl=0.3, control_poll=0.05)
    first = await core.session("a").open()
    second = await core.session("b").open()
    turn_a = first.turn("one")
    run_a = asyncio.create_task(turn_a.run())
    await asyncio.sleep(0.07)
    turn_b = second.turn("two")
    run_b = asyncio.create_task(turn_b.run())
    await asyncio.sleep(0.6)  # two TTLs: without renewals both leases would have run out
    other = make_core(Model(answer("never")), store=shared)
    for session_id in ("a", "b"):
        opened = await other.session(session_id).open(wait=0)
        with pytest.raises(lash.SessionBusy):
            await opened.turn("sneak in").run()
    # Requests written by the other core: each running turn reads its own from the store.
    await other.cancel_turn("a", turn_a.id, reason="stop a")
    await other.cancel_turn("b", turn_b.id, reason="stop b")
    results = await asyncio.wait_for(asyncio.gather(run_a, run_b), 5)
    assert [(r.outcome, r.reason, r.cancel_reason) for r in results] == [
        ("stopped", "cancelled", "stop a"),
        ("stopped", "cancelled", "stop b"),
    ]
    await other.aclose()
    await core.aclose()


# -- dangling calls: the fast check against the general rule ------------------------------------

_IDS = st.sampled_from(["c1", "c2", "c3"])
_NODES = st.lists(
    st.one_of(
        st.lists(_IDS, max_size=3).map(lambda ids: ("ask", tuple(ids))),
        _IDS.map(lambda i: ("result", i)),
        st.just(("user", "")),
    ),
    max_size=8,
)


def _graph_nodes(spec: list[tuple[str, Any]]) -> list[GraphNode]:
    nodes: list[GraphNode] = []
    common: dict[str, Any] = {"parent_id": None, "frame_id": "f", "turn": 1}
    for k, (kind, value) in enumerate(spec):
        node_id = f"n{k}"
        if kind == "ask":
            calls = tuple(lash.ToolCall(i, "lookup", {}) for i in value)
            nodes.append(AssistantMessage(id=node_id, text="", tool_calls=calls, **common))
        elif kind == "result":
            nodes.append(
                ToolResultNode(id=node_id, call_id=value, name="lookup", content="x", **common)
            )
        else:
            nodes.append(UserMessage(id=node_id, text="hi", **common))
    return nodes


@given(_NODES)
@example([("ask", ("c1", "c2")), ("result", "c1"), ("ask", ("c1",)), ("result", "c2")])
def test_all_answered_never_skips_a_call_the_general_rule_would_close(
    spec: list[tuple[str, Any]],
) -> None:
    nodes = _graph_nodes(spec)
    answered = {n.call_id for n in nodes if isinstance(n, ToolResultNode)}
    asked = [c.id for n in nodes if isinstance(n, AssistantMessage) for c in n.tool_calls]
    general_closes_nothing = all(i in answered for i in asked)
    if _all_answered(nodes):
        assert general_closes_nothing
    # Where each call id is asked for once and its results follow it (what a turn makes), the
    # two agree exactly (else the general pass runs, and decides alike).
    in_order = len(asked) == len(set(asked)) and all(
        any(
            isinstance(m, AssistantMessage) and any(c.id == n.call_id for c in m.tool_calls)
            for m in nodes[:k]
        )
        for k, n in enumerate(nodes)
        if isinstance(n, ToolResultNode)
    )
    if in_order:
        assert _all_answered(nodes) == general_closes_nothing


async def test_a_turn_cancelled_in_its_tool_call_still_closes_the_call() -> None:
    """The general path still runs where a call is open: the committed turn answers it."""
    tools = Tools()
    tools.go_on.clear()
    core = make_core(Model(call("lookup", "c1", query="q")), tools)
    session = await core.session("s").open()
    turn = session.turn("go")
    task = asyncio.create_task(turn.run())
    await tools.running.wait()
    turn.cancel(reason="enough")
    result = await task
    assert (result.outcome, result.reason) == ("stopped", "cancelled")
    results = [n for n in session.nodes if isinstance(n, ToolResultNode)]
    assert [(n.call_id, n.is_error) for n in results] == [("c1", True)]
    assert results[0].content.startswith("tool call not completed")
    await core.aclose()


async def test_a_loop_without_weak_references_gets_a_timer_per_execution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On an event loop that cannot be weakly referenced (no poll clock for it), an execution
    arms a timer of its own for its first poll instead of failing."""
    import types

    from lash._kernel import runtime

    def no_clock() -> Any:
        raise TypeError("cannot create weak reference to 'Loop' object")

    monkeypatch.setattr(runtime, "_poll_clock", no_clock)
    calls: list[float] = []

    class Stand:
        core = types.SimpleNamespace(lease_ttl=3.0, control_poll=0.02)
        poll_passed = True
        _renewal: Any = None

        def _poll_due(self, renew_after: float) -> None:
            calls.append(renew_after)

    stand = Stand()
    runtime.SessionRuntime._renew_later(cast(Any, stand))
    assert isinstance(stand._renewal, asyncio.TimerHandle) and not stand.poll_passed
    await asyncio.sleep(0.05)
    assert calls == [pytest.approx(1.0 - 0.02)]
