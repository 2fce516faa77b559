"""Inspect a plugin composition without failing on broken plugins (``lash plugins``, ``doctor``).

Inspection loads plugins the way a host does, but in isolation mode whatever the config says: every
failure (import, hook names, ordering, options, registration, CLI commands, exclusive hooks) becomes
a :class:`Problem` attributed to its plugin, and the healthy plugins are still described.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import attrs
import click

from lash._contract.annotations import resolve_here
from lash._plugins.dispatch import HookDispatcher, plugin_error
from lash._plugins.hostconfig import HostConfig
from lash._plugins.loading import LoadedPlugin, PluginInfo, load_plugins
from lash._plugins.options import describe_options, redact
from lash._plugins.registry import REGISTRATION_HOOKS, Registry, run_registrations
from lash.errors import ExclusiveHookConflict, LashError, OptionsError
from lash.hookspecs import SHAPES

#: The key of each kind of contribution in ``lash plugins --json``: ``tools``, ``stores``...
CONTRIBUTION_KEYS: dict[str, str] = {kind: f"{kind}s" for kind in REGISTRATION_HOOKS.values()}


@attrs.frozen
class Problem:
    """One reason a composition is unhealthy, with the plugin and hook it concerns when known."""

    message: str
    plugin: str | None = None
    hook: str | None = None


@attrs.frozen
class PluginCommand:
    """A CLI command contributed through ``register_commands``."""

    name: str
    plugin: str
    command: click.Command


@attrs.define
class Inspection:
    """The state of a composition: every plugin, what each contributes, and every problem."""

    config: HostConfig
    infos: list[PluginInfo]
    registry: Registry
    dispatcher: HookDispatcher
    problems: list[Problem]
    #: The loaded plugins by name (their validated host-level options included).
    loaded: dict[str, LoadedPlugin] = attrs.field(factory=dict)
    #: Plugin CLI commands that can be added to the ``lash`` group, by command name.
    commands: dict[str, PluginCommand] = attrs.field(factory=dict)
    #: Things worth knowing that do not make the composition unhealthy.
    notes: list[str] = attrs.field(factory=list)

    @property
    def healthy(self) -> bool:
        """Whether nothing is wrong (what ``lash doctor`` exits 0 for)."""
        return not self.problems

    def problems_of(self, plugin: str) -> list[Problem]:
        """The problems attributed to ``plugin``."""
        return [p for p in self.problems if p.plugin == plugin]

    def entry(self, info: PluginInfo) -> dict[str, Any]:
        """The JSON-ready description of one plugin (one object of ``lash plugins --json``)."""
        meta = info.meta
        loaded = self.loaded.get(info.name) if info.status == "loaded" else None
        # A plugin that did not load contributes nothing to a host, even if it registered some
        # names before failing.
        contributed = self.registry.by_plugin(info.name) if loaded is not None else {}
        entry: dict[str, Any] = {
            "name": info.name,
            "status": info.status,
            "error": info.error,
            "distribution": info.distribution,
            "version": info.version,
            "module": info.module,
            "builtin": info.builtin,
            "description": meta.description,
            "hooks": list(info.hooks),
        }
        for kind, key in CONTRIBUTION_KEYS.items():
            entry[key] = list(contributed.get(kind, ()))
        entry["commands"] = sorted(c.name for c in self.commands.values() if c.plugin == info.name)
        # Problems that do not stop the plugin from loading (a skipped command, for instance).
        warnings = (
            [p.message for p in self.problems_of(info.name)] if info.status == "loaded" else []
        )
        current = loaded.options if loaded is not None else None
        try:
            options = options_of(meta.options, current) if meta.options is not None else {}
        except Exception as exc:  # an odd options class must not hide the rest of the listing
            options = {}
            warnings.append(f"its options cannot be described: {type(exc).__name__}: {exc}")
        entry["options"] = options
        entry["before"] = list(meta.before)
        entry["after"] = list(meta.after)
        entry["requires"] = list(meta.requires)
        entry["warnings"] = warnings
        return entry


# -- options ---------------------------------------------------------------------------------


def options_of(cls: type, current: Any = None) -> dict[str, dict[str, Any]]:
    """An options class by field name: type, default, required, secret, help, and ``value``, the
    configured value in ``current`` (``None`` when unknown). Secrets show as ``***`` at any depth.

    :raises Exception: whatever describing the class raises (a failing default factory...).
    """
    values = redact(current) if current is not None else {}
    rows: dict[str, dict[str, Any]] = {}
    for row in describe_options(cls):
        name = row.pop("name")
        rows[name] = {**row, "value": values.get(name) if isinstance(values, dict) else None}
    return rows


# -- plugin commands -------------------------------------------------------------------------

_COMMANDS_HOOK = "register_commands"


def _collect_commands(
    dispatcher: HookDispatcher, usable: Collection[str], reserved: Collection[str]
) -> tuple[dict[str, PluginCommand], list[Problem]]:
    """Call ``register_commands`` plugin by plugin, each into a scratch group, so a failure or a
    name clash is attributed to its plugin instead of breaking or replacing another command."""
    commands: dict[str, PluginCommand] = {}
    problems: list[Problem] = []
    for impl in dispatcher.impls(_COMMANDS_HOOK):
        if impl.plugin not in usable:
            continue
        scratch = click.Group(name=impl.plugin)
        try:
            impl.function(*[{"cli": scratch}[a] for a in impl.argnames])
        except Exception as exc:
            error = plugin_error(_COMMANDS_HOOK, impl.plugin, exc)
            problems.append(
                Problem(f"{error}; its commands are not available", impl.plugin, _COMMANDS_HOOK)
            )
            continue
        for name, command in scratch.commands.items():
            if name in reserved:
                owner = "lash"
            elif name in commands:
                owner = f"plugin {commands[name].plugin!r}"
            else:
                commands[name] = PluginCommand(name, impl.plugin, command)
                continue
            problems.append(
                Problem(
                    f"plugin {impl.plugin!r} adds command {name!r}, which {owner} already "
                    "provides; the plugin's command is skipped (rename it)",
                    impl.plugin,
                    _COMMANDS_HOOK,
                )
            )
    return commands, problems


# -- inspection ------------------------------------------------------------------------------


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


def _problems_of(error: LashError) -> list[Problem]:
    plugin = getattr(error, "plugin", None)
    hook = getattr(error, "hook", None)
    cause = error.__cause__
    if isinstance(cause, OptionsError) and cause.problems:
        # One line per bad field: plugin, dotted path, expected type and the value received.
        return [Problem(f"plugin {cause.plugin!r}: {line}", plugin) for line in cause.problems]
    return [Problem(str(error), plugin, hook)]


def _config_problems(config: HostConfig, registry: Registry) -> list[Problem]:
    """Host settings that name something no enabled plugin provides."""
    problems: list[Problem] = []
    if config.store:
        scheme = config.store.split(":", 1)[0] if ":" in config.store else config.store
        known = sorted(registry.of("store"))
        if scheme not in known:
            problems.append(
                Problem(
                    f"config `store = {config.store!r}`: no enabled plugin registers the store "
                    f"scheme {scheme!r} (registered: {', '.join(known) or 'none'})"
                )
            )
    if config.provider:
        known = sorted(registry.of("provider"))
        if config.provider not in known:
            problems.append(
                Problem(
                    f"config `provider = {config.provider!r}`: no enabled plugin registers that "
                    f"provider (registered: {', '.join(known) or 'none'})"
                )
            )
    return problems


def inspect_plugins(
    config: HostConfig,
    *,
    explicit: Sequence[object | str] | None = None,
    reserved_commands: Collection[str] = (),
) -> Inspection:
    """Load plugins in isolation mode and run their registrations, collecting every problem.

    Strict mode is honoured only as a report: inspection never raises for a broken plugin.
    ``reserved_commands`` are command names plugins may not take (the builtin commands).
    """
    with _quiet(logging.getLogger("lash")):
        result = load_plugins(attrs.evolve(config, strict=False), explicit=explicit)
    dispatcher = HookDispatcher(result.pm, [p.name for p in result.loaded])
    problems: list[Problem] = []
    for failure in result.failures:
        problems += _problems_of(failure)
    problems += [Problem(w) for w in result.warnings]
    registry = run_registrations(dispatcher, result.loaded, isolate=True)
    failed_registration: dict[str, LashError] = {}
    for error in registry.errors:
        problems += _problems_of(error)
        plugin = getattr(error, "plugin", None)
        if plugin is not None:
            failed_registration.setdefault(plugin, error)
    for hook, shape in SHAPES.items():
        if shape == "exclusive":
            try:
                dispatcher.exclusive_impl(hook)
            except ExclusiveHookConflict as exc:
                problems.append(Problem(str(exc), exc.plugin, hook))
    infos = [
        attrs.evolve(info, status="failed", error=str(failed_registration[info.name]))
        if info.name in failed_registration
        else info
        for info in result.infos
    ]
    usable = {p.name for p in result.loaded} - set(failed_registration)
    commands, command_problems = _collect_commands(dispatcher, usable, set(reserved_commands))
    problems += command_problems
    problems += _config_problems(config, registry)
    notes = []
    if not registry.of("protocol"):
        # Not a problem: a host may use tools, stores or processes without running turns.
        notes.append(
            "no enabled plugin registers the turn protocol (register_protocol): sessions cannot "
            "run turns; enable the builtin 'standard' plugin or another protocol plugin"
        )
    return Inspection(
        config=config,
        infos=infos,
        registry=registry,
        dispatcher=dispatcher,
        problems=problems,
        loaded={p.name: p for p in result.loaded if p.name in usable},
        commands=commands,
        notes=notes,
    )


resolve_here(globals())
