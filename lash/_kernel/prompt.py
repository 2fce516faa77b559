"""What one model call sees: the tool catalog, the system prompt and the prompt view.

Hooks that shape the prompt run at every model call (their answers may change from one call to
the next), but what only the session's own state decides is built once and reused while that
state is unchanged (:class:`PromptCache`): the catalog's member entries (per catalog
generation), the tool specs of an offered set, and the system message object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lash._contract.providers import ToolSpec
from lash._contract.types import Message, PromptContribution, PromptView, ToolCatalogEntry

if TYPE_CHECKING:
    from lash._kernel.runtime import SessionRuntime
    from lash._kernel.state import KernelState

_SLOT_ORDER = {"system": 0, "context": 1, "reminder": 2}


class PromptCache:
    """One session handle's prompt parts that only its own state decides (see the module
    docstring). Every entry is checked against what it was built from before it is used."""

    __slots__ = ("entries", "generation", "kernel", "names", "specs", "system", "tools")

    def __init__(self) -> None:
        # The kernel state (an image reload makes a new one) and catalog generation (every
        # membership change bumps it) the entries were built from.
        self.kernel: KernelState | None = None
        self.generation = -1
        self.entries: tuple[ToolCatalogEntry, ...] = ()
        self.names: list[str] = []
        self.tools: tuple[str, ...] | None = None
        self.specs: tuple[ToolSpec, ...] = ()
        self.system: Message | None = None

    def members(self, runtime: SessionRuntime) -> tuple[ToolCatalogEntry, ...]:
        """The catalog entries the session offers before ``filter_tool_catalog``."""
        kernel = runtime.image.kernel
        if kernel is not self.kernel or kernel.generation != self.generation:
            self.entries = tuple(e for e in runtime.catalog() if e.member and not e.orphaned)
            self.names = [e.name for e in self.entries]
            self.kernel, self.generation = kernel, kernel.generation
        return self.entries

    def tool_specs(self, runtime: SessionRuntime, names: tuple[str, ...]) -> tuple[ToolSpec, ...]:
        """What the provider is told about the tools ``names`` (the registered ones)."""
        if names != self.tools:
            composition = runtime.composition
            self.specs = tuple(
                composition.tool_spec(name) for name in names if composition.has_tool(name)
            )
            self.tools = names
        return self.specs

    def system_message(self, text: str) -> Message:
        system = self.system
        if system is None or system.content != text:
            system = self.system = Message("system", text)
        return system


async def resolve_catalog(runtime: SessionRuntime) -> list[str]:
    """The tools offered now: members of the catalog, minus what ``filter_tool_catalog`` hides.
    Remembered on the runtime: a call of a tool not offered is refused."""
    cache = runtime.prompt_cache
    entries = cache.members(runtime)
    hidden: set[str] = set()
    for _plugin, names in await runtime.composition.hooks.collect(
        "filter_tool_catalog", session=runtime.view, catalog=entries
    ):
        hidden.update(names)  # a tuple of names: the dispatcher normalized and checked it
    # Nothing hidden: the cached list (read only, by the tool-call check).
    runtime.last_catalog = [n for n in cache.names if n not in hidden] if hidden else cache.names
    return runtime.last_catalog


async def system_prompt(runtime: SessionRuntime, catalog: list[str]) -> str:
    """Prompt layers, then plugin fragments ordered by slot, priority and plugin order
    (fragments gated on a tool are left out while that tool is not offered)."""
    fragments: list[tuple[int, int, int, str]] = []
    results = await runtime.composition.hooks.collect("prompt_contributions", session=runtime.view)
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


async def prompt_view(runtime: SessionRuntime) -> PromptView:
    """The prompt the next model call gets: system prompt, the active frame's messages and the
    tool catalog, after ``transform_prompt_view``. Nothing is recorded."""
    catalog = await resolve_catalog(runtime)
    system = await system_prompt(runtime, catalog)
    message = runtime.prompt_cache.system_message(system) if system else None
    view = PromptView(runtime.image.graph.prompt_messages(message), tuple(catalog))
    result: PromptView = await runtime.composition.hooks.chain(
        "transform_prompt_view", key="view", value=view, session=runtime.view
    )
    return result
