"""``postgresql://`` URLs: where the server is, how big the pool is, and how to hide the password.

The URL forms and options are documented in :mod:`lash_plugins_builtin.postgres`.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Mapping

import attrs

import lash

__all__ = ["PostgresSettings", "parse_url"]

SCHEMES = ("postgresql", "postgres")
DEFAULT_POOL_SIZE = 10
DEFAULT_POOL_MIN = 1
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_STATEMENT_TIMEOUT = 30_000
#: The replay window of each session's event log: the newest events, younger than this.
DEFAULT_EVENTS_KEPT = 10_000
DEFAULT_EVENTS_MAX_AGE = 7 * 24 * 3600.0
#: Shown in place of a password (in ``repr``, errors and logs).
MASK = "***"

_URL_FORM = (
    "postgresql://USER:PASSWORD@HOST:PORT/DATABASE, optionally followed by "
    "?pool_size=N&pool_min=N&connect_timeout=SECONDS&statement_timeout=MS&events_kept=N"
    "&events_max_age=SECONDS&notify=on|off&durable_leases=on|off"
)
#: Parameters lash reads itself; any other is passed on to asyncpg (libpq's ``sslmode``...,
#: or a server setting such as ``search_path``).
_OWN = (
    "connect_timeout",
    "durable_leases",
    "events_kept",
    "events_max_age",
    "notify",
    "pool_min",
    "pool_size",
    "statement_timeout",
)
#: libpq's (and asyncpg's) environment variable for ``target_session_attrs``.
_TARGET_ENV = "PGTARGETSESSIONATTRS"
_BOOLEANS = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


@attrs.frozen
class PostgresSettings:
    """What a ``postgresql://`` URL says. ``dsn`` (what asyncpg connects with) holds the
    password, so neither it nor ``secrets`` appears in ``repr``: ``url`` is the URL with the
    password masked."""

    url: str
    dsn: str = attrs.field(repr=False)
    secrets: tuple[str, ...] = attrs.field(repr=False, default=())
    pool_size: int = DEFAULT_POOL_SIZE
    pool_min: int = DEFAULT_POOL_MIN
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    statement_timeout: int = DEFAULT_STATEMENT_TIMEOUT
    events_kept: int = DEFAULT_EVENTS_KEPT
    events_max_age: float = DEFAULT_EVENTS_MAX_AGE
    notify: bool = True
    durable_leases: bool = False
    #: Where the server is, for messages: ``host:port/database`` (``?`` for what the URL leaves
    #: to libpq's defaults).
    target: str = "?"

    def scrub(self, text: str) -> str:
        """``text`` with every secret of the URL masked (for error messages)."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def parse_url(url: str) -> PostgresSettings:
    """Read a ``postgresql://`` (or ``postgres://``) URL; see the module docs.

    :raises lash.ConfigError: for another shape, a bad value of a lash parameter, or a pool
        whose minimum exceeds its size. The message shows the URL with its password masked.
    """
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise lash.ConfigError(f"not a postgresql URL: {_masked_any(url)!r}; use {_URL_FORM}")
    parts = urllib.parse.urlsplit(url)
    secrets = _secrets_of(parts)
    masked = _mask(parts, secrets)

    def bad(message: str) -> lash.ConfigError:
        return lash.ConfigError(f"bad postgresql URL {masked!r}: {message}")

    hosts = _hosts(parts.netloc.rpartition("@")[2], bad)
    if parts.fragment:
        raise bad("a URL fragment ('#...') means nothing here; remove it")
    own: dict[str, str] = {}
    passed: list[tuple[str, str]] = []
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in _OWN:
            own[key] = value
        else:
            passed.append((key, value))
    pool_size = _integer(own, "pool_size", DEFAULT_POOL_SIZE, minimum=1, bad=bad)
    pool_min = _integer(own, "pool_min", DEFAULT_POOL_MIN, minimum=0, bad=bad)
    if pool_min > pool_size:
        raise bad(f"pool_min={pool_min} is more than pool_size={pool_size}; lower pool_min")
    statement_timeout = _integer(
        own, "statement_timeout", DEFAULT_STATEMENT_TIMEOUT, minimum=0, bad=bad
    )
    connect_timeout = _seconds(own, "connect_timeout", DEFAULT_CONNECT_TIMEOUT, bad=bad)
    events_kept = _integer(own, "events_kept", DEFAULT_EVENTS_KEPT, minimum=1, bad=bad)
    events_max_age = _seconds(own, "events_max_age", DEFAULT_EVENTS_MAX_AGE, bad=bad)
    notify = _boolean(own, "notify", True, bad=bad)
    durable_leases = _boolean(own, "durable_leases", False, bad=bad)
    if not any(key == "application_name" for key, _ in passed):
        passed.append(("application_name", "lash"))  # what pg_stat_activity shows
    given = {key for key, _ in passed}
    # The hosts asyncpg (as libpq) connects to: the URL's host part, else its host= parameter,
    # else the environment's PGHOST.
    named = next((value for key, value in passed if key == "host" and value), "")
    elsewhere = named or ("" if hosts else os.environ.get("PGHOST", ""))
    several = len(hosts) > 1 or "," in elsewhere
    if several and "target_session_attrs" not in given and not os.environ.get(_TARGET_ENV):
        # Several hosts are a primary and its standbys: asyncpg, as libpq, takes the first that
        # answers (``any``), which after a failover may be a standby, where every write fails.
        # lash writes: the first that takes writes. (Set in the URL or the environment, the
        # user's choice stands.)
        passed.append(("target_session_attrs", "read-write"))
    # asyncpg reads the rest; it knows postgresql:// only.
    dsn = urllib.parse.urlunsplit(
        ("postgresql", parts.netloc, parts.path, urllib.parse.urlencode(passed), "")
    )
    database = urllib.parse.unquote(parts.path.lstrip("/")) or "?"
    return PostgresSettings(
        url=masked,
        dsn=dsn,
        secrets=secrets,
        pool_size=pool_size,
        pool_min=pool_min,
        connect_timeout=connect_timeout,
        statement_timeout=statement_timeout,
        events_kept=events_kept,
        events_max_age=events_max_age,
        notify=notify,
        durable_leases=durable_leases,
        target=f"{','.join(hosts) or '?:5432'}/{database}",
    )


