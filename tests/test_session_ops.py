"""Session operations between turns: configure, compact, the tool catalog, session commands."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from importlib.metadata import entry_points
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lash
import lash.store
from lash._kernel.frames import SplitToolPair, check_tool_pairs, unanswered_calls
from lash_plugins_builtin import standard, stores
from lash_plugins_builtin.scripted import ScriptedProvider

pytestmark = pytest.mark.anyio

SUMMARY_PREFIX = "[Summary of the conversation so far]"

#: Every installed builtin but the protocol and the stores: each test composes its own plugins.
OTHER_BUILTINS = sorted(
    {ep.name for ep in entry_points(group="lash.plugins")} - {"standard", "stores"}
)


# ------------------------------------------------------------------------------------------
# Plugins and helpers
# ------------------------------------------------------------------------------------------


class _Named:
    """One provider name of a :class:`Recorder` (so a test can switch providers)."""

    def __init__(self, owner: Recorder, name: str) -> None:
        self.owner = owner
        self.name = name

    async def stream(self, request: lash.ModelRequest) -> AsyncIterator[lash.ModelEvent]:
        self.owner.requests.append(request)
        self.owner.providers.append(self.name)
        async for event in self.owner.script.stream(request):
            yield event


class Recorder:
    """Provider plugin: plays a script under two provider names and records every request."""

    lash_plugin = lash.PluginMeta(name="recorder")

    def __init__(self, responses: Sequence[Any] = ()) -> None:
        self.script = ScriptedProvider(list(responses))
        self.requests: list[lash.ModelRequest] = []
        self.providers: list[str] = []

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register("recorder", _Named(self, "recorder"))
        register("alt", _Named(self, "alt"))

    def add(self, *responses: Any) -> None:
        self.script.extend(responses)


class SharedStore:
    """Store plugin: ``shared://`` is one MemoryStore object, so several cores share it."""

    lash_plugin = lash.PluginMeta(name="shared_store")

    def __init__(self, store: lash.store.MemoryStore) -> None:
        self.store = store

    @lash.hookimpl
    def register_stores(self, register: lash.RegisterStore) -> None:
        register("shared", lambda url: self.store)


@attrs.frozen
class KnobOptions:
    """Per-session options of the ``knobs`` plugin."""

    level: int = lash.option(default=1, help="a level")
    api_key: str | None = lash.option(default=None, secret=True, help="a secret")


class Knobs:
    """A plugin with per-session options (one of them secret)."""

    lash_plugin = lash.PluginMeta(name="knobs", options=KnobOptions)


class Amend:
    """mutate_session_config: records what it saw, optionally adds a prompt layer or rejects."""

    def __init__(
        self,
        name: str,
        log: list[tuple[str, lash.SessionConfig, lash.SessionConfig]],
        *,
        layer: str | None = None,
        reject_model: str | None = None,
    ) -> None:
        self.lash_plugin = lash.PluginMeta(name=name)
        self.name = name
        self.log = log
        self.layer = layer
        self.reject_model = reject_model

    @lash.hookimpl
    def mutate_session_config(
        self, previous: lash.SessionConfig, proposed: lash.SessionConfig
    ) -> lash.SessionConfig | None:
        self.log.append((self.name, previous, proposed))
        if self.reject_model is not None and proposed.model == self.reject_model:
            raise lash.ConfigRejected(f"model {proposed.model} is not allowed here")
        if self.layer is not None:
            return attrs.evolve(proposed, prompt_layers=(*proposed.prompt_layers, self.layer))
        return None


class BadAmend:
    """mutate_session_config that returns a plain dict instead of a SessionConfig."""

    lash_plugin = lash.PluginMeta(name="bad_amend")

    @lash.hookimpl
    def mutate_session_config(self, proposed: lash.SessionConfig) -> Any:
        return {"model": proposed.model}


class CrashingAmend:
    """mutate_session_config that raises an ordinary exception."""

    lash_plugin = lash.PluginMeta(name="crashing_amend")

    @lash.hookimpl
    def mutate_session_config(self) -> None:
        raise RuntimeError("policy service unreachable")


class ConfigWatcher:
    """session_config_changed: records previous/current and the store's head at that time."""

    lash_plugin = lash.PluginMeta(name="config_watcher")

    def __init__(self) -> None:
        self.core: lash.LashCore | None = None
        self.seen: list[tuple[lash.SessionConfig, lash.SessionConfig, int | None]] = []

    @lash.hookimpl
    async def session_config_changed(
        self, session: lash.SessionView, previous: lash.SessionConfig, current: lash.SessionConfig
    ) -> None:
        assert self.core is not None
        record = await self.core.store.load(session.id)
        self.seen.append((previous, current, record.revision if record else None))


class Fragment:
    """prompt_contributions: one system fragment."""

    lash_plugin = lash.PluginMeta(name="fragment")

    @lash.hookimpl
    def prompt_contributions(self) -> lash.PromptContribution:
        return lash.PromptContribution("FRAGMENT FROM PLUGIN")


class Compactor:
    """compact_context: returns a fixed summary, keeping ``keep`` recent turns."""

    lash_plugin = lash.PluginMeta(name="compactor")

    def __init__(self, keep: int = 0, summary: str = "SUMMARY: names are Ada and Bob") -> None:
        self.keep = keep
        self.summary = summary
        self.instructions: list[str | None] = []
        self.complete_with: list[lash.Message] | None = None

    @lash.hookimpl
    async def compact_context(
        self, session: lash.Session, instructions: str | None
    ) -> lash.Compaction:
        self.instructions.append(instructions)
        if self.complete_with is not None:
            await session.complete(self.complete_with, source="compaction")
        return lash.Compaction(summary=self.summary, keep_recent_turns=self.keep)


class Declines:
    """compact_context that never compacts (returns None)."""

    lash_plugin = lash.PluginMeta(name="declines")

    def __init__(self) -> None:
        self.calls = 0

    @lash.hookimpl
    def compact_context(self) -> None:
        self.calls += 1


class BrokenCompactor:
    """compact_context that raises."""

    lash_plugin = lash.PluginMeta(name="broken_compactor")

    @lash.hookimpl
    def compact_context(self) -> lash.Compaction:
        raise RuntimeError("summarizer down")


