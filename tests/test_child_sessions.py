"""Child sessions (sub-agents): a parent link in the head, ``is_root=False``, inherited or own
configuration, a tool allowlist, and usage rolled up into the ancestors under ``child:<id>``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from _recorder import Recorder

import lash
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio


def lookup(topic: str) -> str:
    """Looks a topic up."""
    return f"facts about {topic}"


def shout(text: str) -> str:
    """Shouts."""
    return text.upper()


@attrs.define
class ToneOptions:
    tone: str = "plain"


class Tools:
    """Two tools, per-session options, and a record of every prepare_session."""

    lash_plugin = lash.PluginMeta(name="tools", options=ToneOptions)

    def __init__(self) -> None:
        self.prepared: list[tuple[str, bool, str]] = []

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(lookup)
        register(shout)

    @lash.hookimpl
    def prepare_session(
        self, session: lash.SessionView, options: ToneOptions, is_root: bool
    ) -> None:
        self.prepared.append((session.id, is_root, options.tone))


def usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"input_tokens": tokens_in, "output_tokens": tokens_out}


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/lash.db"


def make_core(store_url: str, rec: Recorder, *plugins: object, **kwargs: Any) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, rec, *plugins],
        builtins=(),
        store=store_url,
        provider="recorder",
        **kwargs,
    )


def by_source(report: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {
        source: (row["input_tokens"], row["output_tokens"])
        for source, row in report["by_source"].items()
    }


async def test_a_host_creates_a_child_that_links_inherits_and_rolls_up(store_url: str) -> None:
    """A host's child: parent link stored, is_root False, parent config inherited, usage
    rolled up into the parent under child:<id>, in memory and in the store."""
    rec = Recorder([{"text": "p", "usage": usage(10, 1)}, {"text": "c", "usage": usage(7, 3)}])
    tools = Tools()
    async with make_core(store_url, rec, tools) as core:
        parent = await core.session("p").open()
        await parent.configure(model="big", plugin_options={"tools": {"tone": "warm"}})
        await parent.turn("hello").run()
        child = await core.child_session("p", id="p/helper").open()
        assert (child.is_root, child.parent_id) == (False, "p")
        assert child.config.model == "big"
        assert child.options(ToneOptions) == ToneOptions("warm")
        result = await child.turn("help").run()
        assert result.text == "c"
        await child.close()
        assert rec.requests[1].model == "big"
        assert tools.prepared[-1] == ("p/helper", False, "warm")
        # The parent's own usage, and the child's under its label.
        assert by_source(parent.usage_report()) == {"turn": (10, 1), "child:p/helper": (7, 3)}
        assert parent.usage_report()["total"]["input_tokens"] == 17
        assert by_source(child.usage_report()) == {"turn": (7, 3)}
        record = await core.store.load("p/helper")
        assert record is not None and record.parent_id == "p"
        parent_record = await core.store.load("p")
        assert parent_record is not None and parent_record.parent_id is None
        assert dict(parent_record.usage)["child:p/helper"] == lash.Usage(7, 3)
        summaries = {s.session_id: s for s in await core.store.list_sessions()}
        assert (summaries["p/helper"].parent_id, summaries["p"].parent_id) == ("p", None)
        assert summaries["p"].usage.input_tokens == 17


async def test_a_tool_runs_a_restricted_child_inside_the_parent_turn(store_url: str) -> None:
    """A tool creates a child through its context's view, restricted to one tool; the child's
    model sees only that tool, and the parent's turn commits with the child's usage rolled up."""
    child_ids: list[str] = []

    async def delegate(task: str, context: lash.ToolContext) -> str:
        """Delegates a task to a sub-agent."""
        async with context.session.child(tools=["lookup"]) as child:
            child_ids.append(child.id)
            result = await child.turn(task).run()
        return result.text

    class Delegator:
        lash_plugin = lash.PluginMeta(name="delegator")

        @lash.hookimpl
        def register_tools(self, register: lash.RegisterTool) -> None:
            register(delegate)

    rec = Recorder(
        [
            {"tool_calls": [{"name": "delegate", "arguments": {"task": "research x"}}]},
            {"tool_calls": [{"name": "lookup", "arguments": {"topic": "x"}}], "usage": usage(5, 1)},
            {"text": "x is a letter", "usage": usage(6, 2)},
            {"text": "done", "usage": usage(20, 4)},
        ]
    )
    async with make_core(store_url, rec, Tools(), Delegator()) as core:
        parent = await core.session("p").open()
        result = await parent.turn("go").run()
        assert result.text == "done"
        assert [t.name for t in rec.requests[0].tools] == ["lookup", "shout", "delegate"]
        assert [t.name for t in rec.requests[1].tools] == ["lookup"]
        (child_id,) = child_ids
        assert child_id.startswith("p/")
        assert by_source(parent.usage_report()) == {"turn": (20, 4), f"child:{child_id}": (11, 3)}
        tool_result = [n for n in parent.nodes if isinstance(n, lash.ToolResultNode)]
        assert tool_result[0].content == "x is a letter"
        stored = await core.store.load("p")
        assert stored is not None
        assert dict(stored.usage) == {
            "turn": lash.Usage(20, 4),
            f"child:{child_id}": lash.Usage(11, 3),
        }


async def test_a_hook_creates_a_child_through_its_view(store_url: str) -> None:
    """A before_turn hook of the parent runs a child's turn through turn.session.child(); the
    child is a child (is_root False) and its usage rolls up before the parent's turn commits."""
    seen: list[tuple[str, bool, str]] = []

    class Briefing:
        lash_plugin = lash.PluginMeta(name="briefing")

        @lash.hookimpl
        async def before_turn(self, turn: lash.TurnView) -> None:
            if not turn.session.is_root:
                return  # the child's own turn: no briefing of the briefing
            async with turn.session.child(id="p/brief") as child:
                result = await child.turn(f"brief me on: {turn.input}").run()
            seen.append((child.id, child.is_root, result.text))

    rec = Recorder(
        [{"text": "brief", "usage": usage(3, 1)}, {"text": "main", "usage": usage(9, 2)}]
    )
    async with make_core(store_url, rec, Briefing()) as core:
        parent = await core.session("p").open()
        result = await parent.turn("the plan").run()
        assert result.text == "main"
        assert seen == [("p/brief", False, "brief")]
        assert by_source(parent.usage_report()) == {"turn": (9, 2), "child:p/brief": (3, 1)}


