"""The one configured cattrs converter, and readable validation errors.

Everything lash structures (host config, plugin options, persisted records) goes through
:func:`converter`; ``cattrs.global_converter`` is never used, so plugins that use cattrs themselves
cannot change how lash reads its data.
"""

from __future__ import annotations

import collections.abc
import enum
import functools
import itertools
import json
import operator
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from lash._contract.slots import plain_slots
from lash.errors import ValidationError

if TYPE_CHECKING:
    from lash._contract.graph import StoredNodes

T = TypeVar("T")

_MISSING = object()


class EnvStr(str):
    """A string read from the environment through ``"$env:NAME"``.

    Environment values are always text, so fields typed ``int``/``float``/``bool`` accept an
    ``EnvStr`` spelling of the value; a plain TOML string is not coerced (``port = "80"`` is an
    error, ``port = "$env:PORT"`` is not).
    """

    __slots__ = ()


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _structure_int(value: Any, _: type) -> int:
    # bool is an int subclass, but `retries = true` is a mistake, not 1.
    if type(value) is int:
        return value
    if isinstance(value, EnvStr):
        return int(value.strip())
    raise TypeError(f"expected int, got {describe_value(value)}")


def _structure_float(value: Any, _: type) -> float:
    if type(value) in (int, float):
        return float(value)
    if isinstance(value, EnvStr):
        return float(value.strip())
    raise TypeError(f"expected float, got {describe_value(value)}")


def _structure_bool(value: Any, _: type) -> bool:
    if type(value) is bool:
        return value
    if isinstance(value, EnvStr):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise TypeError(f"expected bool, got {describe_value(value)}")


def _structure_str(value: Any, _: type) -> str:
    if type(value) is str:  # the common case, checked first: this runs for every string field
        return value
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"expected str, got {describe_value(value)}")


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = typing.get_args(tp)
    return typing.get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_collection(tp: Any) -> bool:
    # list/tuple/set/frozenset/deque/Sequence... fields: cattrs structures them by iterating the
    # value, which would turn `tags = "abc"` into ["a", "b", "c"] and a table into its keys.
    origin = typing.get_origin(tp) or tp
    return (
        isinstance(origin, type)
        and issubclass(origin, collections.abc.Collection)
        and not issubclass(origin, (str, bytes, bytearray, collections.abc.Mapping))
        and not attrs.has(origin)
    )


def _reject_text_for_collections(conv: cattrs.Converter) -> None:
    """Make collection fields refuse strings, bytes and mappings instead of iterating them."""
    building: set[Any] = set()

    def factory(tp: Any, conv: cattrs.Converter) -> Callable[[Any, Any], Any]:
        # Ask the converter for the hook it would use without this factory: the type is
        # excluded from the predicate while the inner hook is built (public API only). The
        # converter is the one asking (cattrs passes it), so copies of this converter (the data
        # converters) build collections of their own hooks, e.g. tuple[GraphNode, ...].
        building.add(tp)
        try:
            inner = conv.get_structure_hook(tp, cache_result=False)
        finally:
            building.discard(tp)

        def structure_collection(value: Any, cl: Any) -> Any:
            if isinstance(value, (str, bytes, bytearray, collections.abc.Mapping)):
                raise TypeError(f"expected {type_name(cl)}, got {describe_value(value)}")
            return inner(value, cl)

        return structure_collection

    conv.register_structure_hook_factory(
        lambda tp: tp not in building and _is_collection(tp), factory
    )


@functools.cache
def converter(*, detailed: bool = True) -> cattrs.Converter:
    """The private converter: strict primitives, unknown keys forbidden, detailed errors.

    ``detailed=False`` is the same validation without cattrs' per-field error bookkeeping:
    about a third faster, for loading data that is almost always valid (stored history); a
    failure there is re-run through the detailed converter for its message.
    """
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=detailed)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(str, _structure_str)
    # tuple[X, ...] through a generated hook rather than cattrs' generic tuple path (it is in
    # every stored node: tool calls, items), registered first so the text guard below wraps it.
    conv.register_structure_hook_factory(_is_homogeneous_tuple, homogenous_tuple_structure_factory)
    _reject_text_for_collections(conv)
    return conv


@functools.cache
def data_converter(*, detailed: bool = True) -> cattrs.Converter:
    """:func:`converter` plus the tagged union of graph nodes, for persisted data (:func:`to_data`,
    :func:`from_data`). Separate because configuring the union generates code for every node
    class (~10 ms), which config loading, options and ``lash --help`` / ``lash plugins`` never
    need."""
    conv = converter(detailed=detailed).copy()
    # The detailed converter is the error path: it keeps cattrs' own union hook.
    _configure_nodes(conv, fast=not detailed)
    _configure_legacy_config(conv)
    return conv


def _configure_legacy_config(conv: cattrs.Converter) -> None:
    """Stored session configs written by lash 0.1 carry ``protocol_options``, a field 0.2
    removed: read it into ``plugin_options["lash"]`` (a reserved plugin name), where the kernel
    migrates it into the protocol plugin's options when the session is opened."""
    from lash._contract.turn_types import SessionConfig

    structure_config = conv.get_structure_hook(SessionConfig)

    def structure_legacy(value: Any, cl: Any) -> Any:
        if isinstance(value, Mapping) and "protocol_options" in value:
            value = dict(value)
            legacy = value.pop("protocol_options")
            options = dict(value.get("plugin_options") or {})
            options["lash"] = {"protocol_options": legacy}
            value["plugin_options"] = options
        return structure_config(value, cl)

    conv.register_structure_hook(SessionConfig, structure_legacy)


#: The ``type`` tag of each graph node variant in serialized form (stable: stored in databases).
NODE_KINDS = {
    "UserMessage": "user",
    "AssistantMessage": "assistant",
    "ToolCallNode": "tool_call",
    "ToolResultNode": "tool_result",
    "PluginNode": "plugin",
    "FrameBoundary": "frame",
    "TurnOutcome": "outcome",
}


def _configure_nodes(conv: cattrs.Converter, *, fast: bool) -> None:
    from cattrs.strategies import configure_tagged_union

    from lash._contract.graph import GraphNode

    configure_tagged_union(
        GraphNode,
        conv,
        tag_generator=lambda cl: NODE_KINDS[cl.__name__],
        # "type", not "kind": PluginNode has a field named kind of its own.
        tag_name="type",
    )
    tagged = conv.get_structure_hook(GraphNode)
    tags = frozenset(NODE_KINDS.values())
    tag_type: Any = typing.Literal[tuple(sorted(tags))]  # how errors spell the expected tags

    def structure_tagged(value: Any, cl: Any) -> Any:
        # Checked here so that a bad tag reads as one ("type: expected 'assistant' | ...,
        # got ..."), not as the KeyError cattrs' union raises for it.
        if not isinstance(value, Mapping):
            raise TypeError(
                f"expected a graph node (a mapping with a 'type' key), got {describe_value(value)}"
            )
        tag = value.get("type", _MISSING)
        if not (isinstance(tag, str) and tag in tags):
            problem = KeyError("type") if tag is _MISSING else ValueError(f"unknown tag {tag!r}")
            problem.add_note(AttributeValidationNote("the node's variant", "type", tag_type))
            raise ClassValidationError("invalid graph node", [problem], cl)
        return tagged(value, cl)

    if not fast:
        conv.register_structure_hook(GraphNode, structure_tagged)
        return
    # Resuming a session structures every node of its active frame, and the cattrs path (a
    # copy to pop the tag, a hook call per field) costs more than decoding the JSON. Builders
    # generated per node class take the form to_data writes (every field, exact JSON types)
    # with inline checks; anything else goes the cattrs way, so what is accepted, and every
    # error, stays the converter's.
    builders = _Builders(conv).for_union(GraphNode, "type", NODE_KINDS)

    def structure_node(value: Any, cl: Any) -> Any:
        if type(value) is dict:
            try:
                return builders[value["type"]](value)
            except Exception:
                pass
        return structure_tagged(value, cl)

    conv.register_structure_hook(GraphNode, structure_node)
    # A store loads a frame's nodes as one tuple: one pass over the list, without the per-item
    # hook call; on any doubt, the generic tuple path (item by item, as above).
    nodes = tuple[GraphNode, ...]
    generic = conv.get_structure_hook(nodes)

    def structure_nodes(value: Any, cl: Any) -> Any:
        if type(value) is list:
            try:
                return tuple([builders[item["type"]](item) for item in value])
            except Exception:
                pass
        return generic(value, cl)

    conv.register_structure_hook_func(lambda tp: tp == nodes, structure_nodes)


