"""The defaults a stored node body leaves out are part of the stored format.

``lash.store.node_body_json`` leaves out a field at its plain default, and a store reads it back
by filling the default in: a body written today means the node it was written from only while the
defaults stay what they are. So each one is written here as a literal, with the body text the
format gives for a node at those defaults: a change of a default fails here, and must come with a
migration of the stored bodies (or keep reading the old ones as they were written).
"""

from __future__ import annotations

from typing import Any

import pytest

import lash
import lash.store

HEAD = {"id": "n", "parent_id": None, "frame_id": "F", "turn": 1}
CALL = lash.ToolCall(id="c", name="echo", arguments={}, invalid_arguments=None)

#: (kind, the node with every defaulted field given its default explicitly, its body text)
CASES: list[tuple[str, Any, str]] = [
    ("user", lash.UserMessage(**HEAD, text="hi", items=()), '{"parent_id":null,"text":"hi"}'),
    (
        "assistant",
        lash.AssistantMessage(
            **HEAD, text="t", tool_calls=(), usage=lash.Usage(0, 0, 0), model=None
        ),
        # usage's default is an instance (not a plain value): written, its zero counts left out
        '{"parent_id":null,"text":"t","usage":{}}',
    ),
    (
        "tool_call",
        lash.ToolCallNode(**HEAD, call=CALL, plugin=None),
        '{"parent_id":null,"call":{"id":"c","name":"echo"}}',
    ),
    (
        "tool_result",
        lash.ToolResultNode(
            **HEAD, call_id="c", name="echo", content="x", is_error=False, projected=None
        ),
        '{"parent_id":null,"call_id":"c","name":"echo","content":"x"}',
    ),
    (
        "plugin",
        lash.PluginNode(**HEAD, plugin="p", kind="k", data=None),
        '{"parent_id":null,"plugin":"p","kind":"k"}',
    ),
    (
        "frame",
        lash.FrameBoundary(**HEAD, previous_frame_id=None, reason="root", summary=None),
        '{"parent_id":null,"previous_frame_id":null}',
    ),
    (
        "outcome",
        lash.TurnOutcome(
            **HEAD,
            turn_id="t",
            outcome="completed",
            reason=None,
            detail=None,
            error=None,
            cancelled_by=None,
        ),
        '{"parent_id":null,"turn_id":"t","outcome":"completed"}',
    ),
]


@pytest.mark.parametrize(("kind", "node", "body"), CASES, ids=[c[0] for c in CASES])
def test_a_body_at_the_defaults_is_written_and_read_as_its_literal(
    kind: str, node: Any, body: str
) -> None:
    assert lash.store.node_body_json(node) == body
    row = (node.id, kind, node.frame_id, node.turn, body)
    assert lash.store.nodes_from_rows([row]) == (node,)
    (stored,) = lash.store.nodes_on_demand([row])
    assert stored == node


def test_every_node_class_is_pinned() -> None:
    assert {type(node) for _, node, _ in CASES} == set(lash.GraphNode.__args__)  # type: ignore[attr-defined]
