"""Plugin discovery, enablement policy, isolation of broken plugins, strict mode and ordering."""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lash
from lash import (
    HostConfig,
    LashCore,
    PluginInfo,
    PluginLoadError,
    PluginMeta,
    PluginOrderError,
    UnknownHookError,
)
from lash._plugins.loading import LoadedPlugin, order_plugins

ENV_VARS = ("LASH_CONFIG", "LASH_PLUGINS", "LASH_DISABLE_PLUGIN_AUTOLOAD", "LASH_STRICT_PLUGINS")


class Site:
    """A directory on sys.path holding real plugin modules and ``*.dist-info`` metadata.

    importlib-metadata discovers the distributions written here like installed ones. Module
    names carry a per-test prefix so tests never share an imported module.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = f"lashtest_{uuid.uuid4().hex[:8]}_"

    def module(self, name: str, source: str) -> str:
        """Write a plugin module; return its importable name."""
        full = self.prefix + name
        (self.root / f"{full}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()
        return full

    def dist(
        self, name: str, version: str = "1.0", group: str = "lash.plugins", **entry_points: str
    ) -> None:
        """Write ``<name>-<version>.dist-info`` declaring ``entry_points`` in ``group``."""
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(exist_ok=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = [f"[{group}]", *(f"{ep} = {target}" for ep, target in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def plugin(self, name: str, source: str = "", *, dist: str | None = None) -> str:
        """A one-module plugin in its own distribution (``lashtest-<name>``); returns the module."""
        module = self.module(name, source)
        self.dist(dist or f"lashtest-{name}", "1.0", **{name: module})
        return module


@pytest.fixture(autouse=True)
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """A private site directory; an empty "lash-sdk" distribution in it hides the real builtins."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "site"
    root.mkdir()
    site = Site(root)
    site.dist("lash-sdk", "0.0.0")
    monkeypatch.syspath_prepend(str(root))
    yield site
    for name in [m for m in sys.modules if m.startswith(site.prefix)]:
        del sys.modules[name]


TOOL_PLUGIN = """
import lash

@lash.hookimpl
def register_tools(register):
    def {name}_tool() -> str:
        "A tool."
        return "ok"
    register({name}_tool)
"""


def tool_plugin(site: Site, name: str, **kw: str) -> str:
    return site.plugin(name, TOOL_PLUGIN.format(name=name), **kw)


def info_of(core: LashCore, name: str) -> PluginInfo:
    (info,) = [i for i in core.plugins if i.name == name]
    return info


def statuses(core: LashCore) -> dict[str, str]:
    return {i.name: i.status for i in core.plugins}


def module_plugin(module_name: str, **meta: object) -> types.ModuleType:
    """An in-memory module plugin declaring ``meta``."""
    module = types.ModuleType(module_name)
    module.lash_plugin = PluginMeta(**meta)  # type: ignore[arg-type, attr-defined]
    return module


# -- discovery ------------------------------------------------------------------------------------


def test_installed_plugin_is_discovered_and_loaded(site: Site) -> None:
    """With no config, an installed entry-point plugin loads, recorded with its distribution."""
    module = tool_plugin(site, "alpha")
    core = LashCore()
    assert core.plugin_names == ["alpha"]
    assert info_of(core, "alpha") == PluginInfo(
        name="alpha",
        status="loaded",
        module=module,
        distribution="lashtest-alpha",
        version="1.0",
        builtin=False,
        hooks=("register_tools",),
        error=None,
    )
    assert core.registry.of("tool")["alpha_tool"].plugin == "alpha"


@pytest.mark.parametrize(
    "metadata",
    [
        # The usual order, then other headers and a body.
        "Metadata-Version: 2.1\nName: lashtest-meta\nVersion: 2.5\nSummary: s\n\nBody.\n",
        # Version before Name, after other headers.
        "Metadata-Version: 2.4\nSummary: s\nVersion: 2.5\nName: lashtest-meta\n",
        # A folded header before Name: the header scan stops, the full parse answers.
        "Metadata-Version: 2.1\nSummary: a\n  folded line\nName: lashtest-meta\nVersion: 2.5\n",
    ],
)
def test_distribution_name_and_version_from_metadata(site: Site, metadata: str) -> None:
    """A plugin's distribution and version come from its core metadata, however it is laid out."""
    module = site.module("meta", TOOL_PLUGIN.format(name="meta"))
    site.dist("lashtest-meta", "2.5", meta=module)
    (site.root / "lashtest_meta-2.5.dist-info" / "METADATA").write_text(metadata, "utf-8")
    info = info_of(LashCore(), "meta")
    assert (info.distribution, info.version) == ("lashtest-meta", "2.5")


