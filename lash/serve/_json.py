"""JSON out of ``lash serve``: responses and events that encode whatever text the store holds.

A string may hold a lone surrogate (``"\\udcff"``), which is not Unicode and cannot be encoded
as UTF-8: the request bodies the server reads are refused for one (``read_json``), but text can
reach the store by other ways (a Python host's ``enqueue``; ``lash sessions enqueue`` given an
argument that is not UTF-8). Encoded naively, the session's view and every event that carries
it would fail, and its event stream would break at that event on every reconnection; here the
surrogate is sent as a JSON escape instead, which JSON allows.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


def json_text(data: Any) -> str:
    """``data`` as compact JSON, non-ASCII text as itself; a string that is not Unicode (a lone
    surrogate) makes the whole document ASCII, the surrogate a ``\\u`` escape."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":"))
    return text


class JsonResponse(JSONResponse):
    """A JSON response whose body encodes whatever text the store holds (:func:`json_text`)."""

    def render(self, content: Any) -> bytes:
        return json_text(content).encode("utf-8")
