"""The ``lash plugins`` and ``lash doctor`` commands, end to end, with installed distributions.

Every plugin here is a real distribution, built from source and installed with pip once per module;
each test "installs" a set of them by putting their directories on the path of a ``lash``
subprocess run in a fresh directory (so no config of the checkout is picked up).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pkgs import build_wheels, pip_install, run_lash, write_package
from click.testing import CliRunner, Result
from openai_wire_server import Reply, WireServer, model_list

from lash.cli import cli

GOOD = '''
"""A well-behaved plugin: one typed tool, and options with a secret."""
import attrs
import lash


@attrs.frozen
class Limits:
    max_calls: int = 10


@attrs.frozen
class Options:
    api_key: str = lash.option("sk-good-default-secret", secret=True, help="The API key.")
    endpoint: str = "https://api.invalid/v1"
    retries: int = 3
    limits: Limits = attrs.field(factory=Limits)


lash_plugin = lash.PluginMeta(options=Options)


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@lash.hookimpl
def register_tools(register, options):
    register(add)
'''

BOOM = """
print("lash-boom is starting up")  # output of a plugin must not corrupt `--json`
raise RuntimeError("boom: cannot initialise")
"""

TYPO = """
import lash


@lash.hookimpl
def register_tool(register):
    pass
"""

CYCLE_A = """
import lash

lash_plugin = lash.PluginMeta(before=("cycle_b",))
"""

CYCLE_B = """
import lash

lash_plugin = lash.PluginMeta(before=("cycle_a",))
"""

GREETER = """
import click
import lash


@lash.hookimpl
def register_commands(cli):
    @cli.command("hello")
    @click.option("--name", default="world")
    def hello(name):
        \"\"\"Say hello.\"\"\"
        click.echo(f"hello, {name}!")
"""

CLASH = """
import click
import lash


@lash.hookimpl
def register_commands(cli):
    @cli.command("plugins")
    def plugins():
        \"\"\"Try to replace the builtin command.\"\"\"
        click.echo("the clash plugin took over")
"""

BADCMD = """
import lash


@lash.hookimpl
def register_commands(cli):
    raise ValueError("no commands today")
"""

EXITER = """
import sys

sys.exit(3)
"""

FAKE_BUILTIN = """
import lash


def echo(text: str) -> str:
    \"\"\"Return the text.\"\"\"
    return text


@lash.hookimpl
def register_tools(register):
    register(echo)
"""


#: The test distributions: key -> (distribution name, version, {plugin name: module source}).
#: Each plugin is the module ``lash_<plugin name>``, declared under its name in ``lash.plugins``.
DISTRIBUTIONS: dict[str, tuple[str, str, dict[str, str]]] = {
    "good": ("lash-good", "1.2.3", {"good": GOOD}),
    "boom": ("lash-boom", "0.1.0", {"boom": BOOM}),
    "typo": ("lash-typo", "0.1.0", {"typo": TYPO}),
    "cycle": ("lash-cycle", "0.1.0", {"cycle_a": CYCLE_A, "cycle_b": CYCLE_B}),
    "greeter": ("lash-greeter", "0.1.0", {"greeter": GREETER}),
    "clash": ("lash-clash", "0.1.0", {"clash": CLASH}),
    "badcmd": ("lash-badcmd", "0.1.0", {"badcmd": BADCMD}),
    "exiter": ("lash-exiter", "0.1.0", {"exiter": EXITER}),
    # Named "lash-sdk": its plugins are builtins by definition. It shadows the real distribution
    # only in the subprocesses that put it on their path.
    "fake_lash": ("lash-sdk", "0.0.0", {"fakebuiltin": FAKE_BUILTIN}),
}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every test distribution, installed once per module, each into its own directory."""
    root = tmp_path_factory.mktemp("dists")
    sources = [
        write_package(
            root / "src",
            name,
            version=version,
            plugins={plugin: f"lash_{plugin}" for plugin in plugins},
            modules={f"lash_{plugin}": source for plugin, source in plugins.items()},
        )
        for name, version, plugins in DISTRIBUTIONS.values()
    ]
    wheels = dict(zip(DISTRIBUTIONS, build_wheels(sources, root / "wheels"), strict=True))
    # The two plugins with command problems are always installed together: one pip run less.
    groups = {key: [wheel] for key, wheel in wheels.items() if key not in ("clash", "badcmd")}
    groups["rude"] = [wheels["clash"], wheels["badcmd"]]
    return pip_install(groups, root / "site")


