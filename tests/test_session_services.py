"""Session services during a turn: what a hook or tool changes through its lash.SessionView is
part of the running operation's one commit; outside any operation it commits on its own.

The promises tested (lash/_contract/services.py, lash/_kernel/runtime.py): ``set_tool_membership``
from a tool is in the turn's commit and in the turn's next model request; ``record()`` appends a
PluginNode attributed to the calling plugin and the running turn, refuses host code and
unstorable data at once; ``complete()`` usage is committed with the running operation under its
source; plugin state a tool changes is in the turn's commit. Each commit raises the head revision
by one, so "one commit" is checked as "the revision went up by exactly one", read from the SQLite
file by a fresh core.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import attrs
import pytest
from _cores import make_core, stored
from _recorder import Recorder

import lash
import lash.store
from lash_plugins_builtin import plan

pytestmark = pytest.mark.anyio

LIMIT = 5.0


def calls(*names: str) -> dict[str, Any]:
    """A response asking for the tools ``names``, in one message."""
    return {
        "tool_calls": [{"name": n, "id": f"c{i}", "arguments": {}} for i, n in enumerate(names)]
    }


def offered(request: lash.ModelRequest) -> list[str]:
    return sorted(spec.name for spec in request.tools)


def plugin_nodes(record: lash.store.SessionRecord) -> list[lash.PluginNode]:
    return [n for n in record.nodes if isinstance(n, lash.PluginNode)]


class Services:
    """A plugin whose tools use the session services: membership, record, complete."""

    lash_plugin = lash.PluginMeta(name="services")

    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        errors = self.errors

        async def hide_other(context: lash.ToolContext) -> str:
            """Hides the tool 'other' from the catalog."""
            generation = await context.session.set_tool_membership({"other": False})
            return f"generation {generation}"

        def other() -> str:
            """Another tool."""
            return "other"

        async def note(context: lash.ToolContext) -> str:
            """Records a note."""
            node = await context.session.record("note", {"from": "tool", "mark": "n0te"})
            return node.id

        async def note_badly(context: lash.ToolContext) -> str:
            """Records data that cannot be stored."""
            try:
                await context.session.record("note", {"data": {1, 2}})
            except lash.SessionError as exc:
                errors.append(exc)
                raise
            return "recorded"

        async def ask(context: lash.ToolContext) -> str:
            """Asks the model directly."""
            response = await context.session.complete(
                [lash.Message("user", "side question")], source="ask"
            )
            return response.text

        for tool in (hide_other, other, note, note_badly, ask):
            register(tool)


# -- tool membership -------------------------------------------------------------------------------


async def test_tool_changing_membership_mid_turn_is_in_the_turns_commit_and_next_request(
    tmp_path: Path,
) -> None:
    """A tool hiding another tool: the turn's next model request no longer offers it, and the
    change is committed with the turn (one commit), as a fresh core reads it."""
    rec = Recorder(["warm up", calls("hide_other"), "done"])
    core = make_core(tmp_path, rec, Services())
    session = await core.session("s").open()
    await session.turn("first").run()
    before = (await stored(tmp_path, full=True)).revision

    result = await asyncio.wait_for(session.turn("hide it").run(), LIMIT)

    assert result.outcome == "completed", result
    assert "other" in offered(rec.requests[1])
    assert "other" not in offered(rec.requests[2])  # the same turn's next model call
    record = await stored(tmp_path, full=True)
    assert record.revision == before + 1
    assert record.plugin_states["lash"]["members"] == {"other": False}
    await core.aclose()
    async with make_core(tmp_path, Recorder([]), Services()) as fresh:
        reopened = await fresh.session("s").open(must_exist=True)
        members = {entry.name: entry.member for entry in reopened.tools()}
        assert members["other"] is False and members["hide_other"] is True
        await reopened.close()


async def test_before_turn_changing_membership_applies_to_the_turns_first_request(
    tmp_path: Path,
) -> None:
    """set_tool_membership from before_turn does not wait for the turn: the first model call
    of the turn already sees it, and it is committed with the turn."""

    class Hider:
        lash_plugin = lash.PluginMeta(name="hider")

        @lash.hookimpl
        async def before_turn(self, turn: lash.TurnView) -> None:
            await turn.session.set_tool_membership({"other": False})

    rec = Recorder(["done"])
    core = make_core(tmp_path, rec, Services(), Hider())
    session = await core.session("s").open()

    await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert "other" not in offered(rec.requests[0])
    record = await stored(tmp_path, full=True)
    assert record.revision == 1
    assert record.plugin_states["lash"]["members"] == {"other": False}
    await core.aclose()


# -- record() --------------------------------------------------------------------------------------


class Noter:
    """Records from before_turn, or (given ``later``) from a task it leaves running that waits
    for ``later``."""

    lash_plugin = lash.PluginMeta(name="noter")

    def __init__(self, *, later: asyncio.Event | None = None) -> None:
        self.later = later
        self.tasks: list[asyncio.Task[lash.PluginNode]] = []

    @lash.hookimpl
    async def before_turn(self, turn: lash.TurnView) -> None:
        if self.later is None:
            await turn.session.record("seen", {"input": turn.input, "mark": "n0te"})
            return
        later = self.later

        async def afterwards() -> lash.PluginNode:
            await later.wait()
            return await turn.session.record("afterwards", [1, 2])

        self.tasks.append(asyncio.ensure_future(afterwards()))


async def test_record_from_a_hook_and_a_tool_is_committed_with_the_turn(tmp_path: Path) -> None:
    """PluginNodes recorded by before_turn and by a tool carry their plugin and the turn's
    index, and are committed with the turn (one commit); the model never sees them."""
    rec = Recorder(["warm up", calls("note"), "done"])
    core = make_core(tmp_path, rec, Services(), Noter())
    session = await core.session("s").open()
    await session.turn("first").run()
    before = (await stored(tmp_path, full=True)).revision

    result = await asyncio.wait_for(session.turn("second").run(), LIMIT)

    assert result.outcome == "completed", result
    record = await stored(tmp_path, full=True)
    assert record.revision == before + 1
    nodes = [n for n in plugin_nodes(record) if n.turn == 2]
    assert [(n.plugin, n.kind, n.data) for n in nodes] == [
        ("noter", "seen", {"input": "second", "mark": "n0te"}),
        ("services", "note", {"from": "tool", "mark": "n0te"}),
    ]
    # Recorded where it happened: the hook's node right after the user message.
    kinds = [type(n).__name__ for n in record.nodes if n.turn == 2]
    assert kinds[:2] == ["UserMessage", "PluginNode"]
    assert not [m for m in rec.requests[-1].messages if "n0te" in m.content]
    await core.aclose()


async def test_record_after_the_turn_commits_on_its_own_attributed_to_its_plugin(
    tmp_path: Path,
) -> None:
    """A task a hook left running records after the turn ended: its node is committed on its
    own (one more revision), attributed to the plugin that started it and the last turn."""
    later = asyncio.Event()
    noter = Noter(later=later)
    core = make_core(tmp_path, Recorder(["done"]), noter)
    session = await core.session("s").open()
    await asyncio.wait_for(session.turn("hi").run(), LIMIT)
    assert (await stored(tmp_path, full=True)).revision == 1

    later.set()
    node = await asyncio.wait_for(noter.tasks[0], LIMIT)

    record = await stored(tmp_path, full=True)
    assert record.revision == 2
    assert plugin_nodes(record) == [node]
    assert (node.plugin, node.kind, node.turn, node.data) == ("noter", "afterwards", 1, [1, 2])
    assert session.revision == 2
    await core.aclose()


async def test_record_from_host_code_is_refused(tmp_path: Path) -> None:
    """record() attributes nodes to the calling plugin: host code calling it (also while a turn
    runs) gets a SessionError, and nothing is recorded."""
    core = make_core(tmp_path, Recorder(["done"]))
    session = await core.session("s").open()

    with pytest.raises(lash.SessionError, match="must be called from a hook or a tool") as info:
        await session.view.record("host", {})
    assert info.value.session_id == "s"

    refused: list[BaseException] = []
    async for _event in session.turn("hi").stream():
        if not refused:
            try:
                await session.view.record("host", {})
            except lash.SessionError as exc:
                refused.append(exc)
    assert len(refused) == 1
    assert plugin_nodes(await stored(tmp_path, full=True)) == []
    await core.aclose()


async def test_unstorable_record_data_is_refused_at_once_and_the_turn_commits(
    tmp_path: Path,
) -> None:
    """record() with data JSON cannot hold (a set) raises SessionError in the tool, naming the
    plugin; the tool call gets an error result and the turn still commits."""
    services = Services()
    core = make_core(tmp_path, Recorder([calls("note_badly"), "done"]), services)
    session = await core.session("s").open()

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    [error] = services.errors
    assert type(error) is lash.SessionError
    assert "plugin 'services' recorded data that cannot be stored as JSON" in str(error)
    assert result.outcome == "completed", result
    assert result.tool_calls[0].result.is_error
    record = await stored(tmp_path, full=True)
    assert record.turns == 1 and plugin_nodes(record) == []
    await core.aclose()


async def test_record_with_an_empty_kind_is_refused(tmp_path: Path) -> None:
    """record('') raises SessionError at once (the kind names what was recorded)."""
    errors: list[BaseException] = []

    class Blank:
        lash_plugin = lash.PluginMeta(name="blank")

        @lash.hookimpl
        async def before_turn(self, turn: lash.TurnView) -> None:
            try:
                await turn.session.record("", {})
            except lash.SessionError as exc:
                errors.append(exc)

    core = make_core(tmp_path, Recorder(["done"]), Blank())
    session = await core.session("s").open()
    await asyncio.wait_for(session.turn("hi").run(), LIMIT)
    [error] = errors
    assert "non-empty kind" in str(error)
    await core.aclose()


# -- complete() ------------------------------------------------------------------------------------


async def test_complete_in_a_tool_is_committed_with_the_turn_under_its_source(
    tmp_path: Path,
) -> None:
    """A tool's direct completion: its usage is committed with the turn, under the source the
    tool named, separately from the turn's own usage; one commit."""
    rec = Recorder(
        [
            {
                "tool_calls": [{"name": "ask", "id": "c1", "arguments": {}}],
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
            {"text": "side answer", "usage": {"input_tokens": 100, "output_tokens": 7}},
            {"text": "done", "usage": {"input_tokens": 20, "output_tokens": 2}},
        ]
    )
    core = make_core(tmp_path, rec, Services())
    session = await core.session("s").open()

    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)

    assert result.tool_calls[0].result.content == "side answer"
    assert rec.requests[1].tools == ()  # a direct call: no tools
    record = await stored(tmp_path, full=True)
    assert record.revision == 1
    assert record.usage["ask"] == lash.Usage(100, 7)
    assert record.usage["turn"] == lash.Usage(30, 3)
    assert result.usage == lash.Usage(30, 3)  # the turn's own calls only
    await core.aclose()