class StuckCompactor:
    """compact_context that waits forever (until cancelled)."""

    lash_plugin = lash.PluginMeta(name="stuck_compactor")

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    @lash.hookimpl
    async def compact_context(self) -> lash.Compaction:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Threshold:
    """after_turn: asks for a compaction (lash.Compact) after a turn whose last model call's
    prompt went over ``tokens`` (``None``: never), as the compaction builtin does."""

    lash_plugin = lash.PluginMeta(name="threshold")

    def __init__(self, tokens: int | None) -> None:
        self.tokens = tokens

    @lash.hookimpl
    def after_turn(self, turn: lash.TurnView) -> lash.Compact | None:
        calls = [n for n in turn.nodes if isinstance(n, lash.AssistantMessage)]
        if self.tokens is None or not calls or calls[-1].usage.input_tokens <= self.tokens:
            return None
        return lash.Compact()


class Aborter:
    """before_turn: aborts turns whose input is ``abort`` (no model call is made)."""

    lash_plugin = lash.PluginMeta(name="aborter")

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> lash.AbortTurn | None:
        return lash.AbortTurn("not today") if turn.input == "abort" else None


class FrameWatcher:
    """frame_opened: records every frame."""

    lash_plugin = lash.PluginMeta(name="frame_watcher")

    def __init__(self) -> None:
        self.frames: list[lash.AgentFrame] = []

    @lash.hookimpl
    def frame_opened(self, frame: lash.AgentFrame) -> None:
        self.frames.append(frame)


@attrs.define
class KitState:
    """State of the ``kit`` plugin."""

    turns_seen: int = 0


@attrs.define
class ExtraState:
    """State of the ``extra`` plugin."""

    notes: list[str] = attrs.field(factory=list)


class Kit:
    """Tools ``alpha``, ``beta`` and ``add``; counts turns in its state."""

    lash_plugin = lash.PluginMeta(name="kit", state=KitState)

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        def alpha() -> str:
            """Alpha."""
            return "a"

        def beta() -> str:
            """Beta."""
            return "b"

        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        register(alpha)
        register(beta)
        register(add)

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> None:
        turn.session.state(KitState).turns_seen += 1


class Extra:
    """Tools ``gamma`` and ``delta``; notes each turn in its state."""

    lash_plugin = lash.PluginMeta(name="extra", state=ExtraState)

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        def gamma() -> str:
            """Gamma."""
            return "g"

        def delta() -> str:
            """Delta."""
            return "d"

        register(gamma)
        register(delta)

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> None:
        turn.session.state(ExtraState).notes.append(turn.input)


class Hider:
    """filter_tool_catalog: hides ``alpha`` on the session's first turn only."""

    lash_plugin = lash.PluginMeta(name="hider")

    def __init__(self) -> None:
        self.catalogs: list[tuple[str, ...]] = []

    @lash.hookimpl
    def filter_tool_catalog(
        self, session: lash.Session, catalog: tuple[lash.ToolCatalogEntry, ...]
    ) -> list[str]:
        self.catalogs.append(tuple(e.name for e in catalog))
        return ["alpha"] if session.turns == 0 else []


def make_core(
    *plugins: object,
    store: lash.store.MemoryStore | None = None,
    builtins: Sequence[str] = (),
    **kw: Any,
) -> lash.LashCore:
    """A core over ``plugins`` with the recorder provider, (optionally) a shared store, and no
    other builtin than ``standard``, ``stores`` and those named in ``builtins``."""
    extra: list[object] = []
    if store is not None:
        extra.append(SharedStore(store))
        kw["store"] = "shared://"
    kw.setdefault("store", "memory://")
    return lash.LashCore(
        plugins=[standard, stores, *extra, *plugins],
        autoload=False,
        disable=[name for name in OTHER_BUILTINS if name not in builtins],
        provider="recorder",
        model="m1",
        **kw,
    )


def call(name: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "id": call_id, "arguments": arguments}


def chat(request: lash.ModelRequest) -> list[tuple[str, str]]:
    """The non-system messages of a request as (role, content)."""
    return [(m.role, m.content) for m in request.messages if m.role != "system"]


def content(node: Any) -> dict[str, Any]:
    """A node's fields without its identity (id, parent, frame)."""
    data = attrs.asdict(node, recurse=False)
    for key in ("id", "parent_id", "frame_id"):
        data.pop(key)
    return data


async def store_revision(core: lash.LashCore, session_id: str) -> int:
    record = await core.store.load(session_id)
    return record.revision if record is not None else 0


async def full_nodes(core: lash.LashCore, session_id: str) -> tuple[Any, ...]:
    record = await core.store.load(session_id, full=True)
    return record.nodes if record is not None else ()


async def run_turns(session: lash.Session, rec: Recorder, *texts: str) -> None:
    for text in texts:
        rec.add({"text": f"re: {text}"})
        result = await session.turn(text).run()
        assert result.outcome == "completed", result


def tool_names(request: lash.ModelRequest) -> set[str]:
    return {t.name for t in request.tools}


# ------------------------------------------------------------------------------------------
# 1. Config mutation
# ------------------------------------------------------------------------------------------


async def test_configure_runs_the_chain_in_plugin_order_and_commits_once() -> None:
    """configure() chains mutate_session_config in plugin order; each sees the last proposal."""
    log: list[tuple[str, lash.SessionConfig, lash.SessionConfig]] = []
    rec = Recorder()
    core = make_core(rec, Knobs(), Amend("first", log, layer="from first"), Amend("second", log))
    session = await core.session("s").open()
    original = session.config
    before = session.revision
    result = await session.configure(
        model="m2",
        provider="alt",
        prompt_layers=["Be terse."],
        plugin_options={"knobs": {"level": 5}},
    )
    assert [name for name, _, _ in log] == ["first", "second"]
    assert log[0][1] == original and log[1][1] == original
    assert tuple(log[0][2].prompt_layers) == ("Be terse.",)
    assert tuple(log[1][2].prompt_layers) == ("Be terse.", "from first")
    assert result == session.config
    assert (result.model, result.provider) == ("m2", "alt")
    assert tuple(result.prompt_layers) == ("Be terse.", "from first")
    assert result.plugin_options["knobs"]["level"] == 5
    assert session.options(KnobOptions).level == 5
    assert session.revision == before + 1
    assert await store_revision(core, "s") == before + 1
    rec.add("ok")
    await session.turn("hi").run()
    assert rec.providers[-1] == "alt"
    assert rec.requests[-1].model == "m2"