def test_other_entry_point_groups_are_ignored(site: Site) -> None:
    """Only the ``lash.plugins`` group is read."""
    module = site.module("other", TOOL_PLUGIN.format(name="other"))
    site.dist("lashtest-other", group="something.else", other=module)
    assert LashCore().plugin_names == []


def test_class_plugin_instantiated_once_per_core(site: Site) -> None:
    """An entry point naming a class is instantiated once for each core, not per call."""
    module = site.module(
        "klass",
        """
        import lash

        INSTANCES = []

        class Plugin:
            def __init__(self):
                INSTANCES.append(self)
                self.calls = 0

            @lash.hookimpl
            def register_tools(self, register):
                self.calls += 1
                register(lambda: "x", name=f"tool_{len(INSTANCES)}")
        """,
    )
    site.dist("lashtest-klass", klass=f"{module}:Plugin")
    first, second = LashCore(), LashCore()
    instances = sys.modules[module].INSTANCES
    assert len(instances) == 2
    assert instances[0] is not instances[1]
    assert [i.calls for i in instances] == [1, 1]
    assert list(first.registry.of("tool")) == ["tool_1"]
    assert list(second.registry.of("tool")) == ["tool_2"]


def test_plugin_objects_module_class_and_instance(site: Site) -> None:
    """Plugins given as objects may be a module, a class or an instance with hookimpls."""
    module = types.ModuleType("as_module")

    @lash.hookimpl
    def register_tools(register: lash.RegisterTool) -> None:
        register(lambda: "m", name="from_module")

    module.register_tools = register_tools  # type: ignore[attr-defined]

    class AsClass:
        @lash.hookimpl
        def register_tools(self, register: lash.RegisterTool) -> None:
            register(lambda: "c", name="from_class")

    class Instance:
        @lash.hookimpl
        def register_tools(self, register: lash.RegisterTool) -> None:
            register(lambda: "i", name="from_instance")

    core = LashCore([module, AsClass, Instance()])
    assert core.plugin_names == ["as_module", "AsClass", "Instance"]
    assert sorted(core.registry.of("tool")) == ["from_class", "from_instance", "from_module"]


def test_plugin_meta_name_names_an_object_plugin() -> None:
    """``PluginMeta(name=...)`` overrides the derived name of a plugin object."""
    core = LashCore([module_plugin("module_name", name="chosen")])
    assert core.plugin_names == ["chosen"]


def test_disabled_plugin_is_never_imported(site: Site) -> None:
    """Discovery reads metadata only: a plugin that is not enabled is never imported."""
    module = tool_plugin(site, "sleepy")
    core = LashCore(disable=["sleepy"])
    assert statuses(core) == {"sleepy": "disabled"}
    assert module not in sys.modules


def test_each_core_has_its_own_plugin_manager(site: Site) -> None:
    """Two cores share no plugin manager and no registrations."""
    tool_plugin(site, "alpha")
    first = LashCore()
    second = LashCore(disable=["alpha"])
    assert first.plugin_names == ["alpha"]
    assert second.plugin_names == []
    assert "alpha_tool" in first.registry.of("tool")
    assert "alpha_tool" not in second.registry.of("tool")
    assert first.hooks.plugins_implementing("register_tools") == ["alpha"]
    assert second.hooks.plugins_implementing("register_tools") == []


def test_same_name_from_two_distributions(site: Site) -> None:
    """Two distributions declaring one plugin name: the clash is reported, the first one kept."""
    tool_plugin(site, "twin", dist="lashtest-a")
    other = site.module("twin2", TOOL_PLUGIN.format(name="twin2"))
    site.dist("lashtest-b", twin=other)
    core = LashCore()
    assert core.plugin_names == ["twin"]
    with pytest.raises(PluginLoadError, match="declared by two distributions"):
        LashCore(strict=True)


# -- isolation of broken plugins ------------------------------------------------------------------


def test_import_failure_is_recorded_and_skipped(site: Site) -> None:
    """A plugin whose import fails is recorded as failed with a one-paragraph error."""
    site.plugin("broken", "import lashtest_no_such_module\n")
    tool_plugin(site, "healthy")
    core = LashCore()
    assert core.plugin_names == ["healthy"]
    assert "healthy_tool" in core.registry.of("tool")
    info = info_of(core, "broken")
    assert (info.status, info.distribution, info.version) == ("failed", "lashtest-broken", "1.0")
    error = info.error or ""
    assert "could not be imported" in error
    assert "ModuleNotFoundError" in error
    assert "lashtest_no_such_module" in error
    assert "\n" not in error
    # The location is the plugin's own line, not importlib's frozen internals.
    assert f"{site.prefix}broken.py:1" in error


