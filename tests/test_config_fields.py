"""A session configuration's fields are checked before anything is applied: ``configure()``'s
patch, a child session's config and the config a ``mutate_session_config`` implementation
returns. A value of the wrong shape is refused naming its field (and the plugin, for a hook's
result), and nothing is committed.

Before these checks, ``configure(prompt_layers="You are terse.")`` committed each character
as a layer, ``prompt_layers=["a", 1]`` and ``model=5`` were committed as they were, and other
shapes failed with a bare ``TypeError``/``AttributeError`` naming no field."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from _recorder import Recorder

import lash
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio


def make_core(rec: Recorder, *plugins: object, store: str = "memory://") -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, rec, *plugins], builtins=(), store=store, provider="recorder"
    )


async def store_revision(core: lash.LashCore, session_id: str) -> int:
    record = await core.store.load(session_id)
    return 0 if record is None else record.revision


# (patch, the problem line the error must hold)
BAD_PATCHES = [
    (
        {"prompt_layers": "You are terse."},
        "prompt_layers: expected a list of str, got 'You are terse.' (str) "
        "(a list of one layer is [text])",
    ),
    ({"prompt_layers": ["a", 1]}, "prompt_layers[1]: expected a str, got 1 (int)"),
    ({"prompt_layers": {"a": 1}}, "prompt_layers: expected a list of str, got {'a': 1} (dict)"),
    ({"model": 5}, "model: expected a str or None, got 5 (int)"),
    ({"provider": ["x"]}, "provider: expected a str or None, got ['x'] (list)"),
    (
        {"plugin_options": "x"},
        "plugin_options: expected a mapping of plugin names to their options, got 'x' (str)",
    ),
    (
        {"plugin_options": {"p": 1}},
        "plugin_options['p']: expected a mapping of option names to values, got 1 (int)",
    ),
    (
        {"plugin_options": {"p": {2: "x"}}},
        "plugin_options['p']: an option name must be a str, got 2 (int)",
    ),
    # (lash 0.1's protocol_options, deprecated: before, a bare TypeError or ValueError)
    (
        {"protocol_options": 5},
        "protocol_options: expected a mapping of option names to values, got 5 (int)",
    ),
    (
        {"protocol_options": "ab"},
        "protocol_options: expected a mapping of option names to values, got 'ab' (str)",
    ),
    ({"protocol_options": {1: 2}}, "protocol_options: an option name must be a str, got 1 (int)"),
]


@pytest.mark.parametrize(("patch", "problem"), BAD_PATCHES)
async def test_configure_refuses_a_field_of_the_wrong_shape_naming_it(
    tmp_path: Any, patch: dict[str, Any], problem: str
) -> None:
    """A patch field of the wrong shape is a SessionError naming it; nothing changes."""
    rec = Recorder([{"text": "hi"}])
    core = make_core(rec, store=f"sqlite:///{tmp_path / 'db.sqlite'}")
    async with core:
        session = await core.session("s").open()
        await session.turn("hello").run()
        config, revision = session.config, session.revision
        with pytest.raises(lash.SessionError) as info:
            await session.configure(**patch)
        assert str(info.value).splitlines() == [
            "session 's': configure() got invalid field(s):",
            f"  - {problem}",
        ]
        assert info.value.session_id == "s"
        assert session.config == config and session.revision == revision
        assert await store_revision(core, "s") == revision


MODEL_OPTIONS_OF_THE_WRONG_SHAPE = [
    (5, "model_options: expected lash.ModelOptions or a mapping of its fields, got 5"),
    ("x", "model_options: expected lash.ModelOptions or a mapping of its fields, got 'x'"),
    (
        {1: 0.5},
        "model_options[1]: unknown key (known: extra, max_tokens, parallel_tool_calls, seed, "
        "stop, temperature, tool_choice, top_p)",
    ),
]


@pytest.mark.parametrize(("value", "problem"), MODEL_OPTIONS_OF_THE_WRONG_SHAPE)
async def test_model_options_of_the_wrong_shape_are_named_as_the_field(
    value: Any, problem: str
) -> None:
    """configure(), turn() and a child's config name model_options itself when the whole value
    is wrong, and a key by its index (before: ``model_options.expected lash.ModelOptions...``
    and ``model_options.[1]``, the path glued to the message)."""
    core = make_core(Recorder([{"text": "p"}]))
    async with core:
        session = await core.session("s").open()
        with pytest.raises(lash.SessionError) as info:
            await session.configure(model_options=value)
        assert str(info.value).splitlines() == [
            "session 's': configure() got invalid model_options:",
            f"  - {problem}",
        ]
        with pytest.raises(lash.SessionError) as info:
            session.turn("hi", model_options=value)
        assert str(info.value).splitlines() == [
            "session 's': turn() got invalid model_options:",
            f"  - {problem}",
        ]
        await session.turn("hi").run()
        with pytest.raises(lash.SessionError) as info:
            await core.child_session("s", id="kid", config={"model_options": value}).open()
        assert str(info.value).splitlines() == [
            "session 'kid': a child session's config got invalid model_options:",
            f"  - {problem}",
        ]


async def test_every_bad_field_of_a_patch_is_named_at_once() -> None:
    """Every bad field of one patch is named in one error, a line each."""
    core = make_core(Recorder([]))
    async with core:
        session = await core.session("s").open()
        with pytest.raises(lash.SessionError) as info:
            await session.configure(model=1, prompt_layers="x")
        lines = str(info.value).splitlines()[1:]
        assert lines == [
            "  - model: expected a str or None, got 1 (int)",
            "  - prompt_layers: expected a list of str, got 'x' (str) "
            "(a list of one layer is [text])",
        ]


async def test_a_tuple_or_a_list_of_layers_is_taken_and_none_unsets_model() -> None:
    """Layers as a tuple are taken (joined into the system prompt), and model=None is allowed."""
    rec = Recorder([{"text": "ok"}])
    core = make_core(rec)
    async with core:
        session = await core.session("s").open()
        config = await session.configure(prompt_layers=("One.", "Two."), model=None)
        assert config.prompt_layers == ("One.", "Two.")
        await session.turn("hello").run()
        assert rec.requests[-1].messages[0].content == "One.\n\nTwo."


async def test_a_child_session_config_of_the_wrong_shape_is_refused_naming_the_child() -> None:
    """A child's config is checked as a patch is, naming the child; the child is not created."""
    core = make_core(Recorder([{"text": "p"}]))
    async with core:
        parent = await core.session("p").open()
        await parent.turn("hi").run()
        with pytest.raises(lash.SessionError) as info:
            await core.child_session("p", id="kid", config={"prompt_layers": "Be brief."}).open()
        assert str(info.value).splitlines() == [
            "session 'kid': a child session's config got invalid field(s):",
            "  - prompt_layers: expected a list of str, got 'Be brief.' (str) "
            "(a list of one layer is [text])",
        ]
        assert await core.store.load("kid") is None


