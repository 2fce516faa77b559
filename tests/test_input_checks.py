"""A turn's input and the arguments of calls about a turn are checked before anything runs,
on every store alike, naming the session and what is wrong.

Before these checks, ``session.turn(123)`` sent ``123`` to the model and then failed the
commit on SQLite and Postgres (after the model call) but was committed as it was on
``memory://``; ``turn("x", items="abc")`` had three items ``"a"``, ``"b"``, ``"c"``; an item
that is not JSON failed SQLite's claim naming a ``turn_started`` event and passed on
``memory://``; ``cancel_turn("s", 5)`` answered ``unknown``."""

from __future__ import annotations

from typing import Any

import pytest
from _cores import Echo
from _recorder import Recorder

import lash
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio


def make_core(store_url: str, rec: Recorder, *plugins: object) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, rec, *plugins],
        builtins=(),
        store=store_url,
        provider="recorder",
    )


BAD_TEXTS = [
    (123, "the input must be text (str), got 123 (int)"),
    (None, "the input must be text (str), got None (NoneType)"),
    (b"hi", "the input must be text (str), got b'hi' (bytes)"),
]

BAD_ITEMS = [
    ("abc", "items must be a list of values, got 'abc' (str) (one item is [value])"),
    ({"a": 1}, "items must be a list of values, got {'a': 1} (dict) (one item is [value])"),
    (5, "items must be a list of values, got 5 (int)"),
    (
        [{"ok": 1}, object()],
        "items[1] cannot be stored as JSON: Object of type object is not JSON serializable",
    ),
    ([{1, 2}], "items[0] cannot be stored as JSON: Object of type set is not JSON serializable"),
    (
        ["ok", {"x": float("nan")}],
        "items[1] cannot be stored as JSON: Out of range float values are not JSON compliant",
    ),
]


async def refused_turn(store_url: str, problem: str, text: Any, **kw: Any) -> None:
    """``session.turn(text, **kw)`` is refused with ``problem``: no model call, no commit."""
    rec = Recorder([{"text": "first"}, {"text": "never"}])
    async with make_core(store_url, rec) as core:
        session = await core.session("s").open()
        await session.turn("hello").run()
        revision, calls = session.revision, len(rec.requests)
        with pytest.raises(lash.SessionError) as info:
            session.turn(text, **kw)
        assert str(info.value) == f"session 's': turn() got an invalid input: {problem}"
        assert info.value.session_id == "s"
        assert len(rec.requests) == calls
        assert session.revision == revision
        record = await core.store.load("s")
        assert record is not None and record.revision == revision


@pytest.mark.parametrize(("text", "problem"), BAD_TEXTS)
async def test_a_turn_whose_input_is_not_text_is_refused_before_the_model_call(
    store_url: str, text: Any, problem: str
) -> None:
    """turn() with text that is not a str: refused, no model call, no commit."""
    await refused_turn(store_url, problem, text)


@pytest.mark.parametrize(("items", "problem"), BAD_ITEMS)
async def test_a_turn_whose_items_are_not_a_list_of_json_values_is_refused(
    store_url: str, items: Any, problem: str
) -> None:
    """turn() with items that are not a list of JSON values: refused, no model call, no commit."""
    await refused_turn(store_url, problem, "hi", items=items)


async def test_a_turn_takes_a_tuple_or_a_list_of_json_items(store_url: str) -> None:
    """Items as a list or a tuple of JSON values are kept, and read back after reopening."""
    rec = Recorder([{"text": "one"}, {"text": "two"}])
    async with make_core(store_url, rec) as core:
        session = await core.session("s").open()
        await session.turn("a", items=[{"form": {"x": 1}}, "note"]).run()
        await session.turn("b", items=({"y": [1, 2]},)).run()
        await session.close()
        again = await core.session("s").open()
        users = [n for n in again.nodes if isinstance(n, lash.UserMessage)]
        assert [u.items for u in users] == [({"form": {"x": 1}}, "note"), ({"y": [1, 2]},)]


async def test_queued_input_whose_items_are_a_string_is_refused(store_url: str) -> None:
    """enqueue() with items given as a string is refused (not three one-letter items)."""
    async with make_core(store_url, Recorder([])) as core:
        with pytest.raises(lash.SessionError) as info:
            await core.enqueue("s", "hi", items="abc")  # type: ignore[arg-type]
        assert str(info.value) == (
            "session 's': cannot queue this input: items must be a list of values, got 'abc' "
            "(str) (one item is [value])"
        )
        assert await core.inputs("s") == []