async def test_unchanged_patch_calls_no_hook_and_commits_nothing() -> None:
    """A patch that changes nothing runs no mutate_session_config and commits nothing."""
    log: list[tuple[str, lash.SessionConfig, lash.SessionConfig]] = []
    watcher = ConfigWatcher()
    rec = Recorder()
    core = make_core(rec, Knobs(), Amend("first", log), watcher)
    watcher.core = core
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    before = session.revision
    config = session.config
    result = await session.configure(model="m1", provider="recorder")
    assert result == config == session.config
    assert log == []
    assert watcher.seen == []
    assert session.revision == before
    assert await store_revision(core, "s") == before


async def test_rejection_names_the_plugin_and_leaves_the_session_untouched() -> None:
    """ConfigRejected from a plugin names it and the reason; config, options, revision unchanged."""
    log: list[tuple[str, lash.SessionConfig, lash.SessionConfig]] = []
    watcher = ConfigWatcher()
    rec = Recorder()
    core = make_core(rec, Knobs(), Amend("gate", log, reject_model="forbidden"), watcher)
    watcher.core = core
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    config, options, revision = session.config, session.options(KnobOptions), session.revision
    with pytest.raises(lash.ConfigRejected) as info:
        await session.configure(model="forbidden", plugin_options={"knobs": {"level": 9}})
    assert info.value.plugin == "gate"
    assert "model forbidden is not allowed here" in str(info.value)
    assert session.config == config
    assert session.options(KnobOptions) == options
    assert session.revision == revision
    assert await store_revision(core, "s") == revision
    assert watcher.seen == []


async def test_a_later_plugin_sees_and_can_reject_the_earlier_amendment() -> None:
    """A plugin sees the previous plugin's amended proposal, and its rejection wins."""
    log: list[tuple[str, lash.SessionConfig, lash.SessionConfig]] = []

    class Rename(Amend):
        @lash.hookimpl
        def mutate_session_config(
            self, previous: lash.SessionConfig, proposed: lash.SessionConfig
        ) -> lash.SessionConfig | None:
            self.log.append((self.name, previous, proposed))
            return attrs.evolve(proposed, model="forbidden")

    rec = Recorder()
    core = make_core(rec, Rename("rename", log), Amend("gate", log, reject_model="forbidden"))
    session = await core.session("s").open()
    config, revision = session.config, session.revision
    with pytest.raises(lash.ConfigRejected) as info:
        await session.configure(model="m2")
    assert [(name, proposed.model) for name, _, proposed in log] == [
        ("rename", "m2"),
        ("gate", "forbidden"),
    ]
    assert info.value.plugin == "gate"
    assert session.config == config and session.revision == revision


async def test_mutate_hook_raising_is_a_plugin_error_and_changes_nothing() -> None:
    """An ordinary exception in mutate_session_config rejects the change as a PluginError."""
    rec = Recorder()
    core = make_core(rec, CrashingAmend())
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    config, revision = session.config, session.revision
    with pytest.raises(lash.PluginError) as info:
        await session.configure(model="m2")
    assert info.value.plugin == "crashing_amend"
    assert info.value.hook == "mutate_session_config"
    assert session.config == config
    assert session.revision == revision
    assert await store_revision(core, "s") == revision


async def test_mutate_hook_returning_a_non_config_names_the_plugin() -> None:
    """A mutate_session_config returning a non-SessionConfig is a PluginError naming it."""
    rec = Recorder()
    core = make_core(rec, BadAmend())
    session = await core.session("s").open()
    config, revision = session.config, session.revision
    with pytest.raises(lash.PluginError) as info:
        await session.configure(model="m2")
    assert info.value.hook == "mutate_session_config"
    assert info.value.plugin == "bad_amend"
    assert session.config == config and session.revision == revision


async def test_session_config_changed_is_broadcast_after_the_commit() -> None:
    """session_config_changed gets previous and current, once the change is in the store."""
    watcher = ConfigWatcher()
    rec = Recorder()
    core = make_core(rec, watcher)
    watcher.core = core
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    previous = session.config
    current = await session.configure(model="m2")
    assert len(watcher.seen) == 1
    seen_previous, seen_current, head = watcher.seen[0]
    assert seen_previous == previous
    assert seen_current == current
    assert seen_current.model == "m2"
    assert head == session.revision


async def test_configuration_is_durable_across_close_and_reopen() -> None:
    """Config set by configure() is restored on reopen; its plugin options apply again."""
    rec = Recorder()
    core = make_core(rec, Knobs())
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    configured = await session.configure(
        model="m2",
        prompt_layers=["Layer one."],
        plugin_options={"knobs": {"level": 4}},
    )
    await session.close()
    again = await core.session("s").open(must_exist=True)
    assert again.config.model == "m2"
    assert tuple(again.config.prompt_layers) == ("Layer one.",)
    assert again.config.plugin_options["knobs"]["level"] == 4
    assert again.config == configured
    assert again.options(KnobOptions).level == 4
    rec.add("ok")
    await again.turn("next").run()
    assert rec.requests[-1].model == "m2"


async def test_configured_protocol_options_stay_in_force_after_reopen() -> None:
    """The protocol's settings are its plugin's options: set by configure(), they apply to the
    next turn at once and are still in force on reopen."""
    rec = Recorder()
    core = make_core(rec, Kit())
    session = await core.session("s").open()
    await session.configure(plugin_options={"standard": {"max_tool_rounds": 1}})
    assert session.options(standard.StandardOptions).max_tool_rounds == 1
    rec.add({"tool_calls": [call("alpha", "c1")]}, {"tool_calls": [call("alpha", "c2")]})
    stopped = await session.turn("loop").run()
    assert (stopped.outcome, stopped.reason) == ("stopped", "max_tool_rounds")
    await session.close()
    again = await core.session("s").open(must_exist=True)
    assert again.config.plugin_options["standard"] == {"max_tool_rounds": 1}
    assert again.options(standard.StandardOptions).max_tool_rounds == 1


async def test_configure_protocol_options_still_works_with_a_deprecation_warning() -> None:
    """lash 0.1's configure(protocol_options=...) warns and sets the protocol plugin's options."""
    core = make_core(Recorder())
    session = await core.session("s").open()
    with pytest.warns(DeprecationWarning, match=r"plugin_options=\{'standard'"):
        config = await session.configure(protocol_options={"max_tool_rounds": 2})
    assert config.plugin_options["standard"] == {"max_tool_rounds": 2}
    assert session.options(standard.StandardOptions).max_tool_rounds == 2


