"""The hook contract, end to end: every hook whose kernel call site exists, through a real core.

For each hook this checks what ``lash/hookspecs.py`` documents: the dispatch shape (collect: all
run, in plugin order; chain: each sees the previous output; exclusive: a second implementation is
an ``ExclusiveHookConflict`` naming both plugins at core build; broadcast: all run even if one
raises), the order (config order, refined by ``before``/``after``, adjusted by tryfirst/trylast),
``async def`` implementations where the spec says "may be async", implementations that accept a
subset of the arguments, and the failure rule when an implementation raises. Expected values come
from the hookspec docstrings, not from running the kernel.

Covered: register_tools, register_providers, register_protocol, register_process_kinds,
register_stores, register_operations, prepare_session, filter_tool_catalog, prompt_contributions,
transform_prompt_view, before_turn, model_call_finished, after_turn, before_tool_call,
after_tool_call, project_tool_result, session_opened, turn_finalized, turn_persisted,
session_closed.

Out of scope (no kernel call site yet): mutate_session_config, session_config_changed,
compact_context, frame_opened, session_parked, register_commands; process_finished and
render_process_result are called by workers, and tested in tests/test_processes.py. The only
"first" hook is compact_context, so the "first" shape is not exercised here (see
tests/test_dispatch.py for the dispatcher itself).
"""

from __future__ import annotations

import functools
import logging
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import pytest
from _recorder import Recorder

import lash
import lash.store
from lash import hookspecs
from lash_plugins_builtin import standard, stores

REGISTRATION = (
    "register_tools",
    "register_providers",
    "register_process_kinds",
    "register_stores",
    "register_operations",
)
TURN_FAILING = (
    "filter_tool_catalog",
    "prompt_contributions",
    "transform_prompt_view",
    "before_turn",
    "after_turn",
)
BROADCAST = (
    "session_opened",
    "model_call_finished",
    "turn_finalized",
    "turn_persisted",
    "session_closed",
)
#: Every hook with several implementations allowed, in the order a scenario first calls them.
ORDERED = (
    *REGISTRATION,
    "prepare_session",
    "session_opened",
    "filter_tool_catalog",
    "prompt_contributions",
    "transform_prompt_view",
    "before_turn",
    "model_call_finished",
    "before_tool_call",
    "after_tool_call",
    "after_turn",
    "turn_finalized",
    "turn_persisted",
    "session_closed",
)
IN_SCOPE = frozenset({*ORDERED, "register_protocol", "project_tool_result"})
OUT_OF_SCOPE = frozenset(
    {
        "mutate_session_config",
        "session_config_changed",
        "compact_context",
        "frame_opened",
        "session_parked",
        "process_finished",  # tests/test_processes.py
        "render_process_result",  # tests/test_processes.py
        "register_commands",
        "register_session_commands",  # tests/test_mailbox.py
        "checkpoint",  # tests/test_mailbox.py
    }
)


# -- building blocks ------------------------------------------------------------------------------


class Tools:
    """Async tools that record their calls."""

    lash_plugin = lash.PluginMeta(name="tools")

    def __init__(self) -> None:
        self.ran: list[str] = []

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        ran = self.ran

        async def echo(text: str) -> str:
            """Return the text."""
            ran.append(text)
            return text

        async def reverse(text: str) -> str:
            """Return the text reversed."""
            return text[::-1]

        async def count(text: str) -> int:
            """Count the characters of the text."""
            return len(text)

        register(echo)
        register(reverse)
        register(count)


def call(name: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "id": call_id, "arguments": arguments}


#: One tool round trip: the model calls echo, then answers.
ROUND_TRIP = ({"tool_calls": [call("echo", "c1", text="hi")]}, "done")


def make_core(
    rec: Recorder,
    *plugins: object,
    base: Sequence[object] = (standard, stores),
    disable: Sequence[str] = (),
    **kwargs: Any,
) -> lash.LashCore:
    return lash.LashCore(
        plugins=[*base, rec, *plugins],
        autoload=False,
        disable=["scripted", "openai", "plan", "tool_output_budget", *disable],
        provider="recorder",
        **{"store": "memory://", **kwargs},
    )


def probe(name: str, meta: lash.PluginMeta | None = None, **hooks: Callable[..., Any]) -> Any:
    """A module plugin named ``name`` implementing ``hooks`` (functions may be pre-marked)."""
    module = types.ModuleType(name)
    if meta is not None:
        module.lash_plugin = meta  # type: ignore[attr-defined]
    for hook, function in hooks.items():
        marked = function if hasattr(function, "lash_impl") else lash.hookimpl(function)
        setattr(module, hook, marked)
    return module


Log = list[tuple[str, str]]


def recording(
    log: Log, plugin: str, hook: str, *, is_async: bool = False, **marks: bool
) -> Callable[..., Any]:
    """An implementation taking no arguments (a subset of any hook's) that logs it ran."""
    if is_async:

        async def impl() -> None:
            log.append((plugin, hook))

    else:

        def impl() -> None:  # type: ignore[misc]
            log.append((plugin, hook))

    return lash.hookimpl(**marks)(impl)  # type: ignore[no-any-return]


def raising(
    log: Log, plugin: str, hook: str, *, is_async: bool = False, lash_error: bool = False
) -> Callable[..., Any]:
    """An implementation that logs it ran, then raises (ValueError, or a lash ConfigError)."""

    def error() -> Exception:
        message = f"{plugin} broke in {hook}"
        return lash.ConfigError(message) if lash_error else ValueError(message)

    if is_async:

        async def impl() -> None:
            log.append((plugin, hook))
            raise error()

    else:

        def impl() -> None:  # type: ignore[misc]
            log.append((plugin, hook))
            raise error()

    return lash.hookimpl(impl)  # type: ignore[no-any-return]


