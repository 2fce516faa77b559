"""Typed tools: schemas from type hints, argument validation, results, timeouts, cancellation."""

from __future__ import annotations

import asyncio
import enum
import math
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal, Optional, TypeVar

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lash
import lash.store
from lash._contract.providers import ToolSpec
from lash._tools.tool import Tool, ToolContext, as_tool, parse_docstring, raw_tool, tool

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Stand-ins and types used by the tools below (module level, so string annotations resolve)
# --------------------------------------------------------------------------------------------


@attrs.define
class FakeSession:
    """The smallest SessionView: fixed id, per-class state instances."""

    id: str = "s1"
    is_root: bool = True
    config: lash.SessionConfig = attrs.field(factory=lash.SessionConfig)
    states: dict[type, Any] = attrs.field(factory=dict)

    def options(self, cls: type[T]) -> T:
        return cls()

    def state(self, cls: type[T]) -> T:
        value: T = self.states.setdefault(cls, cls())
        return value


def make_context(call_id: str = "call-1", **kwargs: Any) -> ToolContext:
    return ToolContext(FakeSession(), call_id, **kwargs)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.define
class Point:
    """A point on the plane."""

    x: int
    y: int = 0


@attrs.define
class Segment:
    start: Point
    end: Point
    label: str | None = None
    tags: list[str] = attrs.field(factory=list)


@attrs.define
class Node:
    children: list[Node]


@attrs.define
class Counter:
    calls: int = 0


class NotATypeForTools:
    pass


#: A default that JSON cannot show.
OPAQUE = object()


# --------------------------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------------------------


def one_parameter(hint: Any) -> Tool:
    def fn(value: Any) -> None:
        """Take one value."""

    fn.__annotations__ = {"value": hint, "return": None}
    return tool(fn)


def object_of(prop: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"value": prop},
        "required": ["value"] if required else [],
        "additionalProperties": False,
    }


POINT = {
    "type": "object",
    "description": "A point on the plane.",
    "properties": {"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}},
    "required": ["x"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (Any, {}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),  # noqa: UP045 - the typing spelling is under test
        (str | None, {"anyOf": [{"type": "string"}, {"type": "null"}]}),
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (list[Any], {"type": "array"}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (set[str], {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
        (dict[str, int], {"type": "object", "additionalProperties": {"type": "integer"}}),
        (dict[str, Any], {"type": "object"}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal[1, 2], {"type": "integer", "enum": [1, 2]}),
        (Literal["a", 1], {"enum": ["a", 1]}),
        (Color, {"type": "string", "enum": ["red", "green"]}),
        (Level, {"type": "integer", "enum": [1, 2]}),
        (Point, POINT),
        (
            list[Point | None],
            {"type": "array", "items": {"anyOf": [POINT, {"type": "null"}]}},
        ),
        (
            Segment,
            {
                "type": "object",
                "properties": {
                    "start": POINT,
                    "end": POINT,
                    "label": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["start", "end"],
                "additionalProperties": False,
            },
        ),
    ],
)
def test_schema_of_each_supported_type(hint: Any, expected: dict[str, Any]) -> None:
    """Each supported type hint maps to its JSON schema inside a closed object schema."""
    assert one_parameter(hint).parameters == object_of(expected)


def test_parameters_with_defaults_are_optional_and_show_their_default() -> None:
    """Only parameters without a default are required; JSON-able defaults appear in the schema."""

    @tool
    def search(query: str, limit: int = 10, mode: Color = Color.GREEN, since: Any = OPAQUE) -> str:
        """Search."""
        return query

    assert search.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "default": 10},
            "mode": {"type": "string", "enum": ["red", "green"], "default": "green"},
            "since": {},
        },
        "required": ["query"],
        "additionalProperties": False,
    }


def test_a_default_of_nan_or_infinity_is_not_shown() -> None:
    """A float default JSON cannot hold (``math.inf``) is left out of the schema, as any default
    that is not JSON is (before: ``"default": inf`` went into every model request, and the
    HTTP providers' JSON encoder refused the request: no turn could call the model)."""

    @tool
    def search(query: str, limit: float = math.inf, floor: float = -math.inf) -> str:
        """Search."""
        return query

    assert search.parameters == {
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "limit": {"type": "number"},
            "floor": {"type": "number"},
        },
        "required": ["query"],
        "additionalProperties": False,
    }


def test_tool_without_parameters_has_an_empty_object_schema() -> None:
    """A function without parameters takes an empty, closed object."""

    @tool
    def now() -> str:
        """The time."""
        return "noon"

    assert now.parameters == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    ("hint", "words"),
    [
        (int | str, "int | str"),
        (tuple[int, str], "tuple[int, str]: only tuple[X, ...]"),
        (dict[int, str], "dict[int, str]: JSON object keys are strings"),
        (Node, "attrs class Node is recursive"),
        (NotATypeForTools, "NotATypeForTools"),
        (list[NotATypeForTools], "NotATypeForTools"),
    ],
)
def test_unsupported_type_is_a_type_error_naming_function_and_parameter(
    hint: Any, words: str
) -> None:
    """A hint no schema can express fails at decoration, naming the function and parameter."""
    with pytest.raises(TypeError) as info:
        one_parameter(hint)
    message = str(info.value)
    assert "'value'" in message
    assert "one_parameter.<locals>.fn" in message
    assert words in message


