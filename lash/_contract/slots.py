"""Building attrs instances on hot paths, where a faster way is the same thing.

Hot paths that make many instances (a resumed session's nodes and messages) set each slot of
a new instance directly, as unpickling does: about half the cost of ``__init__``. This module
only says when that is equivalent; it sits below both users (the stored-node builders in
:mod:`lash._contract.serialization` and the graph's messages) so neither imports the other.
It also makes makers (:func:`maker`: the class's ``__init__``, built that way when it is
equivalent) for instances made on every turn's path and for a resumed session's messages, and
evolvers (:func:`evolver`): ``attrs.evolve`` with a fixed set of changed fields, for records
copied on every turn's path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import attrs

T = TypeVar("T")


#: The prefix of the names the generated code uses for itself (the class, its slots' setters,
#: defaults, the instance): no parameter, named after a field, can be one of them (a class with
#: a field so named gets the general way).
_OWN = "_lash_"


def evolver(cl: type[T], *names: str) -> Callable[..., T]:
    """``evolve(instance, *values)``: ``attrs.evolve(instance, **dict(zip(names, values)))``
    for instances of ``cl``, as one generated call of the class's :func:`maker` with every
    other field read from ``instance`` (``attrs.evolve`` inspects the class on every call:
    about five times the cost). Made from the class's fields, so a field added later is
    carried too."""
    fields = attrs.fields(cast(Any, cl))
    known = {a.name for a in fields}
    if not names or not set(names) <= known or len(set(names)) != len(names):
        raise ValueError(f"evolver({cl.__name__}): not distinct fields of it: {names}")
    if any(not a.init for a in fields):
        raise ValueError(f"evolver({cl.__name__}): a field not in __init__ cannot be carried")
    if any(name.startswith(_OWN) for name in names):  # (would shadow the code's own names)
        aliases = [next(a.alias for a in fields if a.name == name) for name in names]
        return lambda instance, *values: attrs.evolve(
            instance, **dict(zip(aliases, values, strict=True))
        )
    args = []
    for a in fields:
        value = a.name if a.name in names else f"{_OWN}instance.{a.name}"
        args.append(f"{a.alias}={value}" if a.kw_only else value)
    source = (
        f"def evolve({_OWN}instance, {', '.join(names)}):\n"
        f"    return {_OWN}cls({', '.join(args)})\n"
    )
    # The class's maker (its __init__, as slot stores where that is the same thing).
    namespace: dict[str, Any] = {f"{_OWN}cls": maker(cl)}
    exec(compile(source, f"<lash evolver {cl.__qualname__}>", "exec"), namespace)
    built: Callable[..., T] = namespace["evolve"]
    return built


def maker(cl: type[T]) -> Callable[..., T]:
    """``make(...)``: ``cl(...)``, with the same signature, for a class made on every turn's
    path (the turn's nodes and records). When :func:`plain_slots` says the class's
    ``__init__`` only stores its arguments (and makes the defaults of factories, and calls
    plain converters, which the maker does the same way, in the same order), it sets each
    slot of a new instance directly, through its twin (:func:`_twin`: a 17-field frozen
    class's instance in about a third of its ``__init__``'s time); otherwise it is the class
    itself (so it is when a factory takes the instance being made)."""
    fields = attrs.fields(cast(Any, cl))
    slots = plain_slots(cl, converters=True)
    factory = cast(Any, attrs.Factory)
    if (
        slots is None
        or cl.__new__ is not object.__new__  # (instances of its own making: it makes them)
        or any(isinstance(a.default, factory) and a.default.takes_self for a in fields)
        or any(a.alias.startswith(_OWN) for a in fields)  # (would shadow the code's own names)
    ):
        return cl
    namespace: dict[str, Any] = {f"{_OWN}cls": cl, f"{_OWN}absent": attrs.NOTHING}
    # __init__'s signature: the positional fields in order, then the keyword-only ones.
    positional: list[str] = []
    keyword: list[str] = []
    made: list[str] = []  # a factory's default, made per instance as __init__ makes it
    for i, a in enumerate(fields):
        param = a.alias
        if isinstance(a.default, factory):
            namespace[f"{_OWN}f{i}"] = a.default.factory
            param = f"{a.alias}={_OWN}absent"
            made.append(f"    if {a.alias} is {_OWN}absent:\n        {a.alias} = {_OWN}f{i}()")
        elif a.default is not attrs.NOTHING:
            namespace[f"{_OWN}d{i}"] = a.default
            param = f"{a.alias}={_OWN}d{i}"
        if a.converter is not None:  # (after the default: __init__ converts that too)
            namespace[f"{_OWN}c{i}"] = a.converter
            made.append(f"    {a.alias} = {_OWN}c{i}({a.alias})")
        (keyword if a.kw_only else positional).append(param)
    params = [*positional, *(["*", *keyword] if keyword else [])]
    twin = _twin(cl, slots)
    if twin is None:
        return cl
    namespace[f"{_OWN}twin"] = twin
    # The twin called (its __init__ is object's, and so is its __new__: checked above):
    # less than a call of object.__new__ (0.08 us against 0.10).
    lines = [f"def make({', '.join(params)}):", *made, f"    {_OWN}o = {_OWN}twin()"]
    lines += [f"    {_OWN}o.{a.name} = {a.alias}" for a in fields]
    lines += [f"    {_OWN}o.__class__ = {_OWN}cls", f"    return {_OWN}o"]
    exec(compile("\n".join(lines), f"<lash maker {cl.__qualname__}>", "exec"), namespace)
    built: Callable[..., T] = namespace["make"]
    return built


def _twin(cl: type, slots: dict[str, Any]) -> type | None:
    """A subclass of ``cl`` that adds nothing but plain attribute stores (``object``'s
    ``__setattr__`` and ``__delattr__``, the pair that decides the type's store slot), so
    that a maker sets each slot with one specialized store (``STORE_ATTR_SLOT``) and then
    makes the instance a ``cl`` by assigning ``__class__`` (allowed: the twin adds no slot,
    so the layouts are one). Calling each slot descriptor's ``__set__`` went through a
    method wrapper and an argument tuple per field: a 17-field ``TurnResult`` made in
    0.31 us instead of 0.88 (its ``__init__``: 1.11). ``None`` when a store on the twin
    would not reach the slot itself (a field shadowed by another attribute of the class), and
    when making a subclass runs code of the class: its metaclass's, or an
    ``__init_subclass__`` of a base other than ``object`` and ``typing.Generic`` (a registry
    of kinds would count the twin). (The twin is in ``cl.__subclasses__()``: nothing of lash
    walks them.)"""
    if type(cl) is not type or any(
        "__init_subclass__" in k.__dict__ for k in cl.__mro__ if k not in (object, Generic)
    ):
        return None
    for name, slot in slots.items():
        found = next(k.__dict__[name] for k in cl.__mro__ if name in k.__dict__)
        if found is not slot:
            return None
    namespace = {
        "__slots__": (),
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
        "__init__": object.__init__,  # (the maker's `twin()`: its fields are stored after)
        "__module__": cl.__module__,
        "__qualname__": f"{cl.__qualname__}._lash_maker_twin",
    }
    try:
        return type(cl)(f"{cl.__name__}_maker_twin", (cl,), namespace)
    except TypeError:  # (a class that cannot be subclassed: its __init__ it is)
        return None


def plain_slots(cl: type, *, converters: bool = False) -> dict[str, Any] | None:
    """The slot descriptors of an attrs class whose ``__init__`` only stores its arguments,
    by field name; ``None`` if it may do more (its own ``__init__`` or ``__new__``, a
    validator, a converter, a default for a field not in ``__init__``, pre/post-init hooks, a
    hidden slot). With ``converters``, a field may have a converter that is a plain callable
    of the value (what :func:`maker` calls as ``__init__`` does; an ``attrs.Converter`` may
    take the instance)."""
    init = cl.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    # How attrs names the code it generates; should that change, builders call __init__.
    if code is None or not code.co_filename.startswith("<attrs generated"):
        return None
    fields = attrs.fields(cl)
    if any(not a.init or a.validator is not None for a in fields):
        return None
    if any(a.converter is not None for a in fields) and (
        not converters or any(isinstance(a.converter, attrs.Converter) for a in fields)
    ):
        return None
    if hasattr(cl, "__attrs_pre_init__") or hasattr(cl, "__attrs_post_init__"):
        return None
    if cast(Any, cl).__new__ is not object.__new__:  # (the class runs its own; stores do not)
        return None
    slots: dict[str, Any] = {}
    for klass in cl.__mro__[:-1]:  # object last
        names = klass.__dict__.get("__slots__")
        if names is None:
            return None  # a class in the chain has a __dict__
        for name in (names,) if isinstance(names, str) else names:
            if name != "__weakref__":
                slots.setdefault(name, klass.__dict__[name])
    return slots if set(slots) == {a.name for a in fields} else None