BAD_TURN_CALLS = [
    ("turn_record", {"turn_id": 5}, "turn_record() got turn_id=5; it must be a non-empty string"),
    (
        "turn_record",
        {"turn_id": " "},
        "turn_record() got turn_id=' '; it must be a non-empty string",
    ),
    ("cancel_turn", {"turn_id": 5}, "cancel_turn() got turn_id=5; it must be a non-empty string"),
    (
        "cancel_turn",
        {"turn_id": "t", "origin": ""},
        "cancel_turn() got origin=''; it must be a non-empty string",
    ),
    (
        "cancel_turn",
        {"turn_id": "t", "reason": 3},
        "cancel_turn() got reason=3; it must be a string or None",
    ),
]


@pytest.mark.parametrize(("call", "kwargs", "problem"), BAD_TURN_CALLS)
async def test_calls_about_a_turn_refuse_ids_that_are_not_text(
    store_url: str, call: str, kwargs: dict[str, Any], problem: str
) -> None:
    """turn_record and cancel_turn refuse a turn id, origin or reason that is not text."""
    async with make_core(store_url, Recorder([{"text": "ok"}])) as core:
        session = await core.session("s").open()
        await session.turn("hi", id="t").run()
        kwargs = dict(kwargs)
        turn_id = kwargs.pop("turn_id")
        with pytest.raises(lash.SessionError) as info:
            await getattr(core, call)("s", turn_id, **kwargs)
        assert str(info.value) == f"session 's': {problem}"
        record = await core.turn_record("s", "t")
        assert record is not None and record.outcome == "completed"


class Member:
    """A hook that changes membership through its view, with ``changes`` as given."""

    lash_plugin = lash.PluginMeta(name="member")

    def __init__(self, changes: Any) -> None:
        self.changes = changes

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> None:
        await turn.session.set_tool_membership(self.changes)


BAD_MEMBERSHIP = [
    (
        ["echo"],
        "set_tool_membership() takes a mapping of tool names to True or False, got ['echo'] (list)",
    ),
    (
        {"echo": "yes"},
        "set_tool_membership() got 'echo': 'yes' (str); it takes a tool name (str) and True or "
        "False",
    ),
    (
        {"echo": 0},
        "set_tool_membership() got 'echo': 0 (int); it takes a tool name (str) and True or False",
    ),
]


@pytest.mark.parametrize(("changes", "problem"), BAD_MEMBERSHIP)
async def test_membership_changes_must_map_tool_names_to_booleans(
    store_url: str, changes: Any, problem: str
) -> None:
    """set_tool_membership takes tool names to True or False only; nothing changes otherwise."""
    rec = Recorder([{"text": "ok"}])
    core = make_core(store_url, rec, Echo())
    async with core:
        session = await core.session("s").open()
        await session.set_tool_membership({"echo": False})
        revision = session.revision
        with pytest.raises(lash.SessionError) as info:
            await session.set_tool_membership(changes)
        assert str(info.value) == f"session 's': {problem}"
        assert session.revision == revision
        assert [e.member for e in session.tools() if e.name == "echo"] == [False]


async def test_membership_changes_through_a_view_are_checked_too() -> None:
    """A hook's membership change through its view is checked too, before any model call."""
    rec = Recorder([{"text": "never"}])
    core = make_core("memory://", rec, Echo(), Member({"echo": "no"}))
    async with core:
        session = await core.session("s").open()
        result = await session.turn("hi").run()
        assert result.outcome == "failed"
        assert "set_tool_membership() got 'echo': 'no' (str)" in (result.error or "")
        assert rec.requests == []


async def test_compaction_instructions_must_be_text(store_url: str) -> None:
    """compact() with instructions that are not text is refused and commits nothing."""
    async with make_core(store_url, Recorder([{"text": "ok"}])) as core:
        session = await core.session("s").open()
        await session.turn("hi").run()
        revision = session.revision
        with pytest.raises(lash.SessionError) as info:
            await session.compact(5)  # type: ignore[arg-type]
        assert str(info.value) == (
            "session 's': compaction instructions must be a string or None, got 5 (int)"
        )
        assert session.revision == revision


