"""Inspect a plugin composition without failing on broken plugins (``lash plugins``, ``doctor``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from lash._config import HostConfig
from lash._manager import HookDispatcher
from lash._options import describe_options
from lash._plugins import PluginInfo, load_plugins
from lash._registry import Registry, run_registrations
from lash.errors import ExclusiveHookConflict, LashError
from lash.hookspecs import SHAPES


@attrs.define
class Inspection:
    """The state of a composition: every plugin, what each contributes, and every problem."""

    config: HostConfig
    infos: list[PluginInfo]
    registry: Registry
    dispatcher: HookDispatcher
    problems: list[str]

    def entry(self, info: PluginInfo) -> dict[str, Any]:
        """The JSON-ready description of one plugin (``lash plugins --json``)."""
        meta = info.meta
        return {
            "name": info.name,
            "status": info.status,
            "distribution": info.distribution,
            "version": info.version,
            "module": info.module,
            "builtin": info.builtin,
            "description": meta.description,
            "hooks": list(info.hooks),
            "error": info.error,
            "contributes": self.registry.by_plugin(info.name),
            "options": describe_options(meta.options) if meta.options is not None else [],
            "before": list(meta.before),
            "after": list(meta.after),
            "requires": list(meta.requires),
        }

    @property
    def healthy(self) -> bool:
        return not self.problems


def inspect_plugins(
    config: HostConfig, *, explicit: Sequence[object | str] | None = None
) -> Inspection:
    """Load plugins in isolation mode and run their registrations, collecting every problem.

    Strict mode is honoured only as a report: inspection never raises for a broken plugin.
    """
    result = load_plugins(attrs.evolve(config, strict=False), explicit=explicit)
    dispatcher = HookDispatcher(result.pm, [p.name for p in result.loaded])
    problems = [str(f) for f in result.failures]
    problems += result.warnings
    registry = run_registrations(dispatcher, result.loaded, isolate=True)
    failed_registration: dict[str, LashError] = {}
    for error in registry.errors:
        problems.append(str(error))
        plugin = getattr(error, "plugin", None)
        if plugin is not None:
            failed_registration.setdefault(plugin, error)
    for hook, shape in SHAPES.items():
        if shape == "exclusive":
            try:
                dispatcher.exclusive_impl(hook)
            except ExclusiveHookConflict as exc:
                problems.append(str(exc))
    infos = [
        attrs.evolve(info, status="failed", error=str(failed_registration[info.name]))
        if info.name in failed_registration
        else info
        for info in result.infos
    ]
    return Inspection(
        config=config, infos=infos, registry=registry, dispatcher=dispatcher, problems=problems
    )