async def scenario(core: lash.LashCore) -> lash.TurnResult:
    """Drive every in-scope hook: open, one turn with a tool round trip, close, resume, close."""
    session = await core.session("s").open()
    result = await session.turn("hello").run()
    await session.close()
    resumed = await core.session("s").open(must_exist=True)
    await resumed.close()
    return result


def runs_of(log: Log, hook: str) -> list[str]:
    return [plugin for plugin, name in log if name == hook]


def assert_runs_in_order(log: Log, hook: str, order: list[str]) -> None:
    """Every dispatch of ``hook`` ran all of ``order``, in that order (and it ran at all)."""
    runs = runs_of(log, hook)
    assert runs, f"{hook} never ran"
    assert runs == order * (len(runs) // len(order)), runs


def assert_names(error: BaseException, plugin: str, hook: str) -> None:
    """``error`` is a PluginError naming the plugin and the hook, chained to the cause."""
    assert isinstance(error, lash.PluginError), repr(error)
    assert (error.plugin, error.hook) == (plugin, hook)
    assert repr(plugin) in str(error) and hook in str(error)


def tool_messages(request: lash.ModelRequest) -> dict[str | None, str]:
    return {m.tool_call_id: m.content for m in request.messages if m.role == "tool"}


async def head(core: lash.LashCore, session_id: str = "s") -> int:
    record = await core.store.load(session_id)
    return record.revision if record is not None else 0


# -- the list of hooks ----------------------------------------------------------------------------


def test_every_hook_is_covered_or_listed_out_of_scope() -> None:
    """Every hook in lash.hookspecs is either covered by this module or listed as out of scope."""
    assert IN_SCOPE | OUT_OF_SCOPE == set(hookspecs.SHAPES)
    assert not IN_SCOPE & OUT_OF_SCOPE
    assert {h for h in IN_SCOPE if hookspecs.SHAPES[h] == "exclusive"} == {
        "register_protocol",
        "project_tool_result",
    }
    assert {h for h in ORDERED if hookspecs.SHAPES[h] == "broadcast"} == set(BROADCAST)


# -- order ----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("hook", ORDERED)
async def test_all_implementations_run_in_config_order(hook: str) -> None:
    """Every implementation runs, in config order (async ones awaited where allowed)."""
    log: Log = []
    can_be_async = hook in hookspecs.ASYNC_ALLOWED
    plugins = [
        probe(name, **{hook: recording(log, name, hook, is_async=can_be_async and name == "p2")})
        for name in ("p1", "p2", "p3")
    ]
    await scenario(make_core(Recorder(ROUND_TRIP), Tools(), *plugins))
    assert_runs_in_order(log, hook, ["p1", "p2", "p3"])


@pytest.mark.anyio
@pytest.mark.parametrize("hook", ORDERED)
async def test_tryfirst_and_trylast_adjust_config_order(hook: str) -> None:
    """tryfirst implementations run before all others, trylast ones after, each in config order."""
    log: Log = []
    is_async = hook in hookspecs.ASYNC_ALLOWED
    plugins = [
        probe("late1", **{hook: recording(log, "late1", hook, trylast=True)}),
        probe("mid1", **{hook: recording(log, "mid1", hook, is_async=is_async)}),
        probe("early1", **{hook: recording(log, "early1", hook, tryfirst=True)}),
        probe("late2", **{hook: recording(log, "late2", hook, trylast=True, is_async=is_async)}),
        probe("mid2", **{hook: recording(log, "mid2", hook)}),
        probe("early2", **{hook: recording(log, "early2", hook, tryfirst=True, is_async=is_async)}),
    ]
    await scenario(make_core(Recorder(ROUND_TRIP), Tools(), *plugins))
    assert_runs_in_order(log, hook, ["early1", "early2", "mid1", "mid2", "late1", "late2"])


@pytest.mark.anyio
@pytest.mark.parametrize("hook", ORDERED)
async def test_before_and_after_declarations_refine_config_order(hook: str) -> None:
    """A plugin declaring after=(other,) runs after it although listed first."""
    log: Log = []
    plugins = [
        probe("p1", lash.PluginMeta(after=("p2",)), **{hook: recording(log, "p1", hook)}),
        probe("p2", **{hook: recording(log, "p2", hook)}),
    ]
    await scenario(make_core(Recorder(ROUND_TRIP), Tools(), *plugins))
    assert_runs_in_order(log, hook, ["p2", "p1"])


# -- arguments ------------------------------------------------------------------------------------


class Subset:
    """Implements every hook it may with a subset of the documented arguments, reordered."""

    lash_plugin = lash.PluginMeta(name="subset")

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    @lash.hookimpl
    def register_tools(self, options: Any) -> None:
        self.seen["register_tools"] = options

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        self.seen["register_providers"] = callable(register)

    @lash.hookimpl
    def register_process_kinds(self) -> None:
        self.seen["register_process_kinds"] = True

    @lash.hookimpl
    def register_stores(self, register: lash.RegisterStore) -> None:
        self.seen["register_stores"] = callable(register)

    @lash.hookimpl
    def register_operations(self, register: lash.RegisterOperation) -> None:
        self.seen["register_operations"] = callable(register)

    @lash.hookimpl
    def prepare_session(self, is_root: bool, session: lash.SessionView) -> None:
        self.seen.setdefault("prepare_session", []).append((is_root, session.id))

    @lash.hookimpl
    async def session_opened(self, restored: bool) -> None:
        self.seen.setdefault("session_opened", []).append(restored)

    @lash.hookimpl
    def filter_tool_catalog(self, catalog: tuple[lash.ToolCatalogEntry, ...]) -> None:
        self.seen["filter_tool_catalog"] = sorted((e.name, e.plugin) for e in catalog)

    @lash.hookimpl
    def prompt_contributions(self) -> lash.PromptContribution:
        self.seen["prompt_contributions"] = True
        return lash.PromptContribution("subset fragment")

    @lash.hookimpl
    async def transform_prompt_view(self, view: lash.PromptView) -> None:
        self.seen["transform_prompt_view"] = sorted(view.tools)

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> None:
        self.seen["before_turn"] = (turn.input, turn.index, turn.session.id)

    @lash.hookimpl
    def before_tool_call(self, context: lash.ToolContext, call: lash.ToolCall) -> None:
        self.seen["before_tool_call"] = (context.call_id, context.session.id, call.id)

    @lash.hookimpl
    async def after_tool_call(self, result: lash.ToolResult) -> None:
        self.seen["after_tool_call"] = result

    @lash.hookimpl
    def project_tool_result(self, result: lash.ToolResult, call: lash.ToolCall) -> None:
        self.seen["project_tool_result"] = (call.id, result.content)

    @lash.hookimpl
    def model_call_finished(self, error: Any, response: lash.ModelResponse | None) -> None:
        assert response is not None
        self.seen.setdefault("model_call_finished", []).append((response.finish_reason, error))

    @lash.hookimpl
    def after_turn(self) -> None:
        self.seen["after_turn"] = True

    @lash.hookimpl
    def turn_finalized(self, turn: lash.TurnView) -> None:
        self.seen["turn_finalized"] = turn.index

    @lash.hookimpl
    def turn_persisted(self, revision: int) -> None:
        self.seen["turn_persisted"] = revision

    @lash.hookimpl
    def session_closed(self, session: lash.SessionView) -> None:
        self.seen.setdefault("session_closed", []).append(session.id)


@pytest.mark.anyio
async def test_implementations_accepting_a_subset_of_arguments_keep_working() -> None:
    """Implementations naming a subset of a hook's arguments, in any order, get just those."""
    rec = Recorder(ROUND_TRIP)
    sub = Subset()
    result = await scenario(make_core(rec, Tools(), sub))
    assert result.outcome == "completed" and result.revision == 1
    assert set(sub.seen) == IN_SCOPE - {"register_protocol"}
    tools = [("count", "tools"), ("echo", "tools"), ("reverse", "tools")]
    assert sub.seen == {
        "register_tools": None,
        "register_providers": True,
        "register_process_kinds": True,
        "register_stores": True,
        "register_operations": True,
        "prepare_session": [(True, "s"), (True, "s")],
        "session_opened": [False, True],
        "filter_tool_catalog": tools,
        "prompt_contributions": True,
        "transform_prompt_view": ["count", "echo", "reverse"],
        "before_turn": ("hello", 1, "s"),
        "model_call_finished": [("tool_calls", None), ("stop", None)],
        "before_tool_call": ("c1", "s", "c1"),
        "after_tool_call": lash.ToolResult("c1", "hi"),
        "project_tool_result": ("c1", "hi"),
        "after_turn": True,
        "turn_finalized": 1,
        "turn_persisted": 1,
        "session_closed": ["s", "s"],
    }
    assert "subset fragment" in rec.requests[0].messages[0].content


# -- registration hooks ---------------------------------------------------------------------------


def contribute(hook: str, register: Callable[..., None], name: str) -> None:
    """Register one thing called ``name`` through the registrar of ``hook``."""
    if hook == "register_tools":

        async def tool(text: str) -> str:
            """A contributed tool."""
            return text

        register(tool, name=name)
    elif hook == "register_process_kinds":

        async def run(context: lash.ProcessContext, payload: Any) -> None:
            """A contributed process kind."""

        register(name, run)
    elif hook == "register_operations":

        async def operation(context: lash.OperationContext) -> None:
            """A contributed operation."""

        register(name, operation)
    else:
        register(name, object())


KINDS = {
    "register_tools": "tool",
    "register_providers": "provider",
    "register_process_kinds": "process_kind",
    "register_stores": "store",
    "register_operations": "operation",
}


def contributor(plugin: str, hook: str, name: str, **marks: bool) -> Any:
    def impl(register: Any) -> None:
        contribute(hook, register, name)

    return probe(plugin, **{hook: lash.hookimpl(**marks)(impl)})


@pytest.mark.parametrize("hook", REGISTRATION)
def test_registration_collects_every_contribution_attributed_to_its_plugin(hook: str) -> None:
    """Registration hooks collect: every plugin's contributions land in the registry, tagged."""
    core = make_core(
        Recorder([]), contributor("alpha", hook, "from_alpha"), contributor("beta", hook, "from_b")
    )
    table = core.registry.of(KINDS[hook])
    assert (table["from_alpha"].plugin, table["from_b"].plugin) == ("alpha", "beta")


@pytest.mark.parametrize("hook", REGISTRATION)
def test_registration_name_clash_names_both_plugins(hook: str) -> None:
    """Registering a name another plugin already registered fails the build naming both."""
    with pytest.raises(lash.PluginError) as info:
        make_core(
            Recorder([]), contributor("alpha", hook, "same"), contributor("beta", hook, "same")
        )
    assert "'alpha'" in str(info.value) and "'beta'" in str(info.value)
    assert (info.value.plugin, info.value.hook) == ("beta", hook)


def test_register_protocol_is_exclusive_and_a_second_names_both_plugins() -> None:
    """A second register_protocol implementation is an ExclusiveHookConflict at core build."""

    def register_protocol(register: lash.RegisterProtocol) -> None:
        register("other", standard.StandardProtocol())

    with pytest.raises(lash.ExclusiveHookConflict) as info:
        make_core(Recorder([]), probe("proto2", register_protocol=register_protocol))
    assert info.value.hook == "register_protocol"
    assert info.value.plugins == ("standard", "proto2")
    assert "'standard'" in str(info.value) and "'proto2'" in str(info.value)


@pytest.mark.parametrize("hook", [*REGISTRATION, "register_protocol"])
def test_registration_hook_raising_fails_the_core_build_naming_plugin_and_hook(hook: str) -> None:
    """A raising registration hook fails the core build with a PluginError naming both."""
    log: Log = []
    # register_protocol is exclusive: the failing plugin must be the only protocol.
    disable = ["standard"] if hook == "register_protocol" else []
    base = (stores,) if hook == "register_protocol" else (standard, stores)
    bad = probe("bad", **{hook: raising(log, "bad", hook)})
    with pytest.raises(lash.PluginError) as info:
        make_core(Recorder([]), bad, base=base, disable=disable)
    assert_names(info.value, "bad", hook)
    assert isinstance(info.value.__cause__, ValueError)
    assert log == [("bad", hook)]


@pytest.mark.parametrize("hook", [*REGISTRATION, "register_protocol"])
def test_registration_hooks_refuse_async_implementations(hook: str) -> None:
    """Registration hooks are not async: an async implementation is refused, naming plugin and
    hook."""
    log: Log = []
    bad = probe("bad", **{hook: recording(log, "bad", hook, is_async=True)})
    with pytest.raises(lash.PluginLoadError) as info:
        make_core(Recorder([]), bad, strict=True)
    assert (info.value.plugin, info.value.hook) == ("bad", hook)
    assert log == []


def test_registration_hook_raising_a_lash_error_still_fails_with_plugin_error() -> None:
    """A registration hook raising a lash error (not a PluginError) still fails the build with a
    PluginError naming the plugin and the hook."""
    log: Log = []
    bad = probe("bad", register_tools=raising(log, "bad", "register_tools", lash_error=True))
    with pytest.raises(lash.PluginError) as info:
        make_core(Recorder([]), bad)
    assert_names(info.value, "bad", "register_tools")


# -- prepare_session --------------------------------------------------------------------------


@attrs.frozen
class GreeterOptions:
    """Per-session options of the greeter test plugin."""

    greeting: str = lash.option(default="hello", help="What to say.")


class Greeter:
    """Records what prepare_session hands it (it declares options)."""

    lash_plugin = lash.PluginMeta(name="greeter", options=GreeterOptions)

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, bool]] = []

    @lash.hookimpl
    async def prepare_session(
        self, session: lash.SessionView, options: GreeterOptions, is_root: bool
    ) -> None:
        self.calls.append((session.id, options, is_root))


