"""Resolve the string annotations of public attrs classes in their defining module.

Public classes set ``__module__ = "lash"`` so users see ``lash.Name``. With postponed annotations
(``from __future__ import annotations``), attrs and cattrs would then evaluate a class's
annotations in the ``lash`` package namespace, where names like ``Any`` or ``Mapping`` do not
exist. Each module calls :func:`resolve_here` after defining its classes, so annotations are
resolved once, against the module that wrote them.

Resolving runs when each module is imported, for every attrs class (``lash --help`` and ``lash
plugins`` import some sixty), so it takes a direct path: each annotation string is compiled once
per process (the same strings recur: ``str``, ``str | None``...) and evaluated where
:func:`typing.get_type_hints` would evaluate it. An annotation that evaluates to something
``get_type_hints`` would still rework (a quoted name inside it, a bare ``None``) sends the class
the general way, ``attrs.resolve_types``; ``tests/test_annotations.py`` holds the direct path to
the general one on every attrs class of lash and its builtin plugins.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs

#: Compiled annotation strings; code objects do not depend on the namespace they run in.
_CODE: dict[str, types.CodeType] = {}

#: The generic forms whose arguments :func:`_final` looks into: the typing module's aliases,
#: ``list[...]`` and the like, ``X | Y``.
_GENERIC = (typing._GenericAlias, types.GenericAlias, types.UnionType)  # type: ignore[attr-defined]


def resolve_here(namespace: Mapping[str, Any]) -> None:
    """Resolve every attrs class in ``namespace`` against that namespace.

    A class annotated with names imported only under ``TYPE_CHECKING`` (kernel views such as
    ``TurnInfo.session``) is left unresolved: lash never structures those.
    """
    globalns = dict(namespace)
    for value in list(namespace.values()):
        if isinstance(value, type) and attrs.has(value):
            try:
                resolve_class(value, globalns)
            except NameError:
                continue


def resolve_class(cls: type, globalns: dict[str, Any]) -> None:
    """What ``attrs.resolve_types(cls, globalns=globalns)`` does, the direct way when it can.

    :raises NameError: when an annotation names something ``globalns`` does not hold.
    """
    if getattr(cls, "__attrs_types_resolved__", None) == cls:
        return
    hints = _direct_hints(cls, globalns)
    if hints is None:
        attrs.resolve_types(cls, globalns=globalns)
        return
    for field in attrs.fields(cls):
        if field.name in hints:
            # Fields are frozen: attrs.resolve_types sets them the same way.
            object.__setattr__(field, "type", hints[field.name])
    cls.__attrs_types_resolved__ = cls  # type: ignore[attr-defined]


def _direct_hints(cls: type, globalns: dict[str, Any]) -> dict[str, Any] | None:
    """``typing.get_type_hints(cls, globalns, include_extras=True)`` when every annotation
    evaluates to a final form, else ``None``. Like ``get_type_hints``, each class of the MRO
    is evaluated with its own namespace as locals, and a later class's annotation wins."""
    hints: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        annotations = inspect.get_annotations(base)  # the class's own, as strings
        localns = dict(vars(base))
        for name, annotation in annotations.items():
            if not isinstance(annotation, str):
                return None
            code = _CODE.get(annotation)
            if code is None:
                code = _CODE[annotation] = compile(annotation, "<annotation>", "eval")
            value = eval(code, globalns, localns)
            if not _final(value):
                return None
            hints[name] = value
    return hints


def _final(value: Any, *, top: bool = True) -> bool:
    """Whether ``get_type_hints`` would return ``value`` as it is: it evaluates the strings and
    forward references inside an annotation, and turns a bare ``None`` (not one inside, as in
    ``Awaitable[None]``) into ``NoneType``."""
    if isinstance(value, str | typing.ForwardRef) or (top and value is None):
        return False
    if isinstance(value, _GENERIC):
        if isinstance(value, types.GenericAlias) or typing.get_origin(value) is not typing.Literal:
            return all(_final(arg, top=False) for arg in value.__args__)
    return True
