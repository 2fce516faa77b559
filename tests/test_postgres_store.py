"""The ``postgresql://`` store on a real PostgreSQL server (started by ``tests/_postgres.py``):
the conformance suite, migrations, secrets, commits (atomicity, races, cost), the kernel."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import _postgres
import asyncpg
import attrs
import pytest
from _postgres import PostgresServer, free_port, transaction_counters
from _recorder import Recorder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sqlite_store import (
    configs,
    every_kind,
    float_tokens,
    graph_nodes,
    json_values,
    names,
    usages,
    without_times,
)

import lash
import lash.store
from lash.testing import STORE_CHECKS, run_store_check
from lash_plugins_builtin import _postgres_schema, plan, standard, stores
from lash_plugins_builtin import postgres as postgres_module
from lash_plugins_builtin.postgres import PostgresStore, parse_url

pytestmark = pytest.mark.anyio


def registered_factory() -> Callable[[str], Any]:
    """The factory the builtin ``stores`` plugin registers for ``postgresql://`` URLs."""
    found: dict[str, Callable[[str], Any]] = {}

    def register(scheme: str, factory: Callable[[str], Any], /) -> None:
        found[scheme] = factory

    stores.register_stores(register)
    assert found["postgres"] is found["postgresql"]
    return found["postgresql"]


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


@contextlib.asynccontextmanager
async def admin(server: PostgresServer, database: str = "postgres") -> AsyncIterator[Any]:
    """A superuser connection beside the store."""
    conn = await asyncpg.connect(server.url(database))
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def quiet_wal_writer(server: PostgresServer) -> AsyncIterator[None]:
    """The server's WAL writer wakes every 10 s instead of 200 ms (its own flushes of what
    asynchronous commits left are not a test's to count), then as it was. (pg_reload_conf
    signals the WAL writer, which reads the setting at once.)"""
    async with admin(server) as conn:
        await conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
        await conn.execute("SELECT pg_reload_conf()")
        try:
            yield
        finally:
            await conn.execute("ALTER SYSTEM RESET wal_writer_delay")
            await conn.execute("SELECT pg_reload_conf()")


@contextlib.asynccontextmanager
async def opened(url: str, **kwargs: Any) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url, **kwargs)
    try:
        yield store
    finally:
        await store.close()


async def leased(store: lash.store.Store, session_id: str, owner: str = "w1") -> lash.store.Lease:
    return await store.acquire_lease(session_id, owner, ttl=30)


async def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every lash table (to compare before and after a refused write)."""
    conn = await asyncpg.connect(url)
    try:
        tables = ["lash_sessions", *_postgres_schema.SESSION_TABLES, _postgres_schema.PROCESS_TABLE]
        return {
            t: sorted((tuple(r) for r in await conn.fetch(f"SELECT * FROM {t}")), key=repr)
            for t in tables
        }
    finally:
        await conn.close()


# -- the conformance suite ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_database(postgres_server: PostgresServer) -> str:
    """One database for every conformance check: checks use their own session ids, as stores
    sharing a database do."""
    return postgres_server.url(postgres_server.create_database())


@pytest.mark.parametrize("check", STORE_CHECKS)
async def test_postgres_store_check(check: str, shared_database: str) -> None:
    """Each conformance check passes against the store the ``stores`` plugin builds."""
    make = registered_factory()
    await run_store_check(check, lambda: make(shared_database))


# -- migrations --------------------------------------------------------------------------------


async def test_new_database_gets_every_migration_and_a_second_open_changes_nothing(
    postgres_url: str,
) -> None:
    """Opening an empty database applies each known migration once and records it; opening
    it again applies nothing. The connections carry the URL's statement_timeout."""
    async with opened(f"{postgres_url}?statement_timeout=1234") as store:
        await store.open()
        info = await store.info()
    # What the server has for the store's connections.
    assert (info["statement_timeout"], info["application_name"]) == ("1234ms", "lash")
    assert [(m["id"], m["name"]) for m in info["migrations"]] == [
        (m.id, m.name) for m in _postgres_schema.MIGRATIONS
    ]
    assert int(info["server_version"].split(".")[0]) >= 15
    conn = await asyncpg.connect(postgres_url)
    try:
        tables = {
            r[0]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'lash%'"
            )
        }
        assert tables == {
            "lash_migrations",
            "lash_sessions",
            *_postgres_schema.SESSION_TABLES,
            _postgres_schema.PROCESS_TABLE,
            "lash_blobs",
            "lash_watchers",
        }
        applied = await conn.fetch("SELECT id, applied_at FROM lash_migrations")
        async with opened(postgres_url) as again:
            await again.open()
        assert await conn.fetch("SELECT id, applied_at FROM lash_migrations") == applied
    finally:
        await conn.close()


RACER = """
import asyncio, sys
from lash_plugins_builtin.postgres import PostgresStore

async def main():
    store = PostgresStore(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        await store.open()
    finally:
        await store.close()
    print("migrated", flush=True)

asyncio.run(main())
"""