@pytest.mark.parametrize(
    ("usage", "problem"),
    [
        (lash.Usage(100.0, 7.0), None),  # type: ignore[arg-type]
        (lash.Usage(100.5, 7), "input_tokens 100.5 (float)"),  # type: ignore[arg-type]
        (lash.Usage(1, None), "output_tokens None (NoneType)"),  # type: ignore[arg-type]
    ],
)
async def test_complete_takes_token_counts_as_a_turns_model_call_does(
    tmp_path: Path, usage: lash.Usage, problem: str | None
) -> None:
    """A direct completion whose provider reports counts that are not ints: a whole float is
    its int, committed as one (on the file, read back by a fresh core); anything else fails the
    completion with the ProviderError a turn's model call gets, naming the provider and the
    count, and nothing of it is committed (the tool fails; the turn goes on). Before, the float
    was committed as it came."""
    rec = Recorder(
        [
            {"tool_calls": [{"name": "ask", "id": "c1", "arguments": {}}]},
            lash.ScriptedResponse(text="side answer", usage=usage),
            {"text": "done"},
        ]
    )
    core = make_core(tmp_path, rec, Services())
    session = await core.session("s").open()
    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)
    held = session.usage_report()["by_source"].get("ask")  # the session's own, in memory
    await core.aclose()
    (call,) = result.tool_calls
    assert result.outcome == "completed" and result.text == "done"
    record = await stored(tmp_path, full=True)
    if problem is None:
        assert call.result.content == "side answer"
        assert record.usage["ask"] == lash.Usage(100, 7)
        assert [type(n) for n in attrs.astuple(record.usage["ask"])] == [int, int, int]
        assert held is not None and type(held["input_tokens"]) is int
    else:
        assert held is None
        assert call.result.is_error
        assert f"provider 'recorder' reported usage with {problem}" in call.result.content
        assert "ask" not in record.usage