# --------------------------------------------------------------------------------------------
# Names and descriptions
# --------------------------------------------------------------------------------------------


def test_name_and_description_come_from_function_and_docstring() -> None:
    """The name is the function's; the description is the cleaned docstring."""

    @tool
    def lookup(word: str) -> str:
        """Look a word up in the dictionary.

        Returns the first definition found.
        """
        return word

    assert lookup.name == "lookup"
    assert (
        lookup.description
        == "Look a word up in the dictionary.\n\nReturns the first definition found."
    )
    assert lookup.spec() == ToolSpec("lookup", lookup.description, lookup.parameters)


def test_name_description_and_timeout_can_be_given() -> None:
    """Called with keywords, the decorator overrides name and description and sets a timeout."""

    @tool(name="find", description="Find things.", timeout=5)
    def search(query: str) -> str:
        """Ignored."""
        return query

    assert (search.name, search.description, search.timeout) == ("find", "Find things.", 5)


def test_google_args_section_describes_parameters() -> None:
    """A Google ``Args:`` section is cut from the description and describes each parameter."""

    @tool
    def move(x: int, y: int, speed: float = 1.0) -> str:
        """Move the robot.

        Args:
            x (int): Target column.
            y: Target row,
                counted from the top.
            speed: Cells per second.

        Returns:
            Where the robot ended up.
        """
        return "ok"

    assert move.description == "Move the robot."
    props = move.parameters["properties"]
    assert props["x"] == {"type": "integer", "description": "Target column."}
    assert props["y"] == {"type": "integer", "description": "Target row, counted from the top."}
    assert props["speed"] == {"type": "number", "description": "Cells per second.", "default": 1.0}


def test_rest_fields_describe_parameters() -> None:
    """reST ``:param x:`` fields are cut from the description and describe each parameter."""

    @tool
    def move(x: int, y: int) -> str:
        """Move the robot.

        :param x: Target column.
        :param int y: Target row,
            counted from the top.
        :returns: where it ended up.
        """
        return "ok"

    assert move.description == "Move the robot."
    assert move.parameters["properties"] == {
        "x": {"type": "integer", "description": "Target column."},
        "y": {"type": "integer", "description": "Target row, counted from the top."},
    }


def test_numpy_parameters_section_describes_parameters() -> None:
    """A numpy ``Parameters`` section is cut from the description and describes each parameter."""
    description, params = parse_docstring(
        """Move the robot.

        Parameters
        ----------
        x : int
            Target column.
        y
            Target row.

        Returns
        -------
        str
            Where it ended up.
        """
    )
    assert description == "Move the robot."
    assert params == {"x": "Target column.", "y": "Target row."}


def test_function_without_docstring_has_empty_description() -> None:
    """No docstring means an empty description, not an error."""

    def bare(x: int) -> int:
        return x

    assert tool(bare).description == ""


