"""The session graph: node ids (64 random bits, unique across processes) and the active
frame's chat messages as a model call gets them."""

from __future__ import annotations

import os
import re
from typing import Any

import attrs
import hypothesis
import hypothesis.strategies as st
from hypothesis import given, settings
from test_sqlite_store import graph_nodes

from lash import (
    AssistantMessage,
    FrameBoundary,
    Message,
    ToolCall,
    ToolCallNode,
    ToolResultNode,
    TurnOutcome,
    UserMessage,
)
from lash._contract.graph import GraphNode, SessionGraph, new_node_id


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


# -- resume: extend in one pass -------------------------------------------------------------


class _Result(ToolResultNode):
    """A subclass of a node class: the one-pass build must treat it as append does."""


def _as_subclass(node: Any) -> Any:
    """A tool result as an instance of a subclass (other nodes as they are)."""
    if type(node) is not ToolResultNode:
        return node
    return _Result(**attrs.asdict(node, recurse=False))


def _one_by_one(start: list[Any], nodes: list[Any]) -> SessionGraph:
    graph = SessionGraph()
    for node in [*start, *nodes]:
        graph.append(node)
    return graph


@settings(max_examples=200, deadline=None)
@given(
    start=st.lists(graph_nodes(), max_size=4),
    nodes=st.lists(graph_nodes() | graph_nodes().map(_as_subclass), max_size=12),
)
def test_extend_builds_what_append_builds(start: list[Any], nodes: list[Any]) -> None:
    """extend (the resume path) leaves the graph with the same nodes and the same messages,
    of the same classes, as appending the nodes one by one."""
    graph = SessionGraph()
    graph.extend(start)
    graph.extend(nodes)
    expected = _one_by_one(start, nodes)
    assert graph.nodes == expected.nodes
    assert [type(n) for n in graph.nodes] == [type(n) for n in expected.nodes]
    assert graph.messages() == expected.messages()
    assert all(type(m) is Message for m in graph.messages())


def test_extend_gives_the_messages_a_model_sees() -> None:
    """A frame as a resumed session holds it: a user message, an assistant message asking
    for a tool, the call, its (projected) result, the answer, the outcome, then a turn that
    failed before any answer; after a boundary, only the new frame's messages remain."""
    call = ToolCall("c1", "echo", {"text": "x"})
    head = {"parent_id": None, "frame_id": "f", "turn": 1}
    nodes = [
        UserMessage(id="1", **head, text="hi"),
        AssistantMessage(id="2", **head, text="", tool_calls=(call,)),
        ToolCallNode(id="3", **head, call=call),
        ToolResultNode(id="4", **head, call_id="c1", name="echo", content="long", projected="x"),
        AssistantMessage(id="5", **head, text="done"),
        TurnOutcome(id="6", **head, turn_id="t1", outcome="completed"),
        UserMessage(id="7", **head, text="again"),
        TurnOutcome(id="8", **head, turn_id="t2", outcome="failed", reason="boom"),
    ]
    graph = SessionGraph()
    graph.extend(nodes)
    assert graph.messages() == [
        Message("user", "hi"),
        Message("assistant", "", (call,)),
        Message("tool", "x", tool_call_id="c1"),
        Message("assistant", "done"),
        Message("user", "again"),
        Message("assistant", "[no answer: the turn failed (boom)]"),
    ]
    boundary = FrameBoundary(
        id="9", parent_id="8", frame_id="g", turn=2, previous_frame_id="f", summary="s"
    )
    graph.extend([boundary, UserMessage(id="10", parent_id="9", frame_id="g", turn=3, text="b")])
    assert graph.nodes[0] is boundary and len(graph.nodes) == 2
    assert graph.messages() == [
        Message("user", "[Summary of the conversation so far]\ns"),
        Message("user", "b"),
    ]


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


@settings(max_examples=200, deadline=None)
@given(
    nodes=st.lists(
        graph_nodes()
        | graph_nodes().map(_as_subclass)
        | st.tuples(st.sampled_from(_KINDS), st.integers(0, 2)).map(lambda k: _node(*k)),
        max_size=16,
    )
)
def test_append_builds_what_the_general_way_builds(nodes: list[Any]) -> None:
    """append (the turn's nodes' messages made inline, by exact class) leaves the graph with
    the same nodes, messages (of the same classes) and image count as the general way for
    every node."""
    graph, general = SessionGraph(), SessionGraph()
    for node in nodes:
        graph.append(node)
        general._append_node(node)
        assert graph.nodes == general.nodes
        assert [type(n) for n in graph.nodes] == [type(n) for n in general.nodes]
        assert graph.messages() == general.messages()
        assert [type(m) for m in graph.messages()] == [type(m) for m in general.messages()]
        assert graph.image_messages == general.image_messages


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.sampled_from(_KINDS)),
        st.tuples(st.just("extend"), st.lists(st.sampled_from(_KINDS), max_size=4)),
        st.tuples(st.just("prompt"), st.sampled_from((None, "a", "a again", "b"))),
        st.tuples(st.just("release"), st.none()),
    ),
    max_size=60,
)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(_STEPS)
def test_a_prompt_built_on_the_last_one_is_the_messages_as_a_tuple(steps: list[Any]) -> None:
    """prompt_messages builds on the prompt it built last (the same first message, the same
    frame: that tuple plus the messages appended since); whatever happened in between
    (appends, extends, new frames, another system message or none, several prompts in a row,
    the last one released), it is ``messages()`` as a tuple, after the system message when given."""
    graph = SessionGraph()
    systems = {
        None: None,
        "a": Message("system", "be brief"),
        "a again": Message("system", "be brief"),  # equal, another object
        "b": Message("system", "be thorough"),
    }
    for index, (op, arg) in enumerate(steps):
        if op == "append":
            graph.append(_node(arg, index))
        elif op == "extend":
            graph.extend([_node(kind, index) for kind in arg])
        elif op == "release":
            graph.release_prompt()
        else:
            first = systems[arg]
            prompt = graph.prompt_messages(first)
            messages = graph.messages()
            assert prompt == ((first, *messages) if first is not None else tuple(messages))
            assert type(prompt) is tuple
            if first is not None:
                assert prompt[0] is first
