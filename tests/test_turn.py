"""The turn loop: model → tools → model, hooks at their call sites, outcomes, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
from _recorder import Recorder

import lash
from lash_plugins_builtin import plan, standard, stores

pytestmark = pytest.mark.anyio


def call(name: str, call_id: str | None = None, **arguments: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "arguments": arguments}
    if call_id:
        out["id"] = call_id
    return out


def make_core(recorder: Recorder, *plugins: object, **kwargs: Any) -> lash.LashCore:
    return lash.LashCore(
        store="memory://",
        plugins=[standard, stores, recorder, *plugins],
        autoload=False,
        disable=["scripted", "openai", "plan", "tool_output_budget"],
        provider="recorder",
        **kwargs,
    )


class ToolsPlugin:
    """Tools used by these tests."""

    lash_plugin = lash.PluginMeta(name="tools")

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {"a": asyncio.Event(), "b": asyncio.Event()}

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        started = self.started

        async def wait_for(me: str, other: str) -> str:
            """Start, then wait until the other call has started too."""
            started[me].set()
            await asyncio.wait_for(started[other].wait(), 2)
            return f"{me} done"

        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        def explode(reason: str) -> str:
            """Always raises."""
            raise RuntimeError(reason)

        async def hang(seconds: float) -> str:
            """Sleeps."""
            await asyncio.sleep(seconds)
            return "woke"

        register(wait_for)
        register(add)
        register(explode)
        register(lash.tool(hang, timeout=0.2))


async def test_completed_turn_with_tool_round_trip() -> None:
    """A turn calls a tool, feeds its result back to the model and completes with the answer."""
    rec = Recorder(
        [
            {
                "text": "adding",
                "tool_calls": [call("add", "c1", a=2, b=3)],
                "usage": {"input_tokens": 10, "output_tokens": 2},
            },
            {"text": "The sum is 5.", "usage": {"input_tokens": 20, "output_tokens": 5}},
        ]
    )
    core = make_core(rec, ToolsPlugin())
    session = await core.session("s1").open()
    result = await session.turn("what is 2+3?").run()
    assert result.outcome == "completed"
    assert result.text == "The sum is 5."
    assert [(r.call.name, r.result.content, r.result.is_error) for r in result.tool_calls] == [
        ("add", "5", False)
    ]
    assert result.usage == lash.Usage(input_tokens=30, output_tokens=7)
    assert result.revision == 1
    second = rec.requests[1].messages
    assert [m.role for m in second if m.role != "system"] == ["user", "assistant", "tool"]
    assert second[-1].tool_call_id == "c1" and second[-1].content == "5"
    assert {t.name for t in rec.requests[0].tools} >= {"add", "explode", "hang", "wait_for"}


async def test_parallel_tool_calls_run_concurrently_and_record_in_emission_order() -> None:
    """Calls of one assistant message run at once; results are recorded in emission order."""
    rec = Recorder(
        [
            {
                "tool_calls": [
                    call("wait_for", "cb", me="b", other="a"),
                    call("wait_for", "ca", me="a", other="b"),
                ]
            },
            {"text": "both done"},
        ]
    )
    core = make_core(rec, ToolsPlugin())
    session = await core.session("s").open()
    result = await session.turn("go").run()
    assert result.outcome == "completed"
    assert [r.call.id for r in result.tool_calls] == ["cb", "ca"]
    assert [r.result.content for r in result.tool_calls] == ["b done", "a done"]
    tool_msgs = [m for m in rec.requests[1].messages if m.role == "tool"]
    assert [m.tool_call_id for m in tool_msgs] == ["cb", "ca"]


async def test_invalid_arguments_become_an_error_result_the_model_sees() -> None:
    """Wrongly typed arguments never reach the tool; the model gets an error result instead."""
    rec = Recorder([{"tool_calls": [call("add", "c1", a="two", b=3)]}, {"text": "sorry"}])
    session = await make_core(rec, ToolsPlugin()).session("s").open()
    result = await session.turn("add").run()
    assert result.outcome == "completed"
    record = result.tool_calls[0]
    assert record.result.is_error
    assert "a: expected int, got 'two' (str)" in record.result.content
    seen = next(m for m in rec.requests[1].messages if m.role == "tool")
    assert seen.content == record.result.content


async def test_non_json_arguments_become_an_error_result() -> None:
    """Arguments that are not a JSON object are answered with an error result."""
    rec = Recorder(
        [
            {"tool_calls": [{"name": "add", "id": "c1", "invalid_arguments": "{a: 1"}]},
            {"text": "ok"},
        ]
    )
    session = await make_core(rec, ToolsPlugin()).session("s").open()
    result = await session.turn("add").run()
    assert result.tool_calls[0].result.is_error
    assert "JSON object" in result.tool_calls[0].result.content


async def test_raising_tool_and_hanging_tool_become_error_results() -> None:
    """A tool that raises and one that hangs past its timeout both yield error results."""
    rec = Recorder(
        [
            {
                "tool_calls": [
                    call("explode", "c1", reason="kaboom"),
                    call("hang", "c2", seconds=30),
                ]
            },
            {"text": "handled"},
        ]
    )
    session = await make_core(rec, ToolsPlugin()).session("s").open()
    result = await asyncio.wait_for(session.turn("try").run(), 5)
    assert result.outcome == "completed"
    boom, hung = (r.result for r in result.tool_calls)
    assert boom.is_error and "RuntimeError" in boom.content and "kaboom" in boom.content
    assert hung.is_error and "timed out" in hung.content


async def test_unknown_tool_is_an_error_result() -> None:
    """A call to a tool that does not exist is answered with an error listing the tools."""
    rec = Recorder([{"tool_calls": [call("nope", "c1")]}, {"text": "ok"}])
    session = await make_core(rec, ToolsPlugin()).session("s").open()
    result = await session.turn("x").run()
    assert result.tool_calls[0].result.is_error
    assert "unknown tool 'nope'" in result.tool_calls[0].result.content


async def test_max_tool_rounds_stops_the_turn_and_closes_the_calls() -> None:
    """After max_tool_rounds rounds the turn stops; unanswered calls still get a result node."""
    rec = Recorder(
        [
            {"tool_calls": [call("add", "c1", a=1, b=1)]},
            {"tool_calls": [call("add", "c2", a=1, b=2)]},
        ]
    )
    core = make_core(rec, ToolsPlugin())
    session = await core.session("s", options={"standard": {"max_tool_rounds": 1}}).open()
    assert session.options(standard.StandardOptions).max_tool_rounds == 1
    result = await session.turn("loop").run()
    assert (result.outcome, result.reason) == ("stopped", "max_tool_rounds")
    results = [n for n in session.nodes if isinstance(n, lash.ToolResultNode)]
    assert [n.call_id for n in results] == ["c1", "c2"]
    assert results[1].is_error


async def test_cancellation_mid_stream_commits_stopped_and_session_stays_usable() -> None:
    """Cancelling during a slow model stream ends the turn stopped(cancelled), committed."""
    rec = Recorder(
        [
            {"text": "a long answer " * 50, "chunk_size": 5},
            {"text": "slow", "delay": 30},
            {"text": "still here"},
        ]
    )
    session = await make_core(rec).session("s").open()
    await session.turn("warm up").run()
    turn = session.turn("slow please")

    async def cancel_soon() -> None:
        while not session._runtime.running:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert session.cancel_running_turns() == 1

    canceller = asyncio.create_task(cancel_soon())
    result = await asyncio.wait_for(turn.run(), 5)
    await canceller
    assert (result.outcome, result.reason) == ("stopped", "cancelled")
    assert result.revision == 2 and session.turns == 2
    again = await session.turn("are you there?").run()
    assert again.outcome == "completed" and again.text == "still here"


async def test_stream_yields_typed_events_in_order() -> None:
    """stream() yields text deltas, tool start/finish and ends with TurnFinished."""
    rec = Recorder(
        [
            {"text": "abcdef", "chunk_size": 2, "tool_calls": [call("add", "c1", a=1, b=2)]},
            {"text": "done"},
        ]
    )
    session = await make_core(rec, ToolsPlugin()).session("s").open()
    events = [e async for e in session.turn("x").stream()]
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "TextDeltaEvent",
        "TextDeltaEvent",
        "TextDeltaEvent",
        "ToolCallStarted",
        "ToolCallFinished",
        "TextDeltaEvent",
        "TurnFinished",
    ]
    assert isinstance(events[-1], lash.TurnFinished) and events[-1].result.text == "done"


class Aborter:
    lash_plugin = lash.PluginMeta(name="aborter")

    def __init__(self, when: str) -> None:
        self.when = when

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> lash.TurnDirective | None:
        if self.when == "before" and "forbidden" in turn.input:
            return lash.AbortTurn("forbidden topic")
        if self.when == "enqueue" and turn.input == "first":
            return lash.EnqueueMessages(("follow-up",))
        return None

    @lash.hookimpl
    async def after_turn(self, turn: lash.TurnView) -> lash.TurnDirective | None:
        return lash.AbortTurn("reviewed and rejected") if self.when == "after" else None


async def test_plugin_aborts_turn_in_before_turn() -> None:
    """An AbortTurn from before_turn stops the turn with plugin_abort before any model call."""
    rec = Recorder([])
    session = await make_core(rec, Aborter("before")).session("s").open()
    result = await session.turn("a forbidden question").run()
    assert (result.outcome, result.reason, result.detail) == (
        "stopped",
        "plugin_abort",
        "forbidden topic",
    )
    assert rec.requests == [] and result.revision == 1


async def test_after_turn_abort_marks_the_turn_stopped() -> None:
    """An async after_turn returning AbortTurn marks a completed turn stopped(plugin_abort)."""
    session = await make_core(Recorder(["fine"]), Aborter("after")).session("s").open()
    result = await session.turn("hello").run()
    assert (result.outcome, result.reason) == ("stopped", "plugin_abort")


async def test_enqueue_directive_queues_input_for_a_later_turn() -> None:
    """EnqueueMessages queues input in the session's mailbox with the turn; drain runs it."""
    session = await make_core(Recorder(["one", "two"]), Aborter("enqueue")).session("s").open()
    await session.turn("first").run()
    (queued,) = await session.inputs()
    assert (queued.text, queued.state, queued.source) == ("follow-up", "pending", "plugin:aborter")
    (follow_up,) = await session.drain()
    assert (follow_up.outcome, follow_up.text, follow_up.index) == ("completed", "two", 2)
    assert await session.inputs() == []


