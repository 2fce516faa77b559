"""The ``postgresql://`` store on a real PostgreSQL server (started by ``tests/_postgres.py``):
the conformance suite, migrations, secrets, commits (atomicity, races, cost), the kernel."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
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
from _postgres import PostgresServer, free_port
from _recorder import Recorder
from hypothesis import HealthCheck, given, settings
from test_sqlite_store import every_kind, operations, without_times

import lash
import lash.store
from lash.testing import STORE_CHECKS, run_store_check
from lash_plugins_builtin import _postgres_schema, plan, standard, stores
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
        tables = ["lash_sessions", *_postgres_schema.SESSION_TABLES]
        return {
            t: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {t} ORDER BY 1, 2")]
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
        assert tables == {"lash_migrations", "lash_sessions", *_postgres_schema.SESSION_TABLES}
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
        ("postgresql://u@h/db?password=hunter22&pool_size=-3", "?password=***&pool_size=-3"),
    ],
)
def test_bad_urls_are_config_errors_without_the_password(url: str, expected: str) -> None:
    """A bad URL is a ConfigError that says what is wrong and masks the password."""
    with pytest.raises(lash.ConfigError) as error:
        parse_url(url)
    assert expected in str(error.value)
    assert "hunter22" not in str(error.value)


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
    """A commit whose last write fails (a trigger refuses a usage total) leaves every table as
    it was, and the next commit at the same revision goes through."""
    async with opened(postgres_url) as store:
        lease = await leased(store, "s")
        await store.commit(
            "s", lease=lease, expected_revision=0,
            delta=lash.store.CommitDelta(nodes=tuple(every_kind("F1")), plugin_states={"p": 1},
                                   usage={"turn": lash.Usage(1, 1, 1)}, turns=1),
        )  # fmt: skip
        async with admin(postgres_server, database_of(postgres_url)) as conn:
            await conn.execute(
                """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
                CREATE TRIGGER refuse BEFORE INSERT ON lash_usage_totals FOR EACH ROW
                WHEN (NEW.source = 'boom') EXECUTE FUNCTION refuse();"""
            )
        before = await table_rows(postgres_url)
        doomed = lash.store.CommitDelta(
            nodes=tuple(every_kind("F2")),
            plugin_states={"p": 2, "q": 3},
            config=lash.SessionConfig(model="lost"),
            pending=("lost",),
            usage={"turn": lash.Usage(5, 5, 5), "boom": lash.Usage(1)},
            turns=1,
            replace=True,
        )
        with pytest.raises(
            lash.LashError, match=r"commit to session 's' failed: .*refused by the test"
        ):
            await store.commit("s", lease=lease, expected_revision=1, delta=doomed)
        assert await table_rows(postgres_url) == before
        assert (
            await store.commit(
                "s", lease=lease, expected_revision=1, delta=attrs.evolve(doomed, usage={})
            )
            == 2
        )


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
        }
        for what, delta in bad.items():
            with pytest.raises(lash.SessionError, match=f"session 's': cannot store the {what}"):
                await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        assert await store.load("s") is None
        with pytest.raises(lash.SessionError, match="invalid session id 'a\\\\x00b'"):
            await store.acquire_lease("a\0b", "w", ttl=30)  # the session id rule, first
        with pytest.raises(lash.SessionError, match="cannot store the lease owner"):
            await store.acquire_lease("s2", "w\0", ttl=30)
        text = "nul \0 and \udc80 surrogate"
        exact = lash.store.CommitDelta(
            nodes=(attrs.evolve(node, text=text),), plugin_states={"p": {"k": text}}, turns=1
        )
        await store.commit("s", lease=lease, expected_revision=0, delta=exact)
        record = await store.load("s")
        assert record is not None and record.nodes == exact.nodes
        assert record.plugin_states == {"p": {"k": text}}
        (summary,) = await store.list_sessions()
        assert summary.last_user_message == text


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


async def test_one_transaction_and_at_most_one_wal_flush_per_committed_turn(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """A committed turn is exactly one transaction and at most 1.05 WAL flushes (fsync on),
    counted from pg_stat_database and pg_stat_wal over 100 turns (the difference between a
    run of 120 turns and one of 20, so that opening the store does not count)."""
    database = database_of(postgres_url)
    async with opened(postgres_url) as store:
        await store.open()  # migrations: not part of what is measured

    async def counters(conn: Any) -> tuple[int, int]:
        # A backend reports its counters when it exits: wait for the store's connections to.
        for _ in range(500):
            if not await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
            ):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the store's connections did not close")
        xacts = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            database,
        )
        syncs = await conn.fetchval("SELECT wal_sync FROM pg_stat_wal")
        return xacts, syncs

    async def run(turns: int, session_id: str) -> tuple[int, int]:
        async with admin(postgres_server) as conn:
            before = await counters(conn)
            async with opened(f"{postgres_url}?pool_size=1") as store:
                lease = await leased(store, session_id)
                for turn in range(turns):
                    delta = lash.store.CommitDelta(
                        nodes=tuple(every_kind(f"T{turn}", turn)[1:]),
                        plugin_states={"p": {"turn": turn}},
                        usage={"turn": lash.Usage(10, 2)},
                        turns=1,
                    )
                    await store.commit(session_id, lease=lease, expected_revision=turn, delta=delta)
            after = await counters(conn)
        return after[0] - before[0], after[1] - before[1]

    short = await run(20, "short")
    long = await run(120, "long")
    transactions, flushes = long[0] - short[0], long[1] - short[1]
    assert transactions == 100, (short, long)
    assert 0 < flushes <= 105, (short, long)


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


# -- property: random commit sequences round-trip like the reference store ---------------------

_examples = itertools.count()


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
