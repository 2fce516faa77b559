"""The generated node codecs (JSON writers for commits, builders for resume) against the
general cattrs path they stand in for: the same JSON text, the same values back."""

from __future__ import annotations

import collections.abc
import enum
import json
import types
import typing
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sqlite_store import graph_nodes, json_values, texts

import lash
import lash.store
from lash._contract import serialization
from lash._contract.graph import new_node_id
from lash._contract.serialization import (
    NODE_KINDS,
    _Builders,
    _node_writers,
    _owned_node_builders,
    _row_node_builders,
    data_converter,
)

NODE_CLASSES = typing.get_args(lash.GraphNode)


def values_of(tp: Any) -> st.SearchStrategy[Any]:
    """Any value of the field annotation ``tp`` (JSON data where it is ``Any``)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return st.none()
    if tp is str:
        return texts
    if tp is int:
        return st.integers(-(2**53), 2**53)
    if tp is bool:
        return st.booleans()
    if tp is Any:
        return json_values
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([values_of(a) for a in args])
    if origin is tuple:
        return st.lists(values_of(args[0]), max_size=2).map(tuple)
    if origin in (dict, collections.abc.Mapping):
        return st.dictionaries(st.text(max_size=4), json_values, max_size=3)
    if attrs.has(tp):
        return instances(tp)
    raise TypeError(f"no strategy for {tp!r}")


def default_of(a: Any) -> Any:
    """The value attrs gives field ``a`` when it is not passed (``NOTHING``: it has none)."""
    if isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
        return a.default.factory()
    return a.default


def instances(cl: type, **given: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Instances of the attrs class ``cl``, each field that has a default drawn at it or not
    (in nested classes too): the fields a body leaves out, and the ones it keeps. ``given``:
    the strategies of some fields by name."""
    fields = {}
    for a in attrs.fields(cl):  # type: ignore[arg-type]
        values = given[a.name] if a.name in given else values_of(a.type)
        if a.default is not attrs.NOTHING:
            values = st.builds(default_of, st.just(a)) | values
        fields[a.alias] = values
    return st.builds(cl, **fields)


#: Nodes of every class, with fields at their defaults and not (graph_nodes draws few); ids
#: unique, frames and turns as graph_nodes draws them (what a store takes in its columns).
defaulted_nodes = st.sampled_from(NODE_CLASSES).flatmap(
    lambda cl: instances(
        cl,
        id=st.builds(new_node_id),
        frame_id=st.sampled_from(["a", "b", "c"]),
        turn=st.integers(0, 50),
    )
)


def general_json(node: Any) -> str:
    """What :func:`lash.store.node_json` promises: ``to_data`` (cattrs) + ``json.dumps``."""
    data = lash.to_data(node, lash.GraphNode)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def cattrs_structure(data: Any) -> Any:
    """The general decoding path: cattrs' own tagged union, with detailed validation."""
    return data_converter().structure(data, lash.GraphNode)


def test_every_node_class_gets_a_writer_and_a_builder() -> None:
    """Each of the seven node variants has a generated writer and a generated builder (the
    fast paths are not silently off)."""
    classes = typing.get_args(lash.GraphNode)
    assert len(classes) == len(NODE_KINDS) == 7
    assert set(_node_writers()) == set(classes)
    builders = _Builders(data_converter(detailed=False)).for_union(
        lash.GraphNode, "type", NODE_KINDS
    )
    assert set(builders) == set(NODE_KINDS.values())
    assert set(_owned_node_builders()) == set(NODE_KINDS.values())
    assert set(_node_writers(body=True)) == set(classes)
    assert set(_row_node_builders()) == set(NODE_KINDS.values())


@settings(max_examples=300, deadline=None)
@given(node=graph_nodes())
def test_generated_writer_writes_the_general_json(node: Any) -> None:
    """The node's generated writer (called directly: no fallback) writes exactly the text of
    to_data + json.dumps, and node_json returns it."""
    expected = general_json(node)
    assert _node_writers()[type(node)](node) == expected
    assert lash.store.node_json(node) == expected


@settings(max_examples=300, deadline=None)
@given(node=graph_nodes())
def test_generated_builder_builds_what_cattrs_builds(node: Any) -> None:
    """The stored text read back through the generated builder (called directly), through
    from_data, and through cattrs' general union: three equal nodes, equal to the original."""
    data = json.loads(lash.store.node_json(node))
    builders = _Builders(data_converter(detailed=False)).for_union(
        lash.GraphNode, "type", NODE_KINDS
    )
    built = builders[data["type"]](dict(data))
    assert built == cattrs_structure(dict(data)) == node
    assert type(built) is type(node)
    assert lash.from_data(data, lash.GraphNode) == node


@settings(max_examples=50, deadline=None)
@given(nodes=st.lists(graph_nodes(), max_size=8))
def test_many_nodes_decode_as_one_tuple_like_one_by_one(nodes: list[Any]) -> None:
    """A frame's nodes decoded as one tuple (the resume path) equal the nodes decoded one by
    one through cattrs."""
    datas = json.loads("[" + ",".join(lash.store.node_json(n) for n in nodes) + "]")
    assert lash.from_data(datas, tuple[lash.GraphNode, ...]) == tuple(nodes)
    assert tuple(cattrs_structure(d) for d in datas) == tuple(nodes)


