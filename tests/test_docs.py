"""The documentation: it builds with -W, documents every hook and export, and its examples work.

The examples in ``docs/examples/`` are what the pages include; these tests import and run them,
so a page never shows code that does not work.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pluggy
import pytest
from _pkgs import pythonpath
from openai_wire_server import Reply, WireServer

import lash
import lash.hookspecs
import lash.store
import lash.testing
from lash_plugins_builtin._sqlite_url import SYNCHRONOUS
from lash_plugins_builtin.anthropic import AnthropicOptions
from lash_plugins_builtin.compaction import CompactionOptions
from lash_plugins_builtin.mcp import MCPOptions, MCPServer
from lash_plugins_builtin.openai import OpenAIOptions
from lash_plugins_builtin.plan import PlanOptions, PlanState, PlanStep
from lash_plugins_builtin.scripted import ScriptedResponse, ScriptedToolCall
from lash_plugins_builtin.shell import ShellOptions
from lash_plugins_builtin.sqlite import SQLiteSettings, SQLiteStore, parse_url
from lash_plugins_builtin.standard import StandardOptions
from lash_plugins_builtin.subagent import SubagentOptions

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
EXAMPLE_MODULES = (
    *("greeter", "ordering", "policy", "host", "background", "cli_command"),
    *("quickstart", "streaming", "embed_config"),
    *("notebook", "notebook_demo", "forecast"),
    *("echo_provider", "test_scripted_host"),
    *("lifecycle", "deadline", "autopilot", "autopilot_host", "budget_protocol"),
    *("persistence_host", "session_ops", "kv_store", "kv_store_unfenced", "test_kv_store"),
    *("session_services", "reentrancy", "hook_checks", "explicit_builtins", "renamed_hooks"),
    *("mailbox_host", "mailbox_ops", "background_host", "subagents", "operations"),
    *("approvals", "model_options", "structured_output", "stored_nodes", "hold"),
)
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
    return sorted(
        n
        for n, v in vars(pm.hook).items()
        if isinstance(v, pluggy.HookCaller) and n not in lash.hookspecs.DEPRECATED
    )


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
        env=clean_env(PYTHONPATH=pythonpath(site), **env),
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
        re.sub(
            r"^plugins: \d+ loaded, (\d+) failed, \d+ disabled",
            r"plugins: 0 loaded, \1 failed, 0 disabled",
            line,
        )
        for line in proc.stdout.splitlines()
        if "[builtin]" not in line and not line.startswith("note: ")
    ]
    expected = (EXAMPLES / "cli" / "doctor.txt").read_text(encoding="utf-8").splitlines()
    assert lines == expected, "update docs/examples/cli/doctor.txt"


# -- the session kernel pages: quickstart, tools, providers, turns ---------------------------


@pytest.fixture
def no_lash_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process cores read LASH_* from the environment: the examples run without them."""
    for name in list(os.environ):
        if name.startswith("LASH_"):
            monkeypatch.delenv(name)


def transcript(name: str) -> str:
    """The output shown on a page, next to the example that prints it."""
    return (EXAMPLES / name).read_text(encoding="utf-8")


def scripted_core(script: list[Any], *plugins: object, **kwargs: Any) -> lash.LashCore:
    """A core of the builtins plus ``plugins`` whose model plays ``script`` (memory store)."""
    kwargs.setdefault("store", "memory://")
    return lash.LashCore(
        plugins=["standard", "stores", "scripted", *plugins],
        autoload=False,
        provider="scripted",
        options={"scripted": {"responses": script}, **kwargs.pop("options", {})},
        **kwargs,
    )