async def test_complete_during_compaction_is_committed_with_the_compaction(
    tmp_path: Path,
) -> None:
    """A compact_context that asks the model for a summary: its usage is committed in the
    compaction's commit (one commit), under its source."""

    class Summarizer:
        lash_plugin = lash.PluginMeta(name="summarizer")

        @lash.hookimpl
        async def compact_context(self, session: lash.SessionView) -> lash.Compaction:
            response = await session.complete([lash.Message("user", "sum up")], source="sum")
            return lash.Compaction(summary=response.text, keep_recent_turns=0)

    rec = Recorder(["one", {"text": "summary", "usage": {"input_tokens": 50, "output_tokens": 5}}])
    core = make_core(tmp_path, rec, Summarizer())
    session = await core.session("s").open()
    await session.turn("first").run()

    frame = await asyncio.wait_for(session.compact(), LIMIT)

    assert frame is not None
    record = await stored(tmp_path, full=True)
    assert record.revision == 2
    assert record.usage["sum"] == lash.Usage(50, 5)
    assert [n.summary for n in record.nodes if isinstance(n, lash.FrameBoundary)] == [
        None,
        "summary",
    ]
    await core.aclose()


async def test_complete_outside_any_operation_commits_its_usage_on_its_own(
    tmp_path: Path,
) -> None:
    """A completion made through the view when nothing runs commits its usage by itself."""
    rec = Recorder([{"text": "aside", "usage": {"input_tokens": 4, "output_tokens": 1}}])
    core = make_core(tmp_path, rec)
    session = await core.session("s").open()

    response = await session.view.complete([lash.Message("user", "hi")], source="aside")

    assert response.text == "aside"
    record = await stored(tmp_path, full=True)
    assert record.revision == 1 and record.usage == {"aside": lash.Usage(4, 1)}
    assert session.usage_report()["by_source"]["aside"]["input_tokens"] == 4
    await core.aclose()


# -- plugin state ----------------------------------------------------------------------------------


async def test_state_a_tool_changes_is_in_the_turns_commit(tmp_path: Path) -> None:
    """The plan tool's state change is committed with the turn (one commit) and read back by a
    fresh core."""
    script = [
        {
            "tool_calls": [
                {
                    "name": "update_plan",
                    "id": "c1",
                    "arguments": {"steps": [{"step": "pack", "status": "in_progress"}]},
                }
            ]
        },
        "done",
    ]
    core = make_core(tmp_path, Recorder(script), plan)
    session = await core.session("s").open()

    await asyncio.wait_for(session.turn("plan it").run(), LIMIT)

    record = await stored(tmp_path, full=True)
    assert record.revision == 1
    assert record.plugin_states["plan"] == {
        "steps": [{"step": "pack", "status": "in_progress"}],
        "updates": 1,
    }
    await core.aclose()