#: The types of the defaults a node's body leaves out (:func:`plain_default`).
_PLAIN = (type(None), bool, int, str)
_EMPTY = (tuple, list, dict)
#: A builder's code for a factory's default: a new empty one each time it is evaluated.
_LITERALS: dict[type, str] = {tuple: "()", list: "[]", dict: "{}"}


def plain_default(a: attrs.Attribute[Any]) -> Any:
    """The default of field ``a`` if it is plain (``None``, a bool, an int, a str, an empty
    tuple, list or dict, or a factory of one of these three), else ``_MISSING``.

    A value of the field *is* that default when it has the default's exact type and equals it
    (``False`` is not ``0``; ``[]`` is not ``()``): reading the default back gives an equal
    value of the same type. :func:`node_body_json` leaves such values out of a node's body, and
    the body's readers (and cattrs, through attrs) fill the default in again: the defaults of
    the node classes' fields are part of the stored form.
    """
    default: Any = a.default
    if _is_factory(a):
        return default.factory()
    if type(default) in _PLAIN:
        return default
    if type(default) in _EMPTY and not default:
        return default
    return _MISSING


def _fewest(fields: Sequence[attrs.Attribute[Any]]) -> int:
    """How many of ``fields`` a positional body holds at the least: up to the last one
    without a plain default (:func:`node_row_json` leaves off the trailing ones at theirs)."""
    count = len(fields)
    while count and plain_default(fields[count - 1]) is not _MISSING:
        count -= 1
    return count


def _is_factory(a: attrs.Attribute[Any]) -> bool:
    """Whether ``a``'s default is an empty tuple, list or dict made by a factory."""
    default: Any = a.default
    return (
        isinstance(default, attrs.Factory)  # type: ignore[arg-type]
        and not default.takes_self
        and default.factory in _EMPTY
    )


def is_default(value: Any, default: Any) -> bool:
    """Whether ``value`` is the plain ``default`` (:func:`plain_default`): of its exact type
    and equal to it."""
    return default is not _MISSING and type(value) is type(default) and value == default


class _Unfit(Exception):
    """A generated builder's "not as is": the value goes through cattrs instead."""


