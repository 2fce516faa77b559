"""Tool sources: tools a plugin learns of only while the host runs (an MCP server's tools).

A plugin registers a :class:`ToolSource` in ``register_tools`` like a tool. The kernel lists it
(:func:`list_sources`, called by the composition) whenever a session's tool catalog is
resolved, so the source decides when to connect (lazily, on the first listing) and how long it
keeps its answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from lash._contract.annotations import resolve_here
from lash._tools.tool import Tool

__all__ = ["ToolSource"]


def _callable(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"tool source {instance.name!r}: {attribute.name} must be callable")


def _named(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a tool source needs a name (for its errors), got {value!r}")


@attrs.frozen
class ToolSource:
    """Tools known only at run time, registered in ``register_tools`` like a tool::

        register(lash.ToolSource("weather-api", list_tools, aclose=disconnect))

    ``list_tools()`` (async) returns the source's tools (:class:`lash.Tool` objects, usually
    made with :func:`lash.raw_tool`). The kernel awaits it whenever it resolves a session's
    tool catalog (before every model call, and when a tool's membership is set), every source
    concurrently: connect on the first call, then answer from a cache. When it raises, the
    source's tools are left out of that catalog and the error is reported (logged and handed
    to the core's ``on_error``) as a :class:`lash.PluginError` naming the plugin and the
    source, once until the error changes; the rest of the catalog is unaffected. A listed tool
    whose name a registered tool or an earlier source already has is left out and reported
    too. ``aclose()`` (optional, async) is awaited when the core closes.

    .. versionadded:: 0.2
    """

    #: Names the source in errors and in ``lash plugins`` (unique among a core's sources).
    name: str = attrs.field(validator=_named)
    list_tools: Callable[[], Awaitable[Sequence[Tool]]] = attrs.field(validator=_callable)
    aclose: Callable[[], Awaitable[None]] | None = attrs.field(default=None, validator=_callable)
    #: One line for ``lash plugins``.
    description: str = ""

    __module__ = "lash"


resolve_here(globals())
