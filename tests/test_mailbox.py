"""Sessions as mailboxes, in one process: leases per execution, queued input and commands, turn
ids, cancellation by id, stored outcomes, the checkpoint hook and observation with cursors.

The store is ``memory://`` (or one MemoryStore shared by several cores, standing in for several
processes); the same behaviour across real processes on SQLite and Postgres is in
``test_mailbox_processes.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from importlib.metadata import entry_points
from typing import Any

import attrs
import pytest

import lash
import lash._kernel.observation
import lash.store
from lash_plugins_builtin import standard, stores
from lash_plugins_builtin.scripted import ScriptedProvider

pytestmark = pytest.mark.anyio

OTHER_BUILTINS = sorted(
    {ep.name for ep in entry_points(group="lash.plugins")} - {"standard", "stores"}
)


# ------------------------------------------------------------------------------------------
# Plugins and helpers
# ------------------------------------------------------------------------------------------


class Model:
    """Provider plugin: plays a script and records requests; can hold a call until released."""

    lash_plugin = lash.PluginMeta(name="model")

    def __init__(self, *responses: Any) -> None:
        self.script = ScriptedProvider(list(responses))
        self.requests: list[lash.ModelRequest] = []
        self.hold: asyncio.Event | None = None
        self.entered = asyncio.Event()

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register("model", self)

    def add(self, *responses: Any) -> None:
        self.script.extend(responses)

    def block(self) -> asyncio.Event:
        """Hold the next model calls until the returned event is set."""
        self.hold = asyncio.Event()
        self.entered = asyncio.Event()
        return self.hold

    async def stream(self, request: lash.ModelRequest) -> AsyncIterator[lash.ModelEvent]:
        self.requests.append(request)
        if self.hold is not None:
            self.entered.set()
            await self.hold.wait()
        async for event in self.script.stream(request):
            yield event


class SharedStore:
    """``shared://`` is one MemoryStore object: several cores on it stand for processes."""

    lash_plugin = lash.PluginMeta(name="shared_store")

    def __init__(self, store: lash.store.MemoryStore) -> None:
        self.store = store

    @lash.hookimpl
    def register_stores(self, register: lash.RegisterStore) -> None:
        register("shared", lambda url: self.store)


class Tools:
    """A ``lookup`` tool that can wait for an event (so a test acts while a tool runs)."""

    lash_plugin = lash.PluginMeta(name="tools")

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.go_on = asyncio.Event()
        self.go_on.set()

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        async def lookup(query: str) -> str:
            """Look something up."""
            self.running.set()
            await self.go_on.wait()
            return f"found {query}"

        register(lookup)


def make_core(
    *plugins: object, store: lash.store.MemoryStore | None = None, **kw: Any
) -> lash.LashCore:
    extra: list[object] = [SharedStore(store)] if store is not None else []
    return lash.LashCore(
        plugins=[standard, stores, *extra, *plugins],
        autoload=False,
        disable=OTHER_BUILTINS,
        provider="model",
        model="m1",
        store="shared://" if store is not None else "memory://",
        **kw,
    )


def chat(request: lash.ModelRequest) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in request.messages if m.role != "system"]


def call(name: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "id": call_id, "arguments": arguments}]}


def answer(text: str) -> dict[str, Any]:
    return {"text": text}


async def started(turn: lash.Turn) -> asyncio.Task[lash.TurnResult]:
    task = asyncio.create_task(turn.run())
    await asyncio.sleep(0)
    return task


async def events_until(
    core: lash.LashCore, session_id: str, stop: str, *, after: str | None = None, n: int = 1
) -> list[lash.ObservedEvent | lash.ObservationGap]:
    """Observe from ``after`` until the ``n``-th event of type ``stop`` (5 s at most)."""
    seen: list[lash.ObservedEvent | lash.ObservationGap] = []
    async with asyncio.timeout(5):
        async with contextlib.aclosing(core.observe(session_id, after=after)) as stream:
            async for item in stream:
                seen.append(item)
                if isinstance(item, lash.ObservedEvent) and item.type == stop:
                    n -= 1
                    if n == 0:
                        return seen
    raise AssertionError("unreachable")


def types(items: Sequence[Any]) -> list[str]:
    return [
        "gap" if isinstance(item, lash.ObservationGap) else item.type
        for item in items
        if not getattr(item, "live", False)
    ]


# ------------------------------------------------------------------------------------------
# 1. Leases per execution
# ------------------------------------------------------------------------------------------


async def test_opening_takes_no_lease() -> None:
    """An open handle holds nothing: another core commits to the session meanwhile."""
    shared = lash.store.MemoryStore()
    model = Model(answer("one"), answer("two"))
    first, second = make_core(model, store=shared), make_core(model, store=shared)
    a = await first.session("s").open()
    b = await second.session("s").open(wait=0)
    assert (await b.turn("from b").run()).outcome == "completed"
    assert (await a.turn("from a").run()).outcome == "completed"
    assert (a.revision, b.revision) == (2, 1)


async def test_a_stale_handle_reloads_before_calling_the_model() -> None:
    """A handle that missed another's commit reloads first: its model call sees that turn."""
    shared = lash.store.MemoryStore()
    model = Model(answer("re one"), answer("re two"))
    a = await make_core(model, store=shared).session("s").open()
    b = await make_core(model, store=shared).session("s").open()
    await b.turn("one").run()
    result = await a.turn("two").run()
    assert result.outcome == "completed" and result.revision == 2
    assert chat(model.requests[-1]) == [("user", "one"), ("assistant", "re one"), ("user", "two")]
    assert [n.text for n in a.nodes if isinstance(n, lash.UserMessage)] == ["one", "two"]


