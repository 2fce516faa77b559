"""The builtin tool_output_budget: what the model sees of long tool results, by bytes and lines."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lash
from lash_plugins_builtin import standard, stores, tool_output_budget
from lash_plugins_builtin.scripted import ScriptedProvider
from lash_plugins_builtin.tool_output_budget import BudgetOptions, ToolBudget, project

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "builtins"
TAIL = "; the full result is stored in the session]"


def marker(cut: str) -> str:
    """The marker line for a cut of ``cut`` (e.g. ``"21 bytes / 3 lines"``), as the spec says."""
    return f"[... {cut} cut by tool_output_budget{TAIL}"


class Model:
    """A provider plugin playing a script; its provider records every request."""

    lash_plugin = lash.PluginMeta(name="model")

    def __init__(self, responses: Sequence[Any]) -> None:
        self.provider = ScriptedProvider(list(responses), name="model")

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register("model", self.provider)


class Tools:
    """``emit`` returns its text; ``fail`` returns it as an error result."""

    lash_plugin = lash.PluginMeta(name="tools")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        def emit(text: str) -> str:
            """Return the text."""
            return text

        def fail(text: str) -> lash.ToolResult:
            """Return the text as an error result."""
            return lash.ToolResult("", text, is_error=True)

        register(emit)
        register(fail)


def make_core(model: Model, options: Mapping[str, Any] | None = None, **kw: Any) -> lash.LashCore:
    """A core of standard, stores, the budget (as a module object), the tools and ``model``."""
    return lash.LashCore(
        store="memory://",
        plugins=[standard, stores, tool_output_budget, Tools(), model],
        autoload=False,
        disable=["scripted", "openai", "plan"],
        provider="model",
        options={"tool_output_budget": dict(options or {})},
        **kw,
    )


async def one_call(
    text: str,
    options: Mapping[str, Any] | None = None,
    *,
    tool: str = "emit",
    session_options: Mapping[str, Any] | None = None,
) -> tuple[str, lash.ToolResultNode]:
    """Run a turn whose model calls ``tool(text)``; return what the model saw and the node."""
    model = Model([{"tool_calls": [{"name": tool, "id": "c1", "arguments": {"text": text}}]}, "ok"])
    core = make_core(model, options)
    overrides = {"tool_output_budget": session_options} if session_options else None
    session = await core.session("s", options=overrides).open()
    result = await session.turn("go").run()
    assert result.outcome == "completed", result.error
    assert [r.result.content for r in result.tool_calls] == [text]  # the full result
    (seen,) = [m for m in model.provider.requests[1].messages if m.role == "tool"]
    (node,) = [n for n in session.nodes if isinstance(n, lash.ToolResultNode)]
    return seen.content, node


SIX = "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\n"  # 6 lines of 7 bytes


# -- real turns --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_head_mode_shows_the_first_lines_and_keeps_the_full_result_in_the_graph() -> None:
    """The model's next request holds the head and the marker; the graph keeps the full text."""
    seen, node = await one_call(SIX, {"max_lines": 3})
    expected = "line 1\nline 2\nline 3\n" + marker("21 bytes / 3 lines")
    assert seen == expected
    assert node.content == SIX
    assert node.projected == expected
    assert node.is_error is False


@pytest.mark.anyio
async def test_tail_mode_shows_the_last_lines_under_the_marker() -> None:
    """keep="tail": the marker comes first, then the last lines."""
    seen, node = await one_call(SIX, {"max_lines": 2, "keep": "tail"})
    assert seen == marker("28 bytes / 4 lines") + "\nline 5\nline 6\n"
    assert node.content == SIX


@pytest.mark.anyio
async def test_head_tail_mode_shows_both_ends_with_the_marker_between() -> None:
    """keep="head_tail": the head gets the larger half of an odd line budget."""
    seen, _ = await one_call(SIX, {"max_lines": 3, "keep": "head_tail"})
    assert seen == "line 1\nline 2\n" + marker("21 bytes / 3 lines") + "\nline 6\n"


@pytest.mark.anyio
async def test_byte_cap_never_splits_a_multibyte_character_at_the_head() -> None:
    """a(1) é(2) €(3) 😀(4) z(1): 5 bytes fall inside €, so only "aé" (3 bytes) is shown."""
    seen, node = await one_call("aé€😀z", {"max_bytes": 5})
    assert seen == "aé\n" + marker("8 bytes / 1 line")
    assert node.content == "aé€😀z"


