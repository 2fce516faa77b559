"""Running one tool outside a session: :func:`run_tool`, :func:`run_tool_sync`, and the
:class:`StubSession` they hand the tool.

A tool is called the way the kernel calls it, through :meth:`lash.Tool.invoke`: arguments are
validated against its schema, the timeout applies, failures become error results. Only the
session is a stand-in, a :class:`StubSession` that hands out the options and state objects the
test gave it.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from lash._contract.calls import CALLER
from lash._contract.graph import GraphNode, PluginNode
from lash._contract.providers import ModelResponse
from lash._contract.serialization import to_data
from lash._contract.services import SessionView, ToolContext
from lash._contract.turn_types import Message, SessionConfig, ToolCatalogEntry
from lash._contract.types import PluginMeta, ToolResult, Usage
from lash._kernel.core import LashCore
from lash._plugins.hostconfig import HostConfig
from lash._plugins.loading import discover_entry_points, object_name
from lash._tools.tool import Tool, as_tool
from lash.errors import SessionError

__all__ = ["StubSession", "run_tool", "run_tool_sync"]

T = TypeVar("T")

#: The call id of a tool run by :func:`run_tool`.
CALL_ID = "call_1"


def _objects(value: object | Iterable[object] | None, what: str) -> list[object]:
    """``value`` as a list of option/state objects: one attrs instance, or several."""
    if value is None:
        return []
    if attrs.has(type(value)):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes | Mapping):
        items = list(value)
        bad = [item for item in items if not attrs.has(type(item))]
        if not bad:
            return items
        value = bad[0]
    raise TypeError(
        f"{what} must be an instance of an attrs class (a plugin's {what} class) or an iterable "
        f"of them, got {value!r}"
    )


class _StubBackend:
    """What a :class:`StubSession` forwards to: objects given by the test, changes recorded."""

    def __init__(
        self,
        id: str,
        *,
        options: list[object],
        state: list[object],
        config: SessionConfig,
        is_root: bool,
        nodes: Sequence[GraphNode],
        tools: Sequence[ToolCatalogEntry],
    ) -> None:
        self.id = id
        self.is_root = is_root
        self.config = config
        self.revision = 0
        self.turns = 0
        self.nodes = list(nodes)
        self.tools = {entry.name: entry for entry in tools}
        self.generation = 0
        self.options: dict[type, Any] = {type(o): o for o in options}
        self.states: dict[type, Any] = {type(s): s for s in state}
        self.recorded: list[PluginNode] = []
        self.emitted: list[tuple[str, str, Any]] = []

    def active_nodes(self) -> Sequence[GraphNode]:
        return self.nodes

    def options_of(self, cls: type[T]) -> T:
        return _get(self.options, cls, "options")

    def state_of(self, cls: type[T]) -> T:
        return _get(self.states, cls, "state")

    def catalog(self) -> tuple[ToolCatalogEntry, ...]:
        return tuple(self.tools.values())

    async def set_tool_membership(self, changes: Mapping[str, bool]) -> int:
        unknown = sorted(set(changes) - set(self.tools))
        if unknown:
            raise SessionError(
                f"session {self.id!r}: unknown tool(s) {', '.join(unknown)} (a StubSession knows "
                "the tools given as tools=[lash.ToolCatalogEntry(...)])",
                session_id=self.id,
            )
        for name, member in changes.items():
            self.tools[name] = attrs.evolve(self.tools[name], member=member)
        self.generation += 1
        return self.generation

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        source: str,
        model: str | None,
        options: Mapping[str, Any] | None,
    ) -> ModelResponse:
        raise SessionError(
            f"session {self.id!r}: a StubSession has no model to complete() with; test code "
            "that asks the model with lash_core(plugin, script=[...]) and a real session",
            session_id=self.id,
        )

    async def record(self, kind: str, data: Any) -> PluginNode:
        caller = CALLER.get()
        node = PluginNode(
            id=f"stub-{len(self.recorded) + 1}",
            parent_id=None,
            frame_id="",
            turn=self.turns,
            plugin=caller.plugin if caller is not None and caller.plugin else "test",
            kind=kind,
            data=data,
        )
        self.recorded.append(node)
        return node

    async def emit(self, type: str, data: Any) -> None:
        caller = CALLER.get()
        plugin = caller.plugin if caller is not None and caller.plugin else "test"
        self.emitted.append((plugin, type, data))

    def usage_report(self) -> dict[str, Any]:
        return {"total": to_data(Usage()), "by_source": {}}

    def child(self, **_: Any) -> Any:
        raise SessionError(
            f"session {self.id!r}: a StubSession cannot create child sessions; test code that "
            "creates sub-agents with lash_core(plugin, script=[...]) and a real session",
            session_id=self.id,
        )


def _get(table: dict[type, Any], cls: type[T], what: str) -> T:
    found = table.get(cls)
    if found is None:
        try:
            found = table[cls] = cls()
        except Exception as exc:
            raise LookupError(
                f"StubSession: no {what} object of class {cls.__qualname__} was given and "
                f"it cannot be built from its defaults ({type(exc).__name__}: {exc}); pass "
                f"{what}={cls.__qualname__}(...)"
            ) from exc
    return found


class StubSession(SessionView):
    """A :class:`lash.SessionView` for calling tools and hooks outside a session.

    ``options(cls)`` and ``state(cls)`` return the object of class ``cls`` given here; for a class
    not given, they build one from its defaults on first use and keep it, so a tool's changes to
    its state can be read back with :meth:`state` after the call. ``nodes`` are what
    :attr:`nodes` returns; ``tools`` the catalog (``set_tool_membership`` changes it, and
    :attr:`generation` counts the changes); what the code under test records is in
    :attr:`recorded`. A stub has no model: ``complete()`` raises, and so does ``child()``.
    """

    __module__ = "lash.testing"

    def __init__(
        self,
        id: str = "test-session",
        *,
        options: object | Iterable[object] | None = None,
        state: object | Iterable[object] | None = None,
        config: SessionConfig | None = None,
        is_root: bool = True,
        nodes: Sequence[GraphNode] = (),
        tools: Sequence[ToolCatalogEntry] = (),
    ) -> None:
        self._stub = _StubBackend(
            id,
            options=_objects(options, "options"),
            state=_objects(state, "state"),
            config=config if config is not None else SessionConfig(),
            is_root=is_root,
            nodes=nodes,
            tools=tools,
        )
        super().__init__(self._stub)

    @property
    def recorded(self) -> list[PluginNode]:
        """The plugin nodes recorded through this session, in order."""
        return self._stub.recorded

    @property
    def emitted(self) -> list[tuple[str, str, Any]]:
        """The events emitted through this session: ``(plugin, type, data)``, in order."""
        return self._stub.emitted

    @property
    def generation(self) -> int:
        """How many tool-membership changes were made."""
        return self._stub.generation

    def __repr__(self) -> str:
        return f"<StubSession {self.id!r}>"


def _declared(plugin: object | str) -> tuple[str, PluginMeta]:
    """The name and ``lash_plugin`` of a plugin object or installed entry-point name."""
    obj: object = None
    if isinstance(plugin, str):
        # Unknown names are left for the core to report, in lash's own words.
        found = [c for c in discover_entry_points() if c.name == plugin]
        name, obj = plugin, found[0].load() if found else None
    else:
        name, obj = object_name(plugin), plugin
    meta = getattr(obj, "lash_plugin", None)
    return name, meta if isinstance(meta, PluginMeta) else PluginMeta()


async def _tool_of_plugin(plugin: object | str, tool: str | None, options: list[object]) -> Tool:
    """Build ``plugin`` into a throwaway core and take one of the tools it registers."""
    name, meta = _declared(plugin)
    # Autoload off, and every builtin disabled but those the plugin requires.
    requires = [r for r in meta.requires if r != name]
    given = [o for o in options if meta.options is not None and type(o) is meta.options]
    probe = LashCore(
        [plugin, *requires],
        builtins=(),
        config=HostConfig(),
        autoload=False,
        strict=True,
        # Registration sees the options given, as it would see a host's config.
        options={name: to_data(given[0])} if given else None,
    )
    await probe.aclose()  # nothing was opened; provider clients a plugin built are released
    tools: dict[str, Tool] = {
        c.name: c.value for c in probe.registry.of("tool").values() if c.plugin == name
    }
    if tool is None:
        if len(tools) == 1:
            return next(iter(tools.values()))
        raise ValueError(
            f"run_tool: plugin {name!r} registers {len(tools)} tools "
            f"({', '.join(sorted(tools)) or 'none'}); name the one to run: "
            "run_tool(plugin, 'name', ...)"
        )
    if tool not in tools:
        close = difflib.get_close_matches(tool, list(tools), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise LookupError(
            f"run_tool: plugin {name!r} registers no tool {tool!r} "
            f"(it registers: {', '.join(sorted(tools)) or 'none'}){hint}"
        )
    return tools[tool]


async def _resolve(tool: object, name: str | None, options: list[object]) -> Tool:
    if isinstance(tool, Tool):
        if name is not None and name != tool.name:
            raise ValueError(f"run_tool: the tool is named {tool.name!r}, not {name!r}")
        return tool
    if inspect.isfunction(tool) or inspect.ismethod(tool):
        return as_tool(tool, name=name)
    return await _tool_of_plugin(tool, name, options)


async def run_tool(
    tool: Tool | Callable[..., Any] | object | str,
    name: str | None = None,
    /,
    *,
    session: SessionView | None = None,
    state: object | Iterable[object] | None = None,
    options: object | Iterable[object] | None = None,
    timeout: float | None = None,
    **arguments: Any,
) -> ToolResult:
    """Run one tool as the kernel would, outside a session, and return its result.

    ``tool`` is a :class:`lash.Tool`, a typed function (made a tool with :func:`lash.tool`), or a
    plugin (an object or an installed entry-point name) with the ``name`` of one of its tools
    (``name`` may be left out when the plugin registers a single tool). A plugin's tools are
    built by calling its ``register_tools`` hook, with its options object from ``options`` when
    one is given.

    Keyword ``arguments`` are the model's arguments, validated against the tool's schema. The
    tool's :class:`lash.ToolContext` has call id ``"call_1"``, a session (``session``, else a
    :class:`StubSession` holding ``options`` and ``state``) and ``timeout`` (60 s unless given).
    Failures are error results (``is_error``), exactly as the model would see them.

    :param state: the plugin's state object (or several), returned by ``context.state(cls)``.
    :param options: options object(s), returned by ``session.options(cls)``.
    :raises ValueError, LookupError: ``tool`` or ``name`` does not designate one tool.
    :raises TypeError: ``session`` is given together with ``state`` or ``options``.
    """
    if session is not None and (state is not None or options is not None):
        raise TypeError(
            "run_tool: pass state= and options= to the StubSession given as session=, not here"
        )
    option_objects = _objects(options, "options")
    found = await _resolve(tool, name, option_objects)
    view = session if session is not None else StubSession(options=option_objects, state=state)
    if timeout is None:
        context = ToolContext(view, CALL_ID)
    else:
        context = ToolContext(view, CALL_ID, timeout=timeout)
    return await found.invoke(arguments, context)


def run_tool_sync(
    tool: Tool | Callable[..., Any] | object | str,
    name: str | None = None,
    /,
    *,
    session: SessionView | None = None,
    state: object | Iterable[object] | None = None,
    options: object | Iterable[object] | None = None,
    timeout: float | None = None,
    **arguments: Any,
) -> ToolResult:
    """:func:`run_tool` for sync tests: runs it in a new event loop and returns the result.

    :raises RuntimeError: when called while an event loop runs (``await run_tool(...)`` there).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("run_tool_sync cannot run inside an event loop; await run_tool(...)")
    return asyncio.run(
        run_tool(
            tool,
            name,
            session=session,
            state=state,
            options=options,
            timeout=timeout,
            **arguments,
        )
    )
