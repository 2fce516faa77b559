"""LashCore construction: config and overrides, registration hooks, exclusive hooks at build."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import lash
from lash import (
    ExclusiveHookConflict,
    HostConfig,
    LashCore,
    PluginError,
    PluginMeta,
    RecoveryDisposition,
)

ENV_VARS = ("LASH_CONFIG", "LASH_PLUGINS", "LASH_DISABLE_PLUGIN_AUTOLOAD", "LASH_STRICT_PLUGINS")


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No LASH_* variables, and an empty "lash-sdk" distribution shadows the installed builtins."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    dist_info = tmp_path / "site" / "lash_sdk-0.0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: lash-sdk\nVersion: 0.0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))


def plugin(name: str, meta: PluginMeta | None = None, **hooks: Callable[..., Any]) -> object:
    """A module plugin named ``name`` implementing ``hooks``."""
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, lash.hookimpl(function))
    if meta is not None:
        module.lash_plugin = meta  # type: ignore[attr-defined]
    return module


def registering(name: str, hook: str, *entries: tuple[Any, ...]) -> object:
    """A plugin whose ``hook`` calls ``register(*entry)`` for each entry."""

    def register_all(register: Callable[..., None]) -> None:
        for entry in entries:
            register(*entry)

    return plugin(name, **{hook: register_all})


# -- construction ---------------------------------------------------------------------------------


def test_core_without_plugins() -> None:
    """A core with nothing installed builds, with empty registries."""
    core = LashCore()
    assert core.plugin_names == []
    assert core.plugins == []
    assert all(core.registry.of(kind) == {} for kind in ("tool", "provider", "store"))
    assert repr(core) == "<LashCore plugins=[]>"


def test_keyword_overrides_win_over_config() -> None:
    """Keyword arguments override the matching config settings; the rest is kept."""
    config = HostConfig(store="memory://", provider="p1", model="m1", strict=False)
    core = LashCore(config=config, provider="p2", model="m2")
    assert (core.config.store, core.config.provider, core.config.model) == ("memory://", "p2", "m2")
    assert core.config is not config


def test_options_argument_merges_with_config_options() -> None:
    """``options=`` replaces whole plugin sections and keeps the config's other sections."""
    config = HostConfig(options={"a": {"x": 1}, "b": {"y": 2}})
    core = LashCore(config=config, options={"b": {"y": 3}})
    assert core.config.options == {"a": {"x": 1}, "b": {"y": 3}}


def test_from_config_reads_the_file_and_applies_overrides(tmp_path: Path) -> None:
    """``from_config`` loads lash.toml from ``cwd``; keyword overrides win over the file."""
    (tmp_path / "lash.toml").write_text('model = "file-model"\nprovider = "file-provider"\n')
    core = LashCore.from_config(cwd=tmp_path, model="override")
    assert core.config.model == "override"
    assert core.config.provider == "file-provider"
    assert core.config.path == str(tmp_path / "lash.toml")


def test_from_config_with_explicit_path(tmp_path: Path) -> None:
    """``from_config(path)`` reads that file."""
    config_file = tmp_path / "host.toml"
    config_file.write_text('store = "sqlite:///x.db"\n')
    assert LashCore.from_config(config_file).config.store == "sqlite:///x.db"


def test_from_config_with_explicit_plugins(tmp_path: Path) -> None:
    """Plugin objects can be passed to ``from_config`` alongside the file's settings."""
    (tmp_path / "lash.toml").write_text("[options.tool_host]\n")
    core = LashCore.from_config(cwd=tmp_path, plugins=[plugin("tool_host")])
    assert core.plugin_names == ["tool_host"]


def test_warnings_for_unused_option_sections() -> None:
    """Options for a plugin that is not enabled, or that declares none, are reported."""
    core = LashCore([plugin("plain")], options={"plain": {"x": 1}, "ghost": {"y": 2}})
    assert sorted(core.warnings) == [
        "[options.ghost] is set but no plugin named 'ghost' is enabled",
        "[options.plain] is set but plugin 'plain' declares no options",
    ]


def test_misspelled_option_section_gets_a_suggestion() -> None:
    """An options table named like no plugin, but close to one, says which one was meant."""
    core = LashCore(
        [plugin("tool_host"), plugin("plain")],
        options={"tool_hots": {"x": 1}, "plian": {}, "zzz": {}},
    )
    assert sorted(core.warnings) == [
        "[options.plian] is set but no plugin named 'plian' is enabled (did you mean 'plain'?)",
        "[options.tool_hots] is set but no plugin named 'tool_hots' is enabled "
        "(did you mean 'tool_host'?)",
        "[options.zzz] is set but no plugin named 'zzz' is enabled",
    ]


