"""Bad input never escapes as a raw Python error: config bytes, session ids, deep tool arguments.

Config files that are not UTF-8 and invalid session ids are checked here end to end (kernel,
both builtin stores, the command line); the argument checks of ``LashCore(...)`` are in
``test_core.py``, the store side of the id rule in ``test_store_conformance.py``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from _pkgs import run_lash
from _recorder import Recorder
from openai_wire_server import Reply, WireServer, WireToolCall

import lash
import lash_plugins_builtin.openai as openai_plugin
from lash._tools.arguments import MAX_ARGUMENT_DEPTH
from lash_plugins_builtin.sqlite import SQLiteStore

DOCS = Path(__file__).resolve().parent.parent / "docs"

# -- a config file that is not UTF-8 ------------------------------------------------------------


@pytest.mark.parametrize("command", [["doctor"], ["plugins"], ["plugins", "--json"]])
def test_cli_reports_a_config_that_is_not_utf8_without_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    """`lash doctor` and `lash plugins` print the file and byte offset, no traceback, exit 1."""
    config = tmp_path / "lash.toml"
    config.write_bytes(b'store = "memory://"\nmodel = "gpt\xe9"\n')  # Latin-1 é at offset 32
    result = run_lash(*command, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert f"{config}:2:13: not UTF-8 text: byte 0xe9 at byte offset 32 " in output
    assert "Traceback" not in output and "UnicodeDecodeError" not in output


def test_doctor_suggests_the_plugin_a_misspelled_options_table_meant(tmp_path: Path) -> None:
    """`lash doctor` reports [options.opnai] with "did you mean 'openai'?"."""
    (tmp_path / "lash.toml").write_text(
        'autoload = false\nstore = "memory://"\n[options.opnai]\ntimeout = 3\n', encoding="utf-8"
    )
    result = run_lash("doctor", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "  - [options.opnai] is set but no plugin named 'opnai' is enabled "
        "(did you mean 'openai'?)\n" in result.stdout
    )


# -- session ids -----------------------------------------------------------------------------------

#: Ids breaking the rule of docs/sessions.rst, and the part of the rule each breaks.
BAD_IDS: list[tuple[Any, str]] = [
    ("", "it is empty"),
    ("x" * 257, "it has 257 characters, more than the 256 allowed"),
    ("ok\udc80", "it holds a lone surrogate (U+DC80) at index 2, so it cannot be encoded as UTF-8"),
    ("a\x00b", "it holds a control character (U+0000) at index 1"),
    ("a\nb", "it holds a control character (U+000A) at index 1"),
    ("a\x1fb", "it holds a control character (U+001F) at index 1"),
    ("\x7f", "it holds a control character (U+007F) at index 0"),
    ("a\x80", "it holds a control character (U+0080) at index 1"),
    ("a\x9fz", "it holds a control character (U+009F) at index 1"),
    ("para\u2029graph", "it holds a control character (U+2029) at index 4"),
    (" lead", "it starts or ends with whitespace"),
    ("trail\t", "it holds a control character (U+0009) at index 5"),
    ("trail\u3000", "it starts or ends with whitespace"),
    (42, "session ids are strings, got int"),
    (None, "session ids are strings, got NoneType"),
]

#: Ids at the edges of the rule, all valid.
GOOD_IDS = [
    "x",
    "é" * 256,
    "😀" * 256,  # 256 characters, 1,024 bytes of UTF-8
    'support/ticket 4711: Zoë\'s "case"; DROP TABLE sessions; --',
    "a\u00a0b",  # a no-break space inside is fine
]


def _refusal(call: Callable[[], object]) -> str:
    with pytest.raises(lash.SessionError) as info:
        call()
    assert type(info.value) is lash.SessionError
    return str(info.value)


@pytest.mark.parametrize(("session_id", "broken"), BAD_IDS, ids=repr)
def test_core_session_refuses_an_invalid_id(session_id: Any, broken: str) -> None:
    """core.session(id) raises SessionError naming the rule broken and showing the id."""
    core = lash.LashCore(plugins=["standard"], store="memory://", autoload=False)
    message = _refusal(lambda: core.session(session_id))
    shown = repr(session_id) if len(repr(session_id)) <= 80 else "'xxxxxxxxxxxx"
    assert message.startswith(f"invalid session id {shown}")
    assert broken in message


def test_long_invalid_id_is_cut_short_in_the_message() -> None:
    """A 100,000-character id is shown cut short (the message stays under 300 characters)."""
    message = _refusal(lambda: lash.store.check_session_id("y" * 100_000))
    assert len(message) < 300
    assert "it has 100000 characters, more than the 256 allowed" in message


@pytest.mark.parametrize("session_id", GOOD_IDS, ids=repr)
def test_ids_at_the_edges_of_the_rule_are_valid(session_id: str) -> None:
    """The longest ids, any script, emoji, quotes and an inner no-break space are accepted."""
    assert lash.store.check_session_id(session_id) == session_id


def _calls(store: lash.store.Store, session_id: Any) -> dict[str, Callable[[], Awaitable[object]]]:
    lease = lash.store.Lease(session_id, "owner", 1, 2e9)
    return {
        "acquire_lease": lambda: store.acquire_lease(session_id, "owner", ttl=30),
        "load": lambda: store.load(session_id),
        "load_full": lambda: store.load(session_id, full=True),
        "commit": lambda: store.commit(
            session_id, lease=lease, expected_revision=0, delta=lash.store.CommitDelta()
        ),
        "delete": lambda: store.delete(session_id),
    }


@pytest.mark.anyio
async def test_every_store_method_refuses_invalid_ids_alike(tmp_path: Path) -> None:
    """memory:// and sqlite:// refuse each invalid id in every method with the kernel's message,
    before touching anything: the SQLite file is never created."""
    db = tmp_path / "never.db"
    stores = [lash.store.MemoryStore(), SQLiteStore(f"sqlite:///{db}")]
    core = lash.LashCore(plugins=["standard"], store="memory://", autoload=False)
    for session_id, _ in BAD_IDS:
        expected = _refusal(lambda sid=session_id: core.session(sid))
        for store in stores:
            for method, call in _calls(store, session_id).items():
                with pytest.raises(lash.SessionError) as info:
                    await call()
                assert type(info.value) is lash.SessionError, (store, method)
                assert str(info.value) == expected, (store, method)
    for store in stores:
        await store.close()
    assert not db.exists()


@pytest.mark.anyio
async def test_a_turn_runs_and_commits_under_the_longest_emoji_id(tmp_path: Path) -> None:
    """A 256-emoji id (1,024 bytes) runs a turn on a real SQLite file and reads back whole."""
    session_id = "😀" * 256
    url = f"sqlite:///{tmp_path}/lash.db"
    options = {"scripted": {"responses": [{"text": "hi"}]}}
    core = lash.LashCore(
        plugins=["standard", "stores", "scripted"],
        store=url,
        provider="scripted",
        options=options,
        autoload=False,
    )
    async with core:
        session = await core.session(session_id).open()
        result = await session.turn("hello").run()
        assert (result.outcome, result.revision) == ("completed", 1)
    reader = SQLiteStore(url)
    try:
        record = await reader.load(session_id)
        listed = [row.session_id for row in await reader.list_sessions()]
    finally:
        await reader.close()
    assert record is not None and record.session_id == session_id and record.turns == 1
    assert listed == [session_id]


def test_docs_show_the_real_message_for_an_invalid_id() -> None:
    """The example error on the sessions page is the message lash gives for 'a\\nb'."""
    page = (DOCS / "sessions.rst").read_text(encoding="utf-8")
    shown = re.search(r"    lash\.SessionError: (invalid session id .*?)\n\n", page, re.S)
    assert shown is not None
    message = _refusal(lambda: lash.store.check_session_id("a\nb"))
    assert " ".join(shown.group(1).split()) == message


def test_cli_reports_an_invalid_session_id_without_traceback(tmp_path: Path) -> None:
    """`lash sessions show ' x'` prints the rule broken on stderr and exits non-zero."""
    (tmp_path / "lash.toml").write_text('store = "memory://"\n', encoding="utf-8")
    result = run_lash("sessions", "show", " x", cwd=tmp_path)
    assert result.returncode != 0
    assert "invalid session id ' x': it starts or ends with whitespace" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# -- tool arguments nested too deep ----------------------------------------------------------------

#: The limit documented in docs/tools.rst: the arguments object is level 1, and each array or
#: object inside adds one.
LIMIT = 64
TOO_DEEP = (
    "the arguments nest deeper than 64 levels of arrays and objects (the limit for tool "
    "arguments); send flatter arguments"
)


def nested_lists(levels: int) -> Any:
    """``levels`` lists, each the only item of the one around it (``[[[]]]`` is 3 levels)."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


