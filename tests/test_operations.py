"""Plugin operations: registered with typed args and results, discovered with their JSON schemas
(``core.operations``, ``lash plugins --json``), called by hosts with their session rule and
argument checks; a query cannot change its session, a command commits atomically."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from _pkgs import run_lash
from _recorder import Recorder

import lash
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "operations.py"


@pytest.fixture
def notes() -> ModuleType:
    """docs/examples/operations.py, the notes plugin."""
    spec = importlib.util.spec_from_file_location("operations_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_core(*plugins: object, rec: Recorder | None = None) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, rec or Recorder([]), *plugins],
        builtins=(),
        store="memory://",
        provider="recorder",
    )


#: The JSON schemas of the notes operations, written from their attrs classes.
ADD_ARGS = {
    "type": "object",
    "description": "Arguments of ``notes.add``.",
    "properties": {"text": {"type": "string"}, "follow_up": {"type": "boolean", "default": False}},
    "required": ["text"],
    "additionalProperties": False,
}
ADDED = {
    "type": "object",
    "properties": {"count": {"type": "integer"}},
    "required": ["count"],
    "additionalProperties": False,
}
LISTING = {
    "type": "object",
    "properties": {
        "notes": {"type": "array", "items": {"type": "string"}},
        "turns": {"type": "integer"},
    },
    "required": ["notes", "turns"],
    "additionalProperties": False,
}
NO_ARGS = {"type": "object", "properties": {}, "additionalProperties": False}
DIGEST_ARGS = {
    "type": "object",
    "properties": {"text": {"type": "string"}},
    "required": ["text"],
    "additionalProperties": False,
}
DIGEST = {
    "type": "object",
    "properties": {"words": {"type": "integer"}},
    "required": ["words"],
    "additionalProperties": False,
}


async def test_operations_are_listed_with_kind_session_rule_and_schemas(notes: ModuleType) -> None:
    """core.operations.list() describes each operation: plugin, kind, session rule, schemas."""
    async with make_core(notes.NotesPlugin()) as core:
        listed = {info.name: info for info in core.operations.list()}
    assert listed == {
        "notes.add": lash.OperationInfo(
            "notes.add",
            "notes",
            "command",
            "required",
            "Add a note (and, with follow_up, queue a turn about it).",
            ADD_ARGS,
            ADDED,
        ),
        "notes.digest": lash.OperationInfo(
            "notes.digest",
            "notes",
            "task",
            "required",
            "Digest a long text, as a process (a worker runs it).",
            DIGEST_ARGS,
            DIGEST,
        ),
        "notes.list": lash.OperationInfo(
            "notes.list",
            "notes",
            "query",
            "required",
            "The session's notes and how many turns it ran.",
            NO_ARGS,
            LISTING,
        ),
    }


async def test_a_command_commits_state_and_queued_input_and_a_query_reads_them(
    notes: ModuleType,
) -> None:
    """notes.add changes state and queues a turn in one commit; notes.list reads both; the
    queued input becomes a turn when the session is drained."""
    rec = Recorder([{"text": "first"}, {"text": "noted"}])
    async with make_core(notes.NotesPlugin(), rec=rec) as core:
        session = await core.session("s").open()
        await session.turn("hi").run()
        revision = session.revision
        added = await core.operations.call(
            "notes.add", {"text": "buy milk", "follow_up": True}, session_id="s"
        )
        assert added == notes.Added(1)
        record = await core.store.load("s")
        assert record is not None and record.revision == revision + 1
        assert record.plugin_states["notes"] == {"items": ["buy milk"]}
        (queued,) = await core.inputs("s")
        assert (queued.text, queued.key, queued.source) == (
            "Consider this note: buy milk",
            "note:buy milk",
            "operation:notes.add",
        )
        listing = await core.operations.call("notes.list", session_id="s")
        assert listing == notes.Listing(["buy milk"], 1)
        again = await core.session("s").open()
        (result,) = await again.drain()
        assert result.text == "noted"
        assert rec.requests[-1].messages[-1].content == "Consider this note: buy milk"
        # An args instance is accepted as it is.
        assert await core.operations.call("notes.add", notes.AddNote("eggs"), session_id="s") == (
            notes.Added(2)
        )


async def test_a_failing_command_commits_nothing() -> None:
    """A command that raises after changing state and queueing input leaves the session as it
    was; the error names the plugin and the operation, with the cause."""

    @attrs.define
    class Counter:
        n: int = 0

    async def bump(context: lash.OperationContext) -> None:
        assert context.session is not None
        context.session.state(Counter).n += 1
        await context.enqueue("never queued")
        raise RuntimeError("disk full")

    class Bumper:
        lash_plugin = lash.PluginMeta(name="bumper", state=Counter)

        @lash.hookimpl
        def register_operations(self, register: lash.RegisterOperation) -> None:
            register("bump", bump, kind="command")

    async with make_core(Bumper(), rec=Recorder([{"text": "a"}])) as core:
        session = await core.session("s").open()
        await session.turn("hi").run()
        with pytest.raises(lash.OperationError) as failed:
            await core.operations.call("bump", session_id="s")
        assert str(failed.value) == (
            "operation 'bump' of plugin 'bumper' failed: RuntimeError: disk full"
        )
        assert (failed.value.plugin, failed.value.operation) == ("bumper", "bump")
        assert isinstance(failed.value.__cause__, RuntimeError)
        record = await core.store.load("s")
        assert record is not None and record.revision == 1
        assert record.plugin_states.get("bumper") in (None, {"n": 0})
        assert await core.inputs("s") == []


async def test_a_query_cannot_change_its_session() -> None:
    """A query's view refuses changes, naming the session, the operation and its plugin."""

    async def sneaky(context: lash.OperationContext) -> None:
        assert context.session is not None
        await context.session.record("note", {"x": 1})

    async def queue(context: lash.OperationContext) -> None:
        await context.enqueue("hello", session_id="s")

    class Sneaky:
        lash_plugin = lash.PluginMeta(name="sneaky")

        @lash.hookimpl
        def register_operations(self, register: lash.RegisterOperation) -> None:
            register("sneaky", sneaky)
            register("queue", queue)

    async with make_core(Sneaky(), rec=Recorder([{"text": "a"}])) as core:
        await (await core.session("s").open()).turn("hi").run()
        with pytest.raises(lash.OperationError) as failed:
            await core.operations.call("sneaky", session_id="s")
        assert "operation 'sneaky' of plugin 'sneaky' failed: SessionError: session 's': " in str(
            failed.value
        )
        assert "is a query: it cannot record nodes" in str(failed.value)
        assert failed.value.session_id == "s"
        with pytest.raises(lash.OperationError, match="is a query: only commands may queue"):
            await core.operations.call("queue")
        record = await core.store.load("s")
        assert record is not None and record.revision == 1


