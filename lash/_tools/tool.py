"""Typed tools: a JSON schema from type hints, validated arguments, results the model can read.

A tool is a :class:`Tool`: a name, a description and a JSON schema the model sees, and a Python
callable the kernel invokes. :func:`tool` builds one from a typed function (the schema comes from
its type hints, the description from its docstring); :func:`raw_tool` from a hand-written schema;
:func:`as_tool` is what the ``register_tools`` registrar calls on whatever a plugin registers.

:meth:`Tool.invoke` never raises for a failing call: invalid arguments, exceptions raised by the
tool and timeouts all become error :class:`~lash.ToolResult` values the model reads and can react
to. Only cancellation (:class:`asyncio.CancelledError`) propagates, because it is cooperative.
"""

from __future__ import annotations

# asyncio (with ssl, sockets and threads behind it) is imported by the functions that run tools,
# not here: building and registering tools (``lash plugins``, ``lash --help``, every core build)
# must not pay for it. The kernel that runs turns has imported it long before.
import contextvars
import copy
import enum
import importlib
import inspect
import json
import logging
import re
import sys
import threading
import types
import typing
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.serialization import converter, type_name, validation_problems
from lash._contract.services import ToolContext, check_timeout
from lash._contract.slots import maker
from lash._contract.types import ToolResult, ToolSpec
from lash._tools.arguments import depth_problem

if TYPE_CHECKING:
    import asyncio

__all__ = ["Tool", "as_tool", "json_schema", "raw_tool", "tool"]

T = TypeVar("T")

logger = logging.getLogger("lash.tools")

#: What providers accept as a tool name (the strictest common rule, OpenAI's and Anthropic's).
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

_SUPPORTED = (
    "str, int, float, bool, Any, X | None, list[X], tuple[X, ...], set[X], frozenset[X], "
    "dict[str, X], Literal[...], Enum classes and attrs classes"
)


# --------------------------------------------------------------------------------------------
# The context a tool receives (lash.ToolContext, one of the session services)
# --------------------------------------------------------------------------------------------


def _is_context(hint: Any) -> bool:
    return hint is ToolContext


# --------------------------------------------------------------------------------------------
# JSON schema from type hints
# --------------------------------------------------------------------------------------------

_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_UNIONS = (typing.Union, types.UnionType)
_ARRAYS = (list, tuple, set, frozenset)
_NONE = type(None)


class _Unsupported(TypeError):
    """A type hint no tool schema can express (re-raised naming the function and parameter)."""


def _json_type(value: Any) -> str | None:
    # type(), not isinstance(): bool is an int and IntEnum members are ints.
    if value is None:
        return "null"
    return _PRIMITIVES.get(type(value))


def _enum_schema(values: list[Any], tp: Any) -> dict[str, Any]:
    kinds = {_json_type(v) for v in values}
    if None in kinds or not values:
        raise _Unsupported(f"{type_name(tp)} has values that are not JSON strings or numbers")
    if len(kinds) == 1:
        return {"type": kinds.pop(), "enum": values}
    return {"enum": values}


def _array_item(tp: Any) -> Any:
    """The item type of an array-like hint (``Any`` when bare), or raise for fixed tuples."""
    args = typing.get_args(tp)
    if not args:
        return Any
    if typing.get_origin(tp) is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise _Unsupported(f"{type_name(tp)}: only tuple[X, ...] is supported")
    return args[0]


def _mapping_value(tp: Any) -> Any:
    args = typing.get_args(tp)
    if not args:
        return Any
    if args[0] is not str:
        raise _Unsupported(f"{type_name(tp)}: JSON object keys are strings, use dict[str, X]")
    return args[1]


def _is_array(tp: Any) -> bool:
    return tp in _ARRAYS or typing.get_origin(tp) in _ARRAYS


def _is_mapping(tp: Any) -> bool:
    return tp in (dict, Mapping) or typing.get_origin(tp) in (dict, Mapping)


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _optional_member(tp: Any) -> Any:
    """``X`` for ``X | None``; raise for other unions (the converter cannot pick a member)."""
    members = [a for a in typing.get_args(tp) if a is not _NONE]
    if len(members) != 1:
        raise _Unsupported(f"{type_name(tp)}: unions other than X | None are not supported")
    return members[0]


