"""The prompt parts one session handle reuses between model calls (see
:mod:`lash._kernel.prompt`), each checked against what it was built from before it is used."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from lash._contract.providers import ToolSpec
from lash._contract.turn_types import Message, ToolCatalogEntry

if TYPE_CHECKING:
    from lash._kernel.state import KernelState
    from lash._plugins.composition import Composition


class PromptCache:
    """One session handle's prompt parts that only its own state decides (see the module
    docstring). Every entry is checked against what it was built from before it is used."""

    __slots__ = (
        "entries",
        "generation",
        "kernel",
        "layers",
        "names",
        "spec_table",
        "specs",
        "system",
        "table",
        "tools",
    )

    def __init__(self) -> None:
        # The kernel state (an image reload makes a new one) and catalog generation (every
        # membership change bumps it) the entries were built from.
        self.kernel: KernelState | None = None
        self.generation = -1
        # The composition's tool table the entries and specs were built from: a new table
        # object whenever a tool source lists other tools (or other specs) than before.
        self.table: Mapping[str, tuple[str, str]] | None = None
        self.spec_table: Mapping[str, tuple[str, str]] | None = None
        self.entries: tuple[ToolCatalogEntry, ...] = ()
        self.names: tuple[str, ...] = ()
        self.tools: tuple[str, ...] | None = None
        self.specs: tuple[ToolSpec, ...] = ()
        self.system: Message | None = None
        # The prompt layers `system` was joined from, when it was (layers_message).
        self.layers: tuple[str, ...] | None = None

    def members(
        self,
        kernel: KernelState,
        table: Mapping[str, tuple[str, str]],
        catalog: Callable[[], tuple[ToolCatalogEntry, ...]],
    ) -> tuple[ToolCatalogEntry, ...]:
        """The catalog entries the session offers before ``filter_tool_catalog``: of
        ``catalog()`` (the session's whole catalog), built again only when ``kernel`` (the
        session's kernel state) is another object or at another generation, or ``table``
        (the composition's tools) is another object."""
        if (
            kernel is not self.kernel
            or kernel.generation != self.generation
            or table is not self.table
        ):
            self.entries = tuple(e for e in catalog() if e.member and not e.orphaned)
            self.names = tuple(e.name for e in self.entries)
            self.kernel, self.generation, self.table = kernel, kernel.generation, table
        return self.entries

    def tool_specs(self, composition: Composition, names: tuple[str, ...]) -> tuple[ToolSpec, ...]:
        """What the provider is told about the tools ``names`` (the known ones)."""
        table = composition.available_tools()
        if (names is not self.tools and names != self.tools) or table is not self.spec_table:
            self.specs = tuple(
                composition.tool_spec(name) for name in names if composition.has_tool(name)
            )
            self.tools, self.spec_table = names, table
        return self.specs

    def system_message(self, text: str) -> Message:
        system = self.system
        if system is None or system.content != text:
            system = self.system = Message("system", text)
            self.layers = None
        return system

    def layers_message(self, layers: tuple[str, ...]) -> Message | None:
        """The system message of the prompt ``layers`` alone, when no plugin contributes to
        the prompt (``None`` for no text): joined again only for other layers than last time
        (a config's are the same tuple from one model call to the next)."""
        system = self.system
        if layers is not self.layers or system is None:
            system = self.system_message("\n\n".join(layers))  # (drops `layers`)
            self.layers = layers
        return system if system.content else None