def test_invalid_names_and_timeouts_are_rejected() -> None:
    """Tool names follow the providers' rule and timeouts are positive numbers."""

    def fn(x: int) -> int:
        """Echo."""
        return x

    with pytest.raises(ValueError, match="invalid tool name 'has space'"):
        tool(fn, name="has space")
    with pytest.raises(ValueError, match="invalid tool name '<lambda>'"):
        as_tool(lambda: None)
    with pytest.raises(ValueError, match="positive number of seconds"):
        tool(fn, timeout=0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        make_context(timeout=-1)


# --------------------------------------------------------------------------------------------
# Calling tools
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_sync_tool_is_called_with_structured_arguments() -> None:
    """A sync tool gets its arguments structured (attrs instances, enums, tuples)."""
    seen: list[Any] = []

    @tool
    def draw(segment: Segment, color: Color, widths: tuple[int, ...] = ()) -> str:
        """Draw a segment."""
        seen.append((segment, color, widths))
        return "drawn"

    arguments = {
        "segment": {"start": {"x": 1}, "end": {"x": 2, "y": 3}},
        "color": "red",
        "widths": [1, 2],
    }
    result = await draw.invoke(arguments, make_context("c7"))
    assert result == lash.ToolResult("c7", "drawn")
    assert seen == [(Segment(Point(1), Point(2, 3)), Color.RED, (1, 2))]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["typed", "raw"])
async def test_arguments_nested_past_the_limit_are_an_error_result(kind: str) -> None:
    """Arguments 65 levels deep (the object and 64 lists) are refused before binding; 64 pass."""
    seen: list[Any] = []

    def keep(value: list[Any]) -> str:
        """Keep a value."""
        seen.append(value)
        return "kept"

    def keep_raw(arguments: dict[str, Any], context: ToolContext) -> str:
        seen.append(arguments["value"])
        return "kept"

    subject = (
        tool(keep) if kind == "typed" else raw_tool("keep", "Keep.", {"type": "object"}, keep_raw)
    )
    deepest: list[Any] = []
    for _ in range(62):  # 63 lists: with the arguments object, 64 levels
        deepest = [deepest]
    assert (await subject.invoke({"value": deepest}, make_context())).content == "kept"
    result = await subject.invoke({"value": [deepest]}, make_context("c2"))
    assert result == lash.ToolResult(
        "c2",
        "invalid arguments for tool 'keep': the arguments nest deeper than 64 levels of arrays "
        "and objects (the limit for tool arguments); send flatter arguments",
        is_error=True,
    )
    assert seen == [deepest]


@pytest.mark.anyio
async def test_arguments_that_contain_themselves_are_refused() -> None:
    """A dict that contains itself (only a plugin can build one) is refused, not walked forever."""

    @tool
    def keep(value: dict[str, Any]) -> str:
        """Keep a value."""
        return "kept"

    loop: dict[str, Any] = {}
    loop["again"] = loop
    result = await keep.invoke({"value": loop}, make_context())
    assert result.is_error and "nest deeper than 64 levels" in result.content


@pytest.mark.anyio
async def test_async_tool_is_awaited() -> None:
    """An async tool is awaited and its result rendered."""

    @tool
    async def double(n: int) -> int:
        """Double a number."""
        await asyncio.sleep(0)
        return n * 2

    assert await double.invoke({"n": 21}, make_context()) == lash.ToolResult("call-1", "42")


@pytest.mark.anyio
async def test_sync_tool_runs_off_the_event_loop() -> None:
    """A blocking sync tool runs in a worker thread, so the loop keeps running meanwhile."""
    gate = threading.Event()
    loop_thread = threading.get_ident()

    @tool
    def wait_for_gate() -> str:
        """Block until the gate opens."""
        assert threading.get_ident() != loop_thread
        return "opened" if gate.wait(5) else "the loop was blocked"

    async def open_gate() -> None:
        await asyncio.sleep(0.01)
        gate.set()

    result, _ = await asyncio.gather(wait_for_gate.invoke({}, make_context()), open_gate())
    assert result.content == "opened"


@pytest.mark.anyio
async def test_context_is_injected_by_annotation_whatever_its_name() -> None:
    """A parameter annotated ToolContext (or ToolContextView) receives the context, unseen."""
    got: list[Any] = []

    @tool
    def remember(note: str, where: ToolContext, view: lash.ToolContext) -> str:
        """Remember a note in session state."""
        where.state(Counter).calls += 1
        got.extend([where, view])
        return f"{note} in {where.session_id}"

    assert remember.parameters["properties"] == {"note": {"type": "string"}}
    assert remember.parameters["required"] == ["note"]
    context = make_context("c2")
    result = await remember.invoke({"note": "hi"}, context)
    assert result == lash.ToolResult("c2", "hi in s1")
    assert got == [context, context]
    assert context.session.state(Counter).calls == 1


