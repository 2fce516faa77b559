"""Host configuration: discovery of lash.toml / [tool.lash], parsing, ``$env:`` values, env vars."""

from __future__ import annotations

from pathlib import Path

import pytest

import lash
from lash import ConfigError, HostConfig

ENV_VARS = ("LASH_CONFIG", "LASH_PLUGINS", "LASH_DISABLE_PLUGIN_AUTOLOAD", "LASH_STRICT_PLUGINS")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without any LASH_* variable from the developer's shell."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- discovery ------------------------------------------------------------------------------------


def test_lash_toml_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lash.toml in the working directory is read, every top-level key included."""
    config_file = write(
        tmp_path / "lash.toml",
        """
strict = true
plugins = ["b", "a"]
disable = ["c"]
autoload = false
store = "sqlite:///lash.db"
provider = "openai"
model = "gpt-test"

[options.a]
limit = 3
""",
    )
    monkeypatch.chdir(tmp_path)
    config = HostConfig.load()
    assert config == HostConfig(
        strict=True,
        plugins=("b", "a"),
        disable=("c",),
        autoload=False,
        store="sqlite:///lash.db",
        provider="openai",
        model="gpt-test",
        options={"a": {"limit": 3}},
        path=str(config_file),
    )


def test_search_goes_upward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The nearest lash.toml above the working directory is found."""
    config_file = write(tmp_path / "lash.toml", 'model = "up"\n')
    nested = tmp_path / "a" / "b" / "c"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    config = HostConfig.load()
    assert config.model == "up"
    assert config.path == str(config_file)


def test_nearest_file_wins(tmp_path: Path) -> None:
    """A lash.toml closer to the working directory shadows one further up."""
    write(tmp_path / "lash.toml", 'model = "far"\n')
    write(tmp_path / "sub" / "lash.toml", 'model = "near"\n')
    assert HostConfig.load(cwd=tmp_path / "sub").model == "near"


def test_pyproject_tool_lash(tmp_path: Path) -> None:
    """``[tool.lash]`` in pyproject.toml is a config, read from its own section only."""
    pyproject = write(
        tmp_path / "pyproject.toml",
        """
[project]
name = "host"

[tool.lash]
plugins = ["x"]
model = "m"

[tool.other]
foo = 1
""",
    )
    config = HostConfig.load(cwd=tmp_path)
    assert config.plugins == ("x",)
    assert config.model == "m"
    assert config.path == str(pyproject)


def test_pyproject_without_tool_lash_is_skipped(tmp_path: Path) -> None:
    """A pyproject.toml without [tool.lash] belongs to another tool: the search goes on upward."""
    write(tmp_path / "lash.toml", 'model = "outer"\n')
    write(tmp_path / "project" / "pyproject.toml", '[project]\nname = "x"\n[tool.black]\n')
    assert HostConfig.load(cwd=tmp_path / "project").model == "outer"


def test_pyproject_without_any_tool_table_is_skipped(tmp_path: Path) -> None:
    """A pyproject.toml with no [tool] table at all is skipped too."""
    write(tmp_path / "pyproject.toml", '[tool.lash]\nmodel = "outer"\n')
    write(tmp_path / "inner" / "pyproject.toml", '[project]\nname = "x"\n')
    assert HostConfig.load(cwd=tmp_path / "inner").model == "outer"


def test_lash_toml_preferred_to_pyproject_in_same_directory(tmp_path: Path) -> None:
    """In one directory, lash.toml is the config and pyproject.toml is ignored."""
    write(tmp_path / "pyproject.toml", '[tool.lash]\nmodel = "pyproject"\n')
    write(tmp_path / "lash.toml", 'model = "lash.toml"\n')
    assert HostConfig.load(cwd=tmp_path).model == "lash.toml"