class Plain:
    """Records what prepare_session hands it (it declares no options)."""

    lash_plugin = lash.PluginMeta(name="plain")

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, bool]] = []

    @lash.hookimpl
    def prepare_session(self, session: lash.SessionView, options: Any, is_root: bool) -> None:
        self.calls.append((session.id, options, is_root))


@pytest.mark.anyio
async def test_prepare_session_runs_for_every_plugin_on_every_open_with_its_own_options() -> None:
    """prepare_session runs for each plugin on open, resume and open_fresh, each receiving
    its own validated options (None when it declares none)."""
    greeter, plain = Greeter(), Plain()
    core = make_core(Recorder(["hi"]), greeter, plain)
    session = await core.session("s", options={"greeter": {"greeting": "hey"}}).open()
    await session.turn("x").run()
    await session.close()
    await (await core.session("s").open(must_exist=True)).close()
    await (await core.session("s").open_fresh()).close()
    assert greeter.calls == [
        ("s", GreeterOptions("hey"), True),
        ("s", GreeterOptions("hello"), True),
        ("s", GreeterOptions("hello"), True),
    ]
    assert plain.calls == [("s", None, True)] * 3


class FailingMaterializer:
    """prepare_session raises once ``fail`` is set."""

    lash_plugin = lash.PluginMeta(name="bad")

    def __init__(self, *, lash_error: bool = False) -> None:
        self.fail = False
        self.lash_error = lash_error

    def _check(self) -> None:
        if self.fail:
            raise lash.ConfigError("bad setting") if self.lash_error else ValueError("bad setting")

    @lash.hookimpl
    def prepare_session(self) -> None:
        self._check()


