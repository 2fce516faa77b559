"""Building a slotted attrs instance without its ``__init__``, where that is the same thing.

Hot paths that make many instances (a resumed session's nodes and messages) set each slot of
a new instance directly, as unpickling does: about half the cost of ``__init__``. This module
only says when that is equivalent; it sits below both users (the stored-node builders in
:mod:`lash._contract.serialization` and the graph's messages) so neither imports the other.
"""

from __future__ import annotations

from typing import Any

import attrs


def plain_slots(cl: type) -> dict[str, Any] | None:
    """The slot descriptors of an attrs class whose ``__init__`` only stores its arguments,
    by field name; ``None`` if it may do more (its own ``__init__``, a validator, a converter,
    a default for a field not in ``__init__``, pre/post-init hooks, a hidden slot)."""
    init = cl.__dict__.get("__init__")
    code = getattr(init, "__code__", None)
    # How attrs names the code it generates; should that change, builders call __init__.
    if code is None or not code.co_filename.startswith("<attrs generated"):
        return None
    fields = attrs.fields(cl)
    if any(not a.init or a.validator is not None or a.converter is not None for a in fields):
        return None
    if hasattr(cl, "__attrs_pre_init__") or hasattr(cl, "__attrs_post_init__"):
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
