"""The root ``lash`` group: global options, config loading, plugin-contributed commands."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import traceback
from typing import Any

import click

from lash._plugins.hostconfig import HostConfig
from lash._plugins.inspection import Inspection, PluginCommand, inspect_plugins
from lash.errors import ConfigError, LashError

_CONFIG_KEY = "lash.config"
_INSPECTION_KEY = "lash.inspection"
_COMMANDS_KEY = "lash.plugin_commands"


def warn(message: str) -> None:
    """Print a warning of the command line itself on stderr (stdout may carry JSON)."""
    click.echo(f"lash: warning: {message}", err=True)


#: Builtin commands imported on first use: name -> (module, one-line help). Listing them (``lash
#: --help``) must not import them: they need the session kernel, which ``lash --help`` and ``lash
#: plugins`` do not. Each module registers its command on ``cli`` when imported.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "lash.cli._demo",
        "Run an offline demo session (scripted model) and print its transcript.",
    ),
    "new-plugin": (
        "lash.cli._new_plugin",
        "Generate a plugin package (tool, options, state, hook, tests, CI) from lash's template.",
    ),
    "run": (
        "lash.cli._run_cmds",
        "Run one turn of PROMPT in a session, streaming the answer and tool activity.",
    ),
    "sessions": (
        "lash.cli._sessions_cmds",
        "List, show, export and delete the sessions of the configured store.",
    ),
}


class LashGroup(click.Group):
    """The root group: the builtin commands, plus the commands plugins add (``register_commands``).

    Plugin commands depend on the config (``--config``), so they are resolved per invocation, after
    the group's own options are parsed, and only when needed: a builtin command is found without
    importing any plugin, so a broken plugin never breaks ``lash plugins`` or ``lash doctor``.
    They are never added to this group object, which stays the same across invocations.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS, *plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = LAZY_COMMANDS.get(cmd_name)
        if lazy is not None and cmd_name not in self.commands:
            importlib.import_module(lazy[0])  # the module registers its command on `cli`
        command = super().get_command(ctx, cmd_name)
        if command is None:
            contributed = plugin_commands(ctx).get(cmd_name)
            command = contributed.command if contributed is not None else None
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own, except that lazy builtin commands not yet imported show their table help.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names), default=0)
        rows = []
        for name in names:
            lazy = LAZY_COMMANDS.get(name)
            if lazy is not None and name not in self.commands:
                # A stand-in command shortens the help exactly as click does.
                rows.append((name, click.Command(name, help=lazy[1]).get_short_help_str(limit)))
                continue
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def load_config(ctx: click.Context) -> HostConfig:
    """The host config for this invocation (``--config``, ``$LASH_CONFIG`` or discovery); cached.

    :raises ConfigError: when the config cannot be read or is invalid.
    """
    root = ctx.find_root()
    cached = root.meta.get(_CONFIG_KEY)
    if isinstance(cached, HostConfig):
        return cached
    config = HostConfig.load(root.params.get("config_path"))
    root.meta[_CONFIG_KEY] = config
    return config


def config_or_exit(ctx: click.Context) -> HostConfig:
    """Like :func:`load_config`, but a config error ends the command with a clear message."""
    try:
        return load_config(ctx)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def builtin_command_names(ctx: click.Context) -> set[str]:
    """Names of the commands lash itself provides (plugins may not take them)."""
    group = ctx.find_root().command
    return {*group.commands, *LAZY_COMMANDS} if isinstance(group, click.Group) else set()


def get_inspection(ctx: click.Context, config: HostConfig) -> Inspection:
    """Inspect the plugins of ``config`` once per invocation (commands share the result).

    :raises LashError: when a plugin calls ``sys.exit()`` while it is imported.
    """
    root = ctx.find_root()
    cached = root.meta.get(_INSPECTION_KEY)
    if isinstance(cached, Inspection) and cached.config is config:
        return cached
    # Whatever plugins print while they are imported or register goes to stderr: stdout belongs
    # to the command (`lash plugins --json` must stay parseable).
    try:
        with contextlib.redirect_stdout(sys.stderr):
            inspection = inspect_plugins(config, reserved_commands=builtin_command_names(ctx))
    except SystemExit as exc:
        # Loading isolates exceptions, not sys.exit() at import time: report it as an error, with
        # where it was called, instead of ending `lash plugins` silently with its status.
        raise LashError(
            f"a plugin ended the process while plugins were loading (SystemExit: {exc.code!r}"
            f"{_where(exc)}); fix or uninstall that plugin"
        ) from None
    root.meta[_INSPECTION_KEY] = inspection
    return inspection


def _where(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def plugin_commands(ctx: click.Context) -> dict[str, PluginCommand]:
    """The commands plugins add, by name; problems with them are warned about once, on stderr."""
    root = ctx.find_root()
    cached = root.meta.get(_COMMANDS_KEY)
    if isinstance(cached, dict):
        return cached
    commands: dict[str, PluginCommand] = {}
    root.meta[_COMMANDS_KEY] = commands  # cached before the work: a failure is not retried
    try:
        config = load_config(ctx)
    except ConfigError as exc:
        # Only reached for --help or a command lash does not provide: say why none is there.
        warn(f"plugin commands are unavailable: {exc}")
        return commands
    try:
        inspection = get_inspection(ctx, config)
    except Exception as exc:  # whatever goes wrong, the builtin commands must keep working
        warn(f"plugin commands are unavailable: {type(exc).__name__}: {exc}")
        return commands
    for problem in inspection.problems:
        if problem.hook == "register_commands":
            warn(problem.message)
    commands.update(inspection.commands)
    return commands


@click.group(cls=LashGroup)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    # Eager, so `lash --config X --help` lists the commands of the plugins X enables.
    is_eager=True,
    help="Config file (lash.toml or pyproject.toml); default: $LASH_CONFIG or the nearest one.",
)
@click.version_option(package_name="lash-sdk")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """lash: durable LLM-agent hosts built from plugins."""
    # https://no-color.org: a non-empty NO_COLOR turns styling off, even in a terminal (click
    # already leaves it out when the output is not a terminal). Subcommands inherit `color`.
    if os.environ.get("NO_COLOR"):
        ctx.color = False


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return cli.main(args=argv, prog_name="lash")
    except LashError as exc:  # commands convert their own errors; this is the last resort
        raise SystemExit(f"error: {exc}") from None


# The builtin commands register themselves on `cli` when imported.
from lash.cli import _inspect_cmds as _inspect_cmds  # noqa: E402 - registration import