#: The smallest healthy config: with two providers registered (the builtins `openai` and
#: `scripted`), `lash doctor` wants one chosen.
HEALTHY = 'provider = "scripted"\n'


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory with a healthy lash.toml, so no config further up is discovered."""
    (tmp_path / "lash.toml").write_text(HEALTHY, encoding="utf-8")
    return tmp_path


def listing(*args: str, cwd: Path, installed: list[Path], **env: str) -> dict[str, dict[str, Any]]:
    """``lash plugins --json ARGS``, asserted successful, by plugin name (in output order)."""
    result = run_lash("plugins", "--json", *args, cwd=cwd, installed=installed, env=env)
    assert result.returncode == 0, result.stderr
    return {entry["name"]: entry for entry in json.loads(result.stdout)}


def lines_with(text: str, *needles: str) -> list[str]:
    """The lines of ``text`` containing every needle."""
    return [line for line in text.splitlines() if all(n in line for n in needles)]


def assert_no_traceback(result: Any) -> None:
    assert "Traceback" not in result.stdout + result.stderr


# -- discovery -------------------------------------------------------------------------------


def test_installed_distribution_is_listed_with_hooks_tools_and_options(
    dist: dict[str, Path], workdir: Path
) -> None:
    """An installed plugin is listed with its distribution, hooks, tool and redacted options."""
    result = run_lash("plugins", "--json", cwd=workdir, installed=[dist["good"]])
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [e["name"] for e in entries] == ["good"]
    good = entries[0]
    assert good["distribution"] == "lash-good"
    assert good["version"] == "1.2.3"
    assert good["hooks"] == ["register_tools"]
    assert good["status"] == "loaded"
    assert good["error"] is None
    assert good["tools"] == ["add"]
    options = good["options"]
    assert options["api_key"]["secret"] is True
    assert options["api_key"]["default"] == "***"
    assert options["api_key"]["value"] == "***"
    assert options["endpoint"]["default"] == "https://api.invalid/v1"
    assert options["retries"]["type"] == "int"
    assert options["retries"]["default"] == 3
    assert options["limits"]["default"] == {"max_calls": 10}
    assert "sk-good-default-secret" not in result.stdout

    text = run_lash("plugins", cwd=workdir, installed=[dist["good"]])
    assert text.returncode == 0
    assert "good 1.2.3 (lash-good): loaded" in text.stdout
    assert "tools: add" in text.stdout
    assert "sk-good-default-secret" not in text.stdout

    doctor = run_lash("doctor", cwd=workdir, installed=[dist["good"]])
    assert doctor.returncode == 0, doctor.stdout
    assert doctor.stdout.splitlines()[-1] == "healthy"


def test_python_dash_m_lash_is_the_lash_command(dist: dict[str, Path], workdir: Path) -> None:
    """``python -m lash`` runs the same command as the console script, with the same name in
    its usage and version lines, and the same plugins."""
    module = [sys.executable, "-m", "lash"]
    for args in (("--version",), ("--help",), ("plugins", "--json")):
        script = run_lash(*args, cwd=workdir, installed=[dist["good"]])
        by_module = run_lash(*args, cwd=workdir, installed=[dist["good"]], executable=module)
        assert by_module.returncode == script.returncode == 0, by_module.stderr
        assert by_module.stdout == script.stdout
    version = run_lash("--version", cwd=workdir, executable=module).stdout
    assert version == f"lash, version {importlib.metadata.version('lash-sdk')}\n"
    usage = run_lash("--help", cwd=workdir, executable=module).stdout.splitlines()[0]
    assert usage.startswith("Usage: lash [OPTIONS] COMMAND")


# -- broken plugins --------------------------------------------------------------------------


def test_plugin_failing_at_import_is_listed_as_failed(dist: dict[str, Path], workdir: Path) -> None:
    """A plugin raising at import is listed as failed with its exception; the others still load."""
    installed = [dist["good"], dist["boom"]]
    entries = listing(cwd=workdir, installed=installed)
    assert entries["good"]["status"] == "loaded"
    boom = entries["boom"]
    assert boom["status"] == "failed"
    assert boom["distribution"] == "lash-boom"
    assert boom["version"] == "0.1.0"
    assert "RuntimeError" in boom["error"]
    assert "boom: cannot initialise" in boom["error"]

    doctor = run_lash("doctor", cwd=workdir, installed=installed)
    assert doctor.returncode != 0
    assert lines_with(doctor.stdout, "boom", "RuntimeError")
    assert_no_traceback(doctor)


def test_misspelled_hook_fails_the_plugin_with_a_suggestion(
    dist: dict[str, Path], workdir: Path
) -> None:
    """A misspelled hook fails the plugin; the error names the hook and suggests the right one."""
    typo = listing(cwd=workdir, installed=[dist["typo"]])["typo"]
    assert typo["status"] == "failed"
    assert "'register_tool'" in typo["error"]
    assert "'register_tools'" in typo["error"]

    doctor = run_lash("doctor", cwd=workdir, installed=[dist["typo"]])
    assert doctor.returncode != 0
    assert lines_with(doctor.stdout, "typo", "'register_tool'", "'register_tools'")


def test_ordering_cycle_fails_both_plugins(dist: dict[str, Path], workdir: Path) -> None:
    """Two plugins each declaring `before` the other both fail, each error naming both."""
    entries = listing(cwd=workdir, installed=[dist["cycle"]])
    for name in ("cycle_a", "cycle_b"):
        assert entries[name]["status"] == "failed"
        assert entries[name]["distribution"] == "lash-cycle"
        assert "cycle_a" in entries[name]["error"]
        assert "cycle_b" in entries[name]["error"]
    assert run_lash("doctor", cwd=workdir, installed=[dist["cycle"]]).returncode != 0


# -- configuration ---------------------------------------------------------------------------


def test_bad_option_values_are_reported_per_field(dist: dict[str, Path], workdir: Path) -> None:
    """Bad option values: one doctor line per field with plugin, dotted path, type and value."""
    (workdir / "lash.toml").write_text(
        '[options.good]\nretries = "three"\napi_key = 12345\n\n'
        "[options.good.limits]\nmax_calls = 2.5\n",
        encoding="utf-8",
    )
    doctor = run_lash("doctor", cwd=workdir, installed=[dist["good"]])
    assert doctor.returncode != 0
    assert lines_with(doctor.stdout, "good", "options.good.retries", "int", "'three'")
    assert lines_with(doctor.stdout, "good", "options.good.limits.max_calls", "int", "2.5")
    assert lines_with(doctor.stdout, "good", "options.good.api_key", "str")
    assert "12345" not in doctor.stdout  # a secret field's value is not shown, even when wrong
    assert_no_traceback(doctor)

    good = listing(cwd=workdir, installed=[dist["good"]])["good"]
    assert good["status"] == "failed"
    assert "options.good.retries" in good["error"]


def test_config_errors_are_readable(dist: dict[str, Path], workdir: Path) -> None:
    """Malformed TOML (file:line:column) and unknown keys are reported without a traceback."""
    config = workdir / "lash.toml"
    config.write_text("strict = false\nmodel = gpt\n", encoding="utf-8")
    doctor = run_lash("doctor", cwd=workdir, installed=[dist["good"]])
    assert doctor.returncode != 0
    assert f"{config}:2:9" in doctor.stdout
    assert_no_traceback(doctor)
    listed = run_lash("plugins", cwd=workdir, installed=[dist["good"]])
    assert listed.returncode != 0
    assert f"{config}:2:9" in listed.stderr
    assert_no_traceback(listed)

    config.write_text('colour = "blue"\n', encoding="utf-8")
    doctor = run_lash("doctor", cwd=workdir, installed=[dist["good"]])
    assert doctor.returncode != 0
    assert lines_with(doctor.stdout, "colour", "unknown key")
    assert_no_traceback(doctor)


def test_env_references_are_resolved_from_the_environment(
    dist: dict[str, Path], workdir: Path
) -> None:
    """`$env:NAME` option values come from the environment; an unset one is a doctor error."""
    (workdir / "lash.toml").write_text(
        HEALTHY + "[options.good]\n"
        'endpoint = "$env:GOOD_ENDPOINT"\n'
        'retries = "$env:GOOD_RETRIES"\n'
        'api_key = "$env:GOOD_KEY"\n',
        encoding="utf-8",
    )
    env = {
        "GOOD_ENDPOINT": "https://from-env.invalid",
        "GOOD_RETRIES": "7",
        "GOOD_KEY": "sk-from-env-secret",
    }
    result = run_lash("plugins", "--json", cwd=workdir, installed=[dist["good"]], env=env)
    assert result.returncode == 0, result.stderr
    good = json.loads(result.stdout)[0]
    assert good["status"] == "loaded"
    assert good["options"]["endpoint"]["value"] == "https://from-env.invalid"
    assert good["options"]["retries"]["value"] == 7
    assert good["options"]["api_key"]["value"] == "***"
    assert "sk-from-env-secret" not in result.stdout
    assert run_lash("doctor", cwd=workdir, installed=[dist["good"]], env=env).returncode == 0

    del env["GOOD_KEY"]
    doctor = run_lash("doctor", cwd=workdir, installed=[dist["good"]], env=env)
    assert doctor.returncode != 0
    assert lines_with(doctor.stdout, "options.good.api_key", "GOOD_KEY", "not set")
    assert_no_traceback(doctor)


def test_config_file_is_found_from_flag_env_or_cwd(dist: dict[str, Path], tmp_path: Path) -> None:
    """--config wins over $LASH_CONFIG, which wins over the nearest [tool.lash] upward."""
    project = tmp_path / "project"
    cwd = project / "src" / "deep"
    cwd.mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.lash]\ndisable = ["good"]\n', encoding="utf-8"
    )
    other = tmp_path / "other.toml"
    other.write_text("", encoding="utf-8")
    installed = [dist["good"]]

    assert listing(cwd=cwd, installed=installed)["good"]["status"] == "disabled"
    doctor = run_lash("doctor", cwd=cwd, installed=installed)
    assert str(project / "pyproject.toml") in doctor.stdout

    flagged = run_lash("--config", str(other), "plugins", "--json", cwd=cwd, installed=installed)
    assert json.loads(flagged.stdout)[0]["status"] == "loaded"
    from_env = listing(cwd=cwd, installed=installed, LASH_CONFIG=str(other))
    assert from_env["good"]["status"] == "loaded"
    both = run_lash(
        "--config",
        str(project / "pyproject.toml"),
        "plugins",
        "--json",
        cwd=cwd,
        installed=installed,
        env={"LASH_CONFIG": str(other)},
    )
    assert json.loads(both.stdout)[0]["status"] == "disabled"

    missing = run_lash("--config", str(tmp_path / "nope.toml"), "doctor", cwd=cwd)
    assert missing.returncode != 0
    assert lines_with(missing.stdout, "nope.toml", "not found")


# -- filters and enablement ------------------------------------------------------------------


def test_hook_filter_keeps_the_plugins_implementing_it(
    dist: dict[str, Path], workdir: Path
) -> None:
    """--hook keeps the plugins implementing that hook; an unknown hook name is a usage error."""
    installed = [dist["good"], dist["greeter"]]
    assert list(listing("--hook", "register_tools", cwd=workdir, installed=installed)) == ["good"]
    assert list(listing("--hook", "register_commands", cwd=workdir, installed=installed)) == [
        "greeter"
    ]
    assert listing("--hook", "session_closed", cwd=workdir, installed=installed) == {}
    wrong = run_lash("plugins", "--hook", "register_tool", cwd=workdir, installed=installed)
    assert wrong.returncode == 2
    assert "register_tools" in wrong.stderr


def test_all_includes_the_builtins(dist: dict[str, Path], workdir: Path) -> None:
    """Plugins of the distribution "lash-sdk" are builtins, listed only with --all."""
    installed = [dist["good"], dist["fake_lash"]]
    assert list(listing(cwd=workdir, installed=installed)) == ["good"]
    everything = listing("--all", cwd=workdir, installed=installed)
    assert set(everything) == {"good", "fakebuiltin"}
    builtin = everything["fakebuiltin"]
    assert builtin["builtin"] is True
    assert builtin["distribution"] == "lash-sdk"
    assert builtin["status"] == "loaded"
    assert builtin["tools"] == ["echo"]
    assert everything["good"]["builtin"] is False

    # The real builtins (the `lash.plugins` entry points of the installed lash) behave the same.
    real = {
        ep.name
        for ep in importlib.metadata.distribution("lash-sdk").entry_points
        if ep.group == "lash.plugins"
    }
    assert real.isdisjoint(listing(cwd=workdir, installed=[dist["good"]]))
    assert real <= set(listing("--all", cwd=workdir, installed=[dist["good"]]))


def test_disable_allowlist_and_environment(dist: dict[str, Path], workdir: Path) -> None:
    """`disable`, the `plugins` allowlist, LASH_PLUGINS and autoload off decide what loads."""
    installed = [dist["good"], dist["greeter"], dist["boom"]]
    config = workdir / "lash.toml"

    config.write_text(HEALTHY + 'disable = ["boom"]\n', encoding="utf-8")
    entries = listing(cwd=workdir, installed=installed)
    assert {n: e["status"] for n, e in entries.items()} == {
        "good": "loaded",
        "greeter": "loaded",
        "boom": "disabled",
    }
    assert run_lash("doctor", cwd=workdir, installed=installed).returncode == 0

    config.write_text('plugins = ["greeter", "good"]\n', encoding="utf-8")
    entries = listing(cwd=workdir, installed=installed)
    assert [n for n, e in entries.items() if e["status"] == "loaded"] == ["greeter", "good"]
    assert entries["boom"]["status"] == "disabled"
    assert "RuntimeError" not in (entries["boom"]["error"] or "")  # not even imported

    entries = listing(cwd=workdir, installed=installed, LASH_PLUGINS="good")
    assert entries["good"]["status"] == "loaded"
    assert entries["greeter"]["status"] == "disabled"

    config.write_text("", encoding="utf-8")
    entries = listing(cwd=workdir, installed=installed, LASH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert {e["status"] for e in entries.values()} == {"disabled"}
    entries = listing(
        cwd=workdir, installed=installed, LASH_DISABLE_PLUGIN_AUTOLOAD="1", LASH_PLUGINS="greeter"
    )
    assert [n for n, e in entries.items() if e["status"] == "loaded"] == ["greeter"]

    config.write_text('plugins = ["good", "nope"]\n', encoding="utf-8")
    doctor = run_lash("doctor", cwd=workdir, installed=installed)
    assert doctor.returncode != 0
    assert lines_with(doctor.stdout, "'nope'")


def test_strict_mode_is_reported_and_a_host_refuses(dist: dict[str, Path], workdir: Path) -> None:
    """With LASH_STRICT_PLUGINS=1 listing still works, doctor reports it and a host refuses."""
    installed = [dist["good"], dist["boom"]]
    strict = {"LASH_STRICT_PLUGINS": "1"}
    entries = listing(cwd=workdir, installed=installed, **strict)
    assert entries["boom"]["status"] == "failed"
    assert entries["good"]["status"] == "loaded"

    doctor = run_lash("doctor", cwd=workdir, installed=installed, env=strict)
    assert doctor.returncode != 0
    assert "strict: on" in doctor.stdout
    assert lines_with(doctor.stdout, "strict mode is on", "refuse")

    host = [sys.executable, "-c", "import lash; lash.LashCore.from_config()"]
    refused = run_lash(cwd=workdir, installed=installed, env=strict, executable=host)
    assert refused.returncode != 0
    assert "PluginLoadError" in refused.stderr
    assert "boom" in refused.stderr
    lenient = run_lash(cwd=workdir, installed=installed, executable=host)
    assert lenient.returncode == 0, lenient.stderr

    assert run_lash("doctor", cwd=workdir, installed=[dist["good"]], env=strict).returncode == 0


# -- plugin commands -------------------------------------------------------------------------


def test_plugin_commands_are_added_and_clashes_skipped(
    dist: dict[str, Path], workdir: Path
) -> None:
    """A plugin adds a command; one clashing with `plugins` is skipped with a warning."""
    installed = [dist["greeter"], dist["rude"], dist["boom"]]
    hello = run_lash("hello", "--name", "lash", cwd=workdir, installed=installed)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == "hello, lash!\n"
    assert lines_with(hello.stderr, "warning", "clash", "'plugins'")
    assert lines_with(hello.stderr, "warning", "badcmd", "no commands today")

    usage = run_lash("--help", cwd=workdir, installed=installed)
    assert usage.returncode == 0
    assert lines_with(usage.stdout, "hello", "Say hello.")

    # The builtin command runs, not the clashing one, and it lists every plugin.
    entries = listing(cwd=workdir, installed=installed)
    assert entries["greeter"]["commands"] == ["hello"]
    assert entries["clash"]["status"] == "loaded"
    assert entries["clash"]["commands"] == []
    assert any("'plugins'" in w for w in entries["clash"]["warnings"])
    assert entries["boom"]["status"] == "failed"

    doctor = run_lash("doctor", cwd=workdir, installed=installed)
    assert doctor.returncode != 0
    assert lines_with(doctor.stdout, "clash", "'plugins'", "skipped")
    assert lines_with(doctor.stdout, "badcmd", "register_commands", "no commands today")
    assert_no_traceback(doctor)

    alone = run_lash("doctor", cwd=workdir, installed=[dist["greeter"]])
    assert alone.returncode == 0, alone.stdout


def test_plugin_calling_sys_exit_does_not_end_lash_silently(
    dist: dict[str, Path], workdir: Path
) -> None:
    """A plugin calling sys.exit() at import is recorded as failed, with where it exited; the
    other plugins and the builtin commands keep working."""
    installed = [dist["good"], dist["exiter"]]
    listing = run_lash("plugins", cwd=workdir, installed=installed)
    assert listing.returncode == 0, listing.stderr
    assert lines_with(listing.stdout, "exiter", "failed")
    assert lines_with(listing.stdout, "SystemExit", "lash_exiter.py")
    assert lines_with(listing.stdout, "good", "loaded")
    assert_no_traceback(listing)
    doctor = run_lash("doctor", cwd=workdir, installed=installed)
    assert doctor.returncode == 1
    assert lines_with(doctor.stdout + doctor.stderr, "SystemExit", "lash_exiter.py")
    assert_no_traceback(doctor)
    usage = run_lash("--help", cwd=workdir, installed=installed)
    assert usage.returncode == 0
    assert lines_with(usage.stdout, "doctor")


# -- doctor and the provider (in-process) ------------------------------------------------------


@pytest.fixture
def host_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs read LASH_* and OPENAI_*: none leaks in from outside."""
    for name in list(os.environ):
        if name.startswith(("LASH_", "OPENAI_")):
            monkeypatch.delenv(name)


