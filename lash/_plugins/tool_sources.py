"""What a core's tool sources (:class:`lash.ToolSource`) listed last, merged beside the
registered tools: listed concurrently, every failure isolated to its source and reported once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from lash._tools.tool import Tool, as_tool
from lash.errors import PluginError

if TYPE_CHECKING:
    from lash._plugins.dispatch import HookDispatcher
    from lash._plugins.registry import Contribution, Registry

#: The hook sources are registered through (what their errors name).
_HOOK = "register_tools"


@attrs.define
class ListedTools:
    """The tools every source listed at the last listing (name -> (plugin, tool)), and the
    error last reported for each source (reported again only when it changes)."""

    tools: dict[str, tuple[str, Tool]] = attrs.field(factory=dict)
    reported: dict[str, str] = attrs.field(factory=dict)

    async def refresh(self, registry: Registry, hooks: HookDispatcher) -> bool:
        """List every source again; return whether the listed tools changed."""
        sources = list(registry.of("tool_source").values())
        if not sources:
            return False
        import asyncio  # the kernel's running loop imported it long before

        results = await asyncio.gather(*(self._list(source, hooks) for source in sources))
        registered = registry.of("tool")
        table: dict[str, tuple[str, Tool]] = {}
        for source, tools in zip(sources, results, strict=True):
            clashes: list[str] = []
            for tool in tools or ():
                other = registered.get(tool.name)
                owner = other.plugin if other is not None else table.get(tool.name, ("",))[0]
                if other is not None or tool.name in table:
                    clashes.append(f"{tool.name!r} (already a tool of plugin {owner!r})")
                else:
                    table[tool.name] = (source.plugin, tool)
            if clashes:
                self._report(
                    hooks,
                    source,
                    f"tool source {source.name!r} lists tools whose names are taken; left "
                    f"out: {', '.join(clashes)}",
                    key=f"{source.name}/names",
                )
        # Tools compare by identity: a source that answers from its cache changes nothing.
        changed = table != self.tools
        self.tools = table
        return changed

    async def _list(self, source: Contribution, hooks: HookDispatcher) -> list[Tool] | None:
        """The tools of one source (``None``: it failed, and that was reported)."""
        try:
            listed = await source.value.list_tools()
            tools = [as_tool(tool) for tool in _iterable(listed)]
        except Exception as exc:  # any failure of a source stays with that source
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._report(
                hooks, source, f"tool source {source.name!r} could not list its tools: {detail}"
            )
            return None
        self.reported.pop(source.name, None)
        return tools

    def _report(
        self, hooks: HookDispatcher, source: Contribution, message: str, key: str | None = None
    ) -> None:
        key = key or source.name
        if self.reported.get(key) == message:
            return  # said already: a source that stays down does not flood the log
        self.reported[key] = message
        hooks.report(PluginError(message, plugin=source.plugin, hook=_HOOK))


def _iterable(value: object) -> Iterable[object]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"list_tools() must return a sequence of lash.Tool, got {value!r}")
    return value