class Raiser:
    lash_plugin = lash.PluginMeta(name="raiser")

    @lash.hookimpl
    def before_turn(self) -> None:
        raise ValueError("broken plugin")

    @lash.hookimpl
    def session_opened(self) -> None:
        raise RuntimeError("observer broke")


async def test_raising_hook_fails_turn_naming_plugin_and_hook_and_broadcast_is_isolated() -> None:
    """A raising before_turn fails the turn with an error naming plugin and hook (committed);
    a raising session_opened handler is reported and does not stop the open."""
    errors: list[lash.LashError] = []
    core = make_core(Recorder([]), Raiser(), on_error=errors.append)
    session = await core.session("s").open()
    assert len(errors) == 1 and isinstance(errors[0], lash.PluginError)
    assert (errors[0].plugin, errors[0].hook) == ("raiser", "session_opened")
    result = await session.turn("hi").run()
    assert result.outcome == "failed"
    assert "raiser" in (result.error or "") and "before_turn" in (result.error or "")
    assert result.revision == 1


class ToolHooks:
    lash_plugin = lash.PluginMeta(name="toolhooks")

    @lash.hookimpl
    def before_tool_call(self, call: lash.ToolCall) -> lash.ToolCallDirective | None:
        if call.id == "replace":
            return lash.ReplaceToolArguments({"a": 40, "b": 2})
        if call.id == "short":
            return lash.ShortCircuitToolCall("cached: 99")
        if call.id == "refuse":
            return lash.AbortToolCall("not allowed today")
        return None

    @lash.hookimpl
    async def after_tool_call(
        self, call: lash.ToolCall, result: lash.ToolResult
    ) -> lash.ToolResult | None:
        if call.id == "replace":
            return attrs.evolve(result, content=result.content + "!")
        return None

    @lash.hookimpl
    def project_tool_result(self, result: lash.ToolResult) -> str | None:
        return result.content[:3] if len(result.content) > 3 else None