BAD_OPTIONS = [
    (5, "options: expected a mapping of plugin names to their options, got 5 (int)"),
    (
        {"standard": 5},
        "options['standard']: expected a mapping of option names to values, got 5 (int)",
    ),
    ({"standard": {1: 2}}, "options['standard']: an option name must be a str, got 1 (int)"),
]


@pytest.mark.parametrize(("options", "problem"), BAD_OPTIONS)
async def test_handle_options_of_the_wrong_shape_are_refused_naming_them(
    options: Any, problem: str
) -> None:
    """session() and child_session() refuse options of the wrong shape, naming each bad entry."""
    async with make_core("memory://", Recorder([{"text": "p"}])) as core:
        with pytest.raises(lash.SessionError) as info:
            core.session("s", options=options)
        assert str(info.value).splitlines() == [
            "session 's': session() got invalid options:",
            f"  - {problem}",
        ]
        parent = await core.session("p").open()
        await parent.turn("hi").run()
        with pytest.raises(lash.SessionError) as info:
            core.child_session("p", id="kid", options=options)
        assert str(info.value).splitlines() == [
            "session 'kid': child_session() got invalid options:",
            f"  - {problem}",
        ]


class Asker:
    """A hook that asks the model directly through its view, with the arguments given."""

    lash_plugin = lash.PluginMeta(name="asker")

    def __init__(self, messages: Any, **kwargs: Any) -> None:
        self.messages, self.kwargs = messages, kwargs

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> None:
        await turn.session.complete(self.messages, **self.kwargs)


HELLO = [lash.Message("user", "hello")]

BAD_COMPLETIONS = [
    ("hi", {"source": "x"}, "messages must be a list of lash.Message, got 'hi' (str)"),
    ([], {"source": "x"}, "messages is empty: a completion needs at least one lash.Message"),
    (["hi"], {"source": "x"}, "messages[0] must be a lash.Message, got 'hi' (str)"),
    (HELLO, {"source": 5}, "source must be a non-empty string (a usage source), got 5"),
    (HELLO, {"source": ""}, "source must be a non-empty string (a usage source), got ''"),
    (HELLO, {"source": "x", "model": 4}, "model must be a string or None, got 4 (int)"),
    (
        HELLO,
        {"source": "x", "options": "hot"},
        "options must be a mapping or None, got 'hot' (str)",
    ),
]


@pytest.mark.parametrize(("messages", "kwargs", "problem"), BAD_COMPLETIONS)
async def test_a_direct_completion_checks_its_arguments_before_the_provider(
    store_url: str, messages: Any, kwargs: dict[str, Any], problem: str
) -> None:
    """Before, a string went to the provider as its messages, and a source that is not a name
    was the usage's source (failing the commit on SQLite and Postgres, after the turn)."""
    rec = Recorder([{"text": "never"}])
    core = make_core(store_url, rec, Asker(messages, **kwargs))
    async with core:
        session = await core.session("s").open()
        result = await session.turn("hi").run()
        assert result.outcome == "failed"
        assert f"session 's': complete(): {problem}" in (result.error or "")
        assert rec.requests == []


BAD_COMMAND_ARGS = [
    ("x", "expected a mapping of names to values, got 'x' (str)"),
    ([1, 2], "expected a mapping of names to values, got [1, 2] (list)"),
    ({1: 2}, "an argument name must be a str, got 1 (int)"),
    (
        {"a": object()},
        "they cannot be stored as JSON: Object of type object is not JSON serializable",
    ),
]


@pytest.mark.parametrize(("args", "problem"), BAD_COMMAND_ARGS)
async def test_command_args_must_be_named_json_values(
    store_url: str, args: Any, problem: str
) -> None:
    """Before, a string or a list failed with a bare ValueError or TypeError, and an int key or
    a value that is not JSON was queued as it was (on memory://: an int key read back as a
    string elsewhere)."""
    async with make_core(store_url, Recorder([])) as core:
        with pytest.raises(lash.SessionError) as info:
            await core.enqueue_command("s", "reset", key="k", args=args)
        assert str(info.value) == f"session 's': the args of command 'reset': {problem}"
        session = await core.session("s").open()
        with pytest.raises(lash.SessionError):
            await session.enqueue_command("reset", key="k2", args=args)
        queued = await core.enqueue_command("s", "reset", key="k3", args={"why": "test"})
        assert queued.args == {"why": "test"}