def test_exception_at_import_names_the_plugin(site: Site) -> None:
    """Any exception raised while importing the plugin is isolated the same way."""
    site.plugin("raiser", "raise RuntimeError('boom at import')\n")
    error = info_of(LashCore(), "raiser").error or ""
    assert error.startswith("plugin 'raiser' could not be imported: RuntimeError: boom at import")


def test_syntax_error_points_at_the_plugin_source(site: Site) -> None:
    """A plugin module that does not compile is located at its own file and line."""
    site.plugin("garbled", "x = 1\ndef broken(:\n")
    error = info_of(LashCore(), "garbled").error or ""
    assert "SyntaxError" in error
    assert f"{site.prefix}garbled.py:2)" in error


def test_multiline_exception_stays_one_paragraph(site: Site) -> None:
    """An import error with a multi-line message is recorded as a single paragraph."""
    site.plugin("chatty", "raise RuntimeError('line one\\n\\nline two')\n")
    error = info_of(LashCore(), "chatty").error or ""
    assert "RuntimeError: line one line two" in error
    assert "\n" not in error


def test_class_plugin_failing_init_is_isolated(site: Site) -> None:
    """A class plugin whose constructor raises is recorded as failed."""
    module = site.module(
        "badinit",
        """
        class Plugin:
            def __init__(self):
                raise ValueError("no credentials")
        """,
    )
    site.dist("lashtest-badinit", badinit=f"{module}:Plugin")
    info = info_of(LashCore(), "badinit")
    assert info.status == "failed"
    assert "ValueError: no credentials" in (info.error or "")


def test_entry_point_naming_missing_module(site: Site) -> None:
    """An entry point whose module does not exist is a failed plugin, not a crash."""
    site.dist("lashtest-ghost", ghost="lashtest_ghost_module_that_does_not_exist")
    info = info_of(LashCore(), "ghost")
    assert info.status == "failed"
    assert "ModuleNotFoundError" in (info.error or "")


def test_an_entry_point_naming_a_missing_module_says_to_check_the_entry_point(
    site: Site,
) -> None:
    """A typo in the entry point's module (a plugin author's pyproject.toml) is reported as
    such, naming the module and the distribution, without a location inside importlib."""
    site.dist("lashtest-ghost", ghost="lashtest_ghost.plugin:Plugin")
    error = info_of(LashCore(), "ghost").error
    assert error == (
        "plugin 'ghost' could not be imported: its entry point names module "
        "'lashtest_ghost.plugin', which is not installed (ModuleNotFoundError: No module named "
        "'lashtest_ghost'); check the 'lash.plugins' entry point of lashtest-ghost"
    )


def test_unknown_hook_names_hook_and_suggests(site: Site) -> None:
    """A hookimpl naming no known hook fails the plugin, naming the hook and the closest one."""
    site.plugin(
        "typo",
        """
        import lash

        @lash.hookimpl
        def register_tool(register):
            pass
        """,
    )
    tool_plugin(site, "healthy")
    core = LashCore()
    assert core.plugin_names == ["healthy"]
    error = info_of(core, "typo").error or ""
    assert "'register_tool'" in error
    assert "not a lash hook" in error
    assert "did you mean 'register_tools'?" in error
    assert core.hooks.plugins_implementing("register_tools") == ["healthy"]


def test_unknown_hook_in_strict_mode(site: Site) -> None:
    """In strict mode the unknown hook is an UnknownHookError carrying hook and suggestion."""
    site.plugin("typo", "import lash\n\n@lash.hookimpl\ndef sesion_opened(session):\n    pass\n")
    with pytest.raises(UnknownHookError) as info:
        LashCore(strict=True)
    error = info.value
    assert (error.plugin, error.hook, error.suggestion) == (
        "typo",
        "sesion_opened",
        "session_opened",
    )
    assert (error.distribution, error.version) == ("lashtest-typo", "1.0")


def test_unknown_hook_without_close_name() -> None:
    """An unknown hook with no similar name gets no suggestion."""

    class Odd:
        @lash.hookimpl
        def completely_unrelated(self) -> None:
            pass

    with pytest.raises(UnknownHookError) as info:
        LashCore([Odd], strict=True)
    assert info.value.suggestion is None
    assert "did you mean" not in str(info.value)


class BadSignature:
    @lash.hookimpl
    def session_opened(self, session: object, not_an_argument: object) -> None:
        pass


class AsyncRegistration:
    @lash.hookimpl
    async def register_tools(self, register: object) -> None:
        pass


class Wrapper:
    @lash.hookimpl(wrapper=True)
    def session_opened(self, session: object) -> object:
        return (yield)


class OldWrapper:
    @lash.hookimpl(hookwrapper=True)
    def session_opened(self, session: object) -> object:
        yield


class BadMeta:
    lash_plugin: ClassVar[dict[str, None]] = {"options": None}