async def test_tool_call_hooks_replace_short_circuit_abort_and_project() -> None:
    """before/after_tool_call fold their directives; project_tool_result shapes what the model
    sees while the full result stays in the graph."""
    rec = Recorder(
        [
            {
                "tool_calls": [
                    call("add", "replace", a=1, b=1),
                    call("add", "short", a=1, b=1),
                    call("add", "refuse", a=1, b=1),
                ]
            },
            {"text": "ok"},
        ]
    )
    session = await make_core(rec, ToolsPlugin(), ToolHooks()).session("s").open()
    result = await session.turn("x").run()
    replaced, short, refused = (r.result for r in result.tool_calls)
    assert replaced.content == "42!" and result.tool_calls[0].call.arguments == {"a": 40, "b": 2}
    assert short.content == "cached: 99"
    assert (
        refused.is_error
        and "toolhooks" in refused.content
        and "not allowed today" in refused.content
    )
    seen = {m.tool_call_id: m.content for m in rec.requests[1].messages if m.role == "tool"}
    assert seen == {"replace": "42!", "short": "cac", "refuse": refused.content[:3]}
    stored = {n.call_id: n.content for n in session.nodes if isinstance(n, lash.ToolResultNode)}
    assert stored["short"] == "cached: 99"


class Prompter:
    lash_plugin = lash.PluginMeta(name="prompter")

    @lash.hookimpl
    def prompt_contributions(self) -> list[lash.PromptContribution]:
        return [
            lash.PromptContribution("reminder text", slot="reminder"),
            lash.PromptContribution("second system", priority=200),
            lash.PromptContribution("first system", priority=1),
            lash.PromptContribution("needs add", slot="context", requires_tool="add"),
            lash.PromptContribution("needs missing", requires_tool="missing"),
        ]


