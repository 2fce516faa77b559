"""Tool approval that survives a restart (issue 15, item 3): a held call stops its turn
``awaiting_approval`` with the call committed; any process lists and answers it; the next
execution continues the same turn without asking the model again. Bad answers: twice, for an
unknown call, after a reset, after a new turn superseded the call."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import _pkgs
import approval_tools
import pytest
from approval_tools import calls_message, logged

import lash
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio

TESTS = Path(__file__).parent

CLEANUP = calls_message(
    ("read_file", {"path": "notes.txt"}, "c1"),
    ("delete_file", {"path": "old.log"}, "c2"),
    ("delete_file", {"path": "keep.log"}, "c3"),
)

REJECTION = "the call was rejected by the person asked to approve it"


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = str(tmp_path / "approval.log")
    monkeypatch.setenv("APPROVAL_LOG", path)
    return path


def make_core(url: str, *plugins: object) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, approval_tools, *plugins],
        builtins=(),
        store=url,
        provider="policy",
    )


class Cores:
    """Two hosts on one store, standing in for two processes (for memory://, one core)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.first = make_core(url)
        self.second = self.first if url == "memory://" else make_core(url)

    async def close(self) -> None:
        await self.first.aclose()
        if self.second is not self.first:
            await self.second.aclose()


@pytest.fixture
async def cores(store_url: str) -> AsyncIterator[Cores]:
    pair = Cores(store_url)
    try:
        yield pair
    finally:
        await pair.close()


def assert_continued(text: str, log: str) -> None:
    """CLEANUP, c2 approved and c3 rejected ("keep it"), continued: the answer the model gave
    with the three results, and what ran: the model asked for tools once, the approved tool ran
    once, the rejected one never."""
    answer = json.loads(text.removeprefix("answer: "))
    assert answer == ["contents of notes.txt", "deleted old.log", f"{REJECTION}: keep it"]
    assert logged(log) == [
        "model asks_for_tools",
        "read_file notes.txt",
        "delete_file old.log",
        "model answers",
    ]


# -- the whole flow, on every store ---------------------------------------------------------------


async def test_a_held_turn_is_answered_elsewhere_and_continued(cores: Cores, log: str) -> None:
    """Held calls stop the turn with the calls committed; another host lists and answers them;
    a third execution continues the same turn: the approved tool runs once, the rejected one
    never, the model sees both answers and is not asked for the calls again."""
    before = time.time()
    async with cores.first.session("s") as session:
        result = await session.turn(CLEANUP).run()
    after = time.time()
    assert (result.outcome, result.reason) == ("stopped", "awaiting_approval")
    assert result.detail == "2 tool call(s) await approval: c2 (delete_file), c3 (delete_file)"
    assert logged(log) == ["model asks_for_tools", "read_file notes.txt"]
    assert await cores.second.turn_record("s", result.turn_id) is None  # the turn is not over

    pending = await cores.second.approvals("s")
    assert [(p.call_id, p.tool, p.arguments) for p in pending] == [
        ("c2", "delete_file", {"path": "old.log"}),
        ("c3", "delete_file", {"path": "keep.log"}),
    ]
    for item in pending:
        assert (item.session_id, item.turn_id, item.index) == ("s", result.turn_id, 1)
        assert before <= item.requested_at <= after
        assert (item.requested_by, item.why) == (None, None)  # the tool always asks

    approved = await cores.second.approve("s", "c2")
    assert (approved.outcome, approved.decision, approved.turn_id, approved.tool) == (
        "approved",
        "approve",
        result.turn_id,
        "delete_file",
    )
    assert [p.call_id for p in await cores.second.approvals("s")] == ["c3"]
    rejected = await cores.second.approve("s", "c3", decision="reject", reason="keep it")
    assert (rejected.outcome, rejected.decision, rejected.reason) == (
        "rejected",
        "reject",
        "keep it",
    )
    assert await cores.second.approvals("s") == []

    # A fresh host (a restart, for the durable stores) continues the turn.
    async with make_core(cores.url) if cores.url != "memory://" else _same(cores.first) as third:
        async with third.session("s") as session:
            results = await session.drain()
            assert [(r.turn_id, r.index, r.outcome) for r in results] == [
                (result.turn_id, 1, "completed")
            ]
            assert session.turns == 1
    assert_continued(results[0].text, log)
    record = await cores.second.turn_record("s", result.turn_id)
    assert record is not None
    assert (record.outcome, record.index, record.revision) == ("completed", 1, 2)
    # Answered, continued: a late answer keeps the first decision.
    late = await cores.second.approve("s", "c3")
    assert (late.outcome, late.decision, late.reason) == ("already_answered", "reject", "keep it")


class _same:
    """``async with`` a core that someone else closes."""

    def __init__(self, core: lash.LashCore) -> None:
        self.core = core

    async def __aenter__(self) -> lash.LashCore:
        return self.core

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_an_answer_makes_the_session_runnable(cores: Cores, log: str) -> None:
    """A session waiting for an answer is not work for a worker; once answered it is."""
    async with cores.first.session("s") as session:
        await session.turn(CLEANUP).run()
    store = cores.second.store
    assert "s" not in await store.runnable_sessions()
    await cores.second.approve("s", "c2")
    assert "s" in await store.runnable_sessions()


# -- bad answers --------------------------------------------------------------------------------


@pytest.fixture
async def held(tmp_path: Path, log: str) -> AsyncIterator[tuple[lash.LashCore, lash.Session]]:
    """A SQLite core and its session ``s``, stopped with c2 and c3 held."""
    async with make_core(f"sqlite:///{tmp_path}/lash.db") as core:
        async with core.session("s") as session:
            result = await session.turn(CLEANUP).run()
            assert result.reason == "awaiting_approval"
            yield core, session


async def test_a_second_answer_keeps_the_first(held: tuple[lash.LashCore, lash.Session]) -> None:
    """Answered twice: the second changes nothing and reports the first decision; a retry
    under the caller's key is the same answer again."""
    core, _ = held
    first = await core.approve("s", "c2", decision="reject", reason="no", key="k1")
    assert (first.outcome, first.decision) == ("rejected", "reject")
    retry = await core.approve("s", "c2", decision="reject", reason="no", key="k1")
    assert retry == first
    other = await core.approve("s", "c2", decision="approve")
    assert (other.outcome, other.decision, other.reason) == ("already_answered", "reject", "no")
    other_key = await core.approve("s", "c2", decision="reject", reason="no", key="k2")
    assert other_key.outcome == "already_answered"
    answers = [c for c in await core.store.list_commands("s") if c.name == "approval"]
    assert len(answers) == 1


async def test_unknown_calls_and_bad_answers(held: tuple[lash.LashCore, lash.Session]) -> None:
    """An unknown call id is reported ``unknown``; a bad decision, reason or key is an error
    naming the session and the call; nothing is queued."""
    core, _ = held
    unknown = await core.approve("s", "c9")
    assert (unknown.outcome, unknown.decision, unknown.turn_id) == ("unknown", None, None)
    assert (await core.approve("nobody", "c2")).outcome == "unknown"
    with pytest.raises(lash.SessionError, match=r"session 's': cannot answer approval 'c2': dec"):
        await core.approve("s", "c2", decision="maybe")  # type: ignore[arg-type]
    with pytest.raises(lash.SessionError, match="a key must be a non-empty string"):
        await core.approve("s", "c2", key=" ")
    with pytest.raises(lash.SessionError, match="reason must be a string"):
        await core.approve("s", "c2", reason=3)  # type: ignore[arg-type]
    assert await core.store.list_commands("s") == []
    assert [p.call_id for p in await core.approvals("s")] == ["c2", "c3"]


async def test_after_a_reset_the_calls_expire(
    held: tuple[lash.LashCore, lash.Session], log: str
) -> None:
    """A reset drops the waiting turn: its calls are no longer listed, an answer says
    ``expired``, and an answer queued after the reset (before it was applied) has no effect."""
    core, session = held
    await core.enqueue_command("s", "reset", key="r1")
    early = await core.approve("s", "c2")  # the reset is not applied yet: accepted
    assert early.outcome == "approved"
    await session.apply_commands()  # the reset, then the answer
    assert await core.approvals("s") == []
    late = await core.approve("s", "c3")
    assert (late.outcome, late.decision, late.turn_id) == ("expired", None, early.turn_id)
    assert await session.drain() == []  # nothing to continue
    assert "delete_file old.log" not in logged(log)
    applied = [
        e.data
        for e in (await core.store.read_events("s")).events
        if e.type == "command_applied" and e.data["command"]["name"] == "approval"
    ]
    assert len(applied) == 1
    assert "awaits approval any more" in applied[0]["error"]
    # The session goes on: a new turn in the new frame.
    result = await session.turn(calls_message(("read_file", {"path": "a"}, "c1"))).run()
    assert result.ok


async def test_a_new_turn_supersedes_unanswered_calls(
    held: tuple[lash.LashCore, lash.Session], log: str
) -> None:
    """A new turn while a call waits: the held calls get an error result (so the model's
    history has no call without its result) and expire; the new turn runs."""
    core, session = held
    await core.approve("s", "c2")  # one of two answered: the turn cannot go on
    result = await session.turn("hello").run()
    assert result.ok
    assert "delete_file old.log" not in logged(log)
    results = [n for n in session.nodes if isinstance(n, lash.ToolResultNode)]
    assert [(n.call_id, n.is_error, n.turn) for n in results] == [
        ("c1", False, 1),
        ("c2", True, 1),
        ("c3", True, 1),
    ]
    assert "started before every call held for approval was answered" in results[1].content
    for call_id in ("c2", "c3"):
        answer = await core.approve("s", call_id, decision="reject")
        assert answer.outcome in ("expired", "already_answered")
    assert (await core.approve("s", "c3")).outcome == "expired"
    assert (await core.approve("s", "c2")).outcome == "already_answered"  # answered, then expired


async def test_a_new_turn_first_continues_an_answered_turn(
    held: tuple[lash.LashCore, lash.Session], log: str
) -> None:
    """Every held call answered, a new ``session.turn()`` continues the stopped turn first
    (its own commit and turn record), then runs."""
    core, session = held
    await core.approve("s", "c2")
    await core.approve("s", "c3")
    stopped = session.nodes[-1]
    assert isinstance(stopped, lash.TurnOutcome)
    result = await session.turn("and now?").run()
    assert (result.ok, result.index, session.turns) == (True, 2, 2)
    record = await core.turn_record("s", stopped.turn_id)
    assert record is not None and record.outcome == "completed"
    assert logged(log).count("delete_file old.log") == 1
    assert logged(log).count("delete_file keep.log") == 1
    outcomes = [n for n in session.nodes if isinstance(n, lash.TurnOutcome)]
    assert [(o.turn, o.outcome, o.reason) for o in outcomes] == [
        (1, "stopped", "awaiting_approval"),
        (1, "completed", None),
        (2, "completed", None),
    ]


# -- before_tool_call asks -----------------------------------------------------------------------


class Redirect:
    """Runs after approvaltools' before_tool_call: moves to /etc go to /etc/backup instead."""

    lash_plugin = lash.PluginMeta(name="redirect")

    @lash.hookimpl
    def before_tool_call(self, call: lash.ToolCall, context: lash.ToolContext) -> Any:
        if call.arguments.get("target") == "/etc":
            return lash.ReplaceToolArguments({**call.arguments, "target": "/etc/backup"})
        return None


async def test_before_tool_call_asks_for_the_call_as_it_would_run(tmp_path: Path, log: str) -> None:
    """A ``RequireApproval`` directive holds the call; a later plugin's replaced arguments are
    what the person approves and what runs; the plugin and its reason are listed."""
    async with make_core(f"sqlite:///{tmp_path}/lash.db", Redirect()) as core:
        async with core.session("s") as session:
            move = calls_message(
                ("move_file", {"source": "a", "target": "/etc"}, "m1"),
                ("move_file", {"source": "b", "target": "docs"}, "m2"),
            )
            result = await session.turn(move).run()
            assert result.reason == "awaiting_approval"
            assert logged(log) == ["model asks_for_tools", "move_file b docs"]
            (pending,) = await core.approvals("s")
            assert (pending.call_id, pending.arguments) == (
                "m1",
                {"source": "a", "target": "/etc/backup"},
            )
            assert pending.requested_by == "approvaltools"
            assert pending.why == "moves a file out of the project, to /etc"
            await core.approve("s", "m1")
            (done,) = await session.drain()
    assert done.ok
    assert logged(log)[-2:] == ["move_file a /etc/backup", "model answers"]


def test_a_tool_approval_must_be_never_or_always() -> None:
    """``lash.tool(fn, approval=...)`` accepts ``never`` and ``always`` only, naming the tool."""
    with pytest.raises(ValueError, match="tool 'read_file': approval must be 'never' or 'always'"):
        lash.tool(approval_tools.read_file, approval="sometimes")  # type: ignore[call-overload]
    assert lash.tool(approval_tools.read_file).approval == "never"


# -- a real restart: processes ---------------------------------------------------------------------


def install(tmp_path: Path) -> dict[str, str]:
    """``approvaltools`` installed for ``lash`` subprocesses, ``lash.toml`` loading it on
    ``tmp_path/lash.db``; returns their environment."""
    site = tmp_path / "site"
    info = site / "approvaltools-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: approvaltools\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[lash.plugins]\napprovaltools = approval_tools\n", encoding="utf-8"
    )
    (tmp_path / "lash.toml").write_text(
        'plugins = ["standard", "stores", "approvaltools"]\n'
        f'store = "sqlite:///{tmp_path / "lash.db"}"\nprovider = "policy"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LASH_", "OPENAI_"))}
    env["PYTHONPATH"] = _pkgs.pythonpath(site, TESTS)
    env["APPROVAL_LOG"] = str(tmp_path / "approval.log")
    return env


def lash_cli(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_pkgs.LASH), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()


def start_worker(tmp_path: Path, env: dict[str, str], n: int) -> subprocess.Popen[bytes]:
    with (tmp_path / f"worker{n}.err").open("wb") as err:
        return subprocess.Popen(
            [str(_pkgs.LASH), "worker", "--poll", "0.05", "--lease-ttl", "2"],
            cwd=tmp_path,
            env=env,
            stderr=err,
        )


async def until(what: str, check: Any, tmp_path: Path, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    errors = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("worker*.err"))
    raise AssertionError(f"timed out waiting for {what}; workers' stderr:\n{errors}")


@pytest.mark.slow
async def test_a_restart_between_the_stop_and_the_answer(
    tmp_path: Path, workers: list[subprocess.Popen[bytes]]
) -> None:
    """Real processes: a ``lash worker`` runs the turn until it stops for approval and is
    killed (SIGKILL); ``lash sessions approvals / approve / reject`` answer from other
    processes; a new ``lash worker`` continues the same turn, and the tool runs once."""
    env = install(tmp_path)
    log = env["APPROVAL_LOG"]
    ok = lash_cli(tmp_path, env, "sessions", "enqueue", "ops", CLEANUP)
    assert ok.returncode == 0, ok.stderr
    workers.append(start_worker(tmp_path, env, 0))
    reader = lash.LashCore(plugins=[stores], builtins=(), store=f"sqlite:///{tmp_path / 'lash.db'}")
    async with reader:
        pending = await until("the held calls", lambda: reader.approvals("ops"), tmp_path)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        assert logged(log) == ["model asks_for_tools", "read_file notes.txt"]

        listed = lash_cli(tmp_path, env, "sessions", "approvals", "ops", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [(r["call_id"], r["tool"], r["arguments"]) for r in rows] == [
            ("c2", "delete_file", {"path": "old.log"}),
            ("c3", "delete_file", {"path": "keep.log"}),
        ]
        assert {r["turn_id"] for r in rows} == {pending[0].turn_id}
        table = lash_cli(tmp_path, env, "sessions", "approvals", "ops")
        assert table.stdout.splitlines()[0].split() == [
            "CALL", "TOOL", "REQUESTED", "TURN", "BY", "ARGUMENTS"
        ]  # fmt: skip

        approve = lash_cli(tmp_path, env, "sessions", "approve", "ops", "c2")
        assert approve.returncode == 0, approve.stderr
        assert approve.stdout.startswith("c2: approved; the session's next execution continues")
        reject = lash_cli(
            tmp_path, env, "sessions", "reject", "ops", "c3", "--reason", "keep it", "--json"
        )
        assert reject.returncode == 0, reject.stderr
        assert json.loads(reject.stdout)["outcome"] == "rejected"
        again = lash_cli(tmp_path, env, "sessions", "approve", "ops", "c3")
        assert again.returncode == 3
        assert again.stdout.strip() == "c3: already answered: rejected (keep it); nothing changed"
        unknown = lash_cli(tmp_path, env, "sessions", "reject", "ops", "c7")
        assert (unknown.returncode, unknown.stdout.split(":")[1].strip()) == (3, "unknown")

        workers.append(start_worker(tmp_path, env, 1))

        async def finished() -> Any:
            return await reader.turn_record("ops", pending[0].turn_id)

        record = await until("the continued turn", finished, tmp_path)
    assert (record.outcome, record.index) == ("completed", 1)
    assert_continued(record.result["text"], log)
    pids = [line.rsplit("pid=", 1)[1] for line in Path(log).read_text().splitlines()]
    assert pids[0] == pids[1] == str(workers[0].pid)
    assert pids[2] == pids[3] == str(workers[1].pid)


# -- a continuation that stops again; a held turn that fails -----------------------------------


async def test_a_continuation_may_stop_for_approval_again(tmp_path: Path, log: str) -> None:
    """The continued turn's model asks for another held call: the same turn stops again (still
    no turn record), is answered, and completes; one turn, three commits."""
    from _recorder import Recorder

    rec = Recorder(
        [
            lash.ScriptedResponse(tool_calls=[lash.ScriptedToolCall("delete_file", {"path": "a"})]),
            lash.ScriptedResponse(tool_calls=[lash.ScriptedToolCall("delete_file", {"path": "b"})]),
            lash.ScriptedResponse(text="both gone"),
        ]
    )
    async with lash.LashCore(
        plugins=[standard, stores, approval_tools, rec],
        builtins=(),
        store=f"sqlite:///{tmp_path}/lash.db",
        provider="recorder",
    ) as core:
        async with core.session("s") as session:
            first = await session.turn("clean").run()
            assert first.reason == "awaiting_approval"
            await core.approve("s", "call_1")
            (again,) = await session.drain()
            assert (again.turn_id, again.outcome, again.reason) == (
                first.turn_id,
                "stopped",
                "awaiting_approval",
            )
            assert await core.turn_record("s", first.turn_id) is None
            assert [p.call_id for p in await core.approvals("s")] == ["call_2"]
            await core.approve("s", "call_2")
            (done,) = await session.drain()
            assert (done.turn_id, done.text, session.turns, session.revision) == (
                first.turn_id,
                "both gone",
                1,
                3,
            )
    assert logged(log) == ["delete_file a", "delete_file b"]
    assert len(rec.requests) == 3


class FailsAfterTurn:
    lash_plugin = lash.PluginMeta(name="fails")

    @lash.hookimpl
    def after_turn(self, turn: lash.TurnView) -> None:
        raise RuntimeError("audit log unavailable")


async def test_a_held_turn_that_fails_holds_nothing(tmp_path: Path, log: str) -> None:
    """after_turn fails the turn that was stopping for approval: its held calls are closed as
    in any failed turn, nothing waits, an answer says ``expired``."""
    async with make_core(f"sqlite:///{tmp_path}/lash.db", FailsAfterTurn()) as core:
        async with core.session("s") as session:
            result = await session.turn(CLEANUP).run()
            assert (result.outcome, result.error_plugin) == ("failed", "fails")
            assert await core.approvals("s") == []
            assert (await core.approve("s", "c2")).outcome == "expired"
            closed = [n for n in session.nodes if isinstance(n, lash.ToolResultNode)]
            assert [(n.call_id, n.is_error) for n in closed] == [
                ("c1", False),
                ("c2", True),
                ("c3", True),
            ]
            assert "audit log unavailable" in closed[1].content


class SlowDeploy:
    """A ``deploy`` tool that always asks for approval, then runs until its turn is cancelled."""

    lash_plugin = lash.PluginMeta(name="deploy")

    def __init__(self) -> None:
        self.started = asyncio.Event()

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(lash.tool(self.deploy, approval="always"))

    async def deploy(self, ctx: lash.ToolContext) -> str:
        """Deploy."""
        self.started.set()
        await ctx.cancelled.wait()
        return "never"


async def test_a_continued_turn_is_cancelled_by_its_id(tmp_path: Path, log: str) -> None:
    """While the continuation runs the approved tool, ``core.cancel_turn`` from another core
    finds the turn by its id: it commits ``stopped(cancelled)``, with its record."""
    url = f"sqlite:///{tmp_path}/lash.db"
    deploy = SlowDeploy()
    async with make_core(url, deploy) as core, make_core(url) as desk:
        async with core.session("s") as session:
            stopped = await session.turn(calls_message(("deploy", {}, "d1"))).run()
            await desk.approve("s", "d1")
            drain = asyncio.create_task(session.drain())
            await asyncio.wait_for(deploy.started.wait(), 10)
            receipt = await desk.cancel_turn("s", stopped.turn_id, reason="rollback")
            assert receipt.status == "requested"
            (result,) = await asyncio.wait_for(drain, 10)
    assert (result.turn_id, result.outcome, result.reason) == (
        stopped.turn_id,
        "stopped",
        "cancelled",
    )
    assert result.cancel_reason == "rollback"
    async with make_core(url) as reader:
        record = await reader.turn_record("s", stopped.turn_id)
    assert record is not None and record.reason == "cancelled"