@pytest.mark.parametrize(
    ("plugin", "fragment"),
    [
        (BadSignature, "not_an_argument"),
        (AsyncRegistration, "hook 'register_tools' must be synchronous"),
        (Wrapper, "hook wrappers are not supported"),
        (OldWrapper, "hook wrappers are not supported"),
        (BadMeta, "`lash_plugin` must be a lash.PluginMeta, got dict"),
        (module_plugin("notattrs", options=dict), "options must be an attrs class"),
        (module_plugin("notattrs_state", state=int), "state must be an attrs class"),
    ],
)
def test_contract_violations_fail_the_plugin(plugin: object, fragment: str) -> None:
    """Plugins that break the hook contract are recorded as failed; the core still builds."""
    healthy = module_plugin("healthy")
    core = LashCore([plugin, healthy])
    assert core.plugin_names == ["healthy"]
    (failed,) = [i for i in core.plugins if i.status == "failed"]
    assert fragment in (failed.error or "")
    with pytest.raises(PluginLoadError, match=fragment):
        LashCore([plugin, healthy], strict=True)


class MisspelledArgument:
    lash_plugin = PluginMeta(name="misspelled_arg")

    @lash.hookimpl
    def turn_persisted(self, turn: object, revison: int) -> None:
        pass


def test_a_misspelled_hook_argument_is_one_line_with_a_suggestion() -> None:
    """A host loading a hook implementation with an argument the hook lacks reports it as
    check_plugin does: one line naming the plugin, the hook and the argument, the hook's
    arguments and the likely one (not pluggy's three-line message)."""
    core = LashCore([MisspelledArgument], autoload=False, builtins=())
    (failed,) = [i for i in core.plugins if i.status == "failed"]
    assert failed.error == (
        "plugin 'misspelled_arg', hook 'turn_persisted': 'revison' is not an argument of the "
        "hook (its arguments: turn, revision); did you mean 'revision'?"
    )


class WrapperNotAGenerator:
    lash_plugin = PluginMeta(name="flat_wrapper")

    @lash.hookimpl(wrapper=True)
    def turn_persisted(self, turn: object, revision: int = 0) -> None:
        pass


def test_a_refused_plugin_is_told_pluggys_reason_not_a_lint_of_its_signature() -> None:
    """pluggy refuses a wrapper that is not a generator; the argument with a default is no
    reason to refuse anything (pluggy accepts it: it just never passes it). The failure must
    name the real reason, or the author fixes the wrong thing and the plugin still fails."""
    core = LashCore([WrapperNotAGenerator], autoload=False, builtins=())
    (failed,) = [i for i in core.plugins if i.status == "failed"]
    assert failed.error is not None
    assert "not a generator function" in failed.error
    assert "has a default" not in failed.error


@pytest.mark.parametrize(
    "hook",
    [
        "register_tools",
        "register_providers",
        "register_protocol",
        "register_process_kinds",
        "register_stores",
        "register_commands",
    ],
)
def test_sync_only_hooks_reject_async(hook: str) -> None:
    """Every registration hook runs while the core is built, so async implementations fail."""

    async def impl() -> None:
        return None

    module = types.ModuleType("asyncy")
    setattr(module, hook, lash.hookimpl(impl))
    with pytest.raises(PluginLoadError, match=f"hook '{hook}' must be synchronous") as info:
        LashCore([module], strict=True)
    assert (info.value.plugin, info.value.hook) == ("asyncy", hook)


def test_async_allowed_on_other_hooks() -> None:
    """Hooks outside registration accept async implementations."""

    async def session_opened(session: object) -> None:
        return None

    module = types.ModuleType("asyncy")
    module.session_opened = lash.hookimpl(session_opened)  # type: ignore[attr-defined]
    assert LashCore([module], strict=True).plugin_names == ["asyncy"]


