"""``sqlite://`` URLs: the database file (or ``:memory:``) and the connection settings.

The URL forms are documented in :mod:`lash_plugins_builtin.sqlite`.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import attrs

import lash

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "MEMORY",
    "MODES",
    "SYNCHRONOUS",
    "SQLiteSettings",
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

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_URL_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite://:memory:, "
    "optionally followed by ?synchronous=NORMAL|FULL&busy_timeout=MS&create_dirs=1&mode=rwc|rw|ro"
)


@attrs.frozen
class SQLiteSettings:
    """What a ``sqlite://`` URL says: the file (or ``:memory:``) and connection settings."""

    path: str
    synchronous: str = DEFAULT_SYNCHRONOUS
    busy_timeout: int = DEFAULT_BUSY_TIMEOUT
    create_dirs: bool = False
    mode: str = DEFAULT_MODE


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
        else:
            raise lash.ConfigError(
                f"bad sqlite URL {url!r}: unknown parameter {key!r} "
                "(known: busy_timeout, create_dirs, mode, synchronous)"
            )
    return SQLiteSettings(path, **values)