async def test_two_handles_in_one_process_take_turns() -> None:
    """Two handles on one session in one core: the second waits for the first's turn."""
    model = Model(answer("first"), answer("second"))
    core = make_core(model)
    a = await core.session("s").open()
    b = await core.session("s").open()
    hold = model.block()
    ta = await started(a.turn("a"))
    await model.entered.wait()
    tb = await started(b.turn("b"))
    await asyncio.sleep(0.05)
    assert not tb.done()  # waiting for the lease, not failing
    model.hold = None
    hold.set()
    ra, rb = await ta, await tb
    assert (ra.revision, rb.revision) == (1, 2)
    assert chat(model.requests[-1])[:2] == [("user", "a"), ("assistant", "first")]


async def test_the_wait_for_the_lease_ends_in_session_busy_naming_the_holder() -> None:
    """A handle whose wait runs out gets SessionBusy naming the execution that holds it."""
    shared = lash.store.MemoryStore()
    model = Model(answer("slow"))
    a = await make_core(model, store=shared).session("s").open()
    other = make_core(Model(), store=shared)
    b = await other.session("s").open(wait=0.1)
    hold = model.block()
    ta = await started(a.turn("a"))
    await model.entered.wait()
    with pytest.raises(lash.SessionBusy) as busy:
        await b.turn("b").run()
    assert busy.value.owner == a._runtime.owner  # the holder, named
    assert busy.value.owner in str(busy.value)
    hold.set()
    assert (await ta).outcome == "completed"


async def test_on_wait_tells_the_handle_once_per_execution_that_it_waits() -> None:
    """open(on_wait=...) is called with the SessionBusy naming the holder when an execution
    starts to wait for the session, once, and not at all when the session is free."""
    model = Model(answer("first"), answer("second"), answer("third"))
    core = make_core(model)
    a = await core.session("s").open()
    waits: list[lash.SessionBusy] = []
    b = await core.session("s").open(on_wait=waits.append)
    hold = model.block()
    ta = await started(a.turn("a"))
    await model.entered.wait()
    tb = await started(b.turn("b"))
    async with asyncio.timeout(5):
        while not waits:  # the second turn meets the lease (a few event-loop rounds)
            await asyncio.sleep(0.005)
    assert [w.owner for w in waits] == [a._runtime.owner]
    model.hold = None
    hold.set()
    assert [(await ta).text, (await tb).text] == ["first", "second"]
    assert (await b.turn("c").run()).text == "third"  # the session was free: no call
    assert len(waits) == 1


async def test_an_idle_session_holds_no_lease_and_renews_nothing() -> None:
    """After a turn the lease is released in the commit: another core takes it at once."""
    shared = lash.store.MemoryStore()
    model = Model(answer("one"))
    a = await make_core(model, store=shared).session("s").open()
    await a.turn("one").run()
    lease = await shared.acquire_lease("s", "someone-else", ttl=30)
    assert lease.revision == 1
    await shared.release_lease(lease)


# ------------------------------------------------------------------------------------------
# 2. Pending input from anywhere
# ------------------------------------------------------------------------------------------


async def test_enqueue_returns_a_pending_input_and_is_idempotent_by_key() -> None:
    """enqueue returns a PendingInput; the same key and text return it again."""
    core = make_core(Model())
    first = await core.enqueue("s", "hello", key="k1")
    assert (first.text, first.key, first.state, first.ingress) == (
        "hello",
        "k1",
        "pending",
        "next_turn",
    )
    assert first.created_at > 0
    again = await core.enqueue("s", "hello", key="k1")
    assert again.id == first.id
    assert [i.id for i in await core.inputs("s")] == [first.id]


async def test_the_same_key_with_other_content_is_an_input_conflict() -> None:
    """A key reused with another text is refused, naming the key and the existing input."""
    core = make_core(Model())
    first = await core.enqueue("s", "hello", key="k1")
    with pytest.raises(lash.InputConflict) as conflict:
        await core.enqueue("s", "something else", key="k1")
    assert "k1" in str(conflict.value) and first.id in str(conflict.value)
    assert [i.text for i in await core.inputs("s")] == ["hello"]


@pytest.mark.parametrize("text", ["", "   \n"])
async def test_empty_input_is_refused(text: str) -> None:
    """Empty or blank input is a SessionError; nothing is queued."""
    core = make_core(Model())
    with pytest.raises(lash.SessionError, match="empty"):
        await core.enqueue("s", text)
    assert await core.inputs("s") == []