@pytest.mark.anyio
async def test_byte_cap_never_splits_a_multibyte_character_at_the_tail() -> None:
    """The last 6 bytes start inside €, so only "😀z" (5 bytes) is shown."""
    seen, _ = await one_call("aé€😀z", {"max_bytes": 6, "keep": "tail"})
    assert seen == marker("6 bytes / 1 line") + "\n😀z"


@pytest.mark.anyio
async def test_line_and_byte_caps_together() -> None:
    """3 lines are 15 bytes, over the 8-byte cap: the cut falls mid-line and counts that line."""
    seen, _ = await one_call("1234\n5678\n9abc\ndef\n", {"max_lines": 3, "max_bytes": 8})
    assert seen == "1234\n567\n" + marker("11 bytes / 3 lines")


@pytest.mark.anyio
async def test_result_within_the_budget_is_shown_unchanged() -> None:
    """A result exactly at both caps is not projected: the model sees it, projected is None."""
    text = "ab\ncd\n"  # 2 lines (the final newline ends the second), 6 bytes
    seen, node = await one_call(text, {"max_lines": 2, "max_bytes": 6})
    assert seen == text
    assert node.projected is None


@pytest.mark.anyio
async def test_error_results_are_projected_the_same_way() -> None:
    """An error result over the budget is cut like any other; it stays an error."""
    seen, node = await one_call(SIX, {"max_lines": 1}, tool="fail")
    assert seen == "line 1\n" + marker("35 bytes / 5 lines")
    assert node.is_error is True
    assert node.content == SIX


@pytest.mark.anyio
async def test_session_options_override_the_host_options() -> None:
    """Host options apply to every session; a session's own options win, key by key."""
    host = {"max_lines": 2, "keep": "tail"}
    seen, _ = await one_call(SIX, host)
    assert seen == marker("28 bytes / 4 lines") + "\nline 5\nline 6\n"
    seen, _ = await one_call(SIX, host, session_options={"max_lines": 4})
    assert seen == marker("14 bytes / 2 lines") + "\nline 3\nline 4\nline 5\nline 6\n"


@pytest.mark.anyio
async def test_per_tool_overrides_fall_back_to_the_plugin_wide_options() -> None:
    """A per-tool entry overrides only the fields it sets; other tools use the plugin-wide ones."""
    options = {"max_lines": 2, "per_tool": {"fail": {"keep": "tail"}}}
    model = Model(
        [
            {
                "tool_calls": [
                    {"name": "emit", "id": "c1", "arguments": {"text": SIX}},
                    {"name": "fail", "id": "c2", "arguments": {"text": SIX}},
                ]
            },
            "ok",
        ]
    )
    session = await make_core(model, options).session("s").open()
    await session.turn("go").run()
    seen = {
        m.tool_call_id: m.content for m in model.provider.requests[1].messages if m.tool_call_id
    }
    assert seen == {
        "c1": "line 1\nline 2\n" + marker("28 bytes / 4 lines"),
        "c2": marker("28 bytes / 4 lines") + "\nline 5\nline 6\n",
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"max_bytes": 0}, "max_bytes: must be a positive integer, got 0"),
        ({"max_lines": -5}, "max_lines: must be a positive integer, got -5"),
        ({"keep": "middle"}, "keep: expected 'head' | 'tail' | 'head_tail', got 'middle' (str)"),
        (
            {"per_tool": {"emit": {"max_lines": 0}}},
            "per_tool.emit.max_lines: must be a positive integer, got 0",
        ),
    ],
)
async def test_invalid_session_options_are_rejected_at_open(
    options: dict[str, Any], problem: str
) -> None:
    """Bad session options fail the open with one line naming the plugin and the field."""
    core = make_core(Model([]))
    with pytest.raises(lash.OptionsError) as caught:
        await core.session("s", options={"tool_output_budget": options}).open()
    assert caught.value.plugin == "tool_output_budget"
    assert caught.value.problems == (f"options.tool_output_budget.{problem}",)


def test_invalid_host_options_fail_the_build_in_strict_mode() -> None:
    """Bad host options name the plugin and the field (strict mode raises at build)."""
    with pytest.raises(
        lash.PluginLoadError,
        match=r"options\.tool_output_budget\.max_bytes: must be a positive integer, got 0",
    ):
        make_core(Model([]), {"max_bytes": 0}, strict=True)


