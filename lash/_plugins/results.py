"""What each hook may return, checked in one place for every implementation.

The dispatcher calls :func:`checker` once per hook to get a :class:`ResultCheck`: the classes a
result may be as it is (tested inline on the hot path, one set lookup), and a slow check for
everything else that either normalizes the value (an iterable of names or of fragments becomes a
tuple) or raises a :class:`lash.PluginError` naming the plugin, the hook, what was returned and
what is expected. Nothing wrong passes silently: a ``before_turn`` returning a string, or a
``filter_tool_catalog`` returning a bare name, is either an error or has one documented meaning.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from lash.errors import PluginError


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = object.__repr__(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _what(value: Any) -> str:
    return f"{type(value).__name__} {_short(value)}"


def wrong_result(hook: str, plugin: str, value: Any, expected: str) -> PluginError:
    """The error for an implementation of ``hook`` that returned ``value``."""
    return PluginError(
        f"plugin {plugin!r} returned {_what(value)} from hook {hook!r}; expected {expected}",
        plugin=plugin,
        hook=hook,
    )


class ResultCheck(NamedTuple):
    """How to check one hook's results: ``accepted`` classes pass as they are; any other value
    goes through ``slow(plugin, value)``, which returns the value to use or raises."""

    accepted: frozenset[type]
    slow: Callable[[str, Any], Any]
    expected: str


def _refuse(hook: str, expected: str) -> Callable[[str, Any], Any]:
    def slow(plugin: str, value: Any) -> Any:
        raise wrong_result(hook, plugin, value, expected)

    return slow


def _many(hook: str, item: tuple[type, ...], expected: str) -> Callable[[str, Any], Any]:
    """One of ``item``, or an iterable of them (returned as a tuple); strings and mappings are
    not the iterables meant here."""

    def slow(plugin: str, value: Any) -> Any:
        if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
            raise wrong_result(hook, plugin, value, expected)
        items = tuple(value)
        for element in items:
            if not isinstance(element, item):
                raise wrong_result(
                    hook, plugin, value, f"{expected} (one element is {_what(element)})"
                )
        return items

    return slow


def _names(hook: str, expected: str) -> Callable[[str, Any], Any]:
    def slow(plugin: str, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)  # documented: a bare string is one name, not its characters
        if isinstance(value, bytes | dict) or not isinstance(value, Iterable):
            raise wrong_result(hook, plugin, value, expected)
        items = tuple(value)
        for element in items:
            if not isinstance(element, str):
                raise wrong_result(
                    hook, plugin, value, f"{expected} (one element is {_what(element)})"
                )
        return items

    return slow


def _config(hook: str, expected: str) -> Callable[[str, Any], Any]:
    """A :class:`lash.SessionConfig` whose fields have the shapes ``configure()`` accepts
    (``prompt_layers`` made a tuple, as ``configure()`` makes it)."""
    import attrs

    from lash._contract.config_check import config_problems
    from lash._contract.modeloptions import ModelOptions
    from lash._contract.serialization import describe_value
    from lash._contract.turn_types import SessionConfig

    def slow(plugin: str, value: Any) -> Any:
        if not isinstance(value, SessionConfig):
            raise wrong_result(hook, plugin, value, expected)
        problems = config_problems(attrs.asdict(value, recurse=False))
        if not isinstance(value.model_options, ModelOptions):
            # (configure() read its fields next: a bare AttributeError naming no plugin)
            problems.append(
                "model_options: expected a lash.ModelOptions, got "
                f"{describe_value(value.model_options)}"
            )
        if problems:
            lines = "\n".join(f"  - {p}" for p in problems)
            raise PluginError(
                f"plugin {plugin!r} returned a lash.SessionConfig with invalid field(s) from "
                f"hook {hook!r}:\n{lines}",
                plugin=plugin,
                hook=hook,
            )
        if type(value.prompt_layers) is not tuple:
            value = attrs.evolve(value, prompt_layers=tuple(value.prompt_layers))
        return value

    return slow


_NOTHING = "None (this hook returns nothing)"


def checker(hook: str) -> ResultCheck:
    """The result check of ``hook`` (every hook of :data:`lash.hookspecs.SHAPES` has one).

    The classes a result may be are imported when a dispatcher first calls a hook that returns
    one, not with this module: loading plugins (``lash --help``, ``lash plugins``) only calls
    ``register_*`` hooks, which return nothing, and need not build the turn data classes.
    """
    if hook in _ONE_HOOKS:
        kinds, expected = _one()[hook]
        return ResultCheck(frozenset(kinds), _refuse(hook, expected), expected)
    if hook == "mutate_session_config":
        expected = "a lash.SessionConfig, or None for no change"
        # No class passes unchecked: a config's fields are checked as configure()'s are.
        return ResultCheck(frozenset(), _config(hook, expected), expected)
    if hook in ("before_turn", "after_turn", "checkpoint"):
        from lash._contract.turn_types import (
            AbortTurn,
            Compact,
            EmitEvent,
            EnqueueMessages,
            StartProcess,
        )

        expected = (
            "a turn directive (lash.AbortTurn, lash.EnqueueMessages, lash.Compact, "
            "lash.EmitEvent, lash.StartProcess), "
            "an iterable of them, or None"
        )
        directives = (AbortTurn, EnqueueMessages, Compact, EmitEvent, StartProcess)
        return ResultCheck(frozenset(directives), _many(hook, directives, expected), expected)
    if hook == "prompt_contributions":
        from lash._contract.turn_types import PromptContribution

        expected = "a lash.PromptContribution, an iterable of them, or None"
        return ResultCheck(
            frozenset({PromptContribution}),
            _many(hook, (PromptContribution,), expected),
            expected,
        )
    if hook == "filter_tool_catalog":
        expected = "tool names to hide (a str is one name), or None"
        # No class passes unchecked: every element of a tuple must be a name too.
        return ResultCheck(frozenset(), _names(hook, expected), expected)
    return ResultCheck(frozenset(), _refuse(hook, _NOTHING), _NOTHING)


#: The hooks of :func:`_one`.
_ONE_HOOKS = frozenset(
    {
        "compact_context",
        "transform_prompt_view",
        "before_tool_call",
        "after_tool_call",
        "project_tool_result",
        "render_process_result",
    }
)


@functools.cache
def _one() -> dict[str, tuple[tuple[type, ...], str]]:
    """Hooks whose result is one value of a known class (or None)."""
    from lash._contract.turn_types import (
        AbortToolCall,
        Compaction,
        PromptView,
        ReplaceToolArguments,
        RequireApproval,
        ShortCircuitToolCall,
    )
    from lash._contract.types import ToolResult

    tool_call_directives = (
        ReplaceToolArguments,
        ShortCircuitToolCall,
        AbortToolCall,
        RequireApproval,
    )
    return {
        "compact_context": (
            (Compaction,),
            "a lash.Compaction, or None to let the next plugin decide",
        ),
        "transform_prompt_view": ((PromptView,), "a lash.PromptView, or None to leave it as is"),
        "before_tool_call": (
            tool_call_directives,
            "lash.ReplaceToolArguments, lash.ShortCircuitToolCall, lash.AbortToolCall, "
            "lash.RequireApproval, or None",
        ),
        "after_tool_call": ((ToolResult,), "a lash.ToolResult, or None to keep the result"),
        "project_tool_result": ((str,), "the text the model sees (str), or None"),
        "render_process_result": ((str,), "the text of the session's wake-up input (str), or None"),
    }
