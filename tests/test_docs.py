"""The documentation: it builds with -W, documents every hook and export, and its examples work.

The examples in ``docs/examples/`` are what the pages include; these tests import and run them,
so a page never shows code that does not work.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pluggy
import pytest

import lash
import lash.hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
EXAMPLE_MODULES = ("greeter", "ordering", "policy", "host")
EXAMPLE_PLUGINS = ("greeter", "summaries", "audit", "output_budget")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without LASH_* settings (they would change what a host loads)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
    env.update(extra)
    return env


# -- the build -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    out = tmp_path_factory.mktemp("docs")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"),
            *("-d", str(out / "doctrees"), str(DOCS), str(out / "html")),
        ],
        capture_output=True,
        text=True,
        cwd=out,
        env=clean_env(),
        timeout=300,
    )
    return out / "html", proc.stderr, proc.returncode


def read_inventory(path: Path) -> dict[tuple[str, str], str]:
    """``objects.inv`` as ``{(domain:role, name): uri}`` (the format Sphinx documents)."""
    header_and_body = path.read_bytes().split(b"\n", 4)
    body = zlib.decompress(header_and_body[4]).decode("utf-8")
    entries: dict[tuple[str, str], str] = {}
    for line in body.splitlines():
        match = re.match(r"(.+?)\s+(\S+)\s+(-?\d+)\s+?(\S*)\s+(.*)", line)
        assert match, line
        name, role, _, uri, _ = match.groups()
        entries[(role, name)] = uri[:-1] + name if uri.endswith("$") else uri
    return entries


def hook_names() -> list[str]:
    pm = pluggy.PluginManager("lash")
    pm.add_hookspecs(lash.hookspecs)
    return sorted(n for n, v in vars(pm.hook).items() if isinstance(v, pluggy.HookCaller))


def test_docs_build_without_warnings(built_docs: tuple[Path, str, int]) -> None:
    """``sphinx-build -W -b html docs`` succeeds: no warning anywhere in the docs."""
    _, stderr, returncode = built_docs
    assert returncode == 0, stderr


def test_every_hook_has_a_docs_section(built_docs: tuple[Path, str, int]) -> None:
    """Every hookspec has a ``hook-<name>`` section and a signature in the hook reference."""
    html, stderr, _ = built_docs
    assert (html / "objects.inv").is_file(), stderr
    inventory = read_inventory(html / "objects.inv")
    names = hook_names()
    assert names == sorted(lash.hookspecs.SHAPES)
    missing = [n for n in names if ("std:label", f"hook-{n}") not in inventory]
    assert not missing, f"hooks without a docs section: {missing}"
    for name in names:
        page, _, anchor = inventory[("std:label", f"hook-{name}")].partition("#")
        assert f'id="{anchor}"' in (html / page).read_text(encoding="utf-8"), name
        assert ("py:function", f"lash.hookspecs.{name}") in inventory, name


def test_every_export_is_in_the_api_reference(built_docs: tuple[Path, str, int]) -> None:
    """Every name of ``lash.__all__`` is documented as ``lash.<name>``."""
    html, stderr, _ = built_docs
    assert (html / "objects.inv").is_file(), stderr
    inventory = read_inventory(html / "objects.inv")
    documented = {name for (role, name) in inventory if role.startswith("py:")}
    missing = [n for n in lash.__all__ if f"lash.{n}" not in documented]
    assert not missing, f"exports missing from the API reference: {missing}"


# -- the example plugins ---------------------------------------------------------------------


@pytest.fixture
def examples() -> Iterator[dict[str, ModuleType]]:
    sys.path.insert(0, str(EXAMPLES))
    importlib.invalidate_caches()
    for name in EXAMPLE_MODULES:
        sys.modules.pop(name, None)
    try:
        modules = {name: importlib.import_module(name) for name in EXAMPLE_MODULES}
        assert all(Path(m.__file__ or "").parent == EXAMPLES for m in modules.values())
        yield modules
    finally:
        sys.path.remove(str(EXAMPLES))
        for name in EXAMPLE_MODULES:
            sys.modules.pop(name, None)


@attrs.define
class FakeSession:
    """The smallest :class:`lash.SessionView`, to call hook implementations directly."""

    id: str = "s1"
    is_root: bool = True
    config: lash.SessionConfig = attrs.field(factory=lash.SessionConfig)
    option_values: dict[type, Any] = attrs.field(factory=dict)
    states: dict[type, Any] = attrs.field(factory=dict)

    def options(self, cls: type) -> Any:
        return self.option_values[cls]

    def state(self, cls: type) -> Any:
        return self.states.setdefault(cls, cls())


@attrs.define
class FakeToolContext:
    session: FakeSession
    call_id: str = "call-1"


@attrs.define
class FakeTurn:
    session: FakeSession
    input: str
    index: int = 0


def call_hook(core: lash.LashCore, hook: str, plugin: str, **kwargs: Any) -> Any:
    """Call one plugin's implementation as the kernel does: only the arguments it accepts."""
    (impl,) = [i for i in core.hooks.impls(hook) if i.plugin == plugin]
    value = impl.function(*[kwargs[a] for a in impl.argnames])
    return asyncio.run(value) if impl.is_async else value