def doctor(config: Path, *args: str, **env: str) -> Result:
    """``lash --config CONFIG doctor ARGS`` in-process, with ``env`` set."""
    return CliRunner().invoke(
        cli, ["--config", str(config), "doctor", *args], env=env, catch_exceptions=False
    )


@pytest.mark.usefixtures("host_env")
def test_doctor_reports_that_no_provider_is_chosen(tmp_path: Path) -> None:
    """With several providers registered and none configured, doctor reports it as a problem
    naming them; one registered provider, or a configured one, is healthy."""
    config = tmp_path / "lash.toml"
    config.write_text("autoload = false\n", encoding="utf-8")
    unchosen = doctor(config)
    assert unchosen.exit_code == 1
    assert lines_with(
        unchosen.stdout, "- no provider configured", "2 are registered (openai, scripted)"
    )
    assert lines_with(unchosen.stdout, "no provider configured", str(config), "--provider")

    config.write_text('autoload = false\ndisable = ["openai"]\n', encoding="utf-8")
    assert doctor(config).stdout.splitlines()[-1] == "healthy"
    config.write_text('autoload = false\nprovider = "openai"\n', encoding="utf-8")
    assert doctor(config).stdout.splitlines()[-1] == "healthy"
    config.write_text('autoload = false\ndisable = ["openai", "scripted"]\n', encoding="utf-8")
    none = doctor(config)
    assert none.exit_code == 0, none.stdout
    assert lines_with(none.stdout, "note:", "no enabled plugin registers a provider")