class EchoTools:
    """A typed tool and a raw tool that record what they are called with."""

    lash_plugin = lash.PluginMeta(name="echo_tools")

    def __init__(self) -> None:
        self.calls: list[Any] = []

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        calls = self.calls

        def typed(value: list[Any]) -> str:
            """Echo a list."""
            calls.append(value)
            return "typed ok"

        def raw(arguments: dict[str, Any], context: lash.ToolContext) -> str:
            calls.append(arguments["value"])
            return "raw ok"

        register(typed)
        register(lash.raw_tool("raw", "Echo anything.", {"type": "object"}, raw))


def deep_core(url: str, recorder: Recorder, *plugins: object) -> lash.LashCore:
    return lash.LashCore(
        plugins=["standard", "stores", recorder, *plugins],
        store=url,
        provider="recorder",
        autoload=False,
    )


async def run_one_call(
    tmp_path: Path, tool: str, value: Any, *plugins: object
) -> tuple[lash.TurnResult, Recorder, list[Any]]:
    """One turn on a real SQLite file whose model calls ``tool(value=value)``, then answers."""
    call = lash.ScriptedToolCall(tool, {"value": value}, id="c1")
    recorder = Recorder([lash.ScriptedResponse(tool_calls=[call]), "done"])
    tools = EchoTools()
    async with deep_core(f"sqlite:///{tmp_path}/lash.db", recorder, tools, *plugins) as core:
        session = await core.session("deep").open()
        result = await session.turn("go").run()
    return result, recorder, tools.calls


