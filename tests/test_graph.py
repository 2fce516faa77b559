"""The session graph: node ids (64 random bits, unique across processes) and the active
frame's chat messages as a model call gets them."""

from __future__ import annotations

import os
import re

import hypothesis
import hypothesis.strategies as st

from lash._contract.graph import (
    AssistantMessage,
    FrameBoundary,
    GraphNode,
    SessionGraph,
    ToolResultNode,
    TurnOutcome,
    UserMessage,
    new_node_id,
)
from lash._contract.types import Message


def test_node_ids_are_16_hex_digits_and_do_not_repeat() -> None:
    """100,000 ids: each 16 lowercase hex digits, no two alike."""
    ids = [new_node_id() for _ in range(100_000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    """The id generator is reseeded in a forked child: its ids differ from the parent's next."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next 100 ids and leave at once
        os.write(write, " ".join(new_node_id() for _ in range(100)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    parent = [new_node_id() for _ in range(100)]
    assert len(child) == 100
    assert not set(child) & set(parent)


_IMAGE_REF = {"type": "image", "media_type": "image/png", "sha256": "ab" * 32}
_URL_REF = {"type": "image", "url": "https://example.com/a.png"}


def _node(kind: str, index: int) -> GraphNode:
    """A node of one of the kinds the graph treats differently for the model's messages."""
    base = {"id": new_node_id(), "parent_id": None, "frame_id": f"f{index}", "turn": 1}
    if kind == "user":
        return UserMessage(**base, text="hi")
    if kind == "user+image":
        return UserMessage(**base, text="look", items=("a caption", _IMAGE_REF))
    if kind == "user+url":
        return UserMessage(**base, text="look", items=(_URL_REF,))
    if kind == "user+other":  # items, but none an image
        return UserMessage(**base, text="data", items=({"type": "note"},))
    if kind == "assistant":
        return AssistantMessage(**base, text="ok")
    if kind == "result":
        return ToolResultNode(**base, call_id="c", name="t", content="r")
    if kind == "boundary":
        return FrameBoundary(**base, previous_frame_id=None)
    if kind == "boundary+summary":
        return FrameBoundary(**base, previous_frame_id=None, summary="so far")
    return TurnOutcome(**base, turn_id="t", outcome="failed" if kind == "failed" else "completed")


_KINDS = (
    "user", "user+image", "user+url", "user+other", "assistant", "result",
    "boundary", "boundary+summary", "completed", "failed",
)  # fmt: skip


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.lists(st.sampled_from(_KINDS), max_size=40))
def test_the_image_count_and_prompt_messages_follow_the_general_path(kinds: list[str]) -> None:
    """After every append, the graph's count of messages with images equals a count over
    ``messages()``, and ``prompt_messages`` is ``messages()`` as a tuple (after a system
    message when given)."""
    graph = SessionGraph()
    system = Message("system", "be brief")
    for index, kind in enumerate(kinds):
        graph.append(_node(kind, index))
        messages = graph.messages()
        assert graph.image_messages == sum(1 for m in messages if m.images)
        assert graph.prompt_messages() == tuple(messages)
        assert graph.prompt_messages(system) == (system, *messages)
    # Independently of messages(): the active frame's user messages with image items.
    frame = graph.nodes
    expected = sum(1 for n in frame if isinstance(n, UserMessage) and n.text == "look")
    assert graph.image_messages == expected