class Text(str):
    """A str subclass: not what a writer expects for a text field."""


class Turn(enum.IntEnum):
    FIRST = 1


def user(**fields: Any) -> lash.UserMessage:
    base: dict[str, Any] = {"id": "n1", "parent_id": None, "frame_id": "f", "turn": 1}
    return lash.UserMessage(**{**base, "text": "hi", **fields})


@pytest.mark.parametrize(
    "node",
    [
        user(text=Text("a subclass")),
        user(turn=Turn.FIRST),
        user(text="caf\u00e9 \U0001f600 \ud800 lone surrogate"),
        user(items=({"k": [1, 2.5, None, "x"]}, "y")),
        lash.PluginNode(
            id="p", parent_id="n1", frame_id="f", turn=1, plugin="p", kind="k", data=(1, "a")
        ),
        lash.AssistantMessage(
            id="a",
            parent_id=None,
            frame_id="f",
            turn=2,
            text="",
            tool_calls=[lash.ToolCall("c", "echo", {"b": 1, "a": 2})],  # type: ignore[arg-type]
        ),
    ],
    ids=["str-subclass", "intenum-turn", "unicode", "items", "tuple-data", "list"],
)
def test_unusual_values_give_the_general_json(node: Any) -> None:
    """Values outside the writers' exact types that read back as the node (subclasses, a list
    for a tuple) and any Unicode give the same text as the general path."""
    assert lash.store.node_json(node) == general_json(node)


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        (user(turn=True), r"turn: expected int, got True \(bool\)"),
        (
            lash.AssistantMessage(
                id="a", parent_id=None, frame_id="f", turn=1, text="", usage=lash.Usage(12.0, 3)
            ),
            r"usage.input_tokens: expected int, got 12.0 \(float\)",
        ),
        (
            lash.ToolResultNode(
                id="r",
                parent_id=None,
                frame_id="f",
                turn=1,
                call_id="c",
                name="n",
                content="x",
                is_error=0,  # type: ignore[arg-type]
            ),
            r"is_error: expected bool, got 0 \(int\)",
        ),
        (
            lash.AssistantMessage(
                id="a",
                parent_id=None,
                frame_id="f",
                turn=1,
                text="",
                usage=lash.Usage(False, 0, 0),  # type: ignore[arg-type]  # False is not 0
            ),
            r"usage.input_tokens: expected int, got False \(bool\)",
        ),
        (
            lash.TurnOutcome(
                id="o",
                parent_id=None,
                frame_id="f",
                turn=1,
                turn_id="t",
                outcome="bogus",  # type: ignore[arg-type]  # not one of the literal's values
            ),
            r"outcome: expected 'completed' \| 'stopped' \| 'failed', got 'bogus'",
        ),
    ],
    ids=["bool-turn", "float-tokens", "int-flag", "bool-tokens", "unknown-literal"],
)
def test_values_that_would_not_read_back_are_refused(node: Any, problem: str) -> None:
    """A value the general path would write but no store could read back as the node (its
    field's type is another) is refused, naming the node and the field: stored, it would make
    every later load of the session fail (a review found a provider's float token count did)."""
    with pytest.raises(lash.ValidationError):
        lash.from_data(json.loads(general_json(node)), lash.GraphNode)
    # (A body leaves the turn to the row's integer column: only the whole form writes it.)
    bodies = (
        () if problem.startswith("turn") else (lash.store.node_body_json, lash.store.node_row_json)
    )
    for write in (lash.store.node_json, *bodies):
        with pytest.raises(ValueError, match=rf"node '{node.id}'(.|\n)*{problem}"):
            write(node)


def test_what_is_not_json_fails_like_json_dumps() -> None:
    """A plugin node whose data is not JSON data: node_json raises json's TypeError."""
    node = lash.PluginNode(
        id="p", parent_id=None, frame_id="f", turn=1, plugin="p", kind="k", data={"x": object()}
    )
    with pytest.raises(TypeError, match="not JSON serializable"):
        lash.store.node_json(node)


@given(data=json_values)
def test_plugin_data_of_any_json_value(data: Any) -> None:
    """A plugin node holding any JSON value: the general text, and it reads back equal."""
    node = lash.PluginNode(
        id="p", parent_id=None, frame_id="f", turn=1, plugin="p", kind="k", data=data
    )
    text = lash.store.node_json(node)
    assert text == general_json(node)
    assert lash.from_data(json.loads(text), lash.GraphNode) == node


# -- nodes_from_json: a stored history read back in one pass ----------------------------------


@settings(max_examples=300, deadline=None)
@given(node=graph_nodes())
def test_owned_builder_builds_what_cattrs_builds(node: Any) -> None:
    """The builder nodes_from_json uses (called directly: no fallback), given freshly decoded
    JSON, builds the node cattrs' general union builds, equal to the original."""
    text = lash.store.node_json(node)
    built = _owned_node_builders()[json.loads(text)["type"]](json.loads(text))
    assert built == cattrs_structure(json.loads(text)) == node
    assert type(built) is type(node)