def test_relative_cwd_still_searches_upward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative ``cwd`` is searched up to the filesystem root, not just to its first part."""
    write(tmp_path / "lash.toml", 'model = "root"\n')
    (tmp_path / "proj" / "src").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "proj")
    assert HostConfig.load(cwd="src").model == "root"


def test_no_config_file_gives_defaults(tmp_path: Path) -> None:
    """Without any config file every setting has its default and ``path`` is None."""
    config = HostConfig.load(cwd=tmp_path)
    assert config == HostConfig()
    assert config.plugins is None
    assert config.path is None


def test_explicit_path(tmp_path: Path) -> None:
    """``HostConfig.load(path)`` reads that file, whatever its name, ignoring the search."""
    write(tmp_path / "lash.toml", 'model = "searched"\n')
    chosen = write(tmp_path / "elsewhere" / "prod.toml", 'model = "chosen"\n')
    config = HostConfig.load(chosen, cwd=tmp_path)
    assert config.model == "chosen"
    assert config.path == str(chosen)


def test_explicit_pyproject_path(tmp_path: Path) -> None:
    """An explicit pyproject.toml path is read from its [tool.lash] section."""
    pyproject = write(tmp_path / "pyproject.toml", '[tool.lash]\nprovider = "p"\n')
    assert HostConfig.load(pyproject).provider == "p"


def test_lash_config_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``$LASH_CONFIG`` names the config file and wins over the upward search."""
    write(tmp_path / "lash.toml", 'model = "searched"\n')
    chosen = write(tmp_path / "conf" / "custom.toml", 'model = "from env"\n')
    monkeypatch.setenv("LASH_CONFIG", str(chosen))
    monkeypatch.chdir(tmp_path)
    assert HostConfig.load().model == "from env"


def test_explicit_path_beats_lash_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit path wins over ``$LASH_CONFIG``."""
    monkeypatch.setenv("LASH_CONFIG", str(write(tmp_path / "env.toml", 'model = "env"\n')))
    assert HostConfig.load(write(tmp_path / "arg.toml", 'model = "arg"\n')).model == "arg"


def test_missing_explicit_file(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming the path."""
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found") as info:
        HostConfig.load(missing)
    assert info.value.path == str(missing)
    assert str(missing) in str(info.value)