@pytest.fixture
def openai_host(tmp_path: Path, host_env: None) -> Path:
    """A config using the openai provider with model gpt-test."""
    config = tmp_path / "lash.toml"
    config.write_text(
        'autoload = false\nprovider = "openai"\nmodel = "gpt-test"\n', encoding="utf-8"
    )
    return config


@pytest.fixture
def server() -> Iterator[WireServer]:
    with WireServer() as wire:
        yield wire


def test_doctor_online_confirms_url_key_and_model(openai_host: Path, server: WireServer) -> None:
    """`doctor --online` asks the server for its models once, with the key, and reports that the
    URL, the key and the model work; without --online nothing is sent."""
    server.push(model_list("gpt-other", "gpt-test"))
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-doctor-secret"}
    assert doctor(openai_host, **env).exit_code == 0
    assert server.requests == []
    result = doctor(openai_host, "--online", **env)
    assert result.exit_code == 0, result.stdout
    assert lines_with(
        result.stdout,
        "online: provider 'openai', model 'gpt-test': ok",
        server.base_url,
        "accepts the API key",
    )
    assert result.stdout.splitlines()[-1] == "healthy"
    [request] = server.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["authorization"] == "Bearer sk-doctor-secret"
    assert "sk-doctor-secret" not in result.output