def _default(value: Any) -> tuple[bool, Any]:
    """``(True, json_value)`` when a default can be shown in the schema, else ``(False, None)``."""
    try:
        # (NaN and the infinities are not JSON: the providers' HTTP client refuses a request
        # that holds one, so shown, such a default would fail every model call)
        return True, json.loads(json.dumps(converter().unstructure(value), allow_nan=False))
    except Exception:  # a default that is not JSON data is just not shown to the model
        return False, None


def _schema(tp: Any, seen: tuple[type, ...] = ()) -> dict[str, Any]:
    """The JSON schema of one type hint."""
    if tp is Any:
        return {}
    if tp in _PRIMITIVES:
        return {"type": _PRIMITIVES[tp]}
    origin = typing.get_origin(tp)
    if origin in _UNIONS:
        return {"anyOf": [_schema(_optional_member(tp), seen), {"type": "null"}]}
    if origin is Literal:
        return _enum_schema(list(typing.get_args(tp)), tp)
    if _is_enum(tp):
        return _enum_schema([member.value for member in tp], tp)
    if _is_array(tp):
        schema: dict[str, Any] = {"type": "array"}
        item = _schema(_array_item(tp), seen)
        if item:
            schema["items"] = item
        if tp in (set, frozenset) or origin in (set, frozenset):
            schema["uniqueItems"] = True
        return schema
    if _is_mapping(tp):
        value = _schema(_mapping_value(tp), seen)
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    if isinstance(tp, type) and attrs.has(tp):
        return _attrs_schema(tp, seen)
    raise _Unsupported(f"unsupported type {type_name(tp)}")


def json_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of the type hint ``tp`` (``{}`` for ``Any``), as tools' parameters get
    theirs. :raises TypeError: a type no schema can express (named)."""
    return _schema(tp)


def _attrs_schema(cls: type, seen: tuple[type, ...]) -> dict[str, Any]:
    if cls in seen:
        raise _Unsupported(f"attrs class {cls.__qualname__} is recursive")
    try:
        attrs.resolve_types(cls)
    except Exception as exc:  # an unresolvable forward reference: say which class
        raise _Unsupported(f"cannot resolve the type hints of {cls.__qualname__}: {exc}") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    # The converter only fills fields that are arguments of __init__.
    for field in (f for f in attrs.fields(cls) if f.init):
        try:
            prop = _schema(field.type, (*seen, cls))
        except _Unsupported as exc:
            raise _Unsupported(f"{cls.__qualname__}.{field.name}: {exc}") from None
        if field.default is attrs.NOTHING:
            required.append(field.name)
        elif not isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            shown, value = _default(field.default)
            if shown:
                prop["default"] = value
        properties[field.name] = prop
    schema: dict[str, Any] = {"type": "object"}
    doc = cls.__dict__.get("__doc__")
    if isinstance(doc, str) and doc.strip():
        schema["description"] = inspect.cleandoc(doc)
    schema.update(properties=properties, required=required, additionalProperties=False)
    return schema


# --------------------------------------------------------------------------------------------
# Argument checks the converter does not make
# --------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _join(path: str, key: str | int) -> str:
    # Same spelling as validation_problems, so both kinds of lines read alike.
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _expected(tp: Any) -> str:
    """How a problem line spells the expected type (enums by their values, as the converter's)."""
    if _is_enum(tp):
        return "one of " + ", ".join(repr(member.value) for member in tp)
    if typing.get_origin(tp) in _UNIONS and _is_enum(_optional_member(tp)):
        return f"{_expected(_optional_member(tp))}, None"
    return type_name(tp)


def _bad(value: Any, tp: Any, path: str) -> str:
    return f"{path}: expected {_expected(tp)}, got {_describe(value)}"


def _shape_problems(value: Any, tp: Any, path: str, shown: Any = None) -> Iterator[str]:
    """Problems the converter lets through: JSON shapes and exact literal types.

    The converter iterates whatever it is given, so ``"abc"`` would become ``["a", "b", "c"]``
    for a ``list[str]``; and it compares literals with ``==``, so ``true`` would pass for
    ``Literal[1]``. Model output is JSON, so arrays must be lists and literals must match in type.
    ``shown`` is the type named in the message (the whole ``X | None`` while checking ``X``).
    """
    if tp in _PRIMITIVES or tp is Any:
        return  # the converter checks these itself (the common case: checked first, and cheap)
    origin = typing.get_origin(tp)
    if origin in _UNIONS:
        if value is not None:
            yield from _shape_problems(value, _optional_member(tp), path, tp)
    elif origin is Literal or _is_enum(tp):
        allowed = typing.get_args(tp) if origin is Literal else [m.value for m in tp]
        if not any(type(value) is type(a) and value == a for a in allowed):
            yield _bad(value, shown or tp, path)
    elif _is_array(tp):
        if not isinstance(value, list | tuple):
            yield _bad(value, shown or tp, path)
            return
        item = _array_item(tp)
        for index, element in enumerate(value):
            yield from _shape_problems(element, item, _join(path, index))
    elif _is_mapping(tp) and isinstance(value, Mapping):
        item = _mapping_value(tp)
        for key, element in value.items():
            yield from _shape_problems(element, item, _join(path, str(key)))
    elif isinstance(tp, type) and attrs.has(tp) and isinstance(value, Mapping):
        for field in attrs.fields(tp):
            if field.init and field.name in value:
                yield from _shape_problems(value[field.name], field.type, _join(path, field.name))


def _merge(first: list[str], second: list[str]) -> list[str]:
    """``first`` plus the lines of ``second`` about paths ``first`` does not already cover."""
    paths = [line.split(": ", 1)[0] for line in first]

    def covered(line: str) -> bool:
        path = line.split(": ", 1)[0]
        return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in paths)

    return first + [line for line in second if not covered(line)]