def test_greeter_module_registers_its_tool(examples: dict[str, ModuleType]) -> None:
    """A module plugin with typed options contributes a tool built from a typed function."""
    core = lash.LashCore(plugins=[examples["greeter"]], autoload=False)
    (info,) = [p for p in core.plugins if p.name == "greeter"]
    assert info.status == "loaded"
    assert set(info.hooks) == {
        "register_tools",
        "prompt_contributions",
        "before_tool_call",
        "after_tool_call",
    }
    greet = core.registry.of("tool")["greet"]
    assert (greet.plugin, greet.description) == ("greeter", "Greet one or more people by name.")
    assert greet.value(["Ada", "Grace"]) == "Hello, Ada and Grace!"
    assert greet.value(["Ada"], shout=True) == "HELLO, ADA!"
    with pytest.raises(ValueError, match="at most 3 names"):
        greet.value(["a", "b", "c", "d"])
    assert core.plugin_options("greeter") == examples["greeter"].Options()


def test_greeter_options_are_validated(examples: dict[str, ModuleType]) -> None:
    """Options of the wrong type skip the plugin, naming the field; strict mode raises."""
    bad = {"greeter": {"max_names": "many"}}
    core = lash.LashCore(plugins=[examples["greeter"]], options=bad)
    (info,) = [p for p in core.plugins if p.name == "greeter"]
    assert info.status == "failed"
    assert "options.greeter.max_names" in (info.error or "")
    assert "greet" not in core.registry.of("tool")
    with pytest.raises(lash.PluginLoadError, match=r"options\.greeter\.max_names"):
        lash.LashCore(plugins=[examples["greeter"]], options=bad, strict=True)


def test_greeter_hooks(examples: dict[str, ModuleType]) -> None:
    """The greeter's hooks tidy arguments, gate their prompt on the tool and record state."""
    greeter = examples["greeter"]
    core = lash.LashCore(plugins=[greeter])
    session = FakeSession()
    context = FakeToolContext(session)
    call = lash.ToolCall("call-1", "greet", {"names": [" Ada ", "Grace"]})
    directive = call_hook(core, "before_tool_call", "greeter", call=call, context=context)
    assert directive == lash.ReplaceToolArguments({"names": ["Ada", "Grace"]})
    other = lash.ToolCall("call-2", "search", {"q": "x"})
    assert call_hook(core, "before_tool_call", "greeter", call=other, context=context) is None

    fragment = call_hook(core, "prompt_contributions", "greeter", session=session)
    assert (fragment.slot, fragment.requires_tool) == ("system", "greet")

    done = lash.ToolCall("call-1", "greet", {"names": ["Ada", "Grace"]})
    result = lash.ToolResult("call-1", "Hello, Ada and Grace!")
    kwargs = {"call": done, "result": result, "context": context}
    assert call_hook(core, "after_tool_call", "greeter", **kwargs) is None
    assert session.state(greeter.State).greeted == ["Ada", "Grace"]


def test_host_order_follows_config_then_declarations(examples: dict[str, ModuleType]) -> None:
    """Config order, refined by ``after``; a ``tryfirst`` implementation runs first."""
    core = examples["host"].build_core()
    mine = [n for n in core.plugin_names if n in EXAMPLE_PLUGINS]
    # Listed summaries, greeter, audit, output_budget; summaries declares after=("greeter",).
    assert mine == ["greeter", "summaries", "audit", "output_budget"]
    implementing = core.hooks.plugins_implementing("before_tool_call")
    assert [n for n in implementing if n in EXAMPLE_PLUGINS] == ["audit", "greeter"]
    assert core.plugin_options("greeter").greeting == "Welcome"
    assert core.plugin_options("greeter").max_names == 5


def test_class_and_instance_plugins(examples: dict[str, ModuleType]) -> None:
    """The class plugins guard and compact; the instance plugin projects tool output."""
    core = examples["host"].build_core()
    context = FakeToolContext(FakeSession())
    denied = lash.ToolCall("call-1", "delete_everything")
    verdict = call_hook(core, "before_tool_call", "audit", call=denied, context=context)
    assert isinstance(verdict, lash.AbortToolCall)
    allowed = lash.ToolCall("call-2", "greet", {"names": ["Ada"]})
    assert call_hook(core, "before_tool_call", "audit", call=allowed, context=context) is None

    for instructions, summary in [(None, "The earlier conversation was compacted."), ("k", "k")]:
        compaction = call_hook(
            core, "compact_context", "summaries", session=FakeSession(), instructions=instructions
        )
        assert compaction == lash.Compaction(summary=summary, keep_recent_turns=2)

    kwargs = {"session": FakeSession(), "call": allowed}
    short = lash.ToolResult("call-2", "x" * 500)
    assert call_hook(core, "project_tool_result", "output_budget", result=short, **kwargs) is None
    long = lash.ToolResult("call-2", "x" * 520)
    projected = call_hook(core, "project_tool_result", "output_budget", result=long, **kwargs)
    assert projected == "x" * 500 + "\n[20 more characters]"