async def test_prompt_contributions_ordered_by_slot_priority_and_gated_on_tools() -> None:
    """Fragments are ordered by slot then priority; a tool gate drops fragments of absent tools."""
    rec = Recorder(["ok"])
    session = await make_core(rec, ToolsPlugin(), Prompter()).session("s").open()
    await session.turn("x").run()
    system = rec.requests[0].messages[0]
    assert system.role == "system"
    assert system.content == "first system\n\nsecond system\n\nneeds add\n\nreminder text"


async def test_plan_state_survives_resume_and_prompt_shows_it() -> None:
    """The plan plugin's declared state is committed with the turn and restored on open."""
    steps = [{"step": "one", "status": "completed"}, {"step": "two"}]
    rec = Recorder([{"tool_calls": [call("update_plan", "p1", steps=steps)]}, "planned", "next"])
    core = lash.LashCore(
        store="memory://",
        plugins=[standard, stores, rec, plan],
        autoload=False,
        disable=["scripted", "openai", "tool_output_budget"],
        provider="recorder",
    )
    first = await core.session("p").open()
    result = await first.turn("plan it").run()
    assert result.tool_calls[0].result.content.startswith("plan updated")
    await first.close()
    resumed = await core.session("p").open(must_exist=True)
    state = resumed.state(plan.PlanState)
    assert [(s.step, s.status) for s in state.steps] == [("one", "completed"), ("two", "pending")]
    await resumed.turn("and now?").run()
    assert "[x] one\n[ ] two" in rec.requests[-1].messages[0].content


class Materializer:
    lash_plugin = lash.PluginMeta(name="mat")

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    @lash.hookimpl
    def prepare_session(self, session: lash.SessionView, is_root: bool) -> None:
        self.calls.append((session.id, is_root))


async def test_prepare_session_fires_on_every_open_and_resume() -> None:
    """prepare_session runs for the plugin on open, and again on resume."""
    mat = Materializer()
    core = make_core(Recorder(["hi"]), mat)
    session = await core.session("m").open()
    await session.turn("x").run()
    await session.close()
    await core.session("m").open(must_exist=True)
    assert mat.calls == [("m", True), ("m", True)]


async def test_open_must_exist_raises_unknown_session() -> None:
    """Opening a missing session with must_exist=True names the session."""
    core = make_core(Recorder([]))
    with pytest.raises(lash.UnknownSession, match="'ghost'"):
        await core.session("ghost").open(must_exist=True)


async def test_tool_name_clash_names_both_plugins() -> None:
    """Two plugins registering the same tool name fail the core build naming both."""

    class Other:
        lash_plugin = lash.PluginMeta(name="other")

        @lash.hookimpl
        def register_tools(self, register: lash.RegisterTool) -> None:
            def add(a: int) -> int:
                """Shadow."""
                return a

            register(add)

    with pytest.raises(lash.PluginError, match=r"'tools'.*'other'|'other'.*'tools'"):
        make_core(Recorder([]), ToolsPlugin(), Other())


