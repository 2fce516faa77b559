"""When a running turn reads the store at its checkpoints (``input_poll``): input queued for it
from another process and cancellation requests.

The claim of the session's lease reads the store as such a poll would (its lease says whether
input is queued), so the poll's clock starts there: a turn that waited for the session longer
than ``input_poll`` does not read the store again at its first checkpoint for nothing, and
input queued from elsewhere, before the claim or after it, still joins the turn.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_mailbox import Model, Tools, chat, make_core

import lash
import lash.store

pytestmark = pytest.mark.anyio

POLL = 0.05  # input_poll of these tests' cores


def call(tool: str, call_id: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"id": call_id, "name": tool, "arguments": arguments}]}


class CountingStore(lash.store.MemoryStore):
    """A memory store that counts a running turn's polls (the reads its checkpoints make) and
    can take a while to grant a lease (a session held elsewhere, a busy process), queueing input
    "from another process" first when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.claim_delay = 0.0
        self.queue_before_claim: str | None = None
        self.active_claims = 0
        self.cancel_reads = 0

    async def acquire_lease(self, session_id: str, owner: str, **kw: Any) -> lash.store.Lease:
        if self.queue_before_claim is not None:
            text, self.queue_before_claim = self.queue_before_claim, None
            await self.enqueue_input(session_id, lash.store.InputDraft(text, ingress="active_turn"))
        if self.claim_delay:
            await asyncio.sleep(self.claim_delay)
        return await super().acquire_lease(session_id, owner, **kw)

    async def claim_inputs(self, lease: lash.store.Lease, **kw: Any) -> Any:
        if kw.get("ingress") == "active_turn":
            self.active_claims += 1
        return await super().claim_inputs(lease, **kw)

    async def cancel_request(self, session_id: str, turn_id: str) -> Any:
        self.cancel_reads += 1
        return await super().cancel_request(session_id, turn_id)


async def test_a_turn_that_waited_for_its_claim_does_not_poll_at_its_first_checkpoint() -> None:
    """The claim took 3x input_poll and nothing was queued: the checkpoint after the tool round
    reads neither queued input nor cancellation requests (the claim just did)."""
    store = CountingStore()
    model = Model(call("lookup", "c1", query="x"), {"text": "done"})
    core = make_core(model, Tools(), store=store, input_poll=POLL, control_poll=10.0)
    session = await core.session("s").open()
    store.claim_delay = 3 * POLL
    result = await session.turn("go").run()
    assert (result.outcome, result.text) == ("completed", "done")
    assert (store.active_claims, store.cancel_reads) == (0, 0)


async def test_input_queued_before_the_claim_joins_at_the_first_checkpoint() -> None:
    """Input for the running turn queued from elsewhere just before the (slow) claim: the lease
    says input is queued, so the first checkpoint past input_poll reads it and it joins."""
    store = CountingStore()
    model = Model(call("lookup", "c1", query="x"), {"text": "both"})
    core = make_core(model, Tools(), store=store, input_poll=POLL, control_poll=10.0)
    session = await core.session("s").open()
    store.claim_delay = 2 * POLL
    store.queue_before_claim = "and this"
    result = await session.turn("go").run()
    assert result.text == "both"
    assert chat(model.requests[-1])[-1] == ("user", "and this")
    assert store.active_claims == 1
    assert [n.text for n in session.nodes if isinstance(n, lash.UserMessage)] == [
        "go",
        "and this",
    ]


async def test_input_queued_by_another_core_after_the_claim_joins_after_input_poll() -> None:
    """Another core (no in-process hint) queues input while the tool runs; the tool returns
    after 2x input_poll: the checkpoint after it reads the input, which reaches the model."""
    store = CountingStore()
    tools = Tools()
    model = Model(call("lookup", "c1", query="x"), {"text": "both"})
    core = make_core(model, tools, store=store, input_poll=POLL, control_poll=10.0)
    session = await core.session("s").open()
    tools.go_on.clear()
    task = asyncio.ensure_future(session.turn("go").run())
    await tools.running.wait()
    other = make_core(Model(), store=store)
    await other.enqueue("s", "and this", ingress="active_turn")
    await asyncio.sleep(2 * POLL)
    tools.go_on.set()
    result = await task
    assert result.text == "both"
    assert chat(model.requests[-1])[-1] == ("user", "and this")
    assert store.active_claims == 1


async def test_a_quick_turn_after_a_quick_claim_reads_nothing_at_its_checkpoints() -> None:
    """A turn whose claim and tool round take less than input_poll reads the store at none of
    its checkpoints (nothing queued here, no hint)."""
    store = CountingStore()
    model = Model(call("lookup", "c1", query="x"), {"text": "done"})
    core = make_core(model, Tools(), store=store, input_poll=10.0, control_poll=10.0)
    session = await core.session("s").open()
    await session.turn("go").run()
    assert (store.active_claims, store.cancel_reads) == (0, 0)
