"""Checking the fields of a session configuration (``configure()``'s patch, a child session's
config, the :class:`lash.SessionConfig` a ``mutate_session_config`` implementation returns)
before anything is applied: a value of the wrong shape is refused naming its field, rather than
committed and failing every later turn (``prompt_layers=["a", 1]``) or quietly meaning
something else (``prompt_layers="You are terse."``, a string, is not a list of one layer: taken
as it is, each of its characters became a layer)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lash._contract.serialization import describe_value

__all__ = ["config_problems", "options_problems"]


def config_problems(fields: Mapping[str, Any]) -> list[str]:
    """One readable line per field of ``fields`` (a patch, or a config's fields) whose value
    has the wrong shape: ``provider`` and ``model`` a str or None, ``prompt_layers`` a list or
    tuple of str, ``plugin_options`` a mapping of plugin names to mappings of option names,
    ``protocol_options`` (``configure()``'s deprecated form of the protocol plugin's options) a
    mapping of option names. (``model_options`` has its own, finer check; other keys are not
    looked at here.)"""
    problems = []
    for name in ("provider", "model"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name}: expected a str or None, got {describe_value(value)}")
    if "prompt_layers" in fields:
        layers = fields["prompt_layers"]
        if not isinstance(layers, list | tuple):
            hint = " (a list of one layer is [text])" if isinstance(layers, str) else ""
            problems.append(
                f"prompt_layers: expected a list of str, got {describe_value(layers)}{hint}"
            )
        else:
            problems += [
                f"prompt_layers[{i}]: expected a str, got {describe_value(layer)}"
                for i, layer in enumerate(layers)
                if not isinstance(layer, str)
            ]
    if "plugin_options" in fields:
        problems += options_problems(fields["plugin_options"], "plugin_options")
    if "protocol_options" in fields:
        # (before: merged as it was, a bare TypeError or ValueError naming no session or field)
        problems += _names_problems(fields["protocol_options"], "protocol_options")
    return problems


def options_problems(options: Any, name: str) -> list[str]:
    """One line per problem of ``options`` (named ``name`` in them), plugin options by plugin
    name: a mapping of plugin names to mappings of option names (their values are checked
    against each plugin's options class at open)."""
    if not isinstance(options, Mapping):
        return [
            f"{name}: expected a mapping of plugin names to their options, got "
            f"{describe_value(options)}"
        ]
    problems = []
    for plugin, values in options.items():
        if not isinstance(plugin, str):
            problems.append(f"{name}: a plugin name must be a str, got {describe_value(plugin)}")
        else:
            problems += _names_problems(values, f"{name}[{plugin!r}]")
    return problems


def _names_problems(values: Any, name: str) -> list[str]:
    """One line per problem of ``values``, one plugin's options: a mapping of option names."""
    if not isinstance(values, Mapping):
        return [
            f"{name}: expected a mapping of option names to values, got {describe_value(values)}"
        ]
    return [
        f"{name}: an option name must be a str, got {describe_value(key)}"
        for key in values
        if not isinstance(key, str)
    ]