async def test_queued_items_given_as_a_generator_are_all_queued(store_url: str) -> None:
    """Items are an iterable of values: a generator's items are queued, in order (before, the
    check for images used it up and the input was queued with no items)."""
    async with make_core(store_url, Recorder([])) as core:
        queued = await core.enqueue("s", "hi", items=(item for item in [{"a": 1}, "b"]))
        assert queued.items == ({"a": 1}, "b")
        [stored] = await core.inputs("s")
        assert stored.items == ({"a": 1}, "b")


QUEUED_NOT_JSON = [
    ([{"ok": 1}, object()], "Object of type object is not JSON serializable"),
    ([{1, 2}], "Object of type set is not JSON serializable"),
    ([{"x": float("nan")}], "Out of range float values are not JSON compliant"),
    ([float("inf")], "Out of range float values are not JSON compliant"),
]


@pytest.mark.parametrize(("items", "problem"), QUEUED_NOT_JSON)
async def test_queued_items_that_are_not_json_are_refused_on_every_store(
    store_url: str, items: Any, problem: str
) -> None:
    """Items that are not JSON data are a SessionError, as the docs say, and nothing is queued
    (before, an object failed with a bare TypeError, and NaN failed SQLite's insert with
    "malformed JSON" but was queued on memory:// and Postgres)."""
    async with make_core(store_url, Recorder([])) as core:
        with pytest.raises(lash.SessionError) as info:
            await core.enqueue("s", "hi", items=items)
        assert str(info.value) == (
            f"session 's': cannot queue this input: its items cannot be stored as JSON: {problem}"
        )
        assert await core.inputs("s") == []


async def test_command_args_that_are_not_json_numbers_are_refused_on_every_store(
    store_url: str,
) -> None:
    """NaN is not JSON (before, it was queued as it was)."""
    async with make_core(store_url, Recorder([])) as core:
        with pytest.raises(lash.SessionError) as info:
            await core.enqueue_command("s", "reset", key="k", args={"x": float("nan")})
        assert str(info.value) == (
            "session 's': the args of command 'reset': they cannot be stored as JSON: "
            "Out of range float values are not JSON compliant"
        )
        assert await core.store.list_commands("s", settled=True) == []


BAD_SOURCE_CALLS = [
    (
        lambda core: core.enqueue("s", "hi", source=5),
        "enqueue() got source=5; it must be a string (who queued it)",
    ),
    (
        lambda core: core.enqueue_command("s", "reset", key="k", source=b"cli"),
        "enqueue_command() got source=b'cli'; it must be a string (who queued it)",
    ),
    (
        lambda core: core.approve("s", "c1", source=["cli"]),
        "approve() got source=['cli']; it must be a string (who queued it)",
    ),
    (
        lambda core: core.cancel_inputs("s", "in-1", 5),
        "cancel_inputs() got target 5 (int); a target is an input's id or key (a string)",
    ),
]


@pytest.mark.parametrize(("call", "problem"), BAD_SOURCE_CALLS)
async def test_mailbox_calls_refuse_a_source_or_target_that_is_not_text(
    store_url: str, call: Any, problem: str
) -> None:
    """Before, memory:// queued a source of 5 as it was (and answered a target of 5
    ``unknown``), while SQLite and Postgres failed with a bare AttributeError."""
    async with make_core(store_url, Recorder([])) as core:
        await core.enqueue("s", "first", key="in-1")
        with pytest.raises(lash.SessionError) as info:
            await call(core)
        assert str(info.value) == f"session 's': {problem}"
        assert info.value.session_id == "s"
        assert [i.text for i in await core.inputs("s")] == ["first"]
        assert await core.store.list_commands("s", settled=True) == []


class Kinds:
    """A process kind run by a worker, and one its owner completes."""

    lash_plugin = lash.PluginMeta(name="kinds")

    @lash.hookimpl
    def register_process_kinds(self, register: lash.RegisterProcessKind) -> None:
        async def noop(context: lash.ProcessContext, payload: Any) -> Any:
            return payload

        register("noop", noop)
        register("owned", noop, recovery=lash.RecoveryDisposition.EXTERNALLY_OWNED)


