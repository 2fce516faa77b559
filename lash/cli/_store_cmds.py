"""``lash store copy SRC DST``: copy every session of one store URL into another (moving a
SQLite database to Postgres, or back). What a copy carries: lash._store.copying."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import urllib.parse
from typing import Any

import click

from lash._kernel.core import LashCore
from lash._store.copying import CopyReport, Mode, copy_store
from lash.cli._context import config_or_exit
from lash.cli._sessions_common import display_url, without_creating
from lash.errors import LashError


@click.group("store")
def store_group() -> None:
    """Copy every session from one store URL to another (SQLite to Postgres, or back).

    `lash store copy SRC DST`: see its --help.
    """


@store_group.command("copy", short_help="Copy every session from store SRC to store DST.")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--merge",
    is_flag=True,
    help="DST may hold sessions: add the ones it lacks, skip those copied already, redo a "
    "copy that was interrupted; refuse a session of the same id that no copy wrote.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Like --merge, but a session DST holds under a source session's id is deleted and "
    "copied again.",
)
@click.pass_context
def copy_command(ctx: click.Context, src: str, dst: str, merge: bool, force: bool) -> None:
    """Copy every session of store SRC (URL) into store DST (URL), e.g.
    `lash store copy sqlite:///app/.lash/lash.db postgresql://lash@db/lash`.

    Carried: every node of every frame, plugin states, config, usage, parent links, turn
    records, inputs (pending, completed, cancelled), session commands, the event log's replay
    window, and processes. Not carried: leases and claims (a claimed input arrives pending, a
    running process pending, or abandoned if owner-bound), revisions, times and the ids and
    sequence numbers the destination assigns. Stop the workers of SRC first.

    A DST that holds sessions or processes is refused unless --merge or --force. Re-running
    with --merge finishes an interrupted copy. Progress goes to stderr; a summary to stdout.
    SQLite SRC is opened read-only.
    """
    if merge and force:
        raise click.UsageError("--merge and --force exclude each other")
    mode: Mode = "force" if force else "merge" if merge else "refuse"
    config = config_or_exit(ctx)
    try:
        report = asyncio.run(_copy(config, src, dst, mode))
    except LashError as exc:
        raise click.ClickException(_scrub(str(exc), src, dst)) from None
    click.echo(
        f"copied {_count(report.copied, 'session')} ({len(report.replaced)} replaced), skipped "
        f"{len(report.skipped)}; copied {_count(report.processes, 'process')}, skipped "
        f"{len(report.processes_skipped)}"
    )


_PLURAL = {"session": "sessions", "process": "processes"}


def _count(items: tuple[str, ...], noun: str) -> str:
    return f"{len(items)} {noun if len(items) == 1 else _PLURAL[noun]}"


async def _copy(config: Any, src: str, dst: str, mode: Mode) -> CopyReport:
    # A core of the config's plugins: a store scheme a plugin contributes can be copied too.
    with contextlib.redirect_stdout(sys.stderr):
        core = LashCore(config=config)
    async with core:
        source = await _open(core, without_creating(src, "ro"), src, "source")
        try:
            target = await _open(core, dst, dst, "destination")
            try:
                return await copy_store(
                    source,
                    target,
                    mode=mode,
                    progress=lambda line: click.echo(line, err=True),
                    source_name=display_url(src),
                )
            finally:
                await target.close()
        finally:
            await source.close()


async def _open(core: LashCore, url: str, given: str, role: str) -> Any:
    """The store at ``url``, reached once (``list_sessions``) so that an unreachable one is
    reported as such, naming it (without its password)."""
    try:
        store = core.composition.store_factory(url)(url)
    except Exception as exc:
        raise LashError(
            f"cannot open the {role} store {display_url(given)!r}: {_scrub(str(exc), given)}"
        ) from None
    try:
        await store.list_sessions()
    except Exception as exc:
        with contextlib.suppress(Exception):
            await store.close()
        raise LashError(
            f"cannot read the {role} store {display_url(given)!r}: {type(exc).__name__}: "
            f"{_scrub(str(exc), given)}"
        ) from None
    return store


def _scrub(message: str, *urls: str) -> str:
    """``message`` with the passwords of ``urls`` (and the URLs themselves) masked."""
    for url in urls:
        message = message.replace(url, display_url(url))
        with contextlib.suppress(ValueError):
            password = urllib.parse.urlsplit(url).password
            if password:
                message = message.replace(password, "***")
    return message