def test_strict_environment_applies_to_code_built_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """A core built in code still honours ``LASH_STRICT_PLUGINS``."""
    monkeypatch.setenv("LASH_STRICT_PLUGINS", "1")
    assert LashCore().config.strict is True


@pytest.mark.anyio
async def test_on_error_receives_broadcast_failures() -> None:
    """The core's ``on_error`` callback receives isolated broadcast failures."""
    reported: list[lash.LashError] = []

    def fails(session: object) -> None:
        raise RuntimeError("listener broke")

    core = LashCore([plugin("listener", session_closed=fails)], on_error=reported.append)
    errors = await core.hooks.broadcast("session_closed", session="s")
    assert errors == reported
    assert [(e.plugin, e.hook) for e in reported] == [  # type: ignore[attr-defined]
        ("listener", "session_closed")
    ]


# -- registration ---------------------------------------------------------------------------------


def search(query: str, limit: int = 10) -> list[str]:
    """Search the index.

    Longer explanation that is not part of the description.
    """
    return []


def test_register_tools() -> None:
    """Tools are registered by name, attributed to their plugin, described by their docstring."""

    def register(register: lash.RegisterTool) -> None:
        register(search)
        register(search, name="search2", description="explicit")

    core = LashCore([plugin("tools", register_tools=register)])
    tools = core.registry.of("tool")
    assert list(tools) == ["search", "search2"]
    assert (tools["search"].kind, tools["search"].name, tools["search"].plugin) == (
        "tool",
        "search",
        "tools",
    )
    assert tools["search"].description.startswith("Search the index.")
    assert tools["search2"].description == "explicit"
    assert core.registry.by_plugin("tools") == {"tool": ["search", "search2"]}
    assert core.registry.by_plugin("nobody") == {}


def test_register_tool_without_name_fails_the_build() -> None:
    """A tool whose name cannot be told is an error naming plugin and hook."""

    def register(register: lash.RegisterTool) -> None:
        register(object())

    with pytest.raises(PluginError) as info:
        LashCore([plugin("nameless", register_tools=register)])
    assert (info.value.plugin, info.value.hook) == ("nameless", "register_tools")
    assert isinstance(info.value.__cause__, TypeError)


def test_register_providers_protocol_and_stores() -> None:
    """Providers, the protocol and store schemes are registered by name."""
    provider, protocol, factory = object(), object(), lambda url: url
    core = LashCore(
        [
            registering("prov", "register_providers", ("openai", provider)),
            registering("proto", "register_protocol", ("standard", protocol)),
            registering("stores", "register_stores", ("memory", factory)),
        ]
    )
    assert core.registry.of("provider")["openai"].value is provider
    assert core.registry.of("provider")["openai"].plugin == "prov"
    assert core.registry.of("protocol")["standard"].value is protocol
    assert core.registry.of("store")["memory"].value is factory


def test_register_process_kinds() -> None:
    """Process kinds carry their async run function and recovery disposition."""

    async def crawl(context: Any, payload: Any) -> None:
        """Crawl the site."""

    async def index(context: Any, payload: Any) -> None:
        return None

    def register_kinds(register: Callable[..., None]) -> None:
        register("crawl", crawl, recovery=RecoveryDisposition.RERUNNABLE)
        register("index", index)

    core = LashCore([plugin("procs", register_process_kinds=register_kinds)])
    kinds = core.registry.of("process_kind")
    entry = kinds["crawl"]
    assert (entry.kind, entry.name, entry.plugin, entry.description, entry.extra) == (
        "process_kind",
        "crawl",
        "procs",
        "Crawl the site.",
        RecoveryDisposition.RERUNNABLE,
    )
    assert (entry.value.run, entry.value.recovery) == (crawl, RecoveryDisposition.RERUNNABLE)
    assert kinds["index"].extra is RecoveryDisposition.OWNER_BOUND


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (("sync", lambda: None), "run must be an async function"),
        (("", None), "non-empty string"),
    ],
)
def test_register_process_kind_errors(entry: tuple[Any, ...], fragment: str) -> None:
    """A process kind needs a name and an async run function."""
    with pytest.raises(PluginError, match=fragment):
        LashCore([registering("procs", "register_process_kinds", entry)])


def test_register_process_kind_recovery_must_be_a_disposition() -> None:
    """``recovery`` must be a RecoveryDisposition, not its string value."""

    async def run(context: Any, payload: Any) -> None:
        return None

    def register(register: Callable[..., None]) -> None:
        register("job", run, recovery="rerunnable")

    with pytest.raises(PluginError, match=r"recovery must be a lash\.RecoveryDisposition"):
        LashCore([plugin("procs", register_process_kinds=register)])


