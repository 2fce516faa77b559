"""``stores``: the builtin store backends, contributed by URL scheme like any plugin's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import lash

if TYPE_CHECKING:
    import lash.store

lash_plugin = lash.PluginMeta(
    description="Builtin store backends: memory://, sqlite://, postgresql://."
)


# Every backend is built by a function that reaches its class only when a store is opened, so
# registering them (every core build, ``lash plugins``) imports neither the graph and store
# records behind MemoryStore nor aiosqlite nor asyncpg.


def memory_store(url: str) -> lash.store.Store:
    """``memory://``: sessions held in this process (tests, demos)."""
    import lash.store

    return lash.store.MemoryStore(url)


def sqlite_store(url: str) -> lash.store.Store:
    """``sqlite://`` (imported on first use: building a core does not load aiosqlite)."""
    from lash_plugins_builtin.sqlite import SQLiteStore

    return SQLiteStore(url)


def postgres_store(url: str) -> lash.store.Store:
    """``postgresql://`` (or ``postgres://``; imported on first use, as asyncpg is)."""
    from lash_plugins_builtin.postgres import PostgresStore

    return PostgresStore(url)


@lash.hookimpl
def register_stores(register: lash.RegisterStore) -> None:
    register("memory", memory_store)
    register("sqlite", sqlite_store)
    register("postgresql", postgres_store)
    register("postgres", postgres_store)
