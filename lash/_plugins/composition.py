"""One composition of plugins: loading, ordering, dispatch and registrations, built in one place.

:func:`compose` is the only way lash assembles plugins. :class:`lash.LashCore` calls it to run
sessions; ``lash plugins`` and ``lash doctor`` call it with ``isolate=True``, where every failure
(import, hook names, ordering, options, registration, exclusive hooks, CLI commands) becomes a
:class:`Problem` attributed to its plugin instead of an exception, so the healthy plugins are still
described. The kernel reads everything it needs about plugins from the :class:`Composition`
(tools, providers, the protocol, who declared which options and state class), never from the
plugin manager.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lash._contract.annotations import resolve_here
from lash._plugins.dispatch import HookDispatcher
from lash._plugins.hostconfig import HostConfig
from lash._plugins.loading import Builtins, LoadedPlugin, PluginInfo, load_plugins
from lash._plugins.options import is_secret
from lash._plugins.registry import Contribution, Registry, run_registrations
from lash._plugins.tool_sources import ListedTools
from lash.errors import (
    ExclusiveHookConflict,
    LashError,
    OptionsError,
    PluginError,
    ProtocolMissing,
    UnknownProvider,
    UnknownStore,
)
from lash.hookspecs import SHAPES

if TYPE_CHECKING:
    import click

    from lash._contract.providers import Provider, ToolSpec
    from lash._tools.tool import Tool

#: The model name used when neither config nor session names one.
DEFAULT_MODEL = "default"

#: Exclusive hooks, checked when a composition is built so a conflict fails early, naming both
#: plugins. Read from the one table of shapes, so a new exclusive hook cannot be forgotten here.
_EXCLUSIVE_HOOKS = tuple(hook for hook, shape in SHAPES.items() if shape == "exclusive")


@attrs.frozen
class Problem:
    """One reason a composition is unhealthy, with the plugin and hook it concerns when known."""

    message: str
    plugin: str | None = None
    hook: str | None = None
    #: Where it was found: ``"load"``, ``"register"``, ``"exclusive"``, ``"commands"``,
    #: ``"config"``.
    stage: str = "load"
    #: The error it was made from, when there is one.
    error: LashError | None = attrs.field(default=None, eq=False, repr=False)


@attrs.frozen
class PluginCommand:
    """A CLI command contributed through ``register_commands``."""

    name: str
    plugin: str
    command: click.Command


#: The hooks that take part in building a model call's prompt.
PROMPT_HOOKS = ("filter_tool_catalog", "prompt_contributions", "transform_prompt_view")


@attrs.define
class Composition:
    """A host's plugins, assembled: who is loaded, in which order, what each contributes, and
    every problem found on the way (only in isolation mode; otherwise the build raised)."""

    config: HostConfig
    infos: list[PluginInfo]
    loaded: list[LoadedPlugin]
    hooks: HookDispatcher
    registry: Registry
    problems: list[Problem] = attrs.field(factory=list)
    #: Problems that do not stop a host (unused option sections...), for ``lash doctor``.
    warnings: list[str] = attrs.field(factory=list)
    #: Plugin CLI commands by name (collected only when asked for).
    commands: dict[str, PluginCommand] = attrs.field(factory=dict)
    _options_owners: dict[type, str] = attrs.field(factory=dict, alias="_options_owners")
    _state_owners: dict[type, str] = attrs.field(factory=dict, alias="_state_owners")
    _tool_table: dict[str, tuple[str, str]] | None = attrs.field(default=None, alias="_tool_table")
    _specs: dict[str, ToolSpec] = attrs.field(factory=dict, alias="_specs")
    _secret_fields: dict[str, frozenset[str]] = attrs.field(factory=dict, alias="_secret_fields")
    #: The tools of the tool sources, as last listed.
    _listed: ListedTools = attrs.field(factory=ListedTools, alias="_listed")
    _shapes_prompt: bool | None = attrs.field(default=None, alias="_shapes_prompt")

    def __attrs_post_init__(self) -> None:
        for plugin in self.loaded:
            meta = plugin.info.meta
            if meta.options is not None:
                self._options_owners[meta.options] = plugin.name
            if meta.state is not None:
                self._state_owners[meta.state] = plugin.name

    # -- plugins ------------------------------------------------------------------------------

    @property
    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, in dispatch order."""
        return [p.name for p in self.loaded]

    def plugin(self, name: str) -> LoadedPlugin:
        """The loaded plugin ``name``. :raises KeyError: when none is loaded by that name."""
        for plugin in self.loaded:
            if plugin.name == name:
                return plugin
        raise KeyError(name)

    def options_owner(self, cls: type) -> str:
        """The plugin that declared options class ``cls``."""
        try:
            return self._options_owners[cls]
        except KeyError:
            raise KeyError(f"no enabled plugin declares options class {cls.__qualname__}") from None

    def state_owner(self, cls: type) -> str:
        """The plugin that declared state class ``cls``."""
        try:
            return self._state_owners[cls]
        except KeyError:
            raise KeyError(f"no enabled plugin declares state class {cls.__qualname__}") from None

    def secret_fields(self, plugin: str) -> frozenset[str]:
        """Names of the option fields of ``plugin`` declared with ``option(secret=True)``."""
        found = self._secret_fields.get(plugin)
        if found is None:
            found = frozenset()
            for loaded in self.loaded:
                if loaded.name == plugin and loaded.info.meta.options is not None:
                    found = frozenset(
                        f.name for f in attrs.fields(loaded.info.meta.options) if is_secret(f)
                    )
            self._secret_fields[plugin] = found
        return found

    @property
    def shapes_prompt(self) -> bool:
        """Whether a plugin takes part in building model prompts: implements a hook of
        :data:`PROMPT_HOOKS` or contributes a tool source (which may list new tools). Fixed
        per composition, so asked once (``lash._kernel.prompt`` builds a prompt without a
        coroutine when nothing does)."""
        shapes = self._shapes_prompt
        if shapes is None:
            hooks = self.hooks
            shapes = bool(self.registry.of("tool_source")) or any(map(hooks.impls, PROMPT_HOOKS))
            self._shapes_prompt = shapes
        return shapes

    # -- tools ----------------------------------------------------------------------------------

    def tool(self, name: str) -> Tool:
        """The registered (or listed) tool ``name``. :raises KeyError: when there is none."""
        entry = self.tool_entry(name)
        if entry is None:
            raise KeyError(name)
        return entry[1]

    def tool_entry(self, name: str) -> tuple[str, Tool] | None:
        """The plugin that registered (or whose source listed) tool ``name``, and the tool;
        ``None`` when there is no such tool. (A source never lists a registered tool's name:
        one lookup answers for both.)"""
        contribution = self.registry.of("tool").get(name)
        if contribution is not None:
            return contribution.plugin, contribution.value
        return self._listed.tools.get(name)

    def tool_spec(self, name: str) -> ToolSpec:
        """What a provider is told about tool ``name`` (built once per composition, and again
        when a tool source lists the tool anew)."""
        spec = self._specs.get(name)
        if spec is None:
            spec = self._specs[name] = self.tool(name).spec()
        return spec

    def has_tool(self, name: str) -> bool:
        return name in self.registry.of("tool") or name in self._listed.tools

    def available_tools(self) -> dict[str, tuple[str, str]]:
        """Every tool: name -> (plugin, description). The registered tools are fixed per
        composition; the tools of tool sources are those of their last listing
        (:meth:`list_tool_sources`)."""
        if self._tool_table is None:
            self._tool_table = {
                c.name: (c.plugin, c.description) for c in self.registry.of("tool").values()
            }
            for name, (plugin, tool) in self._listed.tools.items():
                self._tool_table[name] = (plugin, tool.description)
        return self._tool_table

    async def list_tool_sources(self) -> None:
        """Ask every tool source for its tools (each source decides whether that connects or
        answers from its cache); a failing source is reported and left out."""
        before = set(self._listed.tools)
        if await self._listed.refresh(self.registry, self.hooks):
            self._tool_table = None
            for name in before | set(self._listed.tools):
                self._specs.pop(name, None)

    async def close_tool_sources(self) -> None:
        """Close every tool source that can be closed (the core is closing), concurrently (a
        source may take seconds to stop its servers); a failure is reported, and the other
        sources are still closed."""
        import asyncio  # the kernel's running loop imported it long before

        async def close(contribution: Contribution) -> None:
            try:
                await contribution.value.aclose()
            except Exception as exc:  # a source failing to close must not keep others open
                self.hooks.report(
                    PluginError(
                        f"tool source {contribution.name!r} failed to close: "
                        f"{type(exc).__name__}: {exc}",
                        plugin=contribution.plugin,
                        hook="register_tools",
                    )
                )

        sources = self.registry.of("tool_source").values()
        await asyncio.gather(*(close(c) for c in sources if c.value.aclose is not None))

    # -- protocol, providers, stores ------------------------------------------------------------

    def protocol(self) -> tuple[str, Any]:
        """The turn protocol: (plugin, protocol object).

        :raises ProtocolMissing: when no enabled plugin registers one (naming the installed
            builtin that would, when it is merely not enabled).
        """
        protocols = self.registry.of("protocol")
        if not protocols:
            raise ProtocolMissing(
                "no enabled plugin registers the turn protocol"
                + self._not_enabled_hint("protocol", None)
                + "; enable the builtin 'standard' plugin (or another protocol plugin)"
            )
        contribution = next(iter(protocols.values()))
        return contribution.plugin, contribution.value

    def provider_for(self, provider: str | None, model: str | None) -> tuple[str, Provider, str]:
        """(name, provider, model) for a session configured with ``provider`` / ``model``
        (falling back to the host config, then to the only registered provider)."""
        providers = self.registry.of("provider")
        name = provider or self.config.provider
        if name is None:
            if len(providers) != 1:
                known = ", ".join(sorted(providers)) or "none"
                raise UnknownProvider(
                    f"no provider configured and {len(providers)} are registered ({known}); "
                    'set `provider = "..."` in lash.toml, pass provider= to LashCore, '
                    "or use `lash run --provider NAME`"
                )
            name = next(iter(providers))
        contribution = providers.get(name)
        if contribution is None:
            known = ", ".join(sorted(providers)) or "none"
            raise UnknownProvider(
                f"unknown provider {name!r}; registered providers: {known}"
                + self._not_enabled_hint("provider", name)
            )
        return name, contribution.value, model or self.config.model or DEFAULT_MODEL

    def store_factory(self, url: str) -> Callable[[str], Any]:
        """The factory of the store for ``url``. :raises UnknownStore: naming the scheme."""
        scheme = url.split(":", 1)[0]
        contribution = self.registry.of("store").get(scheme)
        if contribution is None:
            known = ", ".join(sorted(self.registry.of("store"))) or "none"
            raise UnknownStore(
                f"no plugin provides a store for {scheme!r} URLs ({url!r}); known schemes: "
                f"{known}" + self._not_enabled_hint("store", scheme)
            )
        factory: Callable[[str], Any] = contribution.value
        return factory

    def _not_enabled_hint(self, kind: str, name: str | None) -> str:
        """``" (the builtin plugin 'stores' provides it but is not enabled: ...)"``, when an
        installed builtin that is not enabled would provide it. Only on error paths: it imports
        and registers the builtins that are not enabled, each in isolation."""
        candidates = [i for i in self.infos if i.builtin and i.status == "disabled"]
        if not candidates:
            return ""
        probe = compose(
            attrs.evolve(self.config, plugins=None, disable=(), options={}),
            explicit=[i.name for i in candidates],
            builtins=(),
            isolate=True,
        )
        for contribution in probe.registry.of(kind).values():
            if name is None or contribution.name == name:
                return (
                    f" (the builtin plugin {contribution.plugin!r} provides it but is not "
                    f"enabled: add {contribution.plugin!r} to `plugins`, or remove it from "
                    "`disable`)"
                )
        return ""


