"""Background processes in one process, on ``memory://``: kinds and their registration, starting
from hosts, tools and hook directives (in the turn's commit), the worker's dispositions,
cancellation, timeouts, external completion, ``process_finished`` and waking the session.

Crashes of real worker processes on SQLite are in ``test_worker_crash.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import attrs
import pytest
from test_mailbox import Model, SharedStore  # the provider and shared-store plugins

import lash
import lash.store
from lash_plugins_builtin import standard, stores
from lash_plugins_builtin.scripted import ScriptedProvider

pytestmark = pytest.mark.anyio

OTHER_BUILTINS = sorted(
    {ep.name for ep in entry_points(group="lash.plugins")} - {"standard", "stores"}
)
RERUNNABLE = lash.RecoveryDisposition.RERUNNABLE
EXTERNAL = lash.RecoveryDisposition.EXTERNALLY_OWNED


# ------------------------------------------------------------------------------------------
# Plugins and helpers
# ------------------------------------------------------------------------------------------


@attrs.frozen
class Numbers:
    """Numbers to add up."""

    numbers: list[int]


@attrs.frozen
class Total:
    total: int


class Jobs:
    """Process kinds of every disposition, a tool that starts one, and the process hooks."""

    lash_plugin = lash.PluginMeta(name="jobs")

    def __init__(self, *, render: bool = False) -> None:
        self.render = render
        self.finished: list[lash.ProcessRecord] = []
        self.contexts: list[lash.ProcessContext] = []
        self.cancel_seen = asyncio.Event()
        self.running = asyncio.Event()
        self.release = asyncio.Event()

    @lash.hookimpl
    def register_process_kinds(self, register: lash.RegisterProcessKind) -> None:
        register("sum", self.add_up, recovery=RERUNNABLE, max_attempts=2)
        register("stubborn", self.stubborn)
        register("slow", self.slow, timeout=0.2)
        register("handoff", self.handoff, recovery=EXTERNAL)
        register("boom", self.boom)
        register("raw", self.raw)
        register("sleepy", self.sleepy)

    async def add_up(self, context: lash.ProcessContext, payload: Numbers) -> Total:
        """Add the numbers up."""
        self.contexts.append(context)
        await context.emit({"count": len(payload.numbers)})
        return Total(sum(payload.numbers))

    async def stubborn(self, context: lash.ProcessContext, payload: None) -> None:
        """Ignore every cancellation (until the test releases it)."""
        self.running.set()
        while not self.release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if context.is_cancelled:
                    self.cancel_seen.set()

    async def slow(self, context: lash.ProcessContext, payload: None) -> None:
        await asyncio.sleep(30)

    async def handoff(self, context: lash.ProcessContext, payload: str) -> None:
        """Hand the work to another system; it calls complete() later."""

    async def sleepy(self, context: lash.ProcessContext, payload: None) -> None:
        """Sleep until cancelled."""
        self.running.set()
        try:
            await asyncio.sleep(3600)
        finally:
            self.cancel_seen.set()

    async def boom(self, context: lash.ProcessContext, payload: None) -> None:
        raise RuntimeError("the disk is full")

    async def raw(self, context, payload):  # type: ignore[no-untyped-def]  # raw JSON on purpose
        return {"echo": payload, "attempt": context.attempt, "session": context.session_id}

    @lash.hookimpl
    def process_finished(self, process: lash.ProcessRecord) -> None:
        self.finished.append(process)

    @lash.hookimpl
    def render_process_result(self, process: lash.ProcessRecord) -> str | None:
        if not self.render:
            return None
        return f"job {process.kind} is {process.status}: {process.result}"

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        async def add_later(numbers: list[int], context: lash.ToolContext) -> str:
            """Start adding numbers up in the background."""
            record = await context.processes.start("sum", Numbers(numbers), key="add-1")
            again = await context.processes.start("sum", Numbers(numbers), key="add-1")
            assert again.id == record.id
            return f"{record.id} {record.status}"

        async def peek(process_id: str, context: lash.ToolContext) -> str:
            """Look at a process."""
            record = await context.processes.get(process_id)
            mine = await context.processes.list()
            return f"{record.status if record else None} {[p.id for p in mine]}"

        register(add_later)
        register(peek)


def make_core(
    *plugins: object, store: lash.store.MemoryStore | None = None, url: str | None = None
) -> lash.LashCore:
    """A core of ``plugins`` on ``store`` (one object), or on the store at ``url``."""
    extra: list[object] = []
    if url is None:
        extra.append(SharedStore(store if store is not None else lash.store.MemoryStore()))
    core = lash.LashCore(
        plugins=[standard, stores, *extra, *plugins],
        autoload=False,
        disable=OTHER_BUILTINS,
        provider="model",
        model="m1",
        store=url or "shared://",
    )
    _CORES.append(core)
    return core


#: The cores a test made: closed after it (a SQLite store holds a connection).
_CORES: list[lash.LashCore] = []


@pytest.fixture(autouse=True)
async def _close_cores() -> AsyncIterator[None]:
    yield
    while _CORES:
        await _CORES.pop().aclose()


def call(name: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "id": call_id, "arguments": arguments}]}


async def log_types(core: lash.LashCore, session_id: str) -> list[str]:
    page = await core.store.read_events(session_id, after=0, limit=1000)
    return [event.type for event in page.events]


@pytest.fixture
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store the kernel's process tests run on: memory://, then a real SQLite file."""
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'lash.db'}"


