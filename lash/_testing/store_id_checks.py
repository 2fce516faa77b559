"""Store conformance check: every store accepts exactly the session ids of the one rule.

The rule lives in :func:`lash.store.check_session_id` (``lash/_store/ids.py``). A store that
calls it first in each method taking a session id passes; one that lets a bad id through (to a
key, a SQL parameter, a file name) or refuses a good one (a column too short for 256 characters,
a text type that drops what is not ASCII) fails, naming the id and the method.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from lash._store.ids import MAX_SESSION_ID_LENGTH
from lash._store.protocol import Store
from lash._store.records import CommitDelta, Lease
from lash._testing.store_checks import (
    LONG_TTL,
    Chain,
    commit_at,
    describe,
    expect,
    fail,
    load_record,
    short,
    summaries_of,
)
from lash.errors import LeaseLost, RevisionConflict, SessionBusy, SessionError, UnknownSession

#: One id breaking each part of the rule (the non-str one included: the rule says ``str``).
BAD_SESSION_IDS: tuple[Any, ...] = (
    "",
    "x" * (MAX_SESSION_ID_LENGTH + 1),
    "lone \udc80 surrogate",
    "nul\x00inside",
    "line\nbreak",
    "tab\tinside",
    "del\x7finside",
    "c1\x85inside",
    "separator\u2028inside",
    " leading-space",
    "trailing-space ",
    "trailing-nbsp\u00a0",
    42,
)

#: Errors that say something else than "bad id": a store raising one of them checked the
#: session (its lease, its head) instead of the id.
_OTHER_SESSION_ERRORS = (LeaseLost, RevisionConflict, SessionBusy, UnknownSession)


async def _expect_refused(call: Awaitable[object], what: str) -> None:
    try:
        result = await call
    except SessionError as exc:
        if isinstance(exc, _OTHER_SESSION_ERRORS):
            fail(
                f"{what}: expected SessionError for the invalid id, got {describe(exc)} "
                "(check the id with lash.store.check_session_id() before anything else)"
            )
        return
    except Exception as exc:
        raise AssertionError(
            f"{what}: expected SessionError for the invalid id, got {describe(exc)}"
        ) from exc
    fail(f"{what}: expected SessionError for the invalid id, but it returned {short(result)}")


def good_session_ids() -> tuple[str, ...]:
    """Ids at the edges of the rule, unique per run: the longest, non-ASCII, SQL and path marks."""
    tag = uuid.uuid4().hex[:12]
    longest = f"conformance-ids-{tag}-é✓😀-"
    return (
        longest + "x" * (MAX_SESSION_ID_LENGTH - len(longest)),
        f"conformance ids {tag}: 'quoted' \"double\" ; DROP TABLE sessions; --",
        f"conformance/ids/{tag}/../%2F?*\\",
        f"x{tag}",
    )


async def check_session_id_rule(store: Store) -> None:
    """Every method taking a session id refuses an invalid one with SessionError (and writes
    nothing); ids at the edges of the rule commit, load, list and delete like any other."""
    for bad in BAD_SESSION_IDS:
        shown = short(bad, 60)
        lease = Lease(bad, "owner-a", 1, time.time() + LONG_TTL)
        nodes = Chain().exchange("q", "a")
        await _expect_refused(
            store.acquire_lease(bad, "owner-a", ttl=LONG_TTL), f"acquire_lease({shown})"
        )
        await _expect_refused(store.load(bad), f"load({shown})")
        await _expect_refused(store.load(bad, full=True), f"load({shown}, full=True)")
        await _expect_refused(
            store.commit(bad, lease=lease, expected_revision=0, delta=CommitDelta(nodes=nodes)),
            f"commit({shown})",
        )
        await _expect_refused(store.delete(bad), f"delete({shown})")
    listed = [row.session_id for row in await store.list_sessions()]
    stored = [sid for sid in listed if sid in BAD_SESSION_IDS]
    expect(not stored, f"list_sessions() lists invalid session ids: {short(stored)}")

    good = good_session_ids()
    for sid in good:
        lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
        expect(lease.session_id == sid, f"acquire_lease({short(sid)}) returned {short(lease)}")
        await commit_at(store, lease, 0, nodes=Chain().exchange("q", "a"), turns=1)
        await load_record(store, sid)
    rows = await summaries_of(store, good)
    expect(
        sorted(row.session_id for row in rows) == sorted(good),
        f"list_sessions() must list every valid id once: expected {short(sorted(good))}, "
        f"got {short(sorted(row.session_id for row in rows))}",
    )
    for sid in good:
        lease = await store.acquire_lease(sid, "owner-a", ttl=LONG_TTL)
        await store.release_lease(lease)
        await store.delete(sid)
        expect(await store.load(sid) is None, f"load({short(sid)}) after delete must be None")


#: The checks of this module, in the order they run.
CHECKS: tuple[Callable[[Store], Awaitable[None]], ...] = (check_session_id_rule,)