# -- building ----------------------------------------------------------------------------------


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    # Loading logs every skipped plugin; inspection reports them itself, so the log lines would
    # only repeat the report (on stderr, around `--json` output).
    drop = _DropAll()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def problems_of(error: LashError, stage: str = "load") -> list[Problem]:
    """One problem per bad options field, else one for the error."""
    plugin = getattr(error, "plugin", None)
    hook = getattr(error, "hook", None)
    cause = error.__cause__
    if isinstance(cause, OptionsError) and cause.problems:
        # One line per bad field: plugin, dotted path, expected type and the value received.
        return [
            Problem(f"plugin {cause.plugin!r}: {line}", plugin, None, stage, error)
            for line in cause.problems
        ]
    return [Problem(str(error), plugin, hook, stage, error)]


def compose(
    config: HostConfig,
    *,
    explicit: Sequence[object | str] | None = None,
    builtins: Builtins = None,
    isolate: bool = False,
    on_error: Callable[[LashError], None] | None = None,
    hook_timeout: float | None = None,
    commands: Collection[str] | None = None,
) -> Composition:
    """Load, order and register ``config``'s plugins (``explicit``: the allowlist given in code).

    ``builtins`` chooses the builtin plugins that load without being listed (see
    :class:`lash.LashCore`). With ``isolate=True`` nothing raises: every failure is a
    :class:`Problem` and the failing plugin is left out (strict mode becomes a report).
    ``commands`` (the names of the ``lash`` builtin commands) asks for the plugins' CLI commands
    to be collected too, none of them taking a reserved name.
    """
    if isolate:
        with _quiet(logging.getLogger("lash")):
            result = load_plugins(
                attrs.evolve(config, strict=False), explicit=explicit, builtins=builtins
            )
    else:
        result = load_plugins(config, explicit=explicit, builtins=builtins)
    hooks = HookDispatcher(
        result.pm, [p.name for p in result.loaded], on_error=on_error, hook_timeout=hook_timeout
    )
    problems: list[Problem] = []
    for failure in result.failures:
        problems += problems_of(failure)
    problems += [Problem(w, stage="config") for w in result.warnings]
    for hook in _EXCLUSIVE_HOOKS:
        try:
            hooks.exclusive_impl(hook)
        except ExclusiveHookConflict as exc:
            if not isolate:
                raise
            problems.append(Problem(str(exc), exc.plugin, hook, "exclusive", exc))
    registry = run_registrations(hooks, result.loaded, isolate=isolate)
    failed: dict[str, LashError] = {}
    for error in registry.errors:
        problems += problems_of(error, "register")
        plugin = getattr(error, "plugin", None)
        if plugin is not None:
            failed.setdefault(plugin, error)
    infos = [
        attrs.evolve(info, status="failed", error=str(failed[info.name]))
        if info.name in failed
        else info
        for info in result.infos
    ]
    loaded = [p for p in result.loaded if p.name not in failed]
    composition = Composition(
        config=config,
        infos=infos,
        loaded=loaded,
        hooks=hooks,
        registry=registry,
        problems=problems,
        warnings=list(result.warnings),
    )
    if commands is not None:
        found, command_problems = collect_commands(composition, set(commands))
        composition.commands = found
        problems += command_problems
    return composition


