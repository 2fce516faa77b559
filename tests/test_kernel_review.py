"""Review of the kernel round h-kernel (37a188a..h-kernel): behaviour that must not differ
from 37a188a's. Each test states what 37a188a did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from _cores import sqlite_url
from _recorder import Recorder

import lash
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio


@attrs.define
class NoFields:
    """A plugin state without fields (a marker: the plugin keeps nothing yet)."""


class Marker:
    lash_plugin = lash.PluginMeta(name="marker", state=NoFields)


async def test_a_state_without_fields_commits(tmp_path: Path) -> None:
    """A plugin whose state class has no fields: turns complete and commit, as on 37a188a
    (there, the state was unstructured to ``{}``, committed once)."""
    async with lash.LashCore(
        plugins=[standard, stores, Recorder(["one", "two"]), Marker()],
        builtins=(),
        store=sqlite_url(tmp_path),
        provider="recorder",
    ) as core:
        session = await core.session("s").open()
        first = await session.turn("hi").run()
        second = await session.turn("again").run()
        assert (first.outcome, second.outcome) == ("completed", "completed"), (
            first.error,
            second.error,
        )
        assert isinstance(session.state(NoFields), NoFields)
        await session.close()


class Text(str):
    """A str subclass (marshal cannot write it)."""


_ODD_VALUES = [
    0,
    1,
    1.0,
    True,
    False,
    0.0,
    -0.0,
    float("nan"),
    2**70,
    "a",
    Text("a"),
    (1,),
    [1],
    [1.0],
    [True],
    {1},
    frozenset({1}),
    {"a": 1, "b": 2},
    {"b": 2, "a": 1},
    {1: "a"},
    {"1": "a"},
    b"a",
    bytearray(b"a"),
    None,
    [],
    (),
    {},
]


@attrs.define
class Odd:
    x: Any = None
    y: Any = None


def test_a_state_is_committed_exactly_when_37a188a_committed_it() -> None:
    """For every sequence of two field assignments among odd values (equal values of other
    types, -0.0, NaN, str subclasses, containers of other kinds, dicts in another order), the
    image commits the state exactly when 37a188a's rule (its unstructured snapshot's
    fingerprint differs from the committed one) says so; mutating a list in place too."""
    import itertools

    from lash._contract.serialization import unstructure
    from lash._kernel.image import SessionImage, fingerprint

    for a, b in itertools.product(_ODD_VALUES, repeat=2):
        image = SessionImage("s")
        state = Odd(a, [a])
        image.states = {"odd": state}
        committed: Any = None
        for step in range(4):
            if step == 1:
                state.x = b
            elif step == 2:
                state.y.append(b)  # in place: the same list object
            elif step == 3:
                state.y = [b, a]
            delta = image.delta((), {}, 0, None)  # type: ignore[arg-type]
            reference = fingerprint(unstructure(state))
            expected = committed is None or reference != committed
            assert ("odd" in delta.plugin_states) == expected, (a, b, step)
            image.committed(delta, image.revision + 1)
            if "odd" in delta.plugin_states:
                committed = reference


@attrs.frozen
class Point:
    """A record with a field named ``o`` (the makers' generated code names its instance ``o``)."""

    o: int
    x: int = 0


def test_an_evolver_keeps_a_field_named_o() -> None:
    """evolver(cls, ...) evolves like attrs.evolve for a class with a field ``o``: on 37a188a
    it called the class; since h-kernel it calls maker(cls), whose code stores its new instance
    in a local ``o`` over the argument ``o``."""
    from lash._contract.slots import evolver

    evolve = evolver(Point, "x")
    assert evolve(Point(1), 2) == Point(1, 2) == attrs.evolve(Point(1), x=2)


def test_a_maker_keeps_a_field_named_o() -> None:
    """maker(cls) makes what cls makes for a field named ``o`` (already wrong on 37a188a: the
    generated ``make`` rebinds ``o`` to the new instance before storing the fields)."""
    from lash._contract.slots import maker

    assert maker(Point)(1, 2) == Point(1, 2)