@settings(max_examples=100, deadline=None)
@given(nodes=st.lists(graph_nodes(), max_size=10))
def test_nodes_from_json_reads_back_what_node_json_wrote(nodes: list[Any]) -> None:
    """A history's stored texts read back as the same nodes, of the same classes, as each
    text decoded on its own through json.loads and cattrs."""
    texts = [lash.store.node_json(n) for n in nodes]
    read = lash.store.nodes_from_json(texts)
    assert read == tuple(nodes)
    assert [type(n) for n in read] == [type(n) for n in nodes]
    assert read == tuple(cattrs_structure(json.loads(t)) for t in texts)


def test_nodes_from_json_reads_other_writers_forms() -> None:
    """Texts another writer may store (keys in another order, defaulted fields left out,
    spaces) among ones node_json wrote: each read as cattrs reads it (the general path)."""
    head = {"id": "u", "parent_id": None, "frame_id": "F", "turn": 1}
    texts = [
        lash.store.node_json(lash.UserMessage(**head, text="a")),
        json.dumps({"text": "b", "type": "user", **head}),
        json.dumps({"type": "tool_call", **head, "call": {"name": "echo", "id": "c1"}}),
    ]
    assert lash.store.nodes_from_json(texts) == (
        lash.UserMessage(**head, text="a"),
        lash.UserMessage(**head, text="b"),
        lash.ToolCallNode(**head, call=lash.ToolCall("c1", "echo")),
    )


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ('{"type": "user"', "not JSON: Expecting ',' delimiter"),
        ('{"type": "user"},{"type": "user"}', "not JSON: Extra data"),
        ('{"type": "nope"}', "type: expected"),
        ("[1]", "expected a graph node"),
        (
            lash.store.node_json(
                lash.TurnOutcome(
                    id="o", parent_id=None, frame_id="f", turn=1, turn_id="t", outcome="failed"
                )
            ).replace('"failed"', '"nope"'),
            "outcome: expected 'completed' | 'stopped' | 'failed', got 'nope' (str)",
        ),
    ],
)
def test_a_bad_text_is_a_validation_error_with_the_subject(bad: str, problem: str) -> None:
    """A text that is not JSON, or not a node, among good ones: a ValidationError whose
    subject is the caller's ``what`` and whose one problem says what is wrong."""
    good = lash.store.node_json(user())
    with pytest.raises(lash.ValidationError) as invalid:
        lash.store.nodes_from_json([good, bad, good], what="stored node of 's'")
    assert str(invalid.value).startswith("invalid stored node of 's':")
    (line,) = invalid.value.problems
    assert problem in line


# -- node rows: the body as text, id / kind / frame / turn in columns ----------------------------

#: The keys of the stored form a row keeps in columns (``type`` is the row's kind).
COLUMNS = ("id", "frame_id", "turn", "type")


def body_of(node: Any) -> dict[str, Any]:
    """A node's stored form (to_data) without the columns' keys: the body as written before
    it left out defaults (rows of those files still hold it)."""
    data: dict[str, Any] = lash.to_data(node, lash.GraphNode)
    return {k: v for k, v in data.items() if k not in COLUMNS}


def plain(a: Any) -> bool:
    """Whether field ``a``'s default is one a body leaves out (node_body_json's docstring):
    ``None``, a bool, an int, a string, or an empty tuple, list or mapping."""
    default = default_of(a)
    if default is attrs.NOTHING:
        return False
    return (
        default is None
        or type(default) in (bool, int, str)
        or (type(default) in (tuple, list, dict) and not default)
    )


def drop_defaults(value: Any, data: dict[str, Any]) -> None:
    """Delete from ``data`` (``value``'s unstructured form) the keys of the fields whose value
    is their plain default (its exact type, equal), in the attrs values it holds too."""
    for a in attrs.fields(type(value)):
        if a.name not in data:
            continue
        field = getattr(value, a.name)
        if plain(a) and type(field) is type(default_of(a)) and field == default_of(a):
            del data[a.name]
        elif attrs.has(type(field)):
            drop_defaults(field, data[a.name])
        elif type(field) is tuple and field and all(attrs.has(type(x)) for x in field):
            for item, item_data in zip(field, data[a.name], strict=True):
                drop_defaults(item, item_data)


def slim_body_of(node: Any) -> dict[str, Any]:
    """The spec of a node's body: :func:`body_of` without the fields at their plain
    defaults."""
    body = body_of(node)
    drop_defaults(node, body)
    return body


def whole_of(node: Any, body: dict[str, Any]) -> dict[str, Any]:
    """A body with the row's columns put back: what a lash reading a row the general way
    (before it knew bodies without defaults) hands ``from_data``."""
    kind = NODE_KINDS[type(node).__name__]
    return {"id": node.id, "frame_id": node.frame_id, "turn": node.turn, **body, "type": kind}


def row_of(node: Any, text: str) -> tuple[Any, ...]:
    """A row as a store keeps it: ``(id, kind, frame_id, turn, text)``."""
    kind = NODE_KINDS[type(node).__name__]
    return (node.id, kind, node.frame_id, node.turn, text)


def dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _attrs_in(tp: Any) -> tuple[str, Any]:
    """How a field of declared type ``tp`` holds attrs values a positional body writes as
    arrays: ``("one", C)`` for ``C`` and ``C | None``, ``("many", C)`` for
    ``tuple[C, ...]``, ``("", None)`` for anything else (written as to_data writes it)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (tp,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and attrs.has(tp):
        return "one", tp
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and attrs.has(args[0]):
        return "many", args[0]
    return "", None


def positional_of(value: Any, data: dict[str, Any], skip: tuple[str, ...] = ()) -> list[Any]:
    """The spec of a positional body (node_row_json's docstring): the values of ``value``'s
    fields in attrs order (less ``skip``) as ``data``, its unstructured form, holds them, an
    attrs value itself such a list, the trailing fields at their plain defaults left off."""
    fields = [a for a in attrs.fields(type(value)) if a.name not in skip]
    out = []
    for a in fields:
        field, field_data = getattr(value, a.name), data[a.name]
        how, _ = _attrs_in(a.type)
        if how == "one" and field is not None:
            field_data = positional_of(field, field_data)
        elif how == "many":
            field_data = [positional_of(x, d) for x, d in zip(field, field_data, strict=True)]
        out.append(field_data)
    while fields and plain(fields[-1]):
        a = fields.pop()
        field = getattr(value, a.name)
        if not (type(field) is type(default_of(a)) and field == default_of(a)):
            break
        out.pop()
    return out


def positional_body_of(node: Any) -> list[Any]:
    """The spec of a node's positional body: without the row's columns and the tag."""
    return positional_of(node, lash.to_data(node, lash.GraphNode), ("id", "frame_id", "turn"))


def keyed_of(cl: type, values: list[Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A positional body of class ``cl`` by keys (the fields it holds, by name), nested ones
    too: how a reader that knows the spec reads it, for from_data to check."""
    fields = [a for a in attrs.fields(cl) if a.name not in skip]  # type: ignore[arg-type]
    keyed = {}
    for a, v in zip(fields, values, strict=False):
        how, inner = _attrs_in(a.type)
        if how == "one" and v is not None:
            v = keyed_of(inner, v)
        elif how == "many":
            v = [keyed_of(inner, x) for x in v]
        keyed[a.name] = v
    return keyed


def unkeyed_of(cl: type, keyed: dict[str, Any], skip: tuple[str, ...] = ()) -> list[Any]:
    """:func:`keyed_of` undone: the values of the fields ``keyed`` holds, in attrs order
    (``keyed`` holds the first fields, as keyed_of gives them)."""
    fields = [a for a in attrs.fields(cl) if a.name in keyed and a.name not in skip]  # type: ignore[arg-type]
    values = []
    for a in fields:
        v = keyed[a.name]
        how, inner = _attrs_in(a.type)
        if how == "one" and type(v) is dict:
            v = unkeyed_of(inner, v)
        elif how == "many" and type(v) is list:
            v = [unkeyed_of(inner, x) if type(x) is dict else x for x in v]
        values.append(v)
    return values


#: Nodes as the other property tests draw them, and with fields at their defaults.
any_nodes = graph_nodes() | defaulted_nodes


@settings(max_examples=400, deadline=None)
@given(node=any_nodes)
def test_body_writer_writes_the_stored_form_without_the_columns_and_defaults(node: Any) -> None:
    """node_body_json, the generated writer (called directly: no fallback) and the general
    path (forced: no writer) write exactly json.dumps of to_data without id, frame_id, turn,
    type and the fields at their plain defaults, keys in the same order."""
    expected = dumps(slim_body_of(node))
    assert _node_writers(body=True)[type(node)](node) == expected
    assert lash.store.node_body_json(node) == expected
    general = serialization._node_text(node, {}, serialization._BODY_LEAVES_OUT)
    assert general == expected
    assert list(json.loads(expected)) == [
        k for k in json.loads(lash.store.node_json(node)) if k in json.loads(expected)
    ]


@pytest.mark.parametrize("cl", NODE_CLASSES, ids=lambda cl: cl.__name__)
def test_every_plain_default_is_left_out_and_read_back(cl: type) -> None:
    """For each node class, a node with every field at its default: the body holds only the
    fields without a plain default (nested ones without theirs), and it reads back as the
    node through nodes_from_rows, from_data and cattrs with the columns put back."""
    node = at_defaults(cl)
    body = json.loads(lash.store.node_body_json(node))
    keep = [a.name for a in attrs.fields(cl) if not plain(a) and a.name not in COLUMNS]
    assert list(body) == keep
    if isinstance(node, lash.ToolCallNode):
        assert body["call"] == {"id": "c1", "name": "echo"}
    if isinstance(node, lash.AssistantMessage):
        assert body["usage"] == {}
    (row,) = [row_of(node, lash.store.node_body_json(node))]
    assert lash.store.nodes_from_rows([row]) == (node,)
    assert lash.from_data(whole_of(node, body), lash.GraphNode) == node
    assert cattrs_structure(whole_of(node, body)) == node


def at_defaults(cl: type) -> Any:
    """An instance of ``cl`` with every field that has a default at it (the others set)."""
    fixed = {str: "x", int: 3, str | None: "p", lash.ToolCall: lash.ToolCall("c1", "echo")}
    fields = {}
    for a in attrs.fields(cl):  # type: ignore[arg-type]
        if a.default is attrs.NOTHING and typing.get_origin(a.type) is typing.Literal:
            fields[a.alias] = typing.get_args(a.type)[0]
        elif a.default is attrs.NOTHING:
            fields[a.alias] = fixed[a.type]
    return cl(**fields)


@pytest.mark.parametrize(
    "node",
    [
        user(text=Text("a subclass")),
        user(turn=True),
        user(text="caf\u00e9 \ud800 lone"),
        user(items=[]),  # type: ignore[arg-type]  # a list is not the default ()
        user(items=[], text=Text("a subclass")),  # type: ignore[arg-type]
    ],
    ids=["str-subclass", "bool-turn", "unicode", "list-items", "list-items-and-subclass"],
)
def test_unusual_values_give_the_general_body(node: Any) -> None:
    """Values outside the writers' exact types that read back as the node give the general
    path's body text, which leaves out the same defaults (a value of another type than its
    default's is kept). (One equal to its default but of another type, ``is_error=0``, is
    refused: test_values_that_would_not_read_back_are_refused.)"""
    assert lash.store.node_body_json(node) == dumps(slim_body_of(node))


@settings(max_examples=400, deadline=None)
@given(node=any_nodes)
def test_row_builder_builds_what_cattrs_builds(node: Any) -> None:
    """The builder nodes_from_rows uses (called directly: no fallback), given a freshly decoded
    body, without its defaults or (as written before) with them, and the row's columns,
    builds the node cattrs builds from the whole stored form."""
    kind = NODE_KINDS[type(node).__name__]
    expected = cattrs_structure(json.loads(lash.store.node_json(node)))
    for body in (json.loads(lash.store.node_body_json(node)), body_of(node)):
        built = _row_node_builders()[kind](body, node.id, node.frame_id, node.turn)
        assert built == expected == node
        assert type(built) is type(node)


@settings(max_examples=400, deadline=None)
@given(node=any_nodes)
def test_a_lash_that_reads_the_body_the_general_way_gets_the_same_node(node: Any) -> None:
    """An older lash reads a row its builders do not take (a body without its defaults) the
    general way: from_data of the body with the columns put back, cattrs filling in attrs'
    defaults. It gets the node that was written, as the generated path does."""
    body = json.loads(lash.store.node_body_json(node))
    assert lash.from_data(whole_of(node, body), lash.GraphNode) == node
    assert cattrs_structure(whole_of(node, body)) == node
    (read,) = lash.store.nodes_from_rows([row_of(node, lash.store.node_body_json(node))])
    assert read == node and type(read) is type(node)


@settings(max_examples=200, deadline=None)
@given(nodes=st.lists(st.tuples(any_nodes, st.sampled_from(["body", "full", "whole"]))))
def test_rows_of_bodies_and_of_whole_forms_read_back_alike(nodes: list[Any]) -> None:
    """Rows holding the body (what a store writes now), the body with its defaults (what it
    wrote before) and the whole stored form (before that), mixed in any order: the same
    nodes as the ones written, as cattrs builds them from the whole form."""
    forms = {
        "body": lash.store.node_body_json,
        "full": lambda n: dumps(body_of(n)),
        "whole": lash.store.node_json,
    }
    rows = [row_of(n, forms[form](n)) for n, form in nodes]
    read = lash.store.nodes_from_rows(rows)
    expected = tuple(n for n, _ in nodes)
    assert read == expected
    assert [type(n) for n in read] == [type(n) for n in expected]
    assert read == tuple(cattrs_structure(json.loads(lash.store.node_json(n))) for n in expected)
    assert lash.store.nodes_from_rows(rows) == lash.store.nodes_from_json(
        [lash.store.node_json(n) for n in expected]
    )


@pytest.mark.parametrize("form", ["body", "full"])
def test_bodies_with_and_without_defaults_take_the_fast_path(
    form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of either body form (defaults left out, or every field as written before) are read
    by the generated builders: the general row-by-row path is never taken."""
    nodes = [at_defaults(cl) for cl in NODE_CLASSES]
    rows = [
        row_of(n, lash.store.node_body_json(n) if form == "body" else dumps(body_of(n)))
        for n in nodes
    ]

    def general(*args: Any) -> Any:
        raise AssertionError("the general path was taken")

    monkeypatch.setattr(serialization, "_nodes_of_rows", general)
    assert lash.store.nodes_from_rows(rows) == tuple(nodes)


def test_rows_of_one_frame_share_its_frame_id_and_turn() -> None:
    """The nodes of a frame read from rows hold one frame_id string (and one turn int per
    turn), not one copy per row: a resumed session holds the strings once."""
    nodes = [
        user(id=f"n{i}", turn=1000 + i // 3, frame_id="".join(["fr", "ame"])) for i in range(9)
    ]
    rows = [
        (n.id, "user", "".join(["fr", "ame"]), int(str(n.turn)), lash.store.node_body_json(n))
        for n in nodes
    ]
    assert len({id(row[2]) for row in rows}) == 9  # each row its own string, as SQLite gives
    read = lash.store.nodes_from_rows(rows)
    assert read == tuple(nodes)
    assert len({id(n.frame_id) for n in read}) == 1
    assert len({id(n.turn) for n in read}) == 3


def test_rows_of_other_writers_read_as_cattrs_reads_them() -> None:
    """Bodies with defaulted fields left out or keys in another order, and a whole form
    without its tag (the row's kind says it): each read as cattrs reads the node."""
    head = {"id": "u", "parent_id": None, "frame_id": "F", "turn": 1}
    rows = [
        ("u", "user", "F", 1, json.dumps({"text": "b", "parent_id": None})),
        (
            "c",
            "tool_call",
            "F",
            2,
            json.dumps({"call": {"name": "echo", "id": "c1"}, "parent_id": "u"}),
        ),
    ]
    assert lash.store.nodes_from_rows(rows) == (
        lash.UserMessage(**head, text="b"),
        lash.ToolCallNode(
            **{**head, "id": "c", "parent_id": "u", "turn": 2}, call=lash.ToolCall("c1", "echo")
        ),
    )


#: A tool result's body with its defaults left out (is_error false, projected null).
_RESULT = '{"parent_id":null,"call_id":"c","name":"n","content":"x"}'


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("tool_result", {**json.loads(_RESULT), "zz": 1}),
        ("tool_result", {**json.loads(_RESULT), "projected": 7}),
        ("tool_result", {**json.loads(_RESULT), "is_error": 0}),
        ("user", {"parent_id": None, "text": "a", "items": None}),
        ("plugin", {"parent_id": None, "plugin": "p", "kind": "k", "datum": None}),
        ("assistant", {"parent_id": None, "text": "", "usage": {"input_tokens": True}}),
        ("assistant", {"parent_id": None, "text": "", "usage": {"tokens": 1}}),
        ("tool_call", {"parent_id": None, "call": {"id": "c", "name": "e", "zz": None}}),
    ],
    ids=[
        "unknown",
        "wrong-type",
        "int-for-bool",
        "null-for-tuple",
        "misspelt-defaulted",
        "nested-wrong-type",
        "nested-unknown-all-defaulted",
        "nested-unknown",
    ],
)
def test_the_row_builder_rejects_what_cattrs_rejects(kind: str, body: dict[str, Any]) -> None:
    """A body with defaults left out and an unknown key, or a key of the wrong type, is not
    taken by the generated builder (called directly: it raises, so the general path names
    the problem), and cattrs rejects it too."""
    with pytest.raises(Exception):  # noqa: B017  # the builder's "not as is"
        _row_node_builders()[kind](dict(body), "n1", "f", 1)
    with pytest.raises(lash.ValidationError):
        lash.from_data(
            {"id": "n1", "frame_id": "f", "turn": 1, **body, "type": kind}, lash.GraphNode
        )


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (("n1", "user", "f", 1, '{"parent_id": null'), "not JSON: Expecting ',' delimiter"),
        (("n1", "memo", "f", 1, '{"parent_id": null, "text": "a", "items": []}'), "type: expected"),
        (
            ("n1", "user", "f", "1", '{"parent_id": null, "text": "a", "items": []}'),
            "turn: expected int, got '1' (str)",
        ),
        (
            ("n1", "user", 7, 1, '{"parent_id": null, "text": "a", "items": []}'),
            "frame_id: expected str, got 7 (int)",
        ),
        (("n1", "user", "f", 1, '{"parent_id": null, "items": []}'), "text: required, missing"),
        (("n1", "user", "f", 1, '{"parent_id": null, "text": "a", "zz": 1}'), "zz: unknown key"),
        (("n1", "user", "f", 1, '"x"'), "expected a graph node"),
        (
            ("n1", "user", "f", 1, '{"parent_id": null, "text": "a", "items": "x"}'),
            "items: expected tuple[Any, ...], got 'x' (str)",
        ),
        (
            ("n1", "tool_result", "f", 1, '{"parent_id":null,"call_id":"c","name":"n"}'),
            "content: required, missing",
        ),
        (
            ("n1", "tool_result", "f", 1, f'{_RESULT[:-1]},"zz":1}}'),
            "zz: unknown key",
        ),
        (
            ("n1", "tool_result", "f", 1, f'{_RESULT[:-1]},"is_error":null}}'),
            "is_error: expected bool, got None (NoneType)",
        ),
        (
            ("n1", "assistant", "f", 1, '{"parent_id":null,"text":"","tool_calls":[{"id":"c"}]}'),
            "tool_calls[0].name: required, missing",
        ),
    ],
    ids=[
        "not-json",
        "kind",
        "turn",
        "frame",
        "missing",
        "unknown-key",
        "not-object",
        "defaulted-of-wrong-type",
        "missing-among-defaults-left-out",
        "unknown-among-defaults-left-out",
        "defaulted-null",
        "nested-missing",
    ],
)
def test_a_bad_row_is_a_validation_error_with_the_subject(row: Any, problem: str) -> None:
    """A row whose body is not JSON or whose body and columns are not a node, among good
    ones: a ValidationError whose subject is the caller's ``what``, one problem saying what."""
    good = row_of(user(), lash.store.node_body_json(user()))
    with pytest.raises(lash.ValidationError) as invalid:
        lash.store.nodes_from_rows([good, row, good], what="stored node of 's'")
    assert str(invalid.value).startswith("invalid stored node of 's':")
    (line,) = invalid.value.problems
    assert problem in line


