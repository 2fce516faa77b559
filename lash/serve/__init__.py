"""``lash serve``: sessions over HTTP, with a resumable event stream (needs ``lash-sdk[serve]``).

:func:`create_app` builds the ASGI app (Starlette) over a core; ``lash serve`` runs it with
uvicorn, and a host may mount it in its own app. The OpenAPI document is at ``/openapi.json``.

Routes (JSON in and out; times are epoch seconds; every error is ``{"error": {"code": ...,
"message": ...}}`` with a 4xx/5xx status)::

    GET    /                                      the web page (lash/serve/static/index.html)
    GET    /static/{path}                         its scripts and styles
    GET    /openapi.json                          the OpenAPI document
    GET    /sessions                              {"sessions": [SessionSummary...]}
    GET    /sessions/{id}                         SessionView: {"session_id", "revision", "turns",
                                                  "cursor", "config", "usage": {source: usage},
                                                  "inputs": [Input...], "nodes": [node...]}
                                                  404 unknown_session
    DELETE /sessions/{id}                         204; 404 unknown_session; 409 session_busy
    GET    /sessions/{id}/inputs[?settled=true]   {"inputs": [Input...]}
    POST   /sessions/{id}/inputs                  {"text", "key"?, "ingress"?, "items"?}
                                                  -> 201 {"input": Input}; 409 input_conflict
    POST   /sessions/{id}/turns[?wait=true]       {"text", "id"?} -> 202 {"session_id",
                                                  "turn_id", "cursor"} (observe after cursor),
                                                  or with wait (or an id the session
                                                  committed already): 200 {"turn": TurnEnd};
                                                  503 stopping (Retry-After) once the server
                                                  stops (or a wait its stop cancelled before
                                                  the turn started)
    GET    /sessions/{id}/turns/{turn_id}         {"turn": TurnEnd}; 404 not_found
    POST   /sessions/{id}/turns/{turn_id}/cancel  {"reason"?} (body optional) -> {"status":
                                                  requested | already_requested |
                                                  already_finished | unknown, "session_id",
                                                  "turn_id", "record"}
    GET    /sessions/{id}/processes               {"processes": [ProcessRecord...]}
    GET    /sessions/{id}/approvals               {"approvals": [PendingApproval...]}
    POST   /sessions/{id}/approvals/{call_id}     {"decision": "approve" | "reject", "reason"?,
                                                  "key"?} -> {"answer": ApprovalAnswer}
    GET    /sessions/{id}/events[?after=CURSOR][&protocol=ag-ui]
                                                  text/event-stream: each message "id: CURSOR"
                                                  and "data: Event" (lash.event_json); resumes
                                                  after Last-Event-ID or ?after=; a gap event
                                                  first when the cursor left the replay window

``TurnEnd`` is the data of a ``turn_committed`` event: ``turn_id``, ``index``, ``outcome``,
``reason``, ``revision``, ``result`` (the stored result: ``text``, ``error``, ``usage``...) and
``tool_calls`` (``call_id``, ``name``, ``is_error``). ``Input`` is a
:class:`lash.store.PendingInput`, ``SessionSummary`` a :class:`lash.store.SessionSummary`,
nodes the stored form of :class:`lash.GraphNode` (tagged by ``type``).

With a token (``LASH_SERVE_TOKEN``; required by ``lash serve`` on any address but loopback),
every request carries ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``; the latter also sets
an HttpOnly cookie that authorizes the page's later requests.
"""

from lash.serve._app import MAX_BODY, create_app
from lash.serve._openapi import openapi

__all__ = ["MAX_BODY", "create_app", "openapi"]
