"""The session id rule: what every store and the kernel accept as a session id.

A session id is chosen by the host (a user id, a conversation id, a UUID) and travels everywhere:
into store keys and SQL parameters, file listings, log lines, terminal output and error
messages. So one rule, checked the same way by the kernel and by every store, says which strings
are ids. A session id is a ``str`` that

- is not empty;
- has at most :data:`MAX_SESSION_ID_LENGTH` (256) characters: room for any UUID, ULID or
  composite key (``"tenant/user/conversation-uuid"``), while the UTF-8 form stays within
  1,024 bytes, which every database can index as a key (PostgreSQL's B-tree entries are limited
  to about 2,700 bytes, MySQL's index keys to 3,072), and a listing stays readable;
- is encodable as UTF-8: no lone surrogates (``"\\udc80"``, what ``surrogateescape`` makes of
  an undecodable byte), which UTF-8 databases and files cannot hold;
- holds no control characters: none of C0 (U+0000 to U+001F: NUL, tab, newline...), DEL
  (U+007F) or C1 (U+0080 to U+009F), nor the Unicode line and paragraph separators (U+2028,
  U+2029). NUL ends a string in C and PostgreSQL refuses it in text; the others break a line
  of output or a log record, or can hide what an id really is on a terminal;
- neither starts nor ends with whitespace: ``"abc "`` and ``"abc"`` would be two sessions that
  look the same, and shells and copy-paste drop such spaces. Spaces inside an id are fine.

Anything else is refused with a :class:`lash.SessionError` that names the rule broken and shows
the id (``repr``, cut short).
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

from lash.errors import SessionError

__all__ = ["MAX_SESSION_ID_LENGTH", "check_session_id"]

#: The longest session id, in characters (code points).
MAX_SESSION_ID_LENGTH = 256

# C0, DEL, C1, the line and paragraph separators, and lone surrogates, found in one scan.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

_REPR = reprlib.Repr()
_REPR.maxstring = 80
_REPR.maxother = 80


def _problem(session_id: str) -> str | None:
    if not session_id:
        return "it is empty"
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        return f"it has {len(session_id)} characters, more than the {MAX_SESSION_ID_LENGTH} allowed"
    bad = _FORBIDDEN.search(session_id)
    if bad is not None:
        char = bad.group()
        if "\ud800" <= char <= "\udfff":
            return (
                f"it holds a lone surrogate (U+{ord(char):04X}) at index {bad.start()}, "
                "so it cannot be encoded as UTF-8"
            )
        return f"it holds a control character (U+{ord(char):04X}) at index {bad.start()}"
    if session_id[0].isspace() or session_id[-1].isspace():
        return "it starts or ends with whitespace"
    return None


def check_session_id(session_id: Any) -> str:
    """Return ``session_id`` if it is a valid session id; raise :class:`lash.SessionError` if not.

    Valid: a ``str`` of 1 to 256 characters, encodable as UTF-8 (no lone surrogates), without
    control characters (C0, DEL, C1, U+2028, U+2029) and without whitespace at either end.
    Stores call it first in every method that takes a session id, so all backends accept the
    same ids; the kernel calls it in :meth:`lash.LashCore.session`.

    :raises SessionError: naming the rule broken and showing the id (``repr``, cut short).
    """
    if not isinstance(session_id, str):
        raise SessionError(
            f"invalid session id {_REPR.repr(session_id)}: session ids are strings, "
            f"got {type(session_id).__name__}; pass the id as a str"
        )
    problem = _problem(session_id)
    if problem is not None:
        raise SessionError(
            f"invalid session id {_REPR.repr(session_id)}: {problem}; a session id is 1 to "
            f"{MAX_SESSION_ID_LENGTH} characters of UTF-8 text without control characters "
            "or whitespace at either end",
            session_id=session_id,
        )
    return session_id