async def test_invalid_plugin_option_is_rejected_naming_plugin_and_field() -> None:
    """A bad plugin option value raises OptionsError (plugin, field); the session is untouched."""
    rec = Recorder()
    core = make_core(rec, Knobs())
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    config, options, revision = session.config, session.options(KnobOptions), session.revision
    with pytest.raises(lash.OptionsError) as info:
        await session.configure(model="m2", plugin_options={"knobs": {"level": "high"}})
    assert info.value.plugin == "knobs"
    assert "level" in str(info.value)
    assert session.config == config
    assert session.options(KnobOptions) == options
    assert session.revision == revision
    assert await store_revision(core, "s") == revision


async def test_unknown_provider_is_rejected_and_nothing_changes() -> None:
    """configure(provider=<unknown>) is rejected; the session keeps its provider and revision."""
    rec = Recorder()
    core = make_core(rec)
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    config, revision = session.config, session.revision
    with pytest.raises(lash.UnknownProvider):
        await session.configure(provider="nope")
    assert session.config == config
    assert session.revision == revision
    assert await store_revision(core, "s") == revision
    await run_turns(session, rec, "still works")
    assert rec.providers[-1] == "recorder"


async def test_unknown_configure_field_is_a_session_error() -> None:
    """configure() with a field it does not know raises SessionError and changes nothing."""
    core = make_core(Recorder())
    session = await core.session("s").open()
    config, revision = session.config, session.revision
    with pytest.raises(lash.SessionError, match="temperature"):
        await session.configure(temperature=0.2)
    assert session.config == config and session.revision == revision


async def test_prompt_layers_open_the_system_prompt() -> None:
    """Configured prompt layers come first in the system prompt, before plugin fragments."""
    rec = Recorder()
    core = make_core(rec, Fragment())
    session = await core.session("s").open()
    await session.configure(prompt_layers=["You are terse.", "Answer in French."])
    await run_turns(session, rec, "hello")
    system = rec.requests[-1].messages[0]
    assert system.role == "system"
    assert system.content.startswith("You are terse.")
    text = system.content
    assert text.index("You are terse.") < text.index("Answer in French.")
    assert text.index("Answer in French.") < text.index("FRAGMENT FROM PLUGIN")


async def test_secret_option_set_by_configure_is_never_in_the_store() -> None:
    """A secret plugin option set through configure() works in memory but is never stored."""
    rec = Recorder()
    core = make_core(rec, Knobs())
    session = await core.session("s").open()
    await session.configure(plugin_options={"knobs": {"api_key": "sk-very-secret", "level": 3}})
    assert session.options(KnobOptions).api_key == "sk-very-secret"
    await run_turns(session, rec, "hello")
    record = await core.store.load("s", full=True)
    assert record is not None
    knobs = record.config.plugin_options.get("knobs", {})
    assert "api_key" not in knobs
    assert knobs.get("level") == 3
    assert "sk-very-secret" not in repr(record)


# ------------------------------------------------------------------------------------------
# 2. Compaction
# ------------------------------------------------------------------------------------------


async def test_compact_opens_a_new_frame_seeded_with_summary_and_kept_turns() -> None:
    """compact() opens a frame: boundary with the summary, then copies of the last N turns."""
    rec = Recorder()
    compactor = Compactor(keep=1)
    frames = FrameWatcher()
    core = make_core(rec, compactor, frames)
    session = await core.session("s").open()
    await run_turns(session, rec, "my name is Ada", "my friend is Bob", "what now?")
    old = session.nodes
    old_frame = old[0].frame_id
    stored_before = await full_nodes(core, "s")
    revision = session.revision

    frame = await session.compact("keep names")

    assert compactor.instructions == ["keep names"]
    assert isinstance(frame, lash.AgentFrame)
    assert frame.reason == "compaction"
    assert frame.parent_id == old_frame
    assert frames.frames == [frame]
    assert session.revision == revision + 1
    nodes = session.nodes
    boundary = nodes[0]
    assert isinstance(boundary, lash.FrameBoundary)
    assert boundary.reason == "compaction"
    assert boundary.summary == compactor.summary
    assert boundary.previous_frame_id == old_frame
    assert boundary.frame_id == frame.id != old_frame
    kept_originals = [n for n in old if n.turn == 3 and not isinstance(n, lash.FrameBoundary)]
    copies = list(nodes[1:])
    assert [type(n) for n in copies] == [type(n) for n in kept_originals]
    for copy, original in zip(copies, kept_originals, strict=True):
        assert copy.id != original.id
        assert copy.frame_id == frame.id
        assert content(copy) == content(original)
    assert not {n.id for n in nodes} & {n.id for n in old}
    assert boundary.parent_id == old[-1].id
    assert [n.parent_id for n in nodes[1:]] == [n.id for n in nodes[:-1]]

    stored = await full_nodes(core, "s")
    assert stored[: len(stored_before)] == stored_before
    assert {n.id for n in old} <= {n.id for n in stored}


async def test_next_request_shows_summary_and_kept_turns_only() -> None:
    """After compaction the model sees the summary and the kept turns, not older turns."""
    rec = Recorder()
    core = make_core(rec, Compactor(keep=1, summary="names: Ada, Bob"))
    session = await core.session("s").open()
    await run_turns(session, rec, "turn one", "turn two", "turn three")
    await session.compact("keep names")
    await run_turns(session, rec, "turn four")
    seen = chat(rec.requests[-1])
    assert seen[0][0] == "user"
    assert seen[0][1].startswith(SUMMARY_PREFIX)
    assert "names: Ada, Bob" in seen[0][1]
    assert seen[1:] == [
        ("user", "turn three"),
        ("assistant", "re: turn three"),
        ("user", "turn four"),
    ]
    everything = " ".join(text for _, text in seen)
    assert "turn one" not in everything and "turn two" not in everything


async def test_compact_with_no_plugin_answer_returns_none_and_commits_nothing() -> None:
    """When no compact_context returns a value, compact() returns None and commits nothing."""
    rec = Recorder()
    declines = Declines()
    frames = FrameWatcher()
    core = make_core(rec, declines, frames)
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    nodes, revision = session.nodes, session.revision
    assert await session.compact("anything") is None
    assert declines.calls == 1
    assert session.nodes == nodes
    assert session.revision == revision
    assert await store_revision(core, "s") == revision
    assert frames.frames == []