BAD_PROCESS_CALLS = [
    (
        lambda p, ids: p.start("noop", 1, source=5),
        "processes.start() got source=5; it must be a string",
    ),
    (lambda p, ids: p.get(5), "processes.get() got process_id=5; it must be a string"),
    (lambda p, ids: p.wait(5), "processes.wait() got process_id=5; it must be a string"),
    (lambda p, ids: p.list(kind=5), "processes.list() got kind=5; it must be a string or None"),
    (
        lambda p, ids: p.list(status=["pending"]),
        "processes.list() got status=['pending']; it must be a string or None",
    ),
    (lambda p, ids: p.list(limit="5"), "processes.list() got limit='5'; it must be an int"),
    (
        lambda p, ids: p.cancel(ids["noop"], reason=5),
        "processes.cancel() got reason=5; it must be a string",
    ),
    (
        lambda p, ids: p.complete(ids["owned"], error=5),
        "processes.complete() got error=5; it must be a string or None",
    ),
]


@pytest.mark.parametrize(("call", "problem"), BAD_PROCESS_CALLS)
async def test_process_calls_refuse_arguments_that_are_not_text(
    store_url: str, call: Any, problem: str
) -> None:
    """A ProcessError naming the call and the argument, and nothing written, on every store
    (before: memory:// kept or looked up an int as it was, while SQLite and Postgres failed
    with a bare AttributeError, TypeError or a DataError, or stored it)."""
    core = lash.LashCore(
        plugins=[standard, stores, Recorder([]), Kinds()], builtins=(), store=store_url
    )
    async with core:
        processes = core.processes
        ids = {kind: (await processes.start(kind, 1)).id for kind in ("noop", "owned")}
        with pytest.raises(lash.ProcessError) as info:
            await call(processes, ids)
        assert str(info.value) == problem
        found = await processes.list()
        assert [(p.kind, p.status, p.error) for p in found] == [
            ("noop", "pending", None),
            ("owned", "pending", None),
        ]


class Queuer:
    """after_turn: queues ``messages`` for a later turn (``lash.EnqueueMessages``)."""

    lash_plugin = lash.PluginMeta(name="queuer")

    def __init__(self, messages: Any) -> None:
        self.messages = messages

    @lash.hookimpl
    def after_turn(self) -> lash.EnqueueMessages:
        return lash.EnqueueMessages(self.messages)


BAD_DIRECTIVE_MESSAGES = [
    ("hey", "messages must be a list of str, got 'hey' (str) (one message is [text])"),
    (["a", 5], "messages[1] must be a str, got 5 (int)"),
    (
        ["a", " "],
        "messages[1] cannot be queued: session 's': cannot queue this input: it is empty (no "
        "text, no items)",
    ),
    (
        ["x" * (1 << 20 | 1)],
        "messages[0] cannot be queued: session 's': cannot queue this input: it is 1,048,577 "
        "bytes, more than the 1,048,576 an input may hold",
    ),
]


@pytest.mark.parametrize(("messages", "problem"), BAD_DIRECTIVE_MESSAGES)
async def test_messages_a_plugin_queues_are_checked_as_queued_input_is(
    store_url: str, messages: Any, problem: str
) -> None:
    """The turn fails naming the plugin, is committed, and nothing is queued (before: a string
    was queued one input per character, a 5 failed the commit with a bare error after the
    model call, and an empty or oversized input passed the mailbox's limits)."""
    core = make_core(store_url, Recorder([{"text": "answer"}]), Queuer(messages))
    async with core:
        session = await core.session("s").open()
        result = await session.turn("hi").run()
        assert (result.outcome, result.error_plugin) == ("failed", "queuer")
        assert result.error == f"plugin 'queuer' returned lash.EnqueueMessages whose {problem}"
        assert session.revision == 1
        assert await core.inputs("s") == []


class Nanny:
    """before_turn: records or emits ``data`` through the session view, keeping the error."""

    lash_plugin = lash.PluginMeta(name="nanny")

    def __init__(self, call: str, data: Any) -> None:
        self.call = call
        self.data = data
        self.errors: list[BaseException] = []

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> None:
        try:
            if self.call == "record":
                await turn.session.record("reading", self.data)
            else:
                await turn.session.emit("reading", self.data)
        except lash.SessionError as exc:
            self.errors.append(exc)