# ------------------------------------------------------------------------------------------
# Kinds
# ------------------------------------------------------------------------------------------


async def test_a_kind_reads_payload_and_result_types_from_run() -> None:
    """Payload and result types come from run's annotations, with JSON schemas; unannotated is
    raw JSON; max_attempts is kept for rerunnable kinds only."""
    core = make_core(Jobs(), Model())
    total = core.processes.kind("sum")
    assert (total.plugin, total.payload_type, total.result_type) == ("jobs", Numbers, Total)
    assert total.payload_schema == {
        "type": "object",
        "description": "Numbers to add up.",
        "properties": {"numbers": {"type": "array", "items": {"type": "integer"}}},
        "required": ["numbers"],
        "additionalProperties": False,
    }
    assert total.result_schema["properties"] == {"total": {"type": "integer"}}
    assert (total.recovery, total.max_attempts, total.timeout) == (RERUNNABLE, 2, None)
    assert total.description == "Add the numbers up."
    raw = core.processes.kind("raw")
    assert (raw.payload_schema, raw.result_schema) == ({}, {})
    assert core.processes.kind("slow").timeout == 0.2
    assert core.processes.kind("boom").max_attempts == 1  # owner-bound: runs once
    assert core.registry.of("process_kind")["handoff"].extra is EXTERNAL


@pytest.mark.parametrize(
    ("run", "options", "message"),
    [
        (lambda c, p: None, {}, "run must be an async function"),
        (None, {}, "run must take (context, payload)"),
        (None, {"timeout": 0}, "timeout must be a positive number of seconds, got 0"),
        (None, {"max_attempts": 0}, "max_attempts must be an int >= 1, got 0"),
        (None, {"recovery": "rerunnable"}, "recovery must be a lash.RecoveryDisposition"),
    ],
)
async def test_a_bad_kind_fails_the_build_naming_plugin_and_kind(
    run: Any, options: dict[str, Any], message: str
) -> None:
    """A kind that cannot work fails at registration, naming its plugin and kind."""

    async def one_argument(context: lash.ProcessContext) -> None:
        return None

    async def fine(context: lash.ProcessContext, payload: int) -> int:
        return payload

    chosen = run if run is not None else (one_argument if not options else fine)

    class Bad:
        lash_plugin = lash.PluginMeta(name="bad")

        @lash.hookimpl
        def register_process_kinds(self, register: lash.RegisterProcessKind) -> None:
            register("broken", chosen, **options)

    with pytest.raises(lash.PluginError, match="register_process_kinds") as caught:
        make_core(Bad(), Model())
    assert caught.value.plugin == "bad"
    assert "'broken'" in str(caught.value) and message in str(caught.value)