class _Builders:
    """Generate strict structuring functions for attrs classes.

    A builder takes a dict holding every field of the class (with ``defaults``, but those at a
    plain default, which it fills in) and the union's tag, if any, and nothing else, with
    exact JSON types: ``str``, ``int``, ``bool`` (a bool is not an int),
    ``None`` for ``X | None``, a list for ``tuple[X, ...]``, a dict with str keys for
    ``Mapping[str, Any]``, a dict for a nested attrs class; ``Any`` takes anything. Other field
    types go through the converter's own hook. It raises for anything else: it accepts a subset
    of what the converter accepts, and builds the same value.
    """

    def __init__(
        self,
        conv: cattrs.Converter,
        *,
        owned: bool = False,
        defaults: bool = False,
        positional: bool = False,
    ) -> None:
        self.conv = conv
        #: The data is the builder's to keep (just decoded from JSON text, referenced by
        #: nothing else): a mapping goes into the value as it is, without the copy the
        #: converter makes, and its keys are not checked (JSON object keys are strings).
        self.owned = owned
        #: The key of a field with a plain default (:func:`plain_default`) may be missing,
        #: as in a node's body (:func:`node_body_json` leaves such values out): the field
        #: gets its default, as cattrs gives it (attrs' own default).
        self.defaults = defaults
        #: Values of attrs classes (nested ones too) come as JSON arrays of their fields in
        #: attrs order (:func:`node_row_json`), trailing fields at their plain defaults
        #: possibly left off; no tag.
        self.positional = positional
        self.env: dict[str, Any] = {"_Unfit": _Unfit}
        self.built: dict[tuple[type, str | None, tuple[str, ...]], Callable[..., Any] | None] = {}

    def for_union(
        self, union: Any, tag_name: str, tags: Mapping[str, str]
    ) -> dict[str, Callable[[Any], Any]]:
        """``{tag: builder}`` for the classes of a tagged union that get one."""
        builders = {}
        for cl in typing.get_args(union):
            build = self.build(cl, tag_name)
            if build is not None:
                builders[tags[cl.__name__]] = build
        return builders

    def build(
        self, cl: type, tag_name: str | None = None, columns: tuple[str, ...] = ()
    ) -> Callable[..., Any] | None:
        """The builder of ``cl``: ``build(d)``, or ``build(d, *values)`` with ``columns`` (the
        fields given as arguments, in that order, not as keys of ``d``)."""
        key = (cl, tag_name, columns)
        if key not in self.built:
            self.built[key] = None  # a class nested in itself uses the converter's hook there
            self.built[key] = self._generate(cl, tag_name, columns)
        return self.built[key]

    def _name(self, value: Any) -> str:
        name = f"_v{len(self.env)}"
        self.env[name] = value
        return name

    def _generate(
        self, cl: type, tag_name: str | None, columns: tuple[str, ...]
    ) -> Callable[..., Any] | None:
        fields = [a for a in attrs.fields(cl) if a.init]
        names = {a.name for a in fields}
        if tag_name in names or not names.issuperset(columns):
            return None
        if any(isinstance(a.type, str) or a.type is None for a in fields):
            return None  # an unresolved annotation: cattrs says what it can do
        if self.positional:
            if tag_name is not None:
                return None  # a positional body has no tag (the row's kind is)
            return self._generate_positional(cl, fields, columns)
        keys = len(fields) - len(columns) + (tag_name is not None)
        # The fields whose key may be missing (a plain default, not a column).
        defaults = {
            a.name
            for a in fields
            if self.defaults and a.name not in columns and plain_default(a) is not _MISSING
        }
        # Every key the class knows is read below, so with as many keys as that (less the
        # defaulted ones found missing, counted in m), there is no unknown one (a missing
        # required one is a KeyError).
        params = "".join(f", c{j}" for j in range(len(columns)))
        if defaults:
            lines = [f"def build(d{params}):", "    if type(d) is not dict:"]
            lines += ["        raise _Unfit", "    m = 0"]
        else:
            lines = [f"def build(d{params}):", f"    if type(d) is not dict or len(d) != {keys}:"]
            lines.append("        raise _Unfit")
        if tag_name is not None:
            lines.append(f"    d[{tag_name!r}]")
        for i, a in enumerate(fields):
            if a.name in columns:
                lines.append(f"    f{i} = c{columns.index(a.name)}")
            elif a.name in defaults:
                lines += [f"    if {a.name!r} in d:", f"        f{i} = d[{a.name!r}]"]
                lines += self._check(a.type, f"f{i}", "        ")
                lines += ["    else:", f"        f{i} = {self._default(a)}", "        m += 1"]
                continue
            else:
                lines.append(f"    f{i} = d[{a.name!r}]")
            lines += self._check(a.type, f"f{i}", "    ")
        if defaults:
            lines += [f"    if len(d) + m != {keys}:", "        raise _Unfit"]
        return self._finish(cl, fields, lines)

    def _finish(
        self, cl: type, fields: list[attrs.Attribute[Any]], lines: list[str]
    ) -> Callable[..., Any]:
        """The builder of ``lines`` (which set ``f0``... to the checked values of ``fields``),
        ending with the instance made of them."""
        slots = plain_slots(cl)
        if slots is None:
            args = ", ".join(f"{a.alias}=f{i}" for i, a in enumerate(fields))
            lines.append(f"    return {self._name(cl)}({args})")
        else:
            # What __init__ would do, for half its cost (the better part of a node's build): a
            # new instance with each slot set, as unpickling restores a slotted attrs instance.
            lines.append(f"    o = {self._name(object.__new__)}({self._name(cl)})")
            for i, a in enumerate(fields):
                lines.append(f"    {self._name(slots[a.name].__set__)}(o, f{i})")
            lines.append("    return o")
        namespace = dict(self.env)
        exec(compile("\n".join(lines), f"<lash builder {cl.__qualname__}>", "exec"), namespace)
        build: Callable[..., Any] = namespace["build"]
        return build

    def _generate_positional(
        self, cl: type, fields: list[attrs.Attribute[Any]], columns: tuple[str, ...]
    ) -> Callable[..., Any]:
        """The builder of ``cl`` from a list of its fields' values (less ``columns``) in attrs
        order: one branch per length it may have (the trailing fields at plain defaults left
        off, down to none), each unpacking the list in one step and checking what it held."""
        params = "".join(f", c{j}" for j in range(len(columns)))
        lines = [f"def build(d{params}):", "    if type(d) is not list:", "        raise _Unfit"]
        listed = []  # the positions (in fields) of the list's values, in order
        for i, a in enumerate(fields):
            if a.name in columns:
                lines.append(f"    f{i} = c{columns.index(a.name)}")
                lines += self._check(a.type, f"f{i}", "    ")
            else:
                listed.append(i)
        shortest = _fewest([fields[i] for i in listed])
        lines.append("    n = len(d)")
        for n in range(len(listed), shortest - 1, -1):
            lines.append(f"    {'if' if n == len(listed) else 'elif'} n == {n}:")
            if n:
                lines.append(f"        {''.join(f'f{i}, ' for i in listed[:n])}= d")
            for i in listed[:n]:
                lines += self._check(fields[i].type, f"f{i}", "        ")
            for i in listed[n:]:
                lines.append(f"        f{i} = {self._default(fields[i])}")
            if not n and len(listed) == shortest:
                lines.append("        pass")
        lines += ["    else:", "        raise _Unfit"]
        return self._finish(cl, fields, lines)

    def _default(self, a: attrs.Attribute[Any]) -> str:
        """The expression of field ``a``'s plain default in a builder: a factory's made anew
        for each value (an empty literal), as attrs makes it; any other the value itself."""
        default = plain_default(a)
        return _LITERALS[type(default)] if _is_factory(a) else self._name(default)

    def _check(self, tp: Any, var: str, indent: str) -> list[str]:
        """Lines that check ``var`` against ``tp`` (raising :class:`_Unfit`) and convert it."""
        fail = f"{indent}    raise _Unfit"
        if tp is Any:
            return []
        if tp in (str, int, bool):
            return [f"{indent}if type({var}) is not {tp.__name__}:", fail]
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Literal and args and all(type(a) is str for a in args):
            # What cattrs' literal hook accepts (a value equal to one of them), for a str.
            known = self._name(frozenset(args))
            return [f"{indent}if type({var}) is not str or {var} not in {known}:", fail]
        if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
            (inner,) = [a for a in args if a is not type(None)]
            return [f"{indent}if {var} is not None:", *self._check(inner, var, indent + "    ")]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            head = [f"{indent}if type({var}) is not list:", fail]
            if args[0] is Any:
                return [*head, f"{indent}{var} = tuple({var})"]
            if attrs.has(args[0]) and (item := self.build(args[0])) is not None:
                # map, not a comprehension (in 3.11 a call of its own): most hold none or one.
                return [*head, f"{indent}{var} = tuple(map({self._name(item)}, {var}))"]
        if origin in (dict, collections.abc.Mapping) and args == (str, Any):
            if self.owned:
                return [f"{indent}if type({var}) is not dict:", fail]
            return [
                f"{indent}if type({var}) is not dict:",
                fail,
                f"{indent}for k in {var}:",
                f"{indent}    if type(k) is not str:",
                f"{indent}        raise _Unfit",
                f"{indent}{var} = dict({var})",
            ]
        if attrs.has(tp) and (nested := self.build(tp)) is not None:
            return [f"{indent}{var} = {self._name(nested)}({var})"]
        hook = self.conv.get_structure_hook(tp)
        return [f"{indent}{var} = {self._name(hook)}({var}, {self._name(tp)})"]


#: What :func:`node_json` writes: compact, non-ASCII kept (a store decides what to do with
#: text its column type cannot hold), keys in field order.
_GENERAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_encode_general = _GENERAL.encode