@pytest.mark.parametrize(
    ("call", "did", "data"),
    [
        ("record", "recorded", {"x": float("nan")}),
        ("record", "recorded", [float("inf")]),
        ("emit", "emitted", {"x": float("-inf")}),
        ("emit", "emitted", float("nan")),
    ],
)
async def test_plugin_data_that_is_nan_or_infinite_is_refused_on_every_store(
    store_url: str, call: str, did: str, data: Any
) -> None:
    """A plugin's record() or emit() of NaN or an infinity is a SessionError naming the session
    and the plugin, as a set is, and nothing of it is committed (before: every store kept it as
    Python writes it, ``NaN``, which is not JSON: lash serve sent it to clients whose JSON
    parser refuses it, and its event stream broke at that event)."""
    nanny = Nanny(call, data)
    async with make_core(store_url, Recorder([{"text": "answer"}]), nanny) as core:
        session = await core.session("s").open()
        result = await session.turn("hi").run()
        assert result.outcome == "completed"
        [error] = nanny.errors
        assert str(error) == (
            f"session 's': plugin 'nanny' {did} data that cannot be stored as JSON: "
            "Out of range float values are not JSON compliant"
        )
        assert [n for n in session.nodes if isinstance(n, lash.PluginNode)] == []
        page = await core.store.read_events("s", after=0, limit=100)
        assert [e.type for e in page.events] == ["turn_started", "turn_committed"]


class Measures:
    """Process kinds whose run gives back NaN or an infinity: as its result, or as progress
    (``progress``: what emit() raised is its result)."""

    lash_plugin = lash.PluginMeta(name="measures")

    @lash.hookimpl
    def register_process_kinds(self, register: lash.RegisterProcessKind) -> None:
        async def infinite(context: lash.ProcessContext, payload: Any) -> Any:
            return {"ratio": float("inf")}

        async def progress(context: lash.ProcessContext, payload: Any) -> Any:
            try:
                await context.emit({"done": float("nan")})
            except lash.ProcessError as exc:
                return {"refused": str(exc)}
            return {"refused": None}

        async def handed_over(context: lash.ProcessContext, payload: Any) -> None:
            return None

        register("infinite", infinite)
        register("progress", progress)
        register("owned", handed_over, recovery=lash.RecoveryDisposition.EXTERNALLY_OWNED)


def measures_core(store_url: str) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, Recorder([]), Measures()], builtins=(), store=store_url
    )


NOT_JSON = "Out of range float values are not JSON compliant"


async def test_a_process_payload_of_nan_is_refused_on_every_store(store_url: str) -> None:
    """processes.start() with NaN in the payload: a ProcessError naming the kind, and nothing
    written (before: every store kept it, as text that is not JSON)."""
    async with measures_core(store_url) as core:
        with pytest.raises(lash.ProcessError) as info:
            await core.processes.start("infinite", {"x": float("nan")})
        assert str(info.value) == (
            f"the payload of process kind 'infinite' cannot be stored as JSON: {NOT_JSON}"
        )
        assert await core.processes.list() == []


async def test_a_process_result_or_progress_of_nan_is_refused_on_every_store(
    store_url: str,
) -> None:
    """A run that returns an infinity fails, saying why; emit() of NaN is a ProcessError naming
    the process and its kind, which the run may catch, and no progress is stored; complete()
    of an owned process with NaN is refused, and the process stays running (before: every
    store kept them all)."""
    async with measures_core(store_url) as core:
        infinite = await core.processes.start("infinite")
        progress = await core.processes.start("progress")
        owned = await core.processes.start("owned")
        await core.run_worker(once=True, sessions=False)

        failed = await core.processes.get(infinite.id)
        assert failed is not None
        assert (failed.status, failed.result) == ("failed", None)
        assert failed.error == f"its result cannot be stored as JSON: {NOT_JSON}"

        reported = await core.processes.get(progress.id)
        assert reported is not None
        assert (reported.status, reported.progress) == ("succeeded", None)
        assert reported.result == {
            "refused": f"process {progress.id!r} (progress): its progress cannot be stored as "
            f"JSON: {NOT_JSON}"
        }

        with pytest.raises(lash.ProcessError) as info:
            await core.processes.complete(owned.id, result={"x": float("nan")})
        assert str(info.value) == (
            f"process {owned.id!r} (owned): its result cannot be stored as JSON: {NOT_JSON}"
        )
        still = await core.processes.get(owned.id)
        assert still is not None and (still.status, still.result) == ("running", None)
