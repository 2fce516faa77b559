"""Typed plugin options: validation with readable errors, ``$env:`` text, secrets redacted."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Literal

import attrs
import pytest

import lash
from lash import ConfigError, HostConfig, LashCore, OptionsError
from lash._contract.serialization import EnvStr
from lash._plugins.options import build_options, check_options_class, describe_options, redact

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


@attrs.define
class Limits:
    max_bytes: int = 1000
    ratio: float = 0.5


@attrs.define
class Rule:
    name: str
    enabled: bool = True


@attrs.define
class Options:
    port: int = lash.option(80, help="port to listen on")
    verbose: bool = False
    mode: Literal["fast", "safe"] = "safe"
    limits: Limits = attrs.field(factory=Limits)
    # lash.option returns an attrs field declaration, not a shared default value.
    tags: list[str] = lash.option(factory=list)
    rules: list[Rule] = attrs.field(factory=list)
    api_key: str = lash.option("", secret=True, help="the API key")


def options_plugin(name: str = "myplugin", options: type = Options) -> types.ModuleType:
    module = types.ModuleType(name)
    module.lash_plugin = lash.PluginMeta(options=options)  # type: ignore[attr-defined]
    return module


def problems_of(data: dict[str, object], cls: type = Options) -> list[str]:
    with pytest.raises(OptionsError) as info:
        build_options("myplugin", cls, data)
    assert info.value.plugin == "myplugin"
    return list(info.value.problems)


# -- values that validate -------------------------------------------------------------------------


def test_defaults_without_options_section() -> None:
    """A plugin with no ``[options.<name>]`` section gets its declared defaults."""
    core = LashCore([options_plugin()])
    assert core.plugin_options("myplugin") == Options()


def test_host_options_are_structured() -> None:
    """Host option values become an instance of the plugin's options class, nested included."""
    core = LashCore(
        [options_plugin()],
        options={
            "myplugin": {
                "port": 8080,
                "mode": "fast",
                "limits": {"max_bytes": 5, "ratio": 1},
                "tags": ["a", "b"],
                "rules": [{"name": "r1"}, {"name": "r2", "enabled": False}],
            }
        },
    )
    assert core.plugin_options("myplugin") == Options(
        port=8080,
        mode="fast",
        limits=Limits(max_bytes=5, ratio=1.0),
        tags=["a", "b"],
        rules=[Rule("r1"), Rule("r2", enabled=False)],
    )


def test_plugin_without_options_class_has_none() -> None:
    """``plugin_options`` is None for a plugin that declares no options class."""
    core = LashCore([types.ModuleType("plain")])
    assert core.plugin_options("plain") is None
    with pytest.raises(KeyError):
        core.plugin_options("not-loaded")


def test_options_from_config_file(tmp_path: Path) -> None:
    """``[options.<plugin>]`` in lash.toml reaches the plugin's options class."""
    config_file = tmp_path / "lash.toml"
    config_file.write_text(
        '[options.myplugin]\nport = 9\ntags = ["x"]\n[options.myplugin.limits]\n'
    )
    core = LashCore([options_plugin()], config=HostConfig.load(config_file))
    assert core.plugin_options("myplugin") == Options(port=9, tags=["x"])


def test_env_text_into_typed_fields(tmp_path: Path) -> None:
    """``"$env:NAME"`` values are accepted as text spellings of int, float and bool fields."""
    config_file = tmp_path / "lash.toml"
    config_file.write_text(
        "[options.myplugin]\n"
        'port = "$env:PORT"\n'
        'verbose = "$env:VERBOSE"\n'
        'api_key = "$env:KEY"\n'
        '[options.myplugin.limits]\nmax_bytes = "$env:MAX"\nratio = "$env:RATIO"\n'
    )
    environ = {"PORT": "8080", "VERBOSE": "yes", "KEY": "sk-1", "MAX": " 42 ", "RATIO": "0.25"}
    core = LashCore([options_plugin()], config=HostConfig.load(config_file, environ=environ))
    options = core.plugin_options("myplugin")
    assert options == Options(
        port=8080, verbose=True, api_key="sk-1", limits=Limits(max_bytes=42, ratio=0.25)
    )
    assert type(options.api_key) is str


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("true", True), ("On", True), ("0", False), ("false", False), ("NO", False)],
)
def test_env_bool_spellings(text: str, expected: bool) -> None:
    """Environment text spells booleans as 1/0, true/false, yes/no, on/off (any case)."""
    assert build_options("p", Options, {"verbose": EnvStr(text)}).verbose is expected


