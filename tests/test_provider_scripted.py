"""The ``scripted`` builtin provider: scripts from code and files, streaming, errors, plugin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lash
import lash_plugins_builtin.scripted as scripted_plugin
from lash import (
    ModelDone,
    ModelEvent,
    ModelRequest,
    Provider,
    ProviderError,
    ScriptExhausted,
    TextDelta,
    ToolCallReady,
    collect_response,
)
from lash_plugins_builtin.scripted import (
    ScriptedProvider,
    ScriptedResponse,
    ScriptedToolCall,
    load_script,
)

REQUEST = ModelRequest(model="scripted-model", messages=(lash.Message("user", "hi"),))


async def events_of(provider: ScriptedProvider) -> list[ModelEvent]:
    return [event async for event in provider.stream(REQUEST)]


def test_scripted_provider_satisfies_the_provider_protocol() -> None:
    """A ScriptedProvider is a Provider."""
    assert isinstance(ScriptedProvider([]), Provider)


@pytest.mark.anyio
async def test_script_from_code_plays_in_order() -> None:
    """Responses play one per call, in order: text, then tool calls, then done."""
    provider = ScriptedProvider(
        [
            ScriptedResponse(
                text="Looking.",
                tool_calls=[ScriptedToolCall("read_file", {"path": "a.txt"}, id="c-1")],
            ),
            "All done.",
        ]
    )
    first = await collect_response(provider.stream(REQUEST))
    assert first.text == "Looking."
    assert first.tool_calls == (lash.ToolCall("c-1", "read_file", {"path": "a.txt"}),)
    assert first.finish_reason == "tool_calls"
    second = await collect_response(provider.stream(REQUEST))
    assert second.text == "All done."
    assert second.tool_calls == ()
    assert second.finish_reason == "stop"
    assert provider.consumed == 2
    assert provider.remaining == 0
    assert provider.requests == [REQUEST, REQUEST]


@pytest.mark.anyio
async def test_event_order_text_then_calls_then_done() -> None:
    """The stream yields text deltas, then tool calls, then exactly one ModelDone."""
    provider = ScriptedProvider(
        [ScriptedResponse(text="ab", tool_calls=[ScriptedToolCall("t"), ScriptedToolCall("u")])]
    )
    events = await events_of(provider)
    assert [type(e) for e in events] == [TextDelta, ToolCallReady, ToolCallReady, ModelDone]


@pytest.mark.anyio
async def test_chunked_streaming() -> None:
    """chunk_size splits the text into several TextDelta events of that many characters."""
    provider = ScriptedProvider([ScriptedResponse(text="abcdefg", chunk_size=3)])
    events = await events_of(provider)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["abc", "def", "g"]


@pytest.mark.anyio
async def test_unchunked_text_is_one_delta_and_empty_text_none() -> None:
    """Without chunk_size the text is one delta; an empty text yields no delta."""
    provider = ScriptedProvider(["hello world", ScriptedResponse()])
    assert [e for e in await events_of(provider) if isinstance(e, TextDelta)] == [
        TextDelta("hello world")
    ]
    assert [e for e in await events_of(provider) if isinstance(e, TextDelta)] == []


def test_chunk_size_must_be_positive() -> None:
    """A chunk size below 1 is rejected when the response is built."""
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        ScriptedResponse(text="x", chunk_size=0)


@pytest.mark.anyio
async def test_generated_ids_are_deterministic_and_unique() -> None:
    """Missing ids become call_1, call_2... counting every played call; given ids are kept."""
    provider = ScriptedProvider(
        [
            ScriptedResponse(tool_calls=[ScriptedToolCall("a"), ScriptedToolCall("b", id="mine")]),
            ScriptedResponse(tool_calls=[ScriptedToolCall("c")]),
        ]
    )
    first = await collect_response(provider.stream(REQUEST))
    second = await collect_response(provider.stream(REQUEST))
    assert [c.id for c in first.tool_calls] == ["call_1", "mine"]
    assert [c.id for c in second.tool_calls] == ["call_3"]


@pytest.mark.anyio
async def test_invalid_arguments_are_passed_through() -> None:
    """A scripted call with invalid_arguments simulates a model sending broken JSON."""
    provider = ScriptedProvider(
        [ScriptedResponse(tool_calls=[ScriptedToolCall("t", invalid_arguments="{not json")])]
    )
    response = await collect_response(provider.stream(REQUEST))
    assert response.tool_calls == (lash.ToolCall("call_1", "t", {}, "{not json"),)


@pytest.mark.anyio
async def test_usage_and_finish_reason() -> None:
    """Usage and an explicit finish reason arrive in ModelDone."""
    usage = lash.Usage(input_tokens=120, output_tokens=8, cached_tokens=100)
    provider = ScriptedProvider([ScriptedResponse(text="x", usage=usage, finish_reason="length")])
    events = await events_of(provider)
    assert events[-1] == ModelDone(usage=usage, finish_reason="length")


@pytest.mark.anyio
async def test_error_response_raises_provider_error_after_its_text() -> None:
    """A scripted error streams the text first, then raises ProviderError; it is consumed."""
    provider = ScriptedProvider([ScriptedResponse(text="par", error="upstream exploded"), "ok"])
    seen: list[ModelEvent] = []
    with pytest.raises(ProviderError, match="upstream exploded") as info:
        async for event in provider.stream(REQUEST):
            seen.append(event)
    assert seen == [TextDelta("par")]
    assert info.value.provider == "scripted"
    assert provider.consumed == 1
    assert (await collect_response(provider.stream(REQUEST))).text == "ok"


@pytest.mark.anyio
async def test_exhaustion_message() -> None:
    """Asking for more responses than the script holds raises ScriptExhausted saying so."""
    provider = ScriptedProvider(["one", "two"])
    await events_of(provider)
    await events_of(provider)
    with pytest.raises(ScriptExhausted) as info:
        await events_of(provider)
    message = str(info.value)
    assert "scripted provider: the script has 2 responses and all were used" in message
    assert "add more responses" in message
    assert "model call #3" in message
    assert info.value.provider == "scripted"


@pytest.mark.anyio
async def test_empty_script_errors_on_first_use() -> None:
    """An empty script fails the first call with the exhaustion message."""
    with pytest.raises(ScriptExhausted, match="the script has 0 responses and all were used"):
        await events_of(ScriptedProvider())


@pytest.mark.anyio
async def test_assert_consumed_lists_unplayed_responses() -> None:
    """assert_consumed names every unplayed response; it passes once all are played."""
    provider = ScriptedProvider(
        ["first", "second reply", ScriptedResponse(tool_calls=[ScriptedToolCall("grep")])]
    )
    await events_of(provider)
    with pytest.raises(AssertionError) as info:
        provider.assert_consumed()
    message = str(info.value)
    assert "2 of 3 responses not played" in message
    assert "#2: text='second reply'" in message
    assert "#3: tool_calls=[grep]" in message
    assert "#1" not in message
    await events_of(provider)
    await events_of(provider)
    provider.assert_consumed()


@pytest.mark.anyio
async def test_extend_and_mapping_responses() -> None:
    """extend() appends to the script; mappings are structured like script file entries."""
    provider = ScriptedProvider()
    provider.extend([{"text": "from a dict", "usage": {"output_tokens": 3}}])
    response = await collect_response(provider.stream(REQUEST))
    assert response.text == "from a dict"
    assert response.usage == lash.Usage(output_tokens=3)


def test_bad_mapping_response_names_the_field() -> None:
    """A malformed mapping response is rejected with its index and the field path."""
    with pytest.raises(ValueError) as info:
        ScriptedProvider(["fine", {"usage": {"input_tokens": "many"}}])
    assert str(info.value) == (
        "invalid scripted response #1:\nresponse.usage.input_tokens: expected int, got 'many' (str)"
    )


def test_a_response_of_another_kind_is_named_by_its_index() -> None:
    """A response that is neither text, a mapping nor a ScriptedResponse (before: a bare
    "'int' object is not iterable"); ``extend`` numbers on from the script and adds nothing
    when one is bad."""
    with pytest.raises(ValueError) as info:
        ScriptedProvider(["fine", 5])
    assert str(info.value) == (
        "invalid scripted response #1: expected a str, a mapping or a lash.ScriptedResponse, "
        "got 5 (int)"
    )
    provider = ScriptedProvider(["a", "b"])
    with pytest.raises(ValueError, match=r"^invalid scripted response #3: .* got None"):
        provider.extend(["c", None])  # type: ignore[list-item]
    assert provider.remaining == 2


# --------------------------------------------------------------------------------------------
# Script files
# --------------------------------------------------------------------------------------------

SCRIPT = [
    {
        "text": "Let me look.",
        "tool_calls": [{"name": "read_file", "arguments": {"path": "notes.txt"}}],
        "usage": {"input_tokens": 10, "output_tokens": 2},
    },
    {"text": "The notes say hello.", "chunk_size": 4},
]

TOML_SCRIPT = """
[[responses]]
text = "Let me look."
usage = { input_tokens = 10, output_tokens = 2 }
[[responses.tool_calls]]
name = "read_file"
arguments = { path = "notes.txt" }