class AsyncFailingMaterializer(FailingMaterializer):
    """The same, implemented with ``async def``."""

    @lash.hookimpl
    async def prepare_session(self) -> None:  # type: ignore[override]
        self._check()


@pytest.mark.anyio
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_prepare_session_raising_fails_the_open_and_commits_nothing(
    is_async: bool,
) -> None:
    """A raising prepare_session fails open/open_fresh with a PluginError naming plugin and
    hook; nothing is committed and the session is not open."""
    bad = AsyncFailingMaterializer() if is_async else FailingMaterializer()
    bad.fail = True
    core = make_core(Recorder(["one", "two"]), bad)
    fresh = core.session("s")
    with pytest.raises(lash.PluginError) as info:
        await fresh.open()
    assert_names(info.value, "bad", "prepare_session")
    assert isinstance(info.value.__cause__, ValueError)
    assert await core.store.load("s") is None
    with pytest.raises(lash.SessionError):
        fresh.turn("x")

    bad.fail = False
    session = await core.session("s").open()
    await session.turn("first").run()
    await session.close()
    before = await core.store.load("s")
    assert before is not None and before.revision == 1
    bad.fail = True
    for open_again in (core.session("s").open, core.session("s").open_fresh):
        with pytest.raises(lash.PluginError) as info:
            await open_again()
        assert_names(info.value, "bad", "prepare_session")
        assert await core.store.load("s") == before


@pytest.mark.anyio
async def test_prepare_session_raising_a_lash_error_fails_the_open_with_plugin_error() -> None:
    """A lash error (not a PluginError) raised in prepare_session still fails the open with a
    PluginError naming the plugin and the hook."""
    bad = FailingMaterializer(lash_error=True)
    bad.fail = True
    core = make_core(Recorder([]), bad)
    with pytest.raises(lash.PluginError) as info:
        await core.session("s").open()
    assert_names(info.value, "bad", "prepare_session")


