"""Which plugins load, and old hook names: explicit builtins, disabling for one run, and the
deprecated names that still work for one release.

From ``LashCore``'s and ``HostConfig``'s docstrings and lash/hookspecs.py: an allowlist
(``plugins``) loads only what it lists, unless ``builtins`` adds builtins ("default": all but
opt-in ones; a list: those); a protocol or store that is missing because its builtin is not
enabled is an error naming the builtin to add; ``lash --disable NAME`` and
``LASH_DISABLE_PLUGINS=a,b`` disable plugins for one run. ``materialize_session`` runs as
``prepare_session``, ``session_restored`` as ``session_opened`` for resumed sessions only, and
``register_commands(cli)`` still adds commands, each with a DeprecationWarning naming the plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
from _recorder import Recorder
from click.testing import CliRunner

import lash
from lash._plugins.composition import compose
from lash._plugins.hostconfig import HostConfig
from lash.cli._main import cli
from lash_plugins_builtin import standard, stores

#: The builtins lash installs, and those that are opt-in (loads only when listed).
BUILTINS = {
    "anthropic",
    "compaction",
    "files",
    "mcp",
    "openai",
    "otel",
    "plan",
    "scripted",
    "shell",
    "standard",
    "stores",
    "subagent",
    "tool_output_budget",
}
OPT_IN = {"anthropic", "files", "mcp", "otel", "shell", "subagent"}
LASH = Path(sys.executable).parent / "lash"
ENV = ("LASH_CONFIG", "LASH_PLUGINS", "LASH_DISABLE_PLUGINS", "LASH_DISABLE_PLUGIN_AUTOLOAD")


@pytest.fixture(autouse=True)
def _no_lash_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def write_config(directory: Path, text: str) -> Path:
    path = directory / "lash.toml"
    path.write_text(text, encoding="utf-8")
    return path


def statuses(core: lash.LashCore) -> dict[str, tuple[str, str | None]]:
    return {info.name: (info.status, info.error) for info in core.plugins}


def test_the_builtins_are_the_ones_this_file_expects() -> None:
    """Every builtin is known here (the tests below list them by name)."""
    core = lash.LashCore(plugins=[], builtins="default", store="memory://")
    assert {info.name for info in core.plugins if info.builtin} == BUILTINS


# -- allowlists and builtins ---------------------------------------------------------------------


def test_a_config_allowlist_loads_no_unlisted_builtin(tmp_path: Path) -> None:
    """``plugins = [...]`` in lash.toml loads exactly those, in that order; every other builtin
    is reported as not in the allowlist."""
    path = write_config(tmp_path, 'plugins = ["scripted", "standard", "stores"]\n')

    core = lash.LashCore.from_config(path)

    assert core.plugin_names == ["scripted", "standard", "stores"]
    found = statuses(core)
    for name in BUILTINS - {"scripted", "standard", "stores"}:
        assert found[name] == ("disabled", "not in the `plugins` allowlist"), name


def test_builtins_default_in_the_file_adds_every_builtin_after_the_list(tmp_path: Path) -> None:
    """``builtins = "default"`` next to the allowlist loads the listed plugins first, then every
    builtin that is not opt-in."""
    path = write_config(tmp_path, 'plugins = ["stores", "standard"]\nbuiltins = "default"\n')

    core = lash.LashCore.from_config(path)

    assert core.plugin_names[:2] == ["stores", "standard"]
    assert set(core.plugin_names) == BUILTINS - OPT_IN
    assert statuses(core)["files"][0] == "disabled"


def test_builtins_as_a_list_adds_exactly_those(tmp_path: Path) -> None:
    """``builtins = ["plan"]`` adds that builtin to the allowlist, and no other."""
    path = write_config(tmp_path, 'plugins = ["standard", "stores"]\nbuiltins = ["plan"]\n')

    core = lash.LashCore.from_config(path)

    assert core.plugin_names == ["standard", "stores", "plan"]


def test_a_builtins_entry_that_is_no_builtin_is_reported_with_a_suggestion(tmp_path: Path) -> None:
    """A misspelled name in ``builtins`` fails that entry, naming the builtins."""
    path = write_config(tmp_path, 'plugins = ["standard", "stores"]\nbuiltins = ["plann"]\n')

    core = lash.LashCore.from_config(path)

    status, error = statuses(core)["plann"]
    assert status == "failed"
    assert "not an installed builtin plugin" in (error or "")
    assert "did you mean 'plan'?" in (error or "")


def test_an_explicit_core_loads_exactly_its_plugins() -> None:
    """``LashCore(plugins=[...], builtins=())`` loads the objects given and nothing else."""
    rec = Recorder([])
    core = lash.LashCore(plugins=[standard, stores, rec], builtins=(), store="memory://")

    assert core.plugin_names == ["standard", "stores", "recorder"]
    assert not [i for i in core.plugins if i.status == "loaded" and i.name not in core.plugin_names]


@pytest.mark.anyio
async def test_a_protocol_missing_because_its_builtin_is_not_listed_names_it(
    tmp_path: Path,
) -> None:
    """Opening a session without the protocol builtin in the allowlist is ProtocolMissing
    naming the builtin 'standard' and how to enable it."""
    path = write_config(
        tmp_path, 'plugins = ["stores", "scripted"]\nstore = "memory://"\nprovider = "scripted"\n'
    )
    core = lash.LashCore.from_config(path)

    with pytest.raises(lash.ProtocolMissing) as info:
        await core.session("s").open()

    assert (
        "(the builtin plugin 'standard' provides it but is not enabled: add 'standard' to "
        "`plugins`, or remove it from `disable`)"
    ) in str(info.value)


@pytest.mark.parametrize(
    "config",
    [
        'plugins = ["standard", "scripted"]\n',
        'plugins = ["standard", "scripted", "stores"]\ndisable = ["stores"]\n',
    ],
    ids=["not listed", "disabled"],
)
def test_a_store_missing_because_its_builtin_is_not_enabled_names_it(
    config: str, tmp_path: Path
) -> None:
    """A store URL whose scheme only a builtin that is not enabled provides is UnknownStore
    naming the builtin 'stores'."""
    path = write_config(tmp_path, config + f'store = "sqlite:///{tmp_path}/lash.db"\n')
    core = lash.LashCore.from_config(path)

    with pytest.raises(lash.UnknownStore) as info:
        core.store  # noqa: B018 - the store is built on first use

    assert "no plugin provides a store for 'sqlite' URLs" in str(info.value)
    assert "the builtin plugin 'stores' provides it but is not enabled" in str(info.value)


def test_a_missing_store_no_builtin_provides_gets_no_builtin_hint(tmp_path: Path) -> None:
    """A scheme no builtin provides is reported without suggesting a builtin."""
    core = lash.LashCore(plugins=["standard"], builtins=(), store="redis://x")

    with pytest.raises(lash.UnknownStore) as info:
        core.store  # noqa: B018 - the store is built on first use

    assert "builtin" not in str(info.value)


# -- disabling for one run ----------------------------------------------------------------------


def test_lash_disable_plugins_disables_for_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    """LASH_DISABLE_PLUGINS=a,b disables those plugins, even with builtins="default"."""
    monkeypatch.setenv("LASH_DISABLE_PLUGINS", "plan, compaction")

    core = lash.LashCore(plugins=["standard", "stores"], builtins="default", store="memory://")

    assert "plan" not in core.plugin_names and "compaction" not in core.plugin_names
    assert {"standard", "stores", "scripted", "openai"} <= set(core.plugin_names)
    assert statuses(core)["plan"][0] == "disabled"


def cli_statuses(output: str) -> dict[str, str]:
    return {entry["name"]: entry["status"] for entry in json.loads(output)}


def test_lash_disable_on_the_command_line_disables_for_that_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``lash --disable NAME`` (repeatable) disables plugins for that invocation only."""
    write_config(tmp_path, 'plugins = ["standard", "stores", "plan", "compaction"]\n')
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)

    disabled = runner.invoke(
        cli, ["--disable", "plan", "--disable", "compaction", "plugins", "--all", "--json"]
    )
    plain = runner.invoke(cli, ["plugins", "--all", "--json"])

    assert disabled.exit_code == 0, disabled.output
    found = cli_statuses(disabled.stdout)
    assert (found["plan"], found["compaction"], found["standard"]) == (
        "disabled",
        "disabled",
        "loaded",
    )
    assert cli_statuses(plain.stdout)["plan"] == "loaded"