def test_a_second_projection_plugin_conflicts_with_the_budget() -> None:
    """project_tool_result is exclusive: another implementation next to the budget is an error."""

    class Other:
        lash_plugin = lash.PluginMeta(name="other_projection")

        @lash.hookimpl
        def project_tool_result(self, result: lash.ToolResult) -> str | None:
            return None

    with pytest.raises(lash.ExclusiveHookConflict) as caught:
        lash.LashCore(plugins=[standard, stores, tool_output_budget, Other], autoload=False)
    assert set(caught.value.plugins) == {"tool_output_budget", "other_projection"}


# -- the projection function -------------------------------------------------------------------


def test_project_directly() -> None:
    """project() cuts by lines and bytes, keeps head/tail/both ends, and returns None if it fits."""
    assert project(SIX, max_bytes=100, max_lines=6) is None
    assert project("", max_bytes=1, max_lines=1) is None
    assert project("no newline", max_bytes=10, max_lines=1) is None
    assert project(SIX, max_bytes=100, max_lines=5) == (
        "line 1\nline 2\nline 3\nline 4\nline 5\n" + marker("7 bytes / 1 line")
    )
    # Singular units; the marker starts a line of its own after a mid-line cut.
    assert project("ab", max_bytes=1, max_lines=1) == "a\n" + marker("1 byte / 1 line")
    # A character wider than the whole byte budget: only the marker is left.
    assert project("€", max_bytes=2, max_lines=1) == marker("3 bytes / 1 line")
    assert project("€", max_bytes=2, max_lines=1, keep="tail") == marker("3 bytes / 1 line")
    # Thousands separators: 1,500 lines of 2 bytes, 400 kept.
    assert project("x\n" * 1500, max_bytes=16_000, max_lines=400) == (
        "x\n" * 400 + marker("2,200 bytes / 1,100 lines")
    )


def test_project_head_tail_splits_the_budget_and_passes_on_what_an_end_leaves() -> None:
    """head_tail: each end gets half (the head the larger half); unused budget goes across."""
    # The head gets ceil(5 / 2) = 3 bytes and 1 of the 2 lines, the tail the other 2 bytes.
    assert project("abcdefghij", max_bytes=5, max_lines=2, keep="head_tail") == (
        "abc\n" + marker("5 bytes / 1 line") + "\nij"
    )
    # The head uses 2 of its 4 bytes: the tail gets 8 - 2 = 6.
    assert project("a\n0123456789", max_bytes=8, max_lines=2, keep="head_tail") == (
        "a\n" + marker("4 bytes / 1 line") + "\n456789"
    )
    # The tail's last line is 2 bytes: the head takes back 8 - 2 = 6 bytes.
    assert project("0123456789\ny\n", max_bytes=8, max_lines=2, keep="head_tail") == (
        "012345\n" + marker("5 bytes / 1 line") + "\ny\n"
    )
    # One line leaves none for the tail: nothing follows the marker.
    assert project("a\nb\nc\n", max_bytes=100, max_lines=1, keep="head_tail") == (
        "a\n" + marker("4 bytes / 2 lines")
    )
    assert project("abcdefghij", max_bytes=5, max_lines=1, keep="head_tail") == (
        "abcde\n" + marker("5 bytes / 1 line")
    )
    # € is wider than the head's 2 bytes; the tail then takes the only line, so the head gets
    # none, though 3 bytes are left.
    assert project("€\nb", max_bytes=4, max_lines=1, keep="head_tail") == (
        marker("4 bytes / 1 line") + "\nb"
    )


def test_project_counts_lone_surrogates_as_three_bytes() -> None:
    """Text decoded with surrogateescape is cut too, not refused (a surrogate is 3 bytes)."""
    text = b"ok \xff\xfe".decode("utf-8", "surrogateescape")
    assert project(text, max_bytes=6, max_lines=1) == "ok \udcff\n" + marker("3 bytes / 1 line")


MARKER = re.compile(
    r"\[\.\.\. ([\d,]+) bytes? / ([\d,]+) lines? cut by tool_output_budget" + re.escape(TAIL)
)


def size(text: str) -> int:
    """UTF-8 bytes of ``text`` (a lone surrogate counts 3)."""
    return len(text.encode("utf-8", "surrogatepass"))