def test_int_accepted_for_float_field() -> None:
    """A TOML integer is a valid float."""
    assert build_options("p", Options, {"limits": {"ratio": 2}}).limits.ratio == 2.0


# -- values that do not validate ------------------------------------------------------------------


def test_plain_string_into_int_field_is_an_error() -> None:
    """A TOML string ``"80"`` is not coerced into an int field (only ``$env:`` text is)."""
    assert problems_of({"port": "80"}) == ["options.myplugin.port: expected int, got '80' (str)"]


def test_nested_field_path() -> None:
    """The dotted path of a nested bad value is given in full."""
    assert problems_of({"limits": {"max_bytes": "abc"}}) == [
        "options.myplugin.limits.max_bytes: expected int, got 'abc' (str)"
    ]


def test_env_text_that_is_not_a_number() -> None:
    """Environment text that spells no int is reported as the str it is."""
    assert problems_of({"port": EnvStr("abc")}) == [
        "options.myplugin.port: expected int, got 'abc' (str)"
    ]


def test_bool_is_not_an_int() -> None:
    """``port = true`` is a mistake, not 1."""
    assert problems_of({"port": True}) == ["options.myplugin.port: expected int, got True (bool)"]


def test_int_is_not_a_bool() -> None:
    """``verbose = 1`` is not silently True."""
    assert problems_of({"verbose": 1}) == ["options.myplugin.verbose: expected bool, got 1 (int)"]


def test_number_is_not_a_string() -> None:
    """A number given for a str field is an error, not its text."""
    assert problems_of({"rules": [{"name": 5}]}) == [
        "options.myplugin.rules[0].name: expected str, got 5 (int)"
    ]


def test_string_is_not_a_list() -> None:
    """A string given for a list field is an error, not a list of its characters."""
    assert problems_of({"tags": "abc"}) == [
        "options.myplugin.tags: expected list[str], got 'abc' (str)"
    ]


def test_table_is_not_a_list() -> None:
    """A table given for a list field is an error, not the list of its keys."""
    assert problems_of({"tags": {"a": 1}}) == [
        "options.myplugin.tags: expected list[str], got {'a': 1} (dict)"
    ]


def test_scalar_is_not_a_table() -> None:
    """A scalar given for a nested options class names the class expected."""
    assert problems_of({"limits": 5}) == ["options.myplugin.limits: expected Limits, got 5 (int)"]


def test_literal_field() -> None:
    """A value outside a Literal lists the accepted values."""
    assert problems_of({"mode": "slow"}) == [
        "options.myplugin.mode: expected 'fast' | 'safe', got 'slow' (str)"
    ]


def test_list_item_path() -> None:
    """A bad item inside a list of tables is located by index and field."""
    assert problems_of({"rules": [{"name": "ok"}, {"name": "x", "enabled": "no"}]}) == [
        "options.myplugin.rules[1].enabled: expected bool, got 'no' (str)"
    ]


def test_unknown_key() -> None:
    """An unknown key is an error naming it and the known fields."""
    (line,) = problems_of({"colour": "red"})
    assert line.startswith("options.myplugin.colour: unknown key (known: api_key, limits, ")


def test_unknown_nested_key() -> None:
    """Unknown keys are forbidden in nested tables too."""
    assert problems_of({"limits": {"max_byte": 1}}) == [
        "options.myplugin.limits.max_byte: unknown key (known: max_bytes, ratio)"
    ]


def test_required_field_missing() -> None:
    """A required field that is absent is reported as missing, with its type."""
    assert problems_of({"rules": [{}]}) == [
        "options.myplugin.rules[0].name: required, missing (expected str)"
    ]