def test_lash_disable_in_a_real_process_and_the_error_it_leads_to(tmp_path: Path) -> None:
    """In a real ``lash`` process, ``--disable standard`` leaves no protocol: ``lash run``
    exits 2 naming the builtin to enable; without it the same run answers."""
    write_config(
        tmp_path,
        'plugins = ["standard", "stores", "scripted"]\nprovider = "scripted"\n'
        'store = "memory://"\n[options.scripted]\nresponses = [{text = "hello there"}]\n',
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}

    def lash(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(LASH), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    refused = lash("--disable", "standard", "run", "hi")
    answered = lash("run", "hi")

    assert refused.returncode == 2, refused
    assert "the builtin plugin 'standard' provides it but is not enabled" in refused.stderr
    assert refused.stdout == ""
    assert (answered.returncode, answered.stdout) == (0, "hello there\n"), answered


# -- deprecated hook names ----------------------------------------------------------------------


def plugin(name: str, **hooks: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook, function in hooks.items():
        setattr(module, hook, lash.hookimpl(function))
    return module


def build(*plugins: object, **kwargs: Any) -> tuple[lash.LashCore, list[str]]:
    """A core with ``plugins``, and the DeprecationWarnings its build raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        core = lash.LashCore(
            plugins=[standard, stores, Recorder(["a", "b", "c"]), *plugins],
            builtins=(),
            provider="recorder",
            **kwargs,
        )
    return core, [str(w.message) for w in caught if w.category is DeprecationWarning]


@pytest.mark.anyio
async def test_materialize_session_runs_as_prepare_session_with_a_warning(tmp_path: Path) -> None:
    """A plugin implementing materialize_session is warned about by name at load, and its
    implementation runs where prepare_session does, in plugin order, with the same arguments."""
    calls: list[tuple[str, str, bool]] = []

    def old(session: lash.SessionView, is_root: bool) -> None:
        calls.append(("old", session.id, is_root))

    def new(session: lash.SessionView, is_root: bool) -> None:
        calls.append(("new", session.id, is_root))

    core, warned = build(
        plugin("oldstyle", materialize_session=old),
        plugin("newstyle", prepare_session=new),
        store="memory://",
    )

    assert warned == [
        "plugin 'oldstyle' implements hook 'materialize_session', which lash 0.2 renamed "
        "'prepare_session': rename the function (the old name stops working in lash 0.3)"
    ]
    await core.session("s").open()
    assert calls == [("old", "s", True), ("new", "s", True)]
    await core.aclose()


@pytest.mark.anyio
async def test_session_restored_runs_only_for_restored_sessions(tmp_path: Path) -> None:
    """session_restored (deprecated) runs as session_opened for resumed sessions only: not for
    a new session, nor for open_fresh on a stored one."""
    restored: list[str] = []

    def session_restored(session: lash.SessionView) -> None:
        restored.append(session.id)

    core, warned = build(
        plugin("old", session_restored=session_restored),
        store=f"sqlite:///{tmp_path}/lash.db",
    )
    assert len(warned) == 1 and "plugin 'old' implements hook 'session_restored'" in warned[0]

    session = await core.session("s").open()  # new
    await session.turn("one").run()
    await session.close()
    assert restored == []

    resumed = await core.session("s").open()  # restored from the store
    assert restored == ["s"]
    await resumed.close()

    fresh = await core.session("s").open_fresh()  # starts over: not restored
    assert restored == ["s"]
    await fresh.close()
    await core.aclose()


def test_register_commands_with_the_old_cli_argument_still_adds_a_command() -> None:
    """A 0.1 plugin's ``register_commands(cli)`` using ``@cli.command()`` still contributes its
    command, attributed to it, beside a plugin using ``register``."""

    def old_style(cli: click.Group) -> None:
        @cli.command()
        def hello() -> None:
            """Say hello."""

    def new_style(register: Any) -> None:
        register(click.Command("goodbye"))

    composition = compose(
        HostConfig(),
        explicit=[
            plugin("oldcli", register_commands=old_style),
            plugin("newcli", register_commands=new_style),
        ],
        builtins=(),
        isolate=True,
        commands={"run", "plugins"},
    )

    assert {name: c.plugin for name, c in composition.commands.items()} == {
        "hello": "oldcli",
        "goodbye": "newcli",
    }
    assert composition.commands["hello"].command.help == "Say hello."
    assert composition.problems == []
