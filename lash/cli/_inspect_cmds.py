"""``lash plugins`` and ``lash doctor``: what is installed, and whether it is healthy."""

from __future__ import annotations

import json
from typing import Any

import click

from lash._inspect import Inspection, inspect_plugins
from lash.cli._main import cli, config_or_exit


def _inspect(ctx: click.Context) -> Inspection:
    return inspect_plugins(config_or_exit(ctx))


def _format_entry(entry: dict[str, Any]) -> list[str]:
    version = f" {entry['version']}" if entry["version"] else ""
    dist = f" ({entry['distribution']}{version})" if entry["distribution"] else ""
    lines = [f"{entry['name']}{dist}: {entry['status']}"]
    if entry["description"]:
        lines.append(f"  {entry['description']}")
    if entry["error"]:
        lines.append(f"  error: {entry['error']}")
    if entry["hooks"]:
        lines.append(f"  hooks: {', '.join(entry['hooks'])}")
    for kind, names in entry["contributes"].items():
        lines.append(f"  {kind}s: {', '.join(names)}")
    for opt in entry["options"]:
        secret = " (secret)" if opt["secret"] else ""
        lines.append(f"  option {opt['name']}: {opt['type']} = {opt['default']!r}{secret}")
    return lines


@cli.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Include the builtin plugins.")
@click.option("--hook", "hook", default=None, help="Only plugins implementing this hook.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per plugin).")
@click.pass_context
def plugins_command(ctx: click.Context, show_all: bool, hook: str | None, as_json: bool) -> None:
    """List plugins: name, distribution, version, hooks, status, error, contributions."""
    inspection = _inspect(ctx)
    entries = [
        inspection.entry(info)
        for info in inspection.infos
        if (show_all or not info.builtin) and (hook is None or hook in info.hooks)
    ]
    if as_json:
        click.echo(json.dumps(entries, indent=2, default=str))
        return
    if not entries:
        click.echo("no plugins" + (" (use --all to include builtins)" if not show_all else ""))
        return
    for entry in entries:
        for line in _format_entry(entry):
            click.echo(line)


@cli.command("doctor")
@click.pass_context
def doctor_command(ctx: click.Context) -> None:
    """Check config, plugin loading, hook names and options; exit 0 only when healthy."""
    try:
        config = config_or_exit(ctx)
    except click.ClickException as exc:
        click.echo(f"config: error\n  {exc.message}")
        click.echo("unhealthy: 1 problem")
        ctx.exit(1)
    inspection = inspect_plugins(config)
    click.echo(f"config: {config.path or 'none found (defaults)'}")
    click.echo(f"strict: {'on' if config.strict else 'off'}")
    counts = {status: 0 for status in ("loaded", "failed", "disabled")}
    for info in inspection.infos:
        counts[info.status] += 1
    click.echo("plugins: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for info in inspection.infos:
        mark = {"loaded": "ok", "failed": "FAILED", "disabled": "disabled"}[info.status]
        version = f" {info.version}" if info.version else ""
        line = f"  [{mark}] {info.name}{version}"
        if info.error and info.status != "loaded":
            line += f": {info.error}"
        click.echo(line)
    if inspection.problems:
        click.echo("problems:")
        for problem in inspection.problems:
            click.echo(f"  - {problem}")
        n = len(inspection.problems)
        if config.strict:
            click.echo("strict mode: a host would refuse to start with these problems")
        click.echo(f"unhealthy: {n} problem{'s' if n != 1 else ''}")
        ctx.exit(1)
    click.echo("healthy")


__all__ = ["doctor_command", "plugins_command"]