def test_one_line_per_bad_value() -> None:
    """Every bad value gets exactly one line, and the message lists them all."""
    with pytest.raises(OptionsError) as info:
        build_options("myplugin", Options, {"port": "x", "verbose": 2, "nope": 1})
    assert sorted(info.value.problems) == [
        "options.myplugin.nope: unknown key (known: api_key, limits, mode, port, rules, tags, "
        "verbose)",
        "options.myplugin.port: expected int, got 'x' (str)",
        "options.myplugin.verbose: expected bool, got 2 (int)",
    ]
    message = str(info.value)
    assert message.startswith("invalid options for plugin 'myplugin':")
    assert all(f"  - {p}" in message for p in info.value.problems)


def test_options_error_is_a_config_error() -> None:
    """OptionsError is a ConfigError (hosts can catch either)."""
    assert issubclass(OptionsError, ConfigError)


@attrs.define
class Validated:
    level: int = attrs.field(default=1, validator=attrs.validators.in_([1, 2, 3]))
    count: int = attrs.field(default=1, validator=attrs.validators.gt(0))


def test_attrs_validator_names_the_field() -> None:
    """A value rejected by an attrs validator is one line locating the field."""
    assert problems_of({"level": 7}, Validated) == [
        "options.myplugin.level: 'level' must be in [1, 2, 3] (got 7)"
    ]


def test_attrs_validator_without_field_context() -> None:
    """A validator whose error does not carry the field still yields one readable line."""
    assert problems_of({"count": 0}, Validated) == ["options.myplugin: 'count' must be > 0: 0"]


def test_options_must_be_a_table() -> None:
    """Options given as a scalar instead of a table are a readable error."""
    assert problems_of(5) == [  # type: ignore[arg-type]
        "options.myplugin: expected a table of options, got 5 (int)"
    ]


def test_bad_host_options_fail_the_plugin_only() -> None:
    """Invalid host options fail that plugin (recorded with the readable error); others load."""
    core = LashCore(
        [options_plugin(), types.ModuleType("bystander")],
        options={"myplugin": {"limits": {"max_bytes": "abc"}}},
    )
    assert core.plugin_names == ["bystander"]
    (info,) = [i for i in core.plugins if i.name == "myplugin"]
    assert info.status == "failed"
    assert "options.myplugin.limits.max_bytes: expected int, got 'abc' (str)" in (info.error or "")


def test_bad_host_options_in_strict_mode() -> None:
    """In strict mode invalid options stop the build with the readable error."""
    with pytest.raises(lash.PluginLoadError, match=r"options\.myplugin\.port: expected int"):
        LashCore([options_plugin()], options={"myplugin": {"port": "x"}}, strict=True)


# -- secrets --------------------------------------------------------------------------------------


@attrs.define
class Credentials:
    token: str = lash.option("", secret=True)
    user: str = "me"


@attrs.define
class SecretOptions:
    api_key: str = lash.option("", secret=True)
    port: int = 1
    timeout: int = lash.option(5, secret=True)
    creds: Credentials = attrs.field(factory=Credentials)
    accounts: list[Credentials] = attrs.field(factory=list)
    by_name: dict[str, Credentials] = attrs.field(factory=dict)


def test_redact_hides_secret_values() -> None:
    """Secret fields are shown as ``***`` at any depth; other fields as their values."""
    options = SecretOptions(
        api_key="sk-1",
        port=2,
        creds=Credentials(token="t-1"),
        accounts=[Credentials(token="t-2", user="a")],
        by_name={"b": Credentials(token="t-3", user="b")},
    )
    assert redact(options) == {
        "api_key": "***",
        "port": 2,
        "timeout": "***",
        "creds": {"token": "***", "user": "me"},
        "accounts": [{"token": "***", "user": "a"}],
        "by_name": {"b": {"token": "***", "user": "b"}},
    }


def test_redact_shows_unset_secret_as_empty() -> None:
    """An unset (empty) secret is shown as empty, so "not configured" stays visible."""
    assert redact(Credentials())["token"] == ""


def test_secret_value_not_echoed_in_errors() -> None:
    """A rejected value of a secret field is shown as ``***`` in the error."""
    problems = problems_of({"api_key": 12345678, "port": "x"}, SecretOptions)
    assert sorted(problems) == [
        "options.myplugin.api_key: expected str, got *** (int)",
        "options.myplugin.port: expected int, got 'x' (str)",
    ]
    assert not any("12345678" in p for p in problems)