def test_missing_lash_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``$LASH_CONFIG`` naming a missing file is a ConfigError, not a silent default."""
    monkeypatch.setenv("LASH_CONFIG", str(tmp_path / "gone.toml"))
    with pytest.raises(ConfigError, match="not found"):
        HostConfig.load(cwd=tmp_path)


def test_explicit_pyproject_without_section(tmp_path: Path) -> None:
    """Pointing at a pyproject.toml that has no [tool.lash] is a ConfigError."""
    pyproject = write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"no \[tool\.lash\]"):
        HostConfig.load(pyproject)


def test_tool_lash_must_be_a_table(tmp_path: Path) -> None:
    """``tool.lash`` set to a plain value is a ConfigError, not a crash."""
    write(tmp_path / "pyproject.toml", "[tool]\nlash = 1\n")
    with pytest.raises(ConfigError, match="must be a table"):
        HostConfig.load(cwd=tmp_path)


# -- malformed files and bad values ---------------------------------------------------------------


def test_malformed_toml_names_file_line_and_column(tmp_path: Path) -> None:
    """Malformed TOML is a ConfigError carrying the file, line and column."""
    bad = write(tmp_path / "lash.toml", 'strict = true\nmodel = = "x"\n')
    with pytest.raises(ConfigError) as info:
        HostConfig.load(bad)
    error = info.value
    assert (error.path, error.line, error.column) == (str(bad), 2, 9)
    assert str(error).startswith(f"{bad}:2:9: malformed TOML")


def test_malformed_toml_at_end_of_document(tmp_path: Path) -> None:
    """An error tomllib places "at end of document" still gets a line and column."""
    bad = write(tmp_path / "lash.toml", 'model = "m"\nplugins = ["a",\n')
    with pytest.raises(ConfigError, match="malformed TOML") as info:
        HostConfig.load(bad)
    assert (info.value.line, info.value.column) == (3, 1)


def test_malformed_pyproject_found_by_search(tmp_path: Path) -> None:
    """A malformed pyproject.toml met during the search is reported, not skipped."""
    bad = write(tmp_path / "pyproject.toml", "[tool.lash\n")
    with pytest.raises(ConfigError) as info:
        HostConfig.load(cwd=tmp_path)
    assert info.value.path == str(bad)
    assert info.value.line == 1


def test_config_that_is_not_utf8_names_file_and_byte_offset(tmp_path: Path) -> None:
    """A lash.toml with a byte that is not UTF-8 is a ConfigError with its offset and position."""
    bad = tmp_path / "lash.toml"
    # Line 2 is "# café " (é is 2 bytes in UTF-8) and then a Latin-1 "ü" (0xfc): 14 bytes of
    # line 1 + 8 bytes before it = offset 22; 7 characters before it on its line = column 8.
    bad.write_bytes(b'strict = true\n# caf\xc3\xa9 \xfc\nmodel = "m"\n')
    with pytest.raises(ConfigError) as info:
        HostConfig.load(bad)
    error = info.value
    assert (error.path, error.line, error.column) == (str(bad), 2, 8)
    assert str(error).startswith(f"{bad}:2:8: not UTF-8 text: byte 0xfc at byte offset 22 ")
    assert "must be UTF-8" in str(error)
    assert error.__cause__ is None and error.__suppress_context__


def test_pyproject_that_is_not_utf8_found_by_search(tmp_path: Path) -> None:
    """A pyproject.toml met during the upward search that is not UTF-8 is reported, naming it."""
    bad = tmp_path / "pyproject.toml"
    bad.write_bytes(b'[tool.lash]\nmodel = "\xff"\n')  # 12 + 9 bytes before 0xff
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError, match="byte 0xff at byte offset 21 ") as info:
        HostConfig.load(cwd=tmp_path / "sub")
    assert (info.value.path, info.value.line, info.value.column) == (str(bad), 2, 10)


def test_utf16_config_is_not_utf8(tmp_path: Path) -> None:
    """A config saved as UTF-16 (an editor's "Unicode") fails at its byte-order mark."""
    bad = tmp_path / "lash.toml"
    bad.write_bytes('model = "m"\n'.encode("utf-16"))
    with pytest.raises(ConfigError, match="byte 0xff at byte offset 0 ") as info:
        HostConfig.load(bad)
    assert (info.value.line, info.value.column) == (1, 1)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    """An unknown key is an error naming it and listing the known keys."""
    bad = write(tmp_path / "lash.toml", 'modle = "typo"\n')
    with pytest.raises(ConfigError) as info:
        HostConfig.load(bad)
    message = str(info.value)
    assert "modle: unknown key" in message
    assert "model" in message
    assert info.value.path == str(bad)


def test_plugins_table_is_a_clear_error(tmp_path: Path) -> None:
    """``[plugins.<name>]`` is rejected with a pointer to ``[options.<name>]``."""
    bad = write(tmp_path / "lash.toml", "[plugins.files]\nroot = '/tmp'\n")
    with pytest.raises(ConfigError, match=r"\[options\.<name>\]") as info:
        HostConfig.load(bad)
    assert "list of plugin names" in str(info.value)


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('strict = "yes"', "strict: expected bool, got 'yes' (str)"),
        ("strict = 1", "strict: expected bool, got 1 (int)"),
        ('plugins = "files"', "plugins: expected list[str] | None, got 'files' (str)"),
        ("plugins = ['a', 2]", "plugins[1]: expected str, got 2 (int)"),
        ('disable = "files"', "disable: expected list[str], got 'files' (str)"),
        ("autoload = 0", "autoload: expected bool, got 0 (int)"),
        ("model = 4", "model: expected str | None, got 4 (int)"),
        ("options = 3", "options: expected dict[str, dict[str, Any]], got 3 (int)"),
        ("options = { files = 3 }", "options.files: expected dict[str, Any], got 3 (int)"),
    ],
)
def test_bad_value_types(tmp_path: Path, toml: str, problem: str) -> None:
    """A value of the wrong type is one readable line: key, expected type, value received."""
    with pytest.raises(ConfigError) as info:
        HostConfig.load(write(tmp_path / "lash.toml", toml + "\n"))
    assert problem in str(info.value).splitlines()[-1]


