"""``sqlite://`` URLs: the database file (or ``:memory:``) and the connection settings.

The URL forms are documented in :mod:`lash_plugins_builtin.sqlite`.
"""

from __future__ import annotations

import math
import urllib.parse
from typing import Any

import attrs

import lash

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "DEFAULT_EVENTS_KEPT",
    "DEFAULT_EVENTS_MAX_AGE",
    "MEMORY",
    "MODES",
    "SYNCHRONOUS",
    "SQLiteSettings",
    "check_events_kept",
    "check_events_max_age",
    "check_mode",
    "parse_url",
]

SCHEME = "sqlite"
MEMORY = ":memory:"
#: ``PRAGMA synchronous`` levels accepted in URLs (OFF risks corruption on a power loss).
SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
DEFAULT_SYNCHRONOUS = "NORMAL"
DEFAULT_BUSY_TIMEOUT = 5000
#: What the store may do to the file, in SQLite's words: ``rwc`` read, write and create it (and
#: its directory, with ``create_dirs``); ``rw`` read and write a database that exists already;
#: ``ro`` only read one (no lease, no commit, no migration).
MODES = ("ro", "rw", "rwc")
DEFAULT_MODE = "rwc"
#: The event log's replay window: a session keeps its newest ``events_kept`` events, none older
#: than ``events_max_age`` seconds (the memory store's defaults).
DEFAULT_EVENTS_KEPT = 10_000
DEFAULT_EVENTS_MAX_AGE = 7 * 24 * 3600.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_URL_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite://:memory:, "
    "optionally followed by ?synchronous=NORMAL|FULL&busy_timeout=MS&create_dirs=1&mode=rwc|rw|ro"
    "&events_kept=N&events_max_age=SECONDS"
)


@attrs.frozen
class SQLiteSettings:
    """What a ``sqlite://`` URL says: the file (or ``:memory:``) and connection settings."""

    path: str
    synchronous: str = DEFAULT_SYNCHRONOUS
    busy_timeout: int = DEFAULT_BUSY_TIMEOUT
    create_dirs: bool = False
    mode: str = DEFAULT_MODE
    events_kept: int = DEFAULT_EVENTS_KEPT
    events_max_age: float = DEFAULT_EVENTS_MAX_AGE


def check_mode(mode: str, path: str, *, url: str | None = None) -> str:
    """``mode`` checked (one of :data:`MODES`) for the database at ``path``.

    :raises lash.ConfigError: for another value, or a mode that needs an existing database with
        ``:memory:`` (always a new one).
    """
    where = f"bad sqlite URL {url!r}: " if url is not None else ""
    if mode not in MODES:
        raise lash.ConfigError(
            f"{where}mode={mode!r}; use rwc (read, write, create: the default), rw (an existing "
            "database, read and written) or ro (an existing database, only read)"
        )
    if path == MEMORY and mode != DEFAULT_MODE:
        raise lash.ConfigError(
            f"{where}mode={mode} opens an existing database, and a :memory: database is always "
            "a new one; leave mode out"
        )
    return mode


def check_events_kept(value: Any, *, url: str | None = None) -> int:
    """``events_kept`` checked: a whole number of events, at least 1.

    :raises lash.ConfigError: for anything else.
    """
    where = f"bad sqlite URL {url!r}: " if url is not None else ""
    try:
        kept = int(value)
        if isinstance(value, bool) or kept < 1 or (isinstance(value, float) and kept != value):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise lash.ConfigError(
            f"{where}events_kept={value!r} is not a number of events of at least 1 (each "
            "session keeps its newest events_kept events for observers; default "
            f"{DEFAULT_EVENTS_KEPT})"
        ) from None
    return kept


def check_events_max_age(value: Any, *, url: str | None = None) -> float:
    """``events_max_age`` checked: a finite number of seconds, more than 0.

    :raises lash.ConfigError: for anything else.
    """
    where = f"bad sqlite URL {url!r}: " if url is not None else ""
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        seconds = float(value)
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise lash.ConfigError(
            f"{where}events_max_age={value!r} is not a number of seconds above 0 (each "
            "session keeps no event older than that for observers; default "
            f"{DEFAULT_EVENTS_MAX_AGE:.0f}, 7 days)"
        ) from None
    return seconds


def parse_url(url: str) -> SQLiteSettings:
    """Read a ``sqlite://`` URL (see the module docs); a relative path stays relative.

    :raises lash.ConfigError: for any other shape, an unknown parameter or a bad value.
    """
    prefix = f"{SCHEME}://"
    if not url.startswith(prefix):
        raise lash.ConfigError(f"not a sqlite URL: {url!r}; use {_URL_FORMS}")
    rest, _, query = url[len(prefix) :].partition("?")
    if rest in (MEMORY, "/" + MEMORY):
        path = MEMORY
    elif rest.startswith("/") and len(rest) > 1:
        # "/rel/x.db" -> "rel/x.db"; "//abs/x.db" -> "/abs/x.db".
        path = urllib.parse.unquote(rest[1:])
    else:
        raise lash.ConfigError(f"bad sqlite URL {url!r}: use {_URL_FORMS}")
    values: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if key == "synchronous":
            level = value.strip().upper()
            if level not in SYNCHRONOUS:
                raise lash.ConfigError(
                    f"bad sqlite URL {url!r}: synchronous={value!r}; use one of "
                    f"{', '.join(SYNCHRONOUS)} (NORMAL: durable against crashes of the process; "
                    "FULL: against power loss too)"
                )
            values["synchronous"] = level
        elif key == "busy_timeout":
            try:
                values["busy_timeout"] = int(value)
                if values["busy_timeout"] < 0:
                    raise ValueError(value)
            except ValueError:
                raise lash.ConfigError(
                    f"bad sqlite URL {url!r}: busy_timeout={value!r} is not a number of "
                    "milliseconds (e.g. busy_timeout=5000)"
                ) from None
        elif key == "create_dirs":
            word = value.strip().lower()
            if word not in _TRUE | _FALSE:
                raise lash.ConfigError(
                    f"bad sqlite URL {url!r}: create_dirs={value!r}; use create_dirs=1 or 0"
                )
            values["create_dirs"] = word in _TRUE
        elif key == "mode":
            values["mode"] = check_mode(value.strip().lower(), path, url=url)
        elif key == "events_kept":
            values["events_kept"] = check_events_kept(value.strip(), url=url)
        elif key == "events_max_age":
            values["events_max_age"] = check_events_max_age(value.strip(), url=url)
        else:
            raise lash.ConfigError(
                f"bad sqlite URL {url!r}: unknown parameter {key!r} "
                "(known: busy_timeout, create_dirs, events_kept, events_max_age, mode, "
                "synchronous)"
            )
    return SQLiteSettings(path, **values)