async def test_a_kind_registered_twice_names_both_plugins(jobs: Jobs) -> None:
    """Two plugins registering one kind: the error names both."""

    class Other:
        lash_plugin = lash.PluginMeta(name="other")

        @lash.hookimpl
        def register_process_kinds(self, register: lash.RegisterProcessKind) -> None:
            async def run(context: lash.ProcessContext, payload: Any) -> Any:
                return payload

            register("sum", run)

    with pytest.raises(lash.PluginError, match="'jobs' and plugin 'other'"):
        make_core(jobs, Other(), Model())


async def test_an_unknown_kind_is_an_error_naming_it(jobs: Jobs) -> None:
    """Starting a kind nobody registered names the kind and the registered ones."""
    core = make_core(jobs, Model())
    with pytest.raises(lash.ProcessError, match="unknown process kind 'reindex'") as caught:
        await core.processes.start("reindex", {})
    assert caught.value.kind == "reindex"
    assert "boom, handoff, raw, sleepy, slow, stubborn, sum" in str(caught.value)
    assert await core.processes.list() == []


async def test_a_payload_is_validated_when_the_process_starts(jobs: Jobs) -> None:
    """A payload that does not fit the kind's type is refused at start, naming the field."""
    core = make_core(jobs, Model())
    with pytest.raises(lash.ProcessError, match=r"numbers\[1\]: expected int, got 'x'") as caught:
        await core.processes.start("sum", {"numbers": [1, "x"]})
    assert caught.value.kind == "sum"
    record = await core.processes.start("sum", {"numbers": [1, 2]})  # JSON form is fine
    assert record.payload == {"numbers": [1, 2]}


# ------------------------------------------------------------------------------------------
# Starting from a host, idempotently, and running
# ------------------------------------------------------------------------------------------


async def test_a_host_started_process_runs_once_and_is_notified_once(jobs: Jobs, url: str) -> None:
    """start writes a pending record; a worker runs it; process_finished once; the session's
    log has started, running, progress and finished events."""
    core = make_core(jobs, Model(), url=url)
    record = await core.processes.start("sum", Numbers([1, 2, 3]), session_id="s1")
    assert (record.status, record.attempts, record.session_id, record.source) == (
        "pending",
        0,
        "s1",
        "host",
    )
    assert (record.recovery, record.max_attempts) == ("rerunnable", 2)
    await core.run_worker(once=True, sessions=False)
    done = await core.processes.get(record.id)
    assert done is not None
    assert (done.status, done.result, done.error, done.attempts) == (
        "succeeded",
        {"total": 6},
        None,
        1,
    )
    assert done.notified and done.progress == {"count": 3}
    assert [p.id for p in jobs.finished] == [record.id]
    assert jobs.finished[0].status == "succeeded"
    assert await log_types(core, "s1") == [
        "process_started",
        "process_running",
        "process_progress",
        "process_finished",
        "input_queued",
    ]
    context = jobs.contexts[0]
    assert (context.id, context.kind, context.attempt, context.session_id) == (
        record.id,
        "sum",
        1,
        "s1",
    )
    assert context.payload == Numbers([1, 2, 3])
    assert isinstance(context.session, lash.SessionSnapshot)
    await core.run_worker(once=True, sessions=False)  # nothing left: nothing twice
    assert len(jobs.finished) == 1


async def test_a_key_makes_starting_idempotent(jobs: Jobs, url: str) -> None:
    """The same key returns the same process; with another payload or kind it is a conflict."""
    core = make_core(jobs, Model(), url=url)
    first = await core.processes.start("sum", Numbers([1]), key="k")
    again = await core.processes.start("sum", {"numbers": [1]}, key="k")
    assert again.id == first.id
    await core.run_worker(once=True, sessions=False)
    after = await core.processes.start("sum", Numbers([1]), key="k")
    assert (after.id, after.status) == (first.id, "succeeded")  # whatever its state
    with pytest.raises(lash.InputConflict, match="'k'"):
        await core.processes.start("sum", Numbers([2]), key="k")
    with pytest.raises(lash.InputConflict):
        await core.processes.start("sum", Numbers([1]), key="k", session_id="other")
    assert len(await core.processes.list()) == 1


