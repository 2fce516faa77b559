"""What one model call sees: the tool catalog, the system prompt and the prompt view.

Hooks that shape the prompt run at every model call (their answers may change from one call to
the next), but what only the session's own state decides is built once and reused while that
state is unchanged (:class:`lash._kernel.prompt_cache.PromptCache`): the catalog's member
entries (per catalog generation), the tool specs of an offered set, and the system message
object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lash._contract.slots import maker
from lash._contract.turn_types import PromptContribution, PromptView
from lash._kernel.media import load_images

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime

_SLOT_ORDER = {"system": 0, "context": 1, "reminder": 2}

#: A model call's PromptView (by its maker: every model call makes one).
_view = maker(PromptView)


async def resolve_catalog(runtime: SessionRuntime) -> tuple[str, ...]:
    """The tools offered now: members of the catalog, minus what ``filter_tool_catalog`` hides.
    Remembered on the runtime: a call of a tool not offered is refused. Tool sources are
    listed first (the first listing is where a source connects)."""
    composition = runtime.composition
    hooks = composition.hooks
    # (Hooks and sources nobody provides are skipped before their coroutines are made: each
    # costs ~0.4 us, several times per model call.)
    if composition.registry.of("tool_source"):
        await composition.list_tool_sources()
    cache = runtime.prompt_cache
    entries = cache.members(runtime.image.kernel, composition.available_tools(), runtime.catalog)
    hidden: set[str] = set()
    if hooks.impls("filter_tool_catalog"):
        for _plugin, names in await hooks.collect(
            "filter_tool_catalog", session=runtime.view, catalog=entries
        ):
            hidden.update(names)  # a tuple of names: the dispatcher normalized and checked it
    # Nothing hidden: the cached names.
    runtime.last_catalog = (
        tuple(n for n in cache.names if n not in hidden) if hidden else cache.names
    )
    return runtime.last_catalog


async def system_prompt(runtime: SessionRuntime, catalog: tuple[str, ...]) -> str:
    """Prompt layers, then plugin fragments ordered by slot, priority and plugin order
    (fragments gated on a tool are left out while that tool is not offered)."""
    fragments: list[tuple[int, int, int, str]] = []
    hooks = runtime.composition.hooks
    results = (
        await hooks.collect("prompt_contributions", session=runtime.view)
        if hooks.impls("prompt_contributions")
        else None
    )
    layers = runtime.image.config.prompt_layers
    if not results:
        return "\n\n".join(layers)
    members = set(catalog)
    for position, (_plugin, value) in enumerate(results):
        # One fragment, or a tuple of them: the dispatcher checked every element.
        items = (value,) if type(value) is PromptContribution else value
        for item in items:
            if item.requires_tool is not None and item.requires_tool not in members:
                continue
            fragments.append((_SLOT_ORDER[item.slot], item.priority, position, item.text))
    return "\n\n".join([*layers, *(text for *_, text in sorted(fragments))])


def plain_prompt_view(runtime: SessionRuntime) -> PromptView | None:
    """:func:`prompt_view` without a coroutine, where it awaits nothing (most sessions): no
    plugin shapes the prompt (``Composition.shapes_prompt``) and no message carries images.
    Then the view is the cached catalog, the layers' system message and the history; ``None``
    otherwise (the caller awaits :func:`prompt_view`)."""
    composition = runtime.composition
    graph = runtime.image.graph
    if composition.shapes_prompt or graph.image_messages:
        return None
    cache = runtime.prompt_cache
    cache.members(runtime.image.kernel, composition.available_tools(), runtime.catalog)
    runtime.last_catalog = cache.names  # (resolve_catalog's, with nothing hidden)
    message = cache.layers_message(runtime.image.config.prompt_layers)
    return _view(graph.prompt_messages(message), cache.names)


async def prompt_view(runtime: SessionRuntime) -> PromptView:
    """The prompt the next model call gets: system prompt, the active frame's messages and the
    tool catalog, after ``transform_prompt_view``. Nothing is recorded."""
    catalog = await resolve_catalog(runtime)
    system = await system_prompt(runtime, catalog)
    message = runtime.prompt_cache.system_message(system) if system else None
    graph = runtime.image.graph
    messages = graph.prompt_messages(message)  # the one copy of the history a call makes
    if graph.image_messages:
        messages = await load_images(runtime, messages)
    view = PromptView(messages, catalog)
    hooks = runtime.composition.hooks
    if not hooks.impls("transform_prompt_view"):
        return view
    result: PromptView = await hooks.chain(
        "transform_prompt_view", key="view", value=view, session=runtime.view
    )
    return result
