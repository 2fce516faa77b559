"""What the ``lash`` commands share: the config of this invocation (``--config``, ``--disable``),
the plugin inspection, plugin commands, and the table of the builtin commands. Command modules
import this module, never the root group (lash.cli._main), so the command line has no import
cycle."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import click

from lash._plugins.hostconfig import HostConfig
from lash._plugins.inspection import Inspection, PluginCommand, inspect_plugins
from lash.errors import ConfigError, LashError

_CONFIG_KEY = "lash.config"
_INSPECTION_KEY = "lash.inspection"
_COMMANDS_KEY = "lash.plugin_commands"
_STORE_KEY = "lash.store_override"
#: The store URL for every command of an invocation, instead of the config's (``--store``
#: wins over it).
ENV_STORE = "LASH_STORE"

F = TypeVar("F", bound=Callable[..., Any])


def _override_store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        root = ctx.find_root()
        root.meta[_STORE_KEY] = value
        root.meta.pop(_CONFIG_KEY, None)  # read again, with this store


#: ``--store URL``: the store of this run instead of the configured one.
_STORE_OPTION: dict[str, Any] = {
    "metavar": "URL",
    "default": None,
    "expose_value": False,
    "is_eager": True,
    "callback": _override_store,
    "help": f"Store URL for this run, instead of the config's (also ${ENV_STORE}).",
}


def store_option(command: F) -> F:
    """Give a command the ``--store URL`` option (after its name: ``lash worker --store
    postgresql://...``)."""
    return click.option("--store", **_STORE_OPTION)(command)


def with_store_option(group: click.Group) -> None:
    """Give every command of ``group`` the ``--store`` option."""
    for command in group.commands.values():
        command.params.append(click.Option(["--store"], **_STORE_OPTION))


def warn(message: str) -> None:
    """Print a warning of the command line itself on stderr (stdout may carry JSON)."""
    click.echo(f"lash: warning: {message}", err=True)


#: The builtin commands, imported on first use: name -> (module, command attribute, one-line
#: help). Listing them (``lash --help``) must not import them: most need the session kernel,
#: which ``lash --help`` and ``lash plugins`` do not.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "lash.cli._demo",
        "demo_command",
        "Run an offline demo session (scripted model) and print its transcript.",
    ),
    "doctor": (
        "lash.cli._inspect_cmds",
        "doctor_command",
        "Check the config, plugin loading, hook names and options; exit 0 only when healthy.",
    ),
    "new-plugin": (
        "lash.cli._new_plugin",
        "new_plugin_command",
        "Generate a plugin package (tool, options, state, hook, tests, CI) from lash's template.",
    ),
    "plugins": (
        "lash.cli._inspect_cmds",
        "plugins_command",
        "List plugins, loaded or not, and what each contributes.",
    ),
    "processes": (
        "lash.cli._process_cmds",
        "processes_group",
        "List, show and cancel the background processes of the configured store.",
    ),
    "run": (
        "lash.cli._run_cmds",
        "run_command",
        "Run one turn of PROMPT in a session, streaming the answer and tool activity.",
    ),
    "serve": (
        "lash.cli._serve_cmds",
        "serve_command",
        "Serve the store's sessions over HTTP (API, events, web page).",
    ),
    "sessions": (
        "lash.cli._sessions_cmds",
        "sessions_group",
        "List, show, export and delete sessions; queue input for them, watch and drain them.",
    ),
    "store": (
        "lash.cli._store_cmds",
        "store_group",
        "Copy every session from one store URL to another (SQLite to Postgres, or back).",
    ),
    "worker": (
        "lash.cli._process_cmds",
        "worker_command",
        "Run the background processes of the configured store, and drain its sessions.",
    ),
}


def builtin_command(name: str) -> click.Command | None:
    """The builtin command ``name`` (its module imported now), or None."""
    entry = COMMANDS.get(name)
    if entry is None:
        return None
    import importlib

    module, attribute, _ = entry
    command: click.Command = getattr(importlib.import_module(module), attribute)
    return command


def builtin_command_names(ctx: click.Context | None = None) -> set[str]:
    """Names of the commands lash itself provides (plugins may not take them)."""
    return set(COMMANDS)


def load_config(ctx: click.Context) -> HostConfig:
    """The host config for this invocation (``--config``, ``$LASH_CONFIG`` or discovery, with
    ``--disable`` and ``--store``/``$LASH_STORE`` applied); cached.

    :raises ConfigError: when the config cannot be read or is invalid.
    """
    root = ctx.find_root()
    cached = root.meta.get(_CONFIG_KEY)
    if isinstance(cached, HostConfig):
        return cached
    config = HostConfig.load(root.params.get("config_path"))
    disabled = root.params.get("disabled") or ()
    if disabled:
        # `lash --disable NAME`: one run without that plugin (on top of `disable` and
        # LASH_DISABLE_PLUGINS, like `pytest -p no:NAME`).
        config = attrs.evolve(config, disable=(*config.disable, *disabled))
    store = root.meta.get(_STORE_KEY) or os.environ.get(ENV_STORE)
    if store:
        config = attrs.evolve(config, store=store)
    root.meta[_CONFIG_KEY] = config
    return config


def store_origin(ctx: click.Context) -> str | None:
    """Where this invocation's store URL came from, when not from the config: ``"--store"`` or
    ``"$LASH_STORE"`` (so that an error about the store says what to check)."""
    if ctx.find_root().meta.get(_STORE_KEY):
        return "--store"
    return f"${ENV_STORE}" if os.environ.get(ENV_STORE) else None


def config_or_exit(ctx: click.Context) -> HostConfig:
    """Like :func:`load_config`, but a config error ends the command with a clear message."""
    try:
        return load_config(ctx)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


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
