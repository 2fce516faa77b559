"""What the kernel-contract tests share: a core of real plugins around the Recorder provider,
on a real SQLite file, and the session as a fresh core reads it back from that file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _recorder import Recorder

import lash
import lash.store
from lash_plugins_builtin import standard, stores


def echo(text: str) -> str:
    """Echoes its input."""
    return text


class Echo:
    """A plugin contributing the ``echo`` tool."""

    lash_plugin = lash.PluginMeta(name="echo")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(echo)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/lash.db"


def make_core(
    tmp_path: Path,
    rec: Recorder,
    *plugins: object,
    base: Sequence[object] = (standard, stores),
    **kwargs: Any,
) -> lash.LashCore:
    """A core of exactly ``base``, ``rec`` (the provider) and ``plugins``, storing sessions in
    ``tmp_path``/lash.db."""
    return lash.LashCore(
        plugins=[*base, rec, *plugins],
        builtins=(),
        store=sqlite_url(tmp_path),
        provider="recorder",
        **kwargs,
    )


async def stored(
    tmp_path: Path, session_id: str = "s", *, full: bool = False
) -> lash.store.SessionRecord:
    """The session as a fresh core reads it from the SQLite file (``full``: every frame)."""
    async with lash.LashCore(plugins=[stores], builtins=(), store=sqlite_url(tmp_path)) as core:
        record = await core.store.load(session_id, full=full)
    assert record is not None, f"nothing stored for session {session_id!r}"
    return record
