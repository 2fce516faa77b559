"""Tool-call arguments as the kernel admits them: a JSON object nested at most 64 levels deep.

A model (or a buggy provider, or an attacker steering one) can send arguments nested thousands
of levels deep. Everything that walks them recursively then fails with ``RecursionError``:
validating them against type hints, rendering them in messages, serializing the assistant
message that carries them when the turn commits, and ``json.loads`` itself in a provider. A
``RecursionError`` escaping the commit loses the whole turn. So the kernel measures the depth of
a call's arguments where they enter (without recursion) and turns a call nested deeper than
:data:`MAX_ARGUMENT_DEPTH` into an invalid-arguments call: the tool is not called, the model gets
an error result that says why, and the turn goes on and commits.

Depth counts containers: the arguments object itself is level 1, and each array or object in it
adds one (``{"a": [1]}`` is 2 levels deep).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from lash._contract.types import ToolCall, ToolResult

__all__ = ["MAX_ARGUMENT_DEPTH", "admit_tool_call", "depth_problem", "invalid_arguments_result"]

#: How deep tool arguments may nest, the arguments object being level 1. Real tool schemas
#: rarely pass 10 levels; 64 (the default limit of .NET's System.Text.Json, and about a tenth of
#: what Python's recursion limit lets cattrs and json walk) leaves room for both.
MAX_ARGUMENT_DEPTH = 64


def _exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` levels deep (it is level 1).

    Iterative, and it never looks past level ``limit + 1``, so neither depth nor a cycle (a
    dict that contains itself, from a plugin's hook) can make it recurse or loop.
    """
    if type(value) is dict and limit >= 1:  # a JSON object of scalars (most calls): level 1
        for child in value.values():
            if type(child) not in _SCALARS:
                break
        else:
            return False
    containers = (Mapping, list, tuple)
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, containers) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, Mapping) else item:
            # Scalars cannot nest: not worth a push. JSON's scalar types are tested by identity
            # first, since isinstance against the Mapping ABC is several times slower.
            if type(child) not in _SCALARS and isinstance(child, containers):
                stack.append((child, depth + 1))
    return False


_SCALARS = frozenset((str, int, float, bool, type(None)))


#: What the model reads about arguments nested too deep (after naming the tool).
_TOO_DEEP = (
    f"the arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels of arrays and objects "
    "(the limit for tool arguments); send flatter arguments"
)


def depth_problem(arguments: Any) -> str | None:
    """Why ``arguments`` cannot be accepted for their depth, or None when they nest shallowly."""
    return _TOO_DEEP if _exceeds(arguments, MAX_ARGUMENT_DEPTH) else None


def _cut_text(value: Any, depth: int = 1) -> str:
    """JSON text of ``value`` down to one level past the limit, deeper containers as ``[…]``.

    Recursion is bounded by the limit, so this is safe on arguments of any depth.
    """
    if isinstance(value, Mapping):
        if depth > MAX_ARGUMENT_DEPTH:
            return "{…}"
        items = (f"{json.dumps(str(k))}: {_cut_text(v, depth + 1)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list | tuple):
        if depth > MAX_ARGUMENT_DEPTH:
            return "[…]"
        return "[" + ", ".join(_cut_text(v, depth + 1) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, default=repr)


def admit_tool_call(call: ToolCall) -> ToolCall:
    """The call as the kernel records it: ``call`` itself, unless its arguments nest deeper than
    :data:`MAX_ARGUMENT_DEPTH`; then an invalid-arguments call (no ``arguments``, and their text
    cut one level past the limit in ``invalid_arguments``), which the session can store and the
    turn answers with an error result."""
    if call.invalid_arguments is not None or not _exceeds(call.arguments, MAX_ARGUMENT_DEPTH):
        return call
    return attrs.evolve(call, arguments={}, invalid_arguments=_cut_text(call.arguments))


def _text_exceeds(text: str, limit: int) -> bool:
    """Whether the brackets of JSON ``text`` (outside strings) nest more than ``limit`` deep."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def invalid_arguments_result(call: ToolCall) -> ToolResult:
    """The error result of a call whose ``invalid_arguments`` are set: too deep, or not a JSON
    object at all."""
    raw = call.invalid_arguments or ""
    if _text_exceeds(raw, MAX_ARGUMENT_DEPTH):
        return ToolResult(call.id, f"tool {call.name!r} was not called: {_TOO_DEEP}", True)
    return ToolResult(
        call.id,
        f"tool {call.name!r}: arguments are not a JSON object: {raw[:200]!r}; "
        "send the arguments as a JSON object",
        True,
    )