def test_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Outside strict mode each skipped plugin is logged as a warning."""
    with caplog.at_level(logging.WARNING, logger="lash"):
        LashCore([BadMeta])
    assert any(
        "plugin skipped" in r.getMessage() and "BadMeta" in r.getMessage() for r in caplog.records
    )


# -- strict mode ----------------------------------------------------------------------------------


def test_strict_from_config_file(site: Site, tmp_path: Path) -> None:
    """``strict = true`` in lash.toml turns a broken plugin into an error at startup."""
    site.plugin("broken", "raise ImportError('nope')\n")
    (tmp_path / "lash.toml").write_text("strict = true\n")
    with pytest.raises(PluginLoadError, match="plugin 'broken' could not be imported") as info:
        LashCore.from_config(cwd=tmp_path)
    assert (info.value.plugin, info.value.distribution) == ("broken", "lashtest-broken")


def test_strict_from_environment(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LASH_STRICT_PLUGINS=1`` turns a broken plugin into an error at startup."""
    site.plugin("broken", "raise ImportError('nope')\n")
    monkeypatch.setenv("LASH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginLoadError, match="broken"):
        LashCore()


def test_strict_error_lists_every_failure(site: Site) -> None:
    """The strict-mode error lists all failures, not only the first."""
    site.plugin("broken_a", "raise ImportError('a')\n")
    site.plugin("broken_b", "raise ImportError('b')\n")
    with pytest.raises(PluginLoadError) as info:
        LashCore(strict=True)
    message = str(info.value)
    assert "broken_a" in message
    assert "broken_b" in message
    assert "(strict mode) 1 more failure(s)" in message


def test_strict_mode_without_failures_builds(site: Site) -> None:
    """Strict mode changes nothing when every plugin loads."""
    tool_plugin(site, "alpha")
    assert LashCore(strict=True).plugin_names == ["alpha"]


# -- allow / deny ---------------------------------------------------------------------------------


def test_allowlist_sets_order_and_excludes_others(site: Site) -> None:
    """``plugins=[...]`` loads exactly those, in that order; the rest are disabled."""
    for name in ("a", "b", "c", "d"):
        tool_plugin(site, name)
    core = LashCore(config=HostConfig(plugins=["c", "a", "b"]))
    assert core.plugin_names == ["c", "a", "b"]
    assert info_of(core, "d").status == "disabled"
    assert "allowlist" in (info_of(core, "d").error or "")


def test_default_order_is_by_name(site: Site) -> None:
    """Without an allowlist, installed plugins load in name order (a deterministic order)."""
    for name in ("zed", "alpha", "mid"):
        tool_plugin(site, name)
    assert LashCore().plugin_names == ["alpha", "mid", "zed"]


def test_allowlist_mixes_names_and_objects(site: Site) -> None:
    """Allowlist entries may be entry-point names or plugin objects, in one order."""
    tool_plugin(site, "installed")
    core = LashCore(["installed", module_plugin("obj")])
    assert core.plugin_names == ["installed", "obj"]
    core = LashCore([module_plugin("obj"), "installed"])
    assert core.plugin_names == ["obj", "installed"]


def test_allowlist_from_config_file(site: Site, tmp_path: Path) -> None:
    """``plugins = [...]`` in lash.toml is the allowlist and order."""
    for name in ("a", "b", "c"):
        tool_plugin(site, name)
    (tmp_path / "lash.toml").write_text('plugins = ["b", "a"]\n')
    core = LashCore.from_config(cwd=tmp_path)
    assert core.plugin_names == ["b", "a"]
    assert info_of(core, "c").status == "disabled"


def test_lash_plugins_env_overrides_allowlist(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LASH_PLUGINS`` replaces the configured allowlist and order."""
    for name in ("a", "b", "c"):
        tool_plugin(site, name)
    (tmp_path / "lash.toml").write_text('plugins = ["a", "b"]\n')
    monkeypatch.setenv("LASH_PLUGINS", "c,a")
    assert LashCore.from_config(cwd=tmp_path).plugin_names == ["c", "a"]


def test_lash_plugins_env_without_config(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LASH_PLUGINS`` also applies to a core built without a config file."""
    for name in ("a", "b"):
        tool_plugin(site, name)
    monkeypatch.setenv("LASH_PLUGINS", "b")
    assert LashCore().plugin_names == ["b"]


def test_disable_list(site: Site) -> None:
    """``disable=[...]`` keeps a plugin from loading and records why."""
    tool_plugin(site, "a")
    tool_plugin(site, "b")
    core = LashCore(config=HostConfig(disable=["a"]))
    assert core.plugin_names == ["b"]
    info = info_of(core, "a")
    assert (info.status, info.distribution) == ("disabled", "lashtest-a")
    assert "disable" in (info.error or "")


def test_disable_wins_over_allowlist(site: Site) -> None:
    """A plugin both listed and disabled is disabled."""
    tool_plugin(site, "a")
    core = LashCore(config=HostConfig(plugins=["a"], disable=["a"]))
    assert statuses(core) == {"a": "disabled"}


def test_disable_applies_to_plugin_objects() -> None:
    """``disable`` also removes a plugin given as an object, by its name."""
    core = LashCore([module_plugin("keep"), module_plugin("drop")], disable=["drop"])
    assert core.plugin_names == ["keep"]


def test_autoload_disabled_by_env(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LASH_DISABLE_PLUGIN_AUTOLOAD=1`` loads only listed third-party plugins."""
    tool_plugin(site, "listed")
    tool_plugin(site, "unlisted")
    monkeypatch.setenv("LASH_DISABLE_PLUGIN_AUTOLOAD", "1")
    core = LashCore()
    assert core.plugin_names == []
    assert "autoload disabled" in (info_of(core, "unlisted").error or "")
    monkeypatch.setenv("LASH_PLUGINS", "listed")
    assert LashCore().plugin_names == ["listed"]


def test_listed_plugin_not_installed(site: Site) -> None:
    """Listing a plugin that is not installed is a recorded failure with a suggestion."""
    tool_plugin(site, "files")
    core = LashCore(config=HostConfig(plugins=["file", "files"]))
    assert core.plugin_names == ["files"]
    info = info_of(core, "file")
    assert info.status == "failed"
    assert "no installed distribution declares it" in (info.error or "")
    assert "did you mean 'files'?" in (info.error or "")


def test_bare_names_for_plugins_and_disable(site: Site) -> None:
    """A bare string given for ``plugins`` or ``disable`` is one name, not its letters."""
    tool_plugin(site, "alpha")
    tool_plugin(site, "beta")
    assert LashCore("alpha").plugin_names == ["alpha"]  # type: ignore[arg-type]
    assert LashCore(disable="alpha").plugin_names == ["beta"]  # type: ignore[arg-type]


def test_same_plugin_listed_twice_loads_once(site: Site) -> None:
    """Listing the same plugin twice loads it once, at its first position."""
    tool_plugin(site, "a")
    tool_plugin(site, "b")
    plugin = module_plugin("obj")
    core = LashCore(["b", plugin, "a", "b", plugin])
    assert core.plugin_names == ["b", "obj", "a"]
    assert not [i for i in core.plugins if i.status == "failed"]


def test_two_plugins_with_one_name() -> None:
    """Two different plugin objects under one name: the second is reported, not silently lost."""
    core = LashCore([module_plugin("dup"), module_plugin("dup")])
    assert core.plugin_names == ["dup"]
    with pytest.raises(PluginLoadError, match="two plugins in `plugins` are named 'dup'"):
        LashCore([module_plugin("dup"), module_plugin("dup")], strict=True)


def test_object_clashing_with_listed_entry_point(site: Site) -> None:
    """A plugin object named like a listed entry point is a name clash."""
    tool_plugin(site, "alpha")
    with pytest.raises(PluginLoadError, match="named 'alpha'"):
        LashCore(["alpha", module_plugin("alpha")], strict=True)


# -- builtins -------------------------------------------------------------------------------------


def builtins(site: Site) -> None:
    """Make two builtins: plugins of the distribution named "lash-sdk"."""
    site.dist(
        "lash-sdk",
        "0.0.0",
        core_b=site.module("core_b", TOOL_PLUGIN.format(name="core_b")),
        core_a=site.module("core_a", TOOL_PLUGIN.format(name="core_a")),
    )


def test_builtins_load_by_default(site: Site) -> None:
    """Plugins of the "lash-sdk" distribution are builtins and load by default."""
    builtins(site)
    tool_plugin(site, "third")
    core = LashCore()
    assert sorted(core.plugin_names) == ["core_a", "core_b", "third"]
    assert info_of(core, "core_a").builtin is True
    assert info_of(core, "core_a").distribution == "lash-sdk"
    assert info_of(core, "third").builtin is False


def test_builtins_load_unless_disabled(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an allowlist builtins load even with autoload off; ``disable`` stops them."""
    builtins(site)
    tool_plugin(site, "third")
    monkeypatch.setenv("LASH_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert sorted(LashCore().plugin_names) == ["core_a", "core_b"]
    core = LashCore(config=HostConfig(autoload=False, disable=["core_b"]))
    assert sorted(core.plugin_names) == ["core_a"]
    assert info_of(core, "core_b").status == "disabled"


def test_an_allowlist_loads_only_what_it_lists(site: Site) -> None:
    """With ``plugins`` set, a builtin that is not listed does not load (the allowlist means
    what it says); ``builtins = "default"`` adds every builtin back, a list adds those named."""
    builtins(site)
    tool_plugin(site, "third")
    core = LashCore(config=HostConfig(plugins=["third"]))
    assert core.plugin_names == ["third"]
    assert info_of(core, "core_a").status == "disabled"
    assert info_of(core, "core_a").error == "not in the `plugins` allowlist"
    assert LashCore(plugins=["third"]).plugin_names == ["third"]
    every = LashCore(config=HostConfig(plugins=["third"], builtins="default"))
    assert every.plugin_names == ["third", "core_a", "core_b"]
    named = LashCore(plugins=["third"], builtins=["core_b"])
    assert named.plugin_names == ["third", "core_b"]
    assert LashCore(plugins=[], builtins=()).plugin_names == []


def test_builtins_names_must_be_builtins(site: Site) -> None:
    """A name in ``builtins`` that is no installed builtin fails loading, with a suggestion."""
    builtins(site)
    tool_plugin(site, "third")
    builtin = r"'core_c', which is not an installed builtin.*did you mean 'core_[ab]'"
    with pytest.raises(lash.PluginLoadError, match=builtin):
        LashCore(plugins=["third"], builtins=["core_c"], strict=True)


def test_disable_from_the_environment_and_the_argument_add_up(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LASH_DISABLE_PLUGINS=a,b`` disables plugins for one run, on top of ``disable``."""
    builtins(site)
    tool_plugin(site, "third")
    monkeypatch.setenv("LASH_DISABLE_PLUGINS", " core_a , third ")
    core = LashCore(disable=["core_b"])
    assert core.plugin_names == []
    assert {info_of(core, n).status for n in ("core_a", "core_b", "third")} == {"disabled"}


def test_listed_builtins_take_their_listed_position(site: Site) -> None:
    """A builtin named in the allowlist is ordered where it is listed."""
    builtins(site)
    tool_plugin(site, "third")
    core = LashCore(config=HostConfig(plugins=["core_b", "third", "core_a"]))
    assert core.plugin_names == ["core_b", "third", "core_a"]


def test_plugin_infos_order(site: Site) -> None:
    """``core.plugins`` lists loaded plugins (dispatch order), then failed, then disabled."""
    tool_plugin(site, "b")
    tool_plugin(site, "a")
    site.plugin("broken", "raise ImportError('x')\n")
    tool_plugin(site, "off")
    core = LashCore(disable=["off"])
    assert [(i.name, i.status) for i in core.plugins] == [
        ("a", "loaded"),
        ("b", "loaded"),
        ("broken", "failed"),
        ("off", "disabled"),
    ]


# -- ordering -------------------------------------------------------------------------------------


def test_before_and_after_refine_config_order() -> None:
    """``before``/``after`` move plugins; config order decides everything else."""
    core = LashCore(
        [
            module_plugin("a"),
            module_plugin("b", before="a"),
            module_plugin("c"),
            module_plugin("d", after=("e",)),
            module_plugin("e"),
        ]
    )
    assert core.plugin_names == ["b", "a", "c", "e", "d"]


def test_order_constraints_on_absent_plugins_are_ignored() -> None:
    """``before``/``after`` naming a plugin that is not enabled has no effect."""
    core = LashCore([module_plugin("a", after="nowhere"), module_plugin("b", before="gone")])
    assert core.plugin_names == ["a", "b"]


def test_missing_requirement(site: Site) -> None:
    """A missing required plugin fails the requiring plugin, naming both."""
    core = LashCore([module_plugin("needy", requires="absent"), module_plugin("fine")])
    assert core.plugin_names == ["fine"]
    info = info_of(core, "needy")
    assert info.status == "failed"
    assert "'needy' requires 'absent'" in (info.error or "")
    with pytest.raises(PluginOrderError) as raised:
        LashCore([module_plugin("needy", requires="absent")], strict=True)
    assert raised.value.plugins == ("needy", "absent")
    assert raised.value.plugin == "needy"


def test_requirement_met_and_disabled() -> None:
    """A requirement is met by an enabled plugin and unmet once that plugin is disabled."""
    plugins = [module_plugin("needy", requires=("base",)), module_plugin("base")]
    assert LashCore(plugins).plugin_names == ["needy", "base"]
    core = LashCore(plugins, disable=["base"])
    assert core.plugin_names == []
    assert info_of(core, "needy").status == "failed"


def test_requirements_fail_transitively() -> None:
    """A plugin requiring a plugin that failed its own requirement fails too."""
    core = LashCore([module_plugin("top", requires="mid"), module_plugin("mid", requires="absent")])
    assert core.plugin_names == []
    assert statuses(core) == {"top": "failed", "mid": "failed"}


@attrs.define
class PortOptions:
    port: int = 1


def test_requirement_on_plugin_with_bad_options() -> None:
    """A plugin whose options are invalid cannot satisfy another plugin's requirement."""
    core = LashCore(
        [module_plugin("needy", requires="base"), module_plugin("base", options=PortOptions)],
        options={"base": {"port": "x"}},
    )
    assert core.plugin_names == []
    assert statuses(core) == {"needy": "failed", "base": "failed"}


def test_requirement_on_plugin_that_failed_to_load(site: Site) -> None:
    """A plugin whose requirement failed to import fails too, naming the requirement."""
    site.plugin("base", "raise ImportError('x')\n")
    core = LashCore(["base", module_plugin("needy", requires="base")])
    assert core.plugin_names == []
    assert "requires 'base'" in (info_of(core, "needy").error or "")


def test_cycle_fails_its_plugins_only() -> None:
    """Plugins in a before/after cycle fail with an error naming the cycle; others still load."""
    core = LashCore(
        [
            module_plugin("x", before="y"),
            module_plugin("y", before="x"),
            module_plugin("after_x", after="x"),
            module_plugin("free"),
        ]
    )
    assert core.plugin_names == ["after_x", "free"]
    for name in ("x", "y"):
        error = info_of(core, name).error or ""
        assert "cycle" in error
        assert "'x' -> 'y' -> 'x'" in error


def test_cycle_in_strict_mode() -> None:
    """In strict mode a cycle is a PluginOrderError naming every plugin in it."""
    with pytest.raises(PluginOrderError) as info:
        LashCore(
            [
                module_plugin("p", after="r"),
                module_plugin("q", after="p"),
                module_plugin("r", after="q"),
            ],
            strict=True,
        )
    assert set(info.value.plugins) == {"p", "q", "r"}
    assert "cycle" in str(info.value)


def test_cycle_breaking_a_requirement() -> None:
    """A plugin requiring a plugin lost to a cycle fails as a missing requirement."""
    core = LashCore(
        [
            module_plugin("x", before="y"),
            module_plugin("y", before="x"),
            module_plugin("needs_x", requires="x"),
        ]
    )
    assert core.plugin_names == []
    assert "requires 'x'" in (info_of(core, "needs_x").error or "")


def test_plugin_order_error_types() -> None:
    """Ordering errors are plugin load errors (hosts can catch either)."""
    assert issubclass(PluginOrderError, PluginLoadError)
    assert issubclass(UnknownHookError, PluginLoadError)
    assert issubclass(PluginLoadError, lash.PluginError)


def loaded(name: str, **meta: object) -> LoadedPlugin:
    info = PluginInfo(name=name, status="loaded", meta=PluginMeta(**meta))  # type: ignore[arg-type]
    return LoadedPlugin(name=name, obj=object(), info=info)


@st.composite
def constrained(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]], list[LoadedPlugin]]:
    """Config order, "a runs before b" pairs, and plugins declaring them as before or after."""
    names = draw(st.permutations([f"p{i}" for i in range(draw(st.integers(1, 8)))]))
    pairs = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(names)), max_size=12))
    pairs = [(a, b) for a, b in pairs if a != b]
    before: dict[str, list[str]] = {n: [] for n in names}
    after: dict[str, list[str]] = {n: [] for n in names}
    for a, b in pairs:
        if draw(st.booleans()):
            before[a].append(b)
        else:
            after[b].append(a)
    plugins = [loaded(n, before=tuple(before[n]), after=tuple(after[n])) for n in names]
    return list(names), pairs, plugins