# -- positional bodies: a node's fields as a JSON array (node_row_json) --------------------------


@settings(max_examples=400, deadline=None)
@given(node=any_nodes)
def test_positional_writer_builder_and_general_path_agree(node: Any) -> None:
    """node_row_json writes the spec's array (fields in attrs order without the columns,
    nested attrs values as arrays, trailing plain defaults left off); the generated builder
    (called directly: no fallback) builds the node from it and its columns; the general path
    (the array by keys, through from_data with the columns) builds the same node."""
    text = lash.store.node_row_json(node)
    spec = positional_body_of(node)
    assert json.loads(text) == spec
    assert text == dumps(spec)
    assert serialization._node_row_writers()[type(node)](node) == text
    kind = NODE_KINDS[type(node).__name__]
    build = _row_node_builders(positional=True)[kind]
    assert build(json.loads(text), node.id, node.frame_id, node.turn) == node
    keyed = keyed_of(type(node), json.loads(text), ("id", "frame_id", "turn"))
    assert lash.from_data(whole_of(node, keyed), lash.GraphNode) == node
    assert cattrs_structure(whole_of(node, keyed)) == node
    assert lash.store.nodes_from_rows([row_of(node, text)]) == (node,)
    assert lash.store.nodes_on_demand([row_of(node, text)])[0] == node