async def test_dispositions_of_runs_that_fail(jobs: Jobs) -> None:
    """An exception fails the process with its message; a timeout fails it after grace."""
    core = make_core(jobs, Model())
    boom = await core.processes.start("boom")
    slow = await core.processes.start("slow")
    await core.run_worker(once=True, sessions=False, grace=0.05)
    failed = await core.processes.get(boom.id)
    assert failed is not None
    assert (failed.status, failed.error) == ("failed", "RuntimeError: the disk is full")
    timed_out = await core.processes.get(slow.id)
    assert timed_out is not None
    assert (timed_out.status, timed_out.error) == ("failed", "timed out after 0.2 s")
    assert sorted(p.status for p in jobs.finished) == ["failed", "failed"]


class Garbled:
    """A kind whose run fails with what a subprocess printed: undecodable bytes (kept by
    ``surrogateescape`` as lone surrogates) and a NUL character."""

    lash_plugin = lash.PluginMeta(name="garbled")

    @lash.hookimpl
    def register_process_kinds(self, register: lash.RegisterProcessKind) -> None:
        async def garbled(context: lash.ProcessContext, payload: None) -> None:
            printed = b"bad \xff byte\x00".decode("utf-8", "surrogateescape")
            raise RuntimeError(f"the tool said: {printed}")

        register("garbled", garbled)


async def test_a_run_failing_with_a_nul_or_a_lone_surrogate_is_recorded_failed(
    store_url: str,
) -> None:
    """The worker records a failed run's message with its NUL characters and lone surrogates
    escaped (``\\x00``, ``\\udcff``), on every store: Postgres text holds neither, and its
    store refused the finish, which left the process running until its claim expired (then
    abandoned, as if the worker had died, or run again)."""
    jobs = Jobs()
    core = make_core(jobs, Garbled(), Model(), url=store_url)
    record = await core.processes.start("garbled", session_id="s1")
    await core.run_worker(once=True, sessions=False, lease_ttl=1)
    failed = await core.processes.get(record.id)
    assert failed is not None
    assert (failed.status, failed.error, failed.attempts) == (
        "failed",
        "RuntimeError: the tool said: bad \\udcff byte\\x00",
        1,
    )
    assert [p.status for p in jobs.finished] == ["failed"]


async def test_a_raw_kind_gets_json_and_a_process_without_session_wakes_nothing(
    jobs: Jobs,
) -> None:
    """An unannotated kind gets the JSON payload as is; with no session, nothing is queued."""
    core = make_core(jobs, Model())
    record = await core.processes.start("raw", {"a": [1, 2]})
    await core.run_worker(once=True)
    done = await core.processes.get(record.id)
    assert done is not None
    assert done.result == {"echo": {"a": [1, 2]}, "attempt": 1, "session": None}
    assert await core.store.runnable_sessions() == []


class Quiet:
    """A kind, and no ``process_finished``: its session-less runs have nothing to notify."""

    @lash.hookimpl
    def register_process_kinds(self, register: lash.RegisterProcessKind) -> None:
        async def noop(context: lash.ProcessContext, payload: Any) -> Any:
            return payload

        register("noop", noop)


class CountingStore(lash.store.MemoryStore):
    """Counts the outbox's second writes."""

    marked = 0

    async def mark_process_notified(self, process_id: str) -> None:
        CountingStore.marked += 1
        await super().mark_process_notified(process_id)


async def test_a_run_with_nothing_to_notify_is_settled_notified_in_one_write(jobs: Jobs) -> None:
    """No session and no process_finished: finished as notified, no outbox write after it;
    with a session (a wake-up to queue) the outbox is used."""
    CountingStore.marked = 0
    core = make_core(Quiet(), Model(), store=CountingStore())
    bare = await core.processes.start("noop", {"n": 1})
    await core.run_worker(once=True, sessions=False)
    done = await core.processes.get(bare.id)
    assert done is not None and (done.status, done.notified) == ("succeeded", True)
    assert CountingStore.marked == 0
    assert await core.store.unnotified_processes(finished_before=time.time() + 60) == []
    owned = await core.processes.start("noop", {"n": 2}, session_id="s1")
    await core.run_worker(once=True, sessions=False)
    woken = await core.processes.get(owned.id)
    assert woken is not None and woken.notified and CountingStore.marked == 1
    assert [i.key for i in await core.inputs("s1")] == [f"process:{owned.id}"]