def test_policy_hooks_follow_session_options(examples: dict[str, ModuleType]) -> None:
    """The policy plugin hides tools, trims the prompt view, vets models and aborts empty turns."""
    policy = examples["policy"]
    settings = {"hidden_tools": ["shell"], "max_messages": 2, "models": ["small", "large"]}
    core = lash.LashCore(plugins=[policy.Policy], options={"policy": settings})
    options = core.plugin_options("policy")
    assert options == policy.PolicyOptions(("shell",), 2, ("small", "large"))
    session = FakeSession(option_values={policy.PolicyOptions: options})

    catalog = (lash.ToolCatalogEntry("shell", "tools"), lash.ToolCatalogEntry("greet", "greeter"))
    hidden = call_hook(core, "filter_tool_catalog", "policy", session=session, catalog=catalog)
    assert hidden == ["shell"]

    call = lash.ToolCall("call-1", "greet", {"names": ["Ada"]})
    system = lash.Message("system", "Be brief.")
    done = lash.Message("assistant", "Greeted Ada.")
    long_view = lash.PromptView(
        (
            system,
            lash.Message("user", "Greet Ada."),
            lash.Message("assistant", tool_calls=(call,)),
            lash.Message("tool", "Hello, Ada!", tool_call_id="call-1"),
            done,
        )
    )
    # The last two non-system messages start with a tool result, which goes with its call.
    trimmed = call_hook(core, "transform_prompt_view", "policy", session=session, view=long_view)
    assert trimmed == lash.PromptView((system, done))
    short_view = lash.PromptView((system, done))
    assert (
        call_hook(core, "transform_prompt_view", "policy", session=session, view=short_view) is None
    )

    current = lash.SessionConfig(model="small")
    change = {"session": session, "previous": current}
    ok = lash.SessionConfig(model="large")
    assert call_hook(core, "mutate_session_config", "policy", proposed=ok, **change) is None
    with pytest.raises(lash.ConfigRejected, match="huge"):
        bad = lash.SessionConfig(model="huge")
        call_hook(core, "mutate_session_config", "policy", proposed=bad, **change)

    empty = call_hook(core, "before_turn", "policy", turn=FakeTurn(session, "  "))
    assert isinstance(empty, lash.AbortTurn)
    assert call_hook(core, "before_turn", "policy", turn=FakeTurn(session, "Hi")) is None
    assert call_hook(core, "session_opened", "policy", session=session) is None


def test_exclusive_hook_conflict_names_both(examples: dict[str, ModuleType]) -> None:
    """A second ``project_tool_result`` implementation fails the build, naming both plugins."""

    class Other:
        lash_plugin = lash.PluginMeta(name="other_budget")

        @lash.hookimpl
        def project_tool_result(self, result: lash.ToolResult) -> str | None:
            return None

    budget = examples["ordering"].OutputBudget()
    with pytest.raises(lash.ExclusiveHookConflict) as caught:
        lash.LashCore(plugins=[budget, Other], disable=["tool_output_budget"])
    assert set(caught.value.plugins) == {"output_budget", "other_budget"}


def test_missing_requirement_is_isolated(examples: dict[str, ModuleType]) -> None:
    """A plugin whose ``requires`` is missing is skipped and reported; strict mode raises."""
    (failed,) = examples["host"].skipped_plugins()
    assert failed.name == "summaries"
    assert "greeter" in (failed.error or "")
    with pytest.raises(lash.PluginOrderError):
        lash.LashCore(plugins=[examples["ordering"].Summaries], strict=True)


# -- the example configuration ---------------------------------------------------------------


def test_lash_toml_example(examples: dict[str, ModuleType]) -> None:
    """The example ``lash.toml`` loads; ``$env:`` fills the secret, which the repr hides."""
    config = lash.HostConfig.load(EXAMPLES / "lash.toml", environ={"GREETER_API_KEY": "sk-test"})
    assert config.strict is True
    assert config.plugins == ("greeter", "summaries", "audit")
    assert config.disable == ("tool_output_budget",)
    assert config.autoload is False
    assert (config.store, config.provider, config.model) == (
        "sqlite:///.lash/sessions.db",
        "openai",
        "gpt-4.1-mini",
    )
    assert "sk-test" not in repr(config)
    core = lash.LashCore(plugins=[examples["greeter"]], options=config.options)
    options = core.plugin_options("greeter")
    assert (options.greeting, options.max_names, options.api_key) == ("Welcome", 5, "sk-test")
    with pytest.raises(lash.ConfigError, match="GREETER_API_KEY"):
        lash.HostConfig.load(EXAMPLES / "lash.toml", environ={})


