"""Makers (lash._contract.slots.maker): a class's __init__, built as slot stores where that
is the same thing (the turn's nodes, a resumed session's messages), checked against the class
itself."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lash

_ANY_VALUE = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.tuples(st.text())


@pytest.mark.parametrize(
    "cls",
    [
        lash.UserMessage,
        lash.AssistantMessage,
        lash.ToolCallNode,
        lash.ToolResultNode,
        lash.TurnOutcome,
        lash.FrameBoundary,
        lash.PluginNode,
        lash.Message,
        lash.Usage,
        lash.ModelDone,  # (the scripted provider's events)
        lash.TextDelta,
        lash.ToolCallReady,
        # The turn's records (made directly, or by evolvers: lash._contract.slots.evolver).
        lash.TurnResult,
        lash.ModelResponse,
        lash.PromptView,
        lash.store.CommitDelta,  # (fields with factory defaults)
        lash.store.TurnRecord,
        lash.store.EventDraft,
        lash.store.StoredEvent,
        lash.store.Lease,
        lash.ToolResult,  # (a tool's rendered result)
        lash.ToolCallRecord,
        lash.TurnFinished,
        lash.ToolCall,  # (the scripted provider's calls)
    ],
)
@given(data=st.data())
@settings(max_examples=60, deadline=None)
def test_a_maker_makes_what_the_class_makes(cls: type, data: st.DataObject) -> None:
    """maker(cls) (the turn's node and record makers, a resumed session's messages) takes
    __init__'s arguments (by keyword, the leading ones by position too) and returns an
    instance equal to what __init__ returns, every field given the same object, frozen and
    hashed alike; fields with defaults may be left out (a factory's default is made anew for
    each instance, as __init__ makes it)."""
    from lash._contract.slots import maker

    make = maker(cls)
    assert make is not cls  # (each of these is made by slot stores)
    given = {}
    for field in attrs.fields(cls):
        if field.default is attrs.NOTHING or data.draw(st.booleans()):
            given[field.alias] = data.draw(_ANY_VALUE)
    # The leading fields given may be passed by position (as the turn passes them).
    kwargs, args = dict(given), []
    for field in attrs.fields(cls):
        if field.kw_only or field.alias not in kwargs or not data.draw(st.booleans()):
            break
        args.append(kwargs.pop(field.alias))
    made, expected = make(*args, **kwargs), cls(*args, **kwargs)
    assert type(made) is cls and made == expected
    for field in attrs.fields(cls):
        value = getattr(made, field.name)
        if field.alias in given:
            assert value is getattr(expected, field.name)
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            assert value is not make(*args, **kwargs).__getattribute__(field.name)  # made anew
    try:
        expected_hash = hash(expected)
    except TypeError:  # a dict field (CommitDelta's): unhashable, as the class makes it
        with pytest.raises(TypeError):
            hash(made)
    else:
        assert hash(made) == expected_hash
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.__setattr__(attrs.fields(cls)[0].name, None)


def test_a_maker_calls_the_class_when_its_init_does_more() -> None:
    """A validator, a converter or a factory that takes the instance: the maker calls the
    class, which runs them (never skips them); positional and keyword-only arguments as
    __init__ takes them."""
    from lash._contract.slots import maker

    @attrs.frozen
    class Checked:
        a: int = attrs.field(validator=attrs.validators.instance_of(int))
        b: str = attrs.field(default="x", converter=str)
        c: list[int] = attrs.field(factory=list, kw_only=True)

    @attrs.frozen
    class Derived:
        a: int
        b: list[int] = attrs.field(default=attrs.Factory(lambda self: [self.a], takes_self=True))

    assert maker(Derived) is Derived  # a factory that takes the instance: the class makes it
    make = maker(Checked)
    assert make(1, 2) == Checked(1, "2") and make(1).c == [] and make(1).c is not make(1).c
    assert make(1, c=[3]) == Checked(1, c=[3])
    with pytest.raises(TypeError):
        make("not an int")
    with pytest.raises(TypeError):
        make(1, "b", [3])  # c is keyword-only, as in __init__


def test_fields_named_as_the_generated_code_names_its_own_values_are_kept() -> None:
    """The generated code's own names cannot be shadowed by a field: a field ``o`` (the name of
    the instance being made, once), ``cls`` or ``instance`` is stored and carried; a field whose
    name starts with the code's prefix gets the general way. Expected: ``attrs.evolve`` and the
    class's own ``__init__``."""
    from lash._contract.slots import evolver, maker

    @attrs.frozen
    class Shadowing:
        o: int
        cls: str = "c"
        instance: list[int] = attrs.Factory(list)
        _lash_o: int = 0

    made = maker(Shadowing)(1, "k", [2], 3)
    assert made == Shadowing(1, "k", [2], 3)
    assert (made.o, made.cls, made.instance, made._lash_o) == (1, "k", [2], 3)
    for names, values in [
        (("o",), (5,)),
        (("cls", "instance"), ("d", [7])),
        (("_lash_o",), (9,)),
    ]:
        evolved = evolver(Shadowing, *names)(made, *values)
        aliases = [name.removeprefix("_") for name in names]  # (how attrs names the arguments)
        assert evolved == attrs.evolve(made, **dict(zip(aliases, values, strict=True)))