@pytest.mark.parametrize(
    ("hook", "kind", "entry"),
    [
        ("register_tools", "tool", (search,)),
        ("register_providers", "provider", ("openai", object())),
        ("register_stores", "store", ("sqlite", object())),
    ],
)
def test_name_clash_names_both_plugins(hook: str, kind: str, entry: tuple[Any, ...]) -> None:
    """Registering a name another plugin already registered is an error naming both plugins."""
    with pytest.raises(PluginError) as info:
        LashCore([registering("first", hook, entry), registering("second", hook, entry)])
    error = info.value
    assert "is registered by both plugin 'first' and plugin 'second'" in str(error)
    assert str(error).startswith(kind)
    assert (error.plugin, error.hook) == ("second", hook)


def test_process_kind_clash_names_both_plugins() -> None:
    """Two plugins registering one process kind is an error naming both."""

    async def run(context: Any, payload: Any) -> None:
        return None

    with pytest.raises(PluginError, match="'first' and plugin 'second'"):
        LashCore(
            [
                registering("first", "register_process_kinds", ("job", run)),
                registering("second", "register_process_kinds", ("job", run)),
            ]
        )


def test_same_plugin_registering_a_name_twice() -> None:
    """A plugin registering one name twice is told so."""
    with pytest.raises(PluginError, match="registered twice by plugin 'dup'"):
        LashCore([registering("dup", "register_providers", ("p", 1), ("p", 2))])


def test_registration_receives_plugin_options() -> None:
    """Registration hooks receive the plugin's validated host options."""

    @attrs.define
    class Options:
        prefix: str = "t"

    def register(register: lash.RegisterTool, options: Options) -> None:
        register(search, name=f"{options.prefix}_search")

    core = LashCore(
        [plugin("opts", PluginMeta(options=Options), register_tools=register)],
        options={"opts": {"prefix": "custom"}},
    )
    assert list(core.registry.of("tool")) == ["custom_search"]


def test_registration_options_none_without_options_class() -> None:
    """A plugin that declares no options class receives ``options=None``."""
    received: list[object] = []

    def register(register: object, options: object) -> None:
        received.append(options)

    LashCore([plugin("plain", register_providers=register)])
    assert received == [None]


def test_registration_failure_names_plugin_and_hook() -> None:
    """An exception in a registration hook fails the build, naming plugin and hook."""

    def register(register: object) -> None:
        raise RuntimeError("cannot build client")

    with pytest.raises(PluginError) as info:
        LashCore([plugin("fragile", register_providers=register)])
    assert (info.value.plugin, info.value.hook) == ("fragile", "register_providers")
    assert "RuntimeError: cannot build client" in str(info.value)


def test_registrations_follow_plugin_order() -> None:
    """Contributions of one kind are recorded in plugin order."""
    core = LashCore(
        [
            registering("b", "register_providers", ("from_b", 1)),
            registering("a", "register_providers", ("from_a", 2)),
        ]
    )
    assert list(core.registry.of("provider")) == ["from_b", "from_a"]


# -- exclusive hooks at build ---------------------------------------------------------------------


def test_two_protocols_conflict_at_build() -> None:
    """Two plugins implementing register_protocol fail the build, naming both."""
    with pytest.raises(ExclusiveHookConflict) as info:
        LashCore(
            [
                registering("proto_a", "register_protocol", ("a", object())),
                registering("proto_b", "register_protocol", ("b", object())),
            ]
        )
    assert info.value.plugins == ("proto_a", "proto_b")
    assert info.value.hook == "register_protocol"


def test_two_result_projections_conflict_at_build() -> None:
    """Two plugins implementing project_tool_result fail the build, naming both."""
    with pytest.raises(ExclusiveHookConflict, match="'budget_a' and 'budget_b'"):
        LashCore(
            [
                plugin("budget_a", project_tool_result=lambda result: None),
                plugin("budget_b", project_tool_result=lambda result: None),
            ]
        )


def test_exclusive_conflict_avoided_by_disabling_one() -> None:
    """Disabling one of two exclusive implementations resolves the conflict."""
    core = LashCore(
        [
            plugin("budget_a", project_tool_result=lambda result: None),
            plugin("budget_b", project_tool_result=lambda result: None),
        ],
        disable=["budget_a"],
    )
    assert core.hooks.plugins_implementing("project_tool_result") == ["budget_b"]


