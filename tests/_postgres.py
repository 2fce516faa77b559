"""A throwaway PostgreSQL server for the tests (and the Postgres benchmark).

``PostgresServer.start()`` makes a data directory in a new temporary directory, runs ``initdb``
and ``pg_ctl start`` (as the ``postgres`` user when running as root: the server refuses to run
as root), listening on 127.0.0.1 on a free port with its Unix socket in that directory;
``stop()`` stops it and removes the directory. About a second in all. Any failure raises
:class:`PostgresUnavailable` with the reason (and the tail of the server's log).

The server runs with ``fsync`` on, as in production, so WAL flush counts are real, with
``pg_stat_statements`` loaded (statement counts), and without autovacuum (its background work
would blur those counts; no test depends on it). Authentication: ``trust`` for the superuser
``postgres`` and over the socket; every other role logs in over TCP with its password
(SCRAM), so tests can exercise real password checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

#: The oldest server version lash supports (and the tests require).
MIN_VERSION = 15

_INSTALL = "install it (Debian: apt-get install -y postgresql; ./dev does it when it runs as root)"

_HBA = """\
# Written by the lash test suite.
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


class PostgresUnavailable(RuntimeError):
    """The test server could not be found, set up or started; the message says why."""


def find_bindir() -> Path:
    """The directory of the newest PostgreSQL server binaries (``initdb``, ``pg_ctl``)."""
    candidates: list[tuple[int, Path]] = []
    for path in glob.glob("/usr/lib/postgresql/*/bin"):
        version = Path(path).parent.name
        if version.isdigit() and (Path(path) / "initdb").exists():
            candidates.append((int(version), Path(path)))
    on_path = shutil.which("initdb")
    if on_path:
        out = subprocess.run(
            [on_path, "--version"], capture_output=True, text=True, check=False
        ).stdout
        digits = "".join(itertools.takewhile(str.isdigit, out.rsplit(" ", 1)[-1].strip()))
        # Resolved: a symlink on PATH (/usr/local/bin/initdb) leaves the rest of the server's
        # programs (psql, pg_dump) behind.
        candidates.append((int(digits or 0), Path(on_path).resolve().parent))
    if not candidates:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin or on "
            f"PATH; {_INSTALL}"
        )
    version, bindir = max(candidates)
    if version < MIN_VERSION:
        raise PostgresUnavailable(
            f"PostgreSQL {version} at {bindir} is older than {MIN_VERSION}, the oldest lash "
            f"supports; {_INSTALL}"
        )
    return bindir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One throwaway cluster on 127.0.0.1 (see the module docs)."""

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root: Path | None = None
        self.port = 0
        self._names = itertools.count(1)
        # The server refuses to run as root: run its programs as `postgres` then.
        self._as: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root, and there is no `postgres` user to run the server as; "
                    + _INSTALL
                ) from None
            self._as = ["runuser", "-u", "postgres", "--"]
            self._owner = (user.pw_uid, user.pw_gid)

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        """A ``postgresql://`` URL of ``database`` on this server."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def start(self, **overrides: str | None) -> PostgresServer:
        """Start the server; ``overrides`` change its settings (``None`` drops one)."""
        # Not in pytest's tmp dirs: their parents are private to root, and the server runs
        # as `postgres`.
        self.root = Path(tempfile.mkdtemp(prefix="lash-test-pg-"))
        if self._owner is not None:
            os.chown(self.root, *self._owner)
        self._run(
            "initdb",
            "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
            "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        (self.data / "pg_hba.conf").write_text(_HBA)
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.root),
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "all",
            "autovacuum": "off",
            "max_connections": "200",
        }
        settings.update(overrides)
        for attempt in range(3):
            self.port = free_port()  # free now; another process may take it before we do
            options = " ".join(
                f"-c {key}={value}" for key, value in settings.items() if value is not None
            )
            try:
                self._run(
                    "pg_ctl", "start", "-w", "-t", "30", "-D", str(self.data), "-l", str(self.log),
                    "-o", f"-p {self.port} {options}",
                )  # fmt: skip
                return self
            except PostgresUnavailable:
                if attempt == 2 or "could not bind" not in self._log_tail():
                    self.stop()
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server (at once: nothing of it is kept) and remove its directory."""
        if self.root is None:
            return
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable):
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser; its output, unaligned, tuples only."""
        return self._run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
            "-c", sql,
        )  # fmt: skip

    def create_database(self, template: str = "template0") -> str:
        """A new, empty database (a copy of ``template``); its name."""
        name = f"lash_test_{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def _run(self, program: str, *args: str) -> str:
        # Server programs run as the data directory's owner; psql, a client, as we are.
        runner = [] if program == "psql" else self._as
        command = [*runner, str(self.bindir / program), *args]
        started = time.monotonic()
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{program} failed (exit {result.returncode} after "
                f"{time.monotonic() - started:.1f} s): {(result.stderr or result.stdout).strip()}"
                + (f"\nserver log:\n{self._log_tail()}" if program == "pg_ctl" else "")
            )
        return result.stdout

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


async def transaction_counters(conn: Any, database: str) -> tuple[int, int]:
    """``(xact_commit + xact_rollback of database, the server's WAL syncs)`` from
    ``pg_stat_database`` and ``pg_stat_wal``, read on ``conn`` (an asyncpg connection to
    another database) once ``database`` has no connection left: a backend reports its
    counters when it exits."""
    for _ in range(500):
        if not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
        ):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError(f"the connections to database {database!r} did not close")
    xacts = await conn.fetchval(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", database
    )
    syncs = await conn.fetchval("SELECT wal_sync FROM pg_stat_wal")
    return int(xacts), int(syncs)