def test_a_maker_calls_the_class_when_a_store_would_not_reach_the_slot() -> None:
    """A field's slot shadowed by another attribute of the class (a property set on a
    subclass after attrs made it): stores by name would reach the property, so the maker is
    the class itself, which does what it does (here: refuses the store)."""
    from lash._contract.slots import maker

    @attrs.frozen
    class Base:
        a: int

    @attrs.frozen
    class Shadowed(Base):
        b: int

    Shadowed.a = property(lambda self: 1)  # type: ignore[assignment]
    assert maker(Base) is not Base
    assert maker(Shadowed) is Shadowed
    with pytest.raises(AttributeError):
        Shadowed(1, 2)


def test_a_made_instance_is_of_the_class_itself() -> None:
    """An instance a maker made is of the class (``type``, ``__class__``, pickling, copies,
    weak references, hashing): nothing of the maker's own subclass is left on it."""
    import copy
    import pickle
    import weakref

    from lash._contract.slots import maker

    made = maker(lash.TurnResult)(session_id="s", index=1, outcome="completed")
    expected = lash.TurnResult(session_id="s", index=1, outcome="completed")
    assert type(made) is lash.TurnResult and made.__class__ is lash.TurnResult
    assert pickle.loads(pickle.dumps(made)) == expected
    assert copy.copy(made) == expected and copy.deepcopy(made) == expected
    assert weakref.ref(made)() is made
    assert hash(made) == hash(expected) and repr(made) == repr(expected)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del made.index


def test_a_maker_calls_converters_as_init_does() -> None:
    """A field's plain converter is called by the maker as ``__init__`` calls it: on the value
    given or on the default made for it, in field order with the factories (the calls
    recorded here are the ones ``__init__`` makes), and its error is raised alike; an
    ``attrs.Converter`` (it may take the instance) sends the maker to the class."""
    from lash._contract.slots import maker

    calls: list[str] = []

    def conv(name: str) -> Any:
        def convert(value: Any) -> Any:
            calls.append(f"convert {name} {value!r}")
            if value == "bad":
                raise ValueError(f"bad {name}")
            return (name, value)

        return convert

    def made(name: str) -> Any:
        def factory() -> Any:
            calls.append(f"make {name}")
            return name

        return factory

    @attrs.frozen
    class Converted:
        a: Any = attrs.field(converter=conv("a"))
        b: Any = attrs.field(factory=made("b"), converter=conv("b"))
        c: Any = attrs.field(factory=made("c"))
        d: Any = attrs.field(default=4, converter=conv("d"), kw_only=True)

    make = maker(Converted)
    assert make is not Converted
    for args, kwargs in [((1,), {}), ((1, 2, 3), {"d": 5}), ((1, "bad"), {}), (("bad",), {})]:
        calls.clear()
        try:
            expected: Any = Converted(*args, **kwargs)
        except ValueError as exc:
            expected = repr(exc)
        by_init = list(calls)
        calls.clear()
        try:
            got: Any = make(*args, **kwargs)
        except ValueError as exc:
            got = repr(exc)
        assert got == expected and calls == by_init
        assert type(got) is type(expected)

    @attrs.frozen
    class TakesSelf:
        a: int = attrs.field(converter=attrs.Converter(lambda v, self: v, takes_self=True))

    assert maker(TakesSelf) is TakesSelf