# -- catalog, prompt, prompt view -----------------------------------------------------------------


@pytest.mark.anyio
async def test_filter_tool_catalog_hides_the_union_of_every_plugins_names() -> None:
    """filter_tool_catalog collects: the union of all plugins' names is hidden; it never adds."""
    catalogs: list[list[tuple[str, str]]] = []

    def hide_echo(catalog: tuple[lash.ToolCatalogEntry, ...]) -> list[str]:
        catalogs.append(sorted((e.name, e.plugin) for e in catalog))
        return ["echo"]

    async def hide_count_and_ghost(catalog: tuple[lash.ToolCatalogEntry, ...]) -> list[str]:
        catalogs.append(sorted((e.name, e.plugin) for e in catalog))
        return ["count", "ghost"]

    rec = Recorder(["ok"])
    core = make_core(
        rec,
        Tools(),
        probe("f1", filter_tool_catalog=hide_echo),
        probe("f2", filter_tool_catalog=hide_count_and_ghost),
        probe("f3", filter_tool_catalog=lambda: None),
    )
    session = await core.session("s").open()
    assert (await session.turn("x").run()).outcome == "completed"
    assert [t.name for t in rec.requests[0].tools] == ["reverse"]
    everything = [("count", "tools"), ("echo", "tools"), ("reverse", "tools")]
    assert catalogs == [everything, everything]


@pytest.mark.anyio
@pytest.mark.parametrize("first", ["p1", "p2"])
async def test_prompt_contributions_collected_by_slot_priority_then_plugin_order(
    first: str,
) -> None:
    """prompt_contributions collects every plugin's fragments (async too), ordered by slot,
    priority, then plugin order (tryfirst adjusts it)."""

    def p1() -> list[lash.PromptContribution]:
        return [
            lash.PromptContribution("p1 reminder", slot="reminder", priority=0),
            lash.PromptContribution("p1 system"),
        ]

    async def p2() -> lash.PromptContribution:
        return lash.PromptContribution("p2 system")

    def p3() -> lash.PromptContribution:
        return lash.PromptContribution("p3 early system", priority=1)

    rec = Recorder(["ok"])
    core = make_core(
        rec,
        probe("p1", prompt_contributions=lash.hookimpl(tryfirst=first == "p1")(p1)),
        probe("p2", prompt_contributions=lash.hookimpl(tryfirst=first == "p2")(p2)),
        probe("p3", prompt_contributions=p3),
    )
    session = await core.session("s").open()
    await session.turn("x").run()
    middle = ["p1 system", "p2 system"] if first == "p1" else ["p2 system", "p1 system"]
    system = rec.requests[0].messages[0]
    assert system.role == "system"
    assert system.content.split("\n\n") == ["p3 early system", *middle, "p1 reminder"]


@pytest.mark.anyio
async def test_transform_prompt_view_chains_each_output_into_the_next() -> None:
    """transform_prompt_view chains: each sees the previous output, None passes it on, the model
    gets the last one and history is untouched."""
    seen: list[tuple[str, ...]] = []

    def one(view: lash.PromptView) -> lash.PromptView:
        return attrs.evolve(view, messages=(*view.messages, lash.Message("user", "one")))

    def declines(view: lash.PromptView) -> None:
        seen.append(tuple(m.content for m in view.messages))

    async def two(view: lash.PromptView) -> lash.PromptView:
        seen.append(tuple(m.content for m in view.messages))
        return lash.PromptView((*view.messages, lash.Message("user", "two")), ("echo",))

    rec = Recorder(["ok"])
    core = make_core(
        rec,
        Tools(),
        probe("t1", transform_prompt_view=one),
        probe("t2", transform_prompt_view=declines),
        probe("t3", transform_prompt_view=two),
    )
    session = await core.session("s").open()
    await session.turn("hello").run()
    assert seen == [("hello", "one"), ("hello", "one")]
    request = rec.requests[0]
    assert [m.content for m in request.messages] == ["hello", "one", "two"]
    assert [t.name for t in request.tools] == ["echo"]
    texts = [getattr(n, "text", None) for n in session.nodes]
    assert "one" not in texts and "two" not in texts


# -- before_turn / after_turn ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_before_turn_applies_every_directive_and_the_first_abort_wins() -> None:
    """before_turn collects: every directive is applied (async too), the first abort wins, and the
    turn stops before any model call."""
    log: Log = []

    def enqueue_early() -> lash.EnqueueMessages:
        log.append(("b1", "before_turn"))
        return lash.EnqueueMessages(("early",))

    async def abort_first() -> lash.AbortTurn:
        log.append(("b2", "before_turn"))
        return lash.AbortTurn("first abort")

    def abort_second() -> lash.AbortTurn:
        log.append(("b3", "before_turn"))
        return lash.AbortTurn("second abort")

    async def enqueue_late() -> lash.EnqueueMessages:
        log.append(("b4", "before_turn"))
        return lash.EnqueueMessages(("late",))

    rec = Recorder([])
    core = make_core(
        rec,
        probe("b1", before_turn=enqueue_early),
        probe("b2", before_turn=abort_first),
        probe("b3", before_turn=abort_second),
        probe("b4", before_turn=enqueue_late),
    )
    session = await core.session("s").open()
    result = await session.turn("x").run()
    assert (result.outcome, result.reason, result.detail) == (
        "stopped",
        "plugin_abort",
        "first abort",
    )
    assert runs_of(log, "before_turn") == ["b1", "b2", "b3", "b4"]
    assert [i.text for i in await session.inputs()] == ["early", "late"]
    assert rec.requests == [] and result.revision == 1