async def test_the_allowlist_holds_for_good_and_is_checked(store_url: str) -> None:
    """A child's allowlist survives reopening; a plugin cannot make another tool a member; an
    allowlist naming an unknown tool is refused, naming the session."""
    rec = Recorder([{"text": "p"}])
    async with make_core(store_url, rec, Tools()) as core:
        parent = await core.session("p").open()
        await parent.turn("hi").run()
        child = await parent.child(id="kid", tools=["shout"]).open()
        members = {e.name: e.member for e in child.tools()}
        assert members == {"lookup": False, "shout": True}
        await child.close()  # stores the new child, with no turn run
        again = await core.session("kid").open()
        assert again.is_root is False and again.parent_id == "p"
        assert {e.name: e.member for e in again.tools()} == {"lookup": False, "shout": True}
        with pytest.raises(lash.SessionError, match=r"session 'kid': tool\(s\) lookup are outside"):
            await again.view.set_tool_membership({"lookup": True})
        await again.close()
        with pytest.raises(lash.SessionError, match=r"session 'kid2'.*unknown tool\(s\) nope"):
            await core.child_session("p", id="kid2", tools=["nope"]).open()


async def test_inherit_false_starts_from_the_host_config_with_a_patch(store_url: str) -> None:
    """inherit=False: the host's provider and model and default options; config patches it."""
    rec = Recorder([{"text": "p"}])
    async with make_core(store_url, rec, Tools(), model="host-model") as core:
        parent = await core.session("p").open()
        await parent.configure(model="big", plugin_options={"tools": {"tone": "warm"}})
        await parent.turn("hi").run()
        own = await core.child_session("p", inherit=False).open()
        assert own.config.model == "host-model"
        assert own.options(ToneOptions) == ToneOptions("plain")
        patched = await core.child_session("p", config={"model": "small"}).open()
        assert patched.config.model == "small"
        assert patched.options(ToneOptions) == ToneOptions("warm")


