"""``stores``: the builtin store backends, contributed by URL scheme like any plugin's."""

from __future__ import annotations

import lash

lash_plugin = lash.PluginMeta(description="Builtin store backends: memory://, sqlite://.")


def sqlite_store(url: str) -> lash.Store:
    """``sqlite://`` (imported on first use: building a core does not load aiosqlite)."""
    from lash_plugins_builtin.sqlite import SQLiteStore

    return SQLiteStore(url)


@lash.hookimpl
def register_stores(register: lash.RegisterStore) -> None:
    register("memory", lash.MemoryStore)
    register("sqlite", sqlite_store)
