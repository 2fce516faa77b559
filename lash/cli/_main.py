"""The root ``lash`` group: global options, config loading, plugin-contributed commands."""

from __future__ import annotations

import logging
from typing import Any

import click

from lash._config import HostConfig
from lash.errors import ConfigError, LashError

log = logging.getLogger("lash")


class LashGroup(click.Group):
    """A group that adds plugin commands (``register_commands``) the first time they are needed.

    Plugin commands depend on ``--config``, so they are resolved after the group's own options
    are parsed; a broken plugin never breaks the builtin commands.
    """

    _plugins_added = False

    def _add_plugin_commands(self, ctx: click.Context) -> None:
        if self._plugins_added:
            return
        self._plugins_added = True
        try:
            config = load_config(ctx)
        except ConfigError:
            return  # the builtin commands report config errors themselves
        from lash._inspect import inspect_plugins

        inspection = inspect_plugins(config)
        builtin_names = set(self.commands)
        for plugin in inspection.dispatcher.impls("register_commands"):
            # Each plugin registers into a scratch group, so a name clash is caught and attributed
            # instead of silently replacing another command.
            scratch = click.Group()
            try:
                plugin.function(*[{"cli": scratch}[a] for a in plugin.argnames])
            except Exception as exc:
                log.warning("lash: plugin %r failed in register_commands: %s", plugin.plugin, exc)
                continue
            for name, command in scratch.commands.items():
                if name in self.commands:
                    owner = "lash" if name in builtin_names else "another plugin"
                    log.warning(
                        "lash: plugin %r: command %r is already provided by %s; skipped",
                        plugin.plugin,
                        name,
                        owner,
                    )
                    continue
                self.add_command(command, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._add_plugin_commands(ctx)
            command = super().get_command(ctx, cmd_name)
        return command


def load_config(ctx: click.Context) -> HostConfig:
    """The host config for this invocation (``--config``, ``$LASH_CONFIG`` or discovery); cached."""
    root = ctx.find_root()
    cached = root.meta.get("lash.config")
    if isinstance(cached, HostConfig):
        return cached
    config = HostConfig.load(root.params.get("config_path"))
    root.meta["lash.config"] = config
    return config


def config_or_exit(ctx: click.Context) -> HostConfig:
    """Like :func:`load_config`, but a config error ends the command with a clear message."""
    try:
        return load_config(ctx)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(cls=LashGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (lash.toml or pyproject.toml); default: $LASH_CONFIG or the nearest one.",
)
@click.version_option(package_name="lash")
def cli(config_path: str | None) -> None:
    """lash: durable LLM-agent hosts built from plugins."""


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return cli.main(args=argv, prog_name="lash")
    except LashError as exc:  # commands convert their own errors; this is the last resort
        raise SystemExit(f"error: {exc}") from None


# The builtin commands register themselves on `cli` when imported.
from lash.cli import _inspect_cmds as _inspect_cmds  # noqa: E402 - registration import
