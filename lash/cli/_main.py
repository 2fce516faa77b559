"""The root ``lash`` group: global options, and the builtin and plugin commands it finds."""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any

import click

from lash.cli._context import COMMANDS, builtin_command, plugin_commands
from lash.errors import LashError


def terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, the same way (``$COLUMNS`` when positive, else the
    terminal of stdout, else 80), without importing shutil: its archive modules (bz2, lzma) are
    ~2 ms of ``lash --help``, which only needs the width."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        size = os.get_terminal_size(sys.__stdout__.fileno())  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # no stdout, closed, detached, not a terminal
        return 80
    return size.columns or 80


class _HelpFormatter(click.HelpFormatter):
    """click's help formatter, measuring the terminal with :func:`terminal_columns`."""

    def __init__(
        self, indent_increment: int = 2, width: int | None = None, max_width: int | None = None
    ) -> None:
        if width is None and click.formatting.FORCED_WIDTH is None:
            # click's own rule (HelpFormatter.__init__), with the same terminal width.
            width = max(min(terminal_columns(), 80 if max_width is None else max_width) - 2, 50)
        super().__init__(indent_increment, width, max_width)


class _Context(click.Context):
    formatter_class = _HelpFormatter


class LashGroup(click.Group):
    """The root group: the builtin commands, plus the commands plugins add (``register_commands``).

    Plugin commands depend on the config (``--config``), so they are resolved per invocation, after
    the group's own options are parsed, and only when needed: a builtin command is found without
    importing any plugin, so a broken plugin never breaks ``lash plugins`` or ``lash doctor``.
    They are never added to this group object, which stays the same across invocations.
    """

    context_class = _Context

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS, *plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            builtin = builtin_command(cmd_name)  # imported on first use
            if builtin is not None:
                self.add_command(builtin, cmd_name)
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
            lazy = COMMANDS.get(name)
            if lazy is not None and name not in self.commands:
                # A stand-in command shortens the help exactly as click does.
                rows.append((name, click.Command(name, help=lazy[2]).get_short_help_str(limit)))
                continue
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


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
@click.option(
    "--disable",
    "disabled",
    multiple=True,
    metavar="NAME",
    # Eager like --config: plugin commands are looked up with the plugins of this run.
    is_eager=True,
    help="Disable plugin NAME for this run (repeatable; also LASH_DISABLE_PLUGINS=a,b).",
)
@click.version_option(package_name="lash-sdk")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, disabled: tuple[str, ...]) -> None:
    """lash: durable LLM-agent hosts built from plugins."""
    # https://no-color.org: a non-empty NO_COLOR turns styling off, even in a terminal (click
    # already leaves it out when the output is not a terminal). Subcommands inherit `color`.
    if os.environ.get("NO_COLOR"):
        ctx.color = False


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    # What the command line imported (lash, click, pluggy, attrs, cattrs...) lives until the
    # process exits. Frozen, it is left out of every collection, the ones interpreter shutdown
    # runs included: ~10 ms of `lash --help` and `lash plugins` (issue 17). Objects made from
    # here on are collected as usual.
    gc.freeze()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        return cli.main(args=argv, prog_name="lash")
    except LashError as exc:  # commands convert their own errors; this is the last resort
        raise SystemExit(f"error: {exc}") from None