@pytest.mark.usefixtures("no_lash_env")
def test_quickstart_runs_offline(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """The quickstart returns a completed, committed TurnResult and prints what the page shows."""
    result = asyncio.run(examples["quickstart"].main())
    assert isinstance(result, lash.TurnResult)
    assert (result.outcome, result.index, result.revision) == ("completed", 1, 1)
    assert result.text == "Hello! I am a scripted model, so I always say this."
    assert result.tool_calls == ()
    assert capsys.readouterr().out == transcript("quickstart.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_streaming_example(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """Streaming prints text chunks and the tool call as they happen, then the committed result."""
    result = asyncio.run(examples["streaming"].main())
    assert (result.outcome, result.text) == ("completed", "Done: the park is picked, food is next.")
    ((call, tool_result),) = [(r.call, r.result) for r in result.tool_calls]
    assert call.name == "update_plan" and not tool_result.is_error
    assert result.usage == lash.Usage(input_tokens=300, output_tokens=42)
    assert capsys.readouterr().out == transcript("streaming.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_embed_config_talks_to_an_openai_compatible_server(
    examples: dict[str, ModuleType],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The quickstart's lash.toml selects the openai provider and model; the key and the server
    come from OPENAI_API_KEY and OPENAI_BASE_URL (here a real server on 127.0.0.1)."""
    # A copy: the session database goes to .lash/ beside the file, out of the source tree.
    config = tmp_path / "lash.toml"
    shutil.copyfile(EXAMPLES / "lash_openai.toml", config)
    with WireServer() as server:
        server.push(Reply(text=["I am ", "a real model."]))
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-test")
        result = asyncio.run(examples["embed_config"].main(str(config)))
        (request,) = server.requests
    assert (result.outcome, result.text) == ("completed", "I am a real model.")
    assert capsys.readouterr().out == "completed: I am a real model.\n"
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-docs-test"
    assert request.body["model"] == "gpt-4.1-mini"
    assert request.body["stream"] is True
    assert request.body["messages"][-1] == {"role": "user", "content": "Hi, who are you?"}


@pytest.mark.usefixtures("no_lash_env")
def test_openai_server_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Ollama and OpenRouter configurations on the providers page build the provider."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    ollama = lash.HostConfig.load(EXAMPLES / "ollama.toml", environ={})
    assert (ollama.provider, ollama.model) == ("openai", "llama3.2")
    provider = lash.LashCore(config=ollama).registry.of("provider")["openai"].value
    assert (provider.url, provider.timeout) == ("http://localhost:11434/v1/chat/completions", 120.0)

    environ = {"OPENROUTER_API_KEY": "sk-or-secret"}
    openrouter = lash.HostConfig.load(EXAMPLES / "openrouter.toml", environ=environ)
    assert (openrouter.provider, openrouter.model) == ("openai", "anthropic/claude-3.5-haiku")
    provider = lash.LashCore(config=openrouter).registry.of("provider")["openai"].value
    assert provider.base_url == "https://openrouter.ai/api/v1"
    assert provider.has_api_key and provider.max_retries == 5
    assert "sk-or-secret" not in repr(provider) + repr(openrouter)
    with pytest.raises(lash.ConfigError, match="OPENROUTER_API_KEY"):
        lash.HostConfig.load(EXAMPLES / "openrouter.toml", environ={})


@pytest.mark.usefixtures("no_lash_env")
def test_anthropic_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Anthropic configuration on the providers page enables the opt-in provider with its
    key from the environment, hidden from reprs."""
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    environ = {"ANTHROPIC_API_KEY": "sk-ant-secret"}
    config = lash.HostConfig.load(EXAMPLES / "anthropic.toml", environ=environ)
    assert (config.provider, config.model) == ("anthropic", "claude-sonnet-4-5")
    provider = lash.LashCore(config=config).registry.of("provider")["anthropic"].value
    assert provider.url == "https://api.anthropic.com/v1/messages"
    assert provider.has_api_key and provider.max_tokens == 8192
    assert "sk-ant-secret" not in repr(provider) + repr(config)
    with pytest.raises(lash.ConfigError, match="ANTHROPIC_API_KEY"):
        lash.HostConfig.load(EXAMPLES / "anthropic.toml", environ={})


def test_notebook_tools_and_their_schemas(examples: dict[str, ModuleType]) -> None:
    """register_tools contributes four tools: typed functions (schema from hints, description
    from the docstring, the context left out), one renamed, one with a timeout, one raw."""
    notebook = examples["notebook"]
    core = lash.LashCore(plugins=[notebook], autoload=False)
    tools = {n: c for n, c in core.registry.of("tool").items() if c.plugin == "notebook"}
    assert set(tools) == {"add_note", "search_notes", "count_primes", "retag"}

    add_note = tools["add_note"].value
    assert add_note.description == "Save a note in this conversation's notebook."
    schema = add_note.parameters
    assert (schema["required"], schema["additionalProperties"]) == (["text"], False)
    assert list(schema["properties"]) == ["text", "tags", "priority"]  # no `context`
    assert schema["properties"]["text"] == {
        "type": "string",
        "description": "What to remember, in one or two sentences.",
    }
    assert schema["properties"]["priority"]["enum"] == ["low", "normal", "high"]
    assert schema["properties"]["priority"]["default"] == "normal"
    assert schema["properties"]["tags"]["anyOf"] == [
        {"type": "array", "items": {"type": "string"}},
        {"type": "null"},
    ]

    search = tools["search_notes"].value
    assert search.fn is notebook.find_notes
    assert search.parameters["properties"]["limit"] == {"type": "integer", "default": 5}
    assert tools["count_primes"].value.timeout == 10.0  # NotebookOptions.prime_timeout
    retag = tools["retag"].value
    assert retag.parameters == notebook.RETAG_SCHEMA
    assert retag.parameters is not notebook.RETAG_SCHEMA  # lash keeps its own copy

    configured = lash.LashCore(
        plugins=[notebook], autoload=False, options={"notebook": {"prime_timeout": 2.5}}
    )
    assert configured.registry.of("tool")["count_primes"].value.timeout == 2.5


def test_forecast_schema_is_the_one_on_the_page(examples: dict[str, ModuleType]) -> None:
    """Each supported type hint maps to the documented schema; arguments are checked and
    converted before the call."""
    tool = examples["forecast"].forecast
    assert isinstance(tool, lash.Tool)
    assert (tool.name, tool.description, tool.timeout) == ("forecast", "Forecast the weather.", 5.0)
    shown = json.loads((EXAMPLES / "forecast.schema.json").read_text(encoding="utf-8"))
    assert tool.parameters == shown
    props = shown["properties"]
    assert shown["required"] == ["place"]
    assert props["place"]["required"] == ["city"] and props["place"]["type"] == "object"
    assert props["unit"] == {
        "type": "string",
        "enum": ["celsius", "fahrenheit"],
        "default": "celsius",
    }
    assert props["detail"]["enum"] == ["brief", "hourly"]
    assert props["hours"]["anyOf"][0] == {"type": "array", "items": {"type": "integer"}}
    assert props["thresholds"]["anyOf"][0] == {
        "type": "object",
        "additionalProperties": {"type": "number"},
    }

    context = lash.ToolContext(FakeSession(), "call-1")
    good = {"place": {"city": "Oslo"}, "unit": "fahrenheit", "hours": [9, 18]}
    result = asyncio.run(tool.invoke(good, context))
    assert result == lash.ToolResult(
        "call-1", "Oslo: sunny for 3 day(s), 21 degrees fahrenheit (brief)"
    )
    bad = asyncio.run(tool.invoke({"place": "Oslo", "days": "3", "color": 1}, context))
    assert bad.is_error
    assert bad.content.splitlines() == [
        "invalid arguments for tool 'forecast':",
        "  - place: expected Place, got 'Oslo' (str)",
        "  - days: expected int, got '3' (str)",
        "  - color: unknown key (known: days, detail, hours, place, thresholds, unit)",
    ]


@pytest.mark.usefixtures("no_lash_env")
def test_notebook_demo_shows_every_kind_of_error_result(
    examples: dict[str, ModuleType],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Invalid arguments, exceptions, timeouts, unknown tools and non-JSON arguments all become
    error results the model reads, and the turn completes; the page shows that transcript."""
    with caplog.at_level(logging.WARNING, logger="lash.tools"):
        result = asyncio.run(examples["notebook_demo"].main())
    assert (result.outcome, result.text) == ("completed", "Noted: Ada prefers tea.")
    assert [(r.call.name, r.result.is_error) for r in result.tool_calls] == [
        ("add_note", False),
        ("add_note", True),
        ("search_notes", False),
        ("count_primes", True),
        ("retag", True),
        ("add_note", True),
        ("delete_note", True),
        ("search_notes", True),
    ]
    assert capsys.readouterr().out == transcript("notebook_demo.txt")
    # The exception is logged with its traceback, at WARNING on the lash.tools logger.
    (record,) = [r for r in caplog.records if r.name == "lash.tools"]
    assert record.levelno == logging.WARNING and record.exc_info is not None


@pytest.mark.usefixtures("no_lash_env")
def test_tool_state_is_committed_and_restored(examples: dict[str, ModuleType]) -> None:
    """What a tool writes to its plugin's state is committed with the turn and restored on open."""
    notebook = examples["notebook"]
    script = [
        {"tool_calls": [{"name": "add_note", "arguments": {"text": "Tea", "tags": ["ada"]}}]},
        {"text": "Saved."},
    ]

    async def go() -> list[Any]:
        core = scripted_core(script, notebook)
        async with core.session("n") as session:
            await session.turn("Remember: tea.").run()
        resumed = await core.session("n").open(must_exist=True)
        return resumed.state(notebook.NotebookState).notes

    assert asyncio.run(go()) == [notebook.Note(1, "Tea", ["ada"], "normal")]


class Ping:
    """A plugin with one tool and no arguments, for the echo provider's ``/tool`` command."""

    lash_plugin = lash.PluginMeta(name="ping")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        def ping() -> str:
            """Answer pong."""
            return "pong"

        register(ping)


@pytest.mark.usefixtures("no_lash_env")
def test_echo_provider_plugin(examples: dict[str, ModuleType]) -> None:
    """A provider plugin streams text deltas, asks for tools with ToolCallReady, and reports usage
    with one final ModelDone; the kernel runs the tool and calls the model again."""
    echo = examples["echo_provider"]

    async def go() -> tuple[list[lash.TurnEvent], lash.TurnResult, lash.ModelResponse]:
        core = lash.LashCore(
            plugins=["standard", "stores", echo.Echo, Ping],
            autoload=False,
            disable=["scripted", "openai", "plan"],
            provider="echo",
        )
        async with core:
            session = await core.session("e").open()
            events = [e async for e in session.turn("hello there world").stream()]
            tooled = await session.turn("/tool ping").run()
        request = lash.ModelRequest("any", (lash.Message("user", "one two"),))
        direct = await lash.collect_response(echo.EchoProvider().stream(request))
        return events, tooled, direct

    events, tooled, direct = asyncio.run(go())
    deltas = [e.text for e in events if isinstance(e, lash.TextDeltaEvent)]
    assert deltas == ["hello", " there", " world"]
    assert isinstance(events[-1], lash.TurnFinished)
    assert events[-1].result.text == "hello there world"
    assert events[-1].result.usage == lash.Usage(input_tokens=3, output_tokens=3)
    assert (tooled.outcome, tooled.text) == ("completed", "The tool said: pong")
    assert [(r.call.name, r.result.content) for r in tooled.tool_calls] == [("ping", "pong")]
    assert (direct.text, direct.tool_calls, direct.finish_reason) == ("one two", (), "stop")


@pytest.mark.usefixtures("no_lash_env")
def test_scripted_host_tests_pass(
    examples: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The example test module of the providers page passes (scripts from TOML, JSON, code)."""
    module = examples["test_scripted_host"]
    tests = [getattr(module, name) for name in dir(module) if name.startswith("test_")]
    assert len(tests) == 3
    monkeypatch.chdir(tmp_path)  # script paths are absolute: the cwd must not matter
    for test in tests:
        asyncio.run(test())


def test_provider_tables_list_every_option() -> None:
    """The providers page documents every option of the openai and anthropic providers and every
    field of a scripted response."""
    page = (DOCS / "providers.rst").read_text(encoding="utf-8")
    classes = (OpenAIOptions, AnthropicOptions, ScriptedResponse)
    fields = [f.name for cls in classes for f in attrs.fields(cls)]
    fields += [f.name for f in attrs.fields(ScriptedToolCall)]
    missing = [name for name in fields if f"``{name}``" not in page]
    assert not missing, f"undocumented on docs/providers.rst: {missing}"


def test_stored_nodes_example(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """The store authors' page example: rows read as StoredNodes, a node built when read and
    kept, equal to the tuple nodes_from_rows builds; a spoiled row names its subject."""
    examples["stored_nodes"].main()
    assert capsys.readouterr().out == transcript("stored_nodes.txt")


def test_hold_example(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The mailbox page's hold: three turns under one lease, another core refused meanwhile,
    then served once the hold is over."""
    asyncio.run(examples["hold"].main(tmp_path))
    assert capsys.readouterr().out == transcript("hold.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_lifecycle_trace(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """The hooks fire in the documented order: open, before_turn, per model call the catalog,
    prompt and view hooks, per tool call before/invoke/after/project, after_turn, finalized,
    commit, persisted; close; resume opens with restored=True."""
    lines = asyncio.run(examples["lifecycle"].main())
    assert capsys.readouterr().out == transcript("lifecycle.txt")
    per_call = ["filter_tool_catalog", "prompt_contributions", "transform_prompt_view", "model"]
    expected = [
        *("prepare_session", "session_opened", "before_turn"),
        *per_call,
        *("before_tool_call", "tool", "after_tool_call", "project_tool_result"),
        *per_call,
        *("after_turn", "turn_finalized", "turn_persisted", "session_closed", "--"),
        *("prepare_session", "session_opened"),
    ]
    assert [re.split(r"[(: ]", line.strip(), maxsplit=1)[0] for line in lines] == expected
    assert "turn_persisted(revision=1)" in lines


@pytest.mark.usefixtures("no_lash_env")
def test_deadline_cancels_and_the_turn_still_commits(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """cancel_running_turns stops the turn at the running tool; it commits stopped(cancelled)
    with an error result for the interrupted call, and the session goes on."""
    stopped, after = asyncio.run(examples["deadline"].main(seconds=0.2))
    assert (stopped.outcome, stopped.reason, stopped.revision) == ("stopped", "cancelled", 1)
    ((call, result),) = [(r.call, r.result) for r in stopped.tool_calls]
    assert call.name == "wait_for_build"
    assert result == lash.ToolResult(call.id, "tool call not completed: cancelled", True)
    assert (after.outcome, after.text, after.revision) == ("completed", "OK, I stopped waiting.", 2)
    assert capsys.readouterr().out == transcript("deadline.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_autopilot_queues_follow_ups(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """after_turn's EnqueueMessages queues input; drain runs it, turn by turn, until the
    plan is done; usage_report sums the committed turns."""
    results = asyncio.run(examples["autopilot_host"].main())
    assert [(r.index, r.outcome) for r in results] == [(i, "completed") for i in (1, 2, 3)]
    assert results[-1].text == "Hotel booked: all done."
    assert capsys.readouterr().out == transcript("autopilot_host.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_autopilot_limits_and_aborts(examples: dict[str, ModuleType]) -> None:
    """before_turn aborts empty input before any model call; max_follow_ups bounds the queue."""
    autopilot = examples["autopilot"]
    script = examples["autopilot_host"].SCRIPT

    async def go() -> tuple[lash.TurnResult, list[lash.TurnResult], tuple[str, ...], int]:
        core = scripted_core(
            script, "plan", autopilot, options={"autopilot": {"max_follow_ups": 1}}
        )
        async with core:
            session = await core.session("a").open()
            empty = await session.turn("   ").run()
            await session.turn("Book my trip to Lisbon.").run()
            follow_ups = await session.drain()
            model = core.registry.of("provider")["scripted"].value
            pending = tuple(i.text for i in await session.inputs())
            return empty, follow_ups, pending, len(model.requests)

    empty, follow_ups, pending, model_calls = asyncio.run(go())
    assert (empty.outcome, empty.reason, empty.detail) == ("stopped", "plugin_abort", "empty input")
    assert [r.text for r in follow_ups] == ["Flight booked; the hotel is next."]
    assert pending == ()
    assert model_calls == 4  # none for the empty input


@pytest.mark.usefixtures("no_lash_env")
def test_budget_protocol(examples: dict[str, ModuleType]) -> None:
    """The protocol plugin replaces ``standard``: it finishes, or stops the turn when the token
    budget is spent, and the unanswered call still gets an error result."""
    budget = examples["budget_protocol"]
    plan_call = {"name": "update_plan", "arguments": {"steps": [{"step": "Pack"}]}}
    script = [
        {"tool_calls": [plan_call], "usage": {"input_tokens": 50, "output_tokens": 10}},
        {"text": "Planned.", "usage": {"input_tokens": 70, "output_tokens": 2}},
        {"tool_calls": [plan_call], "usage": {"input_tokens": 50, "output_tokens": 10}},
    ]

    async def go() -> tuple[lash.TurnResult, lash.TurnResult, dict[str, Any]]:
        core = scripted_core(script, budget, disable=["standard"])
        assert core.hooks.plugins_implementing("register_protocol") == ["budget"]
        async with core:
            roomy = await core.session("roomy").open()
            done = await roomy.turn("Plan the trip.").run()
            tight = await core.session("tight", options={"budget": {"token_budget": 50}}).open()
            stopped = await tight.turn("Plan the trip.").run()
            return done, stopped, tight.options(budget.BudgetOptions)

    done, stopped, options = asyncio.run(go())
    assert (done.outcome, done.text) == ("completed", "Planned.")
    assert options == budget.BudgetOptions(max_tool_rounds=8, token_budget=50)
    assert (stopped.outcome, stopped.reason) == ("stopped", "plugin_abort")
    assert stopped.detail == "token budget spent: 60 of 50 tokens"
    ((_, result),) = [(r.call, r.result) for r in stopped.tool_calls]
    assert result.is_error and result.content.startswith("tool call not completed")
    with pytest.raises(lash.ExclusiveHookConflict) as conflict:
        scripted_core(script, budget)
    assert set(conflict.value.plugins) == {"standard", "budget"}


# -- persistence, store authors, session operations, builtins -------------------------------

#: What varies between runs of a transcript: local times, random frame ids and session ids.
_VARYING = (
    (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"), "<time>"),
    (re.compile(r"agent frame [0-9a-f]{8}"), "agent frame <id>"),
    (re.compile(r"(conformance-[a-z-]+)-[0-9a-f]{12}"), r"\1-<id>"),
    (re.compile(r"turn-[0-9a-f]{28}"), "turn-<id>"),
    (re.compile(r"in-[0-9a-f]{16}"), "in-<id>"),
)
_LASH_MAIN = "import sys; from lash.cli import main; sys.exit(main())"


def normalized(text: str) -> str:
    """``text`` with what varies between runs (times, random ids) replaced by placeholders."""
    for pattern, replacement in _VARYING:
        text = pattern.sub(replacement, text)
    return text


def run_console(path: Path, cwd: Path) -> str:
    """Run the ``$ ...`` lines of a console transcript in ``cwd`` (``lash`` with this Python;
    ``> file`` redirects stdout) and return the transcript they print now."""
    out: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("$ "):
            continue
        out.append(line)
        argv = shlex.split(line[2:])
        target = None
        if ">" in argv:
            at = argv.index(">")
            argv, target = argv[:at], argv[at + 1]
        if argv[0] == "lash":
            argv = [sys.executable, "-c", _LASH_MAIN, *argv[1:]]
        proc = subprocess.run(
            argv, capture_output=True, text=True, cwd=cwd, env=clean_env(), timeout=120
        )
        assert proc.returncode == 0, f"{line}\n{proc.stdout}{proc.stderr}"
        if target is not None:
            (cwd / target).write_text(proc.stdout, encoding="utf-8")
        else:
            out.extend(proc.stdout.splitlines())
    return "\n".join(out) + "\n"


def load_builtin_example(name: str) -> ModuleType:
    """``docs/examples/builtins/<name>.py``, imported under a name no builtin uses."""
    spec = importlib.util.spec_from_file_location(
        f"_docs_builtin_{name}", EXAMPLES / "builtins" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("no_lash_env")
def test_persistence_host_survives_restarts(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Sessions outlive their core in a SQLite file: resume restores plugin state and usage; two
    hosts both open a session, a turn that finds the lease held gets SessionBusy (wait=0) or
    waits, then runs on the reloaded view; park/resume, open_fresh, delete and an online backup
    do what the persistence page says."""
    db = asyncio.run(examples["persistence_host"].main(tmp_path))
    assert capsys.readouterr().out == transcript("persistence_host.txt")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    async def stored() -> tuple[lash.store.SessionRecord | None, lash.store.SessionRecord | None]:
        live, backup = (
            SQLiteStore(f"sqlite:///{db}"),
            SQLiteStore(f"sqlite:///{tmp_path}/backup.db"),
        )
        try:
            return await live.load("trip", full=True), await backup.load("trip", full=True)
        finally:
            await live.close()
            await backup.close()

    deleted, backed_up = asyncio.run(stored())
    assert deleted is None
    assert backed_up is not None
    # open_fresh replaced five turns with one; revisions went on counting (5 + 1).
    assert (backed_up.revision, backed_up.turns) == (6, 1)
    assert [type(n) for n in backed_up.nodes] == [
        lash.FrameBoundary,
        lash.UserMessage,
        lash.AssistantMessage,
        lash.TurnOutcome,
    ]


def test_persistence_store_urls() -> None:
    """The deployed config and every URL form and parameter the persistence page shows."""
    config = lash.HostConfig.load(EXAMPLES / "persistence.toml", environ={})
    assert parse_url(config.store or "") == SQLiteSettings(
        "/var/lib/travel-agent/lash.db", synchronous="FULL", busy_timeout=10000
    )
    assert parse_url("sqlite:///relative/path.db").path == "relative/path.db"
    assert parse_url("sqlite:////absolute/path.db").path == "/absolute/path.db"
    assert parse_url("sqlite://:memory:").path == ":memory:"
    assert parse_url("sqlite:///x.db?create_dirs=1").create_dirs is True
    assert parse_url("sqlite:///x.db") == SQLiteSettings("x.db", "NORMAL", 5000, False)
    assert parse_url("sqlite:///x.db?mode=ro").mode == "ro"
    assert parse_url("sqlite:///x.db?events_kept=5&events_max_age=60").events_kept == 5
    known = "busy_timeout, create_dirs, events_kept, events_max_age, mode, synchronous"
    with pytest.raises(lash.ConfigError, match=known):
        parse_url("sqlite:///x.db?journal=wal")
    page = (DOCS / "persistence.rst").read_text(encoding="utf-8")
    assert all(f"``{level}``" in page for level in SYNCHRONOUS)
    assert all(f"``{name}``" in page for name in known.split(", "))


@pytest.mark.usefixtures("no_lash_env")
def test_default_store_is_sqlite_under_the_project(tmp_path: Path) -> None:
    """Without a store setting: .lash/lash.db under the config file's directory, else the
    working directory, created when missing."""
    (tmp_path / "lash.toml").write_text('provider = "scripted"\n', encoding="utf-8")
    core = lash.LashCore(config=lash.HostConfig.load(tmp_path / "lash.toml", environ={}))
    assert core.store_url == f"sqlite:///{tmp_path.resolve()}/.lash/lash.db?create_dirs=1"
    plain = lash.LashCore(autoload=False)
    assert plain.store_url == f"sqlite:///{Path.cwd().resolve()}/.lash/lash.db?create_dirs=1"


def test_lash_sessions_transcript(tmp_path: Path) -> None:
    """``lash run`` then ``lash sessions list/show/export/delete`` print what the page shows
    (times and the frame id aside); export writes the header and one line per node."""
    shutil.copy(EXAMPLES / "persistence" / "lash.toml", tmp_path / "lash.toml")
    page = EXAMPLES / "persistence" / "sessions.txt"
    assert normalized(run_console(page, tmp_path)) == normalized(page.read_text("utf-8"))
    header, *nodes = (tmp_path / "trip.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(header)["type"] == "session"
    assert [json.loads(n)["type"] for n in nodes] == [
        *("frame", "user", "assistant", "tool_call", "tool_result", "assistant", "outcome"),
    ]


def test_lash_sessions_mailbox_transcript(tmp_path: Path) -> None:
    """The CLI page's mailbox session prints what it shows (times and ids aside): input queued
    by key, one cancelled, the rest drained oldest first, each settled by its turn, and the
    events replayed with their cursors."""
    shutil.copy(EXAMPLES / "cli" / "mailbox.toml", tmp_path / "lash.toml")
    page = EXAMPLES / "cli" / "mailbox.txt"
    printed = run_console(page, tmp_path)
    assert normalized(printed) == normalized(page.read_text("utf-8"))
    # The turn ids the inputs were settled by are the ones the turns were committed under.
    settled = printed.split("$ lash sessions inputs trip --all\n")[1].split("$")[0]
    events = printed.split("$ lash sessions watch")[1]
    turns = re.findall(r"turn-[0-9a-f]{28}", settled)
    assert len(turns) == 2
    assert re.findall(r"turn_committed: .*\[(turn-[0-9a-f]{28})\]", events) == turns


SESSIONS_DB = "sqlite:///.lash/sessions.db"  # the store of docs/examples/persistence/lash.toml


def test_lash_store_copy_transcript(tmp_path: Path, postgres_url: str) -> None:
    """The deploying page's move: a session copied to another store, a re-run with --merge
    skipping it, the copy listed; the same command moves it to a real Postgres server."""
    shutil.copy(EXAMPLES / "persistence" / "lash.toml", tmp_path / "lash.toml")
    shutil.copy(EXAMPLES / "deploying" / "moved.toml", tmp_path / "moved.toml")
    page = EXAMPLES / "deploying" / "move.txt"
    assert normalized(run_console(page, tmp_path)) == normalized(page.read_text("utf-8"))
    proc = subprocess.run(
        [sys.executable, "-c", _LASH_MAIN, "store", "copy", SESSIONS_DB, postgres_url],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("copied 1 session (0 replaced)")
    assert proc.stderr.startswith("[1/1] trip: copied (7 nodes, 1 turn records")


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 command-line tool")
@pytest.mark.usefixtures("no_lash_env")
def test_sqlite3_backup_transcript(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``sqlite3 lash.db ".backup backup.db"`` copies a database lash can open, session included."""
    asyncio.run(examples["persistence_host"].first_process(tmp_path / "lash.db"))
    capsys.readouterr()
    page = EXAMPLES / "persistence" / "backup.txt"
    assert run_console(page, tmp_path) == page.read_text("utf-8")

    async def listed() -> list[lash.store.SessionSummary]:
        store = SQLiteStore(f"sqlite:///{tmp_path}/backup.db")
        try:
            return await store.list_sessions()
        finally:
            await store.close()

    assert [(r.session_id, r.turns) for r in asyncio.run(listed())] == [("trip", 1)]


@pytest.mark.usefixtures("no_lash_env")
def test_kv_store_example_passes_its_tests(
    examples: dict[str, ModuleType], quick_expiry: None
) -> None:
    """The store authors' example backend passes the whole conformance suite, in one call and
    check by check, and a host selects it by URL: its test module passes."""
    module = examples["test_kv_store"]
    asyncio.run(module.test_kv_store_conforms())
    for check in lash.testing.STORE_CHECKS:
        asyncio.run(module.test_kv_store_check(check))
    asyncio.run(module.test_hosts_select_it_by_url())
    core = lash.LashCore(plugins=[examples["kv_store"]], autoload=False)
    assert core.registry.of("store")["kv"].plugin == "kv_store"
    with pytest.raises(lash.ConfigError, match="not a kv:// URL"):
        examples["kv_store"].KVStore("memory://")


class CountingDict(dict[str, str]):
    """A key-value database that records the keys written and read (``[]``, not ``get``)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.reads: list[str] = []

    def __setitem__(self, key: str, value: str) -> None:
        self.writes.append(key)
        super().__setitem__(key, value)

    def __getitem__(self, key: str) -> str:
        self.reads.append(key)
        return super().__getitem__(key)


def test_kv_store_keeps_commits_o_delta(examples: dict[str, ModuleType]) -> None:
    """A commit writes its new nodes, the inputs it settles, its turn record, its events and the
    head, nothing else; load reads the active frame."""

    async def go() -> tuple[list[str], list[str], list[str]]:
        data = CountingDict()
        store = examples["kv_store"].KVStore("kv://", data)
        lease = await store.acquire_lease("s", "me", ttl=30)
        history = [
            lash.UserMessage(id=f"u{i}", parent_id=None, frame_id="f", turn=i, text="q")
            for i in range(50)
        ]
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(tuple(history))
        )
        boundary = lash.FrameBoundary(
            id="b", parent_id="u49", frame_id="g", turn=51, previous_frame_id="f"
        )
        delta = lash.store.CommitDelta((boundary, history[0]))
        data.writes.clear()
        await store.commit("s", lease=lease, expected_revision=1, delta=delta)
        writes = list(data.writes)
        data.reads.clear()
        await store.load("s")
        reads = list(data.reads)

        queued = [await store.enqueue_input("s", lash.store.InputDraft(t)) for t in "ab"]
        (claimed,) = await store.claim_inputs(lease)
        record = lash.store.TurnRecord("s", "t", 52, "completed", 0)
        turn = lash.store.CommitDelta(
            (history[1],),
            claimed=(claimed.id,),
            turn=record,
            events=(lash.store.EventDraft("turn_committed"),),
        )
        data.writes.clear()
        await store.commit("s", lease=lease, expected_revision=2, delta=turn)
        assert [i.seq for i in queued] == [1, 2]
        return writes, reads, list(data.writes)

    writes, reads, turn_writes = asyncio.run(go())
    assert writes == ["node/s/50", "node/s/51", "head/s"]
    assert reads == ["node/s/50", "node/s/51"]
    # Events 1 to 3: two input_queued, one input_claimed. Input 2 stays pending, unwritten.
    assert turn_writes == ["node/s/52", "input/s/1", "turn/s/t", "event/s/4", "head/s"]


def test_kv_store_keeps_a_bounded_event_window(examples: dict[str, ModuleType]) -> None:
    """The kv:// event log keeps the newest ``events_kept`` events, none older than
    ``events_max_age`` (7 days by default), deleting the rest; numbers stay gap-free."""
    kv_store = examples["kv_store"]

    async def by_count() -> tuple[lash.store.EventPage, list[str]]:
        data: dict[str, str] = {}
        store = kv_store.KVStore("kv://", data, events_kept=3)
        drafts = [lash.store.EventDraft(f"e{i}") for i in range(1, 6)]
        lease = await store.acquire_lease("s", "me", ttl=30, events=drafts[:1])
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(events=drafts[1:])
        )
        return await store.read_events("s"), sorted(k for k in data if k.startswith("event/"))

    page, keys = asyncio.run(by_count())
    assert [(e.seq, e.type) for e in page.events] == [(3, "e3"), (4, "e4"), (5, "e5")]
    assert (page.first, page.last) == (3, 5)
    assert keys == ["event/s/3", "event/s/4", "event/s/5"]

    async def by_age() -> tuple[lash.store.EventPage, list[str]]:
        data: dict[str, str] = {}
        store = kv_store.KVStore("kv://", data)
        for text in ("one", "two", "three"):
            await store.enqueue_input("s", lash.store.InputDraft(text))
        # Events 1 and 2 were written eight days ago (as the database would hold them).
        for seq in (1, 2):
            event = json.loads(data[f"event/s/{seq}"])
            data[f"event/s/{seq}"] = json.dumps({**event, "at": time.time() - 8 * 24 * 3600})
        await store.enqueue_input("s", lash.store.InputDraft("four"))
        return await store.read_events("s"), sorted(k for k in data if k.startswith("event/"))

    page, keys = asyncio.run(by_age())
    assert [e.seq for e in page.events] == [3, 4]
    assert (page.first, page.last) == (3, 4)
    assert keys == ["event/s/3", "event/s/4"]


def test_kv_store_keys_escape_ids(examples: dict[str, ModuleType]) -> None:
    """Ids holding ``/`` do not collide in kv:// keys: session ``a`` turn ``b/c`` and session
    ``a/b`` turn ``c`` are two records, and deleting ``a`` leaves ``a/b`` whole."""

    async def go() -> None:
        store = examples["kv_store"].KVStore()
        for session_id, turn_id in (("a", "b/c"), ("a/b", "c")):
            lease = await store.acquire_lease(session_id, "me", ttl=30)
            record = lash.store.TurnRecord(session_id, turn_id, 1, "completed", 0)
            delta = lash.store.CommitDelta(turns=1, turn=record, release=True)
            await store.commit(session_id, lease=lease, expected_revision=0, delta=delta)
            await store.enqueue_input(session_id, lash.store.InputDraft(f"for {session_id}"))
        await store.delete("a")
        assert await store.turn_record("a", "b/c") is None
        kept = await store.turn_record("a/b", "c")
        assert kept is not None and kept.session_id == "a/b"
        assert [i.text for i in await store.list_inputs("a/b")] == ["for a/b"]
        assert [row.session_id for row in await store.list_sessions()] == ["a/b"]

    asyncio.run(go())


def test_kv_store_fences_the_lease_from_before_a_delete(examples: dict[str, ModuleType]) -> None:
    """kv:// keeps a deleted session's token: the next lease, even the same owner's, gets a
    higher one, and the lease from before the delete cannot commit to the new session."""

    async def go() -> None:
        store = examples["kv_store"].KVStore()
        old = await store.acquire_lease("s", "host-a", ttl=30)
        delta = lash.store.CommitDelta(turns=1, release=True)
        await store.commit("s", lease=old, expected_revision=0, delta=delta)
        await store.delete("s")
        new = await store.acquire_lease("s", "host-a", ttl=30)
        assert new.token > old.token
        with pytest.raises(lash.LeaseLost):
            await store.commit("s", lease=old, expected_revision=0, delta=delta)
        assert await store.load("s") is None

    asyncio.run(go())


def test_kv_store_commit_refused_by_its_enqueue_writes_nothing(
    examples: dict[str, ModuleType],
) -> None:
    """A commit whose ``enqueue`` reuses a key with other content is an InputConflict, and
    nothing of the commit is written (no node, no revision, no event)."""

    async def go() -> None:
        store = examples["kv_store"].KVStore()
        await store.enqueue_input("s", lash.store.InputDraft("first", key="k"))
        lease = await store.acquire_lease("s", "me", ttl=30)
        node = lash.UserMessage(id="u", parent_id=None, frame_id="f", turn=1, text="q")
        delta = lash.store.CommitDelta(
            (node,), turns=1, enqueue=(lash.store.InputDraft("other", key="k"),)
        )
        with pytest.raises(lash.InputConflict):
            await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        assert await store.load("s") is None
        assert (await store.read_events("s")).last == 1  # the first input_queued only

    asyncio.run(go())


def mailbox_store(examples: dict[str, ModuleType], backend: str) -> lash.store.Store:
    """A new store: the kv:// example, or the reference memory store to compare it with."""
    if backend == "kv":
        store: lash.store.Store = examples["kv_store"].KVStore()
        return store
    return lash.store.MemoryStore()


@pytest.mark.parametrize("backend", ["kv", "memory"])
def test_store_settles_only_claims_of_its_lease(
    examples: dict[str, ModuleType], backend: str
) -> None:
    """A commit settling an input claimed by an earlier holder's lease (released since) is
    LeaseLost, writes nothing, and the input stays pending."""

    async def go() -> None:
        store = mailbox_store(examples, backend)
        queued = await store.enqueue_input("s", lash.store.InputDraft("work"))
        first = await store.acquire_lease("s", "a", ttl=30)
        (claimed,) = await store.claim_inputs(first)
        await store.release_lease(first)
        second = await store.acquire_lease("s", "b", ttl=30)
        last = (await store.read_events("s")).last
        delta = lash.store.CommitDelta(turns=1, claimed=(claimed.id,))
        with pytest.raises(lash.LeaseLost, match=claimed.id):
            await store.commit("s", lease=second, expected_revision=0, delta=delta)
        assert await store.load("s") is None
        assert [(i.id, i.state) for i in await store.list_inputs("s")] == [(queued.id, "pending")]
        assert (await store.read_events("s")).last == last

    asyncio.run(go())


@pytest.mark.parametrize("backend", ["kv", "memory"])
def test_store_commit_answers_the_cancel_request(
    examples: dict[str, ModuleType], backend: str
) -> None:
    """The commit that records a turn drops the stored request to cancel it."""

    async def go() -> None:
        store = mailbox_store(examples, backend)
        lease = await store.acquire_lease("s", "a", ttl=30, turn="t")
        receipt = await store.request_cancel("s", "t", origin="host", reason="stop")
        assert receipt.status == "requested"
        record = lash.store.TurnRecord("s", "t", 1, "stopped", 0, reason="cancelled")
        delta = lash.store.CommitDelta(turns=1, turn=record, release=True)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        assert await store.cancel_request("s", "t") is None

    asyncio.run(go())


@pytest.mark.parametrize("backend", ["kv", "memory"])
def test_store_replace_keeps_the_mailbox_and_the_log(
    examples: dict[str, ModuleType], backend: str
) -> None:
    """A replace commit starts the graph over but keeps the inputs, commands, turn records and
    events (the contract's ``replace`` drops nodes, states, usage, turns and config only)."""

    async def go() -> None:
        store = mailbox_store(examples, backend)
        await store.enqueue_input("s", lash.store.InputDraft("later"))
        await store.enqueue_command("s", lash.store.CommandDraft("reset", "k"))
        lease = await store.acquire_lease("s", "a", ttl=30)
        record = lash.store.TurnRecord("s", "t", 1, "completed", 0)
        node = lash.UserMessage(id="u", parent_id=None, frame_id="f", turn=1, text="q")
        await store.commit(
            "s",
            lease=lease,
            expected_revision=0,
            delta=lash.store.CommitDelta((node,), turns=1, turn=record),
        )
        before = (
            await store.list_inputs("s", settled=True),
            await store.list_commands("s", settled=True),
            await store.read_events("s"),
        )
        await store.commit(
            "s", lease=lease, expected_revision=1, delta=lash.store.CommitDelta(replace=True)
        )
        after = (
            await store.list_inputs("s", settled=True),
            await store.list_commands("s", settled=True),
            await store.read_events("s"),
        )
        assert after == before
        assert len(before[0]) == len(before[1]) == 1
        assert await store.turn_record("s", "t") is not None
        loaded = await store.load("s", full=True)
        assert loaded is not None and (loaded.nodes, loaded.turns) == ((), 0)

    asyncio.run(go())


@pytest.mark.usefixtures("no_lash_env")
def test_unfenced_store_fails_the_lease_checks(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str], quick_expiry: None
) -> None:
    """A store that lets any lease commit fails exactly the fencing checks, as the page shows."""
    error = asyncio.run(examples["kv_store_unfenced"].main())
    assert list(error.failures) == [
        "lease_takeover_after_expiry",
        "lease_release",
        "commit_stale_lease",
        "concurrent_commits_two_leases",
        "delete",
        "lease_take_over_dead_holder",
        "commit_releases_the_lease",
        "delete_keeps_fencing_and_event_numbers",
        "process_start_in_commit",
    ]
    shown = transcript("kv_store_unfenced.txt")
    assert normalized(capsys.readouterr().out) == normalized(shown)


def test_store_authors_page_lists_every_check() -> None:
    """The table of checks on the store authors' page names every conformance check."""
    page = (DOCS / "store_authors.rst").read_text(encoding="utf-8")
    missing = [name for name in lash.testing.STORE_CHECKS if f"* - ``{name}``" not in page]
    assert not missing, f"checks missing from docs/store_authors.rst: {missing}"


@pytest.mark.usefixtures("no_lash_env")
def test_session_operations_and_their_events(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """configure (amended, rejected), compact, tool membership and an idempotent reset command
    each commit once; the lifecycle events fire in the order the sessions page documents."""
    lines = asyncio.run(examples["session_ops"].main())
    assert capsys.readouterr().out == transcript("session_ops.txt")
    assert lines == [
        "session_opened ('ops')",
        "turn_persisted (turn 1, revision 1)",  # then configure: 2, compact: 3, catalog: 4
        "session_config_changed (model small -> large)",  # (enqueue_command commits nothing)
        "frame_opened (reason 'compaction')",
        "frame_opened (reason 'reset')",  # applied in turn 2's commit, announced before it
        "turn_persisted (turn 2, revision 5)",
        "session_parked",
        "session_opened ('ops', restored)",
        "turn_persisted (turn 3, revision 6)",
        "session_closed",
    ]


def test_mailbox_host_across_two_processes(tmp_path: Path) -> None:
    """A front end queues two inputs (one of them twice, by key) and watches without the lease;
    a worker subprocess drains them: each is claimed, run and committed once, in order, and the
    watcher sees it all; the page's transcript is what the example prints."""
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "mailbox_host.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == transcript("mailbox_host.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_approvals_example(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A turn stops for approval in one core, another answers (a second answer and an unknown
    call change nothing), a third continues the turn: the approvals page's transcript."""
    asyncio.run(examples["approvals"].main(tmp_path))
    assert capsys.readouterr().out == transcript("approvals.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_mailbox_operations(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """cancel_turn from another core stops the turn by its id (and a resubmitted id does not run
    again); active_turn input and a checkpoint hook's message join the running turn; a plugin's
    session command queued from another core is applied once; the store holds each outcome."""
    asyncio.run(examples["mailbox_ops"].main(tmp_path))
    assert capsys.readouterr().out == transcript("mailbox_ops.txt")

    async def stored() -> lash.store.SessionRecord | None:
        store = SQLiteStore(f"sqlite:///{tmp_path}/lash.db")
        try:
            return await store.load("orders", full=True)
        finally:
            await store.close()

    record = asyncio.run(stored())
    assert record is not None
    outcomes = [
        (n.turn_id, n.outcome, n.reason, n.cancelled_by)
        for n in record.nodes
        if isinstance(n, lash.TurnOutcome)
    ]
    assert outcomes[0] == ("order-7", "stopped", "cancelled", "desk:alice")
    assert [o[1:] for o in outcomes[1:]] == [("completed", None, None)]
    assert record.plugin_states["notes"] == {"notes": ["VIP customer: deliver before noon."]}


def test_sessions_page_lists_every_lifecycle_event() -> None:
    """The events table names every session lifecycle hook (process events excepted)."""
    page = (DOCS / "sessions.rst").read_text(encoding="utf-8")
    table = page[page.index(".. _sessions-events:") : page.index(".. _sessions-configure:")]
    events = [
        name
        for name, shape in lash.hookspecs.SHAPES.items()
        if shape == "broadcast" and name != "process_finished"
    ]
    missing = [name for name in [*events, "prepare_session"] if f"hook-{name}`" not in table]
    assert not missing, f"lifecycle events missing from docs/sessions.rst: {missing}"


@pytest.mark.usefixtures("no_lash_env")
def test_builtin_compaction_example(capsys: pytest.CaptureFixture[str]) -> None:
    """Over threshold_tokens the session compacts after the turn, keeping one turn; compact()
    passes instructions; the summaries' usage is the compaction source's."""
    session = asyncio.run(load_builtin_example("compaction").main())
    assert capsys.readouterr().out == (EXAMPLES / "builtins" / "compaction.txt").read_text("utf-8")
    boundary, *kept = session.nodes
    assert isinstance(boundary, lash.FrameBoundary) and boundary.reason == "compaction"
    assert boundary.summary == "A trip to Lisbon in May; the user notes prices (tram: 3 euros)."
    # keep_recent_turns = 1: the last turn, copied into the new frame (its outcome too).
    assert [(type(n), n.frame_id) for n in kept] == [
        (lash.UserMessage, boundary.frame_id),
        (lash.AssistantMessage, boundary.frame_id),
        (lash.TurnOutcome, boundary.frame_id),
    ]
    assert kept[0].text == "What did I ask so far?"
    # The two summaries' prompts (700 and 500 tokens) are the compaction source's usage.
    assert session.usage_report()["by_source"]["compaction"]["input_tokens"] == 1200


@pytest.mark.usefixtures("no_lash_env")
def test_builtin_plan_example(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """The plan is refused over max_steps, kept in state, shown in the prompt, restored on open."""
    with caplog.at_level(logging.WARNING, logger="lash.tools"):
        state = asyncio.run(load_builtin_example("plan").main())
    assert capsys.readouterr().out == (EXAMPLES / "builtins" / "plan.txt").read_text("utf-8")
    assert state == PlanState(
        [PlanStep("Book the flight", "completed"), PlanStep("Book the hotel", "in_progress")], 2
    )


@pytest.mark.usefixtures("no_lash_env")
def test_builtin_subagent_example(capsys: pytest.CaptureFixture[str]) -> None:
    """The parent's turn ends at once; the worker runs the child's turn and the woken parent
    turn reads its answer; the child's usage is in the parent's report."""
    asyncio.run(load_builtin_example("subagent").main())
    assert capsys.readouterr().out == (EXAMPLES / "builtins" / "subagent.txt").read_text("utf-8")


@pytest.mark.usefixtures("no_lash_env")
def test_builtin_shell_example(capsys: pytest.CaptureFixture[str]) -> None:
    """Three real commands: an exit status, output cut at max_output_bytes, a timeout."""
    asyncio.run(load_builtin_example("shell").main())
    assert capsys.readouterr().out == (EXAMPLES / "builtins" / "shell.txt").read_text("utf-8")


@pytest.mark.usefixtures("no_lash_env")
def test_builtin_mcp_example(capsys: pytest.CaptureFixture[str]) -> None:
    """A real MCP server's tools in a turn (one answer, one error result); a server that does
    not start is reported and left out."""
    asyncio.run(load_builtin_example("mcp_tools").main())
    expected = (EXAMPLES / "builtins" / "mcp_tools.txt").read_text("utf-8")
    assert capsys.readouterr().out == expected


def test_builtins_index_covers_every_builtin() -> None:
    """docs/builtins.rst names every builtin; every docs/builtins page is in its toctree; the
    builtin pages document every option field."""
    page = (DOCS / "builtins.rst").read_text(encoding="utf-8")
    builtins = sorted(
        ep.name
        for ep in importlib.metadata.entry_points(group="lash.plugins")
        if ep.value.startswith("lash_plugins_builtin.")
    )
    assert len(builtins) == 13
    missing = [name for name in builtins if f"``{name}``" not in page]
    assert not missing, f"builtins missing from docs/builtins.rst: {missing}"
    for sub in sorted((DOCS / "builtins").glob("*.rst")):
        assert f"   builtins/{sub.stem}\n" in page, f"{sub.name} is not in the builtins toctree"
        assert ":orphan:" not in sub.read_text(encoding="utf-8"), sub.name
    for where, options in [
        ("builtins.rst", StandardOptions),
        ("builtins/plan.rst", PlanOptions),
        ("builtins/compaction.rst", CompactionOptions),
        ("builtins/subagent.rst", SubagentOptions),
        ("builtins/shell.rst", ShellOptions),
        ("builtins/mcp.rst", MCPOptions),
        ("builtins/mcp.rst", MCPServer),
    ]:
        text = (DOCS / where).read_text(encoding="utf-8")
        undocumented = [f.name for f in attrs.fields(options) if f"``{f.name}``" not in text]
        assert not undocumented, f"options not documented on docs/{where}: {undocumented}"


# -- every hook has an example and a test ----------------------------------------------------


def _hookimpl_names(text: str) -> set[str]:
    pattern = r"@lash\.hookimpl[^\n]*\n(?:\s*@[^\n]*\n)*\s*(?:async\s+)?def\s+(\w+)"
    return set(re.findall(pattern, text))


def test_every_hook_has_a_runnable_example() -> None:
    """Each hook is implemented in at least one example file under docs/examples/."""
    implemented: set[str] = set()
    for path in EXAMPLES.rglob("*.py"):
        implemented |= _hookimpl_names(path.read_text(encoding="utf-8"))
    assert sorted(set(lash.hookspecs.SHAPES) - implemented) == []


def test_every_hook_is_exercised_by_a_test() -> None:
    """Each hook name appears in a test module other than this one (its behaviour is tested)."""
    tests = Path(__file__).resolve().parent
    text = "".join(
        p.read_text(encoding="utf-8") for p in tests.glob("test_*.py") if p.name != "test_docs.py"
    )
    assert sorted(h for h in lash.hookspecs.SHAPES if h not in text) == []


@pytest.mark.usefixtures("no_lash_env")
def test_background_example_runs_a_report_and_wakes_the_session(
    examples: dict[str, ModuleType],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The report kind is rerunnable with typed payload and result; the tool's start commits
    with its turn; the worker runs it (progress recorded), process_finished hears it once, and
    the rendered result becomes the session's next turn."""
    background = examples["background"]
    core = lash.LashCore(plugins=[background], autoload=False, store="memory://")
    kind = core.processes.kind("report")
    assert (kind.plugin, kind.recovery, kind.max_attempts, kind.timeout) == (
        "background",
        lash.RecoveryDisposition.RERUNNABLE,
        3,
        600.0,
    )
    assert kind.payload_schema["required"] == ["topic"]
    assert kind.result_schema["properties"] == {
        "topic": {"type": "string"},
        "summary": {"type": "string"},
    }
    with caplog.at_level(logging.INFO, logger="background"):
        lines = asyncio.run(examples["background_host"].main())
    assert capsys.readouterr().out == transcript("background_host.txt")
    assert lines[-1] == "turn 2: Your report on tides is ready: 3 sections."
    assert caplog.text.count("(report) finished: succeeded") == 1


@pytest.mark.usefixtures("no_lash_env")
def test_background_example_starts_a_report_from_a_hook_directive(
    examples: dict[str, ModuleType],
) -> None:
    """``/report waves`` makes before_turn return lash.StartProcess: the turn's commit starts
    the report, attributed to the plugin; other input starts nothing."""

    async def go() -> list[lash.ProcessRecord]:
        core = scripted_core([{"text": "On it."}, {"text": "Hello."}], examples["background"])
        async with core:
            session = await core.session("desk").open()
            await session.turn("/report waves").run()
            await session.turn("hello").run()
            return await core.processes.list(session_id="desk")

    (record,) = asyncio.run(go())
    assert (record.kind, record.status, record.source) == ("report", "pending", "plugin:background")
    assert record.payload == {"topic": "waves", "sections": 3}


def test_cli_command_example_adds_a_subcommand(tmp_path: Path) -> None:
    """The register_commands example, installed as a distribution, adds `lash hello`."""
    site = tmp_path / "site"
    info = site / "lash_cli_command-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lash-cli-command\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[lash.plugins]\ncli_command = cli_command\n", encoding="utf-8"
    )
    shutil.copy(EXAMPLES / "cli_command.py", site / "cli_command.py")
    proc = run_lash("hello", "docs", cwd=tmp_path, site=site)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello, docs!\n"


# -- what hooks and tools may call, and what lash checks about them ------------------------------


@pytest.mark.usefixtures("no_lash_env")
def test_session_services_commit_with_the_turn(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """State, tool membership, a recorded node and a direct completion's usage, changed by a
    tool and an after_turn hook, are all in the turn's one commit (revision 1); the next model
    call of the turn no longer offers the hidden tool; a change outside any operation is a
    commit of its own (revision 2)."""
    services = examples["session_services"]
    db = tmp_path / "services.db"
    asyncio.run(services.main(f"sqlite:///{db}"))
    assert capsys.readouterr().out == transcript("session_services.txt")

    async def stored() -> lash.store.SessionRecord | None:
        store = SQLiteStore(f"sqlite:///{db}")
        try:
            return await store.load("widget", full=True)
        finally:
            await store.close()

    record = asyncio.run(stored())
    assert record is not None
    assert (record.revision, record.turns) == (2, 1)
    assert record.plugin_states["setup"] == {"colour": "teal", "title": "Teal widget setup"}
    (node,) = [n for n in record.nodes if isinstance(n, lash.PluginNode)]
    assert (node.plugin, node.kind, node.data, node.turn) == (
        "setup",
        "setup_finished",
        {"colour": "teal"},
        1,
    )
    assert record.usage["titles"].input_tokens == 100  # one completion, USAGE of the script
    assert record.usage["turn"].input_tokens == 200  # the turn's two model calls


@pytest.mark.usefixtures("no_lash_env")
def test_reentrant_operation_is_refused_and_the_view_joins(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """A tool calling its own session's set_tool_membership gets a SessionError at once, naming
    the session, the operation and the tool (the model reads it); the same change through the
    tool's SessionView joins the turn and is committed with it."""
    reentrancy = examples["reentrancy"]
    # A deadline only as a guard: a re-entrant call that waited would never end.
    result = asyncio.run(asyncio.wait_for(reentrancy.main(), timeout=30))
    assert capsys.readouterr().out == transcript("reentrancy.txt")
    wrong, right = result.tool_calls
    assert wrong.result.is_error
    assert "SessionError: session 'setup': set_tool_membership() called from tool " in (
        wrong.result.content
    )
    assert "'finish_setup_wrong' of plugin 'setup'" in wrong.result.content
    assert (right.result.is_error, right.result.content) == (False, "Setup finished.")
    assert (result.outcome, result.revision) == ("completed", 1)


@pytest.mark.usefixtures("no_lash_env")
def test_hook_checks_results_timeout_and_cancel(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """A str from filter_tool_catalog hides one tool; a str from before_turn fails the turn with
    an error naming plugin, hook, value and what is expected; hook_timeout fails a hung async
    hook; turn.cancel() interrupts it and the turn commits stopped(cancelled)."""
    results, timed_out, cancelled = asyncio.run(examples["hook_checks"].main())
    assert capsys.readouterr().out == transcript("hook_checks.txt")
    assert (results.outcome, results.error_plugin, results.error_hook) == (
        "failed",
        "sloppy",
        "before_turn",
    )
    assert results.error is not None
    assert results.error.startswith("plugin 'sloppy' returned str 'looks fine' from hook")
    assert (timed_out.outcome, timed_out.error_plugin, timed_out.error_hook) == (
        "failed",
        "stuck",
        "before_turn",
    )
    assert (cancelled.outcome, cancelled.reason, cancelled.revision) == (
        "stopped",
        "cancelled",
        1,
    )


@pytest.mark.usefixtures("no_lash_env")
def test_explicit_builtins(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """An allowlist loads exactly what it lists; builtins= adds some or all builtins; a builtin
    left out that provides what the host needs is named in the error."""
    asyncio.run(examples["explicit_builtins"].main())
    out = capsys.readouterr().out
    assert out == transcript("explicit_builtins.txt")
    assert "allowlist:  ['standard', 'scripted', 'notes']\n" in out
    assert "two:        ['notes', 'standard', 'stores']\n" in out
    assert "the builtin plugin 'stores' provides it but is not enabled" in " ".join(out.split())


@pytest.mark.usefixtures("no_lash_env")
def test_renamed_hooks_still_run_with_a_warning(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """materialize_session and session_restored run as prepare_session and session_opened
    (resumed sessions only), each with a DeprecationWarning naming the plugin."""
    log = asyncio.run(examples["renamed_hooks"].main())
    assert capsys.readouterr().out == transcript("renamed_hooks.txt")
    assert log == [
        *("before: preparing 's'", "after: preparing 's'"),
        *("before: preparing 's'", "after: preparing 's'"),
        *("before: 's' was resumed", "after: 's' was resumed"),
    ]


def test_api_page_lists_every_moved_name() -> None:
    """The API page maps every name moved out of ``lash`` to its new home."""
    from lash._facade import MOVED

    page = (DOCS / "api.rst").read_text(encoding="utf-8")
    missing = [
        name
        for name, home in MOVED.items()
        if f"``lash.{name}``" not in page or f"`{home}.{name}`" not in page
    ]
    assert not missing, f"moved names missing from docs/api.rst: {missing}"


def test_codebase_tour_names_every_package() -> None:
    """The codebase tour has a paragraph for every package of lash and names every public face."""
    page = (DOCS / "codebase.rst").read_text(encoding="utf-8")
    packages = sorted(
        f"lash/{p.name}" if p.name.startswith("_") else f"lash.{p.name}"
        for p in (ROOT / "lash").iterdir()
        if (p / "__init__.py").is_file()
    )
    faces = ["lash.store", "lash.testing", "lash.hookspecs", "lash.errors"]
    missing = [name for name in [*packages, *faces] if f"``{name}``" not in page]
    assert not missing, f"packages missing from docs/codebase.rst: {missing}"


@pytest.mark.usefixtures("no_lash_env")
def test_subagents_example(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """A tool's restricted child and a host's child both roll their usage up into the parent,
    as the child sessions page shows."""
    asyncio.run(examples["subagents"].main())
    assert capsys.readouterr().out == transcript("subagents.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_operations_example(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """A host discovers the notes operations, calls the command and the query, gets a field
    error, and drains the turn the command queued, as the operations page shows."""
    asyncio.run(examples["operations"].main())
    assert capsys.readouterr().out == transcript("operations.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_model_options_example(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """The three layers reach the provider merged; the session's layer is committed config."""
    session = asyncio.run(examples["model_options"].main())
    assert session.config.model_options == lash.ModelOptions(temperature=0.7, stop=("###",))
    assert capsys.readouterr().out == transcript("model_options.txt")


@pytest.mark.usefixtures("no_lash_env")
def test_structured_output_example(
    examples: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """A typed answer after one retry; a turn that never answers with the tool fails."""
    result, failed = asyncio.run(examples["structured_output"].main())
    assert result.output == examples["structured_output"].Forecast("Paris", 24, "Sunny")
    assert (failed.outcome, len(failed.output_errors)) == ("failed", 1)
    assert capsys.readouterr().out == transcript("structured_output.txt")