async def test_arguments_and_session_rules_are_checked_before_anything_runs(
    notes: ModuleType,
) -> None:
    """Bad args name the plugin, operation and field; the session rule is enforced; an unknown
    operation lists the known ones; an unknown session is UnknownSession."""
    async with make_core(notes.NotesPlugin()) as core:
        with pytest.raises(lash.OperationError) as bad:
            await core.operations.call("notes.add", {"text": 3}, session_id="s")
        assert str(bad.value).startswith("operation 'notes.add' of plugin 'notes': invalid args: ")
        assert "text" in str(bad.value) and bad.value.field == "text"
        with pytest.raises(lash.OperationError) as extra:
            await core.operations.call("notes.add", {"text": "a", "colour": 1}, session_id="s")
        assert "colour" in str(extra.value)
        with pytest.raises(lash.OperationError, match=r"'notes\.list' of plugin 'notes': needs a"):
            await core.operations.call("notes.list")
        with pytest.raises(lash.OperationError, match=r"unknown operation 'nope'; known: notes"):
            await core.operations.call("nope")
        with pytest.raises(lash.UnknownSession):
            await core.operations.call("notes.list", session_id="missing")

    async def ping(context: lash.OperationContext) -> str:
        return "pong"

    class Ping:
        lash_plugin = lash.PluginMeta(name="ping")

        @lash.hookimpl
        def register_operations(self, register: lash.RegisterOperation) -> None:
            register("ping", ping, session="forbidden")

    async with make_core(Ping()) as core:
        assert await core.operations.call("ping") == "pong"
        with pytest.raises(lash.OperationError, match="'ping' of plugin 'ping': takes no session"):
            await core.operations.call("ping", session_id="s")
        with pytest.raises(lash.OperationError, match="takes no arguments"):
            await core.operations.call("ping", {"a": 1})