# ------------------------------------------------------------------------------------------
# Starting from a turn: tools and directives, in the turn's commit
# ------------------------------------------------------------------------------------------


async def test_a_tool_starts_a_process_in_the_turns_commit_and_sees_only_its_session(
    jobs: Jobs,
    url: str,
) -> None:
    """context.processes.start returns the pending record; the record exists once the turn
    commits; the tool's view holds its own session's processes only."""
    model = Model(
        call("add_later", "c1", numbers=[4, 5]),
        "started",
        call("peek", "c2", process_id="PLACEHOLDER"),
        "peeked",
    )
    core = make_core(jobs, model, url=url)
    other = await core.processes.start("sum", Numbers([7]), session_id="elsewhere")
    session = await core.session("s1").open()
    result = await session.turn("add 4 and 5 later").run()
    assert result.outcome == "completed"
    content = result.tool_calls[0].result.content
    process_id, status = content.split()
    assert status == "pending"
    record = await core.processes.get(process_id)
    assert record is not None
    assert (record.session_id, record.source, record.key) == ("s1", "tool:add_later", "add-1")
    assert record.payload == {"numbers": [4, 5]}
    # The other session's process is invisible to the tool.
    model.script = ScriptedProvider([call("peek", "c3", process_id=other.id), "peeked"])
    result = await session.turn("peek").run()
    assert result.tool_calls[0].result.content == f"None {[process_id]!r}"


class FailingCommits(lash.store.MemoryStore):
    """A memory store whose session commits fail while ``failing`` is set."""

    failing = True

    async def commit(self, *args: Any, **kwargs: Any) -> int:
        if self.failing:
            raise RuntimeError("the disk went away")
        return await super().commit(*args, **kwargs)


async def test_a_turn_that_does_not_commit_starts_nothing(jobs: Jobs) -> None:
    """The tool got a pending record, but its turn's commit failed: no process exists."""
    store = FailingCommits()
    core = make_core(jobs, Model(call("add_later", "c1", numbers=[1]), "ok"), store=store)
    session = await core.session("s1").open()
    with pytest.raises(RuntimeError, match="the disk went away"):
        await session.turn("add").run()
    assert await core.processes.list() == []
    await core.run_worker(once=True)
    assert jobs.finished == []


class Starter:
    """A hook that starts a process with a directive."""

    lash_plugin = lash.PluginMeta(name="starter")

    def __init__(self, kind: str) -> None:
        self.kind = kind

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> lash.StartProcess:
        return lash.StartProcess(self.kind, {"numbers": [len(turn.input)]}, key=turn.input)


async def test_a_start_process_directive_starts_with_the_turn(jobs: Jobs, url: str) -> None:
    """lash.StartProcess from before_turn is written by the turn's commit, attributed."""
    core = make_core(jobs, Starter("sum"), Model("hi", "hi"), url=url)
    session = await core.session("s1").open()
    assert (await session.turn("four").run()).outcome == "completed"
    (record,) = await core.processes.list(session_id="s1")
    assert (record.kind, record.source, record.payload) == (
        "sum",
        "plugin:starter",
        {"numbers": [4]},
    )
    await session.turn("four").run()  # the same key again: the same process
    assert len(await core.processes.list()) == 1


async def test_a_directive_with_an_unknown_kind_fails_the_turn_naming_the_plugin(
    jobs: Jobs,
) -> None:
    """StartProcess of an unknown kind: the turn fails with a PluginError naming plugin and
    kind; nothing is started."""
    core = make_core(jobs, Starter("nope"), Model("hi"))
    session = await core.session("s1").open()
    result = await session.turn("x").run()
    assert (result.outcome, result.error_plugin) == ("failed", "starter")
    assert "unknown process kind 'nope'" in (result.error or "")
    assert await core.processes.list() == []


