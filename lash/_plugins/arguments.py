"""The arguments hosts pass to :class:`lash.LashCore`, checked before anything is built.

Type hints do not stop a host from writing ``LashCore(plugins=7)`` or ``LashCore(options=[])``,
and what such a value does further in is an accident: a ``TypeError`` from deep inside, or worse
(``plugins=[3]`` used to load the integer as a plugin named ``int``). :func:`check_core_arguments`
checks every argument against one table of rules and raises one :class:`lash.ConfigError` that
names each bad argument, what it expects and what it got.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lash._contract.modeloptions_check import model_options
from lash._plugins.hostconfig import HostConfig
from lash.errors import ConfigError, ValidationError

#: repr() of a bad value, cut short: a message must stay readable whatever the host passed.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60

#: Values that are never a plugin object, though Python would let them be registered as one.
_NOT_PLUGINS = (bool, int, float, complex, bytes, bytearray, list, tuple, dict, set, frozenset)

_Rule = Callable[[Any], "str | None"]


def _shown(value: Any) -> str:
    """``7 (int)``: a value as a problem line shows it, its repr cut short."""
    return f"{_REPR.repr(value)} ({type(value).__name__})"


def _kind(value: Any) -> str:
    """``a list``, ``an int``: the type of a value that must not be shown (it may be a secret)."""
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _sequence(value: Any) -> bool:
    # A list or tuple (any Sequence) of names, but not text: "abc" is no list of "a", "b", "c".
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _list_of(expected: str, item: str, fits: Callable[[Any], bool]) -> _Rule:
    """A rule for None, one plugin name (a bare str), or a list whose items all ``fits``."""

    def rule(value: Any) -> str | None:
        if value is None or isinstance(value, str):  # a bare string is one plugin name
            return None
        if not _sequence(value):
            return f"expected {expected}, got {_shown(value)}"
        for index, element in enumerate(value):
            if not fits(element):
                return f"[{index}]: expected {item}, got {_shown(element)}"
        return None

    return rule


def _is_plugin(item: Any) -> bool:
    # A str is a plugin name; anything else but these is a plugin object.
    return item is not None and not isinstance(item, _NOT_PLUGINS)


def _is_name(item: Any) -> bool:
    return isinstance(item, str)


def _options(value: Any) -> str | None:
    # Option values may be secrets (API keys): name their types, never show them.
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return (
            "expected a mapping of plugin name to that plugin's options, such as "
            f"{{'openai': {{'timeout': 30}}}}, got {_kind(value)}"
        )
    for name, table in value.items():
        if not isinstance(name, str):
            return f"expected plugin names (str) as keys, got {_shown(name)}"
        if not isinstance(table, Mapping):
            return f"[{name!r}]: expected a mapping of option names to values, got {_kind(table)}"
    return None


def _optional(kind: type, expected: str) -> _Rule:
    def rule(value: Any) -> str | None:
        if value is None or isinstance(value, kind):
            return None
        return f"expected {expected}, got {_shown(value)}"

    return rule


def _on_error(value: Any) -> str | None:
    if value is None or callable(value):
        return None
    return f"expected a function taking a lash.LashError (or None), got {_shown(value)}"


def _lease_ttl(value: Any) -> str | None:
    # bool is an int to Python, but `lease_ttl=True` is a slip, not one second.
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and value > 0:
        return None
    return f"expected a positive number of seconds (int or float), got {_shown(value)}"


def _not_negative(value: Any) -> str | None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and value >= 0:
        return None
    return f"expected 0 or more seconds (int or float), got {_shown(value)}"


def _hook_timeout(value: Any) -> str | None:
    return None if value is None else _lease_ttl(value)


def _builtins(value: Any) -> str | None:
    if value is None or value == "default":
        return None
    expected = '"default" or a list of builtin plugin names (str)'
    if isinstance(value, str) or not _sequence(value):
        return f"expected {expected}, got {_shown(value)}"
    for index, element in enumerate(value):
        if not isinstance(element, str):
            return f"[{index}]: expected a builtin plugin name (str), got {_shown(element)}"
    return None


def _model_options(value: Any) -> str | None:
    try:
        model_options(value, name="")  # (the rule's line names the argument)
    except ValidationError as exc:
        return "; ".join(exc.problems)
    return None


#: One rule per parameter of ``LashCore.__init__``; each returns a problem or None.
RULES: dict[str, _Rule] = {
    "plugins": _list_of(
        "a list of plugin names (str) or plugin objects (modules, classes, instances)",
        "a plugin name (str) or a plugin object (module, class or instance)",
        _is_plugin,
    ),
    "config": _optional(HostConfig, "a lash.HostConfig (from lash.HostConfig.load()) or None"),
    "store": _optional(str, "a store URL (str) such as 'sqlite:///sessions.db' or 'memory://'"),
    "provider": _optional(str, "a provider name (str) such as 'openai'"),
    "model": _optional(str, "a model name (str)"),
    "options": _options,
    "model_options": _model_options,
    "disable": _list_of("a list of plugin names (str)", "a plugin name (str)", _is_name),
    "autoload": _optional(bool, "True, False or None"),
    "strict": _optional(bool, "True, False or None"),
    "on_error": _on_error,
    "lease_ttl": _lease_ttl,
    "hook_timeout": _hook_timeout,
    "builtins": _builtins,
    "lease_wait": _not_negative,
    "control_poll": _lease_ttl,
    "input_poll": _not_negative,
    "observe_poll": _lease_ttl,
}


def check_core_arguments(arguments: Mapping[str, Any]) -> None:
    """Check the arguments of ``LashCore(...)`` (its ``locals()``, ``self`` included, ignored).

    :raises ConfigError: naming every bad argument, what it expects and what it got.
    """
    problems = [
        # A rule's problem starts with the item at fault ("[2]: ...") or with what it expected.
        f"{name}{problem}" if problem.startswith("[") else f"{name}: {problem}"
        for name, rule in RULES.items()
        if name in arguments and (problem := rule(arguments[name])) is not None
    ]
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"invalid arguments to lash.LashCore():\n{lines}")