async def test_grandchild_usage_reaches_every_ancestor(store_url: str) -> None:
    """A grandchild's usage rolls up into its parent (child:<grandchild>) and into the root
    (child:<child>), in the same commit."""
    rec = Recorder(
        [
            {"text": "root", "usage": usage(1, 1)},
            {"text": "child", "usage": usage(2, 2)},
            {"text": "grandchild", "usage": usage(4, 4)},
        ]
    )
    async with make_core(store_url, rec) as core:
        root = await core.session("r").open()
        await root.turn("a").run()
        child = await root.child(id="c").open()
        await child.turn("b").run()
        grandchild = await child.child(id="g").open()
        await grandchild.turn("c").run()
        assert by_source(root.usage_report()) == {"turn": (1, 1), "child:c": (6, 6)}
        assert by_source(child.usage_report()) == {"turn": (2, 2), "child:g": (4, 4)}
    # A fresh core reads the same from the store, the lineage from the heads.
    async with make_core(store_url, Recorder([{"text": "more", "usage": usage(8, 8)}])) as core:
        if store_url == "memory://":
            return  # a memory store does not outlive its core
        again = await core.session("g").open()
        await again.turn("d").run()
        root_record = await core.store.load("r")
        assert root_record is not None
        assert dict(root_record.usage)["child:c"] == lash.Usage(14, 14)


async def test_errors_name_the_session(store_url: str) -> None:
    """An unknown parent, a root session opened as a child, a child of another parent, and a
    session as its own child are refused, each naming the sessions."""
    rec = Recorder([{"text": "a"}, {"text": "b"}, {"text": "c"}])
    async with make_core(store_url, rec) as core:
        with pytest.raises(lash.SessionError, match=r"session 'c': its parent session 'nope'"):
            await core.child_session("nope", id="c").open()
        root = await core.session("r").open()
        await root.turn("x").run()
        other = await core.session("o").open()
        await other.turn("y").run()
        with pytest.raises(lash.SessionError, match=r"session 'o' exists as a root session"):
            await core.child_session("r", id="o").open()
        kid = await core.child_session("r", id="k").open()
        await kid.turn("z").run()  # a session (and its link) exists once committed
        await kid.close()
        with pytest.raises(
            lash.SessionError, match=r"session 'k' exists as a child of session 'r'.*'o'"
        ):
            await core.child_session("o", id="k").open()
        with pytest.raises(lash.SessionError, match=r"session 'r' cannot be a child of itself"):
            await core.child_session("r", id="r").open()
        with pytest.raises(lash.SessionError, match=r"tools must be a list of tool names"):
            core.child_session("r", tools="lookup")


async def test_a_stub_session_refuses_children() -> None:
    """lash.testing.StubSession has no core: child() says so, naming the session."""
    from lash.testing import StubSession

    with pytest.raises(lash.SessionError, match=r"session 'test-session': a StubSession"):
        StubSession().child()


def test_lash_sessions_lists_children_with_their_parent(tmp_path: Path) -> None:
    """``lash sessions list --json`` and ``show --json`` give each child's parent_id; the
    parent's usage includes its child's."""
    from click.testing import CliRunner

    from lash.cli import cli

    db = f"sqlite:///{tmp_path}/lash.db"
    rec = Recorder([{"text": "p", "usage": usage(2, 1)}, {"text": "c", "usage": usage(5, 1)}])

    async def sessions() -> None:
        async with make_core(db, rec) as core:
            parent = await core.session("p").open()
            await parent.turn("a").run()
            child = await parent.child(id="p/c").open()
            await child.turn("b").run()

    asyncio.run(sessions())  # the command line runs its own event loop: not inside one
    config = tmp_path / "lash.toml"
    config.write_text(f'store = "{db}"\nautoload = false\n', encoding="utf-8")
    listed = CliRunner().invoke(cli, ["--config", str(config), "sessions", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["session_id"]: row for row in json.loads(listed.output)}
    assert (rows["p"]["parent_id"], rows["p/c"]["parent_id"]) == (None, "p")
    assert rows["p"]["usage"]["input_tokens"] == 7
    shown = CliRunner().invoke(cli, ["--config", str(config), "sessions", "show", "p/c", "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["session"]["parent_id"] == "p"