async def stored_nodes(tmp_path: Path) -> tuple[Any, ...]:
    """The nodes of session "deep", read back by a new store on the same file."""
    store = SQLiteStore(f"sqlite:///{tmp_path}/lash.db")
    try:
        record = await store.load("deep", full=True)
    finally:
        await store.close()
    assert record is not None
    return record.nodes


@pytest.mark.anyio
@pytest.mark.parametrize("tool", ["typed", "raw"])
async def test_arguments_10000_levels_deep_get_an_error_and_the_turn_commits(
    tmp_path: Path, tool: str
) -> None:
    """10,000 nested lists from the model: the tool is not called, the model reads why, and the
    turn completes and commits on a real SQLite file, readable afterwards."""
    result, recorder, calls = await run_one_call(tmp_path, tool, nested_lists(10_000))
    assert (result.outcome, result.text, result.revision) == ("completed", "done", 1)
    expected = f"tool {tool!r} was not called: {TOO_DEEP}"
    assert [(r.result.content, r.result.is_error) for r in result.tool_calls] == [(expected, True)]
    assert calls == []
    answer = [m for m in recorder.requests[1].messages if m.role == "tool"]
    assert [m.content for m in answer] == [expected]

    nodes = await stored_nodes(tmp_path)
    (assistant,) = [n for n in nodes if isinstance(n, lash.AssistantMessage) and n.tool_calls]
    (recorded,) = assistant.tool_calls
    # Recorded as an invalid-arguments call: its text down to one level past the limit (the
    # object, 63 lists, then the 65th level cut), and no arguments to walk.
    assert recorded.arguments == {}
    assert recorded.invalid_arguments == '{"value": ' + "[" * 63 + "[…]" + "]" * 63 + "}"
    (result_node,) = [n for n in nodes if isinstance(n, lash.ToolResultNode)]
    assert (result_node.content, result_node.is_error) == (expected, True)


@pytest.mark.anyio
@pytest.mark.parametrize("tool", ["typed", "raw"])
async def test_arguments_exactly_at_the_limit_are_accepted_and_stored(
    tmp_path: Path, tool: str
) -> None:
    """64 levels (the object and 63 lists) reach the tool and load back equal from SQLite."""
    value = nested_lists(LIMIT - 1)
    result, _, calls = await run_one_call(tmp_path, tool, value)
    assert [r.result.content for r in result.tool_calls] == [f"{tool} ok"]
    assert calls == [value]
    nodes = await stored_nodes(tmp_path)
    (assistant,) = [n for n in nodes if isinstance(n, lash.AssistantMessage) and n.tool_calls]
    assert assistant.tool_calls[0].arguments == {"value": value}


@pytest.mark.anyio
async def test_one_level_past_the_limit_is_refused(tmp_path: Path) -> None:
    """65 levels (the object and 64 lists) are refused."""
    result, _, calls = await run_one_call(tmp_path, "typed", nested_lists(LIMIT))
    assert [r.result.content for r in result.tool_calls] == [
        f"tool 'typed' was not called: {TOO_DEEP}"
    ]
    assert calls == []