def registering(name: str, **calls: Any) -> object:
    class Plugin:
        lash_plugin = lash.PluginMeta(name=name)

        @lash.hookimpl
        def register_operations(self, register: lash.RegisterOperation) -> None:
            for op, (fn, kwargs) in calls.items():
                register(op, fn, **kwargs)

    return Plugin()


async def noop(context: lash.OperationContext) -> None:
    """Does nothing."""


@attrs.frozen
class Odd:
    """Arguments with a field no JSON schema expresses."""

    when: complex


def test_names_are_unique_across_plugins_and_bad_registrations_fail_attributed() -> None:
    """A name two plugins register, an unknown kind, a bad session rule, a bad signature and
    an args parameter that is not an attrs class each fail the core build naming the plugin."""
    with pytest.raises(lash.PluginError, match="operation 'x' is registered by both plugin 'a'"):
        make_core(registering("a", x=(noop, {})), registering("b", x=(noop, {})))

    def two_many(context: Any, a: Any, b: Any) -> None: ...

    def bad_args(context: Any, args: int) -> None: ...

    def odd_args(context: Any, args: Odd) -> None: ...

    cases = {
        "kind must be one of": {"x": (noop, {"kind": "job"})},
        "session must be one of": {"x": (noop, {"session": "maybe"})},
        r"fn must take \(context\) or \(context, args\)": {"x": (two_many, {})},
        "must be annotated with an attrs class": {"x": (bad_args, {})},
        "operation name must be": {"x y": (noop, {})},
        r"operation 'x': .*unsupported type complex": {"x": (odd_args, {})},
    }
    for message, calls in cases.items():
        with pytest.raises(lash.PluginError, match=message) as failed:
            make_core(registering("bad", **calls))
        assert failed.value.plugin == "bad" and failed.value.hook == "register_operations"


def test_lash_plugins_json_lists_operations_with_schemas(tmp_path: Path) -> None:
    """``lash plugins --json`` (an installed plugin, a real subprocess) lists its operations
    with kind, session rule and schemas, in registration order; ``lash plugins`` names them."""
    site = tmp_path / "site"
    info = site / "lash_notes-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lash-notes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[lash.plugins]\nnotes = lash_notes:NotesPlugin\n")
    shutil.copy(EXAMPLE, site / "lash_notes.py")
    host = tmp_path / "host"
    host.mkdir()
    (host / "lash.toml").write_text('provider = "scripted"\n')
    proc = run_lash("plugins", "--json", cwd=host, installed=[site])
    assert proc.returncode == 0, proc.stderr
    (entry,) = [e for e in json.loads(proc.stdout) if e["name"] == "notes"]
    assert entry["operations"] == [
        {
            "name": "notes.list",
            "plugin": "notes",
            "kind": "query",
            "session": "required",
            "description": "The session's notes and how many turns it ran.",
            "args_schema": NO_ARGS,
            "result_schema": LISTING,
        },
        {
            "name": "notes.add",
            "plugin": "notes",
            "kind": "command",
            "session": "required",
            "description": "Add a note (and, with follow_up, queue a turn about it).",
            "args_schema": ADD_ARGS,
            "result_schema": ADDED,
        },
        {
            "name": "notes.digest",
            "plugin": "notes",
            "kind": "task",
            "session": "required",
            "description": "Digest a long text, as a process (a worker runs it).",
            "args_schema": DIGEST_ARGS,
            "result_schema": DIGEST,
        },
    ]
    # The task runs as a process of its implicit kind, which the plugin contributes too.
    assert entry["process_kinds"] == ["operation:notes.digest"]
    text = run_lash("plugins", cwd=host, installed=[site])
    assert (
        "operations: notes.list (query, session required), notes.add (command, session "
        "required), notes.digest (task, session required)" in text.stdout
    )