# ------------------------------------------------------------------------------------------
# Control: cancel, wait, complete
# ------------------------------------------------------------------------------------------


async def test_cancelling_a_pending_process_settles_it_at_once(jobs: Jobs) -> None:
    """A pending process is cancelled without a worker; process_finished runs once."""
    core = make_core(jobs, Model())
    record = await core.processes.start("sum", Numbers([1]))
    cancelled = await core.processes.cancel(record.id, reason="not needed")
    assert (cancelled.status, cancelled.error) == ("cancelled", "not needed")
    assert [p.status for p in jobs.finished] == ["cancelled"]
    await core.run_worker(once=True)
    again = await core.processes.cancel(record.id)
    assert again.status == "cancelled" and len(jobs.finished) == 1
    with pytest.raises(lash.UnknownProcess, match="'nope'"):
        await core.processes.cancel("nope")


async def test_a_process_that_ignores_cancellation_is_cancelled_after_the_grace(
    jobs: Jobs,
    url: str,
) -> None:
    """The run sees context.cancelled, catches every CancelledError, and is still recorded
    cancelled once the grace period is over."""
    core = make_core(jobs, Model(), url=url)
    record = await core.processes.start("stubborn", session_id="s1")
    worker = asyncio.create_task(core.run_worker(lease_ttl=3.0, grace=0.1, poll=0.05))
    try:
        async with asyncio.timeout(5):
            await jobs.running.wait()
            await core.processes.cancel(record.id, reason="enough")
            done = await core.processes.wait(record.id, timeout=5)
    finally:
        jobs.release.set()  # or the event loop could never close
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    assert (done.status, done.error) == ("cancelled", "enough")
    assert jobs.cancel_seen.is_set()
    assert [p.status for p in jobs.finished] == ["cancelled"]


async def test_wait_times_out_and_names_the_process(jobs: Jobs) -> None:
    """wait raises TimeoutError naming a process still pending; an unknown id is named."""
    core = make_core(jobs, Model())
    record = await core.processes.start("sum", Numbers([1]))
    with pytest.raises(TimeoutError, match=f"{record.id!r} \\(sum\\) is still pending"):
        await core.processes.wait(record.id, timeout=0.05)
    with pytest.raises(lash.UnknownProcess, match="'missing'"):
        await core.processes.wait("missing")


async def test_an_idle_worker_is_woken_by_a_start_in_its_core(jobs: Jobs) -> None:
    """With an hour-long poll, a process started in the worker's core still runs at once."""
    core = make_core(jobs, Model())
    worker = asyncio.create_task(core.run_worker(poll=3600, sessions=False))
    try:
        await asyncio.sleep(0.05)  # the worker's first round found nothing; it waits
        record = await core.processes.start("sum", Numbers([2, 2]))
        done = await core.processes.wait(record.id, timeout=5)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    assert done.result == {"total": 4}


async def test_an_externally_owned_process_waits_for_its_completion(jobs: Jobs, url: str) -> None:
    """Its run returns: it stays running with no claim; complete settles it once; the first
    settlement stands; only externally owned processes can be completed."""
    core = make_core(jobs, Model(), url=url)
    record = await core.processes.start("handoff", "ticket-9", session_id="s1")
    await core.run_worker(once=True)
    parked = await core.processes.get(record.id)
    assert parked is not None
    assert (parked.status, parked.expires_at, parked.owner is not None) == ("running", None, True)
    assert jobs.finished == []
    await core.run_worker(once=True)  # nobody runs it again
    assert (await core.processes.get(record.id)) == parked
    done = await core.processes.complete(record.id, result={"ticket": "closed"})
    assert (done.status, done.result) == ("succeeded", {"ticket": "closed"})
    late = await core.processes.complete(record.id, error="too late")
    assert (late.status, late.error) == ("succeeded", None)
    assert [p.id for p in jobs.finished] == [record.id]
    other = await core.processes.start("sum", Numbers([1]))
    with pytest.raises(lash.ProcessError, match="rerunnable, not externally owned"):
        await core.processes.complete(other.id, result=1)
    # Cancelling one that waits for its owner settles it at once (no worker would).
    waiting = await core.processes.start("handoff", "ticket-10", session_id="s1")
    await core.run_worker(once=True, sessions=False, kinds=["handoff"])
    cancelled = await core.processes.cancel(waiting.id, reason="withdrawn")
    assert (cancelled.status, cancelled.error) == ("cancelled", "withdrawn")
    assert [p.id for p in jobs.finished] == [record.id, waiting.id]