@pytest.mark.anyio
async def test_positional_only_parameters_are_bound() -> None:
    """Positional-only parameters are filled like the others."""

    @tool
    def sub(a: int, b: int, /, ctx: ToolContext) -> int:
        """Subtract."""
        return a - b

    assert (await sub.invoke({"a": 5, "b": 3}, make_context())).content == "2"


@pytest.mark.anyio
async def test_bound_method_becomes_a_tool() -> None:
    """A bound method (a plugin class's tool) is wrapped without its self parameter."""

    class Greeter:
        def greet(self, who: str) -> str:
            """Greet someone."""
            return f"hello {who}"

    greet = as_tool(Greeter().greet)
    assert greet.parameters["properties"] == {"who": {"type": "string"}}
    assert (await greet.invoke({"who": "ann"}, make_context())).content == "hello ann"


def test_tool_stays_callable_for_unit_tests() -> None:
    """The decorated tool calls the original function; ``fn`` is that function."""

    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    wrapped = tool(add)
    assert wrapped(2, b=3) == 5
    assert wrapped.fn is add


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "content"),
    [
        ("plain text", "plain text"),
        (None, ""),
        (3, "3"),
        (2.5, "2.5"),
        (True, "true"),
        ([1, "a"], '[1, "a"]'),
        ({"b": 1, "a": "é"}, '{"b": 1, "a": "é"}'),
        (Point(1, 2), '{"x": 1, "y": 2}'),
        (Color.GREEN, '"green"'),
    ],
)
@pytest.mark.anyio
async def test_results_are_rendered_as_text_or_json(value: Any, content: str) -> None:
    """Strings pass through, None is empty, other values become JSON (keys in order, UTF-8)."""

    @tool
    def give() -> Any:
        """Give the value."""
        return value

    assert await give.invoke({}, make_context()) == lash.ToolResult("call-1", content)


@pytest.mark.anyio
async def test_returned_tool_result_is_used_with_the_context_call_id() -> None:
    """A returned ToolResult is kept, error flag included, with the call id of the context."""

    @tool
    async def refuse() -> lash.ToolResult:
        """Refuse."""
        return lash.ToolResult("whatever", "no", is_error=True)

    assert await refuse.invoke({}, make_context("c9")) == lash.ToolResult("c9", "no", is_error=True)


@pytest.mark.anyio
async def test_result_that_is_not_json_is_an_error_result() -> None:
    """A value JSON cannot express becomes an error result, not an exception."""

    @tool
    def give() -> object:
        """Give an object."""
        return object()

    result = await give.invoke({}, make_context())
    assert result.is_error
    assert "tool 'give' returned a value that cannot be shown as JSON" in result.content


# --------------------------------------------------------------------------------------------
# Invalid arguments
# --------------------------------------------------------------------------------------------


@tool
def place(
    count: int, label: str, at: Point, tags: list[str] | None = None, mode: Literal[1, 2] = 1
) -> str:
    """Place things."""
    raise AssertionError("never called with invalid arguments")


@pytest.mark.parametrize(
    ("arguments", "problems"),
    [
        (
            {"count": "5", "label": "a", "at": {"x": 1}},
            ["count: expected int, got '5' (str)"],
        ),
        (
            {"count": 5.0, "label": 7, "at": {"x": 1}},
            ["count: expected int, got 5.0 (float)", "label: expected str, got 7 (int)"],
        ),
        (
            {"label": "a"},
            ["count: required, missing (expected int)", "at: required, missing (expected Point)"],
        ),
        (
            {"count": 1, "label": "a", "at": {"x": 1}, "colour": "red"},
            ["colour: unknown key (known: at, count, label, mode, tags)"],
        ),
        (
            {"count": 1, "label": "a", "at": {"x": "1", "z": 0}},
            ["at.x: expected int, got '1' (str)", "at.z: unknown key (known: x, y)"],
        ),
        (
            {"count": 1, "label": "a", "at": {"x": 1}, "tags": "abc"},
            ["tags: expected list[str] | None, got 'abc' (str)"],
        ),
        (
            {"count": 1, "label": "a", "at": {"x": 1}, "tags": ["a", 2]},
            ["tags[1]: expected str, got 2 (int)"],
        ),
        (
            {"count": 1, "label": "a", "at": {"x": 1}, "mode": True},
            ["mode: expected 1 | 2, got True (bool)"],
        ),
        (
            {"count": True, "label": "a", "at": {"x": 1}},
            ["count: expected int, got True (bool)"],
        ),
    ],
)
@pytest.mark.anyio
async def test_invalid_arguments_become_an_error_result_naming_each_argument(
    arguments: dict[str, Any], problems: list[str]
) -> None:
    """Wrong types (strictly: "5" is not 5), missing and unknown arguments are reported, not run."""
    result = await place.invoke(arguments, make_context("c3"))
    expected = "invalid arguments for tool 'place':\n" + "\n".join(f"  - {p}" for p in problems)
    assert result == lash.ToolResult("c3", expected, is_error=True)


