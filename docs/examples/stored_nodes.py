"""A store that keeps node rows ``(id, kind, frame_id, turn, text)`` loads them on demand:
read like the tuple of the same nodes, each node built the first time it is read."""

from __future__ import annotations

import json
from typing import Any

import lash
import lash.store


def rows_of(nodes: list[Any]) -> list[tuple[Any, ...]]:
    """The rows a store writes for ``nodes``: the body as text, the rest as columns."""
    kinds = {lash.UserMessage: "user", lash.AssistantMessage: "assistant"}
    return [(n.id, kinds[type(n)], n.frame_id, n.turn, lash.store.node_body_json(n)) for n in nodes]


def main() -> None:
    head = {"frame_id": "F", "turn": 1}
    nodes = [
        lash.UserMessage(id="u1", parent_id=None, text="hi", **head),
        lash.AssistantMessage(id="a1", parent_id="u1", text="hello", **head),
    ]
    rows = rows_of(nodes)
    print(rows[0])  # no "items": a field at its plain default is left out of the body
    # Any reader fills it back in: from_data of the body with the columns put back, too.
    whole = {"id": "u1", **head, **json.loads(rows[0][4]), "type": "user"}
    print(lash.from_data(whole, lash.GraphNode) == nodes[0])

    # In a store's load(): SessionRecord(..., nodes=nodes_on_demand(rows, what=...))
    stored = lash.store.nodes_on_demand(rows, what="stored node of 'demo'")
    print(len(stored), stored[-1].text)  # builds the last node only
    print(stored[-1] is stored[-1])  # built once: the same object on every read
    print(stored == tuple(nodes) == lash.store.nodes_from_rows(rows))

    spoiled = [(*rows[0][:4], '{"parent_id":null,"text":7}')]
    try:
        lash.store.nodes_on_demand(spoiled, what="stored node of 'demo'")[0]
    except lash.ValidationError as exc:
        print(exc)

    # Positional bodies: the fields' values in their order (parent_id, text, tool_calls,
    # usage: [] at its defaults; model left off), quicker to read back; rows may mix forms.
    positional = [
        (*row[:4], lash.store.node_row_json(n)) for row, n in zip(rows, nodes, strict=True)
    ]
    print(positional[1][4])
    print(lash.store.nodes_on_demand([rows[0], positional[1]]) == tuple(nodes))
    short = [(*rows[0][:4], "[null]")]  # text missing: one value of two or three
    try:
        lash.store.nodes_on_demand(short, what="stored node of 'demo'")[0]
    except lash.ValidationError as exc:
        print(exc)


if __name__ == "__main__":
    main()