def test_doctor_online_diagnoses_each_failure(openai_host: Path, server: WireServer) -> None:
    """A refused connection, a refused key, an unknown model and a wrong base URL each get
    their own diagnosis, exit 1, and the key is never echoed (even when the server does)."""
    key = "sk-wrong-key-123"
    closed = socket.socket()  # bound, never listening: connecting to it is refused
    closed.bind(("127.0.0.1", 0))
    with closed:
        refused_url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        refused = doctor(openai_host, "--online", OPENAI_BASE_URL=refused_url, OPENAI_API_KEY=key)
    assert lines_with(refused.stdout, "- online check:", f"cannot reach {refused_url}/models")
    assert lines_with(refused.stdout, "Connection refused", "check that the server is running")

    server.push(
        Reply(status=401, body={"error": {"message": f"Incorrect API key provided: {key}"}}),
        model_list("gpt-other", "gpt-mini"),
    )
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": key}
    unauthorized = doctor(openai_host, "--online", **env)
    assert lines_with(unauthorized.stdout, "- online check:", "HTTP 401", "OPENAI_API_KEY")
    unknown = doctor(openai_host, "--online", **env)
    assert lines_with(
        unknown.stdout, "- online check:", "does not serve model 'gpt-test'", "gpt-mini, gpt-other"
    )
    server.push(Reply(status=404, body={"detail": "Not Found"}))
    wrong_url = doctor(openai_host, "--online", **{**env, "OPENAI_BASE_URL": server.base_url[:-3]})
    assert lines_with(wrong_url.stdout, "- online check:", "HTTP 404", "no OpenAI-compatible API")

    for result in (refused, unauthorized, unknown, wrong_url):
        assert result.exit_code == 1
        assert lines_with(result.stdout, "online: provider 'openai', model 'gpt-test': FAILED")
        assert key not in result.output
        assert_no_traceback(result)


def test_doctor_online_names_the_default_model_and_skips_what_it_cannot_check(
    tmp_path: Path, server: WireServer, host_env: None
) -> None:
    """Without a configured model doctor says which one a turn would ask for; a provider with
    no check method (scripted) is not checked and not a problem."""
    config = tmp_path / "lash.toml"
    config.write_text('autoload = false\nprovider = "openai"\n', encoding="utf-8")
    server.push(model_list("default"))
    result = doctor(config, "--online", OPENAI_BASE_URL=server.base_url)
    assert result.exit_code == 0, result.stdout
    assert lines_with(
        result.stdout, "model 'default' (no model configured: the default): ok", "needs no API key"
    )

    config.write_text('autoload = false\nprovider = "scripted"\n', encoding="utf-8")
    scripted = doctor(config, "--online")
    assert scripted.exit_code == 0, scripted.stdout
    assert lines_with(scripted.stdout, "provider 'scripted'", "not checked", "no check method")
