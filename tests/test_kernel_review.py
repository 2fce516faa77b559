"""Review of the kernel round h-kernel (37a188a..h-kernel): behaviour that must not differ
from 37a188a's. Each test states what 37a188a did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from _cores import sqlite_url
from _recorder import Recorder

import lash
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio


@attrs.define
class NoFields:
    """A plugin state without fields (a marker: the plugin keeps nothing yet)."""


class Marker:
    lash_plugin = lash.PluginMeta(name="marker", state=NoFields)


async def test_a_state_without_fields_commits(tmp_path: Path) -> None:
    """A plugin whose state class has no fields: turns complete and commit, as on 37a188a
    (there, the state was unstructured to ``{}``, committed once)."""
    async with lash.LashCore(
        plugins=[standard, stores, Recorder(["one", "two"]), Marker()],
        builtins=(),
        store=sqlite_url(tmp_path),
        provider="recorder",
    ) as core:
        session = await core.session("s").open()
        first = await session.turn("hi").run()
        second = await session.turn("again").run()
        assert (first.outcome, second.outcome) == ("completed", "completed"), (
            first.error,
            second.error,
        )
        assert isinstance(session.state(NoFields), NoFields)
        await session.close()