class _InvalidArguments(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


#: Turns the model's arguments into the positional and keyword arguments of the call.
_Binder = Callable[[Mapping[str, Any], "ToolContext"], tuple[tuple[Any, ...], dict[str, Any]]]


@attrs.frozen
class _TypedArguments:
    """Validates arguments against a function's typed parameters and binds them for the call."""

    cls: type  # attrs class with one field per parameter the model fills
    hints: Mapping[str, Any]
    context_params: tuple[str, ...]
    positional_only: tuple[str, ...]
    # Whether a hint is one _shape_problems has something to say about (the converter checks
    # primitives itself): a tool taking only those skips the look at each argument.
    _shaped: bool = attrs.field(init=False, repr=False)

    # When every hint is str, int, float or bool: arguments that give each parameter a value of
    # exactly its type, and nothing else, are what the converter would return unchanged (its
    # primitive hooks pass such values through), so they are bound without it.
    _exact: Mapping[str, type] | None = attrs.field(init=False, repr=False)

    @_shaped.default
    def _any_shaped(self) -> bool:
        return any(tp not in _PRIMITIVES and tp is not Any for tp in self.hints.values())

    @_exact.default
    def _all_primitive(self) -> Mapping[str, type] | None:
        hints = dict(self.hints)
        return hints if all(tp in _PRIMITIVES for tp in hints.values()) else None

    def __call__(
        self, arguments: Mapping[str, Any], context: ToolContext
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        exact = self._exact
        if exact is not None and len(arguments) == len(exact):
            values: dict[str, Any] = {}
            for name, tp in exact.items():
                value = arguments.get(name, _ABSENT)
                if type(value) is not tp:
                    break  # missing, or to be converted or refused: the converter's call
                values[name] = value
            else:
                return self._split(values, context)
        data = dict(arguments)
        problems = (
            [
                line
                for name, value in data.items()
                if name in self.hints
                for line in _shape_problems(value, self.hints[name], name)
            ]
            if self._shaped
            else []
        )
        try:
            structured: Any = converter().structure(data, self.cls)
        except Exception as exc:
            problems = _merge(problems, validation_problems(exc, data) or [str(exc)])
        if problems:
            # One line per problem, in the order of the parameters (unknown keys last).
            order = {name: index for index, name in enumerate(self.hints)}
            problems.sort(
                key=lambda line: order.get(re.split(r"[.\[:]", line, maxsplit=1)[0], len(order))
            )
            raise _InvalidArguments(problems)
        values = {name: getattr(structured, name) for name in self.hints}
        return self._split(values, context)

    def _split(
        self, values: dict[str, Any], context: ToolContext
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's positional and keyword arguments, from the parameters' ``values``."""
        if self.context_params:
            values.update(dict.fromkeys(self.context_params, context))
        if not self.positional_only:
            return (), values
        return tuple(values.pop(name) for name in self.positional_only), values


def _raw_arguments(
    arguments: Mapping[str, Any], context: ToolContext
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return (dict(arguments), context), {}


# --------------------------------------------------------------------------------------------
# Docstrings: description and parameter descriptions
# --------------------------------------------------------------------------------------------

_REST_FIELD = re.compile(
    r":(param|parameter|arg|argument|key|keyword|type|returns?|rtype|raises?|except|exception"
    r"|yields?|ytype)\b"
)
_REST_PARAM = re.compile(
    r":(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*?\s)?\**(\w+)\s*:\s*(.*)"
)
_GOOGLE_HEADER = re.compile(
    r"(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters"
    r"|Returns?|Yields?|Raises)\s*:"
)
_GOOGLE_ENTRY = re.compile(r"\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)")
_NUMPY_HEADERS = {"Parameters", "Other Parameters", "Returns", "Yields", "Raises"}
_NUMPY_ENTRY = re.compile(r"\**(\w+)\s*(?::.*)?")
_PARAM_SECTIONS = {"Args", "Arguments", "Parameters", "Params", "Keyword Args"}
_PARAM_SECTIONS |= {"Keyword Arguments", "Other Parameters"}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block(lines: list[str], start: int, indent: int) -> tuple[list[str], int]:
    """The lines from ``start`` indented deeper than ``indent`` (blank lines inside kept)."""
    body: list[str] = []
    i = start
    while i < len(lines):
        if lines[i].strip():
            if _indent(lines[i]) <= indent:
                break
            body.append(lines[i].strip())
        else:
            rest = [line for line in lines[i:] if line.strip()]
            if not rest or _indent(rest[0]) <= indent:
                break
        i += 1
    return body, i


def _is_numpy_header(lines: list[str], i: int) -> bool:
    return (
        lines[i].strip() in _NUMPY_HEADERS
        and i + 1 < len(lines)
        and re.fullmatch(r"-{3,}", lines[i + 1].strip()) is not None
    )


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a docstring into the description and the descriptions of its parameters.

    Understands reST fields (``:param x: ...``), Google sections (``Args:``) and numpy sections
    (``Parameters`` underlined with dashes). The description is the cleaned docstring up to the
    first such field or section.
    """
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    params: dict[str, str] = {}
    cut: int | None = None
    i = 0
    while i < len(lines):
        text, indent = lines[i].strip(), _indent(lines[i])
        if _REST_FIELD.match(text):
            cut = i if cut is None else cut
            body, i = _block(lines, i + 1, indent)
            if match := _REST_PARAM.fullmatch(text):
                params[match[1]] = " ".join([match[2], *body]).strip()
            continue
        google = _GOOGLE_HEADER.fullmatch(text)
        numpy = _is_numpy_header(lines, i)
        if not (google or numpy):
            i += 1
            continue
        cut = i if cut is None else cut
        section = google[1] if google else text
        i += 1 if google else 2
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            entry, entry_indent = lines[i].strip(), _indent(lines[i])
            # Google entries are indented under their header; numpy entries are level with it.
            if entry_indent < indent or (google and entry_indent == indent):
                break
            if numpy and (_is_numpy_header(lines, i) or not _NUMPY_ENTRY.fullmatch(entry)):
                break
            body, i = _block(lines, i + 1, entry_indent)
            match = (_GOOGLE_ENTRY if google else _NUMPY_ENTRY).fullmatch(entry)
            if match and section in _PARAM_SECTIONS:
                head = match[2] if google else ""
                params[match[1]] = " ".join([head, *body]).strip()
    description = "\n".join(lines[:cut]).strip()
    return description, params


# --------------------------------------------------------------------------------------------
# The tool
# --------------------------------------------------------------------------------------------


def _check_name(value: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"invalid tool name {value!r}: use 1 to 64 letters, digits, '_' or '-' (pass name=)"
        )


async def _in_thread(call: Callable[[], Any], name: str) -> Any:
    """Run a sync call in its own daemon thread; the awaiting task may abandon it.

    Not ``asyncio.to_thread``: the loop's default executor is joined when the loop closes, so a
    hung tool would hang the host's shutdown, and it would hold one of the executor's few workers.
    A daemon thread per call costs little next to a tool call and is simply left behind.
    """
    import asyncio  # see the note at the imports

    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if future.done():  # abandoned after a timeout or a cancellation
            return
        if ok:
            future.set_result(value)
        elif isinstance(value, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            outcome = (True, context.run(call))
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            outcome = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *outcome)
        except RuntimeError:  # the loop is closed: nobody is waiting for this call any more
            pass

    threading.Thread(target=work, name=f"lash-tool-{name}", daemon=True).start()
    return await future


#: A tool call's value before its tool returned.
_SUSPENDED: Any = object()


class _Resumed:
    """The rest of a coroutine whose first step already ran and suspended on ``pending``, as an
    awaitable: it hands the task what the coroutine waits for and forwards what the task sends
    or throws into it, exactly as ``await`` would (which cannot pick up a started coroutine)."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: types.CoroutineType[Any, Any, Any], pending: Any) -> None:
        self._coro, self._pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation: the coroutine decides what it means
                try:
                    pending = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as done:
                    return done.value


def _json_extra(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_ABSENT = object()

#: What tools commonly return, none of it awaitable (known without asking the Awaitable ABC).
_PLAIN_VALUES = frozenset((str, dict, list, int, float, bool, type(None), ToolResult))


def _render(value: Any) -> str:
    """What the model reads of a returned value."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    data = converter().unstructure(value)
    return json.dumps(data, sort_keys=False, ensure_ascii=False, default=_json_extra)


#: When a tool's calls need a human's approval (``lash.tool(fn, approval=...)``).
Approval = Literal["never", "always"]
APPROVALS: tuple[str, ...] = ("never", "always")


@attrs.frozen(eq=False)
class Tool:
    """A tool the model can call: build one with :func:`lash.tool` or :func:`lash.raw_tool`.

    ``parameters`` is the JSON schema (``"type": "object"``) of the arguments; ``fn`` is the
    original function, still callable (calling the tool calls it), so it can be unit-tested
    directly. ``timeout`` (seconds) overrides the default the kernel passes in the context.
    ``approval`` is ``"never"`` (the default) or ``"always"``: every call of the tool then waits
    for a human's approval before it runs (:doc:`/approvals`).
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    fn: Callable[..., Any]
    timeout: float | None = attrs.field(default=None, kw_only=True)
    approval: Approval = attrs.field(default="never", kw_only=True)
    _bind: _Binder = attrs.field(default=_raw_arguments, kw_only=True, alias="bind", repr=False)
    # Whether fn is a coroutine function, asked once (inspect unwraps partials and reads code
    # flags: a microsecond a call).
    _is_async: bool = attrs.field(init=False, repr=False)

    __module__ = "lash"

    @_is_async.default
    def _fn_is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def __attrs_post_init__(self) -> None:
        _check_name(self.name)
        check_timeout(self.timeout)
        if self.approval not in APPROVALS:
            raise ValueError(
                f"tool {self.name!r}: approval must be 'never' or 'always', got {self.approval!r}"
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the original function directly (no validation, no timeout)."""
        return self.fn(*args, **kwargs)

    def spec(self) -> ToolSpec:
        """The tool as the model sees it."""
        return ToolSpec(self.name, self.description, self.parameters)

    def _error(self, context: ToolContext, message: str) -> ToolResult:
        return ToolResult(context.call_id, message, is_error=True)

    async def invoke(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolResult:
        """Validate ``arguments``, call the tool within its timeout, and render its result.

        Every failure becomes an error result naming this tool; only cancellation propagates.
        """
        context.raise_if_cancelled()
        if type(arguments) is not dict and not isinstance(arguments, Mapping):
            return self._error(
                context,
                f"invalid arguments for tool {self.name!r}: expected a JSON object, "
                f"got {_describe(arguments)}",
            )
        # Before binding, which walks the arguments recursively (as a hook may have replaced
        # the arguments the kernel admitted, this cannot rely on the kernel's check alone).
        too_deep = depth_problem(arguments)
        if too_deep is not None:
            return self._error(context, f"invalid arguments for tool {self.name!r}: {too_deep}")
        try:
            args, kwargs = self._bind(arguments, context)
        except _InvalidArguments as exc:
            lines = "\n".join(f"  - {problem}" for problem in exc.problems)
            return self._error(context, f"invalid arguments for tool {self.name!r}:\n{lines}")
        except Exception as exc:  # a bug in binding must still not escape into the turn
            logger.exception("binding the arguments of tool %r failed", self.name)
            return self._error(context, f"tool {self.name!r} could not be called: {exc}")

        # asyncio as the note at the imports says, without an import statement (~0.4 us per
        # call even once the module is loaded): a running tool call has loaded it.
        aio: Any = sys.modules.get("asyncio") or importlib.import_module("asyncio")

        limit = self.timeout if self.timeout is not None else context.timeout
        deadline: asyncio.Timeout | None = None
        try:
            call: Any = None
            value: Any = _SUSPENDED
            if self._is_async:
                call = self.fn(*args, **kwargs)
                if type(call) is types.CoroutineType:
                    # Its first step runs here: a tool that returns without suspending cannot
                    # be interrupted by a deadline, so it is spared the timer (~7 us a call).
                    try:
                        pending = call.send(None)
                    except StopIteration as done:
                        value = done.value
                    else:
                        call = _Resumed(call, pending)
            if value is _SUSPENDED or (
                type(value) not in _PLAIN_VALUES and inspect.isawaitable(value)
            ):
                deadline = aio.timeout(limit)
                async with deadline:
                    if value is not _SUSPENDED:
                        value = await value
                    elif call is not None:
                        value = await call
                    else:
                        value = await _in_thread(lambda: self.fn(*args, **kwargs), self.name)
                    # A sync function may hand back an awaitable (a wrapped coroutine function).
                    if inspect.isawaitable(value):
                        value = await value
        except aio.CancelledError:
            context.cancelled.set()  # lets an abandoned sync tool notice and stop
            raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                context.cancelled.set()
                return self._error(context, f"tool {self.name!r} timed out after {limit:g} s")
            logger.warning("tool %r raised", self.name, exc_info=exc)
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return self._error(context, f"tool {self.name!r} raised {detail}")

        if isinstance(value, ToolResult):
            return attrs.evolve(value, call_id=context.call_id)
        try:
            content = _render(value)
        except Exception as exc:
            return self._error(
                context,
                f"tool {self.name!r} returned a value that cannot be shown as JSON: {exc}",
            )
        return _result(context.call_id, content)


#: A tool call's result, by its maker (the class's ``__init__`` as attribute stores): one a call.
_result = maker(ToolResult)

# --------------------------------------------------------------------------------------------
# Building tools
# --------------------------------------------------------------------------------------------


def _function_name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn)))


def _from_function(
    fn: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    timeout: float | None,
    approval: Approval = "never",
) -> Tool:
    where = f"tool function {_function_name(fn)}"
    if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
        raise TypeError(f"expected a function to turn into a tool, got {fn!r}")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(f"{where} is a generator; a tool returns one value")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # NameError for a forward reference that does not resolve
        raise TypeError(f"cannot resolve the type hints of {where}: {exc}") from None

    doc_description, doc_params = parse_docstring(fn.__doc__)
    fields: dict[str, Any] = {}
    model_hints: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    context_params: list[str] = []
    positional_only: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            stars = "*" if param.kind is param.VAR_POSITIONAL else "**"
            raise TypeError(f"{where} takes {stars}{param.name}; tools take named parameters only")
        if param.name not in hints:
            raise TypeError(
                f"parameter {param.name!r} of {where} has no type hint; tools need one per "
                "parameter to build the JSON schema"
            )
        if param.kind is param.POSITIONAL_ONLY:
            positional_only.append(param.name)
        hint = hints[param.name]
        if _is_context(hint):
            context_params.append(param.name)
            continue
        try:
            prop = _schema(hint)
        except _Unsupported as exc:
            raise TypeError(
                f"parameter {param.name!r} of {where}: {exc}; tools accept {_SUPPORTED}"
            ) from None
        if param.name in doc_params:
            prop["description"] = doc_params[param.name]
        if param.default is param.empty:
            required.append(param.name)
            fields[param.name] = attrs.field(type=hint, kw_only=True, alias=param.name)
        else:
            shown, value = _default(param.default)
            if shown:
                prop["default"] = value
            fields[param.name] = attrs.field(
                type=hint, default=param.default, kw_only=True, alias=param.name
            )
        properties[param.name] = prop
        model_hints[param.name] = hint

    tool_name = name if name is not None else getattr(fn, "__name__", "")
    arguments = _TypedArguments(
        cls=attrs.make_class(f"{tool_name}_arguments", fields),
        hints=model_hints,
        context_params=tuple(context_params),
        positional_only=tuple(positional_only),
    )
    return Tool(
        tool_name,
        description if description is not None else doc_description,
        {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
        fn,
        timeout=timeout,
        approval=approval,
        bind=arguments,
    )


@overload
def tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    approval: Approval = "never",
) -> Tool: ...


@overload
def tool(
    fn: None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    approval: Approval = "never",
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    approval: Approval = "never",
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function (sync or async) into a :class:`Tool`; use bare or called::

        @lash.tool
        def add(a: int, b: int = 0) -> int:
            \"\"\"Add two numbers.\"\"\"
            return a + b

        @lash.tool(name="search", timeout=10)
        async def search_docs(query: str, ctx: lash.ToolContext) -> list[Hit]: ...

    The JSON schema comes from the type hints (str, int, float, bool, Any, ``X | None``,
    ``list[X]``, ``tuple[X, ...]``, ``set[X]``, ``dict[str, X]``, ``Literal``, Enum and attrs
    classes); parameters with defaults are optional. The description is the docstring up to its
    parameter section, whose entries describe the parameters. A parameter annotated
    :class:`lash.ToolContext` receives the call's context and is not part of the schema. Sync
    functions run in a worker thread so they cannot block the event loop. With
    ``approval="always"`` every call waits for a human's approval (:doc:`/approvals`).

    :raises TypeError: a parameter has no type hint or an unsupported one, or the function
        takes ``*args`` / ``**kwargs``.
    """
    if fn is None:

        def decorate(function: Callable[..., Any]) -> Tool:
            return _from_function(
                function, name=name, description=description, timeout=timeout, approval=approval
            )

        return decorate
    return _from_function(
        fn, name=name, description=description, timeout=timeout, approval=approval
    )


def raw_tool(
    name: str,
    description: str,
    parameters: Mapping[str, Any],
    handler: Callable[[dict[str, Any], ToolContext], Any],
    *,
    timeout: float | None = None,
    approval: Approval = "never",
) -> Tool:
    """A tool with a hand-written JSON schema; ``handler(arguments, context)``, sync or async.

    The arguments are passed as a dict, unchecked beyond being a JSON object: the handler
    validates them itself. Results, errors and timeouts are handled as for :func:`tool`.
    """
    if not callable(handler):
        raise TypeError(f"raw tool {name!r}: handler must be callable, got {handler!r}")
    if not isinstance(parameters, Mapping) or parameters.get("type") != "object":
        raise ValueError(
            f'raw tool {name!r}: parameters must be a JSON schema with "type": "object", '
            f"got {parameters!r}"
        )
    # A private copy: later changes to the caller's dict must not change what the model sees.
    schema = copy.deepcopy(dict(parameters))
    return Tool(
        name, description, schema, handler, timeout=timeout, approval=approval, bind=_raw_arguments
    )


def as_tool(obj: Any, *, name: str | None = None, description: str | None = None) -> Tool:
    """What ``register(...)`` in ``register_tools`` accepts, as a :class:`Tool`.

    A :class:`Tool` is returned as is, or renamed / re-described; a typed function is wrapped
    with :func:`tool`.

    :raises TypeError: ``obj`` is neither, or the function cannot be a tool (see :func:`tool`).
    """
    if isinstance(obj, Tool):
        found: Tool = obj
        if name is not None:
            found = attrs.evolve(found, name=name)
        if description is not None:
            found = attrs.evolve(found, description=description)
        return found
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return tool(obj, name=name, description=description)
    raise TypeError(
        f"cannot register {obj!r} as a tool: expected a lash.Tool or a typed function "
        "(use lash.raw_tool for a hand-written JSON schema)"
    )


resolve_here(globals())