def lines(text: str) -> int:
    """Lines as the spec counts them: ended by a newline, plus an unterminated last one."""
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


@given(
    text=st.text(alphabet=["a", "é", "€", "😀", "\n", "\udcff"], max_size=60),
    max_bytes=st.integers(1, 40),
    max_lines=st.integers(1, 8),
    keep=st.sampled_from(["head", "tail", "head_tail"]),
)
def test_project_keeps_ends_of_the_text_within_the_budget(
    text: str, max_bytes: int, max_lines: int, keep: Any
) -> None:
    """Whatever the text: the kept ends are whole characters of it, within the budget, and the
    marker counts exactly the bytes and lines between them."""
    out = project(text, max_bytes=max_bytes, max_lines=max_lines, keep=keep)
    if size(text) <= max_bytes and lines(text) <= max_lines:
        assert out is None
        return
    assert out is not None
    (found,) = list(MARKER.finditer(out))
    cut_bytes, cut_lines = (int(g.replace(",", "")) for g in found.groups())
    tail = out[found.end() + 1 :] if keep != "head" else ""
    assert keep != "head" or found.end() == len(out)
    # The marker is a line of its own: a tail starts after a newline.
    assert not tail or out[found.end()] == "\n"
    head_bytes = size(text) - cut_bytes - size(tail)
    head = text.encode("utf-8", "surrogatepass")[:head_bytes].decode("utf-8", "surrogatepass")
    assert keep != "tail" or head == ""
    assert out[: found.start()] == (head + "\n" if head and not head.endswith("\n") else head)
    assert text.startswith(head) and text.endswith(tail)
    middle = text[len(head) : len(text) - len(tail)]
    assert (size(middle), lines(middle)) == (cut_bytes, cut_lines) and cut_bytes > 0
    assert size(head) + size(tail) <= max_bytes
    assert lines(head) + lines(tail) <= max_lines
    if keep != "head_tail":
        # One end only: it is as long as the budget allows, one more character would not fit.
        grown = text[: len(head) + 1] if keep == "head" else text[len(text) - len(tail) - 1 :]
        assert size(grown) > max_bytes or lines(grown) > max_lines


def test_project_rejects_a_non_positive_budget() -> None:
    """The function checks its budget as the options do."""
    with pytest.raises(ValueError, match="positive"):
        project("text", max_bytes=0, max_lines=1)


def test_options_resolve_per_tool_limits() -> None:
    """for_tool() merges a tool's override over the plugin-wide options."""
    options = BudgetOptions(
        max_bytes=100, max_lines=10, per_tool={"shell": ToolBudget(max_lines=3, keep="tail")}
    )
    assert options.for_tool("shell") == (100, 3, "tail")
    assert options.for_tool("read_file") == (100, 10, "head")
    assert BudgetOptions().for_tool("any") == (16_000, 400, "head")


# -- the docs example --------------------------------------------------------------------------


def load_example(name: str) -> ModuleType:
    """Import ``docs/examples/builtins/<name>.py`` under a private module name."""
    spec = importlib.util.spec_from_file_location(f"_docs_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_example_prints_what_the_page_shows(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page's example runs offline and prints the output the page shows."""
    for name in [n for n in os.environ if n.startswith("LASH_")]:
        monkeypatch.delenv(name)
    example = load_example("tool_output_budget")
    tail, ends = asyncio.run(example.main())
    assert capsys.readouterr().out == (EXAMPLES / "tool_output_budget.txt").read_text("utf-8")
    log = example.build_log(40)
    assert tail.content == ends.content == log
    assert tail.projected == marker("447 bytes / 38 lines") + "\nstep 39: ok\nstep 40: ok\n" + (
        "build succeeded\n"
    )


def test_docs_toml_example_configures_the_budget() -> None:
    """The page's lash.toml snippet validates into the options it describes."""
    config = lash.HostConfig.load(EXAMPLES / "tool_output_budget.toml", environ={})
    core = lash.LashCore(plugins=[tool_output_budget], config=config, autoload=False)
    assert core.plugin_options("tool_output_budget") == BudgetOptions(
        max_bytes=8_000,
        max_lines=200,
        keep="head",
        per_tool={"shell": ToolBudget(max_lines=100, keep="tail")},
    )
