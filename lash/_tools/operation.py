"""Typed plugin operations: built at registration from a typed function, like tools.

``fn(context, args) -> result`` (sync or ``async``): ``context`` is a
:class:`lash.OperationContext` (a task's, its :class:`lash.ProcessContext`); ``args``, when the
function takes it, is annotated with an attrs class (its JSON schema is the operation's
``args_schema``; arguments a host passes as JSON are checked and structured into it) or left
unannotated (the JSON object as given); the return annotation gives ``result_schema``
(unannotated: any JSON). A bad function fails at registration, attributed to its plugin.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from lash._contract.operations import (
    OPERATION_KINDS,
    SESSION_RULES,
    OperationInfo,
    OperationKind,
    SessionRule,
)
from lash._contract.serialization import converter, validation_problems
from lash._tools.tool import _merge, _shape_problems, json_schema, parse_docstring
from lash.errors import OperationError

__all__ = ["NAME_RULE", "Operation", "as_operation"]

#: What an operation name may hold: letters, digits and ``_ - . :`` (hosts put names in URLs
#: and command lines), 1 to 128 characters.
NAME_RULE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


@attrs.frozen
class Operation:
    """One registered operation: what a host can discover and call."""

    name: str
    plugin: str
    fn: Callable[..., Any]
    kind: OperationKind
    session: SessionRule
    description: str
    #: The args class (``None``: the function takes no args; ``Any``: the JSON as given).
    args_type: Any
    result_type: Any
    args_schema: Mapping[str, Any]
    result_schema: Mapping[str, Any]

    def info(self) -> OperationInfo:
        return OperationInfo(
            name=self.name,
            plugin=self.plugin,
            kind=self.kind,
            session=self.session,
            description=self.description,
            args_schema=self.args_schema,
            result_schema=self.result_schema,
        )

    def _error(self, message: str, *, field: str | None = None) -> OperationError:
        return OperationError(
            f"operation {self.name!r} of plugin {self.plugin!r}: {message}",
            operation=self.name,
            plugin=self.plugin,
            field=field,
        )

    def bind(self, args: Any) -> Any:
        """The args to call with: an instance of the args class passes; a mapping is checked
        against it and structured. :raises OperationError: naming each bad field."""
        if self.args_type is None:
            if args:
                raise self._error(f"takes no arguments, got {args!r}")
            return None
        if isinstance(self.args_type, type) and isinstance(args, self.args_type):
            return args
        data = {} if args is None else args
        if not isinstance(data, Mapping):
            raise self._error(f"args must be a JSON object (a mapping), got {args!r}")
        data = dict(data)
        if self.args_type is Any:
            return data
        problems = list(_shape_problems(data, self.args_type, ""))
        try:
            return converter().structure(data, self.args_type)
        except Exception as exc:
            problems = _merge(problems, validation_problems(exc, data) or [str(exc)])
        field = re.split(r"[.\[:]", problems[0], maxsplit=1)[0] if problems else None
        raise self._error("invalid args: " + "; ".join(problems), field=field)

    def check_result(self, value: Any) -> Any:
        """The result, checked against the return annotation. :raises OperationError:"""
        tp = self.result_type
        if tp is Any:
            return value
        if isinstance(tp, type) and attrs.has(tp):
            if isinstance(value, tp):
                return value
            raise self._error(f"returned {value!r}, expected a {tp.__qualname__}")
        try:
            problems = list(_shape_problems(value, tp, "result"))
            if not problems:
                return converter().structure(value, tp)
        except Exception as exc:
            problems = [str(exc)]
        raise self._error(f"returned {value!r}, which does not fit its annotation: {problems}")


def _hints(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception as exc:  # an unresolvable annotation: say which operation
        raise TypeError(f"operation {name!r}: cannot resolve its type hints: {exc}") from None


def as_operation(
    plugin: str,
    name: str,
    fn: Callable[..., Any],
    *,
    kind: str = "query",
    session: str = "optional",
    description: str | None = None,
) -> Operation:
    """Build (and check) an operation. :raises TypeError, ValueError: naming what is wrong."""
    if not isinstance(name, str) or not NAME_RULE.fullmatch(name):
        raise ValueError(
            f"operation name must be 1 to 128 letters, digits, '_', '-', '.' or ':', got {name!r}"
        )
    if kind not in OPERATION_KINDS:
        raise ValueError(f"operation {name!r}: kind must be one of {OPERATION_KINDS}, got {kind!r}")
    if session not in SESSION_RULES:
        raise ValueError(
            f"operation {name!r}: session must be one of {SESSION_RULES}, got {session!r}"
        )
    if not callable(fn):
        raise TypeError(f"operation {name!r}: fn must be callable, got {fn!r}")
    params = list(inspect.signature(fn).parameters.values())
    variadic = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
    if not 1 <= len(params) <= 2 or variadic:
        raise TypeError(
            f"operation {name!r}: fn must take (context) or (context, args), got "
            f"{[p.name for p in params]}"
        )
    if kind == "task" and (len(params) != 2 or not inspect.iscoroutinefunction(fn)):
        # It runs as a process: an async run(context, payload), the args being the payload.
        raise TypeError(
            f"operation {name!r}: a task's fn must be `async def fn(context: "
            "lash.ProcessContext, args)`"
        )
    hints = _hints(fn, name)
    args_type: Any = None
    args_schema: Mapping[str, Any] = _NO_ARGS
    if len(params) == 2:
        args_type = hints.get(params[1].name, Any)
        if args_type is not Any and not (isinstance(args_type, type) and attrs.has(args_type)):
            raise TypeError(
                f"operation {name!r}: its args parameter {params[1].name!r} must be annotated "
                f"with an attrs class (or not at all), got {args_type!r}"
            )
        args_schema = {"type": "object"} if args_type is Any else _checked_schema(name, args_type)
    result_type = hints.get("return", Any)
    if result_type is type(None):
        result_type = None
    result_schema = {"type": "null"} if result_type is None else _checked_schema(name, result_type)
    summary, _ = parse_docstring(fn.__doc__)
    return Operation(
        name=name,
        plugin=plugin,
        fn=fn,
        kind=kind,  # type: ignore[arg-type]  # checked above
        session=session,  # type: ignore[arg-type]  # checked above
        description=description if description is not None else summary,
        args_type=args_type,
        result_type=Any if result_type is None else result_type,
        args_schema=args_schema,
        result_schema=result_schema,
    )


def _checked_schema(name: str, tp: Any) -> dict[str, Any]:
    try:
        return json_schema(tp)
    except TypeError as exc:
        raise TypeError(f"operation {name!r}: {exc}") from None
