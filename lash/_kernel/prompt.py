"""What one model call sees: the tool catalog, the system prompt and the prompt view."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lash._contract.types import Message, PromptContribution, PromptView

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime

_SLOT_ORDER = {"system": 0, "context": 1, "reminder": 2}


async def resolve_catalog(runtime: SessionRuntime) -> list[str]:
    """The tools offered now: members of the catalog, minus what ``filter_tool_catalog`` hides.
    Remembered on the runtime: a call of a tool not offered is refused. Tool sources are
    listed first (the first listing is where a source connects)."""
    await runtime.composition.list_tool_sources()
    entries = tuple(e for e in runtime.catalog() if e.member and not e.orphaned)
    hidden: set[str] = set()
    for _plugin, names in await runtime.composition.hooks.collect(
        "filter_tool_catalog", session=runtime.view, catalog=entries
    ):
        hidden.update(names)  # a tuple of names: the dispatcher normalized and checked it
    runtime.last_catalog = [e.name for e in entries if e.name not in hidden]
    return runtime.last_catalog


async def system_prompt(runtime: SessionRuntime, catalog: list[str]) -> str:
    """Prompt layers, then plugin fragments ordered by slot, priority and plugin order
    (fragments gated on a tool are left out while that tool is not offered)."""
    members = set(catalog)
    fragments: list[tuple[int, int, int, str]] = []
    results = await runtime.composition.hooks.collect("prompt_contributions", session=runtime.view)
    for position, (_plugin, value) in enumerate(results):
        # One fragment, or a tuple of them: the dispatcher checked every element.
        items = (value,) if type(value) is PromptContribution else value
        for item in items:
            if item.requires_tool is not None and item.requires_tool not in members:
                continue
            fragments.append((_SLOT_ORDER[item.slot], item.priority, position, item.text))
    layers = list(runtime.image.config.prompt_layers)
    layers += [text for *_, text in sorted(fragments)]
    return "\n\n".join(layers)


async def prompt_view(runtime: SessionRuntime) -> PromptView:
    """The prompt the next model call gets: system prompt, the active frame's messages and the
    tool catalog, after ``transform_prompt_view``. Nothing is recorded."""
    catalog = await resolve_catalog(runtime)
    system = await system_prompt(runtime, catalog)
    messages: list[Message] = [Message("system", system)] if system else []
    messages += runtime.image.graph.messages()
    view = PromptView(tuple(messages), tuple(catalog))
    result: PromptView = await runtime.composition.hooks.chain(
        "transform_prompt_view", key="view", value=view, session=runtime.view
    )
    return result
