"""``lash plugins`` and ``lash doctor``: what is installed, and whether it is healthy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from lash._plugins.hostconfig import (
    ENV_CONFIG,
    ENV_DISABLE_AUTOLOAD,
    ENV_PLUGINS,
    ENV_STRICT,
    find_config_file,
)
from lash._plugins.inspection import CONTRIBUTION_KEYS, Inspection
from lash.cli._context import config_or_exit, get_inspection, load_config
from lash.errors import ConfigError, LashError
from lash.hookspecs import SHAPES

_ENV_VARS = (ENV_CONFIG, ENV_PLUGINS, ENV_DISABLE_AUTOLOAD, ENV_STRICT)


def _indented(text: str, prefix: str) -> str:
    # Multi-line messages (a list of bad fields) keep their shape under a bullet.
    first, *rest = text.splitlines() or [""]
    pad = " " * len(prefix)
    return "\n".join([prefix + first, *(pad + line.strip() for line in rest)])


def _check_hook(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value in SHAPES:
        return value
    import difflib  # only for error messages

    close = difflib.get_close_matches(value, list(SHAPES), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f" (hooks: {', '.join(sorted(SHAPES))})"
    raise click.BadParameter(f"{value!r} is not a lash hook{hint}", ctx, param)


def _label(entry: dict[str, Any]) -> str:
    version = f" {entry['version']}" if entry["version"] else ""
    dist = f" ({entry['distribution']})" if entry["distribution"] else ""
    return f"{entry['name']}{version}{dist}"


def _format_entry(entry: dict[str, Any]) -> list[str]:
    lines = [f"{_label(entry)}: {entry['status']}{' (builtin)' if entry['builtin'] else ''}"]
    if entry["description"]:
        lines.append(f"  {entry['description']}")
    if entry["error"]:
        lines.append(_indented(entry["error"], "  error: "))
    for warning in entry["warnings"]:
        lines.append(_indented(warning, "  warning: "))
    if entry["hooks"]:
        lines.append(f"  hooks: {', '.join(entry['hooks'])}")
    for key in (*CONTRIBUTION_KEYS.values(), "commands"):
        if entry.get(key):
            # Operations are objects (with their schemas): listed by name, kind and session rule.
            names = (
                [f"{o['name']} ({o['kind']}, session {o['session']})" for o in entry[key]]
                if key == "operations"
                else entry[key]
            )
            lines.append(f"  {key.replace('_', ' ')}: {', '.join(names)}")
    for word in ("before", "after", "requires"):
        if entry[word]:
            lines.append(f"  {word}: {', '.join(entry[word])}")
    if entry["options"]:
        lines.append("  options:")
        for name, opt in entry["options"].items():
            default = "required" if opt["required"] else f"default {opt['default']!r}"
            value = f", value {opt['value']!r}" if entry["status"] == "loaded" else ""
            secret = ", secret" if opt["secret"] else ""
            lines.append(f"    {name}: {opt['type']} ({default}{value}{secret})")
            if opt["help"]:
                lines.append(f"      {opt['help']}")
    return lines


@click.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the builtin plugins (of lash).")
@click.option(
    "--hook",
    "hook",
    default=None,
    metavar="NAME",
    callback=_check_hook,
    help="Only the plugins implementing this hook.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per plugin.")
@click.pass_context
def plugins_command(ctx: click.Context, show_all: bool, hook: str | None, as_json: bool) -> None:
    """List plugins, loaded or not, and what each contributes.

    Each plugin shows its name, distribution, version, the hooks it implements, its status
    (loaded, failed or disabled), the error when it did not load, and what it contributes: tools,
    providers, protocols, stores, process kinds, session commands, operations, tool sources,
    commands and options (type, default, configured value; secrets as ***). Broken plugins are
    listed, never fatal: see `lash doctor`.

    \b
    JSON keys: name, status, error, distribution, version, module, builtin, description, hooks,
    tools, providers, protocols, stores, process_kinds, session_commands, operations (objects:
    name, plugin, kind, session, description, args_schema, result_schema), tool_sources,
    commands, options (by field name: type, default, required, secret, help, value), before,
    after, requires, warnings.
    """
    inspection = get_inspection(ctx, config_or_exit(ctx))
    entries = [
        inspection.entry(info)
        for info in inspection.infos
        if (show_all or not info.builtin) and (hook is None or hook in info.hooks)
    ]
    if as_json:
        import json  # only for --json

        click.echo(json.dumps(entries, indent=2, default=str))
        return
    if not entries:
        click.echo("no plugins" + ("" if show_all else " (use --all to include the builtins)"))
        return
    for i, entry in enumerate(entries):
        if i:
            click.echo()
        click.echo("\n".join(_format_entry(entry)))


def _config_source(ctx: click.Context) -> str:
    """Where the config comes from, in the order :meth:`HostConfig.load` looks."""
    given = ctx.find_root().params.get("config_path")
    if given is not None:
        return f"{given} (from --config)"
    if os.environ.get(ENV_CONFIG):
        return f"{os.environ[ENV_CONFIG]} (from ${ENV_CONFIG})"
    try:
        found = find_config_file(Path.cwd())
    except ConfigError:
        found = None  # the same error is reported when the config is loaded
    return f"{found} (nearest to the current directory)" if found else "none found (defaults)"


def _settings(inspection: Inspection) -> list[str]:
    config = inspection.config
    plugins = ", ".join(config.plugins) if config.plugins is not None else "all installed"
    lines = [
        f"  strict: {'on' if config.strict else 'off'}; autoload: "
        f"{'on' if config.autoload else 'off'}; plugins: {plugins or 'none'}; "
        f"disable: {', '.join(config.disable) or 'none'}",
        f"  store: {config.store or '-'}; provider: {config.provider or '-'}; "
        f"model: {config.model or '-'}",
    ]
    env = [f"{name}={os.environ[name]}" for name in _ENV_VARS if name in os.environ]
    if env:
        lines.append(f"  environment: {' '.join(env)}")
    return lines


_MARKS = {"loaded": "ok", "failed": "FAILED", "disabled": "disabled"}


def _provider_problems(inspection: Inspection) -> tuple[list[str], list[str]]:
    """Problems and notes about the provider a turn would use (an unknown configured provider
    is already one of the inspection's problems)."""
    config = inspection.config
    providers = sorted(inspection.registry.of("provider"))
    if config.provider is not None:
        return [], []
    if len(providers) > 1:
        where = f"in {config.path}" if config.path else "in lash.toml"
        return [
            f"no provider configured, and {len(providers)} are registered "
            f'({", ".join(providers)}): a turn cannot choose one; set `provider = "NAME"` '
            f"{where}, or pass --provider to `lash run`"
        ], []
    if not providers:
        # Not a problem: a host may use tools, stores or processes without calling a model.
        return [], ["no enabled plugin registers a provider: sessions cannot call a model"]
    return [], []


def _online_check(inspection: Inspection) -> tuple[str, list[str]]:
    """One cheap request to the provider a turn would use: the line to print, and the problem
    it found (if any). A provider takes part with an ``async check(model) -> str`` method."""
    import asyncio  # only for --online

    from lash._kernel.core import DEFAULT_MODEL

    config = inspection.config
    providers = inspection.registry.of("provider")
    name = config.provider if config.provider is not None else None
    if name is None and len(providers) == 1:
        name = next(iter(providers))
    if name is None or name not in providers:
        return "online: skipped, no provider to check (see the problems)", []
    model = config.model or DEFAULT_MODEL
    label = f"online: provider {name!r}, model {model!r}" + (
        "" if config.model else " (no model configured: the default)"
    )
    provider = providers[name].value
    check = getattr(provider, "check", None)
    if check is None:
        return f"{label}: not checked, the provider has no check method", []

    async def run() -> str:
        try:
            return str(await check(model))
        finally:
            closer = getattr(provider, "aclose", None)
            if closer is not None:
                await closer()  # on this loop, which ends with the check

    try:
        return f"{label}: ok, {asyncio.run(run())}", []
    except LashError as exc:
        return f"{label}: FAILED", [f"online check: {exc}"]
    except Exception as exc:  # a provider's bug must not hide the rest of the report
        return f"{label}: FAILED", [
            f"online check: provider {name!r} raised {type(exc).__name__}: {exc}"
        ]


@click.command("doctor")
@click.option(
    "--online",
    is_flag=True,
    help="Also make one cheap request to the provider (is its URL, key and model right?).",
)
@click.pass_context
def doctor_command(ctx: click.Context, online: bool) -> None:
    """Check the config, plugin loading, hook names and options; exit 0 only when healthy.

    Every problem is reported (a broken plugin does not hide the others), then a verdict; with
    strict mode on (`strict = true` or LASH_STRICT_PLUGINS=1), a host would refuse to start.
    With --online, the provider a turn would use is asked whether its URL, key and model work
    (the `openai` provider lists the server's models: no tokens are spent).
    """
    click.echo(f"config: {_config_source(ctx)}")
    try:
        config = load_config(ctx)
    except ConfigError as exc:
        click.echo(_indented(str(exc), "  error: "))
        click.echo("unhealthy: the configuration cannot be used; fix it, then run `lash doctor`")
        ctx.exit(1)
    try:
        inspection = get_inspection(ctx, config)
    except LashError as exc:  # inspection isolates plugin failures; this is a last resort
        click.echo(_indented(str(exc), "error: "))
        click.echo("unhealthy: plugins could not be inspected")
        ctx.exit(1)
    for line in _settings(inspection):
        click.echo(line)

    counts = dict.fromkeys(_MARKS, 0)
    for info in inspection.infos:
        counts[info.status] += 1
    click.echo("plugins: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for info in inspection.infos:
        entry = inspection.entry(info)
        line = f"  {_MARKS[info.status]:<8}  {_label(entry)}{' [builtin]' if info.builtin else ''}"
        if info.status == "disabled" and info.error:
            line += f": {info.error}"  # why, in a few words; disabled is not a problem
        click.echo(line)

    problems = [problem.message for problem in inspection.problems]
    more_problems, notes = _provider_problems(inspection)
    problems += more_problems
    if online:
        line, failures = _online_check(inspection)
        click.echo(line)
        problems += failures
    for note in [*inspection.notes, *notes]:
        click.echo(_indented(note, "note: "))
    if not problems:
        click.echo("healthy")
        return
    n = len(problems)
    click.echo(f"problems ({n}):")
    for message in problems:
        click.echo(_indented(message, "  - "))
    if config.strict:
        verdict = "strict mode is on: a host would refuse to start"
    else:
        verdict = "strict mode is off: a host would skip the plugins that fail to load"
    click.echo(f"unhealthy: {n} problem{'s' if n != 1 else ''}; {verdict}")
    ctx.exit(1)


__all__ = ["doctor_command", "plugins_command"]
