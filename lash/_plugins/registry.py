"""What plugins contribute through the ``register_*`` hooks, attributed and de-duplicated."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.types import RecoveryDisposition
from lash._plugins.dispatch import HookDispatcher
from lash._plugins.loading import LoadedPlugin
from lash._tools.source import ToolSource
from lash._tools.tool import as_tool
from lash.errors import LashError, PluginError

#: The registration hooks, the kind of thing each contributes, and the name of its registry.
REGISTRATION_HOOKS: dict[str, str] = {
    "register_tools": "tool",
    "register_providers": "provider",
    "register_protocol": "protocol",
    "register_process_kinds": "process_kind",
    "register_stores": "store",
    "register_session_commands": "session_command",
    "register_operations": "operation",
}

#: Every kind of contribution: one per registration hook, and tool sources (``register_tools``
#: takes them beside tools).
KINDS: tuple[str, ...] = (*REGISTRATION_HOOKS.values(), "tool_source")


@attrs.frozen
class Contribution:
    """One named thing a plugin registered: a tool, provider, protocol, process kind or store."""

    kind: str
    name: str
    plugin: str
    value: Any
    description: str = ""
    extra: Any = None


def _first_line(doc: str | None) -> str:
    return inspect.cleandoc(doc).split("\n\n", 1)[0].replace("\n", " ") if doc else ""


@attrs.define
class Registry:
    """Every contribution of one core, by kind and name."""

    by_kind: dict[str, dict[str, Contribution]] = attrs.field(
        factory=lambda: {kind: {} for kind in KINDS}
    )
    errors: list[LashError] = attrs.field(factory=list)

    def of(self, kind: str) -> dict[str, Contribution]:
        """The contributions of one kind (``"tool"``, ``"provider"``...), by name."""
        return self.by_kind[kind]

    def by_plugin(self, plugin: str) -> dict[str, list[str]]:
        """Names contributed by ``plugin``, grouped by kind (kinds with none are omitted)."""
        out: dict[str, list[str]] = {}
        for kind, entries in self.by_kind.items():
            names = [c.name for c in entries.values() if c.plugin == plugin]
            if names:
                out[kind] = names
        return out

    def add(self, hook: str, contribution: Contribution) -> None:
        table = self.by_kind[contribution.kind]
        existing = table.get(contribution.name)
        if existing is not None:
            if existing.plugin == contribution.plugin:
                who = f"twice by plugin {existing.plugin!r}"
            else:
                who = f"by both plugin {existing.plugin!r} and plugin {contribution.plugin!r}"
            raise PluginError(
                f"{contribution.kind} {contribution.name!r} is registered {who}; names must be "
                "unique (disable one plugin or rename)",
                plugin=contribution.plugin,
                hook=hook,
            )
        table[contribution.name] = contribution


def _registrar(registry: Registry, hook: str, kind: str, plugin: str) -> Callable[..., None]:
    """The ``register`` callback handed to ``plugin`` for ``hook``.

    Process kinds and operations are built by modules imported on first registration: every
    ``lash`` command registers the plugins (``lash --help`` too), and the default builtins
    register neither, so their import (~2 ms) would be start-up time for nothing.
    """
    if kind == "tool":

        def register_tool(
            tool: Any, /, *, name: str | None = None, description: str | None = None
        ) -> None:
            if isinstance(tool, ToolSource):
                if name is not None or description is not None:
                    raise TypeError(
                        f"tool source {tool.name!r}: name= and description= apply to tools; "
                        "a source names its tools itself"
                    )
                source = Contribution("tool_source", tool.name, plugin, tool, tool.description)
                registry.add(hook, source)
                return
            # Build the tool now, so a tool without type hints fails at registration, attributed
            # to its plugin, rather than on first use.
            built = as_tool(tool, name=name, description=description)
            registry.add(hook, Contribution(kind, built.name, plugin, built, built.description))

        return register_tool
    if kind == "process_kind":

        def register_process_kind(
            name: str,
            run: Callable[..., Any],
            /,
            *,
            recovery: RecoveryDisposition = RecoveryDisposition.OWNER_BOUND,
            timeout: float | None = None,
            max_attempts: int = 3,
        ) -> None:
            # Built now, like a tool: a kind whose payload type has no schema fails at
            # registration, attributed to its plugin.
            from lash._plugins.process_kinds import build_process_kind  # see _registrar

            built = build_process_kind(
                name,
                run,
                plugin,
                recovery=recovery,
                timeout=timeout,
                max_attempts=max_attempts,
            )
            registry.add(hook, Contribution(kind, name, plugin, built, built.description, recovery))

        return register_process_kind
    if kind == "operation":

        def register_operation(
            name: str,
            fn: Callable[..., Any],
            /,
            *,
            kind: str = "query",
            session: str = "optional",
            description: str | None = None,
            recovery: RecoveryDisposition | None = None,
            timeout: float | None = None,
        ) -> None:
            # Built now, like a tool: a bad signature or args class fails at registration.
            from lash._contract.operations import TASK_KIND_PREFIX  # see _registrar
            from lash._plugins.process_kinds import build_process_kind
            from lash._tools.operation import as_operation

            built = as_operation(
                plugin, name, fn, kind=kind, session=session, description=description
            )
            if kind != "task" and (recovery is not None or timeout is not None):
                raise ValueError(
                    f"operation {name!r}: recovery and timeout are a task's (its process's)"
                )
            task = None
            if kind == "task":
                # A task runs as a process of an implicit kind, operation:<name>, whose run is
                # the operation's fn (its args are the payload): workers run it like any other.
                task = build_process_kind(
                    f"{TASK_KIND_PREFIX}{name}",
                    fn,
                    plugin,
                    recovery=recovery or RecoveryDisposition.OWNER_BOUND,
                    timeout=timeout,
                    max_attempts=3,
                )
            registry.add(hook, Contribution("operation", name, plugin, built, built.description))
            if task is not None:
                registry.add(
                    hook,
                    Contribution(
                        "process_kind", task.name, plugin, task, task.description, task.recovery
                    ),
                )

        return register_operation

    def register(name: str, value: Any, /) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"{kind} name must be a non-empty string, got {name!r}")
        if kind == "session_command":
            if name in ("refresh_tool_catalog", "reset"):
                raise ValueError(f"session command {name!r} is the kernel's own; pick another name")
            if not callable(value):
                raise TypeError(f"session command {name!r}: apply must be callable, got {value!r}")
        registry.add(hook, Contribution(kind, name, plugin, value, _first_line(value.__doc__)))

    return register


def run_registrations(
    hooks: HookDispatcher,
    plugins: list[LoadedPlugin],
    *,
    isolate: bool = False,
) -> Registry:
    """Call every registration hook once, plugin by plugin, into a fresh :class:`Registry`.

    Each plugin gets its own ``register`` callback (so every contribution is attributed) and its
    host-level options. With ``isolate=True`` (inspection: ``lash plugins``, ``lash doctor``)
    a failing plugin's error is recorded in ``registry.errors`` and the others go on; otherwise
    the first error is raised. Registration hooks are synchronous: an implementation that
    returns an awaitable fails.
    """
    registry = Registry()
    options = {p.name: p.options for p in plugins}
    on_failure = registry.errors.append if isolate else None
    for hook, kind in REGISTRATION_HOOKS.items():

        def bind(plugin: str, hook: str = hook, kind: str = kind) -> dict[str, Any]:
            return {
                "register": _registrar(registry, hook, kind, plugin),
                "options": options.get(plugin),
            }

        hooks.collect_sync(hook, bind=bind, on_failure=on_failure)
    return registry


resolve_here(globals())
