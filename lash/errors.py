"""The lash error tree.

Every error lash raises derives from :class:`LashError`. Leaves carry their context as attributes
(``plugin``, ``hook``, ``session_id``, ``field``...) so hosts can react programmatically, and their
messages say what happened, where, and what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "ConfigRejected",
    "ExclusiveHookConflict",
    "LashError",
    "OptionsError",
    "PluginError",
    "PluginLoadError",
    "PluginOrderError",
    "UnknownHookError",
]


class LashError(Exception):
    """Root of every error raised by lash."""

    __module__ = "lash"


class ConfigError(LashError, ValueError):
    """The host configuration cannot be used.

    ``path``, ``line`` and ``column`` locate the problem when it comes from a file.
    """

    __module__ = "lash"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.column = column
        where = ""
        if path is not None:
            where = path
            if line is not None:
                where += f":{line}"
                if column is not None:
                    where += f":{column}"
            where += ": "
        super().__init__(where + message)


class OptionsError(ConfigError):
    """Options for a plugin (or the host) do not fit the declared attrs class.

    ``problems`` holds one readable line per bad field: plugin, dotted field path, expected type and
    the value received. ``plugin`` names the plugin whose options were rejected.
    """

    __module__ = "lash"

    def __init__(self, plugin: str, problems: Sequence[str], *, path: str | None = None) -> None:
        self.plugin = plugin
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid options for plugin {plugin!r}:\n{lines}", path=path)


class PluginError(LashError):
    """A plugin failed inside a hook, or broke the hook contract.

    ``plugin`` names the plugin and ``hook`` the hook; the original exception is chained as
    ``__cause__``.
    """

    __module__ = "lash"

    def __init__(self, message: str, *, plugin: str | None, hook: str | None) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(message)


class PluginLoadError(PluginError):
    """A plugin could not be loaded (import failure, bad declaration, unknown hook...).

    Outside strict mode the plugin is recorded as failed and skipped; in strict mode this is raised
    when the core is built.
    """

    __module__ = "lash"

    def __init__(
        self,
        message: str,
        *,
        plugin: str,
        hook: str | None = None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        self.distribution = distribution
        self.version = version
        super().__init__(message, plugin=plugin, hook=hook)


class UnknownHookError(PluginLoadError):
    """A plugin implements a hook name that is not in the contract (often a typo).

    ``suggestion`` holds the closest known hook name, if any.
    """

    __module__ = "lash"

    def __init__(
        self,
        message: str,
        *,
        plugin: str,
        hook: str,
        suggestion: str | None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        self.suggestion = suggestion
        super().__init__(
            message, plugin=plugin, hook=hook, distribution=distribution, version=version
        )


class PluginOrderError(PluginLoadError):
    """Plugin ordering cannot be satisfied: a ``before``/``after`` cycle or a missing ``requires``.

    ``plugins`` names every plugin involved.
    """

    __module__ = "lash"

    def __init__(self, message: str, *, plugin: str, plugins: Sequence[str]) -> None:
        self.plugins = tuple(plugins)
        super().__init__(message, plugin=plugin)


class ExclusiveHookConflict(PluginError):
    """Two plugins implement an exclusive hook (at most one implementation is allowed).

    ``plugins`` names both.
    """

    __module__ = "lash"

    def __init__(self, hook: str, plugins: Sequence[str]) -> None:
        self.plugins = tuple(plugins)
        names = " and ".join(repr(p) for p in self.plugins)
        super().__init__(
            f"hook {hook!r} is exclusive but both {names} implement it; "
            "disable one of them (config `disable = [...]`)",
            plugin=self.plugins[-1] if self.plugins else None,
            hook=hook,
        )


class ConfigRejected(LashError):
    """A plugin rejected a session configuration change (raised from ``mutate_session_config``).

    Plugins raise it with a ``reason``; the kernel fills in ``plugin`` before it reaches the host.
    """

    __module__ = "lash"

    def __init__(self, reason: str, *, plugin: str | None = None) -> None:
        self.reason = reason
        self.plugin = plugin
        super().__init__(reason)

    def __str__(self) -> str:
        who = f"plugin {self.plugin!r}" if self.plugin else "a plugin"
        return f"{who} rejected the configuration change: {self.reason}"