@pytest.mark.anyio
async def test_arguments_that_are_not_an_object_are_an_error_result() -> None:
    """Arguments must be a JSON object."""
    result = await place.invoke(["count", 1], make_context())  # type: ignore[arg-type]
    assert result.is_error
    assert result.content == (
        "invalid arguments for tool 'place': expected a JSON object, got ['count', 1] (list)"
    )


# --------------------------------------------------------------------------------------------
# Failures, timeouts, cancellation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.anyio
async def test_raising_tool_becomes_an_error_result_naming_the_exception(is_async: bool) -> None:
    """An exception from the tool is reported to the model with its type and message."""

    def explode(reason: str) -> str:
        """Fail."""
        raise ValueError(reason)

    async def explode_async(reason: str) -> str:
        """Fail."""
        raise ValueError(reason)

    failing = tool(explode_async if is_async else explode, name="explode")
    result = await failing.invoke({"reason": "no fuel"}, make_context("c4"))
    assert result == lash.ToolResult(
        "c4", "tool 'explode' raised ValueError: no fuel", is_error=True
    )


@pytest.mark.anyio
async def test_tools_own_timeout_error_is_not_reported_as_a_timeout() -> None:
    """A TimeoutError raised by the tool itself is an exception, not the tool timing out."""

    @tool
    async def call_upstream() -> str:
        """Call a slow service."""
        raise TimeoutError("upstream was slow")

    result = await call_upstream.invoke({}, make_context())
    assert result.content == "tool 'call_upstream' raised TimeoutError: upstream was slow"


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that frees hung worker threads when the test ends."""
    event = threading.Event()
    yield event
    event.set()


@pytest.mark.anyio
async def test_hanging_sync_tool_times_out_fast_and_learns_it_was_cancelled(
    release: threading.Event,
) -> None:
    """A sync tool past its timeout is abandoned with an error result; its context is cancelled."""
    noticed = threading.Event()

    @tool(timeout=0.05)
    def hang(context: ToolContext) -> str:
        """Hang."""
        release.wait(10)
        if context.is_cancelled:
            noticed.set()
        return "late"

    context = make_context("c5")
    started = time.monotonic()
    result = await hang.invoke({}, context)
    assert time.monotonic() - started < 1
    assert result == lash.ToolResult("c5", "tool 'hang' timed out after 0.05 s", is_error=True)
    assert context.is_cancelled
    release.set()
    assert await asyncio.to_thread(noticed.wait, 5)


@pytest.mark.anyio
async def test_hanging_async_tool_times_out_with_the_context_default() -> None:
    """An async tool without its own timeout is stopped at the context's timeout."""

    @tool
    async def hang() -> str:
        """Hang."""
        await asyncio.sleep(10)
        return "late"

    started = time.monotonic()
    result = await hang.invoke({}, make_context(timeout=0.05))
    assert time.monotonic() - started < 1
    assert result.is_error
    assert result.content == "tool 'hang' timed out after 0.05 s"


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.anyio
async def test_cancellation_propagates_out_of_invoke(
    is_async: bool, release: threading.Event
) -> None:
    """Cancelling the task that invokes a tool raises CancelledError and marks the context."""
    started = threading.Event()

    def block() -> str:
        """Block."""
        started.set()
        release.wait(10)
        return "late"

    async def sleep() -> str:
        """Sleep."""
        started.set()
        await asyncio.sleep(10)
        return "late"

    slow = tool(sleep if is_async else block, name="slow")
    context = make_context()
    task = asyncio.create_task(slow.invoke({}, context))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert context.is_cancelled


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.anyio
async def test_tool_that_sees_cancellation_propagates_it(is_async: bool) -> None:
    """``raise_if_cancelled`` in a tool ends the call with CancelledError, not an error result."""

    def check(context: ToolContext) -> str:
        """Stop when cancelled."""
        context.cancelled.set()
        context.raise_if_cancelled()
        return "unreachable"

    async def check_async(context: ToolContext) -> str:
        """Stop when cancelled."""
        return check(context)

    checking = tool(check_async if is_async else check, name="check")
    with pytest.raises(asyncio.CancelledError):
        await checking.invoke({}, make_context())