def _hosts(hostlist: str, bad: Callable[[str], lash.ConfigError]) -> list[str]:
    """The ``HOST:PORT`` of each host of the URL (the port 5432 when it has none), for
    messages; a port that is not a number is refused.

    libpq's URLs may list several hosts, ``HOST:PORT,HOST:PORT`` (a primary and its standbys,
    tried in order; ``target_session_attrs=read-write``, lash's default then, picks the
    writable one), which asyncpg reads as libpq does: the URL goes to it as written. An IPv6
    address is in brackets."""
    hosts = []
    for item in hostlist.split(",") if hostlist else []:
        if item.startswith("["):
            address, bracket, rest = item.partition("]")
            host = address + bracket
            if rest and not rest.startswith(":"):
                raise bad(f"host {item!r} has text after its address; use [ADDRESS]:PORT")
            port = rest[1:]
        else:
            host, _, port = item.partition(":")
        if port and not (port.isascii() and port.isdigit() and int(port) <= 65535):
            what = f"the port of host {item!r}" if "," in hostlist else "the port"
            raise bad(f"{what} is not a number; use {_URL_FORM}")
        hosts.append(f"{urllib.parse.unquote(host) or '?'}:{port or 5432}")
    return hosts


def _integer(
    own: Mapping[str, str],
    key: str,
    default: int,
    *,
    minimum: int,
    bad: Callable[[str], lash.ConfigError],
) -> int:
    if key not in own:
        return default
    try:
        value = int(own[key])
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise bad(f"{key}={own[key]!r} is not a whole number >= {minimum}")
    return value


def _seconds(
    own: Mapping[str, str], key: str, default: float, *, bad: Callable[[str], lash.ConfigError]
) -> float:
    if key not in own:
        return default
    try:
        value = float(own[key])
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise bad(f"{key}={own[key]!r} is not a positive number of seconds (e.g. {key}=10)")
    return value


def _boolean(
    own: Mapping[str, str], key: str, default: bool, *, bad: Callable[[str], lash.ConfigError]
) -> bool:
    if key not in own:
        return default
    value = _BOOLEANS.get(own[key].lower())
    if value is None:
        raise bad(f"{key}={own[key]!r} is not on or off")
    return value


def _secrets_of(parts: urllib.parse.SplitResult) -> tuple[str, ...]:
    """The password of the URL in every form it may be written or shown in (longest first, so
    that masking the longer form does not leave part of it)."""
    found: set[str] = set()
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc_password = userinfo.partition(":")[2] if at else ""
    if netloc_password:
        found.update({netloc_password, urllib.parse.unquote(netloc_password)})
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in ("password", "sslpassword") and value:
            found.update(
                {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
            )
    return tuple(sorted(found, key=len, reverse=True))


def _mask(parts: urllib.parse.SplitResult, secrets: tuple[str, ...]) -> str:
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostport}"
    query = urllib.parse.urlencode(
        [
            (key, MASK if key in ("password", "sslpassword") and value else value)
            for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    masked = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    for secret in secrets:  # belt and braces: a password that also appears elsewhere
        masked = masked.replace(secret, MASK)
    return masked


def _masked_any(url: str) -> str:
    """Mask what looks like a password in a string that is not even a postgresql URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        return _mask(parts, _secrets_of(parts))
    except ValueError:
        return "<unparseable URL>"
