"""Input for a session's mailbox: what may be queued, checked the same way for every way in
(``core.enqueue``, ``lash sessions enqueue``, directives, processes waking a session)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lash._contract.media import Image
from lash._contract.serialization import describe_value, to_data
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
    problem = items_problem(items)
    if problem is not None:
        raise refuse(problem)
    try:
        data = to_data(list(items))
        # to_data passes what it does not know through: json.dumps is the check. NaN and the
        # infinities are not JSON either (SQLite's insert refused them, other stores kept them).
        encoded = json.dumps(data, allow_nan=False) if data else ""
    except Exception as exc:
        raise refuse(f"its items cannot be stored as JSON: {exc}") from None
    if not text.strip() and not data:
        raise refuse("it is empty (no text, no items)")
    size = len(text.encode("utf-8", "surrogatepass")) + len(encoded)  # (encoded is ASCII)
    if size > MAX_INPUT_BYTES:
        raise refuse(f"it is {size:,} bytes, more than the {MAX_INPUT_BYTES:,} an input may hold")
    return InputDraft(text, tuple(data), key, ingress)


def check_source(session_id: str, call: str, source: Any) -> None:
    """``source`` of what ``call`` queues (who queued it: ``"host"``, ``"cli"``...), a string
    (or None, as the records allow). Before, memory:// kept another value as it was and SQLite
    and Postgres failed on it with a bare ``AttributeError``.

    :raises SessionError: naming the session and the call."""
    if source is not None and not isinstance(source, str):
        raise SessionError(
            f"session {session_id!r}: {call} got source={source!r}; it must be a string (who "
            "queued it)",
            session_id=session_id,
        )


def items_problem(items: Any) -> str | None:
    """Why ``items`` (an input's structured items) is not a list of values, or None. A string,
    bytes or a mapping is refused rather than taken apart: ``items="abc"`` was three items,
    ``"a"``, ``"b"`` and ``"c"``, and a dict its keys."""
    if isinstance(items, str | bytes | bytearray | Mapping) or not isinstance(items, Iterable):
        hint = " (one item is [value])" if isinstance(items, str | bytes | Mapping) else ""
        return f"items must be a list of values, got {describe_value(items)}{hint}"
    return None


def checked_turn_input(session_id: str, text: Any, items: Any) -> tuple[Any, ...]:
    """A turn's input checked before the turn is made (``session.turn``), as queued input is
    (:func:`checked_input`): its text a ``str``, its items a list of values, each JSON data or
    a :class:`lash.Image` (checked when the turn stages it). Returns the items as a tuple.

    Before, another text went to the model as it was and then failed the commit on a store
    that checks its nodes (after the model call), or was kept as it was on ``memory://``; an
    item that is not JSON failed the turn's claim on SQLite, naming its ``turn_started``
    event, and passed on ``memory://``.

    :raises SessionError: naming the session and what is wrong."""

    def refuse(why: str) -> SessionError:
        return SessionError(
            f"session {session_id!r}: turn() got an invalid input: {why}", session_id=session_id
        )

    if not isinstance(text, str):
        raise refuse(f"the input must be text (str), got {describe_value(text)}")
    if type(items) is tuple and not items:  # (the default: most turns have no items)
        return ()
    problem = items_problem(items)
    if problem is not None:
        raise refuse(problem)
    checked: tuple[Any, ...] = tuple(items)
    for index, item in enumerate(checked):
        if isinstance(item, Image):
            continue
        try:
            json.dumps(to_data(item), allow_nan=False)  # (NaN: as checked_input)
        except Exception as exc:
            raise refuse(f"items[{index}] cannot be stored as JSON: {exc}") from None
    return checked