#: The types of the values :func:`_free_json` writes at once (``unstructure`` keeps them as they
#: are: exact types only, a subclass may have a hook of its own).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _flat_encoder() -> Callable[[Any, int], Any] | None:
    """:data:`_GENERAL`'s C encoder made once, for :func:`_free_json`'s flat mappings: the one
    ``json.JSONEncoder.iterencode`` makes on each call, from the same settings (so the two
    cannot drift apart), but without the circular-reference check (``markers``: a mapping of
    scalars holds no reference), so one encoder serves every call. None on an interpreter
    without the C accelerator."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - an interpreter without the C accelerator
        return None
    g = _GENERAL
    strings = (
        json.encoder.encode_basestring_ascii if g.ensure_ascii else json.encoder.encode_basestring
    )
    # By position only, in the order json.JSONEncoder.iterencode passes them.
    return make(  # type: ignore[no-any-return]
        None,
        g.default,
        strings,
        g.indent,
        g.key_separator,
        g.item_separator,
        g.sort_keys,
        g.skipkeys,
        g.allow_nan,
    )


_encode_flat = _flat_encoder()


def _free_json(value: Any, unstructure: Callable[[Any], Any]) -> str:
    """The JSON text of a free-form value (a field typed ``Any``, or a mapping of ``str`` to
    ``Any``: a tool call's arguments) that ``unstructure`` (the field's hook) unstructures:
    ``_encode_general(unstructure(value))``. A dict of ``str`` keys and scalar values (``str``,
    ``int``, ``float``, ``bool``, ``None``), which is what tool-call arguments mostly are, is
    written at once: unstructuring it only copies it (its text is the same; 0.8 µs instead of
    1.9 for one key). The property tests check the two ways give one text."""
    if type(value) is dict and _encode_flat is not None:
        scalars = _SCALARS
        for key, item in value.items():
            if type(key) is not str or type(item) not in scalars:
                break
        else:
            return "".join(_encode_flat(value, 0))
    return _encode_general(unstructure(value))


#: The fields of a node a store's row holds in columns of its own, in the order
#: :func:`nodes_from_rows` takes them (after the id, the row's kind: the ``type`` tag).
ROW_COLUMNS = ("id", "frame_id", "turn")


@functools.cache
def _node_writers(*, body: bool = False) -> dict[type, Callable[[Any], str]]:
    """``{node class: writer}``: the generated JSON writer of each graph node variant, of its
    stored form or (``body``) of its body: without :data:`ROW_COLUMNS`, the tag and the
    fields at their plain defaults."""
    from lash._contract.graph import GraphNode

    writers = _Writers(data_converter(), slim=body)
    found: dict[type, Callable[[Any], str]] = {}
    for cl in typing.get_args(GraphNode):
        if body:
            write = writers.build(cl, skip=ROW_COLUMNS)
        else:
            write = writers.build(cl, ("type", NODE_KINDS[cl.__name__]))
        if write is not None:
            found[cl] = write
    return found


def node_json(node: Any) -> str:
    """The compact JSON text of a graph node's stored form: exactly
    ``json.dumps(to_data(node, GraphNode), separators=(",", ":"), ensure_ascii=False)``.

    A writer generated once per node class builds the text straight from the fields; a value it
    does not know goes the general way (and a value that is not JSON data raises its error).

    :raises TypeError, ValueError: for what is not JSON data (as :func:`json.dumps`); ValueError
        too for a value that would not read back as the node (a float where a field holds
        an int...), naming the node and the field.
    """
    return _node_text(node, _node_writers(), ())


@functools.cache
def _owned_node_builders() -> dict[str, Callable[[Any], Any]]:
    """``{tag: builder}`` for nodes decoded from JSON text by :func:`nodes_from_json`."""
    from lash._contract.graph import GraphNode

    owned = _Builders(data_converter(detailed=False), owned=True)
    return owned.for_union(GraphNode, "type", NODE_KINDS)


def nodes_from_json(texts: Sequence[str], *, what: str = "stored node") -> tuple[Any, ...]:
    """The graph nodes stored as JSON texts (each the stored form :func:`node_json` writes, or
    any JSON :func:`from_data` accepts for a :data:`lash.GraphNode`), in order: what
    ``from_data(json.loads(text), GraphNode)`` gives for each, in one pass.

    This is how a store that keeps nodes as text loads a session's history (resuming a long
    session decodes thousands): one :func:`json.loads` over all the texts, and a builder
    generated per node class taking each decoded object as it is (no copy of its mappings:
    nothing else refers to them). On any doubt, each text goes the general way, which names
    the bad one.

    :raises lash.ValidationError: for the first text that is not JSON or not a node, with
        ``what`` as its subject (name the session in it).
    """
    try:
        datas = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        datas = None
    if datas is not None and len(datas) == len(texts):  # not so for a text "{..},{..}"
        builders = _owned_node_builders()
        try:
            return tuple([builders[data["type"]](data) for data in datas])
        except Exception:
            pass
    from lash._contract.graph import GraphNode

    if datas is None or len(datas) != len(texts):
        datas = [_json_of(what, text) for text in texts]
    try:
        return from_data(datas, tuple[GraphNode, ...], what=what)  # type: ignore[no-any-return]
    except ValidationError:
        for data in datas:  # the bad one's own message
            from_data(data, GraphNode, what=what)
        raise


@functools.cache
def _node_body_writers() -> dict[type, Callable[[Any], str]]:
    """:func:`_node_writers` of bodies, without the keyword (a commit looks it up per node)."""
    return _node_writers(body=True)


def node_body_json(node: Any) -> str:
    """The compact JSON text of a graph node's body: its stored form (:func:`node_json`)
    without what a store's row keeps in columns of its own, the node's ``id``, ``frame_id``
    and ``turn`` and its ``type`` tag (the row's kind), and without the fields whose value is
    their default, when that default is ``None``, a bool, an int, a string or an empty
    tuple, list or mapping (in nested values too: a tool call's ``invalid_arguments``).
    :func:`nodes_from_rows` reads it back with those columns, each missing field at its
    default; so does :func:`lash.from_data` of the body with the columns put back (cattrs
    fills in attrs' defaults), which is how a lash that does not know this form reads it.

    For a user message ``{"parent_id":"a1","text":"hi"}`` (no ``"items":[]``), for a tool
    result ``{"parent_id":"a1","call_id":"c1","name":"echo","content":"ok"}`` (no
    ``"is_error":false,"projected":null``). The 15,000 bodies of a 10,000-message session
    (``benchmarks/bench_resume.py``) take 1.64 MB instead of 2.16, and one :func:`json.loads`
    of them about 0.83 of the time.

    :raises TypeError, ValueError: for what is not JSON data (as :func:`json.dumps`); ValueError
        too for a value that would not read back as the node (a float where a field holds
        an int...), naming the node and the field.
    """
    return _node_text(node, _node_body_writers(), _BODY_LEAVES_OUT)


#: What a node's body leaves out of its stored form: the row's columns and the tag.
_BODY_LEAVES_OUT = (*ROW_COLUMNS, "type")


@functools.cache
def _node_row_writers() -> dict[type, Callable[[Any], str]]:
    """``{node class: writer}`` of positional bodies (:func:`node_row_json`)."""
    from lash._contract.graph import GraphNode

    writers = _Writers(data_converter(), positional=True)
    found: dict[type, Callable[[Any], str]] = {}
    for cl in typing.get_args(GraphNode):
        write = writers.build(cl, skip=ROW_COLUMNS)
        if write is not None:
            found[cl] = write
    return found


def node_row_json(node: Any) -> str:
    """The compact JSON text of a graph node's body in positional form: a JSON array of the
    values of its fields in their attrs order, without what a store's row keeps in columns of
    its own (``id``, ``frame_id``, ``turn``; the ``type`` tag is the row's kind), a value of
    an attrs class (a tool call, a usage) itself such an array, and without the trailing
    fields at their plain defaults (those :func:`node_body_json` leaves out: ``None``, a bool,
    an int, a string, an empty tuple, list or mapping), in nested arrays too. Free-form values
    (a tool call's ``arguments``, a plugin node's ``data``, a user message's ``items``) are
    written as :func:`node_body_json` writes them: a mapping stays a JSON object.

    For a user message ``["a1","hi"]`` (parent id, text; no ``items``), for a tool result
    ``["a1","c1","echo","ok"]``, for an assistant message with a tool call
    ``["u1","",[["c1","echo",{"q":"x"}]],[10,3],"m"]``. The keys of a body cost much of its
    decoding: the 15,000 bodies of a 10,000-message session (``benchmarks/bench_resume.py``)
    take 0.87 MB instead of :func:`node_body_json`'s 1.64, and one :func:`json.loads` of them
    about 0.56 of the time (7 ms instead of 12.5, 2026-12-07).

    :func:`nodes_from_rows` and :func:`nodes_on_demand` read rows of either form (a JSON array
    is a positional body, an object a body by keys). A value the generated writer does not
    know (a subclass of a field's type...) gets :func:`node_body_json`'s text instead: a
    store's rows may hold both forms.

    :raises TypeError, ValueError: for what is not JSON data (as :func:`json.dumps`); ValueError
        too for a value that would not read back as the node (a float where a field holds
        an int...), naming the node and the field.
    """
    write = _node_row_writers().get(type(node))
    if write is not None:
        try:
            return write(node)
        except Exception:
            pass
    return node_body_json(node)


def _node_text(
    node: Any, writers: dict[type, Callable[[Any], str]], left_out: tuple[str, ...]
) -> str:
    """The JSON text of ``node`` by its class's generated writer in ``writers``, or, for a value
    the writer does not know, the general way: its stored form without the keys ``left_out``
    and, for a body (``left_out`` given), without the fields at their plain defaults (the
    text the writer makes, or :func:`json.dumps`'s error for what is not JSON data)."""
    write = writers.get(type(node))
    if write is not None:
        try:
            return write(node)
        except Exception:
            pass
    from lash._contract.graph import GraphNode

    data = to_data(node, GraphNode)
    # What the writer refused must still read back as a node: a value not of its field's type
    # (a token count of 12.0 where an int goes) written as it is would make every later load
    # of the session fail. Refused here, it fails the commit instead, naming the field. (The
    # check reads the text back, as a load would: an IntEnum is written as its int, fine.)
    whole = _encode_general(data)
    try:
        from_data(json.loads(whole), GraphNode, what=f"node {node.id!r}")
    except ValidationError as exc:
        raise ValueError(f"{exc} (stored, it would not read back)") from None
    if not left_out:
        return whole
    for key in left_out:
        del data[key]
    _drop_defaults(node, data, type(node))
    return _encode_general(data)


def _drop_defaults(value: Any, data: Any, tp: Any) -> None:
    """Delete from ``data``, the unstructured form of ``value`` (of declared type ``tp``), the
    keys of the fields at their plain defaults, where a slim :class:`_Writers` leaves them
    out: in attrs classes, and in those nested as ``C``, ``C | None`` and ``tuple[C, ...]``
    (any other type is written whole, by the converter's hook)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        if value is not None:
            (inner,) = [a for a in args if a is not type(None)]
            _drop_defaults(value, data, inner)
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis and attrs.has(args[0]):
        if type(data) is list and len(data) == len(value):
            for item, item_data in zip(value, data, strict=True):
                _drop_defaults(item, item_data, args[0])
    elif isinstance(tp, type) and attrs.has(tp) and type(data) is dict:
        for a in attrs.fields(tp):
            if a.name not in data:
                continue  # one of the row's columns
            field = getattr(value, a.name)
            if is_default(field, plain_default(a)):
                del data[a.name]
            else:
                _drop_defaults(field, data[a.name], a.type)


@functools.cache
def _row_node_builders(*, positional: bool = False) -> dict[str, Callable[..., Any]]:
    """``{tag: builder(body, id, frame_id, turn)}`` for node bodies decoded from JSON text
    (fields at their plain defaults may be left out, as :func:`node_body_json` leaves them),
    or (``positional``) for positional ones (:func:`node_row_json`)."""
    from lash._contract.graph import GraphNode

    conv = data_converter(detailed=False)
    owned = _Builders(conv, owned=True, defaults=True, positional=positional)
    builders = {}
    for cl in typing.get_args(GraphNode):
        build = owned.build(cl, columns=ROW_COLUMNS)
        if build is not None:
            builders[NODE_KINDS[cl.__name__]] = build
    return builders


def nodes_from_rows(rows: Sequence[Sequence[Any]], *, what: str = "stored node") -> tuple[Any, ...]:
    """The graph nodes of stored rows ``(id, kind, frame_id, turn, text)``, in order: ``kind``
    is the node's ``type`` tag and ``text`` its body as :func:`node_row_json` writes it (a
    JSON array) or as :func:`node_body_json` writes it (an object), or its whole stored form
    as :func:`node_json` writes it (the rows a store wrote before it kept the body alone): a
    text holding a ``type`` or an ``id`` is read as :func:`nodes_from_json` reads it, without
    the columns.

    One :func:`json.loads` over all the texts, and a builder generated per node class taking
    each decoded body and the row's columns as they are; the rows of one frame share one
    ``frame_id`` string. On any doubt, each row goes the general way, which names the bad one.

    :raises lash.ValidationError: for the first row that is not a node, with ``what`` as its
        subject (name the session in it); for a positional body of more values than its
        class has fields, or fewer than those without a plain default, the problem names the
        node.
    """
    try:
        datas = json.loads("[" + ",".join([row[4] for row in rows]) + "]")
    except (TypeError, ValueError):
        datas = None
    if datas is not None and len(datas) == len(rows):  # not so for a text "{..},{..}"
        builders = _row_node_builders()
        positional = _row_node_builders(positional=True)
        nodes: list[Any] = []
        add = nodes.append
        frame: Any = None
        turn: Any = None
        try:
            for (node_id, kind, frame_id, row_turn, _), data in zip(rows, datas, strict=True):
                # One string (one int) for the rows of a frame (of a turn), not one per row.
                if frame_id != frame:
                    frame = frame_id
                if row_turn != turn:
                    turn = row_turn
                add(
                    (positional if type(data) is list else builders)[kind](
                        data, node_id, frame, turn
                    )
                )
            return tuple(nodes)
        except Exception:
            pass
    return _nodes_of_rows(rows, datas, what)


def _nodes_of_rows(rows: Sequence[Sequence[Any]], datas: Any, what: str) -> tuple[Any, ...]:
    """:func:`nodes_from_rows` row by row: whole forms and bodies alike, the general path for
    what the builders do not take (it names the bad row)."""
    from lash._contract.graph import GraphNode

    if datas is None or len(datas) != len(rows):
        datas = [_json_of(what, row[4]) for row in rows]
    bodies = _row_node_builders()
    positional = _row_node_builders(positional=True)
    wholes = _owned_node_builders()
    nodes = []
    for (node_id, kind, frame_id, turn, _), data in zip(rows, datas, strict=True):
        listed = type(data) is list
        whole = not listed and (type(data) is not dict or "type" in data or "id" in data)
        try:
            if listed:
                node = positional[kind](data, node_id, frame_id, turn)
            elif whole:
                node = wholes[data["type"]](data)
            else:
                node = bodies[kind](data, node_id, frame_id, turn)
        except Exception:
            if listed:  # its fields by name (a bad count of them is named here)
                data = _keyed_body(kind, data, node_id, what)
            if not whole:  # the body and its columns: the node's stored form
                data = {"id": node_id, "frame_id": frame_id, "turn": turn, **data, "type": kind}
            try:
                node = from_data(data, GraphNode, what=what)
            except ValidationError as exc:  # which of the session's nodes it is
                problems = [f"{p} (node {node_id!r})" for p in exc.problems]
                raise ValidationError(what, problems) from None
        nodes.append(node)
    return tuple(nodes)


def _keyed_body(kind: Any, data: list[Any], node_id: Any, what: str) -> dict[str, Any]:
    """The body by keys (:func:`node_body_json`'s form) of the positional body ``data`` of a
    node of tag ``kind``, for the general path to check field by field (an unknown kind: no
    fields, its tag is what is wrong).

    :raises lash.ValidationError: for an array (a nested one too) of more values than its
        class has fields, or fewer than those without a plain default, naming the node."""
    from lash._contract.graph import GraphNode

    classes = {NODE_KINDS[cl.__name__]: cl for cl in typing.get_args(GraphNode)}
    cl = classes.get(kind) if type(kind) is str else None
    if cl is None:
        return {}
    problems: list[str] = []
    keyed = _keyed(cl, data, ROW_COLUMNS, "", problems)
    if problems:
        raise ValidationError(what, [f"{p} (node {node_id!r})" for p in problems])
    return keyed  # type: ignore[no-any-return]


def _keyed(tp: Any, value: Any, skip: tuple[str, ...], path: str, problems: list[str]) -> Any:
    """``value`` with each array standing for an attrs class (``C``, ``C | None``,
    ``tuple[C, ...]``, as :func:`node_row_json` writes them) made a dict of its fields'
    names; a wrong count of values is added to ``problems``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return value if value is None else _keyed(inner, value, (), path, problems)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and attrs.has(args[0]):
        if type(value) is not list:
            return value
        return [_keyed(args[0], v, (), _join(path, i), problems) for i, v in enumerate(value)]
    if not (isinstance(tp, type) and attrs.has(tp)):
        return value
    fields = [a for a in attrs.fields(tp) if a.name not in skip]
    fewest = _fewest(fields)
    if type(value) is not list or not fewest <= len(value) <= len(fields):
        names = ", ".join(a.name for a in fields)
        count = f"{fewest} to {len(fields)}" if fewest != len(fields) else str(fewest)
        where = path or "the positional body"
        got = len(value) if type(value) is list else describe_value(value)
        problems.append(f"{where}: expected an array of {count} values ({names}), got {got}")
        return value
    return {
        a.name: _keyed(a.type, v, (), _join(path, a.name), problems)
        for a, v in zip(fields, value, strict=False)
    }


def nodes_on_demand(rows: Sequence[Sequence[Any]], *, what: str = "stored node") -> StoredNodes:
    """The graph nodes of stored rows ``(id, kind, frame_id, turn, text)``, as
    :func:`nodes_from_rows` reads them (one :func:`json.loads` over all the texts), as a
    :class:`~lash.store.StoredNodes`: each node built the first time it is read.

    :raises lash.ValidationError: for the first row that is not JSON, not an array or an
        object, of an unknown kind or with an id, frame or turn not of its type, or for a row
        read the general way that is not a node, with ``what`` as its subject (name the
        session in it).
    """
    from lash._contract.graph import StoredNodes

    rows = list(rows)
    items, build = stored_node_items(rows, what)
    calls = (stored_tool_call(), stored_tool_call(positional=True))
    return StoredNodes(items, rows, build, calls, len(rows))


def stored_node_items(
    rows: Sequence[Sequence[Any]], what: str
) -> tuple[list[Any], Callable[[Sequence[Any], Any], Any]]:
    """What :class:`lash.store.StoredNodes` holds of stored rows ``(id, kind, frame_id, turn,
    text)`` (as :func:`nodes_from_rows` takes them): for each row, its decoded body (a list or
    a dict: the node is built from it when read) or its node, and the function that builds a
    node from a row and its body.

    One :func:`json.loads` over all the texts. A row whose text is not a JSON array (a
    positional body: its length and values are checked when its node is built) or a JSON
    object in the body form, of a known kind, or whose id, frame or turn is not of its type
    (a whole form written before, anything odd) is built now, the general way (a bad one
    raises, as :func:`nodes_from_rows` would, naming it)."""
    build = functools.partial(_stored_node, what=what)
    try:
        datas = json.loads("[" + ",".join([row[4] for row in rows]) + "]")
    except (TypeError, ValueError):
        datas = None
    if type(datas) is not list or len(datas) != len(rows):  # not so for a text "{..},{..}"
        return list(_nodes_of_rows(rows, None, what)), build
    bodies = _row_node_builders()
    positional = _row_node_builders(positional=True)
    # The checks as passes in C over all the rows (half the time of a loop testing each row);
    # only when one finds something odd, the rows one by one. Positional bodies (lists) need
    # no look inside; bodies by keys (dicts: older rows, other writers) must not be whole forms.
    kinds = set(map(type, datas))
    dicts: list[Any] | None = None
    if kinds == _LIST:
        dicts = []
    elif kinds == _DICT:
        dicts = datas
    elif kinds == _BOTH:
        dicts = [data for data in datas if type(data) is dict]
    if not (
        dicts is not None
        and not any(map(operator.contains, dicts, itertools.repeat("type")))
        and not any(map(operator.contains, dicts, itertools.repeat("id")))
        and bodies.keys() >= set(map(operator.itemgetter(1), rows)) <= positional.keys()
        and set(map(type, map(operator.itemgetter(0), rows))) == _STR
        and set(map(type, map(operator.itemgetter(2), rows))) == _STR
        and set(map(type, map(operator.itemgetter(3), rows))) == _INT
    ):
        for i, data in enumerate(datas):
            row = rows[i]
            if (
                not (
                    type(data) is list
                    or (type(data) is dict and "type" not in data and "id" not in data)
                )
                or row[1] not in bodies
                or row[1] not in positional
                or type(row[0]) is not str
                or type(row[2]) is not str
                or type(row[3]) is not int
            ):
                datas[i] = build(row, data)
    return datas, build


_DICT, _LIST, _BOTH, _STR, _INT = {dict}, {list}, {dict, list}, {str}, {int}


def _stored_node(row: Sequence[Any], data: Any, *, what: str) -> Any:
    """The node of one stored row and its decoded text (``None``: decode it now), as
    :func:`nodes_from_rows` builds it."""
    if data is None:
        data = _json_of(what, row[4])
    build = None
    if type(data) is list:
        build = _row_node_builders(positional=True).get(row[1])
    elif type(data) is dict and "type" not in data and "id" not in data:
        build = _row_node_builders().get(row[1])
    if build is not None:
        try:
            # The nodes of a frame share its id's string (as nodes_from_rows makes them).
            frame = sys.intern(row[2]) if type(row[2]) is str else row[2]
            return build(data, row[0], frame, row[3])
        except Exception:
            pass  # the general way: it names what is wrong
    return _nodes_of_rows([row], [data], what)[0]


@functools.cache
def stored_tool_call(*, positional: bool = False) -> Callable[[Any], Any]:
    """The builder of a :class:`lash.ToolCall` from its decoded stored form (as the stored
    nodes' builders build the calls they hold), or (``positional``) from its array
    (:func:`node_row_json`), for the messages of a resumed session."""
    from lash._contract.types import ToolCall

    conv = data_converter(detailed=False)
    builders = _Builders(conv, owned=True, defaults=True, positional=positional)
    build = builders.build(ToolCall)
    assert build is not None
    return build


def _json_of(what: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationError(what, [f"not JSON: {exc}"]) from None


class _Writers:
    """Generate JSON writers for attrs classes: the converter's unstructured form, encoded.

    A writer reads each field, checks its exact type (``str``, ``int``, ``bool``, ``None`` for
    ``X | None``, a tuple for ``tuple[X, ...]``, the exact class for a nested attrs class) and
    writes its JSON; any other field type is unstructured by the converter's own hook and
    encoded by the general encoder, so the text is the one the general path writes. It raises
    for anything else (a subclass, a value of an unexpected type): the caller then takes the
    general path.

    With ``slim``, a field at its plain default (:func:`plain_default`) is left out, in nested
    classes too (what :func:`_drop_defaults` leaves out of the unstructured form).
    """

    def __init__(
        self, conv: cattrs.Converter, *, slim: bool = False, positional: bool = False
    ) -> None:
        self.conv = conv
        self.slim = slim
        #: Write attrs values (nested ones too) as JSON arrays of their fields in attrs order,
        #: without the trailing fields at their plain defaults, and without a tag
        #: (:func:`node_row_json`).
        self.positional = positional
        self.env: dict[str, Any] = {
            "_Unfit": _Unfit,
            "_s": json.encoder.encode_basestring,  # the general encoder's, for non-ASCII kept
            "_i": int.__repr__,  # how json writes an int (an int subclass's repr may differ)
            "_g": _encode_general,
            "_f": _free_json,
        }
        self.built: dict[
            tuple[type, tuple[str, str] | None, tuple[str, ...]], Callable[[Any], str] | None
        ] = {}

    def build(
        self, cl: type, tag: tuple[str, str] | None = None, skip: tuple[str, ...] = ()
    ) -> Callable[[Any], str] | None:
        """The writer of ``cl``: its JSON object, ``tag`` (key, value) last, without the
        fields named in ``skip``."""
        key = (cl, tag, skip)
        if key not in self.built:
            self.built[key] = None  # a class nested in itself: the general path there
            self.built[key] = self._generate(cl, tag, skip)
        return self.built[key]

    def _name(self, value: Any) -> str:
        name = f"_v{len(self.env)}"
        self.env[name] = value
        return name

    def _generate(
        self, cl: type, tag: tuple[str, str] | None, skip: tuple[str, ...]
    ) -> Callable[[Any], str] | None:
        fields = [a for a in attrs.fields(cl) if a.name not in skip]
        if tag is not None and tag[0] in {a.name for a in fields}:
            return None
        lines = ["def write(o):", f"    if type(o) is not {self._name(cl)}:"]
        lines.append("        raise _Unfit")
        if self.positional:
            if tag is not None or not all(a.init for a in attrs.fields(cl)):
                return None  # no tag in an array; a field not in __init__ is not read back
            return self._generate_positional(cl, fields, lines)
        defaults = [plain_default(a) if self.slim else _MISSING for a in fields]
        # The first piece always written (a field without a plain default, or the tag); a
        # field that may be left out carries its own comma: after it before that piece, before
        # it after that piece, and with no such piece, before it (the first comma is then cut).
        always = [i for i, d in enumerate(defaults) if d is _MISSING]
        first = always[0] if always else len(fields) if tag is not None else None
        body = ""
        optional = []
        exprs = self._read(fields, lines)
        if exprs is None:
            return None
        for i, a in enumerate(fields):
            expr = exprs[i]
            key = json.dumps(a.name)
            if defaults[i] is _MISSING:
                lines.append(f"    j{i} = {expr}")
                body += f"{',' if i != first else ''}{key}:{{j{i}}}"
                continue
            test = self._is_default(f"f{i}", defaults[i])
            if first is not None and i < first:
                text = f"{key + ':'!r} + ({expr}) + ','"
            else:
                text = f"{',' + key + ':'!r} + ({expr})"
            lines.append(f"    j{i} = '' if {test} else {text}")
            body += f"{{j{i}}}"
            optional.append(f"j{i}")
        if tag is not None:
            body += f"{',' if first != len(fields) else ''}{json.dumps(tag[0])}:"
            body += json.dumps(tag[1])
        if first is None and optional:
            lines.append(f"    return '{{' + ({' + '.join(optional)})[1:] + '}}'")
        else:
            # An f-string: one BUILD_STRING of the pieces (the braces of the JSON object doubled).
            lines.append(f"    return f{'{{' + body + '}}'!r}")
        return self._compile(cl, lines)

    def _read(self, fields: list[attrs.Attribute[Any]], lines: list[str]) -> list[str] | None:
        """Add to ``lines`` the reading of each field of ``o`` into ``f0``... and its checks;
        the expression of each one's JSON text (``None``: an unresolved annotation, which the
        general path knows what to do with)."""
        exprs = []
        for i, a in enumerate(fields):
            if isinstance(a.type, str) or a.type is None:
                return None
            lines.append(f"    f{i} = o.{a.name}")
            checks, expr = self._field(a.type, f"f{i}")
            lines += [f"    {line}" for line in checks]
            exprs.append(expr)
        return exprs

    def _compile(self, cl: type, lines: list[str]) -> Callable[[Any], str]:
        namespace = dict(self.env)
        exec(compile("\n".join(lines), f"<lash writer {cl.__qualname__}>", "exec"), namespace)
        write: Callable[[Any], str] = namespace["write"]
        return write

    def _generate_positional(
        self, cl: type, fields: list[attrs.Attribute[Any]], lines: list[str]
    ) -> Callable[[Any], str] | None:
        """The writer of ``cl``'s JSON array: each field checked, the fields up to the last
        one without a plain default always written, each later one only if it or one after
        it is not at its default (the longest such array first)."""
        exprs = self._read(fields, lines)
        if exprs is None:
            return None
        shortest = _fewest(fields)
        lines += [f"    j{i} = {exprs[i]}" for i in range(shortest)]

        def array(n: int, indent: str) -> None:
            # An f-string: one BUILD_STRING of the pieces.
            lines.append(f"{indent}return f{'[' + ','.join(f'{{j{i}}}' for i in range(n)) + ']'!r}")

        for n in range(len(fields), shortest, -1):
            test = self._is_default(f"f{n - 1}", plain_default(fields[n - 1]))
            lines.append(f"    if not ({test}):")
            lines += [f"        j{i} = {exprs[i]}" for i in range(shortest, n)]
            array(n, "        ")
        array(shortest, "    ")
        return self._compile(cl, lines)

    def _is_default(self, var: str, default: Any) -> str:
        """The test that ``var`` is the plain ``default`` (:func:`is_default`), inline."""
        if default is None or type(default) is bool:
            return f"{var} is {default!r}"
        kind = type(default).__name__  # a builtin's name: tuple, list, dict, int or str
        if not default:  # an empty one, 0 or ""
            return f"type({var}) is {kind} and not {var}"
        return f"type({var}) is {kind} and {var} == {self._name(default)}"

    def _field(self, tp: Any, var: str) -> tuple[list[str], str]:
        """Lines that check ``var`` against ``tp`` (raising :class:`_Unfit`), and the expression
        of its JSON text."""
        fail = "    raise _Unfit"
        if tp is str:
            return [f"if type({var}) is not str:", fail], f"_s({var})"
        if tp is int:
            return [f"if type({var}) is not int:", fail], f"_i({var})"
        if tp is bool:
            return [f"if type({var}) is not bool:", fail], f"'true' if {var} else 'false'"
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Literal and all(type(a) is str for a in args):
            # One of the literal's values, as the builders check (another str, written as it
            # is, would make every later load of the node fail: the general path refuses it).
            known = self._name(frozenset(args))
            return [f"if type({var}) is not str or {var} not in {known}:", fail], f"_s({var})"
        if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
            (inner,) = [a for a in args if a is not type(None)]
            checks, expr = self._field(inner, var)
            guarded = [f"if {var} is not None:", *(f"    {line}" for line in checks)]
            return guarded, f"'null' if {var} is None else {expr}"
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis and attrs.has(args[0]):
            item = self.build(args[0])
            if item is not None:
                items = f"','.join([{self._name(item)}(x) for x in {var}])"
                return [f"if type({var}) is not tuple:", fail], f"'[' + {items} + ']'"
        if attrs.has(tp) and (nested := self.build(tp)) is not None:
            return [], f"{self._name(nested)}({var})"
        nested_attrs = origin is tuple and len(args) == 2 and isinstance(args[0], type)
        if self.positional and (attrs.has(tp) or (nested_attrs and attrs.has(args[0]))):
            return [fail.strip()], "''"  # its array cannot be written: the caller's general way
        if tp is Any:
            # As cattrs unstructures a field typed Any: by the value's own class.
            return [], f"_f({var}, {self._name(self.conv.unstructure)})"
        hook = self.conv.get_unstructure_hook(tp)
        if origin in (dict, collections.abc.Mapping) and args == (str, Any):
            # Free-form (a tool call's arguments): a flat dict is written at once.
            return [], f"_f({var}, {self._name(hook)})"
        return [], f"_g({self._name(hook)}({var}))"


def describe_value(value: Any, *, redacted: bool = False) -> str:
    """``'abc' (str)``: a value as error messages show it (``*** (str)`` when redacted)."""
    # An EnvStr is text read from the environment: to the reader it is simply a str.
    kind = "str" if isinstance(value, EnvStr) else type(value).__name__
    return f"*** ({kind})" if redacted else f"{value!r} ({kind})"


def type_name(tp: Any) -> str:
    """A short readable spelling of a type annotation (``int``, ``list[str]``, ``str | None``)."""
    if tp is None or tp is type(None):
        return "None"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{name}[{inner}]"
    return str(tp).replace("typing.", "")


def _expected_from(exc: BaseException, tp: Any) -> str:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    return type_name(tp)


#: ``secret(cls, field_name)``: whether a field's value must not be shown in messages.
SecretField = Callable[[type, str], bool]


def validation_problems(
    exc: BaseException, data: Any, prefix: str = "", *, secret: SecretField | None = None
) -> list[str]:
    """Turn a cattrs structuring failure into one readable line per bad field.

    Each line reads ``<dotted.path>: expected <type>, got <value> (<type of value>)``; unknown keys
    and missing required fields get their own wording. Values of fields for which
    ``secret(cls, name)`` is true are shown as ``***``.
    """
    return list(_walk(exc, data, prefix, None, secret, False))


def _join(prefix: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


def _walk(
    exc: BaseException,
    data: Any,
    path: str,
    tp: Any,
    secret: SecretField | None,
    redacted: bool,
) -> Iterator[str]:
    if isinstance(exc, ClassValidationError):
        with_notes, without_notes = exc.group_exceptions()
        for sub, note in with_notes:
            name = note.name
            value = data.get(name, _MISSING) if isinstance(data, Mapping) else _MISSING
            hidden = redacted or (secret is not None and secret(exc.cl, name))
            yield from _walk(sub, value, _join(path, name), note.type, secret, hidden)
        for sub in without_notes:
            if isinstance(
                sub, (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError)
            ):
                yield from _walk(sub, data, path, exc.cl, secret, redacted)
            else:
                # Raised while building the instance: an attrs validator rejected a value.
                yield _validator_problem(sub, exc.cl, path, secret, redacted)
    elif isinstance(exc, IterableValidationError):
        with_notes_i, without_notes_i = exc.group_exceptions()
        for sub, inote in with_notes_i:
            idx = inote.index
            value = _MISSING
            if isinstance(data, Sequence) and not isinstance(data, str):
                value = data[idx] if isinstance(idx, int) and idx < len(data) else _MISSING
            elif isinstance(data, Mapping):
                value = data.get(idx, _MISSING)
            yield from _walk(sub, value, _join(path, idx), inote.type, secret, redacted)
        for sub in without_notes_i:
            yield from _walk(sub, data, path, tp, secret, redacted)
    elif isinstance(exc, ForbiddenExtraKeysError):
        known = sorted(a.name for a in getattr(exc.cl, "__attrs_attrs__", ()))
        hint = f" (known: {', '.join(known)})" if known else ""
        for key in sorted(exc.extra_fields):
            yield f"{_join(path, key)}: unknown key{hint}"
    elif isinstance(exc, KeyError) and data is _MISSING:
        yield f"{path}: required, missing (expected {_expected_from(exc, tp)})"
    elif data is _MISSING or tp is None:
        yield f"{path}: {exc}"
    else:
        got = describe_value(data, redacted=redacted)
        yield f"{path}: expected {_expected_from(exc, tp)}, got {got}"


def _validator_problem(
    exc: BaseException, cls: type, path: str, secret: SecretField | None, redacted: bool
) -> str:
    # attrs' own validators pass (message, attribute, ...) as args: name the field from it.
    args: tuple[Any, ...] = exc.args
    if len(args) >= 2 and isinstance(args[1], attrs.Attribute):
        field = args[1].name
        if redacted or (secret is not None and secret(cls, field)):
            return f"{_join(path, field)}: rejected by its validator (value ***)"
        return f"{_join(path, field)}: {args[0]}"
    if redacted:
        return f"{path}: rejected by a validator (value ***)"
    return f"{path}: {exc}"


def structure(data: Any, cls: type[T]) -> T:
    """Structure ``data`` into ``cls`` with the private converter (errors are cattrs errors)."""
    return converter().structure(data, cls)


def unstructure(obj: Any) -> Any:
    """Unstructure ``obj`` with the private converter."""
    return converter().unstructure(obj)


def to_data(obj: Any, as_type: Any = None) -> Any:
    """Plain JSON-ready data (dicts, lists, strings, numbers) for ``obj``.

    Graph nodes carry their ``type`` tag when ``as_type`` is :data:`lash.GraphNode`, so
    :func:`from_data` can tell the variants apart. This is how stores persist what the kernel
    hands them.
    """
    return data_converter().unstructure(obj, unstructure_as=as_type)


def from_data(data: Any, cls: Any, *, what: str = "data") -> Any:
    """Build a ``cls`` value from plain data, validating strictly.

    :raises lash.ValidationError: one readable line per bad field (path, expected type, value).
    """
    fast = data_converter(detailed=False)  # outside the try: a broken converter is a bug
    try:
        return fast.structure(data, cls)
    except Exception:
        pass
    try:
        return data_converter().structure(data, cls)
    except Exception as exc:
        problems = validation_problems(exc, data) or [f"{type(exc).__name__}: {exc}"]
        raise ValidationError(what, problems) from None
