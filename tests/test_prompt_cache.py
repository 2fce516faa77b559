"""The prompt parts a session handle reuses between model calls (lash._kernel.prompt.PromptCache)
against what the catalog rules say, whatever changes membership and in whatever order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from _cores import sqlite_url
from _recorder import Recorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lash
from lash_plugins_builtin import standard, stores

TOOLS = ("alpha", "beta", "gamma", "delta")


def _tool(name: str) -> Any:
    async def fn(text: str) -> str:
        return text

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"The {name} tool."
    return fn


class Tools:
    """Four tools. Nothing else shapes the prompt: the kernel builds it without its hooks
    (lash._kernel.prompt.plain_prompt_view)."""

    lash_plugin = lash.PluginMeta(name="tools")

    def __init__(self) -> None:
        self.hidden: set[str] = set()

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        for name in TOOLS:
            register(_tool(name))


class FilteringTools(Tools):
    """The four tools, and a ``filter_tool_catalog`` that hides the names in ``hidden``
    (changed by the test between calls): the prompt is built the general way."""

    @lash.hookimpl
    def filter_tool_catalog(
        self, session: lash.SessionView, catalog: tuple[lash.ToolCatalogEntry, ...]
    ) -> tuple[str, ...]:
        return tuple(sorted(self.hidden))


def _core(url: str, tools: Tools, recorder: Recorder) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, recorder, tools], builtins=(), store=url, provider="recorder"
    )


# One step: ("mine", changes) the handle under test changes membership; ("theirs", changes)
# another handle commits them and the handle under test runs an execution (it reloads: a new
# kernel state object, possibly with the same generation number); ("hide", names) the filter
# hook hides names from now on (where there is one); ("layers", layers) the session's prompt
# layers change; ("turn", _) a model call (the catalog, tool specs and system prompt it sends).
_changes = st.dictionaries(st.sampled_from(TOOLS), st.booleans(), min_size=1, max_size=3)
_step = st.one_of(
    st.tuples(st.just("mine"), _changes),
    st.tuples(st.just("theirs"), _changes),
    st.tuples(st.just("hide"), st.frozensets(st.sampled_from(TOOLS))),
    st.tuples(st.just("layers"), st.lists(st.sampled_from(["", "be brief", "cite"]), max_size=2)),
    st.tuples(st.just("turn"), st.none()),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(_step, min_size=1, max_size=12), filtering=st.booleans())
def test_offered_tools_follow_membership_and_filter(
    tmp_path: Path, steps: list[Any], filtering: bool
) -> None:
    """After any sequence of membership changes (this handle's or another's), filter changes
    and prompt-layer changes, the preview and every model call offer exactly the member tools
    the filter (if any) does not hide, in registration order, with their specs, and send the
    layers as the system message (none when they are empty); with a filter hook the prompt is
    built the general way, without one the plain way."""
    db = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
    db.mkdir()
    url = sqlite_url(db)

    async def scenario() -> None:
        kind_of_tools = FilteringTools if filtering else Tools
        tools, other_tools = kind_of_tools(), kind_of_tools()
        turns = sum(1 for kind, _ in steps if kind == "turn")
        recorder = Recorder([{"text": "ok"}] * turns)
        members = dict.fromkeys(TOOLS, True)  # the spec: every tool starts a member
        system = ""
        async with (
            _core(url, tools, recorder) as core,
            _core(url, other_tools, Recorder([])) as other,
        ):
            session = await core.session("s").open()
            for kind, arg in steps:
                if kind == "mine":
                    await session.set_tool_membership(arg)
                    members.update(arg)
                elif kind == "theirs":
                    async with other.session("s") as theirs:
                        await theirs.set_tool_membership(arg)
                    members.update(arg)
                    await session.apply_commands()  # an execution: it reloads the session
                elif kind == "hide" and filtering:
                    tools.hidden = set(arg)
                elif kind == "layers":
                    await session.configure(prompt_layers=tuple(arg))
                    system = "\n\n".join(arg)
                expected = tuple(n for n in TOOLS if members[n] and n not in tools.hidden)
                preview = await session.prompt_preview()
                assert preview.tools == expected, (kind, arg)
                if kind == "turn":
                    await session.turn("go").run()
                    request = recorder.requests[-1]
                    assert tuple(t.name for t in request.tools) == expected
                    assert [t.description for t in request.tools] == [
                        f"The {n} tool." for n in expected
                    ]
                    first = request.messages[0]
                    if system:
                        assert (first.role, first.content) == ("system", system)
                    else:
                        assert first.role == "user"
            await session.close()

    asyncio.run(scenario())


class Listing:
    """A plugin with a tool source whose listing the test changes between model calls."""

    lash_plugin = lash.PluginMeta(name="remote")

    def __init__(self) -> None:
        self.listed: dict[str, str] = {"lookup": "Look up."}

    async def list_tools(self) -> list[lash.Tool]:
        async def handler(arguments: dict[str, Any], context: lash.ToolContext) -> str:
            return "ok"

        schema = {"type": "object", "properties": {}}
        return [lash.raw_tool(n, d, schema, handler) for n, d in self.listed.items()]

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(lash.ToolSource("far", self.list_tools))


def test_a_tool_sources_new_listing_reaches_the_next_model_call(tmp_path: Path) -> None:
    """Tools a source lists anew (added, gone, described otherwise) are what the next model
    call offers: the reused catalog and specs follow the listing."""

    async def scenario() -> None:
        source, recorder = Listing(), Recorder([{"text": "ok"}] * 3)
        core = lash.LashCore(
            plugins=[standard, stores, recorder, source],
            builtins=(),
            store=sqlite_url(tmp_path),
            provider="recorder",
        )
        async with core:
            session = await core.session("s").open()
            await session.turn("one").run()
            source.listed = {"lookup": "Look up.", "search": "Search."}
            await session.turn("two").run()
            source.listed = {"search": "Search the web."}
            await session.turn("three").run()
            await session.close()
        offered = [[(t.name, t.description) for t in r.tools] for r in recorder.requests]
        assert offered == [
            [("lookup", "Look up.")],
            [("lookup", "Look up."), ("search", "Search.")],
            [("search", "Search the web.")],
        ]

    asyncio.run(scenario())


def test_model_calls_send_the_whole_history_and_an_idle_session_keeps_no_prompt(
    tmp_path: Path,
) -> None:
    """Three turns of a tool call then an answer (the second call of each builds on the first
    call's prompt): every request holds the system prompt and every message so far, in order;
    between turns the session keeps no prompt (only a running turn does)."""

    async def scenario() -> None:
        script: list[Any] = []
        for i in range(3):
            script.append(
                {"tool_calls": [{"id": f"c{i}", "name": "alpha", "arguments": {"text": f"{i}"}}]}
            )
            script.append({"text": f"answer {i}"})
        recorder = Recorder(script)
        core = _core(sqlite_url(tmp_path), Tools(), recorder)
        async with core:
            session = await core.session("s").open()
            await session.configure(prompt_layers=("be brief",))
            graph = session._runtime.image.graph
            for i in range(3):
                await session.turn(f"q{i}").run()
                assert graph._prompt is None
            await session.close()
        expected: list[tuple[str, str]] = [("system", "be brief")]
        seen = []
        for i in range(3):
            expected.append(("user", f"q{i}"))
            seen.append(list(expected))
            expected += [("assistant", ""), ("tool", f"{i}")]
            seen.append(list(expected))
            expected.append(("assistant", f"answer {i}"))
        sent = [[(m.role, m.content) for m in r.messages] for r in recorder.requests]
        assert sent == seen

    asyncio.run(scenario())
