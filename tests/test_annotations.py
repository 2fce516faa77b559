"""lash._contract.annotations resolves string annotations the direct way (each string compiled
once, evaluated where ``typing.get_type_hints`` evaluates it) and must give exactly what
``attrs.resolve_types`` gives: checked on every attrs class of lash and its builtin plugins, in
every module namespace that resolves it, and on generated annotations (hypothesis)."""

from __future__ import annotations

import importlib
import pkgutil
import typing
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, Optional

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lash
import lash_plugins_builtin
from lash._contract import annotations


def _modules() -> list[Any]:
    found = []
    for package in (lash, lash_plugins_builtin):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            found.append(importlib.import_module(info.name))
    return found


def _general(cls: type, globalns: dict[str, Any]) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=globalns, include_extras=True)


def test_every_attrs_class_resolves_as_get_type_hints_resolves_it() -> None:
    """Wherever resolve_here meets an attrs class (its own module, or one importing it), the
    direct hints are get_type_hints' hints, or the class goes the general way."""
    direct = general_only = 0
    for module in _modules():
        globalns = dict(vars(module))
        for value in list(vars(module).values()):
            if not (isinstance(value, type) and attrs.has(value)):
                continue
            try:
                expected = _general(value, dict(globalns))
            except NameError:
                with pytest.raises(NameError):
                    annotations._direct_hints(value, dict(globalns))
                continue
            hints = annotations._direct_hints(value, dict(globalns))
            if hints is None:
                general_only += 1
                continue
            direct += 1
            assert hints == expected, f"{module.__name__}: {value.__qualname__}"
    # The direct path is the common one (a quoted name inside an annotation is rare).
    assert direct > 10 * general_only, (direct, general_only)


def test_resolved_field_types_are_what_attrs_would_set() -> None:
    """After import, each public class's fields carry the types get_type_hints gives in the
    module that defines it, and the class is marked resolved, as attrs.resolve_types marks it."""
    for module in _modules():
        for value in list(vars(module).values()):
            if not (isinstance(value, type) and attrs.has(value)):
                continue
            if getattr(value, "__attrs_types_resolved__", None) is not value:
                continue
            if (
                value.__qualname__ not in vars(module)
                or vars(module)[value.__qualname__] is not value
            ):
                continue
            try:
                expected = _general(value, dict(vars(module)))
            except NameError:
                continue
            for field in attrs.fields(value):
                if field.name in expected:
                    assert field.type == expected[field.name], (value, field.name)


class Fwd:
    """A class named by generated annotations, bare and quoted."""


NAMESPACE: dict[str, Any] = {
    "Any": Any,
    "Annotated": Annotated,
    "Awaitable": Awaitable,
    "Callable": Callable,
    "Fwd": Fwd,
    "Literal": Literal,
    "Mapping": Mapping,
    "Optional": Optional,
}

ATOMS = st.sampled_from(["str", "int", "bool", "None", "Any", "Fwd", "'Fwd'", "Literal['a', 1]"])


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        inner.map(lambda a: f"list[{a}]"),
        inner.map(lambda a: f"tuple[{a}, ...]"),
        st.tuples(inner, inner).map(lambda ab: f"dict[{ab[0]}, {ab[1]}]"),
        st.tuples(inner, inner).map(lambda ab: f"Mapping[{ab[0]}, {ab[1]}]"),
        st.tuples(inner, inner).map(lambda ab: f"{ab[0]} | {ab[1]}"),
        inner.map(lambda a: f"Optional[{a}]"),
        st.tuples(inner, inner).map(lambda ab: f"Callable[[{ab[0]}], {ab[1]}]"),
        inner.map(lambda a: f"Awaitable[{a}]"),
        inner.map(lambda a: f"Annotated[{a}, 'meta']"),
        inner.map(lambda a: f"'{a}'" if "'" not in a else a),
    )


ANNOTATIONS = st.recursive(ATOMS, _extend, max_leaves=6)


def _twin(strings: list[str]) -> type:
    namespace: dict[str, Any] = {"__annotations__": {f"f{i}": s for i, s in enumerate(strings)}}
    for i in range(len(strings)):
        namespace[f"f{i}"] = None
    return attrs.define(type("Generated", (), namespace))


def _outcome(resolve: Callable[[type], object], strings: list[str]) -> object:
    cls = _twin(strings)
    try:
        resolve(cls)
    except Exception as exc:
        return type(exc)
    return [field.type for field in attrs.fields(cls)]


@settings(max_examples=300, deadline=None)
@given(st.lists(ANNOTATIONS, min_size=1, max_size=4))
def test_generated_annotations_resolve_as_attrs_resolves_them(strings: list[str]) -> None:
    """The same class resolved the direct way and by attrs.resolve_types: the same field types,
    or the same error."""
    direct = _outcome(lambda cls: annotations.resolve_class(cls, dict(NAMESPACE)), strings)
    general = _outcome(lambda cls: attrs.resolve_types(cls, globalns=dict(NAMESPACE)), strings)
    assert direct == general
