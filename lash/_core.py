"""``LashCore``: one host's composition of plugins, store and provider."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from lash._config import HostConfig
from lash._manager import HookDispatcher
from lash._plugins import LoadedPlugin, PluginInfo, load_plugins
from lash._registry import Registry, run_registrations
from lash.errors import LashError

#: Exclusive hooks, checked when the core is built so a conflict fails early and names both plugins.
_EXCLUSIVE_HOOKS = ("register_protocol", "project_tool_result")


class LashCore:
    """A host's plugin composition: its own plugin manager, registries and settings.

    Build one from config with :meth:`from_config`, or from explicit arguments::

        core = lash.LashCore(plugins=["standard", "scripted", my_plugin], autoload=False)

    ``plugins`` is the allowlist and order: entry-point names or plugin objects (module, class or
    instance). Builtins not listed still load unless disabled. Each core builds its own pluggy
    manager: nothing is global, and nothing is discovered at import time.
    """

    __module__ = "lash"

    def __init__(
        self,
        plugins: Sequence[object | str] | None = None,
        *,
        config: HostConfig | None = None,
        store: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        disable: Sequence[str] | None = None,
        autoload: bool | None = None,
        strict: bool | None = None,
        on_error: Callable[[LashError], None] | None = None,
    ) -> None:
        base = config if config is not None else HostConfig().with_env(os.environ)
        overrides: dict[str, Any] = {
            key: value
            for key, value in (
                ("store", store),
                ("provider", provider),
                ("model", model),
                ("autoload", autoload),
                ("strict", strict),
            )
            if value is not None
        }
        if options is not None:
            overrides["options"] = {**base.options, **options}
        if disable is not None:
            overrides["disable"] = tuple(disable)
        self.config: HostConfig = attrs.evolve(base, **overrides) if overrides else base
        result = load_plugins(self.config, explicit=plugins)
        self._loaded: list[LoadedPlugin] = result.loaded
        self._infos = result.infos
        #: Problems that did not stop the build (unused option sections...), for ``lash doctor``.
        self.warnings: list[str] = result.warnings
        self.hooks = HookDispatcher(result.pm, [p.name for p in result.loaded], on_error=on_error)
        self._pm = result.pm
        for hook in _EXCLUSIVE_HOOKS:
            self.hooks.exclusive_impl(hook)
        self.registry: Registry = run_registrations(self.hooks, self._loaded)

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        cwd: str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> LashCore:
        """Build a core from ``lash.toml`` / ``[tool.lash]`` (see :meth:`HostConfig.load`);
        keyword ``overrides`` are passed to the constructor and win over the file."""
        config = HostConfig.load(path, cwd=cwd)
        return cls(config=config, **overrides)

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin lash considered, in order: loaded first, then failed and disabled ones."""
        return list(self._infos)

    @property
    def plugin_names(self) -> list[str]:
        """Names of the loaded plugins, in dispatch order."""
        return [p.name for p in self._loaded]

    def plugin_options(self, name: str) -> Any:
        """The host-level (config) options instance of plugin ``name`` (``None`` if it has none).

        :raises KeyError: when no plugin of that name is loaded.
        """
        for plugin in self._loaded:
            if plugin.name == name:
                return plugin.options
        raise KeyError(name)

    def __repr__(self) -> str:
        return f"<LashCore plugins={self.plugin_names!r}>"