# ------------------------------------------------------------------------------------------
# Waking the session
# ------------------------------------------------------------------------------------------


async def test_a_finished_process_wakes_its_session_with_a_turn() -> None:
    """The wake-up input (rendered by the hook, key process:<id>) becomes a turn when the
    worker drains the session: the model reads the result."""
    jobs = Jobs(render=True)
    model = Model("noted")
    core = make_core(jobs, model)
    record = await core.processes.start("sum", Numbers([20, 22]), session_id="s1")
    await core.run_worker(once=True)
    (queued,) = await core.inputs("s1", settled=True)
    assert (queued.key, queued.source, queued.state) == (
        f"process:{record.id}",
        f"process:{record.id}",
        "completed",
    )
    assert queued.items == (
        {
            "process": {
                "id": record.id,
                "kind": "sum",
                "status": "succeeded",
                "result": {"total": 42},
                "error": None,
            }
        },
    )
    (request,) = model.requests
    assert request.messages[-1].content == "job sum is succeeded: {'total': 42}"
    session = await core.session("s1").open()
    assert session.turns == 1


async def test_the_default_wake_up_text_names_process_kind_status_and_error(jobs: Jobs) -> None:
    """Without a render_process_result answer, the kernel's text names it all."""
    core = make_core(jobs, Model())
    record = await core.processes.start("boom", session_id="s1")
    await core.run_worker(once=True, sessions=False)
    (queued,) = await core.inputs("s1")
    assert queued.text == (
        f"Background process {record.id} (boom) failed: RuntimeError: the disk is full"
    )


async def test_the_sweep_notifies_a_process_whose_finisher_died(jobs: Jobs) -> None:
    """A process finished but never notified (its finisher died) is notified by a worker's
    sweep once it is older than the lease TTL, exactly once."""
    store = lash.store.MemoryStore()
    core = make_core(jobs, Model(), store=store)
    record = await core.processes.start("sum", Numbers([1]), session_id="s1")
    claimed = await store.claim_process("dead-worker", ttl=60)
    assert claimed is not None
    await store.finish_process(record.id, claimed.token, status="succeeded", result={"total": 1})
    await core.run_worker(once=True, lease_ttl=60, sessions=False)
    assert jobs.finished == []  # too recent: its finisher may still be notifying
    await asyncio.sleep(0.25)
    await core.run_worker(once=True, lease_ttl=0.2, sessions=False)
    await core.run_worker(once=True, lease_ttl=0.2, sessions=False)
    assert [p.id for p in jobs.finished] == [record.id]
    assert len(await core.inputs("s1")) == 1


class Broken:
    """process_finished raises; render_process_result returns a number."""

    lash_plugin = lash.PluginMeta(name="broken")

    @lash.hookimpl
    def process_finished(self, process: lash.ProcessRecord) -> None:
        raise RuntimeError("the pager is down")

    @lash.hookimpl
    def render_process_result(self, process: lash.ProcessRecord) -> Any:
        return 42


