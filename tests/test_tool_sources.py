"""Tool sources (``lash.ToolSource``): tools a plugin learns of at run time, listed when a
catalog is first resolved (not when the core is built or a session opened), offered and called
like registered tools; a failing source is reported once, naming plugin and source, and the rest
of the catalog still works; names already taken are left out; sources close with the core."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from _cores import Echo, make_core
from _recorder import Recorder

import lash

pytestmark = pytest.mark.anyio


class Source:
    """A plugin with one tool source whose listing the test controls."""

    lash_plugin = lash.PluginMeta(name="remote")

    def __init__(self, names: Sequence[str] = ("lookup",), fail: str | None = None) -> None:
        self.names = list(names)
        self.fail = fail
        self.listings = 0
        self.closed = 0
        self.calls: list[dict[str, Any]] = []

    async def list_tools(self) -> list[lash.Tool]:
        self.listings += 1
        if self.fail is not None:
            raise ConnectionError(self.fail)
        return [self._tool(name) for name in self.names]

    def _tool(self, name: str) -> lash.Tool:
        async def handler(arguments: dict[str, Any], context: lash.ToolContext) -> str:
            self.calls.append(arguments)
            return f"{name}: {arguments['q']}"

        schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
        return lash.raw_tool(name, f"Remote {name}.", schema, handler)

    async def aclose(self) -> None:
        self.closed += 1

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(lash.ToolSource("far", self.list_tools, aclose=self.aclose))


def call(name: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "id": call_id, "arguments": arguments}]}


async def test_a_source_is_listed_lazily_offered_and_called(tmp_path: Path) -> None:
    """Nothing is listed at build or open; the first model call offers the source's tool with
    its schema; the model's call reaches the handler; closing the core closes the source."""
    source = Source()
    rec = Recorder([call("lookup", "c1", q="tides"), {"text": "done"}])
    core = make_core(tmp_path, rec, source, Echo())
    session = await core.session("s").open()
    assert source.listings == 0
    assert [e.name for e in session.tools()] == ["echo"]
    result = await session.turn("go").run()
    assert result.outcome == "completed"
    assert [(r.call.name, r.result.content) for r in result.tool_calls] == [
        ("lookup", "lookup: tides")
    ]
    (spec,) = [t for t in rec.requests[0].tools if t.name == "lookup"]
    assert spec.parameters["required"] == ["q"] and spec.description == "Remote lookup."
    assert {e.name: e.plugin for e in session.tools()} == {"echo": "echo", "lookup": "remote"}
    assert source.closed == 0
    await core.aclose()
    assert source.closed == 1


async def test_a_failing_source_is_reported_once_and_the_rest_works(tmp_path: Path) -> None:
    """A source that cannot list: its tools are absent, the error (plugin, hook, source, cause)
    reaches on_error once over two turns, and the registered tools are still offered."""
    source = Source(fail="server down")
    reported: list[lash.LashError] = []
    rec = Recorder([call("echo", "c1", text="hi"), {"text": "one"}, {"text": "two"}])
    async with make_core(tmp_path, rec, source, Echo(), on_error=reported.append) as core:
        session = await core.session("s").open()
        first = await session.turn("a").run()
        second = await session.turn("b").run()
    assert (first.outcome, second.outcome) == ("completed", "completed")
    assert first.tool_calls[0].result.content == "hi"
    assert [[t.name for t in r.tools] for r in rec.requests] == [["echo"]] * 3
    assert source.listings == 3
    (error,) = reported
    assert isinstance(error, lash.PluginError)
    assert (error.plugin, error.hook) == ("remote", "register_tools")
    assert str(error) == (
        "tool source 'far' could not list its tools: ConnectionError: server down"
    )


async def test_a_listed_name_already_taken_is_left_out(tmp_path: Path) -> None:
    """A source listing a registered tool's name: that tool stays the registered one, the
    clash is reported naming both plugins, the source's other tools are offered."""
    source = Source(names=("echo", "lookup"))
    reported: list[lash.LashError] = []
    rec = Recorder([call("echo", "c1", text="mine"), {"text": "ok"}])
    async with make_core(tmp_path, rec, source, Echo(), on_error=reported.append) as core:
        session = await core.session("s").open()
        result = await session.turn("go").run()
        assert {e.name: e.plugin for e in session.tools()} == {
            "echo": "echo",
            "lookup": "remote",
        }
    assert result.tool_calls[0].result.content == "mine"
    (error,) = reported
    assert "lists tools whose names are taken; left out: 'echo' (already a tool of plugin " in (
        str(error)
    )
    assert "'echo')" in str(error)


async def test_membership_of_a_source_tool_can_be_set_before_any_turn(tmp_path: Path) -> None:
    """Setting a source tool's membership lists the sources first; the tool is then withheld."""
    source = Source()
    rec = Recorder([{"text": "ok"}])
    async with make_core(tmp_path, rec, source, Echo()) as core:
        session = await core.session("s").open()
        await session.set_tool_membership({"lookup": False})
        await session.turn("go").run()
    assert [t.name for t in rec.requests[0].tools] == ["echo"]


def test_a_source_is_shown_in_the_plugin_listing() -> None:
    """``lash plugins`` lists a plugin's tool sources beside its tools."""
    core = lash.LashCore(plugins=[Source()], builtins=(), store="memory://")
    assert core.registry.by_plugin("remote") == {"tool_source": ["far"]}


def test_name_and_description_do_not_apply_to_a_source() -> None:
    """``register(source, name=...)`` is refused at registration, attributed to the plugin."""

    class Renames(Source):
        @lash.hookimpl
        def register_tools(self, register: lash.RegisterTool) -> None:
            register(lash.ToolSource("far", self.list_tools), name="other")

    with pytest.raises(lash.PluginError, match="name= and description= apply to tools"):
        lash.LashCore(plugins=[Renames()], builtins=(), store="memory://")


async def test_a_child_allowlist_may_name_a_source_tool(tmp_path: Path) -> None:
    """A child session restricted to a source's tool: opening it lists the sources, so the name
    is known; the child is offered that tool alone."""
    source = Source()
    rec = Recorder([{"text": "ok"}])
    async with make_core(tmp_path, rec, source, Echo()) as core:
        parent = await core.session("p").open()
        child = await parent.child(id="c", tools=["lookup"]).open()
        assert source.listings == 1
        await child.turn("go").run()
    assert [t.name for t in rec.requests[0].tools] == ["lookup"]