def test_every_problem_is_reported(tmp_path: Path) -> None:
    """Several bad keys give one line each, not just the first."""
    bad = write(tmp_path / "lash.toml", 'strict = "no"\nmodle = 1\nstore = 5\n')
    with pytest.raises(ConfigError) as info:
        HostConfig.load(bad)
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 3
    assert any(line.strip().startswith("- strict:") for line in lines)
    assert any(line.strip().startswith("- modle: unknown key") for line in lines)
    assert any(line.strip().startswith("- store:") for line in lines)


# -- $env: values ---------------------------------------------------------------------------------


def test_env_values_at_any_depth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``"$env:NAME"`` is replaced by the variable's value at top level, in tables and in lists."""
    monkeypatch.setenv("LASH_TEST_MODEL", "model-from-env")
    monkeypatch.setenv("LASH_TEST_KEY", "sk-123")
    monkeypatch.setenv("LASH_TEST_PLUGIN", "files")
    monkeypatch.setenv("LASH_TEST_TAG", "t2")
    monkeypatch.setenv("LASH_TEST_STRICT", "true")
    path = write(
        tmp_path / "lash.toml",
        """
model = "$env:LASH_TEST_MODEL"
plugins = ["$env:LASH_TEST_PLUGIN"]
strict = "$env:LASH_TEST_STRICT"

[options.openai]
api_key = "$env:LASH_TEST_KEY"
literal = "env:not-a-reference"

[options.openai.nested]
tags = ["t1", "$env:LASH_TEST_TAG"]
""",
    )
    config = HostConfig.load(path)
    assert config.model == "model-from-env"
    assert config.plugins == ("files",)
    assert config.strict is True
    assert config.options["openai"] == {
        "api_key": "sk-123",
        "literal": "env:not-a-reference",
        "nested": {"tags": ["t1", "t2"]},
    }


def test_env_value_read_at_load_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable is read when the config is loaded; later changes do not leak in."""
    monkeypatch.setenv("LASH_TEST_MODEL", "first")
    path = write(tmp_path / "lash.toml", 'model = "$env:LASH_TEST_MODEL"\n')
    config = HostConfig.load(path)
    monkeypatch.setenv("LASH_TEST_MODEL", "second")
    assert config.model == "first"
    assert HostConfig.load(path).model == "second"


def test_env_value_from_environ_argument(tmp_path: Path) -> None:
    """``environ=`` replaces os.environ for ``$env:`` values and LASH_* variables alike."""
    path = write(tmp_path / "lash.toml", 'model = "$env:MODEL"\n')
    config = HostConfig.load(path, environ={"MODEL": "m1", "LASH_STRICT_PLUGINS": "1"})
    assert config.model == "m1"
    assert config.strict is True


def test_unset_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset variable is a ConfigError naming the key, the variable and the file."""
    monkeypatch.delenv("LASH_TEST_UNSET", raising=False)
    path = write(tmp_path / "lash.toml", '[options.openai]\napi_key = "$env:LASH_TEST_UNSET"\n')
    with pytest.raises(ConfigError) as info:
        HostConfig.load(path)
    message = str(info.value)
    assert "options.openai.api_key" in message
    assert "LASH_TEST_UNSET" in message
    assert info.value.path == str(path)


def test_unset_env_variable_in_list(tmp_path: Path) -> None:
    """An unset variable inside a list names the list index."""
    path = write(tmp_path / "lash.toml", 'plugins = ["a", "$env:NOPE"]\n')
    with pytest.raises(ConfigError, match=r"plugins\[1\].*'NOPE'"):
        HostConfig.load(path, environ={})


