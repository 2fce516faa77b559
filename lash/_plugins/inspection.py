"""Inspect a plugin composition without failing on broken plugins (``lash plugins``, ``doctor``).

Inspection builds the composition the way a host does (:func:`lash._plugins.composition.compose`),
but in isolation mode whatever the config says: every failure (import, hook names, ordering,
options, registration, CLI commands, exclusive hooks) becomes a :class:`Problem` attributed to its
plugin, and the healthy plugins are still described.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import attrs

from lash._contract.annotations import resolve_here
from lash._contract.serialization import to_data
from lash._plugins.composition import PluginCommand, Problem, compose
from lash._plugins.dispatch import HookDispatcher
from lash._plugins.hostconfig import HostConfig
from lash._plugins.loading import LoadedPlugin, PluginInfo
from lash._plugins.options import describe_options, redact
from lash._plugins.registry import KINDS, Registry

__all__ = ["CONTRIBUTION_KEYS", "Inspection", "PluginCommand", "Problem", "inspect_plugins"]

#: The key of each kind of contribution in ``lash plugins --json``: ``tools``, ``stores``...
CONTRIBUTION_KEYS: dict[str, str] = {kind: f"{kind}s" for kind in KINDS}


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
        # Operations are listed with what a host needs to call them: kind, session rule and
        # the JSON schemas of their arguments and result.
        table = self.registry.of("operation")
        entry["operations"] = [
            to_data(table[name].value.info()) for name in entry["operations"] if name in table
        ]
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


# -- inspection ------------------------------------------------------------------------------


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
                    f"scheme {scheme!r} (registered: {', '.join(known) or 'none'})",
                    stage="config",
                )
            )
    if config.provider:
        known = sorted(registry.of("provider"))
        if config.provider not in known:
            problems.append(
                Problem(
                    f"config `provider = {config.provider!r}`: no enabled plugin registers that "
                    f"provider (registered: {', '.join(known) or 'none'})",
                    stage="config",
                )
            )
    return problems


def inspect_plugins(
    config: HostConfig,
    *,
    explicit: Sequence[object | str] | None = None,
    reserved_commands: Collection[str] = (),
) -> Inspection:
    """Build the composition of ``config`` in isolation mode (the same :func:`compose` a core
    uses), collecting every problem instead of raising.

    Strict mode is honoured only as a report: inspection never raises for a broken plugin.
    ``reserved_commands`` are command names plugins may not take (the builtin commands).
    """
    composition = compose(config, explicit=explicit, isolate=True, commands=reserved_commands)
    registry = composition.registry
    problems = [*composition.problems, *_config_problems(config, registry)]
    notes = []
    if not registry.of("protocol"):
        # Not a problem: a host may use tools, stores or processes without running turns.
        notes.append(
            "no enabled plugin registers the turn protocol (register_protocol): sessions cannot "
            "run turns; enable the builtin 'standard' plugin or another protocol plugin"
        )
    return Inspection(
        config=config,
        infos=composition.infos,
        registry=registry,
        dispatcher=composition.hooks,
        problems=problems,
        loaded={p.name: p for p in composition.loaded},
        commands=composition.commands,
        notes=notes,
    )


resolve_here(globals())
