"""What the ``lash sessions`` commands share: opening the configured store (without creating
it, for the commands that only read or change what is there), and the formats of times, JSON
and tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import signal
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

import attrs
import click

from lash._kernel.core import LashCore, store_url
from lash._store.protocol import Store
from lash.cli._context import config_or_exit, store_origin, warn
from lash.errors import ConfigError, LashError, UnknownSession

T = TypeVar("T")

# -- store access ----------------------------------------------------------------------------


def display_url(url: str) -> str:
    """The store URL as messages show it: a password in it is replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def configured_url(ctx: click.Context) -> str:
    """The configured store URL, as messages show it."""
    return display_url(store_url(config_or_exit(ctx)))


#: What `lash sessions` says when no store is configured and the default one does not exist.
NO_SESSIONS_YET = (
    "no sessions yet: the default store {path} does not exist "
    "(`lash run PROMPT --session ID` creates it)"
)

#: SQLite's modes, from the most restrictive (see ``lash_plugins_builtin._sqlite_url.MODES``).
_SQLITE_MODES = ("ro", "rw", "rwc")


def without_creating(url: str, mode: str) -> str:
    """``url`` opened in SQLite ``mode`` (``ro`` or ``rw``: the database must exist, and nothing
    is created, ``create_dirs`` is dropped), or in the URL's own mode if that is stricter. URLs
    of other schemes are returned as they are: their backends decide what opening creates.
    """
    base, _, query = url.partition("?")
    if not base.startswith("sqlite://") or base.endswith(":memory:"):
        return url
    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    own = [value.strip().lower() for key, value in params if key == "mode"]
    if own and own[-1] not in _SQLITE_MODES:
        return url  # as configured: the store says what is wrong with it
    if own:
        mode = min(mode, own[-1], key=_SQLITE_MODES.index)
    kept = [(key, value) for key, value in params if key not in ("mode", "create_dirs")]
    return f"{base}?{urllib.parse.urlencode([*kept, ('mode', mode)])}"


def run_on_core(
    ctx: click.Context,
    action: Callable[[LashCore], Awaitable[T]],
    *,
    mode: str | None = "ro",
    if_no_default_store: Callable[[str], T] | None = None,
) -> T:
    """Build the host from the config, open its store, return ``await action(core)``.

    With a ``mode``, the store is never created: a SQLite store is opened in that mode (``ro``
    to read, ``rw`` to change what is there); ``mode=None`` opens it as configured, as ``lash
    run`` does (the commands that queue or run work may create it).
    ``if_no_default_store(path)`` gives the result when no store is configured and the default
    database does not exist yet (otherwise that is an error naming the path, as for a
    configured one). Every lash error ends the command with one line (exit 1); the store is
    closed in any case.
    """
    config = config_or_exit(ctx)
    url = configured_url(ctx)
    if url.split(":", 1)[0] == "memory":
        # An empty listing from memory:// would otherwise look like lost sessions.
        warn(
            f"the store is {url} (in process memory): sessions do not outlive the process that "
            'ran them; configure a durable store in lash.toml (store = "sqlite:///path/lash.db")'
        )
    configured = store_url(config)
    opened = (
        config if mode is None else attrs.evolve(config, store=without_creating(configured, mode))
    )

    async def go() -> T:
        try:
            # Plugins may print while they load: stdout carries JSON and exports.
            with contextlib.redirect_stdout(sys.stderr):
                core = LashCore(config=opened)
        except LashError as exc:
            raise click.ClickException(
                f"cannot open the store: the host cannot be built from the config: {exc}"
            ) from None
        async with core:
            try:
                _ = core.store  # built now, so that its errors are reported as such
            except LashError as exc:  # unknown scheme, or a URL its backend rejects
                # Quoted as configured, without the mode added here.
                message = str(exc).replace(repr(opened.store), repr(configured))
                raise click.ClickException(message) from None
            except Exception as exc:  # a third-party backend may raise anything
                raise click.ClickException(
                    f"cannot open store {url!r}: {type(exc).__name__}: {exc}"
                ) from None
            return await action(core)

    try:
        return asyncio.run(go())
    except UnknownSession as exc:
        raise click.ClickException(
            f"no session {exc.session_id!r} in store {url!r}; "
            "`lash sessions list` shows the sessions it holds"
        ) from None
    except ConfigError as exc:
        if exc.path is None or os.path.exists(exc.path):
            raise click.ClickException(str(exc)) from None
        # The store refused to open a database that is not there (mode ro or rw).
        if config.store is not None:
            origin = store_origin(ctx)
            if origin is not None:
                where = f" {'given with' if origin == '--store' else 'in'} {origin}"
            else:
                where = f" in {config.path}" if config.path else ""
            raise click.ClickException(
                f"the configured store {url!r} points at {exc.path}, which does not exist; "
                f"`lash sessions` never creates a store: check the store URL{where}, or run a "
                "session first (`lash run PROMPT --session ID` creates the store)"
            ) from None
        if if_no_default_store is not None:
            return if_no_default_store(exc.path)
        raise click.ClickException(NO_SESSIONS_YET.format(path=exc.path)) from None
    except LashError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def on_signals(handler: Any, *signals: signal.Signals) -> Iterator[None]:
    """While the block runs, ``handler()`` runs on each of ``signals`` (where the running loop
    can: none on Windows's)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in signals:
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError):  # no signal handlers on this loop (Windows)
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_on_store(
    ctx: click.Context,
    action: Callable[[Store], Awaitable[T]],
    *,
    mode: str = "ro",
    if_no_default_store: Callable[[str], T] | None = None,
) -> T:
    """:func:`run_on_core` for an action that needs only the store."""

    async def on_store(core: LashCore) -> T:
        return await action(core.store)

    return run_on_core(ctx, on_store, mode=mode, if_no_default_store=if_no_default_store)


async def session_exists(store: Store, session_id: str) -> bool:
    """Whether the store knows ``session_id``: committed, or with input queued for it (which
    makes a session before its first commit), or with events in its log."""
    if await store.load(session_id) is not None:
        return True
    if await store.list_inputs(session_id, settled=True):
        return True
    page = await store.read_events(session_id, after=0, limit=0)
    return page.last > 0


async def require_session(store: Store, session_id: str) -> None:
    """:raises UnknownSession: when the store does not know ``session_id``."""
    if not await session_exists(store, session_id):
        raise UnknownSession(session_id)


# -- formats ---------------------------------------------------------------------------------


def iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat()


def local(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def dumps(data: Any, **kwargs: Any) -> str:
    # default=str: plugin states and node data are JSON-ready by contract, but a listing must
    # not die on one odd value.
    return json.dumps(data, default=str, **kwargs)


def one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    last = len(header) - 1

    def line(cells: tuple[str, ...]) -> str:
        out = []
        for i, cell in enumerate(cells):
            if i == last:
                out.append(cell)  # no padding after the last column
            else:
                out.append(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    return [line(header), *(line(r) for r in rows)]