[[responses]]
text = "The notes say hello."
chunk_size = 4
"""

EXPECTED_SCRIPT = (
    ScriptedResponse(
        text="Let me look.",
        tool_calls=[ScriptedToolCall("read_file", {"path": "notes.txt"})],
        usage=lash.Usage(input_tokens=10, output_tokens=2),
    ),
    ScriptedResponse(text="The notes say hello.", chunk_size=4),
)


def test_json_list_script(tmp_path: Path) -> None:
    """A JSON file holding a list of responses loads."""
    path = tmp_path / "script.json"
    path.write_text(json.dumps(SCRIPT))
    assert load_script(path) == EXPECTED_SCRIPT


def test_json_object_script(tmp_path: Path) -> None:
    """A JSON file holding {"responses": [...]} loads."""
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"responses": SCRIPT}))
    assert load_script(path) == EXPECTED_SCRIPT


@pytest.mark.anyio
async def test_toml_script_plays(tmp_path: Path) -> None:
    """A TOML file of [[responses]] tables loads and plays."""
    path = tmp_path / "script.toml"
    path.write_text(TOML_SCRIPT)
    provider = ScriptedProvider.from_file(path)
    assert provider.script == EXPECTED_SCRIPT
    first = await collect_response(provider.stream(REQUEST))
    assert first.tool_calls == (lash.ToolCall("call_1", "read_file", {"path": "notes.txt"}),)
    assert first.usage == lash.Usage(input_tokens=10, output_tokens=2)
    events = await events_of(provider)
    assert [e.text for e in events if isinstance(e, TextDelta)] == [
        "The ",
        "note",
        "s sa",
        "y he",
        "llo.",
    ]


def test_bad_script_file_names_file_field_expected_and_got(tmp_path: Path) -> None:
    """A wrongly typed field is reported with the file, field path, expected type and value."""
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            [
                {"text": "ok"},
                {"usage": {"input_tokens": "many"}, "tool_calls": [{"nam": "x"}]},
            ]
        )
    )
    with pytest.raises(lash.ConfigError) as info:
        load_script(path)
    message = str(info.value)
    assert message.startswith(f"{path}: scripted provider: invalid script:")
    assert "responses[1].usage.input_tokens: expected int, got 'many' (str)" in message
    assert "responses[1].tool_calls[0].name: required, missing" in message
    assert "responses[1].tool_calls[0].nam: unknown key" in message
    assert info.value.path == str(path)


def test_bad_toml_field(tmp_path: Path) -> None:
    """TOML scripts get the same field-level messages."""
    path = tmp_path / "script.toml"
    path.write_text("[[responses]]\ntext = 5\n")
    with pytest.raises(lash.ConfigError, match=r"responses\[0\]\.text: expected str, got 5"):
        load_script(path)


def test_invalid_json_syntax_reports_line(tmp_path: Path) -> None:
    """Unparsable JSON names the file, line and column."""
    path = tmp_path / "script.json"
    path.write_text('[\n  {"text": "a",}\n]')
    with pytest.raises(lash.ConfigError, match="invalid JSON") as info:
        load_script(path)
    assert info.value.line == 2
    assert str(info.value).startswith(f"{path}:2:")


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    """Unparsable TOML names the file."""
    path = tmp_path / "script.toml"
    path.write_text("[[responses]\n")
    with pytest.raises(lash.ConfigError, match="invalid TOML") as info:
        load_script(path)
    assert info.value.path == str(path)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    """A missing file and an unknown extension each get a clear error."""
    with pytest.raises(lash.ConfigError, match="cannot read the script file"):
        load_script(tmp_path / "nope.json")
    yaml = tmp_path / "script.yaml"
    yaml.write_text("- text: hi\n")
    with pytest.raises(lash.ConfigError, match=r"use a \.json or \.toml file"):
        load_script(yaml)


def test_script_of_wrong_shape(tmp_path: Path) -> None:
    """A JSON script that is neither a list nor an object is rejected."""
    path = tmp_path / "script.json"
    path.write_text('"hello"')
    with pytest.raises(lash.ConfigError, match="a script is a list of responses"):
        load_script(path)


# --------------------------------------------------------------------------------------------
# As a plugin
# --------------------------------------------------------------------------------------------


def scripted_from_core(**options: object) -> ScriptedProvider:
    core = lash.LashCore(plugins=[scripted_plugin], autoload=False, options={"scripted": options})
    contribution = core.registry.of("provider")["scripted"]
    assert contribution.plugin == "scripted"
    provider = contribution.value
    assert isinstance(provider, ScriptedProvider)
    return provider


@pytest.mark.anyio
async def test_plugin_inline_responses() -> None:
    """[options.scripted] responses = [...] builds the registered provider's script."""
    provider = scripted_from_core(responses=[{"text": "inline"}])
    assert (await collect_response(provider.stream(REQUEST))).text == "inline"