@pytest.mark.anyio
async def test_depth_counts_objects_and_arrays_alike(tmp_path: Path) -> None:
    """Objects nested in objects count as arrays do: 65 levels of {"k": ...} are refused."""
    value: Any = {}
    for _ in range(LIMIT - 1):
        value = {"k": value}
    result, _, _ = await run_one_call(tmp_path, "raw", value)
    assert result.tool_calls[0].result.is_error
    assert TOO_DEEP in result.tool_calls[0].result.content


class DeepReplacer:
    """Replaces every call's arguments with 10,000 nested lists (a buggy plugin)."""

    lash_plugin = lash.PluginMeta(name="deep_replacer")

    @lash.hookimpl
    def before_tool_call(self, call: lash.ToolCall) -> lash.ReplaceToolArguments:
        return lash.ReplaceToolArguments({"value": nested_lists(10_000)})


@pytest.mark.anyio
async def test_deep_arguments_from_a_hook_get_an_error_result(tmp_path: Path) -> None:
    """Arguments a before_tool_call hook makes too deep fail the call, not the turn."""
    result, _, calls = await run_one_call(tmp_path, "typed", [1], DeepReplacer())
    assert (result.outcome, result.revision) == ("completed", 1)
    assert [r.result.content for r in result.tool_calls] == [
        f"invalid arguments for tool 'typed': {TOO_DEEP}"
    ]
    assert calls == []


@pytest.mark.anyio
async def test_openai_arguments_too_deep_for_json_loads_fail_the_call_not_the_turn(
    tmp_path: Path,
) -> None:
    """A Chat Completions response whose arguments JSON nests 100,000 levels (json.loads raises
    RecursionError on it) becomes an invalid-arguments call: error result, turn committed, and
    the raw text replayed to the model as it sent it."""
    raw = '{"value": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with WireServer() as server:
        server.push(
            Reply(tool_calls=[WireToolCall("c1", "typed", [raw[:50_000], raw[50_000:]])]),
            Reply(text=["done"]),
        )
        options = {"openai": {"base_url": server.base_url, "api_key": "sk-test", "backoff": 0.01}}
        tools = EchoTools()
        core = lash.LashCore(
            plugins=["standard", "stores", openai_plugin, tools],
            store=f"sqlite:///{tmp_path}/lash.db",
            provider="openai",
            options=options,
            autoload=False,
        )
        async with core:
            session = await core.session("deep").open()
            result = await session.turn("go").run()
        replayed = server.requests[1].body["messages"]
    assert (result.outcome, result.text, result.revision) == ("completed", "done", 1)
    expected = f"tool 'typed' was not called: {TOO_DEEP}"
    assert [r.result.content for r in result.tool_calls] == [expected]
    assert tools.calls == []
    (assistant,) = [m for m in replayed if m["role"] == "assistant"]
    assert assistant["tool_calls"][0]["function"]["arguments"] == raw
    nodes = await stored_nodes(tmp_path)
    (call_node,) = [n for n in nodes if isinstance(n, lash.ToolCallNode)]
    assert call_node.call.invalid_arguments == raw


def test_tools_page_documents_the_limit() -> None:
    """docs/tools.rst states the nesting limit lash applies, and the message the model reads."""
    page = " ".join((DOCS / "tools.rst").read_text(encoding="utf-8").split())
    assert MAX_ARGUMENT_DEPTH == LIMIT
    assert f"nested more than **{LIMIT} levels**" in page
    assert f"``tool 'x' was not called: {TOO_DEEP}``" in page


# -- a model call's usage that is not token counts ---------------------------------------------


class OddProvider:
    """A provider plugin, ``odd``: a scripted model answering ``first``, then "again"."""

    lash_plugin = lash.PluginMeta(name="odd_provider")

    def __init__(self, first: lash.ScriptedResponse) -> None:
        self.first = first

    @lash.hookimpl
    def register_providers(self, register: Any) -> None:
        register("odd", lash.ScriptedProvider([self.first, lash.ScriptedResponse(text="again")]))


def odd_core(tmp_path: Path, provider: OddProvider) -> lash.LashCore:
    """A core of the standard plugins and ``provider``, storing in ``tmp_path``/lash.db."""
    return lash.LashCore(
        plugins=["standard", "stores", provider],
        builtins=(),
        store=f"sqlite:///{tmp_path}/lash.db",
        provider="odd",
    )