def test_env_text_is_not_a_bool_unless_spelled_as_one(tmp_path: Path) -> None:
    """An environment value that spells no boolean is reported as the text it is."""
    path = write(tmp_path / "lash.toml", 'strict = "$env:STRICT"\n')
    with pytest.raises(ConfigError, match=r"strict: expected bool, got 'maybe' \(str\)"):
        HostConfig.load(path, environ={"STRICT": "maybe"})


# -- LASH_* environment variables ---------------------------------------------------------------


def test_lash_plugins_overrides_allowlist(tmp_path: Path) -> None:
    """``LASH_PLUGINS`` (a comma list) replaces the file's allowlist and order."""
    path = write(tmp_path / "lash.toml", 'plugins = ["a", "b"]\n')
    config = HostConfig.load(path, environ={"LASH_PLUGINS": " c, a ,,"})
    assert config.plugins == ("c", "a")


def test_empty_lash_plugins_is_ignored(tmp_path: Path) -> None:
    """An empty ``LASH_PLUGINS`` leaves the allowlist alone."""
    path = write(tmp_path / "lash.toml", 'plugins = ["a"]\n')
    assert HostConfig.load(path, environ={"LASH_PLUGINS": " "}).plugins == ("a",)


def test_disable_autoload_env(tmp_path: Path) -> None:
    """``LASH_DISABLE_PLUGIN_AUTOLOAD=1`` turns autoload off."""
    config = HostConfig.load(cwd=tmp_path, environ={"LASH_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert config.autoload is False


def test_strict_env(tmp_path: Path) -> None:
    """``LASH_STRICT_PLUGINS=1`` turns strict mode on."""
    assert HostConfig.load(cwd=tmp_path, environ={"LASH_STRICT_PLUGINS": "1"}).strict is True


@pytest.mark.parametrize("value", ["0", "", "no"])
def test_falsy_env_flags_change_nothing(tmp_path: Path, value: str) -> None:
    """Flag variables set to a false value leave the file's settings as they are."""
    path = write(tmp_path / "lash.toml", "autoload = true\n")
    config = HostConfig.load(
        path, environ={"LASH_DISABLE_PLUGIN_AUTOLOAD": value, "LASH_STRICT_PLUGINS": value}
    )
    assert (config.autoload, config.strict) == (True, False)


def test_env_read_from_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``environ=``, the process environment is used."""
    monkeypatch.setenv("LASH_PLUGINS", "x,y")
    monkeypatch.setenv("LASH_STRICT_PLUGINS", "1")
    config = HostConfig.load(cwd=tmp_path)
    assert (config.plugins, config.strict) == (("x", "y"), True)


def test_with_env_on_code_built_config() -> None:
    """``with_env`` applies the LASH_* variables to a config built in code."""
    config = HostConfig(plugins=["a"]).with_env({"LASH_DISABLE_PLUGIN_AUTOLOAD": "true"})
    assert config.plugins == ("a",)
    assert config.autoload is False


def test_code_built_config_takes_a_bare_name() -> None:
    """A bare string for ``plugins``/``disable`` is one name, not a list of letters."""
    config = HostConfig(plugins="files", disable="plan")  # type: ignore[arg-type]
    assert (config.plugins, config.disable) == (("files",), ("plan",))
    assert HostConfig(plugins=["a", "b"]).plugins == ("a", "b")


def test_repr_does_not_show_option_values() -> None:
    """The config's repr names plugins with options but never shows the values (secrets)."""
    config = HostConfig(options={"openai": {"api_key": "sk-very-secret"}})
    assert "sk-very-secret" not in repr(config)
    assert "openai" in repr(config)


def test_config_error_is_a_value_error() -> None:
    """ConfigError is both a LashError and a ValueError."""
    assert issubclass(ConfigError, lash.LashError)
    assert issubclass(ConfigError, ValueError)