@pytest.mark.anyio
async def test_plugin_script_file(tmp_path: Path) -> None:
    """[options.scripted] script = "file" loads the file."""
    path = tmp_path / "script.toml"
    path.write_text(TOML_SCRIPT)
    provider = scripted_from_core(script=str(path))
    assert provider.script == EXPECTED_SCRIPT


@pytest.mark.anyio
async def test_plugin_without_script_errors_on_first_use() -> None:
    """With neither option the provider exists and its first call says the script is empty."""
    provider = scripted_from_core()
    with pytest.raises(ScriptExhausted, match="the script has 0 responses"):
        await events_of(provider)


def test_plugin_rejects_script_and_responses_together(tmp_path: Path) -> None:
    """Setting both `script` and `responses` fails the core build, naming the plugin and hook
    and saying which to drop."""
    with pytest.raises(
        lash.PluginError, match=r"'scripted'.*'register_providers'.*set either `script`"
    ):
        scripted_from_core(script=str(tmp_path / "s.json"), responses=[{"text": "x"}])


def test_plugin_bad_script_file_fails_core_build(tmp_path: Path) -> None:
    """A bad script file named in the options fails the core build with the field message."""
    path = tmp_path / "script.json"
    path.write_text('[{"chunk_size": "big"}]')
    with pytest.raises(lash.PluginError, match=r"responses\[0\]\.chunk_size: expected int"):
        scripted_from_core(script=str(path))


def test_plugin_rejects_bad_inline_options() -> None:
    """Inline responses are validated with the options, naming the field."""
    core = lash.LashCore(
        plugins=[scripted_plugin],
        autoload=False,
        strict=False,
        options={"scripted": {"responses": [{"text": 1}]}},
    )
    assert "scripted" not in core.registry.of("provider")
    failed = [p for p in core.plugins if p.name == "scripted"]
    assert failed and failed[0].status == "failed"
    assert "responses[0].text: expected str, got 1 (int)" in (failed[0].error or "")