async def test_broken_process_hooks_are_reported_and_the_session_is_still_woken(
    jobs: Jobs,
) -> None:
    """process_finished errors are isolated (the other plugins still hear it); a wrong
    render_process_result answer is reported, naming plugin, hook and expectation, and the
    kernel's text is used."""
    errors: list[lash.LashError] = []
    core = lash.LashCore(
        plugins=[standard, stores, jobs, Broken(), Model()],
        autoload=False,
        disable=OTHER_BUILTINS,
        provider="model",
        store="memory://",
        on_error=errors.append,
    )
    record = await core.processes.start("sum", Numbers([1]), session_id="s1")
    await core.run_worker(once=True, sessions=False)
    assert [p.id for p in jobs.finished] == [record.id]
    assert [(e.plugin, e.hook) for e in errors] == [  # type: ignore[attr-defined]
        ("broken", "process_finished"),
        ("broken", "render_process_result"),
    ]
    assert "the pager is down" in str(errors[0])
    assert (
        "plugin 'broken' returned int 42 from hook 'render_process_result'; expected the text "
        "of the session's wake-up input (str), or None"
    ) in str(errors[1])
    (queued,) = await core.inputs("s1")
    assert queued.text.startswith(f"Background process {record.id} (sum) succeeded.")


class FlakyStore(lash.store.MemoryStore):
    """A memory store whose first claim and first finish fail (the store was away)."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = {"claim": 1, "finish": 1}

    def _hiccup(self, what: str) -> None:
        if self.failures[what]:
            self.failures[what] -= 1
            raise OSError(f"{what}: the database is locked")

    async def claim_process(self, *args: Any, **kwargs: Any) -> Any:
        self._hiccup("claim")
        return await super().claim_process(*args, **kwargs)

    async def finish_process(self, *args: Any, **kwargs: Any) -> Any:
        self._hiccup("finish")
        return await super().finish_process(*args, **kwargs)


async def test_a_worker_outlives_store_hiccups(
    jobs: Jobs, caplog: pytest.LogCaptureFixture
) -> None:
    """A failed claim is retried at the next poll, a failed finish while the claim lasts: the
    process still succeeds, once."""
    store = FlakyStore()
    core = make_core(jobs, Model(), store=store)
    record = await core.processes.start("sum", Numbers([3]))
    worker = asyncio.create_task(core.run_worker(poll=0.01, sessions=False))
    try:
        done = await core.processes.wait(record.id, timeout=10)
    finally:
        worker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await worker
    assert (done.status, done.result, done.attempts) == ("succeeded", {"total": 3}, 1)
    assert store.failures == {"claim": 0, "finish": 0}
    assert "store query failed: claim: the database is locked" in caplog.text
    assert "(retrying): finish: the database is locked" in caplog.text
    assert len(jobs.finished) == 1


async def test_a_cancelled_worker_stops_its_runs_and_leaves_their_claims(jobs: Jobs) -> None:
    """Cancelling the worker cancels the runs it supervises; their records stay running under
    a claim that expires (then the disposition decides), and nothing is settled."""
    core = make_core(jobs, Model())
    record = await core.processes.start("sleepy")
    worker = asyncio.create_task(core.run_worker(poll=0.01, sessions=False))
    async with asyncio.timeout(5):
        await jobs.running.wait()
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker
    assert jobs.cancel_seen.is_set()
    left = await core.processes.get(record.id)
    assert left is not None
    assert (left.status, left.expires_at is not None, jobs.finished) == ("running", True, [])


class Picky:
    """prepare_session fails for session ``bad`` (so it cannot be opened, nor drained)."""

    lash_plugin = lash.PluginMeta(name="picky")

    @lash.hookimpl
    def prepare_session(self, session: lash.SessionView) -> None:
        if session.id == "bad":
            raise RuntimeError("this session is broken")


async def test_a_session_that_cannot_be_drained_is_left_alone_and_hides_no_other(
    jobs: Jobs, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing drain is logged and that session backs off; the other sessions still drain,
    even with one slot; a worker run once returns."""
    core = make_core(jobs, Picky(), Model("done"))
    await core.enqueue("bad", "first")
    await core.enqueue("good", "second")
    await core.run_worker(once=True, concurrency=1)
    assert [i.state for i in await core.inputs("good", settled=True)] == ["completed"]
    assert [i.state for i in await core.inputs("bad")] == ["pending"]
    assert "draining session 'bad' failed" in caplog.text
    assert "this session is broken" in caplog.text