async def test_processes_opening_a_new_database_at_once_migrate_it_once(
    postgres_server: PostgresServer,
) -> None:
    """Four processes released at the same moment on an empty database all open it; each
    migration is applied once (the advisory lock serialises them; without it, most fail
    with 'relation already exists')."""
    name = postgres_server.create_database()
    racers: list[subprocess.Popen[str]] = []
    try:
        racers += [
            subprocess.Popen(
                [sys.executable, "-c", RACER, postgres_server.url(name)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline() == "ready\n"
        for racer in racers:  # go, all together
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        outputs = [racer.communicate(timeout=60) for racer in racers]
        assert [(r.returncode, out) for r, (out, _) in zip(racers, outputs, strict=True)] == [
            (0, "migrated\n")
        ] * 4, [err for _, err in outputs]
        async with admin(postgres_server, name) as conn:
            rows = await conn.fetch("SELECT id, name FROM lash_migrations ORDER BY id")
        assert [tuple(r) for r in rows] == [(m.id, m.name) for m in _postgres_schema.MIGRATIONS]
    finally:
        for racer in racers:
            racer.kill()
            racer.communicate()


async def test_database_of_a_newer_lash_is_refused_untouched(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A database whose migrations go past this lash's is refused with the lash version to
    upgrade to, before anything is written to it."""
    future = _postgres_schema.LATEST + 1
    async with admin(postgres_server, database_of(postgres_url)) as conn:
        await conn.execute(_postgres_schema.CREATE_MIGRATIONS_TABLE)
        await conn.execute(
            "INSERT INTO lash_migrations VALUES (1, 'initial schema', 0, '0.1.0'), "
            f"({future}, 'processes', 0, '7.3.1')"
        )
        store = PostgresStore(postgres_url)
        with pytest.raises(lash.ConfigError) as refused:
            await store.open()
        message = str(refused.value)
        assert f"migration {future} ('processes', applied by lash 7.3.1)" in message
        assert "upgrade lash to 7.3.1 or later" in message
        assert database_of(postgres_url) in message
        # Refused before any DDL: the newer lash's database is as it was.
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'lash%'")
        assert [r[0] for r in tables] == ["lash_migrations"]
        # Every operation keeps refusing (the store does not half-open).
        with pytest.raises(lash.ConfigError, match="newer lash"):
            await store.load("s")
        await store.close()


async def test_a_migration_of_another_name_is_refused(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A database whose migration 1 has another name was migrated by an incompatible build."""
    async with admin(postgres_server, database_of(postgres_url)) as conn:
        await conn.execute(_postgres_schema.CREATE_MIGRATIONS_TABLE)
        await conn.execute("INSERT INTO lash_migrations VALUES (1, 'something else', 0, 'x')")
    with pytest.raises(lash.ConfigError, match="migration 1 'something else' but this lash's"):
        async with opened(postgres_url) as store:
            await store.open()


# -- URLs and secrets --------------------------------------------------------------------------


def test_url_options_and_their_defaults() -> None:
    """Lash's own parameters set the pool and timeouts; the rest go to asyncpg unchanged."""
    default = parse_url("postgresql://u:pw@db.example:6543/app")
    assert (default.pool_size, default.pool_min, default.connect_timeout) == (10, 1, 10.0)
    assert default.statement_timeout == 30_000
    assert (default.events_kept, default.events_max_age) == (10_000, 7 * 24 * 3600)
    assert (default.notify, default.durable_leases) == (True, False)
    assert default.url == "postgresql://u:***@db.example:6543/app"
    assert default.target == "db.example:6543/app"
    tuned = parse_url(
        "postgres://u@h/app?pool_size=3&sslmode=disable&pool_min=0&connect_timeout=2.5"
        "&statement_timeout=0&search_path=lash"
    )
    assert (tuned.pool_size, tuned.pool_min, tuned.connect_timeout) == (3, 0, 2.5)
    assert tuned.statement_timeout == 0
    assert tuned.dsn == (
        "postgresql://u@h/app?sslmode=disable&search_path=lash&application_name=lash"
    )
    window = parse_url(
        "postgresql://h/app?events_kept=50&events_max_age=3600&notify=off&durable_leases=on"
    )
    assert (window.events_kept, window.events_max_age) == (50, 3600.0)
    assert (window.notify, window.durable_leases) == (False, True)
    assert window.dsn == "postgresql://h/app?application_name=lash"
    named = parse_url("postgresql://h/app?application_name=mine")
    assert named.dsn == "postgresql://h/app?application_name=mine"
    assert PostgresStore("postgresql://h/db", pool_size=4).settings.pool_size == 4
    for sizes in ({"pool_size": 0, "pool_min": 0}, {"pool_size": 2, "pool_min": 3}):
        with pytest.raises(lash.ConfigError, match="need 0 <= pool_min <= pool_size"):
            PostgresStore("postgresql://u:hunter22@h/db", **sizes)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://u:hunter22@h/db", "not a postgresql URL: 'mysql://u:***@h/db'"),
        ("postgresql://u:hunter22@h:port/db", "the port is not a number"),
        ("postgresql://u:hunter22@h/db?pool_size=0", "pool_size='0' is not a whole number >= 1"),
        ("postgresql://u:hunter22@h/db?pool_size=x", "pool_size='x' is not a whole number >= 1"),
        ("postgresql://u:hunter22@h/db?pool_min=5&pool_size=2", "pool_min=5 is more than"),
        ("postgresql://u:hunter22@h/db?connect_timeout=-1", "connect_timeout='-1' is not a"),
        ("postgresql://u:hunter22@h/db?events_kept=0", "events_kept='0' is not a whole number"),
        ("postgresql://u:hunter22@h/db?events_max_age=x", "events_max_age='x' is not a positive"),
        ("postgresql://u:hunter22@h/db?notify=maybe", "notify='maybe' is not on or off"),
        ("postgresql://u@h/db?password=hunter22&pool_size=-3", "?password=***&pool_size=-3"),
    ],
)
def test_bad_urls_are_config_errors_without_the_password(url: str, expected: str) -> None:
    """A bad URL is a ConfigError that says what is wrong and masks the password."""
    with pytest.raises(lash.ConfigError) as error:
        parse_url(url)
    assert expected in str(error.value)
    assert "hunter22" not in str(error.value)


async def test_a_url_listing_several_hosts_connects_to_the_one_that_answers(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """libpq's URL form for a primary and its standbys, ``HOST:PORT,HOST:PORT`` (asyncpg tries
    them in order; ``target_session_attrs=read-write`` keeps the writable one), opens the
    store: here the first host refuses connections, the second is the test server. Messages
    name every host; a host whose port is not a number is named."""
    port, down = postgres_server.port, free_port()
    database = database_of(postgres_url)
    hosts = f"127.0.0.1:{down},127.0.0.1:{port}"
    url = f"postgresql://postgres:hunter22@{hosts}/{database}?target_session_attrs=read-write"
    settings = parse_url(url)
    assert settings.url == url.replace("hunter22", "***")
    assert settings.target == f"{hosts}/{database}"
    async with opened(url) as store:
        lease = await leased(store, "s")
        await store.commit("s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta())
        record = await store.load("s")
        assert record is not None and record.revision == 1
    assert parse_url("postgresql://a,b:6000/db").target == "a:5432,b:6000/db"
    ipv6 = parse_url("postgresql://[::1]:6000,[fe80::1]/db")
    assert ipv6.target == "[::1]:6000,[fe80::1]:5432/db"
    with pytest.raises(lash.ConfigError, match="the port of host 'b:x' is not a number") as error:
        parse_url("postgresql://u:hunter22@a:5432,b:x/db")
    assert "hunter22" not in str(error.value)


async def test_a_url_listing_several_hosts_writes_to_the_one_that_takes_writes(
    postgres_server: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several hosts and no ``target_session_attrs``: the store connects to the first host that
    takes writes (``read-write``), not to the first that answers (asyncpg's default, ``any``),
    which after a failover may be a standby, where every write fails. Here the first host
    answers but its database is read-only (as a standby's is); the second is the test server.
    A ``target_session_attrs`` in the URL (or ``PGTARGETSESSIONATTRS``) is kept as it is."""
    monkeypatch.delenv("PGTARGETSESSIONATTRS", raising=False)
    database = database_of(postgres_url)
    standby = PostgresServer().start()
    try:
        standby.psql(f'CREATE DATABASE "{database}"')
        standby.psql(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        hosts = f"127.0.0.1:{standby.port},127.0.0.1:{postgres_server.port}"
        url = f"postgresql://postgres@{hosts}/{database}"
        async with opened(url) as store:
            lease = await leased(store, "s")
            delta = lash.store.CommitDelta()
            await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        primary = await asyncpg.connect(postgres_url)
        try:
            assert await primary.fetchval("SELECT revision FROM lash_sessions") == 1
        finally:
            await primary.close()
        # Asked for: any host that answers, the read-only one first; opening it fails there.
        with pytest.raises(lash.ConfigError, match="read-only transaction"):
            async with opened(f"{url}?target_session_attrs=any") as store:
                await store.load("s")
        # The hosts in the environment (PGHOST, which asyncpg reads for a URL without a host,
        # as libpq does) are the same primary and standby.
        monkeypatch.setenv("PGHOST", hosts)
        async with opened(f"postgresql://postgres@/{database}") as store:
            lease = await leased(store, "p")
            await store.commit("p", lease=lease, expected_revision=0, delta=delta)
        monkeypatch.delenv("PGHOST")
        primary = await asyncpg.connect(postgres_url)
        try:
            assert (
                await primary.fetchval("SELECT revision FROM lash_sessions WHERE session_id = 'p'")
                == 1
            )
        finally:
            await primary.close()
    finally:
        standby.stop()
    assert "target_session_attrs=read-write" in parse_url(url).dsn
    assert "target_session_attrs" not in parse_url(postgres_url).dsn  # one host: nothing to pick
    monkeypatch.setenv("PGTARGETSESSIONATTRS", "prefer-standby")
    assert "target_session_attrs" not in parse_url(url).dsn


PASSWORD = "Pa:ss@w/rd-5ecret#7"
QUOTED = "Pa%3Ass%40w%2Frd-5ecret%237"


async def test_the_password_appears_in_no_error_repr_or_log(
    postgres_server: PostgresServer, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Failing connections (wrong password, no such database, no server) raise ConfigErrors
    that say what to do, and neither they, their causes, repr, nor any log line holds the
    password (as written or URL-quoted)."""
    caplog.set_level(logging.DEBUG)
    database = database_of(postgres_url)
    async with admin(postgres_server) as conn:
        await conn.execute(f"CREATE ROLE lash_app LOGIN PASSWORD '{PASSWORD}'")
        await conn.execute(f'ALTER DATABASE "{database}" OWNER TO lash_app')
    port = postgres_server.port
    dead_port = free_port()
    cases = {
        f"postgresql://lash_app:{QUOTED}x@127.0.0.1:{port}/{database}": "check the user and "
        "password",
        f"postgresql://lash_app:{QUOTED}@127.0.0.1:{port}/nowhere": "createdb",
        f"postgresql://lash_app:{QUOTED}@127.0.0.1:{dead_port}/{database}": "is a Postgres "
        f"server running and accepting connections at 127.0.0.1:{dead_port}/{database}?",
        f"postgresql://lash_app@127.0.0.1:{port}/{database}?password={QUOTED}x": "check the "
        "user and password",
    }
    texts: list[str] = []
    for url, hint in cases.items():
        store = PostgresStore(url, connect_timeout=5)
        texts += [repr(store), store.url, repr(store.settings)]
        with pytest.raises(lash.ConfigError) as failed:
            await store.acquire_lease("s", "w", ttl=30)
        error = failed.value
        assert hint in str(error)
        assert "***" in str(error)
        chained = [error.__cause__, error.__context__]
        texts += [str(error), *map(repr, chained)]
        await store.close()
    # The right password works (and the tables belong to the app's role).
    async with opened(f"postgresql://lash_app:{QUOTED}@127.0.0.1:{port}/{database}") as store:
        lease = await leased(store, "s")
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(turns=1)
        )
        texts += [repr(store), str(await store.info())]
    texts += [record.getMessage() for record in caplog.records]
    for text in texts:
        assert PASSWORD not in text and QUOTED not in text and "5ecret" not in text, text


async def test_host_secrets_never_reach_the_database(
    postgres_server: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turns of a core with a provider API key (host options, session options, environment)
    and a password in the store URL: a dump of the whole database holds none of them."""
    import lash_plugins_builtin.openai as openai_plugin

    database = database_of(postgres_url)
    async with admin(postgres_server) as conn:
        await conn.execute(f"CREATE ROLE lash_owner LOGIN PASSWORD '{PASSWORD}'")
        await conn.execute(f'ALTER DATABASE "{database}" OWNER TO lash_owner')
    secrets = ["sk-host-SECRET-5f1d0c9b7a", "sk-env-SECRET-8e2a4b6c1d", "sk-ses-SECRET-3c7e9a"]
    monkeypatch.setenv("OPENAI_API_KEY", secrets[1])
    core = lash.LashCore(
        plugins=[standard, stores, Recorder([{"text": f"a{i}"} for i in range(3)]), openai_plugin],
        autoload=False,
        disable=["scripted"],
        provider="recorder",
        store=f"postgresql://lash_owner:{QUOTED}@127.0.0.1:{postgres_server.port}/{database}",
        options={"openai": {"api_key": secrets[0]}},
    )
    try:
        session = await core.session("s", options={"openai": {"api_key": secrets[2]}}).open()
        for i in range(3):
            assert (await session.turn(f"question {i}").run()).outcome == "completed"
        await session.close()
    finally:
        await core.aclose()
    dump = subprocess.run(
        [str(postgres_server.bindir / "pg_dump"), "--inserts", postgres_server.url(database)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "question 2" in dump  # the dump does hold what was committed
    for secret in [*secrets, PASSWORD, QUOTED, "5ecret"]:
        assert secret not in dump


async def test_the_pool_opens_at_most_pool_size_connections(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """Twelve operations at once on a store with ``pool_size=2`` share two connections."""
    database = database_of(postgres_url)
    async with opened(f"{postgres_url}?pool_size=2&application_name=sized") as store:
        leases = [await leased(store, f"s{i}") for i in range(12)]
        await asyncio.gather(
            *(
                store.commit(lease.session_id, lease=lease, expected_revision=0,
                             delta=lash.store.CommitDelta(nodes=tuple(every_kind()), turns=1))
                for lease in leases
            )
        )  # fmt: skip
        async with admin(postgres_server) as conn:
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                "AND application_name = 'sized'",
                database,
            )
        assert count == 2
        assert [s.revision for s in await store.list_sessions()] == [1] * 12


async def test_a_kept_connection_is_clean_and_replaced_when_the_server_drops_it(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """Operations one after another run on one connection (kept between them, not checked
    back into the pool); after an error inside a transaction the next operation is not in an
    aborted transaction; a kept connection the server terminated fails at most one operation
    (with the store's error), and the next one gets a new connection."""
    database = database_of(postgres_url)
    async with opened(f"{postgres_url}?pool_size=1&application_name=kept") as store:
        await store.enqueue_input("s", lash.store.InputDraft("hello"))
        pids = {await backend_pid(store)}
        for i in range(5):
            await store.enqueue_input("s", lash.store.InputDraft(f"more {i}"))
            pids.add(await backend_pid(store))
        assert len(pids) == 1
        # An error inside a transaction of several statements (a process start whose key is
        # taken by other content): the store rolls back before the connection is used again.
        draft = lash.store.ProcessDraft("p1", "k", session_id="s", payload={"a": 1}, key="k1")
        await store.start_process(draft)
        with pytest.raises(lash.InputConflict):
            await store.start_process(attrs.evolve(draft, id="p2", payload={"a": 2}))
        assert len(await store.list_inputs("s")) == 6
        async with admin(postgres_server) as conn:
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = 'kept'",
                database,
            )
        assert killed == 1
        with contextlib.suppress(lash.LashError):  # the kept one may be found dead only now
            await store.list_inputs("s")
        assert len(await store.list_inputs("s")) == 6
        assert await backend_pid(store) not in pids


async def test_kept_connections_go_back_to_the_pool_when_unused(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After three operations at once, the store keeps their three connections; once unused
    for KEPT_IDLE seconds, all go back to the pool (which keeps ``pool_min`` and recycles idle
    ones: none is kept out of its sight forever), and the next operation takes one from it and
    keeps that one again."""
    monkeypatch.setattr(postgres_module, "KEPT_IDLE", 0.3)
    async with opened(f"{postgres_url}?pool_size=3&pool_min=1") as store:
        await store.open()

        async def slow() -> None:
            await store._fetch("sleeping", "SELECT pg_sleep(0.2)")

        await asyncio.gather(slow(), slow(), slow())
        pool = store._pool
        assert pool is not None
        assert (len(store._idle), pool.get_idle_size()) == (3, 0)
        await asyncio.sleep(0.8)
        assert (len(store._idle), pool.get_idle_size()) == (0, 3)
        pid = await backend_pid(store)
        assert (len(store._idle), pool.get_idle_size()) == (1, 2)
        assert store._idle[0][0].get_server_pid() == pid
        await asyncio.sleep(0.8)
        assert (len(store._idle), pool.get_idle_size()) == (0, 3)


async def backend_pid(store: PostgresStore) -> int:
    """The server process of the connection the store's next operation runs on."""
    row = await store._fetchrow("reading the backend pid", "SELECT pg_backend_pid()")
    assert row is not None
    return int(row[0])


# -- commits -----------------------------------------------------------------------------------


async def test_writers_on_several_connections_race_and_exactly_one_wins_each_round(
    postgres_url: str,
) -> None:
    """Four stores (four pools) holding the same lease commit from the same head, twenty
    rounds: one commit wins each round, the others get RevisionConflict, and the history is
    the winners' nodes in order, never a mix."""
    stores_ = [PostgresStore(postgres_url) for _ in range(4)]
    try:
        lease = await leased(stores_[0], "race")
        winners: list[list[Any]] = []
        for round_ in range(20):
            deltas = [
                lash.store.CommitDelta(
                    nodes=tuple(every_kind(f"R{round_}W{w}", round_)),
                    plugin_states={"p": {"round": round_, "writer": w}},
                    usage={"turn": lash.Usage(1, 0, 0)},
                    turns=1,
                )
                for w in range(4)
            ]
            results = await asyncio.gather(
                *(
                    store.commit("race", lease=lease, expected_revision=round_, delta=delta)
                    for store, delta in zip(stores_, deltas, strict=True)
                ),
                return_exceptions=True,
            )
            won = [w for w, r in enumerate(results) if r == round_ + 1]
            assert len(won) == 1, results
            assert all(
                isinstance(r, lash.RevisionConflict)
                and (r.expected, r.actual) == (round_, round_ + 1)
                for w, r in enumerate(results)
                if w != won[0]
            ), results
            winners.append(list(deltas[won[0]].nodes))
        record = await stores_[1].load("race", full=True)
        assert record is not None
        assert list(record.nodes) == [n for nodes in winners for n in nodes]
        assert (record.revision, record.turns, record.usage) == (20, 20, {"turn": lash.Usage(20)})
    finally:
        for store in stores_:
            await store.close()


async def test_a_commit_that_fails_inside_the_database_writes_nothing(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A commit whose last write fails (a trigger refuses its last event) leaves every table
    as it was (nodes, states, usage, the claimed input, the command, the queued input, the
    turn record, the events, the lease), and the same commit without that event goes through."""
    async with opened(postgres_url) as store:
        lease = await leased(store, "s")
        await store.commit(
            "s", lease=lease, expected_revision=0,
            delta=lash.store.CommitDelta(nodes=tuple(every_kind("F1")), plugin_states={"p": 1},
                                   usage={"turn": lash.Usage(1, 1, 1)}, turns=1),
        )  # fmt: skip
        await store.enqueue_input("s", lash.store.InputDraft("work"))
        command = await store.enqueue_command("s", lash.store.CommandDraft("reset", "k"))
        (claimed,) = await store.claim_inputs(lease)
        async with admin(postgres_server, database_of(postgres_url)) as conn:
            await conn.execute(
                """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON lash_events FOR EACH ROW
                WHEN (NEW.type = 'boom') EXECUTE FUNCTION refuse();"""
            )
        before = await table_rows(postgres_url)
        doomed = lash.store.CommitDelta(
            nodes=tuple(every_kind("F2")),
            plugin_states={"p": 2, "q": 3},
            config=lash.SessionConfig(model="lost"),
            usage={"turn": lash.Usage(5, 5, 5), "other": lash.Usage(1)},
            turns=1,
            replace=True,
            claimed=(claimed.id,),
            applied=(command.id,),
            enqueue=(lash.store.InputDraft("follow-up"),),
            turn=lash.store.TurnRecord("s", "t-1", 2, "completed", 0),
            events=(lash.store.EventDraft("fine"), lash.store.EventDraft("boom")),
            release=True,
        )
        with pytest.raises(
            lash.LashError, match=r"commit to session 's' failed: .*refused by the test"
        ):
            await store.commit("s", lease=lease, expected_revision=1, delta=doomed)
        assert await table_rows(postgres_url) == before
        fine = attrs.evolve(doomed, events=(lash.store.EventDraft("fine"),))
        assert await store.commit("s", lease=lease, expected_revision=1, delta=fine) == 2
        settled = {i.text: (i.state, i.turn_id) for i in await store.list_inputs("s", settled=True)}
        assert settled == {"work": ("completed", "t-1"), "follow-up": ("pending", None)}
        assert [c.state for c in await store.list_commands("s", settled=True)] == ["applied"]
        assert (await leased(store, "s", owner="w2")).token == lease.token + 1  # released


async def test_values_postgres_cannot_hold_fail_before_anything_is_written(
    postgres_url: str,
) -> None:
    """A NUL or a lone surrogate in a key, or a count past 64 bits, is refused by the store
    with a SessionError naming the value; nothing reaches the database. NUL characters inside
    values (texts, states, the last user message) are stored and read back exactly."""
    async with opened(postgres_url) as store:
        lease = await leased(store, "s")
        node = every_kind()[1]
        bad = {
            "node id": lash.store.CommitDelta(nodes=(attrs.evolve(node, id="a\0b"),)),
            "frame id": lash.store.CommitDelta(nodes=(attrs.evolve(node, frame_id="\udc80"),)),
            "turn": lash.store.CommitDelta(nodes=(attrs.evolve(node, turn=2**63),)),
            "plugin name": lash.store.CommitDelta(plugin_states={"p\0": 1}),
            "usage source": lash.store.CommitDelta(usage={"\ud800": lash.Usage(1)}),
            "input tokens": lash.store.CommitDelta(usage={"turn": lash.Usage(2**64)}),
            # A value that would not read back as its node (a float token count).
            "node 'a'(.|\n)*usage.input_tokens: expected int, got 12.0": lash.store.CommitDelta(
                nodes=(float_tokens(),)
            ),
        }
        for what, delta in bad.items():
            with pytest.raises(lash.SessionError, match=f"session 's': cannot store the {what}"):
                await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        assert await store.load("s") is None
        with pytest.raises(lash.SessionError, match="invalid session id 'a\\\\x00b'"):
            await store.acquire_lease("a\0b", "w", ttl=30)  # the session id rule, first
        with pytest.raises(lash.SessionError, match="cannot store the lease owner"):
            await store.acquire_lease("s2", "w\0", ttl=30)
        for what, draft in (
            ("input key", lash.store.InputDraft("x", key="k\0")),
            ("input source", lash.store.InputDraft("x", source="\udc80")),
        ):
            with pytest.raises(lash.SessionError, match=f"session 's': cannot store the {what}"):
                await store.enqueue_input("s", draft)
        with pytest.raises(lash.SessionError, match="cannot store the event type"):
            await store.acquire_lease("s", "w1", ttl=30, events=[lash.store.EventDraft("a\0")])
        assert (await store.read_events("s")).last == 0
        text = "nul \0 and \udc80 surrogate"
        exact = lash.store.CommitDelta(
            nodes=(attrs.evolve(node, text=text),),
            plugin_states={"p": {"k": text}},
            turns=1,
            events=(lash.store.EventDraft("e", {"text": text}),),
        )
        await store.commit("s", lease=lease, expected_revision=0, delta=exact)
        record = await store.load("s")
        assert record is not None and record.nodes == exact.nodes
        assert record.plugin_states == {"p": {"k": text}}
        (summary,) = await store.list_sessions()
        assert summary.last_user_message == text
        queued = await store.enqueue_input("s", lash.store.InputDraft(text, items=({"t": text},)))
        (listed,) = await store.list_inputs("s")
        assert (listed.text, listed.items) == (queued.text, queued.items) == (text, ({"t": text},))
        page = await store.read_events("s")
        assert [dict(e.data) for e in page.events if e.type == "e"] == [{"text": text}]


def incompressible(n_bytes: int, seed: int) -> str:
    """Random text of ``n_bytes`` bytes in UTF-8 (4-byte characters of any plane past the
    first, then ASCII for the rest): Postgres cannot compress it to fit an index entry."""
    rng = random.Random(seed)
    wide = "".join(chr(rng.randrange(0x10000, 0x110000)) for _ in range(n_bytes // 4))
    return wide + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n_bytes % 4))


async def test_keys_and_ids_postgres_indexes_hold_1536_bytes_and_longer_ones_are_refused(
    postgres_url: str,
) -> None:
    """Postgres indexes a session's input and command keys, turn ids, plugin names and usage
    sources, and processes' ids, keys and kinds (an index entry holds 2,704 bytes): up to 1,536
    bytes of UTF-8 they are stored and read back, beside the longest session id; a longer one
    is refused with a SessionError naming the session and what it is, before anything is
    written (a turn id when the turn's lease is taken, before the model is called), not with
    the server's "index row size exceeds" error (a turn id met it at the commit, after the turn
    ran)."""
    sid = incompressible(1024, 1)  # 256 characters: the longest session id
    fits = [incompressible(1536, seed) for seed in range(2, 11)]
    too_long = incompressible(3000, 9)  # more than an index entry holds
    async with opened(postgres_url) as store:
        queued = await store.enqueue_input(sid, lash.store.InputDraft("x", key=fits[0]))
        command = await store.enqueue_command(
            sid, lash.store.CommandDraft(name="configure", key=fits[1])
        )
        lease = await store.acquire_lease(sid, "w1", ttl=30, turn=fits[2])
        claimed = await store.claim_inputs(lease)
        record = lash.store.TurnRecord(sid, fits[2], 1, "completed", 1, None, {}, 0.0)
        await store.commit(
            sid,
            lease=lease,
            expected_revision=0,
            delta=lash.store.CommitDelta(
                turns=1,
                claimed=tuple(i.id for i in claimed),
                plugin_states={fits[7]: 1},
                usage={fits[8]: lash.Usage(1)},
                applied=(command.id,),
                turn=record,
                processes=(lash.store.ProcessDraft(fits[3], fits[4], session_id=sid, key=fits[5]),),
            ),
        )
        assert [i.key for i in await store.list_inputs(sid, settled=True)] == [queued.key]
        loaded = await store.load(sid)
        assert loaded is not None
        assert (dict(loaded.plugin_states), dict(loaded.usage)) == (
            {fits[7]: 1},
            {fits[8]: lash.Usage(1)},
        )
        turn = await store.turn_record(sid, fits[2])
        assert turn is not None and turn.outcome == "completed"
        process = await store.get_process(fits[3])
        assert process is not None and (process.kind, process.key) == (fits[4], fits[5])
        assert (await store.request_cancel(sid, fits[6], origin="t")).status == "unknown"

        refusals = {
            "input key": store.enqueue_input("s", lash.store.InputDraft("x", key=too_long)),
            "command key": store.enqueue_command(
                "s", lash.store.CommandDraft(name="configure", key=too_long)
            ),
            "turn id": store.acquire_lease("s", "w1", ttl=30, turn=too_long),
            "id of process": store.start_process(
                lash.store.ProcessDraft(too_long, "job", session_id="s")
            ),
            "key of process": store.start_process(
                lash.store.ProcessDraft("p1", "job", session_id="s", key=too_long)
            ),
            "kind of process": store.start_process(
                lash.store.ProcessDraft("p1", too_long, session_id="s")
            ),
        }
        assert (await store.request_cancel("s", too_long, origin="t")).status == "unknown"
        for what, call in refusals.items():
            with pytest.raises(lash.SessionError, match=f"session 's': cannot store the {what}"):
                await call
        lease = await leased(store, "s")
        in_commit = {
            "input key": lash.store.CommitDelta(
                enqueue=(lash.store.InputDraft("x", key=too_long),)
            ),
            "turn id": lash.store.CommitDelta(
                turn=attrs.evolve(record, session_id="s", turn_id=too_long)
            ),
            "plugin name": lash.store.CommitDelta(plugin_states={too_long: 1}),
            "usage source": lash.store.CommitDelta(usage={too_long: lash.Usage(1)}),
            "key of process": lash.store.CommitDelta(
                processes=(lash.store.ProcessDraft("p2", "job", session_id="s", key=too_long),)
            ),
        }
        for what, delta in in_commit.items():
            with pytest.raises(lash.SessionError, match=f"session 's': cannot store the {what}"):
                await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        just_over = lash.store.InputDraft("x", key=incompressible(1537, 10))
        with pytest.raises(lash.SessionError, match="it has 1,537 bytes of UTF-8, more than 1,536"):
            await store.enqueue_input("s", just_over)
        assert await store.load("s") is None
        assert await store.list_inputs("s") == []
        assert await store.list_processes(session_id="s") == []


@given(
    value=st.text(
        st.sampled_from(["a", "~", "\0", "\x7f", "\xe9", "\udc80", "\ud800", "\U0001f600"])
        | st.characters(exclude_categories=()),
        max_size=12,
    )
)
def test_the_text_check_accepts_exactly_what_postgres_text_can_hold(value: str) -> None:
    """``_text``'s quick acceptance of ASCII text agrees with the general rule: Postgres
    ``text`` holds any UTF-8 string without NUL (checked by encoding it, as the server would)."""
    holdable = "\0" not in value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        holdable = False
    if holdable:
        assert postgres_module._text("s", "thing", value) is value
    else:
        with pytest.raises(lash.SessionError, match="session 's': cannot store the thing"):
            postgres_module._text("s", "thing", value)


async def test_leases_expire_by_the_database_clock(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With this process's clock an hour fast, a 30 s lease still lasts 30 s of the
    database's time: another owner is refused, and expiry times are the server's."""
    async with opened(postgres_url) as store:
        real = time.time()
        monkeypatch.setattr(time, "time", lambda: real + 3600)
        lease = await leased(store, "s", owner="a")
        assert abs(lease.expires_at - (real + 30)) < 5
        with pytest.raises(lash.SessionBusy) as busy:
            await leased(store, "s", owner="b")
        assert busy.value.owner == "a"
        renewed = await store.renew_lease(lease, ttl=60)
        assert abs(renewed.expires_at - (real + 60)) < 5
        await store.commit(
            "s", lease=lease, expected_revision=0, delta=lash.store.CommitDelta(turns=1)
        )
        (summary,) = await store.list_sessions()
        assert abs(summary.updated_at - real) < 5


async def test_one_wal_flush_per_committed_turn_with_its_lease_and_claim(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """An execution as the kernel runs a drained turn (take the lease logging turn_started;
    claim one input; one commit settling it, with the turn's nodes, state, usage, record and
    events, releasing the lease) is three transactions and at most 1.05 WAL flushes (fsync
    on), counted from pg_stat_database and pg_stat_wal over 100 turns (the difference between
    a run of 120 turns and one of 20, so that opening the store does not count). With
    ``durable_leases=on`` the lease and the claim wait for flushes of their own: about three.

    pg_stat_wal counts the server's every flush, the WAL writer's too: every
    ``wal_writer_delay`` (200 ms) it flushes what asynchronous commits (the lease, the claim)
    left, so its share grew with the run's time, and a loaded machine counted 106-113. No turn
    waits for those: the WAL writer is slowed to 10 s while this counts, and the count is the
    flushes the turns make (100 on an idle machine as on a loaded one)."""
    database = database_of(postgres_url)
    async with opened(postgres_url) as store:
        await store.open()  # migrations: not part of what is measured

    async def counters(conn: Any) -> tuple[int, int]:
        return await transaction_counters(conn, database)

    async def run(turns: int, session_id: str, query: str) -> tuple[int, int]:
        async with opened(postgres_url) as store:
            for turn in range(turns):
                await store.enqueue_input(session_id, lash.store.InputDraft(f"input {turn}"))
        async with admin(postgres_server) as conn:
            before = await counters(conn)
            async with opened(f"{postgres_url}?pool_size=1{query}") as store:
                for turn in range(turns):
                    started = lash.store.EventDraft("turn_started", {"turn_id": f"t{turn}"})
                    lease = await store.acquire_lease(
                        session_id, "w1", ttl=30, turn=f"t{turn}", events=[started]
                    )
                    (claimed,) = await store.claim_inputs(lease)
                    delta = lash.store.CommitDelta(
                        nodes=tuple(every_kind(f"T{turn}", turn)[1:]),
                        plugin_states={"p": {"turn": turn}},
                        usage={"turn": lash.Usage(10, 2)},
                        turns=1,
                        claimed=(claimed.id,),
                        turn=lash.store.TurnRecord(
                            session_id, f"t{turn}", turn + 1, "completed", 0
                        ),
                        events=(lash.store.EventDraft("turn_committed", {"turn_id": f"t{turn}"}),),
                        release=True,
                    )
                    await store.commit(session_id, lease=lease, expected_revision=turn, delta=delta)
            after = await counters(conn)
        return after[0] - before[0], after[1] - before[1]

    measured = {}
    async with quiet_wal_writer(postgres_server):
        for query in ("", "&durable_leases=on"):
            short = await run(20, f"short{query}", query)
            long = await run(120, f"long{query}", query)
            measured[query] = (long[0] - short[0], long[1] - short[1])
    transactions, flushes = measured[""]
    assert transactions == 300, measured
    assert 0 < flushes <= 105, measured
    transactions, flushes = measured["&durable_leases=on"]
    assert transactions == 300, measured
    assert flushes >= 250, measured


async def test_a_commit_runs_the_same_statements_at_10000_nodes_as_at_10(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """pg_stat_statements (tracking statements inside functions too): one commit of a turn
    runs the same statements, as often, into a session of 10,000 nodes as into one of 10, and
    touches about as many buffer pages (a pass over the history would touch hundreds more)."""
    database = database_of(postgres_url)
    async with admin(postgres_server, database) as conn:
        await conn.execute("CREATE EXTENSION pg_stat_statements")
        dbid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = $1", database)
        async with opened(postgres_url, pool_size=1) as store:
            revisions = {}
            for sid, count in (("short", 10), ("long", 10_000)):
                lease = await leased(store, sid)
                nodes = [n for t in range(count // 6 + 1) for n in every_kind(f"H{t}", t)][:count]
                await store.commit(
                    sid, lease=lease, expected_revision=0,
                    delta=lash.store.CommitDelta(nodes=tuple(nodes)),
                )  # fmt: skip
                revisions[sid] = (lease, 1)
            work: dict[str, list[tuple[Any, ...]]] = {"short": [], "long": []}
            for turn in range(4):
                for sid in ("short", "long"):
                    lease, revision = revisions[sid]
                    await conn.execute("SELECT pg_stat_statements_reset(0, $1, 0)", dbid)
                    delta = lash.store.CommitDelta(
                        nodes=tuple(every_kind(f"T{turn}", turn)),
                        plugin_states={"p": turn},
                        usage={"turn": lash.Usage(1)},
                        turns=1,
                    )
                    await store.commit(sid, lease=lease, expected_revision=revision, delta=delta)
                    revisions[sid] = (lease, revision + 1)
                    rows = await conn.fetch(
                        """SELECT query, calls, rows, shared_blks_hit + shared_blks_read
                        FROM pg_stat_statements WHERE dbid = $1
                        AND query NOT LIKE '%pg_stat_statements%' ORDER BY query""",
                        dbid,
                    )
                    work[sid].append(tuple(tuple(r) for r in rows))
    for short, long in zip(work["short"][1:], work["long"][1:], strict=True):
        # The same statements, run as often, writing as many rows.
        assert [r[:3] for r in short] == [r[:3] for r in long]
        assert any("lash_commit" in r[0] for r in short) and len(short) >= 5
        pages_short, pages_long = sum(r[3] for r in short), sum(r[3] for r in long)
        # A deeper index may cost a page per lookup; a scan of 10,000 nodes, hundreds.
        assert pages_long <= pages_short + 10, (pages_short, pages_long)


def turn_delta(session_id: str, turn: int) -> lash.store.CommitDelta:
    """A kernel turn's commit: its nodes, usage, record and events, releasing the lease."""
    return lash.store.CommitDelta(
        nodes=tuple(every_kind(f"T{turn}", turn)[1:]),
        usage={"turn": lash.Usage(10, 2)},
        turns=1,
        turn=lash.store.TurnRecord(session_id, f"t{turn}", turn + 1, "completed", 0),
        events=(lash.store.EventDraft("turn_committed", {"turn_id": f"t{turn}"}),),
        release=True,
    )


async def turn_started(store: PostgresStore, session_id: str, turn: int) -> lash.store.Lease:
    """A kernel turn's lease, logging ``turn_started``."""
    started = lash.store.EventDraft("turn_started", {"turn_id": f"t{turn}"})
    return await store.acquire_lease(session_id, "w1", ttl=30, turn=f"t{turn}", events=[started])


async def test_a_turn_runs_nine_statements_inside_its_lease_and_commit(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """pg_stat_statements (tracking statements inside functions too): a turn's lease (its
    head taken, ``turn_started`` logged) runs three statements inside ``lash_acquire_lease``
    and its commit six inside ``lash_commit`` (from migration 6; seventeen in all before):
    each costs the server an executor's start and end besides its own work."""
    database = database_of(postgres_url)
    async with admin(postgres_server, database) as conn:
        await conn.execute("CREATE EXTENSION pg_stat_statements")
        dbid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = $1", database)
        async with opened(postgres_url, pool_size=1) as store:
            await store.open()  # migrations: not part of what is counted
            counts = []
            for turn in range(3):
                await conn.execute("SELECT pg_stat_statements_reset(0, $1, 0)", dbid)
                lease = await turn_started(store, "s", turn)
                await store.commit(
                    "s", lease=lease, expected_revision=turn, delta=turn_delta("s", turn)
                )
                rows = await conn.fetch(
                    """SELECT toplevel, sum(calls)::int FROM pg_stat_statements WHERE dbid = $1
                    AND query NOT LIKE '%pg_stat_statements%' GROUP BY toplevel""",
                    dbid,
                )
                counts.append(dict(rows))
    # The first lease makes the head row (an UPDATE that finds none, then the insert), and
    # the connection's first statements have asyncpg read their types.
    assert [c[False] for c in counts] == [10, 9, 9]
    assert counts[1:] == [{True: 2, False: 9}] * 2


# -- the mailbox -------------------------------------------------------------------------------


async def test_mailbox_events_carry_the_records_as_lash_store_writes_them(
    postgres_url: str,
) -> None:
    """The data of input_queued / input_claimed / input_cancelled / command_queued (built in
    SQL) is what lash.store.input_event and command_event give for the records the calls
    returned and list_inputs shows, NUL characters and lone surrogates included."""
    text = 'nul \0, surrogate \udc80, quote " and \u00e9'
    async with opened(postgres_url) as store:
        queued = await store.enqueue_input(
            "s",
            lash.store.InputDraft(
                text, items=({"k": [1, 2.5, None, text]},), key="k\u00e9", source="host",
                ingress="active_turn",
            ),
        )  # fmt: skip
        command = await store.enqueue_command(
            "s", lash.store.CommandDraft("reset", "c1", {"why": text}, source="cli")
        )
        lease = await leased(store, "s")
        (claimed,) = await store.claim_inputs(lease)
        other = await store.enqueue_input("s", lash.store.InputDraft("other"))
        (cancelled,) = await store.cancel_inputs("s", [other.id])
        await store.commit(
            "s", lease=lease, expected_revision=0,
            delta=lash.store.CommitDelta(turns=1, enqueue=(lash.store.InputDraft("later"),)),
        )  # fmt: skip
        listed = {i.text: i for i in await store.list_inputs("s", settled=True)}
        page = await store.read_events("s")
    assert cancelled.input is not None
    expected = [
        lash.store.input_event("input_queued", queued),
        lash.store.command_event("command_queued", command),
        lash.store.input_event("input_claimed", claimed),
        lash.store.input_event("input_queued", other),
        lash.store.input_event("input_cancelled", cancelled.input),
        lash.store.input_event("input_queued", listed["later"]),
    ]
    assert [(e.type, dict(e.data)) for e in page.events] == [(d.type, d.data) for d in expected]
    assert (claimed.text, claimed.items) == (text, ({"k": [1, 2.5, None, text]},))
    assert listed["other"] == cancelled.input
    assert attrs.evolve(listed[text], state="claimed", settled_at=None) == claimed


async def test_concurrent_writers_number_a_sessions_events_without_gaps(
    postgres_url: str,
) -> None:
    """Six stores (six pools, twelve connections) enqueue input and commands into one session
    while its lease holder commits events: the log's seqs are 1..N, each write's events are
    there once, and the inputs' seqs are distinct and gap-free too."""
    writers = [PostgresStore(postgres_url, pool_size=2) for _ in range(6)]
    try:
        lease = await leased(writers[0], "s")

        async def enqueue(w: int) -> None:
            for i in range(20):
                await writers[w].enqueue_input("s", lash.store.InputDraft(f"w{w}-{i}"))
                if i % 5 == 0:
                    draft = lash.store.CommandDraft("reset", f"c{w}-{i}")
                    await writers[w].enqueue_command("s", draft)

        async def commit() -> None:
            for revision in range(15):
                events = tuple(lash.store.EventDraft("tick", {"n": k}) for k in range(3))
                await writers[0].commit(
                    "s", lease=lease, expected_revision=revision,
                    delta=lash.store.CommitDelta(turns=1, events=events),
                )  # fmt: skip

        await asyncio.gather(commit(), *(enqueue(w) for w in range(6)))
        page = await writers[1].read_events("s", limit=10_000)
        inputs = await writers[2].list_inputs("s")
    finally:
        for store in writers:
            await store.close()
    total = 6 * 20 + 6 * 4 + 15 * 3
    assert [e.seq for e in page.events] == list(range(1, total + 1))
    assert (page.first, page.last) == (1, total)
    queued = sorted(e.data["input"]["text"] for e in page.events if e.type == "input_queued")
    assert queued == sorted(f"w{w}-{i}" for w in range(6) for i in range(20))
    assert sum(e.type == "command_queued" for e in page.events) == 24
    assert sorted(i.seq for i in inputs) == list(range(1, 121))


async def test_two_executors_claim_and_settle_each_input_once(postgres_url: str) -> None:
    """Two executors (stores of their own) take turns on one session (lease, claim up to
    two inputs, one commit that settles them and releases the lease) while two more stores
    enqueue 60 inputs: each input is claimed by one committed turn only, completed by it,
    and its text is in the history once."""
    stores_ = [PostgresStore(postgres_url, pool_size=2) for _ in range(4)]
    enqueued = asyncio.Event()
    settled: dict[str, list[str]] = {"A": [], "B": []}
    try:

        async def enqueue(w: int) -> None:
            for i in range(30):
                await stores_[w].enqueue_input("s", lash.store.InputDraft(f"w{w}-{i}"))
                await asyncio.sleep(0)

        async def execute(store: PostgresStore, owner: str) -> None:
            while True:
                try:
                    lease = await store.acquire_lease("s", owner, ttl=30)
                except lash.SessionBusy:
                    await asyncio.sleep(0.002)
                    continue
                claimed = await store.claim_inputs(lease, limit=2)
                if not claimed:
                    await store.release_lease(lease)
                    if enqueued.is_set():
                        return
                    await asyncio.sleep(0.002)
                    continue
                turn = f"{owner}-{lease.revision}"
                nodes = tuple(
                    lash.UserMessage(id=f"{turn}-{k}", parent_id=None, frame_id="f", turn=1,
                                     text=i.text)
                    for k, i in enumerate(claimed)
                )  # fmt: skip
                await store.commit(
                    "s", lease=lease, expected_revision=lease.revision,
                    delta=lash.store.CommitDelta(
                        nodes=nodes, turns=1, claimed=tuple(i.id for i in claimed),
                        turn=lash.store.TurnRecord("s", turn, 1, "completed", 0), release=True,
                    ),
                )  # fmt: skip
                settled[owner] += [i.id for i in claimed]

        async def enqueue_all() -> None:
            await asyncio.gather(enqueue(2), enqueue(3))
            enqueued.set()

        await asyncio.gather(enqueue_all(), execute(stores_[0], "A"), execute(stores_[1], "B"))
        inputs = await stores_[0].list_inputs("s", settled=True)
        record = await stores_[0].load("s", full=True)
    finally:
        for store in stores_:
            await store.close()
    ids = settled["A"] + settled["B"]
    assert sorted(ids) == sorted(i.id for i in inputs) and len(inputs) == 60
    assert settled["A"] and settled["B"], settled  # both executors did work
    assert {i.state for i in inputs} == {"completed"}
    assert record is not None
    texts = [n.text for n in record.nodes]
    assert sorted(texts) == sorted(i.text for i in inputs)


async def test_a_claim_skips_inputs_another_transaction_holds_locked(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """While another transaction holds the oldest input's row locked, a claim takes the next
    one at once (FOR UPDATE SKIP LOCKED) instead of waiting; the first is claimed later."""
    async with opened(postgres_url) as store:
        first = await store.enqueue_input("s", lash.store.InputDraft("first"))
        second = await store.enqueue_input("s", lash.store.InputDraft("second"))
        lease = await leased(store, "s")
        async with admin(postgres_server, database_of(postgres_url)) as conn:
            locking = conn.transaction()
            await locking.start()
            await conn.execute("SELECT 1 FROM lash_inputs WHERE id = $1 FOR UPDATE", first.id)
            got = await asyncio.wait_for(store.claim_inputs(lease, limit=2), timeout=5)
            assert [i.id for i in got] == [second.id]
            await locking.rollback()
        (later,) = await store.claim_inputs(lease, limit=2)
        assert later.id == first.id


async def test_the_event_log_keeps_the_newest_events_younger_than_the_max_age(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """With events_kept=5 the log keeps the newest five events (older rows are deleted, and
    read_events starts its window there); with events_max_age=0.5 a write drops the events
    older than half a second."""

    async def rows() -> int:
        async with admin(postgres_server, database_of(postgres_url)) as conn:
            count: int = await conn.fetchval("SELECT count(*) FROM lash_events")
            return count

    async with opened(f"{postgres_url}?events_kept=5") as store:
        lease = await leased(store, "s")
        for revision in range(4):
            events = tuple(lash.store.EventDraft("e", {"n": revision * 3 + k}) for k in range(3))
            await store.commit(
                "s", lease=lease, expected_revision=revision,
                delta=lash.store.CommitDelta(events=events),
            )  # fmt: skip
        page = await store.read_events("s")
        assert [e.seq for e in page.events] == [8, 9, 10, 11, 12]
        assert [e.data["n"] for e in page.events] == [7, 8, 9, 10, 11]
        assert (page.first, page.last) == (8, 12)
        assert await rows() == 5
    async with opened(f"{postgres_url}?events_max_age=0.5") as store:
        await store.enqueue_input("s", lash.store.InputDraft("one"))
        await asyncio.sleep(0.8)
        await store.enqueue_input("s", lash.store.InputDraft("two"))
        page = await store.read_events("s")
        assert [(e.seq, e.type) for e in page.events] == [(14, "input_queued")]
        assert (page.first, page.last) == (14, 14)
        assert await rows() == 1


async def test_a_deleted_session_keeps_its_counters(postgres_url: str) -> None:
    """After a delete, the session's events are gone but their numbers are not given again:
    the next event of a session made anew under that id follows the last one, and its lease
    token is higher than any before."""
    async with opened(postgres_url) as store:
        lease = await leased(store, "s")
        events = (lash.store.EventDraft("a"), lash.store.EventDraft("b"))
        await store.commit(
            "s", lease=lease, expected_revision=0,
            delta=lash.store.CommitDelta(turns=1, events=events, release=True),
        )  # fmt: skip
        await store.delete("s")
        page = await store.read_events("s")
        assert (page.events, page.first, page.last) == ((), 3, 2)
        again = await store.acquire_lease("s", "w2", ttl=30, events=[events[0]])
        assert again.token > lease.token
        assert [e.seq for e in (await store.read_events("s")).events] == [3]


ENQUEUER = """
import asyncio, sys
import lash.store
from lash_plugins_builtin.postgres import PostgresStore

async def main():
    url, sid, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = PostgresStore(url, pool_size=1)
    await store.open()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(count):
        name = f"w{worker}-{i}"
        await store.enqueue_input(sid, lash.store.InputDraft(name, key=name))
    await store.close()
    print("done", flush=True)

asyncio.run(main())
"""

CLAIMER = """
import asyncio, random, sys
import lash, lash.store
from lash_plugins_builtin.postgres import PostgresStore

async def main():
    url, sid, owner, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    store = PostgresStore(url, pool_size=2)
    await store.open()
    print("ready", flush=True)
    sys.stdin.readline()
    turns = 0
    while True:
        try:
            lease = await store.acquire_lease(sid, owner, ttl=1.0)
        except lash.SessionBusy:
            await asyncio.sleep(0.005)
            continue
        claimed = await store.claim_inputs(lease, limit=random.randint(1, 3))
        if not claimed:
            await store.release_lease(lease)
            inputs = await store.list_inputs(sid, settled=True)
            if sum(i.state == "completed" for i in inputs) == total:
                break
            await asyncio.sleep(0.005)
            continue
        print("claimed", turns + 1, flush=True)
        await asyncio.sleep(random.uniform(0.02, 0.05))  # the model call
        turns += 1
        turn = f"{owner}-{turns}"
        nodes = tuple(
            lash.UserMessage(id=f"{turn}-{k}", parent_id=None, frame_id="f", turn=1, text=i.text)
            for k, i in enumerate(claimed)
        )
        delta = lash.store.CommitDelta(
            nodes=nodes, turns=1, claimed=tuple(i.id for i in claimed), release=True,
            turn=lash.store.TurnRecord(sid, turn, turns, "completed", 0),
        )
        try:
            await store.commit(sid, lease=lease, expected_revision=lease.revision, delta=delta)
        except (lash.LeaseLost, lash.RevisionConflict):
            continue
        print("committed", turns, flush=True)
    await store.close()
    print("finished", flush=True)

asyncio.run(main())
"""


async def test_eight_processes_enqueue_two_drain_one_is_killed_each_input_runs_once(
    postgres_url: str,
) -> None:
    """8 processes enqueue 15 inputs each into one session while 2 processes take its lease,
    claim input and commit it (a turn per claim); one of them is SIGKILLed in the middle of
    its fourth turn, holding claims it never commits. The survivor takes over once the dead one's
    lease (1 s) expires: every input is completed, by a committed turn, and its text is in
    the history exactly once; the event log has no gap."""
    sid, per_worker = "mp", 15
    total = 8 * per_worker

    def spawn(script: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", script, postgres_url, sid, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [spawn(ENQUEUER, str(w), str(per_worker)) for w in range(8)]
    victim, survivor = spawn(CLAIMER, "A", str(total)), spawn(CLAIMER, "B", str(total))
    procs += [victim, survivor]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        assert victim.stdout is not None
        while victim.stdout.readline() != "claimed 4\n":
            pass
        await asyncio.sleep(random.uniform(0, 0.01))  # during its fourth turn's model call
        victim.kill()
        victim.wait()
        outputs = {proc.pid: proc.communicate(timeout=120) for proc in procs if proc is not victim}
        for proc in procs:
            if proc is not victim:
                assert proc.returncode == 0, outputs[proc.pid][1]
        assert outputs[survivor.pid][0].endswith("finished\n")
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
    assert victim.returncode == -signal.SIGKILL
    async with opened(postgres_url) as store:
        inputs = await store.list_inputs(sid, settled=True)
        record = await store.load(sid, full=True)
        page = await store.read_events(sid, limit=100_000)
        turn_ids = {i.turn_id for i in inputs}
        records = [await store.turn_record(sid, t) for t in turn_ids if t is not None]
    expected = sorted(f"w{w}-{i}" for w in range(8) for i in range(per_worker))
    assert sorted(i.text for i in inputs) == expected
    assert {i.state for i in inputs} == {"completed"}
    assert all(r is not None for r in records) and None not in turn_ids
    assert record is not None
    assert sorted(n.text for n in record.nodes) == expected
    assert [e.seq for e in page.events] == list(range(1, page.last + 1))


# -- waiting for events (LISTEN/NOTIFY) ----------------------------------------------------------

WRITER = """
import asyncio, random, sys
import lash.store
from lash_plugins_builtin.postgres import PostgresStore

async def main():
    store = PostgresStore(sys.argv[1])
    await store.open()
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(int(sys.argv[3])):
        await asyncio.sleep(random.uniform(0.02, 0.06))
        await store.enqueue_input(sys.argv[2], lash.store.InputDraft(f"input {i}"))
    await store.close()

asyncio.run(main())
"""


async def test_wait_events_wakes_on_a_write_from_another_process(postgres_url: str) -> None:
    """A waiter wakes (True) when another process enqueues into the session: median latency
    from the write (its event's database time) to the wake-up under 50 ms, no wake missed:
    every one of 20 writes is seen, each after a wake-up, none after a timeout."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, postgres_url, "s", "20"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    latencies: list[float] = []
    try:
        async with opened(postgres_url) as store:
            assert await store.wait_events("s", 0, 0) is False  # opens the listener
            assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
            last = 0
            while last < 20:
                assert await store.wait_events("s", last, 10), f"timed out after event {last}"
                woke = time.time()
                page = await store.read_events("s", after=last)
                latencies += [woke - e.at for e in page.events]
                last = page.last
    finally:
        writer.kill()
        writer.communicate()
    assert len(latencies) == 20
    latencies.sort()
    assert latencies[10] < 0.05, latencies


async def test_wait_events_returns_at_once_times_out_and_survives_a_lost_listener(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """wait_events is True at once when the log is already past ``after``; False after the
    timeout when nothing is written (and when a writer sends no notification: notify=off, the
    write then found by reading); woken (True) when its listening connection is killed, after
    which it listens again on a new one."""
    async with opened(postgres_url) as store, opened(f"{postgres_url}?notify=off") as quiet:
        await store.enqueue_input("s", lash.store.InputDraft("x"))
        assert await asyncio.wait_for(store.wait_events("s", 0, 30), 5) is True
        started = time.monotonic()
        assert await store.wait_events("s", 1, 0.3) is False
        assert 0.3 <= time.monotonic() - started < 2

        async def write_quietly() -> None:
            await asyncio.sleep(0.1)
            await quiet.enqueue_input("s", lash.store.InputDraft("y"))

        results = await asyncio.gather(store.wait_events("s", 1, 0.6), write_quietly())
        assert results[0] is False
        assert (await store.read_events("s")).last == 2

        async def kill_listener() -> None:
            await asyncio.sleep(0.2)
            async with admin(postgres_server) as conn:
                killed = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = $1 AND query LIKE 'LISTEN%'",
                    database_of(postgres_url),
                )
            assert killed == 1

        started = time.monotonic()
        results = await asyncio.gather(store.wait_events("s", 2, 30), kill_listener())
        assert results[0] is True and time.monotonic() - started < 5

        async def write() -> None:
            await asyncio.sleep(0.2)
            await store.enqueue_input("s", lash.store.InputDraft("z"))

        results = await asyncio.gather(store.wait_events("s", 2, 30), write())
        assert results[0] is True
        assert (await store.read_events("s")).last == 3


async def test_a_write_wakes_the_waiters_of_its_session_only_and_a_wait_can_be_cancelled(
    postgres_url: str,
) -> None:
    """With waiters on two sessions, an enqueue into one wakes its waiter (from another
    store) and leaves the other waiting; that one, cancelled, raises CancelledError, and a new
    wait on its session is woken by the next write there."""
    async with opened(postgres_url) as store, opened(postgres_url) as writer:
        assert await store.wait_events("a", 0, 0) is False  # the listener is up
        waiting_a = asyncio.ensure_future(store.wait_events("a", 0, 30))
        waiting_b = asyncio.ensure_future(store.wait_events("b", 0, 30))
        await asyncio.sleep(0.2)
        await writer.enqueue_input("a", lash.store.InputDraft("for a"))
        assert await asyncio.wait_for(waiting_a, 5) is True
        await asyncio.sleep(0.2)
        assert not waiting_b.done()
        waiting_b.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting_b
        again = asyncio.ensure_future(store.wait_events("b", 0, 30))
        await asyncio.sleep(0.2)
        await writer.enqueue_input("b", lash.store.InputDraft("for b"))
        assert await asyncio.wait_for(again, 5) is True


async def notified_sessions(conn: Any) -> asyncio.Queue[str]:
    """The payloads of the ``lash_events`` notifications ``conn`` receives from now on (a
    plain LISTEN: not a watcher of any session)."""
    received: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener("lash_events", lambda *args: received.put_nowait(args[3]))
    return received


async def test_writes_notify_only_the_sessions_someone_waits_on(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A write into a session no store waits on sends no notification (the one into a waited
    session, committed after it, arrives alone: notifications come in commit order); once a
    store waits on it, its writes notify too; a store that closes stops its sessions'
    notifications, and the watcher rows a killed listener left are dropped when a listener
    starts."""
    async with opened(postgres_url) as store, opened(postgres_url) as writer:
        conn = await asyncpg.connect(postgres_url)
        try:
            received = await notified_sessions(conn)
            assert await store.wait_events("watched", 0, 0) is False  # watching it now
            await writer.enqueue_input("quiet", lash.store.InputDraft("unseen"))
            await writer.enqueue_input("watched", lash.store.InputDraft("seen"))
            assert await asyncio.wait_for(received.get(), 5) == "watched"
            assert received.empty()
            assert await store.wait_events("quiet", 1, 0) is False
            await writer.enqueue_input("quiet", lash.store.InputDraft("now seen"))
            assert await asyncio.wait_for(received.get(), 5) == "quiet"
            await store.close()
            await writer.enqueue_input("quiet", lash.store.InputDraft("unseen again"))
            await writer.enqueue_input("marker", lash.store.InputDraft("x"))
            async with admin(postgres_server, database_of(postgres_url)) as other:
                # A listener that went away without forgetting what it watched.
                await other.execute("INSERT INTO lash_watchers VALUES ('marker', 0, 0)")
                await writer.enqueue_input("marker", lash.store.InputDraft("y"))
                assert await asyncio.wait_for(received.get(), 5) == "marker"
                assert await store.wait_events("other", 0, 0) is False  # a new listener
                assert await other.fetch("SELECT session_id FROM lash_watchers") == [("other",)]
            assert received.empty()
        finally:
            await conn.close()


async def test_a_wait_whose_watch_fails_polls_instead_of_failing(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Registering as a watcher can fail (a role without the right to, a statement timeout
    behind a long write): the wait then polls, as one that cannot listen does, and says so in
    the log; it neither raises nor misses a write."""
    broken = "SELECT 1 / 0, $1::text, $2::integer"  # fails as lash_watch could
    monkeypatch.setattr(postgres_module.schema, "WATCH", broken)
    async with opened(postgres_url) as store, opened(postgres_url) as writer:
        with caplog.at_level(logging.WARNING, logger="lash"):
            started = time.monotonic()
            assert await store.wait_events("polled", 0, 0.3) is False
            assert time.monotonic() - started >= 0.3
        assert "cannot watch session 'polled'" in caplog.text
        assert "waiting polls" in caplog.text
        await writer.enqueue_input("polled", lash.store.InputDraft("q"))
        assert await store.wait_events("polled", 0, 5) is True  # the log is read first


async def test_a_session_no_one_waited_on_for_a_while_is_no_longer_watched(
    postgres_server: PostgresServer, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registration whose session had no waiter for WATCH_LINGER seconds is dropped at the
    store's next wait (one whose session is being waited on stays); closing the store drops
    the rest."""
    monkeypatch.setattr(postgres_module, "WATCH_LINGER", 0.3)
    async with admin(postgres_server, database_of(postgres_url)) as conn:

        async def watched() -> list[str]:
            return sorted(r[0] for r in await conn.fetch("SELECT session_id FROM lash_watchers"))

        async with opened(postgres_url) as store:
            assert await store.wait_events("a", 0, 0) is False
            assert await store.wait_events("b", 0, 0) is False
            assert await watched() == ["a", "b"]
            await asyncio.sleep(0.5)
            assert await store.wait_events("b", 0, 0) is False
            assert await watched() == ["b"]
        assert await watched() == []


async def test_a_waiter_registering_while_a_write_is_in_progress_sees_that_write(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A write that looked for watchers before the waiter registered, and commits after, is
    not lost: registering waits for the write (it holds the session's head row), then the
    waiter reads the log and returns at once, well before its timeout."""
    async with opened(postgres_url) as store:
        await store.enqueue_input("s", lash.store.InputDraft("first"))
        async with admin(postgres_server, database_of(postgres_url)) as conn:
            transaction = conn.transaction()
            await transaction.start()
            await conn.fetchval(
                _postgres_schema.LOG_EVENTS, "s", ["custom"], ["{}"], 100, 3600.0, True
            )
            assert await conn.fetchval("SELECT count(*) FROM lash_watchers") == 0
            started = time.monotonic()
            waiting = asyncio.ensure_future(store.wait_events("s", 1, 30))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # registering waits for the write
            await transaction.commit()
            assert await asyncio.wait_for(waiting, 5) is True
            assert time.monotonic() - started < 5


async def test_a_database_of_the_previous_schema_gets_the_watchers(postgres_url: str) -> None:
    """A database migrated by a lash without migration 5 (watchers) is brought forward: its
    sessions stay, and waiting on one is woken by the next write."""
    previous = tuple(m for m in _postgres_schema.MIGRATIONS if m.id < 5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_postgres_schema, "MIGRATIONS", previous)
        patch.setattr(_postgres_schema, "LATEST", previous[-1].id)
        async with opened(postgres_url) as old:
            await old.enqueue_input("s", lash.store.InputDraft("before"))
    async with opened(postgres_url) as store, opened(postgres_url) as writer:
        info = await store.info()
        assert [m["id"] for m in info["migrations"]] == [m.id for m in _postgres_schema.MIGRATIONS]
        assert [i.text for i in await store.list_inputs("s")] == ["before"]
        waiting = asyncio.ensure_future(store.wait_events("s", 1, 30))
        await asyncio.sleep(0.2)
        await writer.enqueue_input("s", lash.store.InputDraft("after"))
        assert await asyncio.wait_for(waiting, 5) is True


async def test_a_database_of_migration_5_gets_the_turns_functions_of_6(
    postgres_url: str,
) -> None:
    """A database migrated by a lash without migration 6 (the lease and the commit with fewer
    statements) is brought forward: its session goes on from where it was, the lease is
    refused to another owner while held and its commit settles the claimed input."""
    previous = tuple(m for m in _postgres_schema.MIGRATIONS if m.id < 6)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_postgres_schema, "MIGRATIONS", previous)
        patch.setattr(_postgres_schema, "LATEST", previous[-1].id)
        async with opened(postgres_url) as old:
            lease = await turn_started(old, "s", 0)
            await old.commit("s", lease=lease, expected_revision=0, delta=turn_delta("s", 0))
            await old.enqueue_input("s", lash.store.InputDraft("queued"))
    async with opened(postgres_url) as store:
        info = await store.info()
        assert [m["id"] for m in info["migrations"]] == [m.id for m in _postgres_schema.MIGRATIONS]
        lease = await turn_started(store, "s", 1)
        assert (lease.token, lease.revision, lease.pending_inputs) == (2, 1, 1)
        with pytest.raises(lash.SessionBusy) as busy:
            await store.acquire_lease("s", "w2", ttl=30)
        assert (busy.value.owner, busy.value.token) == ("w1", 2)
        (claimed,) = await store.claim_inputs(lease)
        delta = attrs.evolve(turn_delta("s", 1), claimed=(claimed.id,))
        assert await store.commit("s", lease=lease, expected_revision=1, delta=delta) == 2
        assert [i.state for i in await store.list_inputs("s", settled=True)] == ["completed"]
        record = await store.load("s")
        assert record is not None and record.turns == 2
        page = await store.read_events("s")
        assert [e.type for e in page.events] == [
            "turn_started", "turn_committed", "input_queued", "turn_started", "input_claimed",
            "turn_committed",
        ]  # fmt: skip


async def test_an_idle_waiter_sends_one_query_per_wait(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """Waiting two seconds for an idle session costs one query (reading where its log is);
    the rest of the time it waits on LISTEN (pg_stat_statements counts every statement)."""
    database = database_of(postgres_url)
    async with admin(postgres_server, database) as conn, opened(postgres_url) as store:
        await conn.execute("CREATE EXTENSION pg_stat_statements")
        dbid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = $1", database)
        assert await store.wait_events("s", 0, 0) is False  # the listener is up
        await conn.execute("SELECT pg_stat_statements_reset(0, $1, 0)", dbid)
        assert await store.wait_events("s", 0, 2) is False
        calls = await conn.fetchval(
            """SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = $1
            AND query NOT LIKE '%pg_stat_statements%'""",
            dbid,
        )
    assert calls == 1


# -- the kernel on Postgres --------------------------------------------------------------------


def test_building_a_core_or_lash_help_does_not_import_asyncpg() -> None:
    """asyncpg is imported when a Postgres store is built, not by ``lash --help`` or a core
    registering the builtin stores."""
    probe = (
        "import sys, lash, lash.cli\n"
        "from lash_plugins_builtin import stores\n"
        "try:\n    lash.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "core = lash.LashCore(plugins=[stores], autoload=False, store='postgresql://h/db')\n"
        "print('asyncpg' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.rstrip().endswith("False")


async def test_kernel_resumes_a_session_from_postgres_with_plugin_state(postgres_url: str) -> None:
    """Turns committed by one core are resumed by another over the same database: history,
    plugin state, usage, listing."""

    def make(recorder: Recorder) -> lash.LashCore:
        return lash.LashCore(
            plugins=[standard, stores, recorder, plan],
            autoload=False,
            disable=["scripted", "openai"],
            provider="recorder",
            store=postgres_url,
        )

    steps = [{"step": "measure", "status": "in_progress"}, {"step": "cut"}]
    first = Recorder(
        [
            {
                "text": "planning",
                "tool_calls": [{"id": "c1", "name": "update_plan", "arguments": {"steps": steps}}],
                "usage": {"input_tokens": 10, "output_tokens": 2},
            },
            {"text": "Plan made.", "usage": {"input_tokens": 20, "output_tokens": 3}},
        ]
    )
    core = make(first)
    try:
        assert isinstance(core.store, PostgresStore)
        session = await core.session("job").open()
        assert (await session.turn("make a plan").run()).revision == 1
        await session.close()
    finally:
        await core.aclose()
    core = make(Recorder([{"text": "Cutting.", "usage": {"input_tokens": 5, "output_tokens": 1}}]))
    try:
        session = await core.session("job").open(must_exist=True)
        state = session.state(plan.PlanState)
        assert state.steps == [plan.PlanStep("measure", "in_progress"), plan.PlanStep("cut")]
        result = await session.turn("go on").run()
        assert (result.text, result.revision) == ("Cutting.", 2)
        await session.close()
        (summary,) = await core.store.list_sessions()
        assert (summary.turns, summary.last_user_message) == (2, "go on")
        assert summary.usage == lash.Usage(35, 6, 0)
    finally:
        await core.aclose()


async def test_two_cores_run_turns_on_one_session_their_leases_serialise_them(
    postgres_url: str,
) -> None:
    """Two cores (two stores) run five turns each on one session at the same time: every
    turn waits for the lease rather than failing, all ten commit, one after another (a turn's
    user message and answer are never split by another's), and the listing shows ten
    completed turns and, as the last status, ``completed``."""

    def make(tag: str) -> lash.LashCore:
        return lash.LashCore(
            plugins=[standard, stores, Recorder([{"text": f"{tag}{i}"} for i in range(5)])],
            autoload=False,
            disable=["scripted", "openai"],
            provider="recorder",
            store=postgres_url,
            lease_wait=60,
        )

    cores = [make("a"), make("b")]
    try:
        sessions = [await core.session("job").open() for core in cores]

        async def run(session: lash.Session, tag: str) -> list[str]:
            return [(await session.turn(f"{tag} {i}").run()).outcome for i in range(5)]

        outcomes = await asyncio.gather(run(sessions[0], "a"), run(sessions[1], "b"))
        for session in sessions:
            await session.close()
        record = await cores[0].store.load("job", full=True)
        (summary,) = await cores[0].store.list_sessions()
        events = await cores[0].store.read_events("job", limit=10_000)
    finally:
        for core in cores:
            await core.aclose()
    assert outcomes == [["completed"] * 5, ["completed"] * 5]
    assert record is not None
    said = [n.text for n in record.nodes if isinstance(n, lash.UserMessage | lash.AssistantMessage)]
    pairs = list(zip(said[::2], said[1::2], strict=True))
    assert len(pairs) == 10
    assert all(question[0] == answer[0] for question, answer in pairs), pairs
    assert (summary.turns, summary.status, summary.pending_inputs) == (10, "completed", 0)
    assert [e.seq for e in events.events] == list(range(1, events.last + 1))


async def test_two_cores_drain_one_session_each_input_becomes_one_turn(postgres_url: str) -> None:
    """Input enqueued through one core is drained by two cores at once (one process, two
    stores): each input becomes exactly one completed turn, and the session's listing shows
    the last turn's status and no pending input."""

    def make(answers: int) -> lash.LashCore:
        return lash.LashCore(
            plugins=[standard, stores, Recorder([{"text": f"a{i}"} for i in range(answers)])],
            autoload=False,
            disable=["scripted", "openai"],
            provider="recorder",
            store=postgres_url,
        )

    cores = [make(12), make(12), make(0)]
    try:
        texts = [f"question {i}" for i in range(12)]
        for text in texts:
            await cores[2].enqueue("job", text)
        sessions = [await core.session("job").open() for core in cores[:2]]
        results = await asyncio.gather(*(session.drain() for session in sessions))
        for session in sessions:
            await session.close()
        inputs = await cores[2].inputs("job", settled=True)
        record = await cores[2].store.load("job", full=True)
        (summary,) = await cores[2].store.list_sessions()
    finally:
        for core in cores:
            await core.aclose()
    assert sum(len(r) for r in results) == 12
    assert {r.outcome for rs in results for r in rs} == {"completed"}
    assert {i.state for i in inputs} == {"completed"}
    assert len({i.turn_id for i in inputs}) == 12
    assert record is not None
    asked = [n.text for n in record.nodes if isinstance(n, lash.UserMessage)]
    assert sorted(asked) == sorted(texts)
    assert (summary.turns, summary.status, summary.pending_inputs) == (12, "completed", 0)


# -- property: random commit sequences round-trip like the reference store ---------------------

_examples = itertools.count()

deltas = st.builds(
    lash.store.CommitDelta,
    nodes=st.lists(graph_nodes(), max_size=5).map(tuple),
    plugin_states=st.dictionaries(names, json_values, max_size=2),
    config=st.none() | configs,
    usage=st.dictionaries(names, usages, max_size=2),
    turns=st.integers(0, 2),
    replace=st.booleans(),
)
operations = st.lists(
    st.tuples(st.sampled_from(["s1", "s2"]), st.none() | deltas), min_size=1, max_size=8
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
async def test_random_commit_sequences_round_trip_like_the_memory_store(
    shared_database: str, ops: list[tuple[str, lash.store.CommitDelta | None]]
) -> None:
    """Random commits (every node kind, replaces, states, usage) and deletes: Postgres holds
    exactly what the reference MemoryStore holds, also through a new store."""
    prefix = f"prop{next(_examples)}-"
    reference = lash.store.MemoryStore()
    # Not durable, so fast: a server setting passed through the URL (what is checked here is
    # what commits write, not that they survive a crash of the server).
    url = f"{shared_database}?synchronous_commit=off"
    async with opened(url) as store:
        revisions: dict[str, int] = {}
        for name, delta in ops:
            sid = prefix + name
            if delta is None:  # delete
                if sid in revisions:
                    for backend in (reference, store):
                        await backend.release_lease(await backend.acquire_lease(sid, "w", ttl=5))
                        await backend.delete(sid)
                    del revisions[sid]
                continue
            expected = revisions.get(sid, 0)
            got = []
            for backend in (reference, store):
                lease = await backend.acquire_lease(sid, "w", ttl=30)
                got.append(
                    await backend.commit(sid, lease=lease, expected_revision=expected, delta=delta)
                )
            assert got[0] == got[1] == expected + 1
            revisions[sid] = expected + 1

        def summaries(rows: list[lash.store.SessionSummary]) -> dict[str, Any]:
            return {
                r.session_id: attrs.evolve(r, created_at=0.0, updated_at=0.0)
                for r in rows
                if r.session_id.startswith(prefix)
            }

        assert summaries(await store.list_sessions()) == summaries(await reference.list_sessions())
    async with opened(url) as again:
        for sid in (prefix + "s1", prefix + "s2"):
            for full in (False, True):
                assert without_times(await again.load(sid, full=full)) == without_times(
                    await reference.load(sid, full=full)
                )


ingresses = st.sampled_from(["next_turn", "active_turn"])
mailbox_operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("enqueue"),
            st.sampled_from(["x", "y"]),
            st.none() | st.sampled_from(["k1", "k2"]),
            ingresses,
        ),
        st.tuples(
            st.just("command"),
            st.sampled_from(["reset", "refresh_tool_catalog"]),
            st.sampled_from(["c1", "c2"]),
        ),
        st.tuples(st.just("acquire"), st.sampled_from(["A", "B"])),
        st.tuples(st.just("claim"), st.integers(0, 3), st.none() | ingresses),
        # settle the claims, apply the pending commands, release, queue an input
        st.tuples(
            st.just("commit"),
            st.booleans(),
            st.booleans(),
            st.booleans(),
            st.none() | st.just("follow-up"),
        ),
        st.tuples(st.just("release")),
        st.tuples(
            st.just("cancel"),
            st.integers(0, 5) | st.sampled_from(["k1", "k2", "nope"]),
            st.booleans(),
        ),
    ),
    min_size=1,
    max_size=14,
)


@attrs.define
class _Executor:
    """One backend's side of a mailbox run: its lease, what it claimed, its revision."""

    store: Any
    lease: lash.store.Lease | None = None
    claimed: list[str] = attrs.field(factory=list)
    revision: int = 0
    turns: int = 0


async def _mailbox_step(sid: str, ex: _Executor, op: tuple[Any, ...]) -> Any:
    """Run one operation on one backend; what it returned, with ids and times left out."""
    store = ex.store
    kind = op[0]
    try:
        if kind == "enqueue":
            _, text, key, ingress = op
            got = await store.enqueue_input(
                sid, lash.store.InputDraft(text, key=key, ingress=ingress)
            )
            return (got.seq, got.text, got.key, got.state)
        if kind == "command":
            _, name, key = op
            cmd = await store.enqueue_command(sid, lash.store.CommandDraft(name, key))
            return (cmd.seq, cmd.name, cmd.key, cmd.state)
        if kind == "acquire":
            lease = await store.acquire_lease(sid, op[1], ttl=60)
            if ex.lease is None or ex.lease.token != lease.token:
                ex.claimed = []  # claims die with the lease that made them
            ex.lease = lease
            return (lease.owner, lease.token, lease.revision, lease.pending_inputs,
                    lease.pending_commands)  # fmt: skip
        if kind == "release":
            if ex.lease is not None:
                await store.release_lease(ex.lease)
            return None
        if ex.lease is None:
            return "no lease"
        if kind == "claim":
            _, limit, ingress = op
            got = await store.claim_inputs(ex.lease, limit=limit, ingress=ingress)
            ex.claimed += [i.id for i in got]
            return [(i.seq, i.text, i.state) for i in got]
        if kind == "commit":
            _, settle, apply, release, follow_up = op
            commands = await store.list_commands(sid) if apply else []
            ex.turns += 1
            delta = lash.store.CommitDelta(
                turns=1,
                claimed=tuple(ex.claimed) if settle else (),
                applied=tuple(c.id for c in commands),
                enqueue=() if follow_up is None else (lash.store.InputDraft(follow_up),),
                turn=lash.store.TurnRecord(sid, f"t{ex.turns}", ex.turns, "completed", 0),
                events=(lash.store.EventDraft("turn_committed", {"n": ex.turns}),),
                release=release,
            )
            revision = await store.commit(
                sid, lease=ex.lease, expected_revision=ex.revision, delta=delta
            )
            ex.revision = revision
            if settle:
                ex.claimed = []
            return revision
        if kind == "cancel":
            _, target, suffix = op
            if isinstance(target, int):
                listed = await store.list_inputs(sid, settled=True)
                target = listed[target].id if target < len(listed) else f"missing-{target}"
            outcomes = await store.cancel_inputs(sid, [target], suffix=suffix)
            return [(o.outcome, o.input and (o.input.seq, o.input.state)) for o in outcomes]
    except (lash.SessionBusy, lash.LeaseLost, lash.RevisionConflict, lash.InputConflict) as exc:
        return type(exc).__name__
    raise AssertionError(f"unknown operation {op}")


async def _mailbox_view(sid: str, store: Any) -> Any:
    inputs = await store.list_inputs(sid, settled=True)
    commands = await store.list_commands(sid, settled=True)
    events = await store.read_events(sid)
    record = await store.load(sid)
    return (
        [(i.seq, i.text, i.key, i.ingress, i.state, i.turn_id) for i in inputs],
        [(c.seq, c.name, c.key, c.state) for c in commands],
        [(e.seq, e.type) for e in events.events],
        (events.first, events.last),
        None if record is None else (record.revision, record.turns, record.event_seq),
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=mailbox_operations)
async def test_random_mailbox_operations_behave_like_the_memory_store(
    shared_database: str, ops: list[tuple[Any, ...]]
) -> None:
    """Random sequences of enqueues (with and without keys), commands, leases taken and
    released by two owners, claims, commits that settle claims, apply commands and queue
    input, and cancellations (one, or a suffix): every call returns what the reference
    MemoryStore returns, and the inputs, commands, events and head agree after each one."""
    sid = f"mailbox{next(_examples)}"
    url = f"{shared_database}?synchronous_commit=off"
    async with opened(url) as store:
        sides = [_Executor(lash.store.MemoryStore()), _Executor(store)]
        for step, op in enumerate(ops):
            got = [await _mailbox_step(sid, side, op) for side in sides]
            assert got[0] == got[1], (step, op)
            views = [await _mailbox_view(sid, side.store) for side in sides]
            assert views[0] == views[1], (step, op)


def test_the_documented_host_config_names_a_postgres_store() -> None:
    """docs/examples/persistence_postgres.toml loads, and its URL sets the pool and passes
    sslmode on, with no password in it."""
    example = Path(__file__).resolve().parent.parent / "docs/examples/persistence_postgres.toml"
    config = lash.HostConfig.load(example, environ={})
    settings = parse_url(config.store or "")
    assert (settings.pool_size, settings.secrets) == (20, ())
    assert settings.dsn == (
        "postgresql://lash@db.internal:5432/lash?sslmode=require&application_name=lash"
    )


# -- the test server itself --------------------------------------------------------------------


def test_a_missing_server_is_reported_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PostgreSQL's programs the test server says so, and how to install them."""
    monkeypatch.setattr(_postgres.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(_postgres.shutil, "which", lambda name: None)
    with pytest.raises(_postgres.PostgresUnavailable, match="apt-get install -y postgresql"):
        _postgres.find_bindir()


def test_a_server_that_cannot_start_is_reported_with_its_log() -> None:
    """A server that refuses to start raises with pg_ctl's error and the server's own words,
    and leaves no directory behind."""
    server = _postgres.PostgresServer()
    with pytest.raises(_postgres.PostgresUnavailable) as failed:
        server.start(max_connections="many")
    assert "pg_ctl failed" in str(failed.value)
    assert 'invalid value for parameter "max_connections": "many"' in str(failed.value)
    assert server.root is None


async def test_an_observer_in_another_core_is_woken_by_notify_not_by_polling(
    postgres_url: str,
) -> None:
    """core.observe over Postgres waits on LISTEN/NOTIFY: a turn another core commits reaches
    the observer well before the polling fallback (NOTIFY_FALLBACK seconds) would."""
    from lash._kernel.observation import NOTIFY_FALLBACK

    def core(recorder: Recorder) -> lash.LashCore:
        return lash.LashCore(
            plugins=[standard, stores, recorder],
            autoload=False,
            disable=["scripted", "openai"],
            provider="recorder",
            store=postgres_url,
            observe_poll=60.0,  # were it polling, the observer would wait this long
        )

    watcher, runner = core(Recorder([])), core(Recorder([{"text": "done"}]))
    try:
        start = (await watcher.current("watched")).cursor
        seen: list[float] = []

        async def watch() -> None:
            async with contextlib.aclosing(watcher.observe("watched", after=start)) as events:
                async for event in events:
                    if isinstance(event, lash.ObservedEvent) and event.type == "turn_committed":
                        seen.append(time.monotonic())
                        return

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.3)  # the watcher is waiting on the store by now
        session = await runner.session("watched").open()
        await session.turn("go").run()
        committed = time.monotonic()
        await asyncio.wait_for(task, NOTIFY_FALLBACK)
        assert seen[0] - committed < NOTIFY_FALLBACK / 5, seen[0] - committed
    finally:
        await watcher.aclose()
        await runner.aclose()