@pytest.mark.parametrize("cl", NODE_CLASSES, ids=lambda cl: cl.__name__)
def test_every_node_class_gets_a_positional_writer_and_builder(cl: type) -> None:
    """Each node class has both (no node goes the general way for want of one), and a node
    at its defaults is written as the array of its fields without a plain default."""
    assert cl in serialization._node_row_writers()
    assert NODE_KINDS[cl.__name__] in _row_node_builders(positional=True)
    node = at_defaults(cl)
    body = json.loads(lash.store.node_row_json(node))
    keep = [a for a in attrs.fields(cl) if a.name not in ("id", "frame_id", "turn")]
    while keep and plain(keep[-1]):
        keep.pop()
    assert len(body) == len(keep)
    assert lash.store.nodes_from_rows([row_of(node, lash.store.node_row_json(node))]) == (node,)


def test_positional_bodies_of_the_format_spec() -> None:
    """The bodies the format spec gives as examples (bench_resume's nodes): a user message,
    a tool result, an assistant message with a tool call (free-form arguments stay an object),
    and they read back as those nodes."""
    common: dict[str, Any] = {"id": "n1", "frame_id": "F", "turn": 3}
    user_node = lash.UserMessage(parent_id="f068d927b43f9510", text="t0", **common)
    result = lash.ToolResultNode(
        parent_id="bae821632bb3f991", call_id="call_1", name="echo", content="t0", **common
    )
    call = lash.ToolCall("call_1", "echo", {"text": "t0"})
    answer = lash.AssistantMessage(
        parent_id="cde1",
        text="",
        tool_calls=(call,),
        usage=lash.Usage(10, 3, 0),
        model="bench:default",
        **common,
    )
    bare = lash.AssistantMessage(parent_id=None, text="hi", **common)
    expected = [
        (user_node, '["f068d927b43f9510","t0"]'),
        (result, '["bae821632bb3f991","call_1","echo","t0"]'),
        # Usage's trailing 0 is at its plain default: left off as any trailing one.
        (answer, '["cde1","",[["call_1","echo",{"text":"t0"}]],[10,3],"bench:default"]'),
        (bare, '[null,"hi",[],[]]'),
    ]
    for node, text in expected:
        assert lash.store.node_row_json(node) == text
        assert lash.store.nodes_from_rows([row_of(node, text)]) == (node,)
    # The longer forms (a trailing default written) read back alike.
    longer = '["cde1","",[["call_1","echo",{"text":"t0"},null]],[10,3,0],"bench:default"]'
    assert lash.store.nodes_from_rows([row_of(answer, longer)]) == (answer,)
    assert lash.store.nodes_from_rows([row_of(user_node, '["f068d927b43f9510","t0",[]]')]) == (
        user_node,
    )


