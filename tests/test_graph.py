"""Node ids (lash._contract.graph.new_node_id): 64 random bits, unique across processes."""

from __future__ import annotations

import os
import re

from lash._contract.graph import new_node_id


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