async def test_raising_compactor_is_a_plugin_error_and_commits_nothing() -> None:
    """A compact_context that raises surfaces as PluginError (plugin, hook); nothing committed."""
    rec = Recorder()
    frames = FrameWatcher()
    core = make_core(rec, BrokenCompactor(), frames)
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    nodes, revision = session.nodes, session.revision
    stored = await full_nodes(core, "s")
    with pytest.raises(lash.PluginError) as info:
        await session.compact()
    assert info.value.plugin == "broken_compactor"
    assert info.value.hook == "compact_context"
    assert session.nodes == nodes
    assert session.revision == revision
    assert await store_revision(core, "s") == revision
    assert await full_nodes(core, "s") == stored
    assert frames.frames == []


async def test_cancelled_compaction_commits_nothing_and_session_stays_usable() -> None:
    """Cancelling the task running compact() mid-way commits nothing; turns still run after."""
    rec = Recorder()
    stuck = StuckCompactor()
    core = make_core(rec, stuck)
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    nodes, revision = session.nodes, session.revision
    task = asyncio.create_task(session.compact("x"))
    await asyncio.wait_for(stuck.entered.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert session.nodes == nodes
    assert session.revision == revision
    assert await store_revision(core, "s") == revision
    rec.add("fine")
    result = await asyncio.wait_for(session.turn("after").run(), 2)
    assert result.outcome == "completed"
    assert result.revision == revision + 1


async def test_compaction_keeps_tool_calls_with_their_results() -> None:
    """Kept turns carry each tool call together with its result into the new frame."""
    rec = Recorder()
    core = make_core(rec, Kit(), Compactor(keep=1))
    session = await core.session("s").open()
    await run_turns(session, rec, "plain turn")
    rec.add({"tool_calls": [call("add", "c1", a=2, b=3)]}, {"text": "5"})
    assert (await session.turn("add please").run()).outcome == "completed"
    await session.compact()
    nodes = session.nodes
    calls = [c.id for n in nodes if isinstance(n, lash.AssistantMessage) for c in n.tool_calls]
    results = [n.call_id for n in nodes if isinstance(n, lash.ToolResultNode)]
    assert calls == ["c1"] and results == ["c1"]
    assert any(isinstance(n, lash.ToolCallNode) and n.call.id == "c1" for n in nodes)
    check_tool_pairs(nodes[1:])
    assert unanswered_calls(nodes) == []
    await run_turns(session, rec, "next")
    roles = [role for role, _ in chat(rec.requests[-1])]
    assert roles == ["user", "user", "assistant", "tool", "assistant", "user"]


async def test_check_tool_pairs_raises_for_a_split_pair() -> None:
    """check_tool_pairs rejects a call without its result and a result without its call."""
    tool_call = lash.ToolCall(id="c1", name="add", arguments={"a": 1, "b": 2})
    asked = lash.AssistantMessage(
        id="n1", parent_id=None, frame_id="f", turn=1, text="", tool_calls=(tool_call,)
    )
    answer = lash.ToolResultNode(
        id="n2", parent_id="n1", frame_id="f", turn=1, call_id="c1", name="add", content="3"
    )
    check_tool_pairs([asked, answer])
    with pytest.raises(SplitToolPair):
        check_tool_pairs([asked])
    with pytest.raises(SplitToolPair):
        check_tool_pairs([answer])


async def test_compaction_survives_close_and_reopen() -> None:
    """After compact, close and reopen, memory holds only the new frame (the store's active one)."""
    rec = Recorder()
    core = make_core(rec, Compactor(keep=1))
    session = await core.session("s").open()
    await run_turns(session, rec, "one", "two")
    frame = await session.compact()
    assert frame is not None
    await session.close()
    again = await core.session("s").open(must_exist=True)
    record = await core.store.load("s")
    assert record is not None
    assert again.nodes == record.nodes
    assert isinstance(again.nodes[0], lash.FrameBoundary)
    assert again.nodes[0].reason == "compaction"
    assert {n.frame_id for n in again.nodes} == {frame.id}
    assert [n.text for n in again.nodes if isinstance(n, lash.UserMessage)] == ["two"]


async def test_completion_inside_compaction_is_attributed_to_compaction() -> None:
    """session.complete(source="compaction") usage is reported under by_source["compaction"]."""
    rec = Recorder()
    compactor = Compactor(keep=0)
    compactor.complete_with = [lash.Message("user", "summarize this")]
    core = make_core(rec, compactor)
    session = await core.session("s").open()
    rec.add({"text": "hi", "usage": {"input_tokens": 10, "output_tokens": 2}})
    await session.turn("hello").run()
    rec.add({"text": "a summary", "usage": {"input_tokens": 50, "output_tokens": 7}})
    await session.compact()
    by_source = session.usage_report()["by_source"]
    assert by_source["compaction"]["input_tokens"] == 50
    assert by_source["compaction"]["output_tokens"] == 7
    assert by_source["turn"]["input_tokens"] == 10
    record = await core.store.load("s")
    assert record is not None
    assert record.usage["compaction"] == lash.Usage(input_tokens=50, output_tokens=7)
    assert rec.requests[-1].tools == ()


async def test_auto_compaction_after_a_turn_over_the_threshold() -> None:
    """A turn whose last model call exceeds the threshold is followed by a compaction commit."""
    rec = Recorder()
    compactor = Compactor(keep=0)
    core = make_core(rec, compactor, Threshold(100))
    session = await core.session("s").open()
    rec.add({"text": "small", "usage": {"input_tokens": 90}})
    small = await session.turn("first").run()
    assert small.outcome == "completed"
    assert compactor.instructions == []
    assert await store_revision(core, "s") == small.revision
    rec.add({"text": "big", "usage": {"input_tokens": 150}})
    big = await session.turn("second").run()
    assert big.outcome == "completed"
    assert compactor.instructions == [None]
    assert await store_revision(core, "s") == big.revision + 1
    boundary = session.nodes[0]
    assert isinstance(boundary, lash.FrameBoundary)
    assert boundary.reason == "auto_compaction"
    assert boundary.summary == compactor.summary


async def test_auto_compaction_looks_at_the_last_model_call_of_the_turn() -> None:
    """Only the turn's last model call counts against the threshold, not an earlier one."""
    rec = Recorder()
    compactor = Compactor(keep=0)
    core = make_core(rec, Kit(), compactor, Threshold(100))
    session = await core.session("s").open()
    rec.add(
        {"tool_calls": [call("alpha", "c1")], "usage": {"input_tokens": 500}},
        {"text": "done", "usage": {"input_tokens": 60}},
    )
    first = await session.turn("one").run()
    assert compactor.instructions == []
    assert await store_revision(core, "s") == first.revision
    rec.add(
        {"tool_calls": [call("alpha", "c2")], "usage": {"input_tokens": 60}},
        {"text": "done", "usage": {"input_tokens": 101}},
    )
    second = await session.turn("two").run()
    assert compactor.instructions == [None]
    assert await store_revision(core, "s") == second.revision + 1


async def test_turn_without_a_model_call_never_triggers_auto_compaction() -> None:
    """A turn with no model call (aborted in before_turn) never triggers auto compaction."""
    rec = Recorder()
    compactor = Compactor(keep=1)
    threshold = Threshold(None)
    core = make_core(rec, Aborter(), compactor, threshold)
    session = await core.session("s").open()
    rec.add({"text": "big", "usage": {"input_tokens": 500}})
    await session.turn("large prompt").run()
    threshold.tokens = 100
    aborted = await session.turn("abort").run()
    assert (aborted.outcome, aborted.reason) == ("stopped", "plugin_abort")
    assert compactor.instructions == []
    assert await store_revision(core, "s") == aborted.revision


async def test_compact_directive_from_after_turn_compacts_automatically() -> None:
    """A plugin whose after_turn returns lash.Compact gets the context compacted right after
    the turn's commit, in a commit of its own."""
    rec = Recorder()
    compactor = Compactor(keep=0)
    core = make_core(rec, Threshold(100), compactor)
    session = await core.session("s").open()
    rec.add({"text": "big", "usage": {"input_tokens": 101}})
    result = await session.turn("hello").run()
    assert result.outcome == "completed"
    assert compactor.instructions == [None]
    assert session.nodes[0].reason == "auto_compaction"
    assert await store_revision(core, "s") == result.revision + 1


async def test_plugin_threshold_survives_the_builtin_compaction_plugin() -> None:
    """A plugin's own Compact directive holds with the builtin compaction enabled (and its
    threshold unset)."""
    rec = Recorder()
    compactor = Compactor(keep=0)
    core = make_core(rec, Threshold(100), compactor, builtins=["compaction"])
    session = await core.session("s").open()
    rec.add({"text": "big", "usage": {"input_tokens": 101}})
    result = await session.turn("hello").run()
    assert result.outcome == "completed"
    assert compactor.instructions == [None]
    assert await store_revision(core, "s") == result.revision + 1


async def test_failing_auto_compaction_is_reported_and_the_turn_completes() -> None:
    """A failing automatic compaction goes to on_error; the turn's result is still completed."""
    rec = Recorder()
    errors: list[lash.LashError] = []
    core = make_core(rec, BrokenCompactor(), Threshold(100), on_error=errors.append)
    session = await core.session("s").open()
    rec.add({"text": "big", "usage": {"input_tokens": 150}})
    result = await session.turn("hello").run()
    assert result.outcome == "completed"
    assert result.text == "big"
    assert len(errors) == 1
    assert isinstance(errors[0], lash.PluginError)
    assert errors[0].plugin == "broken_compactor"
    assert errors[0].hook == "compact_context"
    assert await store_revision(core, "s") == result.revision


# ------------------------------------------------------------------------------------------
# 3. Tool catalog
# ------------------------------------------------------------------------------------------


async def test_tools_lists_every_tool_with_its_plugin_as_members() -> None:
    """session.tools() lists every tool with its contributing plugin, members by default."""
    core = make_core(Recorder(), Kit(), Extra())
    session = await core.session("s").open()
    catalog = {e.name: e for e in session.tools()}
    assert set(catalog) == {"alpha", "beta", "add", "gamma", "delta"}
    assert {name: e.plugin for name, e in catalog.items()} == {
        "alpha": "kit",
        "beta": "kit",
        "add": "kit",
        "gamma": "extra",
        "delta": "extra",
    }
    assert all(e.member and not e.orphaned for e in catalog.values())


async def test_set_tool_membership_removes_the_tool_from_the_request() -> None:
    """A non-member tool is not offered to the model; each change bumps the generation."""
    rec = Recorder()
    core = make_core(rec, Kit())
    session = await core.session("s").open()
    await run_turns(session, rec, "before")
    assert "beta" in tool_names(rec.requests[-1])
    revision = session.revision
    first = await session.set_tool_membership({"beta": False})
    assert session.revision == revision + 1
    assert {e.name: e.member for e in session.tools()}["beta"] is False
    await run_turns(session, rec, "after")
    assert tool_names(rec.requests[-1]) == {"alpha", "add"}
    second = await session.set_tool_membership({"beta": True})
    assert second > first
    await run_turns(session, rec, "back")
    assert "beta" in tool_names(rec.requests[-1])


async def test_unknown_tool_membership_is_a_session_error() -> None:
    """set_tool_membership with an unknown tool raises SessionError and commits nothing."""
    core = make_core(Recorder(), Kit())
    session = await core.session("s").open()
    revision = session.revision
    with pytest.raises(lash.SessionError, match="nosuch"):
        await session.set_tool_membership({"alpha": False, "nosuch": False})
    assert session.revision == revision
    assert all(e.member for e in session.tools())


async def test_tool_membership_is_restored_on_resume() -> None:
    """Membership is committed and restored when the session is reopened."""
    rec = Recorder()
    core = make_core(rec, Kit())
    session = await core.session("s").open()
    await run_turns(session, rec, "hello")
    await session.set_tool_membership({"alpha": False})
    await session.close()
    again = await core.session("s").open(must_exist=True)
    assert {e.name: e.member for e in again.tools()} == {
        "alpha": False,
        "beta": True,
        "add": True,
    }
    await run_turns(again, rec, "resumed")
    assert tool_names(rec.requests[-1]) == {"beta", "add"}


async def test_tools_of_a_missing_plugin_are_orphaned_and_come_back() -> None:
    """Tools of a missing plugin are orphaned, its state kept; back, both are as they were."""
    store = lash.store.MemoryStore()
    rec1 = Recorder()
    core1 = make_core(rec1, Kit(), Extra(), store=store)
    session = await core1.session("s").open()
    await run_turns(session, rec1, "first")
    await session.set_tool_membership({"gamma": False})
    assert session.state(ExtraState).notes == ["first"]
    await session.close()
    saved = await store.load("s")
    assert saved is not None
    extra_state = saved.plugin_states["extra"]

    rec2 = Recorder()
    core2 = make_core(rec2, Kit(), store=store)
    without = await core2.session("s").open(must_exist=True)
    catalog = {e.name: e for e in without.tools()}
    for name in ("gamma", "delta"):
        assert catalog[name].orphaned is True
        assert catalog[name].member is False
        assert catalog[name].plugin == "extra"
    assert catalog["alpha"].member and not catalog["alpha"].orphaned
    await run_turns(without, rec2, "second")
    assert tool_names(rec2.requests[-1]) == {"alpha", "beta", "add"}
    assert without.state(KitState).turns_seen == 2
    await without.close()
    record = await store.load("s")
    assert record is not None
    assert record.plugin_states["extra"] == extra_state

    rec3 = Recorder()
    core3 = make_core(rec3, Kit(), Extra(), store=store)
    back = await core3.session("s").open(must_exist=True)
    catalog = {e.name: e for e in back.tools()}
    assert (catalog["gamma"].member, catalog["gamma"].orphaned) == (False, False)
    assert (catalog["delta"].member, catalog["delta"].orphaned) == (True, False)
    assert catalog["gamma"].plugin == catalog["delta"].plugin == "extra"
    assert back.state(ExtraState).notes == ["first"]
    await run_turns(back, rec3, "third")
    assert tool_names(rec3.requests[-1]) == {"alpha", "beta", "add", "delta"}
    assert back.state(ExtraState).notes == ["first", "third"]


async def test_tool_of_a_plugin_enabled_after_creation_is_orphaned_when_it_goes() -> None:
    """A tool first seen on a later resume is orphaned (plugin kept) once its plugin goes."""
    store = lash.store.MemoryStore()
    rec = Recorder()
    created = await make_core(rec, Kit(), store=store).session("s").open()
    await run_turns(created, rec, "created without extra")
    await created.close()

    with_extra = await make_core(rec, Kit(), Extra(), store=store).session("s").open()
    await run_turns(with_extra, rec, "extra is here")
    await with_extra.set_tool_membership({"gamma": False})
    await with_extra.close()

    without = await make_core(rec, Kit(), store=store).session("s").open(must_exist=True)
    catalog = {e.name: e for e in without.tools()}
    assert {"gamma", "delta"} <= set(catalog)
    for name in ("gamma", "delta"):
        assert (catalog[name].plugin, catalog[name].member, catalog[name].orphaned) == (
            "extra",
            False,
            True,
        )
    await without.close()

    back = await make_core(rec, Kit(), Extra(), store=store).session("s").open(must_exist=True)
    catalog = {e.name: e for e in back.tools()}
    assert (catalog["gamma"].member, catalog["delta"].member) == (False, True)


async def test_filter_tool_catalog_hides_tools_per_turn_on_top_of_membership() -> None:
    """filter_tool_catalog hides tools for one resolution; membership still applies under it."""
    rec = Recorder()
    hider = Hider()
    core = make_core(rec, Kit(), hider)
    session = await core.session("s").open()
    await session.set_tool_membership({"beta": False})
    await run_turns(session, rec, "first")
    assert tool_names(rec.requests[-1]) == {"add"}
    assert "beta" not in hider.catalogs[-1]
    assert {e.name: e.member for e in session.tools()}["alpha"] is True
    await run_turns(session, rec, "second")
    assert tool_names(rec.requests[-1]) == {"alpha", "add"}


# ------------------------------------------------------------------------------------------
# 4. Session commands
# ------------------------------------------------------------------------------------------


async def test_enqueue_command_is_idempotent_by_key() -> None:
    """The same key enqueues once: the second call returns the command the first queued. A
    queued command is mailbox state, not graph state: the revision does not move until it is
    applied."""
    core = make_core(Recorder())
    session = await core.session("s").open()
    assert session.revision == 0
    first = await session.enqueue_command("refresh_tool_catalog", key="k1")
    assert (first.name, first.key, first.state) == ("refresh_tool_catalog", "k1", "pending")
    revision = session.revision
    again = await session.enqueue_command("refresh_tool_catalog", key="k1")
    assert again.id == first.id and again.state == "pending"
    assert session.revision == revision
    assert await session.apply_commands() == 1
    assert session.revision == revision + 1
    applied = await session.enqueue_command("refresh_tool_catalog", key="k1")
    assert applied.id == first.id and applied.state == "applied"


@pytest.mark.parametrize("key", ["", "   "])
async def test_blank_command_key_is_a_session_error(key: str) -> None:
    """An empty or blank idempotency key is refused."""
    session = await make_core(Recorder()).session("s").open()
    with pytest.raises(lash.SessionError):
        await session.enqueue_command("reset", key=key)
    assert session.revision == 0


async def test_unknown_command_is_a_session_error() -> None:
    """A command name the kernel does not know is refused."""
    session = await make_core(Recorder()).session("s").open()
    with pytest.raises(lash.SessionError, match="explode"):
        await session.enqueue_command("explode", key="k1")
    assert session.revision == 0


async def test_reset_opens_a_fresh_frame_before_the_next_turn() -> None:
    """A queued reset opens a frame (no summary, no turns) before the next user message."""
    rec = Recorder()
    core = make_core(rec)
    session = await core.session("s").open()
    await run_turns(session, rec, "old one", "old two")
    old_frame = session.nodes[0].frame_id
    assert (await session.enqueue_command("reset", key="r1")).state == "pending"
    await run_turns(session, rec, "after reset")
    nodes = session.nodes
    boundary = nodes[0]
    assert isinstance(boundary, lash.FrameBoundary)
    assert boundary.reason == "reset"
    assert boundary.summary is None
    assert boundary.previous_frame_id == old_frame
    assert isinstance(nodes[1], lash.UserMessage) and nodes[1].text == "after reset"
    assert [type(n) for n in nodes[2:]] == [lash.AssistantMessage, lash.TurnOutcome]
    assert chat(rec.requests[-1]) == [("user", "after reset")]
    stored = [n.text for n in await full_nodes(core, "s") if isinstance(n, lash.UserMessage)]
    assert stored == ["old one", "old two", "after reset"]


async def test_reset_fires_frame_opened() -> None:
    """A reset opens an agent frame, so frame_opened fires (at a turn and at apply_commands)."""
    rec = Recorder()
    frames = FrameWatcher()
    core = make_core(rec, frames)
    session = await core.session("s").open()
    await run_turns(session, rec, "one")
    first_frame = session.nodes[0].frame_id
    await session.enqueue_command("reset", key="r1")
    await run_turns(session, rec, "two")
    second_frame = session.nodes[0].frame_id
    await session.enqueue_command("reset", key="r2")
    assert await session.apply_commands() == 1
    third_frame = session.nodes[0].frame_id
    assert [(f.id, f.parent_id, f.reason) for f in frames.frames] == [
        (second_frame, first_frame, "reset"),
        (third_frame, second_frame, "reset"),
    ]


async def test_apply_commands_applies_without_a_turn() -> None:
    """apply_commands() runs queued commands now, in one commit, and returns how many ran."""
    rec = Recorder()
    core = make_core(rec)
    session = await core.session("s").open()
    await run_turns(session, rec, "old")
    await session.enqueue_command("refresh_tool_catalog", key="k1")
    await session.enqueue_command("reset", key="k2")
    revision = session.revision
    assert await session.apply_commands() == 2
    assert session.revision == revision + 1
    assert session.turns == 1
    assert isinstance(session.nodes[0], lash.FrameBoundary)
    assert session.nodes[0].reason == "reset"
    assert len(session.nodes) == 1
    assert await session.apply_commands() == 0
    assert session.revision == revision + 1
    await run_turns(session, rec, "new")
    assert chat(rec.requests[-1]) == [("user", "new")]


async def test_queued_commands_survive_reopen_and_apply_before_the_next_turn() -> None:
    """A queued reset is durable: after reopen it is still queued and applies at the next turn."""
    rec = Recorder()
    core = make_core(rec)
    session = await core.session("s").open()
    await run_turns(session, rec, "before")
    await session.enqueue_command("reset", key="r1")
    await session.close()
    again = await core.session("s").open(must_exist=True)
    queued = await again.enqueue_command("reset", key="r1")
    assert queued.state == "pending"
    await run_turns(again, rec, "after")
    assert chat(rec.requests[-1]) == [("user", "after")]
    assert again.nodes[0].reason == "reset"


async def test_queued_command_counted_by_apply_after_reopen_and_key_remembered() -> None:
    """After reopen apply_commands() finds the queued command; its key is remembered after."""
    rec = Recorder()
    core = make_core(rec)
    session = await core.session("s").open()
    await session.enqueue_command("refresh_tool_catalog", key="k1")
    await session.close()
    again = await core.session("s").open(must_exist=True)
    assert await again.apply_commands() == 1
    await again.close()
    third = await core.session("s").open(must_exist=True)
    assert await third.apply_commands() == 0
    assert (await third.enqueue_command("refresh_tool_catalog", key="k1")).state == "applied"
    assert (await third.enqueue_command("refresh_tool_catalog", key="k2")).state == "pending"


# ------------------------------------------------------------------------------------------
# 5. Property test: random operation sequences keep the invariants
# ------------------------------------------------------------------------------------------

_sessions = itertools.count()

operation = st.one_of(
    st.tuples(st.just("turn"), st.booleans()),
    st.tuples(st.just("compact"), st.integers(0, 2)),
    st.tuples(st.just("configure"), st.sampled_from(["m1", "m2", "m3"])),
    st.tuples(st.just("reset"), st.none()),
    st.tuples(st.just("reopen"), st.none()),
)


def _usage_totals(session: lash.Session) -> tuple[int, int]:
    total = session.usage_report()["total"]
    return total["input_tokens"], total["output_tokens"]


def _check_active_path(session: lash.Session) -> None:
    nodes = session.nodes
    if not nodes:
        return
    boundaries = [i for i, n in enumerate(nodes) if isinstance(n, lash.FrameBoundary)]
    assert boundaries == [0], f"frame boundaries at {boundaries}"
    assert {n.frame_id for n in nodes} == {nodes[0].frame_id}
    check_tool_pairs(nodes[1:])


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=1, max_size=12))
async def test_random_operation_sequences_keep_the_invariants(
    ops: list[tuple[str, Any]],
) -> None:
    """Random turns, compactions, configures, resets and reopens keep the session invariants."""
    rec = Recorder()
    compactor = Compactor()
    core = make_core(rec, Kit(), compactor)
    sid = f"prop-{next(_sessions)}"
    session = await core.session(sid).open()
    stored: tuple[Any, ...] = ()
    usage = (0, 0)
    for step, (kind, arg) in enumerate(ops):
        revision = await store_revision(core, sid)
        assert session.revision == revision
        commits = 0
        if kind == "turn":
            if arg:
                rec.add(
                    {
                        "tool_calls": [call("add", f"c{step}", a=step, b=1)],
                        "usage": {"input_tokens": 5, "output_tokens": 1},
                    }
                )
            rec.add({"text": f"answer {step}", "usage": {"input_tokens": 7, "output_tokens": 2}})
            result = await session.turn(f"input {step}").run()
            assert result.outcome == "completed", result
            commits = 1
        elif kind == "compact":
            compactor.keep = arg
            assert await session.compact() is not None
            commits = 1
        elif kind == "configure":
            commits = 0 if session.config.model == arg else 1
            await session.configure(model=arg)
        elif kind == "reset":
            queued = await session.enqueue_command("reset", key=f"reset-{step}")
            assert queued.state == "pending"
            assert await session.apply_commands() == 1
            commits = 1
        else:
            await session.close()
            # A session that never committed does not exist in the store yet.
            session = await core.session(sid).open(must_exist=revision > 0)
        after = await store_revision(core, sid)
        assert after == revision + commits, (kind, revision, after)
        assert session.revision == after
        _check_active_path(session)
        now = _usage_totals(session)
        assert now[0] >= usage[0] and now[1] >= usage[1]
        usage = now
        nodes = await full_nodes(core, sid)
        assert len(nodes) >= len(stored)
        assert nodes[: len(stored)] == stored
        stored = nodes
    await session.close()