# -- wrong argument types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"plugins": 7}, "plugins: expected a list of plugin names (str) or plugin objects"),
        ({"plugins": ["standard", None]}, "plugins[1]: expected a plugin name (str) or a plugin"),
        ({"plugins": [3]}, "got 3 (int)"),
        ({"options": []}, "options: expected a mapping of plugin name to that plugin's options"),
        ({"options": {"openai": 3}}, "options['openai']: expected a mapping of option names"),
        ({"options": {3: {}}}, "options: expected plugin names (str) as keys, got 3 (int)"),
        ({"store": 3}, "store: expected a store URL (str) such as"),
        ({"provider": ["openai"]}, "provider: expected a provider name (str)"),
        ({"model": 4}, "model: expected a model name (str), got 4 (int)"),
        ({"disable": 5}, "disable: expected a list of plugin names (str), got 5 (int)"),
        ({"disable": ["openai", 5]}, "disable[1]: expected a plugin name (str), got 5 (int)"),
        ({"autoload": "yes"}, "autoload: expected True, False or None, got 'yes' (str)"),
        ({"strict": 1}, "strict: expected True, False or None, got 1 (int)"),
        ({"config": {"store": "memory://"}}, "config: expected a lash.HostConfig"),
        ({"on_error": "print"}, "on_error: expected a function taking a lash.LashError"),
        ({"lease_ttl": "x"}, "lease_ttl: expected a positive number of seconds"),
        ({"lease_ttl": 0}, "got 0 (int)"),
        ({"lease_ttl": float("inf")}, "got inf (float)"),
        ({"lease_ttl": True}, "got True (bool)"),
    ],
)
def test_wrong_argument_types_are_a_config_error(arguments: dict[str, Any], problem: str) -> None:
    """A wrong type for any LashCore argument is a ConfigError naming it, expected and given."""
    with pytest.raises(lash.ConfigError) as info:
        LashCore(**arguments)
    assert str(info.value).startswith("invalid arguments to lash.LashCore():\n  - ")
    assert problem in str(info.value)
    assert info.value.__cause__ is None


def test_every_bad_argument_is_reported_at_once() -> None:
    """Several bad arguments are listed together, one line each, in parameter order."""
    with pytest.raises(lash.ConfigError) as info:
        LashCore(plugins=7, options=[], lease_ttl="x")
    lines = str(info.value).splitlines()[1:]
    assert [line.split(":")[0] for line in lines] == ["  - plugins", "  - options", "  - lease_ttl"]


def test_bad_options_argument_never_shows_values() -> None:
    """Options may hold secrets: a misshapen options argument names types, not values."""
    with pytest.raises(lash.ConfigError) as info:
        LashCore(options={"openai": "sk-very-secret"})
    assert "sk-very-secret" not in str(info.value)
    with pytest.raises(lash.ConfigError) as info:
        LashCore(options=[("openai", {"api_key": "sk-very-secret"})])
    assert "sk-very-secret" not in str(info.value)
    assert "got a list" in str(info.value)


def test_long_bad_values_are_cut_short() -> None:
    """A huge bad value is shown cut short, so the message stays readable."""
    with pytest.raises(lash.ConfigError) as info:
        LashCore(lease_ttl="x" * 10_000)
    assert len(str(info.value)) < 300


def test_bad_arguments_fail_before_anything_loads() -> None:
    """A bad argument fails before plugins load: no plugin hook runs."""
    ran: list[str] = []
    probe = plugin("probe", register_tools=lambda register: ran.append("registered"))
    with pytest.raises(lash.ConfigError):
        LashCore([probe], autoload=False, lease_ttl=-1)
    assert ran == []


def test_well_typed_arguments_still_work() -> None:
    """Accepted shapes: a bare name, tuples, plugin objects, None, a bare disable name, an int."""
    core = LashCore(
        (plugin("tool_host"),),
        store="memory://",
        provider=None,
        model="m",
        options={"tool_host": {}},
        disable="openai",
        autoload=False,
        strict=False,
        on_error=print,
        lease_ttl=5,
    )
    assert core.plugin_names == ["tool_host"] and core.lease_ttl == 5
    assert core.config.disable == ("openai",)
    # A bare string is one plugin name (here one that is not installed: a failure, not an error).
    assert [p.name for p in LashCore("ghost", autoload=False).plugins] == ["ghost"]


def test_every_core_parameter_has_a_rule() -> None:
    """Each parameter of LashCore.__init__ is checked: a new one needs a rule in RULES."""
    from lash._plugins.arguments import RULES

    parameters = list(inspect.signature(LashCore.__init__).parameters)[1:]
    assert sorted(parameters) == sorted(RULES)