async def test_input_over_one_mebibyte_is_refused_and_at_the_limit_accepted() -> None:
    """Input larger than 1 MiB of UTF-8 is refused, naming the size; exactly 1 MiB is queued."""
    core = make_core(Model())
    limit = 1024 * 1024
    ok = await core.enqueue("s", "é" * (limit // 2))  # 2 bytes each: exactly the limit
    assert ok.state == "pending"
    with pytest.raises(lash.SessionError, match="1,048,577 bytes"):
        await core.enqueue("s", "x" * (limit + 1))
    assert len(await core.inputs("s")) == 1


async def test_enqueue_for_a_session_that_does_not_exist_creates_it_with_no_history() -> None:
    """Input may arrive before a session's first turn: the session exists at revision 0."""
    model = Model(answer("hi there"))
    core = make_core(model)
    await core.enqueue("new", "hi")
    session = await core.session("new").open(must_exist=True)
    assert session.revision == 0
    results = await session.drain()
    assert [(r.outcome, r.text) for r in results] == [("completed", "hi there")]


async def test_an_unknown_ingress_is_refused() -> None:
    """ingress must be next_turn or active_turn."""
    core = make_core(Model())
    with pytest.raises(lash.SessionError, match="ingress"):
        await core.enqueue("s", "x", ingress="soon")  # type: ignore[arg-type]


async def test_drain_runs_queued_input_oldest_first_and_settles_each_in_its_turn() -> None:
    """drain() runs one turn per input in order; each input ends completed by that turn."""
    model = Model(answer("r1"), answer("r2"), answer("r3"))
    core = make_core(model)
    queued = [await core.enqueue("s", f"input {i}") for i in (1, 2, 3)]
    session = await core.session("s").open()
    results = await session.drain()
    assert [r.text for r in results] == ["r1", "r2", "r3"]
    assert [chat(r)[-1] for r in model.requests] == [("user", f"input {i}") for i in (1, 2, 3)]
    assert await core.inputs("s") == []
    settled = await core.inputs("s", settled=True)
    assert [(i.id, i.state) for i in settled] == [(q.id, "completed") for q in queued]
    assert [i.turn_id for i in settled] == [r.turn_id for r in results]
    assert await session.drain() == []


async def test_drain_reports_each_result_as_its_turn_commits() -> None:
    """drain(on_result=...) gets each turn's result once it is committed, before the next turn
    calls the model."""
    model = Model(answer("r1"), answer("r2"))
    core = make_core(model)
    for i in (1, 2):
        await core.enqueue("s", f"input {i}")
    session = await core.session("s").open()
    seen: list[tuple[str, int, int]] = []

    def report(result: lash.TurnResult) -> None:
        seen.append((result.text, result.revision, len(model.requests)))

    results = await session.drain(on_result=report)
    # When r1 was reported, the second model call had not been made yet.
    assert seen == [("r1", 1, 1), ("r2", 2, 2)]
    assert [r.text for r in results] == ["r1", "r2"]


async def test_cancel_inputs_reports_one_typed_outcome_per_target() -> None:
    """Cancelling by id or key: cancelled, already_cancelled, already_completed, unknown."""
    model = Model(answer("done"))
    core = make_core(model)
    a = await core.enqueue("s", "a", key="ka")
    b = await core.enqueue("s", "b", key="kb")
    session = await core.session("s").open()
    cancelled = await core.cancel_inputs("s", "kb")
    assert [(c.outcome, c.input and c.input.id) for c in cancelled] == [("cancelled", b.id)]
    await session.drain()  # runs a only
    outcomes = await core.cancel_inputs("s", a.id, "kb", "nope")
    assert [c.outcome for c in outcomes] == ["already_completed", "already_cancelled", "unknown"]
    assert len(model.requests) == 1


async def test_cancel_inputs_as_a_suffix_cancels_the_target_and_everything_after() -> None:
    """suffix=True cancels the target and every later input; earlier ones stay pending."""
    core = make_core(Model())
    ids = [(await core.enqueue("s", f"m{i}")).id for i in range(4)]
    outcomes = await core.cancel_inputs("s", ids[1], suffix=True)
    assert [(c.outcome, c.input and c.input.id) for c in outcomes] == [
        ("cancelled", ids[1]),
        ("cancelled", ids[2]),
        ("cancelled", ids[3]),
    ]
    assert [i.id for i in await core.inputs("s")] == [ids[0]]
    with pytest.raises(lash.SessionError, match="suffix"):
        await core.cancel_inputs("s", ids[0], ids[1], suffix=True)


async def test_active_turn_input_joins_the_running_turn_at_its_next_checkpoint() -> None:
    """Input queued with ingress=active_turn while a tool runs reaches the model's next call."""
    tools = Tools()
    model = Model(call("lookup", "c1", query="x"), answer("both handled"))
    core = make_core(model, tools)
    session = await core.session("s").open()
    tools.go_on.clear()
    task = await started(session.turn("first"))
    await tools.running.wait()
    joined = await core.enqueue("s", "and also this", ingress="active_turn")
    tools.go_on.set()
    result = await task
    assert result.text == "both handled"
    assert chat(model.requests[-1])[-1] == ("user", "and also this")
    settled = await core.inputs("s", settled=True)
    assert [(i.id, i.state, i.turn_id) for i in settled] == [
        (joined.id, "completed", result.turn_id)
    ]
    users = [n.text for n in session.nodes if isinstance(n, lash.UserMessage)]
    assert users == ["first", "and also this"]


async def test_next_turn_input_waits_for_its_own_turn() -> None:
    """Input queued with next_turn while a turn runs does not join it."""
    tools = Tools()
    model = Model(call("lookup", "c1", query="x"), answer("done"), answer("second"))
    core = make_core(model, tools)
    session = await core.session("s").open()
    tools.go_on.clear()
    task = await started(session.turn("first"))
    await tools.running.wait()
    await core.enqueue("s", "later")
    tools.go_on.set()
    await task
    assert all(("user", "later") not in chat(r) for r in model.requests)
    assert [r.text for r in await session.drain()] == ["second"]


# ------------------------------------------------------------------------------------------
# 3. Session commands from anywhere
# ------------------------------------------------------------------------------------------


async def test_a_command_queued_by_another_core_applies_before_the_next_turn() -> None:
    """core.enqueue_command from another core: the session's next turn starts a fresh frame."""
    shared = lash.store.MemoryStore()
    model = Model(answer("one"), answer("two"))
    session = await make_core(model, store=shared).session("s").open()
    await session.turn("before").run()
    other = make_core(Model(), store=shared)
    command = await other.enqueue_command("s", "reset", key="r1")
    assert (command.name, command.state) == ("reset", "pending")
    await session.turn("after").run()
    assert chat(model.requests[-1]) == [("user", "after")]
    assert isinstance(session.nodes[0], lash.FrameBoundary) and session.nodes[0].reason == "reset"
    done = await other.enqueue_command("s", "reset", key="r1")
    assert (done.id, done.state) == (command.id, "applied")


async def test_a_command_for_a_session_not_yet_stored_waits_for_its_first_execution() -> None:
    """Like input, a command may arrive first: the session exists by its mailbox, and its
    first execution applies the command."""
    model = Model(answer("hi"))
    core = make_core(model, Labels())
    await core.enqueue_command("fresh", "label", key="l1", args={"text": "vip"})
    session = await core.session("fresh").open(must_exist=True)
    assert session.revision == 0
    await session.turn("hello").run()
    assert session.state(Labels.State).labels == ["vip"]
    with pytest.raises(lash.UnknownSession):
        await core.session("nobody").open(must_exist=True)


class Labels:
    """A plugin session command, ``label``, that records its argument in the plugin's state."""

    @attrs.define
    class State:
        labels: list[str] = attrs.field(factory=list)

    lash_plugin = lash.PluginMeta(name="labels", state=State)

    @lash.hookimpl
    def register_session_commands(self, register: lash.RegisterSessionCommand) -> None:
        def label(session: lash.SessionView, args: dict[str, Any]) -> None:
            session.state(Labels.State).labels.append(args["text"])

        register("label", label)


async def test_plugin_commands_apply_with_their_args_and_commit() -> None:
    """A plugin's command runs at the next execution with its args; its change is durable."""
    core = make_core(Model(), Labels())
    session = await core.session("s").open()
    await session.enqueue_command("label", key="l1", args={"text": "urgent"})
    assert await session.apply_commands() == 1
    assert session.state(Labels.State).labels == ["urgent"]
    await session.close()
    again = await core.session("s").open(must_exist=True)
    assert again.state(Labels.State).labels == ["urgent"]
    with pytest.raises(lash.SessionError, match="unknown"):
        await core.enqueue_command("s", "lable", key="l2")


# ------------------------------------------------------------------------------------------
# 4. Turn identity and control
# ------------------------------------------------------------------------------------------


async def test_a_turn_id_submitted_again_returns_the_committed_result_without_running() -> None:
    """Resubmitting a committed turn id never runs it twice."""
    model = Model(answer("once"))
    core = make_core(model)
    session = await core.session("s").open()
    first = await session.turn("do it", id="order-7").run()
    again = await session.turn("do it", id="order-7").run()
    assert (again.turn_id, again.text, again.revision) == ("order-7", "once", first.revision)
    assert len(model.requests) == 1 and session.revision == 1
    record = await core.turn_record("s", "order-7")
    assert record is not None and record.outcome == "completed"


async def test_generated_turn_ids_hold_the_time_and_sort_in_the_order_the_turns_ran() -> None:
    """Without an id, a turn's is turn- and 28 hex digits: the time it was made in milliseconds
    (12), then 16 random ones; so a session's ids sort in the order its turns ran."""
    core = make_core(Model(*(answer(f"a{i}") for i in range(4))))
    session = await core.session("s").open()
    ids = []
    for i in range(4):
        before = time.time_ns() // 1_000_000
        result = await session.turn(f"q{i}").run()
        after = time.time_ns() // 1_000_000
        match = re.fullmatch(r"turn-([0-9a-f]{12})[0-9a-f]{16}", result.turn_id)
        assert match is not None, result.turn_id
        assert before <= int(match[1], 16) <= after
        ids.append(result.turn_id)
        await asyncio.sleep(0.002)  # the next turn made in a later millisecond
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_a_turn_id_resubmitted_from_another_core_is_not_run_again() -> None:
    """A host that lost its process resubmits the turn id on a new core: the stored result."""
    shared = lash.store.MemoryStore()
    model = Model(answer("once"))
    await (await make_core(model, store=shared).session("s").open()).turn("x", id="t1").run()
    fresh = await make_core(Model(), store=shared).session("s").open()
    again = await fresh.turn("x", id="t1").run()
    assert (again.outcome, again.text) == ("completed", "once")


@pytest.mark.parametrize("bad", ["", "  "])
async def test_a_blank_turn_id_is_refused(bad: str) -> None:
    """A turn id must be a non-empty string."""
    session = await make_core(Model()).session("s").open()
    with pytest.raises(lash.SessionError, match="turn id"):
        session.turn("x", id=bad)


async def cancelled_from_another_core(
    shared: lash.store.MemoryStore,
) -> tuple[lash.Session, lash.LashCore, lash.TurnResult]:
    """Turn ``t1`` of session ``s`` blocks in its model call (control poll 10 ms); another core
    on ``shared`` cancels it by id ("user pressed stop", from "web-ui"): the running session, the
    other core and the turn's result."""
    model = Model(answer("never"))
    session = await make_core(model, store=shared, control_poll=0.01).session("s").open()
    hold = model.block()
    task = await started(session.turn("long", id="t1"))
    await model.entered.wait()
    other = make_core(Model(), store=shared)
    receipt = await other.cancel_turn("s", "t1", reason="user pressed stop", origin="web-ui")
    assert receipt.status == "requested"
    assert (await other.cancel_turn("s", "t1")).status == "already_requested"
    result = await asyncio.wait_for(task, 5)
    hold.set()
    return session, other, result


async def test_cancel_turn_from_another_core_stops_it_and_records_who_and_why() -> None:
    """cancel_turn by id from another core: a receipt, and a result saying who and why."""
    shared = lash.store.MemoryStore()
    session, other, result = await cancelled_from_another_core(shared)
    assert (result.outcome, result.reason) == ("stopped", "cancelled")
    assert (result.cancelled_by, result.cancel_reason) == ("web-ui", "user pressed stop")
    finished = await other.cancel_turn("s", "t1")
    assert finished.status == "already_finished"
    assert finished.record is not None and finished.record.reason == "cancelled"
    outcome = session.nodes[-1]
    assert isinstance(outcome, lash.TurnOutcome)
    assert (outcome.turn_id, outcome.outcome, outcome.cancelled_by) == ("t1", "stopped", "web-ui")


class SlowTurnLookups(lash.store.MemoryStore):
    """A store whose turn-record lookups take a while (a turn with an id looks its id up after
    claiming the session: it starts working only after its first poll was due)."""

    async def turn_record(self, session_id: str, turn_id: str) -> Any:
        await asyncio.sleep(0.05)
        return await super().turn_record(session_id, turn_id)


async def test_cancel_turn_reaches_a_turn_that_started_after_its_first_poll_was_due() -> None:
    """The execution's first poll came before the turn began working: the turn still reads
    cancellation requests (its keeper starts at once) and stops."""
    _, _, result = await cancelled_from_another_core(SlowTurnLookups())
    assert (result.outcome, result.reason) == ("stopped", "cancelled")
    assert result.cancelled_by == "web-ui"


async def test_cancel_turn_of_an_unknown_turn_says_unknown() -> None:
    """No such turn running or committed: the receipt says unknown."""
    core = make_core(Model())
    await (await core.session("s").open()).configure(model="m2")
    assert (await core.cancel_turn("s", "nope")).status == "unknown"


async def test_cancel_running_turns_also_cancels_turns_waiting_for_the_lease() -> None:
    """A turn waiting for another handle's execution ends at once, nothing committed."""
    model = Model(answer("a done"))
    core = make_core(model)
    a = await core.session("s").open()
    b = await core.session("s").open()
    hold = model.block()
    ta = await started(a.turn("a"))
    await model.entered.wait()
    tb = await started(b.turn("b"))
    await asyncio.sleep(0.02)
    assert b.cancel_running_turns() == 1
    waiting = await asyncio.wait_for(tb, 2)
    assert (waiting.outcome, waiting.reason) == ("stopped", "cancelled")
    assert "before it started" in (waiting.detail or "")
    hold.set()
    assert (await ta).revision == 1
    assert [n.text for n in a.nodes if isinstance(n, lash.UserMessage)] == ["a"]


# ------------------------------------------------------------------------------------------
# 5. Stored outcomes
# ------------------------------------------------------------------------------------------


@attrs.frozen
class VaultOptions:
    token: str | None = lash.option(default=None, secret=True, help="a secret")


class Vault:
    lash_plugin = lash.PluginMeta(name="vault", options=VaultOptions)


async def test_every_turn_ends_with_its_outcome_node_and_a_turn_record() -> None:
    """completed, stopped (max tool rounds) and failed turns each end with a TurnOutcome."""
    tools = Tools()
    model = Model(
        answer("fine"),
        call("lookup", "c1", query="a"),
        call("lookup", "c2", query="b"),
        {"error": "upstream exploded"},
    )
    core = make_core(model, tools)
    session = await core.session("s", options={"standard": {"max_tool_rounds": 1}}).open()
    ok = await session.turn("one", id="t-ok").run()
    stopped = await session.turn("two", id="t-stop").run()
    failed = await session.turn("three", id="t-fail").run()
    outcomes = [n for n in session.nodes if isinstance(n, lash.TurnOutcome)]
    assert [(o.turn_id, o.outcome, o.reason) for o in outcomes] == [
        ("t-ok", "completed", None),
        ("t-stop", "stopped", "max_tool_rounds"),
        ("t-fail", "failed", None),
    ]
    assert "upstream exploded" in (outcomes[2].error or "")
    for result in (ok, stopped, failed):
        record = await core.turn_record("s", result.turn_id)
        assert record is not None
        assert (record.outcome, record.revision) == (result.outcome, result.revision)


async def test_a_failed_turns_error_is_stored_with_secrets_redacted() -> None:
    """The stored error text never holds a secret option value."""
    secret = "sk-very-secret-value-123"
    model = Model({"error": f"bad credentials {secret}"})
    core = make_core(model, Vault())
    session = await core.session("s", options={"vault": {"token": secret}}).open()
    result = await session.turn("x").run()
    assert result.outcome == "failed"
    record = await core.store.load("s", full=True)
    assert record is not None
    stored = repr(record.nodes) + repr(await core.turn_record("s", result.turn_id))
    assert secret not in stored and "bad credentials" in stored


async def test_a_retried_failed_turn_never_sends_two_user_messages_in_a_row() -> None:
    """After a failed turn, the next model call sees an assistant note between the inputs."""
    model = Model({"error": "boom"}, answer("ok now"))
    session = await make_core(model).session("s").open()
    assert (await session.turn("try").run()).outcome == "failed"
    assert (await session.turn("try again").run()).outcome == "completed"
    roles = [role for role, _ in chat(model.requests[-1])]
    assert roles == ["user", "assistant", "user"]
    assert "failed" in chat(model.requests[-1])[1][1]


# ------------------------------------------------------------------------------------------
# 6. The checkpoint hook
# ------------------------------------------------------------------------------------------


class Steer:
    """checkpoint: records kinds; can inject a message once, abort, or emit an event."""

    lash_plugin = lash.PluginMeta(name="steer")

    def __init__(self, action: str) -> None:
        self.action = action
        self.kinds: list[str] = []
        self.done = False

    @lash.hookimpl
    def checkpoint(self, turn: lash.TurnView, kind: str) -> Any:
        self.kinds.append(kind)
        if self.done:
            return None
        self.done = True
        if self.action == "inject":
            return lash.EnqueueMessages(("also check the weather",), target="current_turn")
        if self.action == "abort":
            return lash.AbortTurn("budget spent")
        return lash.EmitEvent("progress", {"kind": kind})


async def test_checkpoint_runs_after_each_tool_round_and_before_completion() -> None:
    """The hook runs with kind after_tools per round, then before_completion."""
    steer = Steer("none")
    steer.done = True
    model = Model(call("lookup", "c1", query="a"), call("lookup", "c2", query="b"), answer("x"))
    session = await make_core(model, Tools(), steer).session("s").open()
    await session.turn("go").run()
    assert steer.kinds == ["after_tools", "after_tools", "before_completion"]


async def test_checkpoint_injects_a_message_into_the_running_turn() -> None:
    """EnqueueMessages(target=current_turn) at a checkpoint: the model's next call has it."""
    steer = Steer("inject")
    model = Model(call("lookup", "c1", query="a"), answer("done, weather too"))
    session = await make_core(model, Tools(), steer).session("s").open()
    result = await session.turn("go").run()
    assert result.text == "done, weather too"
    assert chat(model.requests[-1])[-1] == ("user", "also check the weather")
    users = [n.text for n in session.nodes if isinstance(n, lash.UserMessage)]
    assert users == ["go", "also check the weather"]


async def test_checkpoint_before_completion_can_keep_the_turn_going() -> None:
    """A message injected before completion makes the model answer again, in the same turn."""
    steer = Steer("inject")
    model = Model(answer("first answer"), answer("second answer"))
    session = await make_core(model, steer).session("s").open()
    result = await session.turn("go").run()
    assert result.text == "second answer" and len(model.requests) == 2
    assert steer.kinds == ["before_completion", "before_completion"]


async def test_checkpoint_abort_stops_the_turn_as_plugin_abort() -> None:
    """AbortTurn at a checkpoint: stopped(plugin_abort) with the plugin's reason, committed."""
    steer = Steer("abort")
    model = Model(call("lookup", "c1", query="a"), answer("never"))
    session = await make_core(model, Tools(), steer).session("s").open()
    result = await session.turn("go").run()
    assert (result.outcome, result.reason, result.detail) == (
        "stopped",
        "plugin_abort",
        "budget spent",
    )
    assert len(model.requests) == 1 and session.revision == 1


async def test_checkpoint_events_reach_observers_and_the_log() -> None:
    """EmitEvent at a checkpoint is a plugin_event observers see, naming the plugin."""
    steer = Steer("emit")
    model = Model(answer("x"))
    core = make_core(model, steer)
    session = await core.session("s").open()
    start = (await core.current("s")).cursor
    await session.turn("go").run()
    seen = await events_until(core, "s", "turn_committed", after=start)
    plugin = [e for e in seen if isinstance(e, lash.ObservedEvent) and e.type == "plugin_event"]
    assert plugin and not plugin[0].live
    assert plugin[0].data["plugin"] == "steer" and plugin[0].data["type"] == "progress"
    assert plugin[0].data["data"] == {"kind": "before_completion"}


# ------------------------------------------------------------------------------------------
# 7. Observation with cursors
# ------------------------------------------------------------------------------------------


async def test_observe_yields_a_turns_events_in_order_with_resumable_cursors() -> None:
    """A turn logs started, then committed (outcome, revision); resuming after a cursor
    yields exactly the events after it."""
    model = Model(call("lookup", "c1", query="a"), answer("done"))
    core = make_core(model, Tools())
    session = await core.session("s").open()
    start = (await core.current("s")).cursor
    await session.turn("go", id="t1").run()
    seen = await events_until(core, "s", "turn_committed", after=start)
    committed = [e for e in seen if not getattr(e, "live", False)]
    # Tool calls are live events; the committed turn lists its calls.
    assert types(committed) == ["turn_started", "turn_committed"]
    last = committed[-1]
    assert isinstance(last, lash.ObservedEvent)
    assert last.data["turn_id"] == "t1"
    assert last.data["tool_calls"] == [{"call_id": "c1", "name": "lookup", "is_error": False}]
    assert (last.data["outcome"], last.data["revision"]) == ("completed", 1)
    # The result it carries is the one the turn returned: revision included.
    assert (last.data["result"]["turn_id"], last.data["result"]["revision"]) == ("t1", 1)
    assert (await core.turn_record("s", "t1")).result["revision"] == 1  # type: ignore[union-attr]
    first = committed[0]
    assert isinstance(first, lash.ObservedEvent)
    resumed = await events_until(core, "s", "turn_committed", after=first.cursor)
    expected = [e.cursor for e in committed[1:] if isinstance(e, lash.ObservedEvent)]
    assert [e.cursor for e in resumed if isinstance(e, lash.ObservedEvent)] == expected


async def test_a_watcher_sees_live_text_and_tool_calls_while_the_turn_runs() -> None:
    """Live events (text deltas, tool calls starting and finishing) reach a watcher at once."""
    model = Model(call("lookup", "c1", query="a"), {"text": "all done", "chunk_size": 3})
    core = make_core(model, Tools())
    session = await core.session("s").open()
    watcher = asyncio.create_task(events_until(core, "s", "turn_committed"))
    await asyncio.sleep(0.05)
    await session.turn("go").run()
    seen = await watcher
    live = [e.type for e in seen if isinstance(e, lash.ObservedEvent) and e.live]
    assert "tool_call_started" in live and "tool_call_finished" in live
    assert "text_delta" in live


async def test_live_events_that_come_as_a_watchers_wait_times_out_still_come_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A watcher whose poll interval elapses just as a turn queues its live events and commits
    (here: every wait of the watcher times out) yields those live events before the commit."""

    async def timed_out(*args: Any) -> tuple[bool, None]:
        await asyncio.sleep(0)
        return False, None

    monkeypatch.setattr(lash._kernel.observation, "_next_wake_up", timed_out)
    model = Model(call("lookup", "c1", query="a"), {"text": "all done", "chunk_size": 3})
    core = make_core(model, Tools())
    session = await core.session("s").open()
    watcher = asyncio.create_task(events_until(core, "s", "turn_committed"))
    await asyncio.sleep(0.01)
    await session.turn("go").run()
    seen = [e.type for e in await watcher if isinstance(e, lash.ObservedEvent)]
    assert "tool_call_started" in seen and "text_delta" in seen
    assert seen.index("tool_call_finished") < seen.index("turn_committed")


async def test_a_watcher_cancelled_as_an_event_reaches_it_stops() -> None:
    """Cancelling a watcher at any moment around an event's arrival (as it is handed over, as
    the watcher wakes, after) stops it: the cancellation is never swallowed."""
    core = make_core(Model())
    await (await core.session("s").open()).configure(model="m2")
    for steps in range(6):
        watcher = asyncio.create_task(events_until(core, "s", "never"))
        await asyncio.sleep(0.01)  # waiting for news now
        core.notify("s", live=[lash.store.EventDraft("plugin_event", {"n": steps})])
        for _ in range(steps):
            await asyncio.sleep(0)
        watcher.cancel()
        done, _ = await asyncio.wait((watcher,), timeout=2)
        assert done, f"the watcher ignored its cancellation ({steps} loop steps after the event)"
        assert watcher.cancelled()


async def test_queued_cancelled_claimed_and_config_events_are_observed() -> None:
    """The mailbox and config changes are in the log, for any observer."""
    model = Model(answer("r"))
    core = make_core(model)
    session = await core.session("s").open()
    await session.configure(model="m2")
    start = (await core.current("s")).cursor
    a = await core.enqueue("s", "a")
    b = await core.enqueue("s", "b")
    await core.cancel_inputs("s", b.id)
    await session.drain()
    await session.configure(model="m3")
    seen = await events_until(core, "s", "config_changed", after=start)
    assert types(seen) == [
        "input_queued",
        "input_queued",
        "input_cancelled",
        "input_claimed",
        "turn_started",
        "turn_committed",
        "config_changed",
    ]
    queued = seen[0]
    assert isinstance(queued, lash.ObservedEvent) and queued.data["input"]["id"] == a.id


async def test_current_gives_the_settled_view_and_a_cursor_to_follow_from() -> None:
    """current(): revision, nodes, queued input and the cursor of the latest event."""
    model = Model(answer("r"))
    core = make_core(model)
    session = await core.session("s").open()
    await session.turn("one").run()
    await core.enqueue("s", "queued")
    now = await core.current("s")
    assert (now.revision, now.turns) == (1, 1)
    assert [i.text for i in now.inputs] == ["queued"]
    assert [n.text for n in now.nodes if isinstance(n, lash.UserMessage)] == ["one"]
    await core.cancel_inputs("s", now.inputs[0].id)
    seen = await events_until(core, "s", "input_cancelled", after=now.cursor)
    assert types(seen) == ["input_cancelled"]


@pytest.mark.parametrize("cursor", ["garbage", "42", "e-1", "e12345678901234567890", ""])
async def test_a_garbage_cursor_is_a_clear_error(cursor: str) -> None:
    """A cursor that is not one names itself in the error."""
    core = make_core(Model())
    await core.enqueue("s", "x")
    with pytest.raises(lash.SessionError, match="not an event cursor"):
        async with contextlib.aclosing(core.observe("s", after=cursor)) as stream:
            await anext(stream)


async def test_a_cursor_ahead_of_the_log_is_a_clear_error() -> None:
    """A cursor past the latest event (another session's, or a deleted session's) is refused."""
    core = make_core(Model())
    await core.enqueue("s", "x")
    with pytest.raises(lash.SessionError, match="ahead of the event log"):
        async with contextlib.aclosing(core.observe("s", after="e999")) as stream:
            await anext(stream)


async def test_a_cursor_out_of_the_replay_window_yields_one_gap_then_live_events() -> None:
    """Events older than the window are gone: one ObservationGap with a fresh view, then on."""
    shared = lash.store.MemoryStore(events_kept=3)
    model = Model(answer("r1"), answer("r2"), answer("r3"))
    core = make_core(model, store=shared)
    session = await core.session("s").open()
    await session.turn("one").run()
    old = (await core.current("s")).cursor
    for text in ("two", "three"):
        await session.turn(text).run()
    await core.enqueue("s", "later")  # one more event, after the window moved past `old`
    async with asyncio.timeout(5):
        async with contextlib.aclosing(core.observe("s", after=old)) as stream:
            gap = await anext(stream)
            assert isinstance(gap, lash.ObservationGap)
            assert gap.snapshot.revision == 3
            assert [i.text for i in gap.snapshot.inputs] == ["later"]
            await core.enqueue("s", "after the gap")
            nxt = await anext(stream)
    assert isinstance(nxt, lash.ObservedEvent) and nxt.type == "input_queued"
    assert nxt.data["input"]["text"] == "after the gap"


async def test_events_json_form_is_versioned_and_self_describing() -> None:
    """to_json carries v, type, session_id, cursor, live, at and data."""
    core = make_core(Model())
    start = (await core.current("s")).cursor
    await core.enqueue("s", "x", key="k")
    (event,) = await events_until(core, "s", "input_queued", after=start)
    assert isinstance(event, lash.ObservedEvent)
    data = event.to_json()
    assert set(data) == {"v", "type", "session_id", "cursor", "live", "at", "data"}
    assert (data["v"], data["type"], data["session_id"]) == (1, "input_queued", "s")
    assert data["data"]["input"]["key"] == "k"


class Announcer:
    """A before_turn hook that emits a plugin event through its session view."""

    lash_plugin = lash.PluginMeta(name="announcer")

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> None:
        await turn.session.emit("announce", {"input": turn.input})


async def test_plugin_events_from_the_session_view_reach_the_turn_stream_and_observers() -> None:
    """SessionView.emit: a PluginEvent in the turn's stream, and a logged plugin_event."""
    core = make_core(Model(answer("x")), Announcer())
    session = await core.session("s").open()
    start = (await core.current("s")).cursor
    streamed = [e async for e in session.turn("hello").stream()]
    kinds = [type(e).__name__ for e in streamed]
    assert "PluginEvent" in kinds
    seen = await events_until(core, "s", "turn_committed", after=start)
    logged = [e for e in seen if isinstance(e, lash.ObservedEvent) and e.type == "plugin_event"]
    assert [(e.data["plugin"], e.data["type"], e.data["data"]) for e in logged] == [
        ("announcer", "announce", {"input": "hello"})
    ]


class Prefix:
    """before_turn adds a message to the current turn, and queues one for the next."""

    lash_plugin = lash.PluginMeta(name="prefix")

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> Any:
        if turn.input == "start":
            return (
                lash.EnqueueMessages(("context for this turn",), target="current_turn"),
                lash.EnqueueMessages(("a follow-up",)),
            )
        return None


async def test_before_turn_messages_join_the_current_turn_or_wait_for_the_next() -> None:
    """EnqueueMessages(target=current_turn) from before_turn reaches the first model call;
    the default target queues input for a later turn, committed with this one."""
    model = Model(answer("first"), answer("second"))
    core = make_core(model, Prefix())
    session = await core.session("s").open()
    await session.turn("start").run()
    assert chat(model.requests[0]) == [("user", "start"), ("user", "context for this turn")]
    assert [i.text for i in await core.inputs("s")] == ["a follow-up"]
    (follow_up,) = await session.drain()
    assert follow_up.text == "second"
    assert chat(model.requests[-1])[-1] == ("user", "a follow-up")


class LaterNote:
    """checkpoint before completion queues a message for the next turn (default target)."""

    lash_plugin = lash.PluginMeta(name="later_note")

    @lash.hookimpl
    def checkpoint(self, turn: lash.TurnView, kind: str) -> Any:
        if kind == "before_completion" and turn.input == "go":
            return lash.EnqueueMessages(("next time",))
        return None


async def test_a_checkpoint_queueing_for_the_next_turn_does_not_prolong_this_one() -> None:
    """Input a checkpoint queues for a later turn does not make the model answer again now."""
    model = Model(answer("done"), answer("the next one"))
    core = make_core(model, LaterNote())
    session = await core.session("s").open()
    result = await session.turn("go").run()
    assert result.text == "done" and len(model.requests) == 1
    assert [i.text for i in await core.inputs("s")] == ["next time"]


class SlowSummary:
    """compact_context that takes a while (a slow summarizing model call): until ``release``
    is set."""

    lash_plugin = lash.PluginMeta(name="slow_summary")

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    @lash.hookimpl
    async def compact_context(self) -> lash.Compaction:
        self.started.set()
        await self.release.wait()
        return lash.Compaction(summary="short", keep_recent_turns=0)


async def test_a_long_operation_renews_its_lease_so_nobody_takes_the_session() -> None:
    """A compaction that outlasts the lease TTL renews the lease as it runs: another core's
    turn finds the session busy, and the compaction commits once let go.

    Under load this once failed: the compaction slept 1 s, and the test had 0.4 s after its
    two TTLs to build the other core and start its turn, which a loaded machine could take,
    finding the compaction committed and the session free. The compaction now runs until the
    test lets it go; the waits left are lower bounds, and the TTL (0.6 s, renewed every
    0.2 s) lets the event loop stall 0.4 s before the lease truly runs out."""
    shared = lash.store.MemoryStore()
    renew = shared.renew_lease
    renewals: list[float] = []

    async def renewing(lease: lash.store.Lease, *, ttl: float) -> lash.store.Lease:
        renewed = await renew(lease, ttl=ttl)
        renewals.append(renewed.expires_at)
        return renewed

    shared.renew_lease = renewing  # type: ignore[method-assign]  # (a wrapper that counts)
    slow = SlowSummary()
    compacting = make_core(Model(answer("one")), slow, store=shared, lease_ttl=0.6)
    session = await compacting.session("s").open()
    await session.turn("one").run()
    task = asyncio.create_task(session.compact())
    await slow.started.wait()
    await asyncio.sleep(1.2)  # two TTLs: without renewal the lease would have run out
    other = await make_core(Model(answer("never")), store=shared).session("s").open(wait=0)
    with pytest.raises(lash.SessionBusy):
        await other.turn("sneak in").run()
    assert len(renewals) >= 2, renewals
    slow.release.set()
    frame = await task
    assert frame is not None and session.revision == 2


def test_the_stored_forms_written_out_match_the_converter() -> None:
    """The kernel writes a turn result's and a tool call's stored form by hand (speed); they
    are exactly what lash.to_data makes of them (tool calls left out of the result)."""
    from lash._kernel.event_json import call_data, result_data

    result = lash.TurnResult(
        session_id="s",
        index=3,
        outcome="failed",
        text="t",
        reason="cancelled",
        error="e",
        error_plugin="p",
        error_hook="h",
        detail="d",
        tool_calls=(
            lash.ToolCallRecord(lash.ToolCall("c", "n", {"a": 1}), lash.ToolResult("c", "x")),
        ),
        usage=lash.Usage(1, 2, 3),
        revision=4,
        turn_id="tid",
        cancelled_by="o",
        cancel_reason="r",
    )
    assert result_data(result) == lash.to_data(attrs.evolve(result, tool_calls=()))
    call = lash.ToolCall("c1", "lookup", {"q": [1, {"x": None}]}, invalid_arguments="{")
    assert call_data(call) == lash.to_data(call)