def test_pyproject_example_is_found_upward(examples: dict[str, ModuleType], tmp_path: Path) -> None:
    """``[tool.lash]`` in a parent's pyproject.toml is found; LASH_* variables apply on top."""
    shutil.copy(EXAMPLES / "pyproject_tool_lash.toml", tmp_path / "pyproject.toml")
    start = tmp_path / "src" / "app"
    start.mkdir(parents=True)
    config = lash.HostConfig.load(cwd=start, environ={"GREETER_MAX_NAMES": "4"})
    assert config.path == str(tmp_path / "pyproject.toml")
    assert (config.plugins, config.strict) == (("greeter",), False)
    core = lash.LashCore(plugins=[examples["greeter"]], options=config.options)
    assert (core.plugin_options("greeter").greeting, core.plugin_options("greeter").max_names) == (
        "Hi",
        4,
    )
    environ = {
        "GREETER_MAX_NAMES": "4",
        "LASH_PLUGINS": "greeter, audit",
        "LASH_STRICT_PLUGINS": "1",
        "LASH_DISABLE_PLUGIN_AUTOLOAD": "true",
    }
    config = lash.HostConfig.load(cwd=start, environ=environ)
    assert (config.plugins, config.strict, config.autoload) == (("greeter", "audit"), True, False)


def test_plugins_as_a_table_is_rejected() -> None:
    """Making ``plugins`` a table is an error that points to ``[options.<name>]``."""
    with pytest.raises(lash.ConfigError, match=re.escape("[options.<name>]")):
        lash.HostConfig.load(EXAMPLES / "plugins_as_table.toml", environ={})


# -- the CLI transcripts ---------------------------------------------------------------------


@pytest.fixture
def installed_greeter(tmp_path: Path) -> Path:
    """A directory that, on PYTHONPATH, makes the greeter an installed ``lash-greeter``.

    The distribution metadata is derived from ``docs/examples/plugin_pyproject.toml``.
    """
    project = tomllib.loads((EXAMPLES / "plugin_pyproject.toml").read_text(encoding="utf-8"))
    meta = project["project"]
    ((name, module),) = meta["entry-points"]["lash.plugins"].items()
    site = tmp_path / "site"
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n",
        encoding="utf-8",
    )
    (info / "entry_points.txt").write_text(f"[lash.plugins]\n{name} = {module}\n", encoding="utf-8")
    shutil.copy(EXAMPLES / "greeter.py", site / f"{module}.py")
    return site


def run_lash(*args: str, cwd: Path, site: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from lash.cli import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(PYTHONPATH=str(site), **env),
        timeout=120,
    )


def test_lash_plugins_transcript(installed_greeter: Path, tmp_path: Path) -> None:
    """``lash plugins`` prints exactly the transcript on the CLI page, the secret as ***."""
    workdir = tmp_path / "host"
    workdir.mkdir()
    shutil.copy(EXAMPLES / "cli" / "lash.toml", workdir / "lash.toml")
    proc = run_lash("plugins", cwd=workdir, site=installed_greeter, GREETER_API_KEY="sk-test")
    assert proc.returncode == 0, proc.stderr
    assert "sk-test" not in proc.stdout + proc.stderr
    expected = (EXAMPLES / "cli" / "plugins.txt").read_text(encoding="utf-8")
    assert proc.stdout == expected, "update docs/examples/cli/plugins.txt"


def test_lash_doctor_transcript(installed_greeter: Path, tmp_path: Path) -> None:
    """``lash doctor`` prints the transcript on the CLI page (builtins aside) and exits 1."""
    workdir = tmp_path / "host"
    workdir.mkdir()
    shutil.copy(EXAMPLES / "cli" / "broken.toml", workdir / "lash.toml")
    proc = run_lash("--config", "lash.toml", "doctor", cwd=workdir, site=installed_greeter)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # The transcript leaves out the builtins: their lines, their count, and notes about them.
    lines = [
        re.sub(r"^plugins: \d+ loaded", "plugins: 0 loaded", line)
        for line in proc.stdout.splitlines()
        if not line.endswith("[builtin]") and not line.startswith("note: ")
    ]
    expected = (EXAMPLES / "cli" / "doctor.txt").read_text(encoding="utf-8").splitlines()
    assert lines == expected, "update docs/examples/cli/doctor.txt"