async def test_usage_report_sums_committed_turns() -> None:
    """usage_report totals the usage of every committed turn."""
    rec = Recorder(
        [
            {"text": "a", "usage": {"input_tokens": 3, "output_tokens": 1, "cached_tokens": 2}},
            {"text": "b", "usage": {"input_tokens": 5, "output_tokens": 2}},
        ]
    )
    session = await make_core(rec).session("u").open()
    await session.turn("1").run()
    await session.turn("2").run()
    assert session.usage_report()["total"] == {
        "input_tokens": 8,
        "output_tokens": 3,
        "cached_tokens": 2,
    }
    assert session.turns == 2


async def test_provider_error_fails_the_turn_and_is_committed() -> None:
    """A provider error fails the turn (outcome failed, error text) and the turn is committed."""
    rec = Recorder([{"error": "model overloaded"}, "recovered"])
    session = await make_core(rec).session("e").open()
    result = await session.turn("x").run()
    assert result.outcome == "failed" and "model overloaded" in (result.error or "")
    assert (await session.turn("again").run()).text == "recovered"


async def test_structured_input_items_are_recorded_with_the_text() -> None:
    """Turn input is text plus optional structured items, recorded on the user message node."""
    session = await make_core(Recorder(["ok"])).session("items").open()
    items = ({"kind": "attachment", "name": "plan.pdf", "pages": 3},)
    await session.turn("see attached", items=items).run()
    user = next(n for n in session.nodes if isinstance(n, lash.UserMessage))
    assert (user.text, user.items) == ("see attached", items)
    await session.close()
    stored = await session.core.store.load("items")
    assert stored is not None
    assert next(n for n in stored.nodes if isinstance(n, lash.UserMessage)).items == items


def test_a_committed_result_is_the_result_with_its_revision() -> None:
    """The kernel copies a turn's result with its commit's revision by a generated evolver
    (faster than attrs.evolve): the same result as attrs.evolve, every field carried."""
    from lash._kernel.turn import committed_result

    assert [f.name for f in attrs.fields(lash.TurnResult)] == [
        "session_id", "index", "outcome", "text", "reason", "error", "error_plugin",
        "error_hook", "detail", "tool_calls", "usage", "revision", "turn_id", "cancelled_by",
        "cancel_reason", "output", "output_errors",
    ]  # fmt: skip
    call = lash.ToolCall("c1", "echo", {"text": "x"})
    result = lash.TurnResult(
        "s", 3, "stopped", "text", "cancelled", "err", "plug", "hook", "detail",
        (lash.ToolCallRecord(call, lash.ToolResult("c1", "x")),), lash.Usage(1, 2, 3), 0,
        "turn-1", "host", "why", {"a": 1}, ("problem",),
    )  # fmt: skip
    assert committed_result(result, 7) == attrs.evolve(result, revision=7)


def test_an_evolver_is_attrs_evolve_for_its_fields() -> None:
    """evolver(cls, *names) changes those fields and carries every other one, keyword-only
    and aliased fields included; it refuses names that are not distinct fields of the class
    and classes with a field it could not carry (not in __init__)."""
    from lash._contract.slots import evolver

    @attrs.frozen
    class Record:
        a: int
        _b: str
        c: float = 0.0
        d: tuple[int, ...] = attrs.field(default=(), kw_only=True)

    record = Record(1, "b", 2.5, d=(3,))
    assert evolver(Record, "c")(record, 9.0) == attrs.evolve(record, c=9.0)
    assert evolver(Record, "d", "a")(record, (4,), 5) == attrs.evolve(record, d=(4,), a=5)
    assert evolver(Record, "_b")(record, "x") == attrs.evolve(record, b="x")

    @attrs.frozen
    class Derived:
        a: int
        b: int = attrs.field(init=False, default=0)

    for cls, names in ((Record, ("e",)), (Record, ("a", "a")), (Record, ()), (Derived, ("a",))):
        with pytest.raises(ValueError, match="evolver"):
            evolver(cls, *names)


def test_usage_adds_field_by_field_and_a_sum_with_none_is_the_other_amount() -> None:
    """Usage sums each count; a sum with no tokens is the other amount (the same frozen
    object: the kernel adds a model call's usage to none on every turn)."""
    one, two = lash.Usage(1, 2, 3), lash.Usage(10, 20, 30)
    assert one + two == lash.Usage(11, 22, 33)
    assert (one + two).total_tokens == 33
    none = lash.Usage()
    assert none + one is one and one + none is one
    assert none + none == lash.Usage()