@pytest.mark.anyio
async def test_invoke_with_cancelled_context_does_not_call_the_tool() -> None:
    """A call whose context is already cancelled raises CancelledError before running."""
    calls: list[int] = []

    @tool
    def count() -> str:
        """Count."""
        calls.append(1)
        return "ran"

    context = make_context()
    context.cancelled.set()
    with pytest.raises(asyncio.CancelledError):
        await count.invoke({}, context)
    assert calls == []


# --------------------------------------------------------------------------------------------
# Raw tools
# --------------------------------------------------------------------------------------------

RAW_SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


@pytest.mark.parametrize("is_async", [False, True])
@pytest.mark.anyio
async def test_raw_tool_handler_gets_arguments_dict_and_context(is_async: bool) -> None:
    """A raw tool passes the arguments unvalidated, as a dict, with the context."""
    seen: list[Any] = []

    def handler(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        seen.append((arguments, context.call_id))
        return {"echo": arguments}

    async def handler_async(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
        return handler(arguments, context)

    raw = raw_tool("read", "Read a file.", RAW_SCHEMA, handler_async if is_async else handler)
    assert raw.spec() == ToolSpec("read", "Read a file.", RAW_SCHEMA)
    result = await raw.invoke({"anything": 1}, make_context("c6"))
    assert result == lash.ToolResult("c6", '{"echo": {"anything": 1}}')
    assert seen == [({"anything": 1}, "c6")]


@pytest.mark.anyio
async def test_raw_tool_failures_and_timeouts_are_error_results() -> None:
    """Raw handlers get the same exception and timeout handling as typed tools."""

    def broken(arguments: dict[str, Any], context: ToolContext) -> str:
        raise KeyError("path")

    async def slow(arguments: dict[str, Any], context: ToolContext) -> str:
        await asyncio.sleep(10)
        return "late"

    assert (
        await raw_tool("broken", "", RAW_SCHEMA, broken).invoke({}, make_context())
    ).content == ("tool 'broken' raised KeyError: 'path'")
    timed = raw_tool("slow", "", RAW_SCHEMA, slow, timeout=0.05)
    assert (await timed.invoke({}, make_context())).content == "tool 'slow' timed out after 0.05 s"


def test_raw_tool_keeps_its_own_copy_of_the_schema() -> None:
    """Changing the caller's schema afterwards does not change the tool's."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    raw = raw_tool("t", "", schema, lambda arguments, context: "")
    schema["properties"]["a"]["type"] = "integer"
    assert raw.parameters == {"type": "object", "properties": {"a": {"type": "string"}}}


def test_raw_tool_needs_an_object_schema_and_a_callable() -> None:
    """The schema must describe an object, and the handler must be callable."""
    with pytest.raises(ValueError, match='"type": "object"'):
        raw_tool("t", "", {"type": "string"}, lambda arguments, context: "")
    with pytest.raises(TypeError, match="handler must be callable"):
        raw_tool("t", "", RAW_SCHEMA, "not callable")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# as_tool (what the register_tools registrar calls)
# --------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_as_tool_returns_a_tool_unchanged_or_renamed() -> None:
    """A Tool is returned as is, or evolved with a new name / description and same behaviour."""
    original = tool(lambda_free_echo)
    assert as_tool(original) is original
    renamed = as_tool(original, name="say", description="Say it.")
    assert (renamed.name, renamed.description) == ("say", "Say it.")
    assert renamed.parameters == original.parameters
    assert renamed.fn is original.fn
    assert original.name == "lambda_free_echo"
    assert (await renamed.invoke({"text": "hi"}, make_context())).content == "hi"
    invalid = await renamed.invoke({"text": 1}, make_context())
    assert (
        invalid.content == "invalid arguments for tool 'say':\n  - text: expected str, got 1 (int)"
    )


def lambda_free_echo(text: str) -> str:
    """Echo the text."""
    return text


def test_as_tool_wraps_a_typed_function() -> None:
    """A plain typed function is wrapped with ``tool``, name and description applied."""
    wrapped = as_tool(lambda_free_echo, name="echo")
    assert isinstance(wrapped, Tool)
    assert (wrapped.name, wrapped.description) == ("echo", "Echo the text.")


@pytest.mark.parametrize("obj", [42, "echo", NotATypeForTools(), NotATypeForTools, print])
def test_as_tool_rejects_what_is_neither_tool_nor_function(obj: Any) -> None:
    """Anything else is a TypeError saying what is accepted."""
    with pytest.raises(TypeError, match=r"expected a lash\.Tool or a typed function"):
        as_tool(obj)


def test_as_tool_rejects_parameter_without_type_hint() -> None:
    """A parameter without a hint is a TypeError naming the function and the parameter."""

    def untyped(a: int, b) -> int:  # type: ignore[no-untyped-def]
        return a

    with pytest.raises(
        TypeError, match=r"parameter 'b' of tool function .*untyped has no type hint"
    ):
        as_tool(untyped)


def test_as_tool_rejects_star_args_and_kwargs() -> None:
    """``*args`` and ``**kwargs`` cannot be described by a schema."""

    def many(*items: str) -> str:
        return ""

    def loose(**options: Any) -> str:
        return ""

    with pytest.raises(TypeError, match=r"many takes \*items; tools take named parameters only"):
        as_tool(many)
    with pytest.raises(TypeError, match=r"loose takes \*\*options"):
        as_tool(loose)


def test_as_tool_rejects_generators() -> None:
    """A generator function returns an iterator, not a result."""

    def lines() -> Iterator[str]:
        yield "a"

    with pytest.raises(TypeError, match="is a generator"):
        as_tool(lines)


def test_unresolvable_type_hint_is_a_type_error() -> None:
    """A forward reference that does not resolve names the function."""

    def ghost(x: NoSuchType) -> str:  # type: ignore[name-defined]  # noqa: F821 - the point
        return ""

    with pytest.raises(TypeError, match=r"cannot resolve the type hints of tool function .*ghost"):
        as_tool(ghost)


# --------------------------------------------------------------------------------------------
# ToolContext
# --------------------------------------------------------------------------------------------


def test_tool_context_is_a_tool_context_view() -> None:
    """ToolContext satisfies the ToolContextView protocol and delegates to the session."""
    context = make_context("c8")
    assert isinstance(context, lash.ToolContext)
    assert context.session_id == "s1"
    assert context.state(Counter) is context.session.state(Counter)
    assert not context.is_cancelled
    context.raise_if_cancelled()
    assert context.timeout == 60.0
    assert ToolContext.__module__ == Tool.__module__ == "lash"


# --------------------------------------------------------------------------------------------
# An async tool's first step runs before its deadline is armed (a tool that returns without
# suspending gets no timer): whatever the tool does, the call behaves as a plain await would
# --------------------------------------------------------------------------------------------

# One suspension of the tool: yield to the loop once, or wait for a future another task
# resolves (a value) or fails (an exception the tool catches and records).
_SUSPENSIONS = st.lists(st.sampled_from(["yield", "future", "failed_future"]), max_size=4)


@settings(max_examples=60, deadline=None)
@given(
    steps=_SUSPENSIONS,
    ending=st.sampled_from(["return", "raise", "hang"]),
    cancel_at=st.none() | st.integers(min_value=0, max_value=4),
)
def test_async_tool_calls_behave_as_awaited_whatever_they_do(
    steps: list[str], ending: str, cancel_at: int | None
) -> None:
    """For any sequence of suspensions, then a return, an exception or a hang past the timeout,
    and an optional cancellation of the caller at any suspension: the result, what the tool saw
    (every value sent in, every exception thrown in, its ``finally``) and the cancellation
    are what awaiting the tool under its deadline means."""

    async def scenario() -> None:
        seen: list[str] = []

        @tool(timeout=0.05)
        async def scripted() -> str:
            """Follow the script."""
            loop = asyncio.get_running_loop()
            try:
                for n, kind in enumerate(steps):
                    if kind == "yield":
                        await asyncio.sleep(0)
                        seen.append(f"{n}:resumed")
                    else:
                        future = loop.create_future()
                        if kind == "future":
                            loop.call_soon(future.set_result, n)
                            seen.append(f"{n}:got {await future}")
                        else:
                            loop.call_soon(future.set_exception, KeyError(n))
                            try:
                                await future
                            except KeyError as exc:
                                seen.append(f"{n}:caught {exc}")
                if ending == "raise":
                    raise ValueError("scripted failure")
                if ending == "hang":
                    await asyncio.sleep(10)
                return "done"
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
            finally:
                seen.append("finally")

        context = make_context("c1")
        call = asyncio.ensure_future(scripted.invoke({}, context))
        cancelled_by_caller = cancel_at is not None and cancel_at < len(steps)
        if cancelled_by_caller:
            assert cancel_at is not None
            for _ in range(cancel_at + 1):  # the tool is suspended at step `cancel_at` now
                await asyncio.sleep(0)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert context.is_cancelled
            assert seen[-2:] == ["cancelled", "finally"]
            return
        result = await call
        expected_steps = []
        for n, kind in enumerate(steps):
            expected_steps.append(
                {"yield": f"{n}:resumed", "future": f"{n}:got {n}"}.get(kind, f"{n}:caught {n}")
            )
        if ending == "return":
            assert result == lash.ToolResult("c1", "done")
            assert seen == [*expected_steps, "finally"]
        elif ending == "raise":
            assert result == lash.ToolResult(
                "c1", "tool 'scripted' raised ValueError: scripted failure", is_error=True
            )
            assert seen == [*expected_steps, "finally"]
        else:
            assert result == lash.ToolResult(
                "c1", "tool 'scripted' timed out after 0.05 s", is_error=True
            )
            assert seen == [*expected_steps, "cancelled", "finally"]
            assert context.is_cancelled

    asyncio.run(scenario())


@pytest.mark.anyio
async def test_async_tool_that_never_suspends_runs_without_a_timer() -> None:
    """A tool that returns at its first step arms no deadline (no timer on the loop)."""

    @tool(timeout=30)
    async def instant(text: str) -> str:
        """Return at once."""
        return text.upper()

    loop = asyncio.get_running_loop()
    scheduled = len(loop._scheduled)  # type: ignore[attr-defined]  # the loop's timer heap
    assert await instant.invoke({"text": "hi"}, make_context("c2")) == lash.ToolResult("c2", "HI")
    assert len(loop._scheduled) == scheduled  # type: ignore[attr-defined]


def _primitives(a: str, b: int, c: float, d: bool = False) -> str:
    """Takes only primitives."""
    return f"{a}{b}{c}{d}"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children),
    max_leaves=6,
)


_PRIMITIVE_ARGUMENTS = st.one_of(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), _JSON, max_size=5),
    st.fixed_dictionaries(  # every parameter, each of its type or a close one (bool for int)
        {
            "a": st.text(max_size=3) | st.integers(),
            "b": st.integers() | st.booleans() | st.floats(allow_nan=False),
            "c": st.floats(allow_nan=False) | st.integers() | st.booleans(),
            "d": st.booleans() | st.integers(),
        },
        optional={"e": _JSON},
    ),
)


@settings(max_examples=400, deadline=None)
@given(_PRIMITIVE_ARGUMENTS)
def test_a_tool_of_primitives_binds_as_the_general_path(arguments: dict[str, Any]) -> None:
    """A tool whose parameters are all primitives skips the per-argument shape check (the
    converter checks primitives itself), and binds arguments of exactly the parameters' types
    without the converter: any JSON arguments give the same call, or the same problems, as the
    general path (shape check and converter)."""
    fast = tool(_primitives)
    binder = fast._bind
    assert binder._shaped is False  # type: ignore[attr-defined]
    assert binder._exact is not None  # type: ignore[attr-defined]
    general = attrs.evolve(binder)  # type: ignore[misc]
    object.__setattr__(general, "_shaped", True)
    object.__setattr__(general, "_exact", None)

    def outcome(bind: Any) -> Any:
        try:
            args, kwargs = bind(arguments, None)  # (no parameter takes the context)
            return args, kwargs, [type(v) for v in kwargs.values()]
        except Exception as exc:
            return type(exc), getattr(exc, "problems", str(exc))

    assert outcome(binder) == outcome(general)