@given(
    options=st.none()
    | st.just(lash.ModelOptions())
    | st.builds(lash.ModelOptions, temperature=st.none() | st.floats(0, 2))
    | st.dictionaries(st.sampled_from(["temperature", "seed", "other"]), st.integers(0, 9))
    | st.booleans(),
    tools=st.just(()) | st.just((lash.ToolSpec("t", "d", {}),)),
    keyword=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_the_model_request_maker_makes_what_the_class_makes(
    options: Any, tools: tuple[Any, ...], keyword: bool
) -> None:
    """A model call's request (made by its maker: its options go through the class's
    converter): equal to what ``ModelRequest(...)`` makes, or the same error (a bad options
    value)."""
    from lash._contract.slots import maker

    make = maker(lash.ModelRequest)
    assert make is not lash.ModelRequest
    messages = (lash.Message("user", "hi"),)
    args: tuple[Any, ...] = ("m", messages, tools)
    kwargs = {"options": options} if keyword else {}
    if not keyword and options is not None:
        args = (*args, options)
    results = []
    for build in (lash.ModelRequest, make):
        try:
            results.append(build(*args, **kwargs))
        except Exception as exc:
            results.append(repr(exc))
    made, expected = results[1], results[0]
    assert made == expected and type(made) is type(expected)
    if type(made) is lash.ModelRequest:
        assert made.messages is messages and made.tools is tools


def test_a_maker_calls_the_class_when_it_has_its_own_new() -> None:
    """A class with its own ``__new__`` (it may count, intern or refuse instances): making an
    instance runs it, so the maker is the class itself (slot stores on an instance from
    ``object.__new__`` would skip it). Expected: what ``Counted(1)`` does, one ``__new__``
    call per instance."""
    from lash._contract.slots import maker

    news: list[tuple[Any, ...]] = []

    @attrs.frozen
    class Counted:
        a: int

        def __new__(cls, *args: Any) -> Any:
            news.append(args)
            return super().__new__(cls)

    assert maker(Counted)(1) == Counted(1)
    assert news == [(1,), (1,)]


def test_making_a_maker_runs_no_code_of_the_class() -> None:
    """A class whose base or metaclass runs code for each new subclass (a registry of kinds,
    say) gets no twin (the subclass a maker stores through): making its maker registers
    nothing and adds no subclass (``__subclasses__``, which tools walk, is unchanged); the
    maker is the class itself."""
    from lash._contract.slots import maker

    registered: list[str] = []

    class Registry:
        __slots__ = ()

        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            registered.append(cls.__name__)

    class Meta(type):
        def __init__(cls, *args: Any) -> None:
            super().__init__(*args)
            registered.append(f"meta {cls.__name__}")

    @attrs.frozen
    class Kind(Registry):
        a: int

    @attrs.frozen
    class Made(metaclass=Meta):
        a: int

    registered.clear()
    for cls in (Kind, Made):
        make = maker(cls)
        assert make is cls and make(1) == cls(1)
        assert cls.__subclasses__() == []
    assert registered == []