def odd_usage(usage: lash.Usage) -> OddProvider:
    """A provider whose first answer, "hello", reports ``usage``."""
    return OddProvider(lash.ScriptedResponse(text="hello", usage=usage))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("usage", "problem"),
    [
        (lash.Usage(12.5, 3), "input_tokens 12.5 (float)"),  # type: ignore[arg-type]
        (lash.Usage(1, True), "output_tokens True (bool)"),
        (lash.Usage(1, 2, None), "cached_tokens None (NoneType)"),  # type: ignore[arg-type]
        (lash.Usage(2**63, 3), "input_tokens 9223372036854775808 (int)"),  # past 64 bits
    ],
)
async def test_usage_that_is_not_token_counts_fails_the_turn_not_the_session(
    tmp_path: Path, usage: lash.Usage, problem: str
) -> None:
    """A provider reporting a token count that is not an int in 64 bits (a fraction, a bool,
    None, 2**63): the turn fails naming the provider and the count, is committed as failed on a
    real SQLite file, and the session opens again from the file and takes the next turn.
    (Stored, such a count made every later load of the session fail, or the commit: reviews
    found both.)"""
    plugin = odd_usage(usage)
    async with odd_core(tmp_path, plugin) as core:
        session = await core.session("s").open()
        result = await session.turn("hi").run()
        await session.close()
    assert (result.outcome, result.revision) == ("failed", 1)
    assert result.error == (f"provider 'odd' reported usage with {problem}: token counts are ints")
    fixed = odd_usage(lash.Usage(12, 3))  # the provider fixed: the same answers, counts of ints
    async with odd_core(tmp_path, fixed) as core:
        session = await core.session("s").open(must_exist=True)
        again = await session.turn("once more").run()
        await session.close()
    assert (again.outcome, again.text, again.revision) == ("completed", "hello", 2)
    assert again.usage == lash.Usage(12, 3)


@pytest.mark.anyio
async def test_a_whole_float_count_is_taken_as_its_int(tmp_path: Path) -> None:
    """``12.0`` (as some JSON APIs give a count) is the int 12: the turn completes, and the
    session reads back from the file with int counts."""
    plugin = odd_usage(lash.Usage(12.0, 3.0))  # type: ignore[arg-type]
    async with odd_core(tmp_path, plugin) as core:
        session = await core.session("s").open()
        result = await session.turn("hi").run()
        await session.close()
        assert (result.outcome, result.text) == ("completed", "hello")
        assert result.usage == lash.Usage(12, 3)
        session = await core.session("s").open(must_exist=True)
        (answer,) = [n for n in session.nodes if isinstance(n, lash.AssistantMessage)]
        await session.close()
    assert answer.usage == lash.Usage(12, 3)
    assert [type(n) for n in attrs.astuple(answer.usage)] == [int, int, int]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lash.ToolCall("c1", None, {}), "name None (NoneType)"),  # type: ignore[arg-type]
        (lash.ToolCall(7, "echo", {}), "id 7 (int)"),  # type: ignore[arg-type]
    ],
)
async def test_a_tool_call_without_a_string_id_or_name_fails_the_turn_not_the_session(
    tmp_path: Path, call: lash.ToolCall, problem: str
) -> None:
    """A server's ``"name": null`` or an int id: the turn fails naming the provider, is
    committed as failed on a real SQLite file, and the session takes the next turn (the commit
    refused the call, and the turn and its input were lost: a review found it)."""
    url = f"sqlite:///{tmp_path}/lash.db"
    provider = OddProvider(lash.ScriptedResponse(tool_calls=(call,)))
    async with odd_core(tmp_path, provider) as core:
        session = await core.session("s").open()
        result = await session.turn("hi").run()
        assert (result.outcome, result.revision) == ("failed", 1)
        assert result.error == (
            f"provider 'odd' reported a tool call with {problem}: a tool call's id and name "
            "are strings"
        )
        again = await session.turn("once more").run()
        await session.close()
    assert (again.outcome, again.revision) == ("completed", 2)
    async with lash.LashCore(plugins=["stores"], builtins=(), store=url) as core:
        record = await core.store.load("s")
    assert record is not None
    assert [n.text for n in record.nodes if isinstance(n, lash.UserMessage)] == ["hi", "once more"]
