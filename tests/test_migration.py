"""A session stored by lash 0.1 opens and continues under today's lash.

tests/data/lash-0.1-session.sql is a database lash 0.1.0 wrote (see its header): session ``old-1``
configured with ``protocol_options={'max_tool_rounds': 3}`` and ``model='m1'`` on the ``scripted``
provider, one turn that called ``update_plan``, ``compact('keep it short')``, and a second turn:
head revision 4, 2 turns. What must hold (issue 11, "protocol options become plugin options"):
the protocol option is now the standard plugin's typed option, written in that form (and the
legacy entry dropped) with the next commit; plan state, usage and the active compaction frame
are intact; new turns run, commit and obey the limit of 3; the compaction plugin's options work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import lash
from lash_plugins_builtin import compaction, plan, scripted, standard, stores
from lash_plugins_builtin.plan import PlanState, PlanStep
from lash_plugins_builtin.standard import StandardOptions

pytestmark = pytest.mark.anyio

LIMIT = 5.0
DUMP = Path(__file__).parent / "data" / "lash-0.1-session.sql"

#: What lash 0.1 stored (from the dump).
COMPACTION_FRAME = "d9414e46bfe94edaab850a11374a19e6"
SUMMARY = "Summary: the user is packing."


def restore(dump: Path, path: Path) -> Path:
    """A new SQLite file at ``path`` made of ``dump`` (a script of SQL statements)."""
    conn = sqlite3.connect(path)
    try:
        conn.executescript(dump.read_text(encoding="utf-8"))
    finally:
        conn.close()
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh SQLite file holding lash 0.1's database."""
    return restore(DUMP, tmp_path / "old.db")


def update_plan(status: str) -> dict[str, Any]:
    steps = [{"step": "pack", "status": status}]
    return {"tool_calls": [{"name": "update_plan", "arguments": {"steps": steps}}]}


def make_core(db: Path, responses: list[Any], **options: dict[str, Any]) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, scripted, plan, compaction, stores],
        builtins=(),
        store=f"sqlite:///{db}",
        options={"scripted": {"responses": responses}, **options},
    )


def stored_config(db: Path) -> dict[str, Any]:
    """The session's config blob, read with sqlite3 (not through lash)."""
    conn = sqlite3.connect(db)
    try:
        [(data,)] = conn.execute(
            "SELECT data FROM blobs WHERE hash = "
            "(SELECT config_hash FROM sessions WHERE session_id = 'old-1')"
        ).fetchall()
    finally:
        conn.close()
    config: dict[str, Any] = json.loads(data)
    return config


async def test_a_01_session_opens_with_its_history_state_usage_and_frame(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The 0.1 session opens at revision 4 with 2 turns, its plan, usage and active compaction
    frame; its protocol option is the standard plugin's option now; opening writes nothing."""
    async with make_core(db, []) as core:
        with caplog.at_level(logging.WARNING, logger="lash"):
            session = await asyncio.wait_for(core.session("old-1").open(must_exist=True), LIMIT)

        assert (session.revision, session.turns) == (4, 2)
        assert session.config.model == "m1" and session.config.provider == "scripted"
        assert session.options(StandardOptions).max_tool_rounds == 3
        assert session.state(PlanState) == PlanState([PlanStep("pack", "in_progress")], 1)
        report = session.usage_report()
        assert report["by_source"]["turn"]["input_tokens"] == 37
        assert report["by_source"]["turn"]["output_tokens"] == 9
        assert report["by_source"]["compaction"]["input_tokens"] == 5
        boundary = session.nodes[0]
        assert isinstance(boundary, lash.FrameBoundary)
        assert (boundary.frame_id, boundary.reason, boundary.summary) == (
            COMPACTION_FRAME,
            "compaction",
            SUMMARY,
        )
        assert [type(n).__name__ for n in session.nodes[-2:]] == [
            "UserMessage",
            "AssistantMessage",
        ]
        assert "moved protocol options ['max_tool_rounds'] into plugin 'standard'" in caplog.text
        # Opening writes nothing: the store still holds lash 0.1's config.
        assert stored_config(db)["protocol_options"] == {"max_tool_rounds": 3}
        await session.close()


async def test_the_next_commit_writes_the_migrated_config_and_the_turn(db: Path) -> None:
    """The next turn runs and commits as revision 5, and the stored config has the option
    under plugin 'standard' and no legacy entry."""
    async with make_core(db, [{"text": "Still packing."}]) as core:
        session = await core.session("old-1").open(must_exist=True)

        result = await asyncio.wait_for(session.turn("And now?").run(), LIMIT)

        assert result.outcome == "completed" and result.revision == 5
        await session.close()

    raw = stored_config(db)
    assert "protocol_options" not in raw
    assert raw["plugin_options"] == {"standard": {"max_tool_rounds": 3}}
    async with make_core(db, []) as core:
        record = await core.store.load("old-1")
        assert record is not None and (record.revision, record.turns) == (5, 3)
        assert record.config.plugin_options == {"standard": {"max_tool_rounds": 3}}
        assert "lash" not in record.config.plugin_options
        reopened = await core.session("old-1").open(must_exist=True)
        assert reopened.options(StandardOptions).max_tool_rounds == 3
        await reopened.close()


async def test_the_migrated_round_limit_of_three_applies(db: Path) -> None:
    """A model asking for tools four rounds in a row is stopped by max_tool_rounds after three
    rounds (the default would be 8), the plan updated by each round; the turn commits."""
    script = [update_plan("in_progress")] * 3 + [update_plan("completed")]
    async with make_core(db, script) as core:
        session = await core.session("old-1").open(must_exist=True)

        result = await asyncio.wait_for(session.turn("Go on").run(), LIMIT)

        assert (result.outcome, result.reason) == ("stopped", "max_tool_rounds"), result
        assert len([r for r in result.tool_calls if not r.result.is_error]) == 3
        assert session.state(PlanState).updates == 4  # 1 from lash 0.1, 3 now
        assert result.revision == 5
        await session.close()


async def test_compaction_options_work_on_the_migrated_session(db: Path) -> None:
    """threshold_tokens set on the migrated session: a turn whose prompt went over it is
    followed by an automatic compaction (the compaction plugin's Compact directive), which
    commits a new frame seeded with the summary."""
    script = [
        {"text": "Packed.", "usage": {"input_tokens": 500, "output_tokens": 3}},
        {"text": "New summary.", "usage": {"input_tokens": 40, "output_tokens": 4}},
    ]
    async with make_core(db, script) as core:
        session = await core.session("old-1").open(must_exist=True)
        await session.configure(plugin_options={"compaction": {"threshold_tokens": 100}})
        assert session.revision == 5

        result = await asyncio.wait_for(session.turn("Done?").run(), LIMIT)

        assert result.outcome == "completed" and result.revision == 6
        assert session.revision == 7  # the turn, then the compaction it asked for
        boundary = session.nodes[0]
        assert isinstance(boundary, lash.FrameBoundary)
        assert (boundary.reason, boundary.summary) == ("auto_compaction", "New summary.")
        assert boundary.previous_frame_id == COMPACTION_FRAME
        assert session.usage_report()["by_source"]["compaction"]["input_tokens"] == 5 + 40
        await session.close()

    raw = stored_config(db)
    assert raw["plugin_options"] == {
        "standard": {"max_tool_rounds": 3},
        "compaction": {"threshold_tokens": 100},
    }