@pytest.mark.anyio
async def test_after_turn_collects_directives_before_the_commit() -> None:
    """after_turn collects (async too) before the commit: every directive is applied and an abort
    marks the turn stopped(plugin_abort)."""
    heads: list[tuple[str, int]] = []
    core: lash.LashCore

    async def enqueue(turn: lash.TurnView) -> lash.EnqueueMessages:
        heads.append(("a1", await head(core, turn.session.id)))
        return lash.EnqueueMessages(("again",))

    def abort(turn: lash.TurnView) -> lash.AbortTurn:
        heads.append(("a2", turn.index))
        return lash.AbortTurn("rejected")

    core = make_core(
        Recorder(["answer"]), probe("a1", after_turn=enqueue), probe("a2", after_turn=abort)
    )
    session = await core.session("s").open()
    result = await session.turn("x").run()
    assert heads == [("a1", 0), ("a2", 1)]
    assert (result.outcome, result.reason, result.detail) == ("stopped", "plugin_abort", "rejected")
    assert [i.text for i in await session.inputs()] == ["again"]
    assert result.revision == 1 and await head(core) == 1


# -- tool calls -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_before_tool_call_folds_directives_in_order() -> None:
    """before_tool_call is folded in order: replacements apply one after another; the first
    short-circuit or abort ends the fold and the tool is not called."""
    seen: list[tuple[str, str, dict[str, Any]]] = []

    def replace_one(call: lash.ToolCall) -> lash.ReplaceToolArguments:
        seen.append(("t1", call.id, dict(call.arguments)))
        return lash.ReplaceToolArguments({"text": "one"})

    async def replace_two(call: lash.ToolCall) -> lash.ReplaceToolArguments:
        seen.append(("t2", call.id, dict(call.arguments)))
        return lash.ReplaceToolArguments({"text": call.arguments["text"] + " two"})

    def stop_some(call: lash.ToolCall) -> lash.ToolCallDirective | None:
        seen.append(("t3", call.id, dict(call.arguments)))
        if call.id == "short":
            return lash.ShortCircuitToolCall("cached")
        if call.id == "refuse":
            return lash.AbortToolCall("not today")
        return None

    def last(call: lash.ToolCall) -> None:
        seen.append(("t4", call.id, dict(call.arguments)))

    tools = Tools()
    rec = Recorder(
        [
            {
                "tool_calls": [
                    call("echo", "run", text="x"),
                    call("echo", "short", text="x"),
                    call("echo", "refuse", text="x"),
                ]
            },
            "done",
        ]
    )
    core = make_core(
        rec,
        tools,
        probe("t1", before_tool_call=replace_one),
        probe("t2", before_tool_call=replace_two),
        probe("t3", before_tool_call=stop_some),
        probe("t4", before_tool_call=last),
    )
    session = await core.session("s").open()
    result = await session.turn("go").run()
    assert result.outcome == "completed"
    ran, short, refused = result.tool_calls
    assert (ran.call.arguments, ran.result) == (
        {"text": "one two"},
        lash.ToolResult("run", "one two"),
    )
    assert short.result == lash.ToolResult("short", "cached")
    assert refused.result.is_error
    assert "'t3'" in refused.result.content and "not today" in refused.result.content
    assert tools.ran == ["one two"]
    by_call = {cid: [(p, args) for p, c, args in seen if c == cid] for cid in ("run", "short")}
    assert by_call["run"] == [
        ("t1", {"text": "x"}),
        ("t2", {"text": "one"}),
        ("t3", {"text": "one two"}),
        ("t4", {"text": "one two"}),
    ]
    assert [p for p, _ in by_call["short"]] == ["t1", "t2", "t3"]


@pytest.mark.anyio
async def test_after_tool_call_folds_replacements_in_order() -> None:
    """after_tool_call is folded: each plugin sees the result as amended so far (async too); the
    final one is recorded and shown to the model."""
    seen: list[tuple[str, str]] = []

    def bang(result: lash.ToolResult) -> lash.ToolResult:
        seen.append(("r1", result.content))
        return attrs.evolve(result, content=result.content + "!")

    async def declines(result: lash.ToolResult) -> None:
        seen.append(("r2", result.content))

    async def question(result: lash.ToolResult) -> lash.ToolResult:
        seen.append(("r3", result.content))
        return attrs.evolve(result, content=result.content + "?")

    rec = Recorder(ROUND_TRIP)
    core = make_core(
        rec,
        Tools(),
        probe("r1", after_tool_call=bang),
        probe("r2", after_tool_call=declines),
        probe("r3", after_tool_call=question),
    )
    session = await core.session("s").open()
    result = await session.turn("go").run()
    assert seen == [("r1", "hi"), ("r2", "hi!"), ("r3", "hi!")]
    assert result.tool_calls[0].result == lash.ToolResult("c1", "hi!?")
    assert tool_messages(rec.requests[1]) == {"c1": "hi!?"}


