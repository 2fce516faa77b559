"""The plugin template, end to end: rendered for real (cookiecutter and ``lash new-plugin``),
installed with pip, its own tests run, and the ``lash`` command line sees the plugin.

The generated packages are installed into target directories put on ``PYTHONPATH`` of the
subprocesses, as ``_pkgs`` does for the CLI tests; nothing is installed into the test environment.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs
import pytest
from _pkgs import LASH, build_wheels, normalize, pythonpath, write_package

from lash.cli._new_plugin import template_dir

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "plugin_template"
TUTORIAL = ROOT / "docs" / "first_plugin.rst"

#: What `lash new-plugin --no-input name=hello` generates, relative to the project directory.
HELLO_FILES = [
    ".github/workflows/ci.yml",
    ".gitignore",
    "README.md",
    "pyproject.toml",
    "src/lash_hello/__init__.py",
    "src/lash_hello/py.typed",
    "tests/test_plugin.py",
]


def files_under(root: Path) -> list[str]:
    """Every file under ``root``, as sorted POSIX paths relative to it."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def clean_env(work: Path, *, path: Sequence[Path] = ()) -> dict[str, str]:
    """A subprocess environment: no LASH_*/PYTEST_* variables, ``path`` as PYTHONPATH (and the
    test environment's own third-party plugins hidden, see ``_pkgs.pythonpath``)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LASH_", "PYTEST_", "COOKIECUTTER")) and key != "PYTHONPATH"
    }
    if search_path := pythonpath(*path):
        env["PYTHONPATH"] = search_path
    # Not the user's ~/.cookiecutterrc (its defaults would change the inputs), no replay in $HOME.
    env["COOKIECUTTER_CONFIG"] = str(cookiecutter_config(work))
    return env


def other_env(work: Path) -> dict[str, str]:
    """``clean_env`` for the Python of another environment: nothing is added to its path (the
    directory hiding this environment's plugins would hide that environment's own)."""
    return {key: value for key, value in clean_env(work).items() if key != "PYTHONPATH"}


def cookiecutter_config(work: Path) -> Path:
    """A cookiecutter user config under ``work``: replays and clones never land in ``$HOME``."""
    config = work / "cookiecutter.yaml"
    if not config.exists():
        work.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f"replay_dir: {work / 'cc-replay'}\ncookiecutters_dir: {work / 'cc-clones'}\n",
            encoding="utf-8",
        )
    return config


def run(
    *command: str | Path,
    cwd: Path,
    env: Mapping[str, str],
    stdin: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` and capture its output (text)."""
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=dict(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pip_install(project: Path, target: Path, env: Mapping[str, str]) -> None:
    """Install ``project`` (a source tree) into ``target`` with this environment's pip."""
    proc = run(
        *(sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"),
        *("--no-index", "--no-cache-dir", "--disable-pip-version-check", "--quiet"),
        *("--target", target, project),
        cwd=project.parent,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def render(output_dir: Path, **inputs: str) -> Path:
    """Render the template with the cookiecutter API (no prompts); return the project dir."""
    from cookiecutter.main import cookiecutter

    return Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context=inputs,
            output_dir=str(output_dir),
            config_file=str(cookiecutter_config(output_dir)),
        )
    )


@attrs.frozen
class Flow:
    """`lash new-plugin`, `pip install` and `pytest` run as a plugin author would, timed."""

    work: Path
    project: Path
    site: Path
    generate: subprocess.CompletedProcess[str]
    #: The files `lash new-plugin` wrote (pip then builds in the tree, adding build/ and more).
    generated: list[str]
    tests: subprocess.CompletedProcess[str]
    seconds: Mapping[str, float]


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """The author's flow for `name=hello`, each step timed: generate, install, test."""
    work = tmp_path_factory.mktemp("author")
    (work / "lash.toml").write_text("", encoding="utf-8")  # no config further up is found
    site = work / "site"
    env = clean_env(work)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    generate = run(LASH, "new-plugin", "--no-input", "name=hello", cwd=work, env=env)
    seconds["lash new-plugin"] = time.perf_counter() - start
    assert generate.returncode == 0, generate.stderr
    project = work / "lash-hello"
    generated = files_under(project)

    start = time.perf_counter()
    pip_install(project, site, env)
    seconds["pip install"] = time.perf_counter() - start

    start = time.perf_counter()
    tests = run(
        *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", project),
        cwd=work,
        env=clean_env(work, path=[site]),
    )
    seconds["pytest"] = time.perf_counter() - start
    return Flow(work, project, site, generate, generated, tests, seconds)


# -- the author's flow -------------------------------------------------------------------------


def test_new_plugin_generates_the_package(hello: Flow) -> None:
    """`lash new-plugin --no-input name=hello` writes lash-hello/ with every file of the kit."""
    assert hello.generated == HELLO_FILES
    assert "Created lash-hello. Next:" in hello.generate.stdout
    pyproject = tomllib.loads((hello.project / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    assert project["name"] == "lash-hello"
    assert project["entry-points"]["lash.plugins"] == {"hello": "lash_hello"}
    assert project["dependencies"] == ["lash-sdk>=0.1"]  # never the index's unrelated "lash"
    assert "pytest>=8.0" in project["optional-dependencies"]["test"]
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    # The workflow is copied as it is: GitHub, not cookiecutter, fills in ${{ ... }}.
    workflow = (hello.project / ".github/workflows/ci.yml").read_text(encoding="utf-8")
    assert "${{ matrix.python-version }}" in workflow
    assert "pytest" in workflow


def test_the_generated_tests_pass(hello: Flow) -> None:
    """The generated project's own tests pass against the installed package."""
    assert hello.tests.returncode == 0, hello.tests.stdout + hello.tests.stderr
    summary = hello.tests.stdout.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary), summary
    assert not re.search(r"failed|error|skipped|warning", summary), summary


def test_lash_plugins_lists_the_installed_plugin(hello: Flow) -> None:
    """`lash plugins --json` shows the plugin with its distribution, hooks, tool and options."""
    proc = run(
        LASH, "plugins", "--json", cwd=hello.work, env=clean_env(hello.work, path=[hello.site])
    )
    assert proc.returncode == 0, proc.stderr
    entries = {entry["name"]: entry for entry in json.loads(proc.stdout)}
    assert list(entries) == ["hello"]  # builtins are left out without --all
    entry = entries["hello"]
    assert entry["status"] == "loaded", entry["error"]
    assert (entry["distribution"], entry["version"]) == ("lash-hello", "0.1.0")
    assert entry["hooks"] == ["register_process_kinds", "register_tools", "turn_persisted"]
    assert entry["tools"] == ["say_hello", "send_card"]
    assert entry["process_kinds"] == ["hello_card"]
    assert entry["options"]["greeting"]["default"] == "Hello"
    assert entry["options"]["max_name_length"]["type"] == "int"


def test_lash_doctor_is_healthy(hello: Flow) -> None:
    """`lash doctor` in the generated project, as its CI runs it, finds no problem."""
    proc = run(LASH, "doctor", cwd=hello.project, env=clean_env(hello.work, path=[hello.site]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "healthy"


def test_the_flow_takes_under_a_minute(
    hello: Flow, record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Generate + install + test takes well under a minute; the timing is shown and recorded."""
    total = sum(hello.seconds.values())
    steps = ", ".join(f"{step} {s:.1f} s" for step, s in hello.seconds.items())
    record_property("plugin_template_flow_seconds", round(total, 2))
    with capsys.disabled():
        print(f"\nplugin template flow: {total:.1f} s ({steps})")
    assert total < 60, steps


# -- the cookiecutter API ----------------------------------------------------------------------


def test_cookiecutter_renders_what_new_plugin_renders(hello: Flow, tmp_path: Path) -> None:
    """The template rendered with the cookiecutter API equals `lash new-plugin`'s output."""
    project = render(tmp_path, name="hello")
    assert files_under(project) == HELLO_FILES
    compared = filecmp.cmpfiles(project, hello.project, HELLO_FILES, shallow=False)
    assert compared == (HELLO_FILES, [], [])


def test_other_inputs_render_an_installable_tested_plugin(tmp_path: Path) -> None:
    """Another name, and text with quotes and accents, render a package whose tests pass."""
    project = render(
        tmp_path,
        name="weather_report",
        author="Zoë O'Brien",
        description="Reports the weather; doesn't guess.",
    )
    assert project.name == "lash-weather-report"
    assert files_under(project) == [
        f.replace("lash_hello", "lash_weather_report") for f in HELLO_FILES
    ]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["authors"] == [{"name": "Zoë O'Brien"}]
    assert pyproject["project"]["description"] == "Reports the weather; doesn't guess."
    assert pyproject["project"]["entry-points"]["lash.plugins"] == {
        "weather_report": "lash_weather_report"
    }
    for source in project.rglob("*.py"):
        compile(source.read_text(encoding="utf-8"), str(source), "exec")

    site = tmp_path / "site"
    env = clean_env(tmp_path)
    pip_install(project, site, env)
    tests = run(
        *(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", project),
        cwd=tmp_path,
        env=clean_env(tmp_path, path=[site]),
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr


INVALID = [
    ({"name": "Hello"}, "name", "lowercase letters, digits and underscores"),
    ({"name": "9lives"}, "name", "starting with a letter"),
    ({"name": "hello-world"}, "name", "lowercase letters, digits and underscores"),
    ({"name": "lash"}, "name", "'lash' is reserved"),
    ({"name": "plan"}, "name", "a builtin lash plugin already has this name"),
    ({"package_name": "class"}, "package_name", "Python keyword"),
    ({"package_name": "Lash_Hello"}, "package_name", "PEP 8 module name"),
    ({"package_name": "lash-hello"}, "package_name", "PEP 8 module name"),
    ({"package_name": "json"}, "package_name", "standard-library module"),
    ({"package_name": "lash"}, "package_name", "one of lash's own packages"),
    ({"project_slug": "-hello"}, "project_slug", "PEP 508 distribution name"),
    ({"project_slug": "hello world"}, "project_slug", "PEP 508 distribution name"),
    ({"project_slug": "Lash_SDK"}, "project_slug", "lash's own distribution name"),
    ({"project_slug": "LASH"}, "project_slug", "an unrelated project on the package index"),
    ({"author": 'Ada "the Countess"'}, "author", "without double quotes"),
    ({"description": "two\nlines"}, "description", "one line of text"),
]


@pytest.mark.parametrize(("inputs", "key", "allowed"), INVALID)
def test_invalid_inputs_are_refused(
    inputs: dict[str, str],
    key: str,
    allowed: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A bad input is refused in one line (input, value, what is allowed); nothing is made."""
    from cookiecutter.exceptions import FailedHookException

    out = tmp_path / "out"
    with pytest.raises(FailedHookException):
        render(out, **{"name": "hello", **inputs})
    err = capfd.readouterr().err
    assert err.startswith(f"Error: invalid {key}={inputs[key]!r}: ")
    assert allowed in err
    assert err.count("\n") == 1  # one message, one line
    # Nothing but cookiecutter's own config and replay files: no project directory.
    assert sorted(p.name for p in out.iterdir()) == ["cc-replay", "cookiecutter.yaml"]


# -- a fresh environment -----------------------------------------------------------------------

#: What of the checkout a wheel of lash-sdk is not built from (copied away before building, so
#: the build writes nothing into the checkout and sees none of its local state).
NOT_PACKAGED = shutil.ignore_patterns(
    ".*", "build", "dist", "docs", "tests", "benchmarks", "tmp", "*.egg-info", "__pycache__"
)


@pytest.mark.slow
def test_a_fresh_environment_installs_lash_sdk_and_the_plugin(tmp_path: Path) -> None:
    """A lash-sdk wheel and a generated plugin in a fresh venv: the plugin loads, no "lash"."""
    source = tmp_path / "lash-sdk"
    shutil.copytree(ROOT, source, ignore=NOT_PACKAGED)
    plugin = render(tmp_path / "plugins", name="hello")
    wheels = build_wheels([source, plugin], tmp_path / "wheels")
    assert [w.name.split("-")[0] for w in wheels] == ["lash_sdk", "lash_hello"]
    # `lash serve`'s web page is package data: it ships in the wheel, every file of it.
    with zipfile.ZipFile(wheels[0]) as wheel:
        shipped = {name for name in wheel.namelist() if name.startswith("lash/serve/static/")}
    static = ROOT / "lash" / "serve" / "static"
    assert shipped == {f"lash/serve/static/{f.name}" for f in static.iterdir()}, shipped
    assert {"lash/serve/static/index.html", "lash/serve/static/app.js"} <= shipped

    # A virtual environment of the base interpreter: nothing of the test environment is in it.
    venv = tmp_path / "venv"
    env = other_env(tmp_path)
    made = run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    python, lash = venv / "bin" / "python", venv / "bin" / "lash"
    # The plugin's dependency on lash-sdk is met by the local wheel; the rest (pluggy, click...)
    # comes from the package index.
    install = run(
        *(python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", *wheels),
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    listed = run(python, "-m", "pip", "list", "--format=json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    versions = {normalize(d["name"]): d["version"] for d in json.loads(listed.stdout)}
    assert versions["lash-sdk"] == "0.1.0"
    assert versions["lash-hello"] == "0.1.0"
    assert "lash" not in versions  # the index's unrelated "lash" was not pulled in

    work = tmp_path / "host"
    work.mkdir()
    (work / "lash.toml").write_text("", encoding="utf-8")  # no config further up is found
    plugins = run(lash, "plugins", "--all", "--json", cwd=work, env=env)
    assert plugins.returncode == 0, plugins.stderr
    entries = {entry["name"]: entry for entry in json.loads(plugins.stdout)}
    assert entries["hello"]["status"] == "loaded", entries["hello"]["error"]
    assert entries["hello"]["distribution"] == "lash-hello"
    assert entries["hello"]["tools"] == ["say_hello", "send_card"]
    # The builtins are recognized by their distribution's name, as installed from the wheel.
    assert entries["standard"]["builtin"] is True
    assert entries["standard"]["distribution"] == "lash-sdk"
    assert all(e["status"] != "failed" for e in entries.values()), entries
    version = run(lash, "--version", cwd=work, env=env)
    assert (version.returncode, version.stdout) == (0, "lash, version 0.1.0\n"), version.stderr


#: Tests that discover the installed plugins, one or more of each way: cores that autoload,
#: in-process (test_plugins, test_core, test_options) and through the test kit (lash_core);
#: ``lash`` subprocesses given a PYTHONPATH (_pkgs.run_lash, this module's clean_env, the docs'
#: transcripts) and inheriting the environment (lash run, lash sessions). Each of the single tests
#: named failed with a generated plugin installed in the environment, before it was hidden.
DISCOVERING_TESTS = [
    "tests/test_plugins.py",
    "tests/test_core.py",
    "tests/test_options.py",
    "tests/test_cli.py",
    "tests/test_testing_plugin.py::test_lash_core_loads_exactly_the_plugins_and_the_named_builtins",
    "tests/test_plugin_template.py::test_lash_plugins_lists_the_installed_plugin",
    "tests/test_plugin_template.py::test_the_tutorial_shows_what_the_flow_does",
    "tests/test_docs.py::test_lash_plugins_transcript",
    "tests/test_docs.py::test_lash_doctor_transcript",
    "tests/test_cli_run.py::test_run_against_a_real_openai_compatible_server",
    "tests/test_cli_sessions.py::test_show_prints_the_whole_transcript",
]


WEATHER = """
import lash

@lash.hookimpl
def register_tools(register):
    def forecast(city: str) -> str:
        "Tomorrow's weather in a city."
        return "sunny"
    register(forecast)
"""


def environment_with(projects: Sequence[Path], root: Path) -> Path:
    """A virtual environment that has everything of this test environment (lash included) and,
    installed in it as the tutorial installs a plugin (editable), ``projects``; return its Python.

    A ``.pth`` file adds this environment's site-packages after the new one's own, so nothing is
    installed twice and this environment is left as it is.
    """
    env = other_env(root)
    made = run(sys.executable, "-m", "venv", "--without-pip", root / "venv", cwd=root, env=env)
    assert made.returncode == 0, made.stderr
    python = root / "venv" / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    own = run(python, "-c", purelib, cwd=root, env=env)
    parent = sysconfig.get_path("purelib")
    (Path(own.stdout.strip()) / "test_environment.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n", encoding="utf-8"
    )
    # This environment's `lash` console script, run by the new environment's interpreter.
    _, script = LASH.read_text(encoding="utf-8").split("\n", 1)
    (root / "venv" / "bin" / "lash").write_text(f"#!{python}\n{script}", encoding="utf-8")
    (root / "venv" / "bin" / "lash").chmod(0o755)
    install = run(
        *(python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"),
        *("--disable-pip-version-check", "--quiet"),
        *(arg for project in projects for arg in ("--editable", project)),
        cwd=root,
        env=env,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return python


@pytest.mark.slow
def test_a_plugin_installed_where_the_suite_runs_changes_no_test(tmp_path: Path) -> None:
    """With plugins installed in its environment, lash's plugin-discovering tests pass."""
    # The tutorial's plugin, named like the one the template tests install themselves, and one
    # that no test knows.
    hello = render(tmp_path / "author", name="hello")
    weather = write_package(
        tmp_path / "author",
        "lash-weather",
        plugins={"weather": "lash_weather"},
        modules={"lash_weather": WEATHER},
    )
    python = environment_with([hello, weather], tmp_path)
    env = other_env(tmp_path)
    # The plugins are really there: a host in that environment loads them.
    host = tmp_path / "host"
    host.mkdir()
    (host / "lash.toml").write_text("", encoding="utf-8")
    plugins = run(python.parent / "lash", "plugins", "--json", cwd=host, env=env)
    assert plugins.returncode == 0, plugins.stderr
    loaded = [(e["name"], e["status"]) for e in json.loads(plugins.stdout)]
    assert loaded == [("hello", "loaded"), ("weather", "loaded")]
    suite = run(
        *(python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-m", "not slow"),
        *("--basetemp", tmp_path / "inner", *DISCOVERING_TESTS),
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    summary = suite.stdout.strip().splitlines()[-1]
    assert suite.returncode == 0, suite.stdout[-6000:] + suite.stderr
    assert re.search(r"\b\d+ passed\b", summary), summary
    assert not re.search(r"failed|error|skipped", summary), summary


# -- `lash new-plugin` -------------------------------------------------------------------------


def test_new_plugin_refuses_an_invalid_name(tmp_path: Path) -> None:
    """An invalid name ends `lash new-plugin` with status 1 and the hook's one-line message."""
    proc = run(
        LASH, "new-plugin", "--no-input", "name=Hello", cwd=tmp_path, env=clean_env(tmp_path)
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        "Error: invalid name='Hello': use lowercase letters, digits and underscores, "
        "starting with a letter (like hello or my_tool)\n"
    )
    assert proc.stdout == ""
    assert not (tmp_path / "lash-Hello").exists()


def test_new_plugin_refuses_an_existing_directory(tmp_path: Path) -> None:
    """An existing project directory is an error (status 1), and it is left untouched."""
    (tmp_path / "lash-hello").mkdir()
    (tmp_path / "lash-hello" / "mine.txt").write_text("keep me", encoding="utf-8")
    proc = run(
        LASH, "new-plugin", "--no-input", "name=hello", cwd=tmp_path, env=clean_env(tmp_path)
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        "Error: lash-hello already exists; nothing was generated. Remove it, or choose another "
        "project_slug=... or --output-dir\n"
    )
    assert "Traceback" not in proc.stdout
    assert files_under(tmp_path / "lash-hello") == ["mine.txt"]


def test_new_plugin_rejects_unknown_inputs(tmp_path: Path) -> None:
    """A misspelled input is a usage error naming the template's inputs, not silently ignored."""
    env = clean_env(tmp_path)
    proc = run(LASH, "new-plugin", "--no-input", "nmae=hello", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert (
        "unknown input 'nmae'; the template's inputs are: "
        "name, package_name, project_slug, author, description"
    ) in proc.stderr
    proc = run(LASH, "new-plugin", "--no-input", "hello", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert "'hello' is not KEY=VALUE" in proc.stderr
    assert files_under(tmp_path) == ["cookiecutter.yaml"]


def test_new_plugin_prompts_for_the_inputs(tmp_path: Path) -> None:
    """Without --no-input every input is asked for, KEY=VALUE pairs being the defaults."""
    answers = "weather\n\n\nAda Lovelace\n\n"  # empty answers take the (derived) defaults
    proc = run(
        *(LASH, "new-plugin", "--output-dir", "plugins", "author=Someone"),
        cwd=tmp_path,
        env=clean_env(tmp_path),
        stdin=answers,
    )
    assert proc.returncode == 0, proc.stderr
    project = tmp_path / "plugins" / "lash-weather"
    assert "Created plugins/lash-weather. Next:" in proc.stdout
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["entry-points"]["lash.plugins"] == {"weather": "lash_weather"}
    assert pyproject["project"]["authors"] == [{"name": "Ada Lovelace"}]
    assert pyproject["project"]["description"] == "The weather plugin for lash."


@pytest.mark.parametrize("answers", ["", "weather\n"])
def test_new_plugin_without_answers_on_stdin_says_what_to_do(tmp_path: Path, answers: str) -> None:
    """Without a terminal, input that ends before every question is answered (none at all, as
    from /dev/null in CI, or too few lines) is one error naming --no-input, not click's bare
    "Aborted!"; nothing is generated."""
    proc = run(LASH, "new-plugin", cwd=tmp_path, env=clean_env(tmp_path), stdin=answers)
    assert proc.returncode == 1
    assert "Aborted" not in proc.stderr
    assert proc.stderr.startswith("Error: the answers on stdin ended before every input")
    assert "--no-input" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert files_under(tmp_path) == ["cookiecutter.yaml"]


def test_the_template_ships_with_lash() -> None:
    """`lash new-plugin` renders this checkout's plugin_template/."""
    assert template_dir().resolve() == TEMPLATE.resolve()


# -- the tutorial ------------------------------------------------------------------------------


def test_the_tutorial_shows_what_the_flow_does(hello: Flow) -> None:
    """docs/first_plugin.rst lists the generated files and shows the commands' real output."""
    text = TUTORIAL.read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines()]
    listed = sorted(
        line.removeprefix("lash-hello/")
        for line in lines
        if line.startswith("lash-hello/") and not line.endswith("/")
    )
    assert listed == HELLO_FILES
    for line in hello.generate.stdout.splitlines():
        assert line.strip() in lines, line
    plugins = run(LASH, "plugins", cwd=hello.work, env=clean_env(hello.work, path=[hello.site]))
    assert plugins.stdout.splitlines()[0] in lines
    passed = re.search(r"\b\d+ passed\b", hello.tests.stdout)
    assert passed is not None
    assert passed[0] in lines


def test_the_readme_configuration_runs_a_session_with_the_tool(hello: Flow) -> None:
    """The generated README's `lash.toml` (what a plugin's users copy) makes a working host:
    `lash run` with it, and a scripted model, calls the plugin's tool with its options."""
    readme = (hello.project / "README.md").read_text(encoding="utf-8")
    found = re.search(r"```toml\n(.*?)```", readme, re.DOTALL)
    assert found is not None, readme
    host = hello.work / "readme-host"
    host.mkdir()
    (host / "lash.toml").write_text(
        'provider = "scripted"\n'
        + found[1]
        + "\n[[options.scripted.responses]]\n"
        + 'tool_calls = [{ name = "say_hello", arguments = { name = "Ada" } }]\n'
        + '[[options.scripted.responses]]\ntext = "Greeted."\n',
        encoding="utf-8",
    )
    proc = run(LASH, "run", "Greet Ada.", cwd=host, env=clean_env(hello.work, path=[hello.site]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Greeted.\n"
    assert "-> Welcome, Ada! (greeted so far: 1)" in proc.stderr
