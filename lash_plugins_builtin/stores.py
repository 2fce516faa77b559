"""``stores``: the builtin store backends, contributed by URL scheme like any plugin's."""

from __future__ import annotations

import lash

lash_plugin = lash.PluginMeta(
    description="Builtin store backends: memory://, sqlite://, postgresql://."
)


# Every backend is built by a function that reaches its class only when a store is opened, so
# registering them (every core build, ``lash plugins``) imports neither the graph and store
# records behind MemoryStore nor aiosqlite nor asyncpg.


def memory_store(url: str) -> lash.Store:
    """``memory://``: sessions held in this process (tests, demos)."""
    return lash.MemoryStore(url)


def sqlite_store(url: str) -> lash.Store:
    """``sqlite://`` (imported on first use: building a core does not load aiosqlite)."""
    from lash_plugins_builtin.sqlite import SQLiteStore

    return SQLiteStore(url)


def postgres_store(url: str) -> lash.Store:
    """``postgresql://`` (or ``postgres://``; imported on first use, as asyncpg is)."""
    from lash_plugins_builtin.postgres import PostgresStore

    return PostgresStore(url)


@lash.hookimpl
def register_stores(register: lash.RegisterStore) -> None:
    register("memory", memory_store)
    register("sqlite", sqlite_store)
    register("postgresql", postgres_store)
    register("postgres", postgres_store)