class Count(int):
    """An int subclass: what a generated writer does not take as it is."""


@pytest.mark.parametrize(
    "node",
    [
        user(text=Text("a subclass")),
        lash.AssistantMessage(
            id="a", parent_id=None, frame_id="f", turn=1, text="x", usage=lash.Usage(Count(1))
        ),
    ],
    ids=["str subclass", "int subclass in a nested value"],
)
def test_a_value_the_positional_writer_does_not_know_gets_a_body_by_keys(node: Any) -> None:
    """node_row_json of a node whose generated writer gives up (a subclass of a field's type)
    is node_body_json's text, which every reader takes: a row may hold either form."""
    text = lash.store.node_row_json(node)
    assert text == lash.store.node_body_json(node)
    assert text.startswith("{")
    assert lash.store.nodes_from_rows([row_of(node, text)]) == (node,)


@settings(max_examples=200, deadline=None)
@given(nodes=st.lists(st.tuples(any_nodes, st.sampled_from(["row", "body", "full", "whole"]))))
def test_rows_of_every_form_mixed_read_back_alike(nodes: list[Any]) -> None:
    """Positional bodies, bodies by keys with and without defaults and whole forms, mixed in
    one list of rows: nodes_from_rows and nodes_on_demand give the nodes, as from_data does
    for each."""
    writers = {
        "row": lash.store.node_row_json,
        "body": lash.store.node_body_json,
        "full": lambda n: dumps(body_of(n)),
        "whole": lash.store.node_json,
    }
    rows = [row_of(n, writers[form](n)) for n, form in nodes]
    expected = tuple(n for n, _ in nodes)
    assert lash.store.nodes_from_rows(rows) == expected
    assert tuple(lash.store.nodes_on_demand(rows)) == expected


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (
            ("n1", "user", "f", 1, '["p","a",[],7]'),
            "the positional body: expected an array of 2 to 3 values (parent_id, text, items), "
            "got 4 (node 'n1')",
        ),
        (
            ("n1", "user", "f", 1, '["p"]'),
            "the positional body: expected an array of 2 to 3 values (parent_id, text, items), "
            "got 1 (node 'n1')",
        ),
        (("n1", "user", "f", 1, '["p",7]'), "text: expected str, got 7 (int)"),
        (("n1", "user", "f", 1, '[null,"a","ab"]'), "items: expected tuple[Any, ...], got 'ab'"),
        (
            ("n1", "assistant", "f", 1, '[null,"",[["c"]],[]]'),
            "tool_calls[0]: expected an array of 2 to 4 values (id, name, arguments, "
            "invalid_arguments), got 1 (node 'n1')",
        ),
        (
            ("n1", "assistant", "f", 1, '[null,"",[],[1,true]]'),
            "usage.output_tokens: expected int, got True (bool)",
        ),
        (
            ("n1", "assistant", "f", 1, '[null,"",[],{"input_tokens":1}]'),
            "usage: expected an array of 0 to 3 values (input_tokens, output_tokens, "
            "cached_tokens), got {'input_tokens': 1} (dict) (node 'n1')",
        ),
        (("n1", "memo", "f", 1, '[null,"a"]'), "type: expected"),
        (("n1", "user", "f", "1", '[null,"a"]'), "turn: expected int, got '1' (str)"),
        (("n1", "outcome", "f", 1, '[null,"t","done"]'), "outcome: expected"),
        (
            ("n1", "tool_result", "f", 1, '[null,"c","n","x",null]'),
            "is_error: expected bool, got None (NoneType)",
        ),
    ],
    ids=[
        "too long",
        "too short",
        "wrong type",
        "text for a tuple",
        "nested too short",
        "nested wrong type",
        "nested object",
        "kind",
        "turn",
        "literal",
        "defaulted-null",
    ],
)
def test_a_bad_positional_body_is_a_validation_error_naming_the_session(
    row: Any, problem: str
) -> None:
    """A positional body that is not its node's, among good rows: a ValidationError naming the
    caller's subject (the session), what is wrong and the node, from the eager path and from
    nodes on demand alike."""
    good = row_of(user(), lash.store.node_row_json(user()))
    for read in (
        lambda rows, what: lash.store.nodes_from_rows(rows, what=what),
        lambda rows, what: tuple(lash.store.nodes_on_demand(rows, what=what)),
    ):
        with pytest.raises(lash.ValidationError) as invalid:
            read([good, row, good], "stored node of 's'")
        assert str(invalid.value).startswith("invalid stored node of 's':")
        assert problem in "\n".join(invalid.value.problems)
        # Each problem names the node, whichever path found it.
        assert all(p.endswith("(node 'n1')") for p in invalid.value.problems)


