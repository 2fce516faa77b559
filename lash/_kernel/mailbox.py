"""Input for a session's mailbox: what may be queued, checked the same way for every way in
(``core.enqueue``, ``lash sessions enqueue``, directives, processes waking a session)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lash._contract.serialization import to_data
from lash._store.ids import check_session_id
from lash._store.records import Ingress, InputDraft
from lash.errors import SessionError

#: The largest input a session accepts: its text and items, as UTF-8 JSON.
MAX_INPUT_BYTES = 1 << 20

_INGRESS = ("next_turn", "active_turn")


def checked_input(
    session_id: str,
    text: str,
    *,
    items: Sequence[Any] = (),
    key: str | None = None,
    ingress: Ingress = "next_turn",
) -> InputDraft:
    """An :class:`~lash.store.InputDraft` for ``text``, or a :class:`lash.SessionError` saying
    what is wrong with it: an empty input (no text, no items), one larger than
    :data:`MAX_INPUT_BYTES`, items that are not JSON, an empty key, an unknown ingress."""
    check_session_id(session_id)

    def refuse(why: str) -> SessionError:
        return SessionError(
            f"session {session_id!r}: cannot queue this input: {why}", session_id=session_id
        )

    if not isinstance(text, str):
        raise refuse(f"the input must be text (str), got {type(text).__name__}")
    if ingress not in _INGRESS:
        raise refuse(f"ingress must be 'next_turn' or 'active_turn', got {ingress!r}")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise refuse(f"a key must be a non-empty string, got {key!r}")
    try:
        data = to_data(list(items))
    except Exception as exc:
        raise refuse(f"its items cannot be stored as JSON: {exc}") from None
    if not text.strip() and not data:
        raise refuse("it is empty (no text, no items)")
    size = len(text.encode("utf-8", "surrogatepass"))
    if data:
        size += len(json.dumps(data).encode())
    if size > MAX_INPUT_BYTES:
        raise refuse(f"it is {size:,} bytes, more than the {MAX_INPUT_BYTES:,} an input may hold")
    return InputDraft(text, tuple(data), key, ingress)