BAD_CHILD_CONFIGS = [
    (
        {"model_options": {"temperature": "hot"}},
        [
            "session 'kid': a child session's config got invalid model_options:",
            "  - model_options.temperature: expected float | None, got 'hot' (str)",
        ],
    ),
    (
        ["model"],
        [
            "session 'kid': a child session's config must be a mapping of configure() fields, "
            "got ['model'] (list)"
        ],
    ),
]


@pytest.mark.parametrize(("config", "lines"), BAD_CHILD_CONFIGS)
async def test_a_child_config_is_checked_as_a_configure_patch_is(
    config: Any, lines: list[str]
) -> None:
    """Its model_options too, and its shape (before: a bare ValidationError naming no session,
    an AttributeError for model_options=5, a ValueError for a list)."""
    core = make_core(Recorder([{"text": "p"}]))
    async with core:
        parent = await core.session("p").open()
        await parent.turn("hi").run()
        with pytest.raises(lash.SessionError) as info:
            await core.child_session("p", id="kid", config=config).open()
        assert str(info.value).splitlines() == lines
        assert info.value.session_id == "kid"
        assert await core.store.load("kid") is None


class Amend:
    """mutate_session_config: replaces the proposed prompt layers with ``layers``."""

    lash_plugin = lash.PluginMeta(name="amend")

    def __init__(self, layers: Any) -> None:
        self.layers = layers

    @lash.hookimpl
    def mutate_session_config(self, proposed: lash.SessionConfig) -> lash.SessionConfig:
        return attrs.evolve(proposed, prompt_layers=self.layers)


async def test_a_plugin_config_of_the_wrong_shape_is_a_plugin_error_naming_it() -> None:
    """A hook's config with a bad field is a PluginError naming plugin, hook and field."""
    core = make_core(Recorder([]), Amend("Be brief."))
    async with core:
        session = await core.session("s").open()
        config, revision = session.config, session.revision
        with pytest.raises(lash.PluginError) as info:
            await session.configure(model="m2")
        assert info.value.plugin == "amend"
        assert info.value.hook == "mutate_session_config"
        assert str(info.value).splitlines() == [
            "plugin 'amend' returned a lash.SessionConfig with invalid field(s) from hook "
            "'mutate_session_config':",
            "  - prompt_layers: expected a list of str, got 'Be brief.' (str) "
            "(a list of one layer is [text])",
        ]
        assert session.config == config and session.revision == revision


async def test_layers_a_plugin_returns_as_a_list_are_kept_as_a_tuple() -> None:
    """The config holds a tuple, as configure() makes one: the list the plugin keeps, changed
    later in place, changes neither the config nor the system prompt (the prompt's cache of the
    joined layers knows them by identity)."""
    layers = ["Be brief."]
    rec = Recorder([{"text": "one"}, {"text": "two"}])
    core = make_core(rec, Amend(layers))
    async with core:
        session = await core.session("s").open()
        config = await session.configure(model="m2")
        assert config.prompt_layers == ("Be brief.",)
        await session.turn("a").run()
        layers.append("Shout.")
        await session.turn("b").run()
        assert [r.messages[0].content for r in rec.requests] == ["Be brief.", "Be brief."]
        assert session.config.prompt_layers == ("Be brief.",)


class AmendModelOptions:
    """mutate_session_config: replaces the proposed model options with ``value``."""

    lash_plugin = lash.PluginMeta(name="amend")

    def __init__(self, value: Any) -> None:
        self.value = value

    @lash.hookimpl
    def mutate_session_config(self, proposed: lash.SessionConfig) -> lash.SessionConfig:
        return attrs.evolve(proposed, model_options=self.value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [({"temperature": 0.5}, "{'temperature': 0.5} (dict)"), (None, "None (NoneType)")],
)
async def test_a_plugin_config_whose_model_options_are_not_model_options_is_refused(
    value: Any, shown: str
) -> None:
    """Before, configure() failed with a bare AttributeError naming no plugin."""
    core = make_core(Recorder([]), AmendModelOptions(value))
    async with core:
        session = await core.session("s").open()
        config, revision = session.config, session.revision
        with pytest.raises(lash.PluginError) as info:
            await session.configure(model="m2")
        assert (info.value.plugin, info.value.hook) == ("amend", "mutate_session_config")
        assert str(info.value).splitlines()[1:] == [
            f"  - model_options: expected a lash.ModelOptions, got {shown}"
        ]
        assert session.config == config and session.revision == revision
