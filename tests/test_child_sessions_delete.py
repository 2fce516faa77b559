"""A child session whose parent is deleted lives on, and its usage rolls up into no one from
then on: neither the deleted parent nor a session created again under the parent's id (docs:
subagents.rst, "After the parent is deleted"; persistence.rst, "Deleting"). On every builtin
store (conftest's ``store_url``), through the public API.

Expected values are the usage the scripted model reports for each session's own turns."""

from __future__ import annotations

from typing import Any

import pytest
from _delegating import Delegating
from _recorder import Recorder

import lash
from lash_plugins_builtin import standard, stores

pytestmark = pytest.mark.anyio


def usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"input_tokens": tokens_in, "output_tokens": tokens_out}


def replies(*answers: tuple[str, int, int]) -> Recorder:
    """A model that answers each turn with ``text``, having used ``(input, output)`` tokens."""
    return Recorder([{"text": t, "usage": usage(i, o)} for t, i, o in answers])


def make_core(store_url: str, rec: Recorder) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, rec], builtins=(), store=store_url, provider="recorder"
    )


def by_source(report: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {
        source: (row["input_tokens"], row["output_tokens"])
        for source, row in report["by_source"].items()
    }


async def stored_usage(core: lash.LashCore, session_id: str) -> dict[str, tuple[int, int]]:
    """The session's usage as a fresh handle loads it from the store."""
    session = await core.session(session_id).open()
    try:
        return by_source(session.usage_report())
    finally:
        await session.close()


async def listed_total(core: lash.LashCore, session_id: str) -> int:
    (row,) = [s for s in await core.store.list_sessions() if s.session_id == session_id]
    return row.usage.input_tokens


async def test_a_child_reopened_after_its_parent_is_created_again_rolls_up_into_no_one(
    store_url: str,
) -> None:
    """Parent, child, delete the parent, create it again, the child (reopened) commits again:
    the new parent's usage is its own only, in its open handle and in the store."""
    rec = replies(("p", 10, 1), ("c1", 7, 3), ("new p", 2, 2), ("c2", 5, 5))
    async with make_core(store_url, rec) as core:
        async with await core.session("p").open() as parent:
            await parent.turn("hello").run()
            async with await parent.child(id="p/kid").open() as child:
                await child.turn("help").run()
            assert by_source(parent.usage_report()) == {"turn": (10, 1), "child:p/kid": (7, 3)}
        await core.delete_session("p")
        async with await core.session("p").open() as again:
            await again.turn("hello again").run()
            async with await core.session("p/kid").open() as child:
                # The child keeps its link (it was created as p's child)...
                assert (child.is_root, child.parent_id) == (False, "p")
                await child.turn("more").run()
                assert by_source(child.usage_report()) == {"turn": (12, 8)}
            # ... but the session now named p is not its parent.
            assert by_source(again.usage_report()) == {"turn": (2, 2)}
        assert await stored_usage(core, "p") == {"turn": (2, 2)}
        assert await listed_total(core, "p") == 2


async def test_a_child_open_across_its_parents_delete_rolls_up_into_no_one(
    store_url: str,
) -> None:
    """A child whose handle stays open while its parent is deleted commits into the deleted
    parent's tombstone nothing, and nothing into the session created again under its id
    (read from the store), nor into its grandparent."""
    rec = replies(
        ("g", 100, 0), ("p", 10, 1), ("c1", 7, 3), ("c2", 5, 5), ("new p", 2, 2), ("c3", 1, 1)
    )
    async with make_core(store_url, rec) as core:
        async with await core.session("g").open() as grand:
            await grand.turn("hello").run()
        async with await core.child_session("g", id="g/p").open() as parent:
            await parent.turn("hello").run()
        child = await core.child_session("g/p", id="g/p/kid").open()
        await child.turn("help").run()
        assert await stored_usage(core, "g/p") == {"turn": (10, 1), "child:g/p/kid": (7, 3)}
        assert await stored_usage(core, "g") == {"turn": (100, 0), "child:g/p": (17, 4)}

        await core.delete_session("g/p")
        await child.turn("more").run()  # into the tombstone: nothing
        async with await core.child_session("g", id="g/p").open() as again:
            await again.turn("hello again").run()
        await child.turn("still more").run()  # into the new g/p: nothing
        await child.close()

        assert await stored_usage(core, "g/p") == {"turn": (2, 2)}
        assert await listed_total(core, "g/p") == 2
        # The grandparent counts what the old g/p's line spent before the delete (its turn and
        # its child's first), and the new g/p's own turn.
        assert await stored_usage(core, "g") == {"turn": (100, 0), "child:g/p": (19, 6)}
        assert await stored_usage(core, "g/p/kid") == {"turn": (13, 9)}


async def test_a_handle_on_the_new_parent_counts_nothing_of_a_child_open_across_the_delete(
    store_url: str,
) -> None:
    """A child handle open while its parent is deleted (in the same core), then a handle on
    the session created again under the parent's id: the child's next commit shows in neither
    that handle's usage nor the store's."""
    rec = replies(("p", 10, 1), ("c1", 7, 3), ("new p", 2, 2), ("c2", 5, 5))
    async with make_core(store_url, rec) as core:
        async with await core.session("p").open() as parent:
            await parent.turn("hello").run()
        async with await core.child_session("p", id="p/kid").open() as child:
            await child.turn("help").run()
            await core.delete_session("p")
            async with await core.session("p").open() as again:
                await again.turn("hello again").run()
                await child.turn("more").run()
                assert by_source(again.usage_report()) == {"turn": (2, 2)}
        assert await stored_usage(core, "p") == {"turn": (2, 2)}


async def test_a_child_made_in_its_new_parents_first_turn_rolls_up_into_it(
    store_url: str,
) -> None:
    """After a delete, a session created again under the id runs a child in its first turn
    (before its own first commit): the child's usage rolls up into it, once."""

    def parent_turn() -> list[dict[str, Any]]:
        call = {"name": "delegate", "arguments": {"task": "look"}}
        return [
            {"tool_calls": [call], "usage": usage(10, 1)},
            {"text": "sub", "usage": usage(7, 3)},
            {"text": "done", "usage": usage(1, 1)},
        ]

    rec = Recorder([*parent_turn(), *parent_turn()])
    core = lash.LashCore(
        plugins=[standard, stores, rec, Delegating()],
        builtins=(),
        store=store_url,
        provider="recorder",
    )
    async with core:
        async with await core.session("p").open() as parent:
            await parent.turn("go").run()
        assert await stored_usage(core, "p") == {"turn": (11, 2), "child:p/sub1": (7, 3)}
        await core.delete_session("p")
        async with await core.session("p").open() as again:
            await again.turn("go").run()
            assert by_source(again.usage_report()) == {"turn": (11, 2), "child:p/sub2": (7, 3)}
        assert await stored_usage(core, "p") == {"turn": (11, 2), "child:p/sub2": (7, 3)}


async def test_an_orphaned_child_reopens_and_its_old_id_under_a_new_parent_rolls_up_nowhere(
    store_url: str,
) -> None:
    """A child whose parent was deleted still opens by id, still a child of its parent's id,
    and commits into no one; opened again from the handle of a session created again under
    the parent's id (same child id), it is not that session's child either."""
    rec = replies(("p", 10, 1), ("c1", 7, 3), ("c2", 5, 5), ("new p", 2, 2), ("c3", 1, 1))
    async with make_core(store_url, rec) as core:
        async with await core.session("p").open() as parent:
            await parent.turn("hello").run()
            async with await parent.child(id="p/kid").open() as child:
                await child.turn("help").run()
        await core.delete_session("p")
        async with await core.session("p/kid").open() as child:
            assert (child.is_root, child.parent_id) == (False, "p")
            await child.turn("alone").run()
        async with await core.session("p").open() as again:
            await again.turn("hello again").run()
            async with await again.child(id="p/kid").open() as child:
                await child.turn("back").run()
                assert by_source(child.usage_report()) == {"turn": (13, 9)}
            assert by_source(again.usage_report()) == {"turn": (2, 2)}
        assert await stored_usage(core, "p") == {"turn": (2, 2)}


async def test_a_child_made_from_a_handle_on_a_deleted_parent_rolls_up_into_no_one(
    store_url: str,
) -> None:
    """A host keeps a parent's handle; the session is deleted; a child made from that handle
    is the deleted session's child: its usage goes neither into the deleted parent's tombstone
    nor into the session created again under the id."""
    rec = replies(("p", 10, 1), ("c1", 7, 3), ("new p", 2, 2), ("c2", 5, 5))
    async with make_core(store_url, rec) as core:
        parent = await core.session("p").open()
        await parent.turn("hello").run()
        await core.delete_session("p")
        async with await parent.child(id="p/kid").open() as child:
            await child.turn("help").run()
        await parent.close()
        async with await core.session("p").open() as again:
            await again.turn("hello again").run()
        async with await core.session("p/kid").open() as child:
            assert (child.is_root, child.parent_id) == (False, "p")
            await child.turn("more").run()
        assert await stored_usage(core, "p") == {"turn": (2, 2)}
        assert await listed_total(core, "p") == 2