# -- tasks: operations that run as processes --------------------------------------------------


@attrs.frozen
class BuildReport:
    """Arguments of ``report.build``."""

    topic: str
    pages: int = 1


@attrs.frozen
class Report:
    title: str
    pages: int


async def build_report(context: lash.ProcessContext, args: BuildReport) -> Report:
    """Build a report (long-running)."""
    await context.emit({"stage": "writing"})
    return Report(f"{args.topic} ({context.session_id or 'no session'})", args.pages)


class Reports:
    lash_plugin = lash.PluginMeta(name="reports")

    @lash.hookimpl
    def register_operations(self, register: lash.RegisterOperation) -> None:
        register("report.build", build_report, kind="task", timeout=60)


async def test_a_task_starts_a_process_that_a_worker_runs() -> None:
    """Calling a task returns its pending process (kind operation:<name>, the args as payload)
    at once; a worker runs the operation's fn with the process context; its result is the
    process's; a key makes the start idempotent."""
    async with make_core(Reports(), rec=Recorder([{"text": "a"}])) as core:
        (info,) = core.operations.list()
        assert (info.kind, info.session) == ("task", "optional")
        assert info.result_schema["properties"] == {
            "title": {"type": "string"},
            "pages": {"type": "integer"},
        }
        kind = core.registry.of("process_kind")["operation:report.build"]
        assert (kind.plugin, kind.value.timeout) == ("reports", 60.0)
        await (await core.session("s").open()).turn("hi").run()
        started = await core.operations.call(
            "report.build", {"topic": "sales", "pages": 3}, session_id="s", key="k1"
        )
        assert isinstance(started, lash.ProcessRecord)
        assert (started.kind, started.status, started.session_id, started.source) == (
            "operation:report.build",
            "pending",
            "s",
            "operation:report.build",
        )
        assert started.payload == {"topic": "sales", "pages": 3}
        again = await core.operations.call(
            "report.build", {"topic": "sales", "pages": 3}, session_id="s", key="k1"
        )
        assert again.id == started.id
        await core.run_worker(once=True, sessions=False)
        done = await core.processes.wait(started.id, timeout=10)
        assert (done.status, done.result) == ("succeeded", {"title": "sales (s)", "pages": 3})
        assert done.progress == {"stage": "writing"}


async def test_a_task_checks_its_args_and_session_before_starting_anything() -> None:
    """Bad args and an unknown session start no process; key= is only for tasks."""
    async with make_core(Reports(), notes_plugin(), rec=Recorder([])) as core:
        with pytest.raises(lash.OperationError, match="invalid args: topic") as bad:
            await core.operations.call("report.build", {"pages": 2})
        assert (bad.value.plugin, bad.value.field) == ("reports", "topic")
        with pytest.raises(lash.UnknownSession):
            await core.operations.call("report.build", {"topic": "x"}, session_id="nope")
        assert await core.processes.list() == []
        with pytest.raises(lash.OperationError, match="is not a task: key="):
            await core.operations.call("notes.list", session_id="s", key="k")


def notes_plugin() -> object:
    spec = importlib.util.spec_from_file_location("operations_example_2", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NotesPlugin()


def test_task_registrations_are_checked() -> None:
    """A task must be async and take (context, args); recovery/timeout belong to tasks only."""

    def sync_task(context: Any, args: Any) -> None: ...

    async def no_args(context: Any) -> None: ...

    cases = {
        "a task's fn must be `async def fn": [
            {"x": (sync_task, {"kind": "task"})},
            {"x": (no_args, {"kind": "task"})},
        ],
        "recovery and timeout are a task's": [{"x": (noop, {"timeout": 5})}],
    }
    for message, attempts in cases.items():
        for calls in attempts:
            with pytest.raises(lash.PluginError, match=message) as failed:
                make_core(registering("bad", **calls))
            assert failed.value.plugin == "bad"
