"""Shared fixtures: every test builds its own core; async tests run on asyncio via anyio; the
Postgres tests share one throwaway server (tests/_postgres.py), with a database per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from _pkgs import hide_installed_plugins, pythonpath

if TYPE_CHECKING:
    from _postgres import PostgresServer


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _only_builtin_plugins_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hide the third-party lash plugins installed where the suite runs, in this process and its
    subprocesses: a plugin installed into .venv (as the tutorial has an author do) changes no test.
    Tests that need plugins install their own, ahead of the hidden ones."""
    hiding = tmp_path_factory.mktemp("hidden-plugins")
    hide_installed_plugins(hiding)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(hiding))
        # Subprocesses that inherit the environment; those that set PYTHONPATH use pythonpath().
        inherited = os.environ.get("PYTHONPATH")
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [pythonpath(), inherited])))
        yield


@pytest.fixture(scope="session", autouse=True)
def _bytecode_compiled() -> None:
    """Write the bytecode of lash, its builtin plugins and these tests' helper modules before
    the run, as Python would on first import unless PYTHONDONTWRITEBYTECODE is set (as on the
    machine the suite is timed on): otherwise each of the suite's subprocesses (``lash`` commands,
    workers, crash children: hundreds) compiles lash's modules again, ~0.4 s of CPU each.
    Up-to-date files are left alone; a tree that cannot be written (an installed lash) is
    skipped silently: it only costs time."""
    import compileall

    import lash
    import lash_plugins_builtin

    for package in (lash, lash_plugins_builtin):
        for directory in package.__path__:
            compileall.compile_dir(directory, quiet=2)
    compileall.compile_dir(Path(__file__).parent, maxlevels=0, quiet=2)


@pytest.fixture(autouse=True)
def _isolated_cwd(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run every test in an empty working directory: no lash.toml is found upward by accident,
    and the default store (``.lash/lash.db`` under the working directory) lands in a temp dir."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole run, started on first use (tests/_postgres.py).

    When it cannot start, every test that needs it fails with the reason: never a skip."""
    from _postgres import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.fail(f"the Postgres tests need a PostgreSQL server, and none started: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store a test runs on: memory://, a SQLite file of its own, a Postgres database of
    its own (a module may narrow it by defining a ``store_url`` fixture of its own)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lash.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database of its own on the test server. Databases are not
    dropped one by one (Postgres checkpoints to drop one): they go with the server."""
    return postgres_server.url(postgres_server.create_database())


@pytest.fixture
def quick_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store conformance suite's short leases and its wait for them to expire, 2.5x shorter
    (20 ms, waited 80 ms, instead of 50 and 200 ms), for tests that run the whole suite against
    a store keeping time as time.time() floats (MemoryStore and stores built on it, the docs'
    key-value example): such a lease has expired 80 ms later as surely as one of 50 ms after
    200 ms, so the same checks pass and fail, with 14 checks waiting 0.12 s less each. The
    suite's own runs against MemoryStore and SQLite keep the defaults."""
    from lash._testing import (
        store_checks,
        store_data_checks,
        store_mailbox_checks,
        store_process_checks,
    )

    for module in (store_checks, store_data_checks, store_mailbox_checks, store_process_checks):
        monkeypatch.setattr(module, "SHORT_TTL", 0.02)
        monkeypatch.setattr(module, "EXPIRY_WAIT", 0.08)
