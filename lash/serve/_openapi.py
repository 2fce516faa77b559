"""The OpenAPI 3.1 document of ``lash serve`` (served at ``/openapi.json``; the docs' API
reference is generated from it). Written out by hand: the routes are few, and their shapes are
the contract the web page and other clients code against."""

from __future__ import annotations

from typing import Any

from lash._kernel.event_json import EVENT_TYPES
from lash._kernel.observation import EVENT_FORMAT
from lash.serve._errors import ERROR_CODES

_SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "1 to 256 characters, no control characters, no whitespace at either end "
    "(URL-encoded)",
    "schema": {"type": "string"},
}
_TURN_ID = {
    "name": "turn_id",
    "in": "path",
    "required": True,
    "description": "1 to 128 of A-Z a-z 0-9 . _ : -, starting with a letter or digit",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": "#/components/responses/Error"} for code in codes}


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_OBJECT: dict[str, Any] = {"type": "object"}

_PATHS: dict[str, Any] = {
    "/sessions": {
        "get": {
            "operationId": "listSessions",
            "summary": "List the sessions of the store",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "sessions": {"type": "array", "items": _ref("SessionSummary")}
                        },
                    },
                    "The sessions, most recently updated first",
                ),
                **_errors(401),
            },
        }
    },
    "/sessions/{session_id}": {
        "parameters": [_SESSION_ID],
        "get": {
            "operationId": "getSession",
            "summary": "The session as settled in the store, with the cursor of its latest event",
            "description": "Show this, then observe /events?after=<cursor>: nothing is missed.",
            "responses": {
                "200": _json(_ref("SessionView"), "The settled view"),
                **_errors(400, 401, 404),
            },
        },
        "delete": {
            "operationId": "deleteSession",
            "summary": "Delete the session (its mailbox, turn records and events too)",
            "responses": {
                "204": {"description": "Deleted"},
                **_errors(400, 401, 404, 409),
            },
        },
    },
    "/sessions/{session_id}/inputs": {
        "parameters": [_SESSION_ID],
        "get": {
            "operationId": "listInputs",
            "summary": "The session's queued input, oldest first",
            "parameters": [
                {
                    "name": "settled",
                    "in": "query",
                    "description": "true: completed and cancelled input too",
                    "schema": {"type": "boolean", "default": False},
                }
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"inputs": {"type": "array", "items": _ref("Input")}},
                    },
                    "The inputs",
                ),
                **_errors(400, 401),
            },
        },
        "post": {
            "operationId": "enqueueInput",
            "summary": "Queue input (idempotent by key); a worker or a drain runs it",
            "requestBody": _body(
                {
                    "text": {"type": "string", "description": "the input (at most 1 MiB of UTF-8)"},
                    "key": {
                        "type": ["string", "null"],
                        "description": "idempotency key: the same key and text return the input "
                        "already queued; other text is 409 input_conflict",
                    },
                    "ingress": {"enum": ["next_turn", "active_turn", None]},
                    "items": {"type": ["array", "null"], "description": "structured input"},
                },
                ["text"],
            ),
            "responses": {
                "201": _json(
                    {"type": "object", "properties": {"input": _ref("Input")}}, "The pending input"
                ),
                **_errors(400, 401, 409, 413, 415),
            },
        },
    },
    "/sessions/{session_id}/turns": {
        "parameters": [_SESSION_ID],
        "post": {
            "operationId": "startTurn",
            "summary": "Run a turn in this server's process",
            "description": "A turn id the session committed already is not run again (its "
            "stored result is returned), so a client may resubmit after a lost response.",
            "parameters": [
                {
                    "name": "wait",
                    "in": "query",
                    "description": "true: answer when the turn is committed, with its result; "
                    "false: 202 at once",
                    "schema": {"type": "boolean", "default": False},
                }
            ],
            "requestBody": _body(
                {
                    "text": {"type": "string"},
                    "id": {"type": ["string", "null"], "description": "the turn id (default: new)"},
                },
                ["text"],
            ),
            "responses": {
                "200": _json(
                    {"type": "object", "properties": {"turn": _ref("TurnEnd")}},
                    "(wait=true, or a turn id the session committed already: it is not run "
                    "again) the committed turn",
                ),
                "202": _json(
                    {
                        "type": "object",
                        "properties": {
                            "session_id": {"type": "string"},
                            "turn_id": {"type": "string"},
                            "cursor": {
                                "type": "string",
                                "description": "the session's latest event before the turn: "
                                "observe /events?after=<cursor> to follow the turn",
                            },
                        },
                    },
                    "(wait=false) the turn started",
                ),
                **_errors(400, 401, 404, 409, 413, 415),
                "503": {"$ref": "#/components/responses/Stopping"},
            },
        },
    },
    "/sessions/{session_id}/turns/{turn_id}": {
        "parameters": [_SESSION_ID, _TURN_ID],
        "get": {
            "operationId": "getTurn",
            "summary": "How a committed turn ended",
            "responses": {
                "200": _json(
                    {"type": "object", "properties": {"turn": _ref("TurnEnd")}},
                    "The turn (tool_calls empty: the calls are in the session's nodes)",
                ),
                **_errors(400, 401, 404),
            },
        },
    },
    "/sessions/{session_id}/turns/{turn_id}/cancel": {
        "parameters": [_SESSION_ID, _TURN_ID],
        "post": {
            "operationId": "cancelTurn",
            "summary": "Ask the turn to stop, wherever it runs (it commits as cancelled)",
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"reason": {"type": ["string", "null"]}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "status": {
                                "enum": [
                                    "requested",
                                    "already_requested",
                                    "already_finished",
                                    "unknown",
                                ]
                            },
                            "session_id": {"type": "string"},
                            "turn_id": {"type": "string"},
                            "record": {"type": ["object", "null"]},
                        },
                    },
                    "The receipt",
                ),
                **_errors(400, 401, 413, 415),
            },
        },
    },
    "/sessions/{session_id}/processes": {
        "parameters": [_SESSION_ID],
        "get": {
            "operationId": "listProcesses",
            "summary": "The background processes started under the session",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"processes": {"type": "array", "items": _OBJECT}},
                    },
                    "The processes (lash.ProcessRecord fields), oldest first",
                ),
                **_errors(400, 401),
            },
        },
    },
    "/sessions/{session_id}/approvals": {
        "parameters": [_SESSION_ID],
        "get": {
            "operationId": "listApprovals",
            "summary": "The session's tool calls waiting for a human's answer",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"approvals": {"type": "array", "items": _OBJECT}},
                    },
                    "lash.PendingApproval fields: call_id, tool, arguments, turn_id, index, "
                    "requested_at, requested_by, why",
                ),
                **_errors(400, 401),
            },
        },
    },
    "/sessions/{session_id}/approvals/{call_id}": {
        "parameters": [
            _SESSION_ID,
            {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "post": {
            "operationId": "answerApproval",
            "summary": "Approve or reject a held tool call (its turn goes on once all are)",
            "requestBody": _body(
                {
                    "decision": {"enum": ["approve", "reject"]},
                    "reason": {"type": ["string", "null"]},
                    "key": {"type": ["string", "null"], "description": "idempotency key"},
                },
                ["decision"],
            ),
            "responses": {
                "200": _json(
                    {"type": "object", "properties": {"answer": _OBJECT}},
                    "lash.ApprovalAnswer: outcome approved, rejected, already_answered, "
                    "expired or unknown",
                ),
                **_errors(400, 401, 413, 415),
            },
        },
    },
    "/sessions/{session_id}/events": {
        "parameters": [_SESSION_ID],
        "get": {
            "operationId": "streamEvents",
            "summary": "The session's events as Server-Sent Events, resumable by cursor",
            "description": "Each message's id is the event's cursor and its data one event "
            "(the Event schema; with protocol=ag-ui, AG-UI events). Resume with the "
            "Last-Event-ID header (EventSource does it) or ?after= (the header wins); a "
            "cursor older than the replay window yields a gap event first. Without either: "
            "from now on.",
            "parameters": [
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                {"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                {
                    "name": "protocol",
                    "in": "query",
                    "schema": {"enum": ["lash", "ag-ui"], "default": "lash"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The event stream",
                    "content": {"text/event-stream": {"schema": _ref("Event")}},
                },
                **_errors(400, 401),
            },
        },
    },
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": _json(_OBJECT, "The OpenAPI document")},
        }
    },
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"enum": sorted(ERROR_CODES)},
                    "message": {"type": "string"},
                },
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    },
    "SessionSummary": {
        "type": "object",
        "description": "lash.store.SessionSummary; times in epoch seconds",
        "properties": {
            "session_id": {"type": "string"},
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
            "turns": {"type": "integer"},
            "revision": {"type": "integer"},
            "last_user_message": {"type": ["string", "null"]},
            "usage": _OBJECT,
            "status": {"type": ["string", "null"]},
            "pending_inputs": {"type": "integer"},
            "parent_id": {"type": ["string", "null"]},
        },
    },
    "SessionView": {
        "type": "object",
        "description": "lash.SessionSnapshot: the active agent frame's nodes (each tagged by "
        "type: user, assistant, tool_call, tool_result, plugin, frame, outcome)",
        "properties": {
            "session_id": {"type": "string"},
            "revision": {"type": "integer"},
            "turns": {"type": "integer"},
            "cursor": {"type": "string"},
            "config": _OBJECT,
            "usage": {"type": "object", "additionalProperties": _OBJECT},
            "inputs": {"type": "array", "items": _ref("Input")},
            "nodes": {"type": "array", "items": _OBJECT},
        },
    },
    "Input": {
        "type": "object",
        "description": "lash.store.PendingInput",
        "properties": {
            "id": {"type": "string"},
            "session_id": {"type": "string"},
            "seq": {"type": "integer"},
            "text": {"type": "string"},
            "items": {"type": "array"},
            "key": {"type": ["string", "null"]},
            "ingress": {"enum": ["next_turn", "active_turn"]},
            "source": {"type": ["string", "null"]},
            "state": {"enum": ["pending", "claimed", "completed", "cancelled"]},
            "created_at": {"type": "number"},
            "settled_at": {"type": ["number", "null"]},
            "turn_id": {"type": ["string", "null"]},
        },
    },
    "TurnEnd": {
        "type": "object",
        "description": "The data of a turn_committed event",
        "properties": {
            "turn_id": {"type": "string"},
            "index": {"type": "integer"},
            "outcome": {"enum": ["completed", "stopped", "failed"]},
            "reason": {"type": ["string", "null"]},
            "revision": {"type": "integer"},
            "result": _OBJECT,
            "tool_calls": {"type": "array", "items": _OBJECT},
        },
    },
    "Event": {
        "type": "object",
        "description": "One event in its JSON form (lash.event_json), version v",
        "properties": {
            "v": {"const": EVENT_FORMAT},
            "type": {
                "enum": sorted(EVENT_TYPES),
                "description": "; ".join(f"{k}: {v}" for k, v in EVENT_TYPES.items()),
            },
            "session_id": {"type": "string"},
            "cursor": {"type": "string"},
            "live": {"type": "boolean"},
            "at": {"type": "number", "description": "epoch seconds"},
            "data": _OBJECT,
        },
        "required": ["v", "type", "session_id", "cursor", "live", "at", "data"],
    },
}


def openapi() -> dict[str, Any]:
    """The OpenAPI document of the ``lash serve`` API."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "lash serve", "version": str(EVENT_FORMAT)},
        "paths": _PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "responses": {
                "Error": _json(_ref("Error"), "An error (see the codes)"),
                "Stopping": {
                    **_json(
                        _ref("Error"),
                        "stopping: the server is stopping and starts no more turns; send the "
                        "turn again (same turn id) after Retry-After seconds, to this server "
                        "once it is back or to another",
                    ),
                    "headers": {
                        "Retry-After": {
                            "description": "seconds to wait before sending the turn again",
                            "schema": {"type": "integer"},
                        }
                    },
                },
            },
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "token_query": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
        "security": [{}, {"token": []}, {"token_query": []}],
    }