def on_cycle(pairs: list[tuple[str, str]]) -> set[str]:
    """Names that lie on a directed cycle of the "runs before" graph."""
    succ: dict[str, set[str]] = {}
    for a, b in pairs:
        succ.setdefault(a, set()).add(b)
    cyclic = set()
    for start in succ:
        seen, todo = set(), list(succ[start])
        while todo:
            node = todo.pop()
            if node == start:
                cyclic.add(start)
                break
            if node not in seen:
                seen.add(node)
                todo.extend(succ.get(node, ()))
    return cyclic


@settings(max_examples=150, deadline=None)
@given(constrained())
def test_ordering_properties(
    case: tuple[list[str], list[tuple[str, str]], list[LoadedPlugin]],
) -> None:
    """Only cycle members fail; the rest respect every constraint, ties in config order."""
    names, pairs, plugins = case
    ordered, failures = order_plugins(plugins)
    result = [p.name for p in ordered]
    failed = {f.plugin for f in failures}
    assert failed == on_cycle(pairs)
    assert sorted(result) == sorted(set(names) - failed)
    position = {n: i for i, n in enumerate(result)}
    live = [(a, b) for a, b in pairs if a in position and b in position]
    for a, b in live:
        assert position[a] < position[b]
    # Tie-break: each plugin placed is the earliest, in config order, of those whose
    # predecessors are all placed.
    index = {n: i for i, n in enumerate(names)}
    for k, name in enumerate(result):
        placed = set(result[:k])
        ready = [n for n in result[k:] if all(a in placed for a, b in live if b == n)]
        assert name == min(ready, key=index.__getitem__)


@settings(max_examples=50, deadline=None)
@given(st.permutations([f"p{i}" for i in range(8)]))
def test_config_order_kept_without_constraints(names: list[str]) -> None:
    """Without before/after declarations the order is exactly the config order."""
    ordered, failures = order_plugins([loaded(n) for n in names])
    assert [p.name for p in ordered] == list(names)
    assert failures == []