#: Values of a free-form field: flat dicts of every scalar (NaN and infinities too, lone
#: surrogates, which st.text leaves out), of str and int subclasses (keys and values), an
#: IntEnum, and nested JSON data.
_surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | texts
    | _surrogates
    | texts.map(Text)
    | st.integers(-5, 5).map(Count)
    | st.just(Turn.FIRST)
)
free_values = (
    st.dictionaries(texts | _surrogates, _scalars, max_size=4)
    | st.dictionaries(texts | texts.map(Text), _scalars, max_size=3)
    | json_values
)


@settings(max_examples=400, deadline=None)
@given(value=free_values)
def test_a_free_form_value_is_written_as_the_general_path_writes_it(value: Any) -> None:
    """A free-form field's text (a tool call's arguments, typed Mapping[str, Any], and a field
    typed Any), flat dicts written at once included, is json.dumps of what the converter
    unstructures it to."""
    conv = data_converter()
    for hook in (conv.unstructure, conv.get_unstructure_hook(collections.abc.Mapping[str, Any])):
        if hook is not conv.unstructure and not isinstance(value, dict):
            continue
        assert serialization._free_json(value, hook) == dumps(hook(value))
    if isinstance(value, dict):  # in a node: the spec's positional body, by its writer
        call = lash.ToolCall("c1", "echo", value)
        node = lash.ToolCallNode(id="n", parent_id=None, frame_id="f", turn=1, call=call)
        text = serialization._node_row_writers()[lash.ToolCallNode](node)
        assert text == dumps(positional_body_of(node))