@pytest.mark.anyio
@pytest.mark.parametrize("hook", ["before_tool_call", "after_tool_call"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_tool_call_hook_raising_gives_that_call_an_error_result(
    hook: str, is_async: bool
) -> None:
    """A raising before/after_tool_call makes that call's result an error naming the plugin; the
    other calls and the turn go on."""

    def check(call: lash.ToolCall) -> None:
        if call.id == "c1":
            raise ValueError("cannot inspect")

    async def check_async(call: lash.ToolCall) -> None:
        check(call)

    rec = Recorder(
        [{"tool_calls": [call("echo", "c1", text="a"), call("echo", "c2", text="b")]}, "done"]
    )
    core = make_core(rec, Tools(), probe("bad", **{hook: check_async if is_async else check}))
    session = await core.session("s").open()
    result = await session.turn("go").run()
    assert result.outcome == "completed" and result.text == "done"
    first, second = (r.result for r in result.tool_calls)
    assert first.is_error and "'bad'" in first.content and hook in first.content
    assert second == lash.ToolResult("c2", "b")
    assert tool_messages(rec.requests[1]) == {"c1": first.content, "c2": "b"}


@pytest.mark.anyio
@pytest.mark.parametrize("hook", ["before_tool_call", "after_tool_call"])
async def test_tool_call_hook_raising_a_lash_error_gives_an_error_result_naming_the_plugin(
    hook: str,
) -> None:
    """A lash error (not a PluginError) raised in a tool-call hook still yields an error result
    naming the plugin."""
    log: Log = []
    rec = Recorder(ROUND_TRIP)
    core = make_core(
        rec, Tools(), probe("bad", **{hook: raising(log, "bad", hook, lash_error=True)})
    )
    session = await core.session("s").open()
    result = await session.turn("go").run()
    assert result.outcome == "completed"
    error = result.tool_calls[0].result
    assert error.is_error and "'bad'" in error.content


@pytest.mark.anyio
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_project_tool_result_shapes_what_the_model_sees_only(is_async: bool) -> None:
    """project_tool_result's text is what the model sees; the full result stays in the graph and
    the turn result; None shows the result unchanged."""

    def cut(result: lash.ToolResult) -> str | None:
        return result.content[:4] if len(result.content) > 4 else None

    async def cut_async(result: lash.ToolResult) -> str | None:
        return cut(result)

    rec = Recorder(
        [
            {
                "tool_calls": [
                    call("echo", "long", text="a long output"),
                    call("echo", "tiny", text="ok"),
                ]
            },
            "done",
        ]
    )
    core = make_core(
        rec, Tools(), probe("budget", project_tool_result=cut_async if is_async else cut)
    )
    session = await core.session("s").open()
    result = await session.turn("go").run()
    assert tool_messages(rec.requests[1]) == {"long": "a lo", "tiny": "ok"}
    assert [r.result.content for r in result.tool_calls] == ["a long output", "ok"]
    nodes = {n.call_id: n for n in session.nodes if isinstance(n, lash.ToolResultNode)}
    assert (nodes["long"].content, nodes["long"].projected) == ("a long output", "a lo")
    assert nodes["tiny"].projected is None


def test_project_tool_result_is_exclusive_and_a_second_names_both_plugins() -> None:
    """Two project_tool_result implementations are an ExclusiveHookConflict at core build."""

    def project() -> None:
        return None

    with pytest.raises(lash.ExclusiveHookConflict) as info:
        make_core(
            Recorder([]),
            probe("proj1", project_tool_result=project),
            probe("proj2", project_tool_result=project),
        )
    assert info.value.hook == "project_tool_result"
    assert info.value.plugins == ("proj1", "proj2")
    assert "'proj1'" in str(info.value) and "'proj2'" in str(info.value)


@pytest.mark.anyio
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_project_tool_result_raising_shows_the_unprojected_result_and_reports(
    is_async: bool,
) -> None:
    """A raising project_tool_result: the model sees the unprojected result, the error (naming
    plugin and hook) goes to on_error, and the turn goes on."""
    errors: list[lash.LashError] = []
    log: Log = []
    rec = Recorder(ROUND_TRIP)
    bad = probe(
        "bad",
        project_tool_result=raising(log, "bad", "project_tool_result", is_async=is_async),
    )
    core = make_core(rec, Tools(), bad, on_error=errors.append)
    session = await core.session("s").open()
    result = await session.turn("go").run()
    assert result.outcome == "completed" and result.text == "done"
    assert tool_messages(rec.requests[1]) == {"c1": "hi"}
    assert len(errors) == 1
    assert_names(errors[0], "bad", "project_tool_result")
    assert isinstance(errors[0].__cause__, ValueError)
    node = next(n for n in session.nodes if isinstance(n, lash.ToolResultNode))
    assert (node.content, node.projected) == ("hi", None)


# -- turn failures --------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("hook", TURN_FAILING)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_turn_hook_raising_fails_the_turn_naming_plugin_and_hook(
    hook: str, is_async: bool
) -> None:
    """A raising filter_tool_catalog / prompt_contributions / transform_prompt_view / before_turn
    / after_turn ends the turn failed with an error naming the plugin and the hook."""
    log: Log = []
    bad = probe("bad", **{hook: raising(log, "bad", hook, is_async=is_async)})
    session = await make_core(Recorder(["answer"]), bad).session("s").open()
    result = await session.turn("x").run()
    assert result.outcome == "failed"
    assert "'bad'" in (result.error or "") and hook in (result.error or "")
    assert "bad broke in" in (result.error or "")


@pytest.mark.anyio
@pytest.mark.parametrize("hook", ["before_turn", "after_turn"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_before_and_after_turn_raising_still_commit_the_failed_turn(
    hook: str, is_async: bool
) -> None:
    """A turn failed by a raising before_turn / after_turn is still committed (revision
    advances)."""
    log: Log = []
    bad = probe("bad", **{hook: raising(log, "bad", hook, is_async=is_async)})
    core = make_core(Recorder(["answer"]), bad)
    session = await core.session("s").open()
    result = await session.turn("x").run()
    assert result.outcome == "failed" and result.revision == 1
    assert session.turns == 1 and await head(core) == 1
    record = await core.store.load("s")
    assert record is not None
    assert any(isinstance(n, lash.UserMessage) and n.text == "x" for n in record.nodes)


@pytest.mark.anyio
@pytest.mark.parametrize("hook", TURN_FAILING)
async def test_turn_hook_raising_a_lash_error_fails_the_turn_naming_plugin_and_hook(
    hook: str,
) -> None:
    """A lash error (not a PluginError) raised by a turn hook still fails the turn with an error
    naming the plugin and the hook."""
    log: Log = []
    bad = probe("bad", **{hook: raising(log, "bad", hook, lash_error=True)})
    session = await make_core(Recorder(["answer"]), bad).session("s").open()
    result = await session.turn("x").run()
    assert result.outcome == "failed"
    assert "'bad'" in (result.error or "") and hook in (result.error or "")


# -- broadcast and lifecycle ----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("hook", BROADCAST)
async def test_broadcast_runs_every_implementation_and_isolates_failures(
    hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A broadcast hook runs every implementation even when some raise; each error names plugin
    and hook, is logged and passed to on_error, and never breaks the open, turn or close."""
    log: Log = []
    errors: list[lash.LashError] = []
    plugins = [
        probe("p1", **{hook: raising(log, "p1", hook)}),
        probe("p2", **{hook: recording(log, "p2", hook, is_async=True)}),
        probe("p3", **{hook: raising(log, "p3", hook, is_async=True)}),
        probe("p4", **{hook: recording(log, "p4", hook)}),
    ]
    core = make_core(Recorder(ROUND_TRIP), Tools(), *plugins, on_error=errors.append)
    with caplog.at_level(logging.ERROR, logger="lash"):
        result = await scenario(core)
    assert result.outcome == "completed" and result.revision == 1
    assert await head(core) == 1
    assert_runs_in_order(log, hook, ["p1", "p2", "p3", "p4"])
    runs = len(runs_of(log, hook)) // 4
    assert [e.plugin for e in errors] == ["p1", "p3"] * runs
    for error in errors:
        assert_names(error, error.plugin or "", hook)
        assert isinstance(error.__cause__, ValueError)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert sum(f"'p1' failed in hook {hook!r}" in m for m in logged) == runs


class Timeline:
    """Records lifecycle hooks with the store's head revision at the time."""

    lash_plugin = lash.PluginMeta(name="timeline")

    def __init__(self) -> None:
        self.core: lash.LashCore | None = None
        self.events: list[tuple[str, Any]] = []

    async def _head(self) -> int:
        assert self.core is not None
        return await head(self.core)

    @lash.hookimpl
    async def prepare_session(self) -> None:
        self.events.append(("prepare_session", None))

    @lash.hookimpl
    async def session_opened(self, restored: bool) -> None:
        self.events.append(("session_opened", restored))

    @lash.hookimpl
    async def after_turn(self) -> None:
        self.events.append(("after_turn", await self._head()))

    @lash.hookimpl
    async def turn_finalized(self) -> None:
        self.events.append(("turn_finalized", await self._head()))

    @lash.hookimpl
    async def turn_persisted(self, revision: int) -> None:
        self.events.append(("turn_persisted", (revision, await self._head())))

    @lash.hookimpl
    async def session_closed(self) -> None:
        self.events.append(("session_closed", None))


@pytest.mark.anyio
async def test_lifecycle_hooks_fire_when_documented() -> None:
    """session_opened after prepare_session, saying whether the session was restored;
    after_turn and turn_finalized before the commit; turn_persisted after it, with its
    revision; session_closed on close."""
    timeline = Timeline()
    core = make_core(Recorder(["one", "two"]), timeline)
    timeline.core = core
    session = await core.session("s").open()
    first = await session.turn("x").run()
    await session.close()
    resumed = await core.session("s").open(must_exist=True)
    second = await resumed.turn("y").run()
    await resumed.close()
    await core.session("s").open_fresh()
    assert (first.revision, second.revision) == (1, 2)
    assert timeline.events == [
        ("prepare_session", None),
        ("session_opened", False),
        ("after_turn", 0),
        ("turn_finalized", 0),
        ("turn_persisted", (1, 1)),
        ("session_closed", None),
        ("prepare_session", None),
        ("session_opened", True),
        ("after_turn", 1),
        ("turn_finalized", 1),
        ("turn_persisted", (2, 2)),
        ("session_closed", None),
        ("prepare_session", None),
        ("session_opened", False),
    ]


# -- async bridging -------------------------------------------------------------------------------


def sync_wrapper(function: Callable[..., Any]) -> Callable[..., Any]:
    """A pass-through decorator written as a plain function (as tracing decorators often are)."""

    @functools.wraps(function)
    def wrapper(*args: Any) -> Any:
        return function(*args)

    return wrapper


@pytest.mark.anyio
@pytest.mark.parametrize(
    "hook", ["before_turn", "before_tool_call", "after_tool_call", "project_tool_result"]
)
async def test_decorated_async_implementation_is_awaited(hook: str) -> None:
    """An async implementation behind a sync pass-through decorator is awaited, as the kernel's
    dispatcher does for every hook that may be async."""

    async def before_turn(turn: lash.TurnView) -> lash.AbortTurn:
        return lash.AbortTurn("decorated")

    async def before_tool_call(call: lash.ToolCall) -> lash.ShortCircuitToolCall:
        return lash.ShortCircuitToolCall("decorated")

    async def after_tool_call(result: lash.ToolResult) -> lash.ToolResult:
        return attrs.evolve(result, content="decorated")

    async def project_tool_result(result: lash.ToolResult) -> str:
        return "decorated"

    impls = {
        f.__name__: f for f in (before_turn, before_tool_call, after_tool_call, project_tool_result)
    }
    rec = Recorder(ROUND_TRIP)
    core = make_core(rec, Tools(), probe("deco", **{hook: sync_wrapper(impls[hook])}))
    session = await core.session("s").open()
    # Record instead of raising: an unawaited coroutine warns when it is freed, inside the kernel.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = await session.turn("go").run()
    assert not [str(w.message) for w in caught if "never awaited" in str(w.message)]
    if hook == "before_turn":
        assert (result.outcome, result.detail) == ("stopped", "decorated")
    else:
        assert tool_messages(rec.requests[1]) == {"c1": "decorated"}
