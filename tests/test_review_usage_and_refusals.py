"""Review of the lead's commits of 2026-12-07 (00c6334, d39b235, 155e8c0): failing tests for
what they leave out. Expected values are the contracts the commits state: the listing's usage is
the total of what a load gives (00c6334: "exact"), a refusal names what to install (d39b235),
``session.complete`` takes token counts as a turn's model call takes them (155e8c0, and
docs/providers.rst: a bool or ``None`` fails with a ProviderError naming the provider)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from _cores import make_core, stored
from _recorder import Recorder
from test_session_services import LIMIT, Services
from test_sqlite_store import leased, opened

import lash
import lash.store
from lash_plugins_builtin import _sqlite_schema

pytestmark = pytest.mark.anyio


# -- 00c6334: the listing adds usage_totals in Python, from JSON ------------------------------


async def test_the_listing_of_real_totals_is_the_sum_of_the_load(tmp_path: Path) -> None:
    """A session's usage_totals row holding a REAL: two commits of 2**62 input tokens of the
    source "vision" overflow SQLite's integer upsert (the total becomes the REAL 2**63), and an
    older lash's row of a float count (before 155e8c0, ``complete`` committed a provider's float
    as it came). The listing's usage must be the total of the load's, as on main (SUM of a
    REAL is that REAL). Found: ``json_array`` writes a REAL with 15 significant digits
    (SQLite 3.40: 9.22337203685478e+18, 1234567.12345679), so the listing is off."""
    db = tmp_path / "lash.db"
    big = 2**62
    async with opened(db) as store:
        lease = await leased(store, "s")
        revision = 0
        for _ in range(2):
            delta = lash.store.CommitDelta(usage={"vision": lash.Usage(big, 0, 0)})
            revision = await store.commit("s", lease=lease, expected_revision=revision, delta=delta)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO usage_totals VALUES ('s', 'tool', 3, 1234567.1234567891, 0)")
        (kind,) = conn.execute(
            "SELECT typeof(input_tokens) FROM usage_totals WHERE source = 'vision'"
        ).fetchone()
    assert kind == "real"
    async with opened(db) as store:
        record = await store.load("s")
        (summary,) = await store.list_sessions()
    assert record is not None
    total = sum(record.usage.values(), lash.Usage())
    assert total.input_tokens == float(2**63) + 3
    assert summary.usage == total


# -- d39b235: the "newer lash" refusal -----------------------------------------------------------


@pytest.mark.parametrize("applied_by", ["unknown", "0.0.1"])
async def test_the_refusal_never_asks_for_a_version_this_lash_already_is(
    tmp_path: Path, applied_by: str
) -> None:
    """A file whose newest migration (one this lash does not know) was applied by a lash whose
    recorded version is not newer than this one: a source checkout records "unknown"
    (``lash_version``), a development build of an older version its own. The refusal must not
    ask to "upgrade lash to unknown or later" or to a version older than this lash's own (no
    upgrade it can act on); it names the migration to look for, as it does for this lash's own
    version. Found: "upgrade lash to unknown or later" / "to 0.0.1 or later"."""
    db = tmp_path / "lash.db"
    async with opened(db) as store:
        await store.list_sessions()
    newest = _sqlite_schema.LATEST + 1
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO lash_migrations (id, name, applied_at, lash_version) VALUES (?, ?, ?, ?)",
            (newest, "from the future", 1.0, applied_by),
        )
    async with opened(db) as store:
        with pytest.raises(lash.ConfigError) as refused:
            await store.load("s")
    message = str(refused.value)
    assert f"migration {newest}" in message and "newer lash" in message
    assert f"upgrade lash to {applied_by} or later" not in message
    assert f"knows migration {newest}" in message


# -- 155e8c0: complete() checks token counts as a turn's model call does ------------------------


def _turn_and_complete(usage: lash.Usage) -> tuple[Recorder, Recorder]:
    turn = Recorder([lash.ScriptedResponse(text="answer", usage=usage)])
    side = Recorder(
        [
            {"tool_calls": [{"name": "ask", "id": "c1", "arguments": {}}]},
            lash.ScriptedResponse(text="side answer", usage=usage),
            {"text": "done"},
        ]
    )
    return turn, side


@pytest.mark.parametrize(
    ("usage", "problem"),
    [
        (lash.Usage(0, None), "output_tokens None (NoneType)"),  # type: ignore[arg-type]
        (lash.Usage(None, None, None), "input_tokens None (NoneType)"),  # type: ignore[arg-type]
        (lash.Usage(False, 0, 0), "input_tokens False (bool)"),
    ],
)
async def test_complete_refuses_the_counts_a_turn_refuses_when_they_add_up_to_none(
    tmp_path: Path, usage: lash.Usage, problem: str
) -> None:
    """Counts a turn's model call refuses (ProviderError naming the provider and the count) but
    whose values are all falsy: ``Usage(0, None)``, all ``None`` (a JSON API's nulls), ``False``.
    ``complete`` must refuse them too (155e8c0; docs/providers.rst: "a plugin's
    SessionView.complete takes the counts the same way"). Found: the turn fails as documented,
    but ``complete`` returns its answer: ``collect_response`` adds the event's usage to
    ``Usage()``, and ``Usage.__add__`` returns ``self`` for an addend with no truthy count, so
    the counts ``usage_counts`` then checks are ``Usage()``'s. (A response of two ModelDone
    events is summed before the check too: 0.5 and 0.5 pass as 1, 1 and True as 2.)"""
    turn_rec, side_rec = _turn_and_complete(usage)
    # The turn's own model call: refused, as documented.
    (tmp_path / "turn").mkdir()
    core = make_core(tmp_path / "turn", turn_rec)
    session = await core.session("t").open()
    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)
    await core.aclose()
    assert result.outcome == "failed"
    assert f"provider 'recorder' reported usage with {problem}" in str(result.error)
    # The same counts through complete(), in a tool.
    core = make_core(tmp_path, side_rec, Services())
    session = await core.session("s").open()
    result = await asyncio.wait_for(session.turn("hi").run(), LIMIT)
    await core.aclose()
    (call,) = result.tool_calls
    assert result.outcome == "completed"
    assert call.result.is_error, call.result.content
    assert f"provider 'recorder' reported usage with {problem}" in call.result.content
    record = await stored(tmp_path, full=True)
    assert "ask" not in record.usage


# -- checked and found fine (pass) ---------------------------------------------------------------


@pytest.mark.parametrize("inline", [True, False])
async def test_an_older_lashs_delete_drops_the_turn_totals_of_turn_commits(
    tmp_path: Path, inline: bool
) -> None:
    """00c6334's trigger when a session's ledger is its turn records' (turn commits: no row in
    usage_ledger_rows): the older lash's delete reads them through the view before it deletes
    turn_records, so the trigger fires and the session started again has the new commit's
    usage only. A session with no usage at all lists ``Usage()`` of ints (NULL head columns,
    no usage_totals row: the aggregate's FILTER gives "[]")."""
    from test_sqlite_usage_review import OLDER_LASH_DELETE

    db = tmp_path / "lash.db"
    async with opened(db) as store:
        if not inline:
            store._inline = False
        lease = await leased(store, "s")
        revision = 0
        for n in range(2):
            turn = lash.store.TurnRecord("s", f"t{n}", n, "completed", 0)
            delta = lash.store.CommitDelta(
                usage={"turn": lash.Usage(10, 20, 30)}, turns=1, turn=turn
            )
            revision = await store.commit("s", lease=lease, expected_revision=revision, delta=delta)
        await store.release_lease(lease)
        assert await store.load("s") is not None
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT COUNT(*) FROM usage_ledger_rows").fetchone() == (0,)
            for sql in OLDER_LASH_DELETE:
                conn.execute(sql, ("s",))
        lease = await leased(store, "s")
        turn = lash.store.TurnRecord("s", "t9", 0, "completed", 0)
        delta = lash.store.CommitDelta(usage={"turn": lash.Usage(1, 2, 3)}, turns=1, turn=turn)
        await store.commit("s", lease=lease, expected_revision=0, delta=delta)
        lease = await leased(store, "empty")
        await store.commit(
            "empty", lease=lease, expected_revision=0, delta=lash.store.CommitDelta()
        )
        record = await store.load("s")
        listed = {s.session_id: s.usage for s in await store.list_sessions()}
    assert record is not None and record.usage == {"turn": lash.Usage(1, 2, 3)}
    assert listed == {"s": lash.Usage(1, 2, 3), "empty": lash.Usage()}
    assert [type(n) for n in (listed["empty"].input_tokens, listed["s"].input_tokens)] == [int, int]
