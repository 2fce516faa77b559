"""``lash worker`` (run background processes and drain sessions) and ``lash processes``
(list, show and cancel the processes of the configured store).

``lash processes`` reads like ``lash sessions``: from the store only, never creating it (a
SQLite store is opened read-only, read-write to cancel). ``lash worker`` builds the whole host
from the config: it runs the process kinds its plugins register, and drains sessions with
their provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import signal
import sys
from typing import Any

import click

from lash._contract.serialization import to_data
from lash._contract.turn_types import ProcessRecord
from lash._kernel.core import LashCore
from lash._store.protocol import Store
from lash.cli._context import config_or_exit, store_option, with_store_option
from lash.cli._sessions_common import run_on_store
from lash.errors import LashError, UnknownProcess

#: Characters of a result or error shown on one line of `lash processes list`.
_PREVIEW = 60


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat()


def _data(record: ProcessRecord) -> dict[str, Any]:
    """A process as ``--json`` prints it: the record's fields, times in ISO 8601 (UTC)."""
    data: dict[str, Any] = to_data(record)
    for key in ("created_at", "started_at", "finished_at", "expires_at"):
        data[key] = _iso(data.get(key))
    return data


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 3] + "..."


def _line(record: ProcessRecord) -> str:
    outcome = ""
    if record.status == "succeeded":
        outcome = f"  {_short(record.result)}"
    elif record.error:
        outcome = f"  {_short(record.error)}"
    session = record.session_id or "-"
    return (
        f"{record.id}  {record.kind}  {record.status}  session={session}  "
        f"attempts={record.attempts}/{record.max_attempts}{outcome}"
    )


@click.group("processes")
def processes_group() -> None:
    """List, show and cancel the background processes of the configured store.

    `lash worker` runs them. These commands need no provider.
    """


@processes_group.command("list")
@click.option("--session", "session_id", default=None, help="Only the processes of session ID.")
@click.option("--kind", default=None, help="Only processes of this kind.")
@click.option("--status", default=None, help="Only processes in this state (pending, running...).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per process.")
@click.pass_context
def list_command(
    ctx: click.Context, session_id: str | None, kind: str | None, status: str | None, as_json: bool
) -> None:
    """List processes, oldest first: id, kind, state, session, attempts, result or error.

    \b
    JSON keys: the fields of lash.ProcessRecord (id, kind, session_id, status, result, error,
    payload, key, recovery, attempts, max_attempts, ...), times in ISO 8601 (UTC).
    """

    async def action(store: Store) -> list[ProcessRecord]:
        return await store.list_processes(session_id=session_id, kind=kind, status=status)

    rows = run_on_store(ctx, action, if_no_default_store=lambda path: [])
    if as_json:
        click.echo(json.dumps([_data(r) for r in rows], indent=2, default=str))
        return
    if not rows:
        click.echo("no processes")
        return
    for row in rows:
        click.echo(_line(row))


@processes_group.command("show", short_help="Print one process: its record and payload.")
@click.argument("process_id")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@click.pass_context
def show_command(ctx: click.Context, process_id: str, as_json: bool) -> None:
    """Print process PROCESS_ID: its state, attempts, payload, result or error, progress."""

    async def action(store: Store) -> ProcessRecord:
        record = await store.get_process(process_id)
        if record is None:
            raise UnknownProcess(process_id)
        return record

    record = _guarded(lambda: run_on_store(ctx, action))
    data = _data(record)
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    for key, value in data.items():
        if value is None or value == "":
            continue
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        click.echo(f"{key}: {shown}")


@processes_group.command("cancel", short_help="Ask a process to stop.")
@click.argument("process_id")
@click.option("--reason", default="cancelled from the command line", help="Why (recorded).")
@click.pass_context
def cancel_command(ctx: click.Context, process_id: str, reason: str) -> None:
    """Ask process PROCESS_ID to stop. A pending one is cancelled at once; a running one when
    its worker next heartbeats (it is recorded cancelled once it stops, or after a grace
    period). Prints the process's state."""
    config = config_or_exit(ctx)

    async def go() -> ProcessRecord:
        with contextlib.redirect_stdout(sys.stderr):
            core = LashCore(config=config)
        async with core:
            return await core.processes.cancel(process_id, reason=reason)

    record = _guarded(lambda: asyncio.run(go()))
    state = record.status
    if not record.finished and record.cancel_requested is not None:
        state += " (cancellation requested)"
    click.echo(f"{record.id}: {state}")


def _guarded(call: Any) -> Any:
    try:
        return call()
    except UnknownProcess as exc:
        raise click.ClickException(str(exc)) from None
    except LashError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("worker")
@store_option
@click.option("--once", is_flag=True, help="Run what is runnable now, then exit.")
@click.option(
    "--concurrency", default=4, show_default=True, type=click.IntRange(min=1), help="Runs at once."
)
@click.option(
    "--lease-ttl",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="How long a claim lasts (heartbeats renew it every third); a dead worker's processes "
    "are taken over after it.",
)
@click.option(
    "--sessions/--no-sessions",
    default=True,
    show_default=True,
    help="Also drain sessions with queued input (finished processes queue theirs).",
)
@click.option(
    "--poll",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    metavar="SECONDS",
    help="Seconds between two store queries while idle.",
)
@click.option("--kind", "kinds", multiple=True, help="Run only this kind (repeatable).")
@click.pass_context
def worker_command(
    ctx: click.Context,
    once: bool,
    concurrency: int,
    lease_ttl: float,
    sessions: bool,
    poll: float,
    kinds: tuple[str, ...],
) -> None:
    """Run the background processes of the configured store, and drain its sessions.

    Runs the process kinds the config's plugins register, under claims with heartbeats: if this
    worker dies, another one takes its processes over once their claims expire (a rerunnable
    one runs again, an owner-bound one is marked abandoned).

    Stop it with Ctrl-C or SIGTERM: it takes no more work, lets the turns it is running finish
    (their sessions' other input stays queued for the next worker), cancels its process runs
    (their claims expire) and exits. Ctrl-C or SIGTERM again cancels the running turns too:
    each is committed as stopped (cancelled).
    """
    config = config_or_exit(ctx)

    async def go() -> None:
        core = LashCore(config=config)
        async with core:
            # Opened now: a store that cannot be opened at start (a wrong URL, a missing
            # directory, no server) is an error, where the worker would log it every poll and
            # never exit. Once running, a store that goes away is retried each poll.
            await core.store.runnable_sessions(limit=1)
            stop = asyncio.Event()
            task = asyncio.ensure_future(
                core.run_worker(
                    concurrency=concurrency,
                    lease_ttl=lease_ttl,
                    sessions=sessions,
                    once=once,
                    kinds=kinds or None,
                    poll=poll,
                    stop=stop,
                )
            )

            def interrupted() -> None:
                # The first signal stops gracefully (a deploy must not cancel a user's turn,
                # which would consume the input unanswered); the next one cancels.
                if stop.is_set():
                    task.cancel()
                    return
                stop.set()
                click.echo(
                    "lash worker: stopping: the running turns finish first (Ctrl-C or SIGTERM "
                    "again to cancel them)",
                    err=True,
                )

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, interrupted)
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(go())
    except LashError as exc:
        raise click.ClickException(str(exc)) from None


with_store_option(processes_group)

__all__ = ["processes_group", "worker_command"]