def test_nested_secret_value_not_echoed_in_errors() -> None:
    """A secret field inside a nested table is redacted in errors too."""
    assert problems_of({"creds": {"token": 99}}, SecretOptions) == [
        "options.myplugin.creds.token: expected str, got *** (int)"
    ]


@attrs.define
class SecretValidated:
    pin: int = lash.option(1, secret=True, validator=attrs.validators.in_([1, 2]))


def test_secret_value_not_echoed_by_validator_errors() -> None:
    """A secret rejected by an attrs validator is not echoed either."""
    (line,) = problems_of({"pin": 4321}, SecretValidated)
    assert line == "options.myplugin.pin: rejected by its validator (value ***)"


def test_describe_options() -> None:
    """``describe_options`` gives each field's name, type, default, required, secret and help."""
    rows = {row["name"]: row for row in describe_options(Options)}
    assert rows["port"] == {
        "name": "port",
        "type": "int",
        "default": 80,
        "required": False,
        "secret": False,
        "help": "port to listen on",
    }
    assert rows["limits"]["default"] == {"max_bytes": 1000, "ratio": 0.5}
    assert rows["limits"]["type"] == "Limits"
    assert rows["tags"]["default"] == []
    assert rows["tags"]["type"] == "list[str]"
    assert rows["mode"]["type"] == "'fast' | 'safe'"
    assert rows["api_key"]["secret"] is True
    assert rows["api_key"]["help"] == "the API key"
    assert rows["verbose"]["help"] is None


def test_describe_options_redacts_secret_defaults() -> None:
    """A secret's default is shown as ``***`` (an empty default stays empty)."""
    rows = {row["name"]: row for row in describe_options(SecretOptions)}
    assert rows["timeout"]["default"] == "***"
    assert rows["api_key"]["default"] == ""
    assert rows["creds"]["default"] == {"token": "", "user": "me"}


@attrs.define
class Required:
    name: str = lash.option(help="who")
    derived: str = attrs.field(default=attrs.Factory(lambda self: self.name * 2, takes_self=True))
    optional: str | None = None


def test_describe_options_required_and_derived_fields() -> None:
    """A required field has no default to show; a default derived from other fields neither."""
    rows = {row["name"]: row for row in describe_options(Required)}
    assert (rows["name"]["required"], rows["name"]["default"]) == (True, None)
    assert (rows["derived"]["required"], rows["derived"]["default"]) == (False, None)
    assert rows["optional"]["type"] == "str | None"


def test_option_declares_plain_attrs_fields() -> None:
    """``lash.option`` fields are ordinary attrs fields (defaults, factories, help metadata)."""
    fields = attrs.fields_dict(Options)
    assert fields["port"].default == 80
    assert fields["tags"].default == attrs.Factory(list)
    assert fields["api_key"].metadata["lash"] == {"secret": True, "help": "the API key"}
    assert Options().tags is not Options().tags


# -- options classes that cannot work -------------------------------------------------------------


class NotAttrs:
    port: int = 1


@attrs.define
class UnsupportedUnion:
    value: int | str = 1


@attrs.define
class Unresolvable:
    value: DoesNotExist = None  # type: ignore[name-defined]  # noqa: F821


def test_check_options_class_accepts_attrs_class() -> None:
    """A well-formed attrs options class has no problem."""
    assert check_options_class(Options) is None


@pytest.mark.parametrize(
    ("cls", "fragment"),
    [
        (NotAttrs, "must be an attrs class"),
        (Options(), "must be an attrs class"),
        (Unresolvable, "unresolvable type hints"),
        (UnsupportedUnion, "field 'value' has type int | str, which lash cannot validate"),
    ],
)
def test_check_options_class_problems(cls: object, fragment: str) -> None:
    """Classes lash cannot validate are described at load time, naming the field."""
    problem = check_options_class(cls)
    assert problem is not None
    assert fragment in problem


def test_invalid_options_class_fails_the_plugin() -> None:
    """A plugin whose options class lash cannot validate is recorded as failed and skipped."""
    core = LashCore([options_plugin("bad", UnsupportedUnion), options_plugin("good")])
    assert core.plugin_names == ["good"]
    (info,) = [i for i in core.plugins if i.name == "bad"]
    assert info.status == "failed"
    assert "field 'value' has type int | str" in (info.error or "")