# -- plugin commands ---------------------------------------------------------------------------

_COMMANDS_HOOK = "register_commands"


def collect_commands(
    composition: Composition, reserved: Collection[str]
) -> tuple[dict[str, PluginCommand], list[Problem]]:
    """Call ``register_commands`` through the dispatcher, each plugin into a scratch group, so
    a failure or a name clash is attributed to its plugin instead of breaking or replacing
    another command."""
    import click

    commands: dict[str, PluginCommand] = {}
    problems: list[Problem] = []
    options = {p.name: p.options for p in composition.loaded}
    groups: dict[str, click.Group] = {}

    def bind(plugin: str) -> dict[str, Any]:
        group = groups[plugin] = click.Group(name=plugin)
        return {"register": group.add_command, "cli": group, "options": options.get(plugin)}

    def failed(error: LashError) -> None:
        plugin = getattr(error, "plugin", None)
        problems.append(Problem(f"{error}; its commands are not available", plugin, _COMMANDS_HOOK))
        groups.pop(plugin or "", None)

    composition.hooks.collect_sync(_COMMANDS_HOOK, bind=bind, on_failure=failed)
    for plugin, group in groups.items():
        for name, command in group.commands.items():
            if name in reserved:
                owner = "lash"
            elif name in commands:
                owner = f"plugin {commands[name].plugin!r}"
            else:
                commands[name] = PluginCommand(name, plugin, command)
                continue
            problems.append(
                Problem(
                    f"plugin {plugin!r} adds command {name!r}, which {owner} already "
                    "provides; the plugin's command is skipped (rename it)",
                    plugin,
                    _COMMANDS_HOOK,
                    "commands",
                )
            )
    return commands, problems


resolve_here(globals())
