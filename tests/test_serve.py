"""``lash serve``: a real server subprocess on 127.0.0.1, spoken to over real HTTP (httpx):
the JSON API, the resumable event stream, a turn run by a real ``lash worker`` observed over
SSE, the AG-UI adapter, the token, and the one error shape."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _serve import Process, Server, sse_events, write_config

import lash


def shout_then(text: str, chunk_size: int = 2) -> list[dict[str, Any]]:
    """A script: the model calls ``shout`` with "hi", then answers ``text``."""
    return [
        {"tool_calls": [{"name": "shout", "arguments": {"text": "hi"}}]},
        {"text": text, "chunk_size": chunk_size},
    ]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start servers (``serve(responses, *args, store_query=..., **env)``); all are stopped."""
    started: list[Process] = []

    def start(responses: list[dict[str, Any]], *args: str, store_query: str = "", **env: str):
        site = write_config(tmp_path, responses, store_query=store_query)
        server = Server(tmp_path, site, *args, **env)
        started.append(server)
        return server

    yield start
    for proc in started:
        proc.stop()


def events_until(
    client: httpx.Client, url: str, stop: str, headers: dict[str, str] | None = None
) -> list[tuple[str | None, dict[str, Any]]]:
    """The stream's messages up to and including the first whose type is ``stop``."""
    got = []
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event_id, data in sse_events(response):
            got.append((event_id, data))
            if data["type"] == stop:
                return got
    raise AssertionError(f"the stream ended before a {stop} event: {got}")


def first_events(client: httpx.Client, url: str, n: int, **kwargs: Any) -> list[Any]:
    got = []
    with client.stream("GET", url, **kwargs) as response:
        assert response.status_code == 200, response.read()
        for item in sse_events(response):
            got.append(item)
            if len(got) == n:
                return got
    raise AssertionError(f"the stream ended after {got}")


def test_a_turn_with_wait_returns_its_committed_result(serve: Any) -> None:
    """POST turns?wait=true: the committed turn; the session view, listing and turn record
    agree; resubmitting the turn id returns the stored result without running it again."""
    server = serve(shout_then("Done: HI"))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        reply = client.post("/sessions/s/turns?wait=true", json={"text": "go", "id": "t1"})
        assert reply.status_code == 200, reply.text
        turn = reply.json()["turn"]
        assert (turn["turn_id"], turn["index"], turn["outcome"], turn["revision"]) == (
            "t1",
            1,
            "completed",
            1,
        )
        assert turn["result"]["text"] == "Done: HI"
        assert [(c["name"], c["is_error"]) for c in turn["tool_calls"]] == [("shout", False)]

        view = client.get("/sessions/s").json()
        assert (view["session_id"], view["revision"], view["turns"]) == ("s", 1, 1)
        types = [node["type"] for node in view["nodes"]]
        for kind in ("user", "assistant", "tool_call", "tool_result", "outcome"):
            assert kind in types
        results = [n for n in view["nodes"] if n["type"] == "tool_result"]
        assert results[0]["content"] == "HI"
        assert view["cursor"].startswith("e")

        rows = client.get("/sessions").json()["sessions"]
        assert [(r["session_id"], r["turns"], r["status"]) for r in rows] == [("s", 1, "completed")]
        assert client.get("/sessions/s/turns/t1").json()["turn"]["outcome"] == "completed"

        # The script is used up: running the turn again would fail it.
        again = client.post("/sessions/s/turns?wait=true", json={"text": "go", "id": "t1"})
        assert again.json()["turn"]["outcome"] == "completed"
        assert again.json()["turn"]["revision"] == 1
        assert client.get("/sessions/s").json()["revision"] == 1


def test_a_retried_turn_id_that_is_committed_answers_with_the_turn(serve: Any) -> None:
    """POST turns (no wait) again with a turn id the session committed: the turn is not run
    again, and the answer is the committed turn (200), not a 202 whose cursor is after the
    turn's commit, which a client following it would wait on for ever."""
    server = serve([{"text": "only once"}])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        started = client.post("/sessions/rt/turns", json={"text": "go", "id": "t1"})
        assert started.status_code == 202, started.text
        events = first_events(client, f"/sessions/rt/events?after={started.json()['cursor']}", 2)
        assert [d["type"] for _, d in events] == ["turn_started", "turn_committed"]
        # The client lost the 202 (a timeout) and retries, with or without wait:
        for query in ("", "?wait=true"):
            again = client.post(f"/sessions/rt/turns{query}", json={"text": "go", "id": "t1"})
            assert again.status_code == 200, (query, again.text)
            turn = again.json()["turn"]
            assert (turn["turn_id"], turn["outcome"], turn["revision"]) == ("t1", "completed", 1)
            assert turn["result"]["text"] == "only once"
        assert client.get("/sessions/rt").json()["revision"] == 1


def test_a_session_id_with_slashes_is_reached_url_encoded(serve: Any) -> None:
    """A composite session id (``tenant/user/conversation``, which session ids are made to
    hold), URL-encoded in the path: every route reaches that session, as the OpenAPI
    document says (not 404 not_found, its slashes taken for the path's)."""
    server = serve([{"text": "hello"}])
    quoted = "acme%2Fana%2Fc-1"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        queued = client.post(f"/sessions/{quoted}/inputs", json={"text": "queued"})
        assert queued.status_code == 201, queued.text
        assert queued.json()["input"]["session_id"] == "acme/ana/c-1"
        ran = client.post(f"/sessions/{quoted}/turns?wait=true", json={"text": "hi", "id": "t1"})
        assert ran.status_code == 200, ran.text
        assert ran.json()["turn"]["result"]["text"] == "hello"
        view = client.get(f"/sessions/{quoted}")
        assert (view.status_code, view.json()["session_id"]) == (200, "acme/ana/c-1")
        assert client.get(f"/sessions/{quoted}/turns/t1").json()["turn"]["outcome"] == "completed"
        assert [i["text"] for i in client.get(f"/sessions/{quoted}/inputs").json()["inputs"]] == [
            "queued"
        ]
        cancel = client.post(f"/sessions/{quoted}/turns/t1/cancel")
        assert cancel.json()["status"] == "already_finished"
        assert client.get(f"/sessions/{quoted}/processes").json() == {"processes": []}
        assert client.get(f"/sessions/{quoted}/approvals").json() == {"approvals": []}
        (event,) = first_events(client, f"/sessions/{quoted}/events?after=e0", 1)
        assert (event[1]["type"], event[1]["session_id"]) == ("input_queued", "acme/ana/c-1")
        listed = [row["session_id"] for row in client.get("/sessions").json()["sessions"]]
        assert listed == ["acme/ana/c-1"]
        assert client.get("/sessions/acme/ana").json()["error"]["code"] == "not_found"


def test_a_path_escape_that_is_not_utf8_is_refused(serve: Any) -> None:
    """A path's percent escapes are UTF-8 (RFC 3986): ``caf%E9`` and ``caf%E8`` (Latin-1) name
    no session id and are 400 invalid_session_id, not both read as ``caf\ufffd``, one session
    that two clients' different ids would share; a call id the same (400 invalid_request)."""
    server = serve([])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for quoted in ("caf%E9", "caf%E8", "caf%C3"):
            reply = client.post(f"/sessions/{quoted}/inputs", json={"text": "mine"})
            assert reply.status_code == 400, (quoted, reply.text)
            assert reply.json()["error"]["code"] == "invalid_session_id", quoted
        approve = client.post("/sessions/a/approvals/c%FF", json={"decision": "approve"})
        assert approve.status_code == 400, approve.text
        assert approve.json()["error"]["code"] == "invalid_request"
        # nothing was queued, under U+FFFD (%EF%BF%BD) or any other id
        assert client.get("/sessions/caf%EF%BF%BD/inputs").json() == {"inputs": []}
        # (UTF-8 escapes are read as such)
        queued = client.post("/sessions/caf%C3%A9/inputs", json={"text": "q"})
        assert (queued.status_code, queued.json()["input"]["session_id"]) == (201, "caf\u00e9")


def test_input_is_queued_idempotently_by_key(serve: Any) -> None:
    """POST inputs: 201 with the pending input; the same key and text return it again; the
    same key with other text is 409 input_conflict."""
    server = serve([])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.post("/sessions/m/inputs", json={"text": "hello", "key": "k1"})
        assert first.status_code == 201
        item = first.json()["input"]
        assert (item["text"], item["key"], item["state"], item["source"]) == (
            "hello",
            "k1",
            "pending",
            "serve",
        )
        again = client.post("/sessions/m/inputs", json={"text": "hello", "key": "k1"})
        assert again.json()["input"]["id"] == item["id"]
        conflict = client.post("/sessions/m/inputs", json={"text": "other", "key": "k1"})
        assert conflict.status_code == 409
        assert conflict.json()["error"]["code"] == "input_conflict"
        listed = client.get("/sessions/m/inputs").json()["inputs"]
        assert [i["id"] for i in listed] == [item["id"]]


def test_events_resume_after_last_event_id_or_after(serve: Any) -> None:
    """Each SSE message's id is its cursor; a new stream with Last-Event-ID (or ?after=) set
    to one resumes right after that event."""
    server = serve([])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n in range(3):
            client.post("/sessions/r/inputs", json={"text": f"q{n}"})
        everything = first_events(client, "/sessions/r/events?after=e0", 3)
        assert [d["data"]["input"]["text"] for _, d in everything] == ["q0", "q1", "q2"]
        assert [i for i, _ in everything] == [d["cursor"] for _, d in everything]
        assert all(d["v"] == 1 and d["type"] == "input_queued" for _, d in everything)
        first_id, second_id = everything[0][0], everything[1][0]
        assert first_id is not None and second_id is not None

        resumed = first_events(client, "/sessions/r/events", 2, headers={"Last-Event-ID": first_id})
        assert [d["data"]["input"]["text"] for _, d in resumed] == ["q1", "q2"]
        (after,) = first_events(client, f"/sessions/r/events?after={second_id}", 1)
        assert after[1]["data"]["input"]["text"] == "q2"
        # An EventSource opened with ?after= reconnects to the same URL with Last-Event-ID:
        # the header, where the stream got to, wins over where it began.
        (reconnected,) = first_events(
            client, f"/sessions/r/events?after={first_id}", 1, headers={"Last-Event-ID": second_id}
        )
        assert reconnected[1]["data"]["input"]["text"] == "q2"


def test_head_of_the_event_stream_ends(serve: Any) -> None:
    """HEAD /events (a health check, ``curl -I``): the stream's status and headers, and the
    response ends there, so the connection serves the next request (the stream went on
    unseen, and the next request on the connection waited for ever); a bad cursor is 400."""
    server = serve([])
    with httpx.Client(base_url=server.url, timeout=10) as client:
        head = client.head("/sessions/h/events")
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/event-stream")
        assert client.get("/sessions").status_code == 200  # the same connection, next request
        assert client.head("/sessions/h/events?after=nope").status_code == 400
        assert client.get("/sessions").status_code == 200


def test_a_cursor_out_of_the_replay_window_gets_the_gap_first(serve: Any) -> None:
    """With the store keeping 3 events, resuming after the first of 6 yields a gap (the
    session now, and where the stream goes on), then the events after it."""
    server = serve([], store_query="?events_kept=3")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n in range(6):
            client.post("/sessions/g/inputs", json={"text": f"q{n}"})
        with client.stream("GET", "/sessions/g/events?after=e1") as response:
            stream = sse_events(response)
            gap_id, gap = next(stream)
            assert gap["type"] == "gap"
            assert gap_id == gap["cursor"] == "e6"
            assert gap["data"]["after"] == "e1"
            assert gap["data"]["revision"] == 0
            assert [i["text"] for i in gap["data"]["inputs"]] == [f"q{n}" for n in range(6)]
            client.post("/sessions/g/inputs", json={"text": "later"})
            _, nxt = next(stream)
        assert (nxt["type"], nxt["cursor"]) == ("input_queued", "e7")
        assert nxt["data"]["input"]["text"] == "later"


def test_a_turn_run_by_a_worker_process_is_observed_over_sse(serve: Any, tmp_path: Path) -> None:
    """Input queued over HTTP, drained by a real ``lash worker``: the server's stream shows it
    queued, claimed, the turn started and committed, with the worker's answer."""
    server = serve([{"text": "from the worker"}])
    worker = None
    with httpx.Client(base_url=server.url, timeout=60) as client:
        client.post("/sessions/w/inputs", json={"text": "work"})
        with client.stream("GET", "/sessions/w/events?after=e0") as response:
            worker = Process(tmp_path, tmp_path / "site", ["worker", "--poll", "0.1"])
            try:
                seen = []
                for _, data in sse_events(response):
                    seen.append(data)
                    if data["type"] == "turn_committed":
                        break
            finally:
                worker.stop()
    types = [d["type"] for d in seen]
    assert types == ["input_queued", "input_claimed", "turn_started", "turn_committed"], types
    committed = seen[-1]["data"]
    assert (committed["outcome"], committed["result"]["text"]) == ("completed", "from the worker")
    assert all(not d["live"] for d in seen)


def test_ag_ui_stream_of_a_turn_the_server_runs(serve: Any) -> None:
    """?protocol=ag-ui: a run with its tool call (start, args, end, result) and its streamed
    answer (start, content per chunk, end), then RUN_FINISHED."""
    server = serve(shout_then("Done", chunk_size=2))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream("GET", "/sessions/a/events?protocol=ag-ui") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")  # subscribed: no live event is missed
            started = client.post("/sessions/a/turns", json={"text": "go", "id": "run-1"})
            assert started.status_code == 202
            assert started.json()["turn_id"] == "run-1"
            got = []
            for _, data in sse_events(lines):
                got.append(data)
                if data["type"] in ("RUN_FINISHED", "RUN_ERROR"):
                    break
    shown = [
        (e["type"], e.get("delta") or e.get("toolCallName") or e.get("content") or "")
        for e in got
        if e["type"] != "CUSTOM"
    ]
    assert shown == [
        ("RUN_STARTED", ""),
        ("TOOL_CALL_START", "shout"),
        ("TOOL_CALL_ARGS", json.dumps({"text": "hi"})),
        ("TOOL_CALL_END", ""),
        ("TOOL_CALL_RESULT", "HI"),
        ("TEXT_MESSAGE_START", ""),
        ("TEXT_MESSAGE_CONTENT", "Do"),
        ("TEXT_MESSAGE_CONTENT", "ne"),
        ("TEXT_MESSAGE_END", ""),
        ("RUN_FINISHED", ""),
    ]
    assert got[0]["threadId"] == "a" and got[0]["runId"] == "run-1"
    assert got[-1]["result"]["text"] == "Done"
    call_ids = {e["toolCallId"] for e in got if e["type"].startswith("TOOL_CALL")}
    assert len(call_ids) == 1


def test_ag_ui_text_before_and_after_a_tool_call_is_two_messages(serve: Any) -> None:
    """?protocol=ag-ui, a run whose model says something, calls a tool, then answers: two text
    messages, each its own messageId from TEXT_MESSAGE_START to TEXT_MESSAGE_END (a client
    keys messages by id: with one id for both, the answer lands in the first message)."""
    checking = {
        "text": "Let me check.",
        "tool_calls": [{"name": "shout", "arguments": {"text": "hi"}}],
    }
    server = serve([checking, {"text": "It is HI"}])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream("GET", "/sessions/m2/events?protocol=ag-ui") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            client.post("/sessions/m2/turns", json={"text": "go", "id": "run-1"})
            got = []
            for _, data in sse_events(lines):
                got.append(data)
                if data["type"] in ("RUN_FINISHED", "RUN_ERROR"):
                    break
    texts = [e for e in got if e["type"].startswith("TEXT_MESSAGE")]
    assert [e["type"] for e in texts] == [
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
        "TEXT_MESSAGE_START",
        "TEXT_MESSAGE_CONTENT",
        "TEXT_MESSAGE_END",
    ]
    first, second = texts[:3], texts[3:]
    assert len({e["messageId"] for e in first}) == 1
    assert len({e["messageId"] for e in second}) == 1
    assert first[0]["messageId"] != second[0]["messageId"]
    assert (first[1]["delta"], second[1]["delta"]) == ("Let me check.", "It is HI")


def test_cancel_a_turn_the_server_runs(serve: Any) -> None:
    """POST cancel while the turn's tool waits: requested (DELETE meanwhile: 409
    session_busy); the turn commits stopped, cancelled by "serve"; cancelling it again says
    already_finished, an unknown id unknown."""
    pause = {"tool_calls": [{"name": "pause", "arguments": {"seconds": 60}}]}
    server = serve([{"text": "first"}, pause])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/sessions/c/turns?wait=true", json={"text": "first"})  # the session exists
        with client.stream("GET", "/sessions/c/events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            client.post("/sessions/c/turns", json={"text": "wait", "id": "long"})
            stream = sse_events(lines)
            for _, data in stream:
                if data["type"] == "tool_call_started":
                    break
            running = client.get("/sessions/c/turns/long")
            assert running.json()["error"]["code"] == "unknown_turn"
            assert "it is running" in running.json()["error"]["message"]
            busy = client.delete("/sessions/c")
            assert busy.status_code == 409
            assert busy.json()["error"]["code"] == "session_busy"
            receipt = client.post("/sessions/c/turns/long/cancel", json={"reason": "enough"})
            assert receipt.json()["status"] == "requested"
            for _, data in stream:
                if data["type"] == "turn_committed":
                    break
        assert (data["data"]["outcome"], data["data"]["reason"]) == ("stopped", "cancelled")
        assert data["data"]["result"]["cancelled_by"] == "serve"
        assert data["data"]["result"]["cancel_reason"] == "enough"
        again = client.post("/sessions/c/turns/long/cancel")
        assert again.json()["status"] == "already_finished"
        assert again.json()["record"]["outcome"] == "stopped"
        assert client.post("/sessions/c/turns/nope/cancel").json()["status"] == "unknown"


def test_the_token_is_required_on_every_request(serve: Any) -> None:
    """With LASH_SERVE_TOKEN: 401 (the error shape, the token never echoed) without it or with
    a wrong one; a bearer header, ?token= (which sets a cookie) and that cookie are accepted."""
    server = serve([], LASH_SERVE_TOKEN="sekret-123")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/sessions", "/openapi.json", "/sessions/x/events", "/"):
            refused = client.get(path)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "unauthorized"
            assert "sekret" not in refused.text
        wrong = client.get("/sessions", headers={"Authorization": "Bearer sekret-12"})
        assert wrong.status_code == 401
        ok = client.get("/sessions", headers={"Authorization": "Bearer sekret-123"})
        assert ok.status_code == 200
        client.post(
            "/sessions/t/inputs",
            json={"text": "x"},
            headers={"Authorization": "Bearer sekret-123"},
        )
        (event,) = first_events(client, "/sessions/t/events?after=e0&token=sekret-123", 1)
        assert event[1]["type"] == "input_queued"
        # ?token= set the cookie: this client is authorized without the token from now on
        assert client.get("/sessions").status_code == 200
    with httpx.Client(base_url=server.url, timeout=30) as fresh:
        assert fresh.get("/sessions").status_code == 401


def test_the_token_is_not_in_the_request_log(serve: Any) -> None:
    """``--log-level info`` logs each request: a ``?token=`` (right or wrong) is not in it,
    and the request's other query parameters still count."""
    server = serve([], "--log-level", "info", LASH_SERVE_TOKEN="sekret-123")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/sessions?token=sekret-123").status_code == 200
        flag = client.get("/sessions/t/inputs?token=sekret-123&settled=maybe")
        assert (flag.status_code, flag.json()["error"]["code"]) == (400, "invalid_request")
    with httpx.Client(base_url=server.url, timeout=30) as fresh:
        assert fresh.get("/sessions?token=sekret-12").status_code == 401  # a near miss
    assert server.stop() == 0
    log = server.stdout() + server.stderr()
    assert "GET /sessions" in log and "GET /sessions/t/inputs" in log, log
    assert "sekret" not in log, log


def test_binding_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    """``lash serve --host 0.0.0.0`` without LASH_SERVE_TOKEN refuses to start."""
    site = write_config(tmp_path, [])
    proc = Process(tmp_path, site, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert proc.proc.wait(timeout=30) == 1
    assert "LASH_SERVE_TOKEN" in proc.stderr()


def test_a_port_in_use_is_an_error_without_a_traceback(tmp_path: Path) -> None:
    """``lash serve --port P`` with P taken exits 1 saying the address is in use and how to
    pick another port; before, uvicorn's startup failure escaped as a traceback (exit 3)."""
    site = write_config(tmp_path, [])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = Process(tmp_path, site, ["serve", "--port", str(port)])
        assert proc.proc.wait(timeout=30) == 1
    err = proc.stderr()
    assert "Traceback" not in err and "never retrieved" not in err, err
    assert "address already in use" in err
    assert err.endswith(
        f"Error: lash serve could not listen on 127.0.0.1:{port} (the error above); "
        "choose another --port, or --port 0 for any free one\n"
    ), err


JSON_TYPE = {"content-type": "application/json"}

ERRORS = [
    # (method, path, request kwargs, status, code)
    ("GET", "/sessions/%20x", {}, 400, "invalid_session_id"),
    ("GET", "/sessions/nobody", {}, 404, "unknown_session"),
    ("DELETE", "/sessions/nobody", {}, 404, "unknown_session"),
    ("GET", "/no/such/path", {}, 404, "not_found"),
    ("PUT", "/sessions", {}, 405, "method_not_allowed"),
    (
        "POST",
        "/sessions/e/inputs",
        {"content": b"{nope", "headers": {"content-type": "application/json"}},
        400,
        "invalid_json",
    ),
    # JSON that Python's parser takes but that is not JSON text a store can hold: a lone
    # surrogate (not Unicode), NaN, a number beyond a double
    (
        "POST",
        "/sessions/e/inputs",
        {"content": b'{"text": "a\\ud800b"}', "headers": JSON_TYPE},
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/sessions/e/inputs",
        {"content": b'{"text": "x", "items": [NaN]}', "headers": JSON_TYPE},
        400,
        "invalid_json",
    ),
    (
        "POST",
        "/sessions/e/inputs",
        {"content": b'{"text": "x", "items": [1e999]}', "headers": JSON_TYPE},
        400,
        "invalid_json",
    ),
    ("POST", "/sessions/e/inputs", {"json": ["a list"]}, 400, "invalid_request"),
    ("POST", "/sessions/e/inputs", {"json": {"txt": "typo"}}, 400, "invalid_request"),
    ("POST", "/sessions/e/inputs", {"json": {"text": 7}}, 400, "invalid_request"),
    ("POST", "/sessions/e/inputs", {"json": {}}, 400, "invalid_request"),
    ("POST", "/sessions/e/inputs", {"json": {"text": ""}}, 400, "invalid_request"),
    ("POST", "/sessions/e/inputs", {"data": {"text": "form"}}, 415, "unsupported_media_type"),
    ("POST", "/sessions/e/inputs", {"json": {"text": "x" * 3000}}, 413, "body_too_large"),
    (
        "POST",
        "/sessions/e/inputs",  # chunked: no Content-Length to refuse it by
        {
            "content": iter([b'{"text": "', b"x" * 3000, b'"}']),
            "headers": {"content-type": "application/json"},
        },
        413,
        "body_too_large",
    ),
    ("POST", "/sessions/e/turns", {"json": {"text": "x", "id": "../up"}}, 400, "invalid_request"),
    ("POST", "/sessions/e/turns?wait=maybe", {"json": {"text": "x"}}, 400, "invalid_request"),
    ("GET", "/sessions/e/events?after=42", {}, 400, "invalid_cursor"),
    ("GET", "/sessions/e/events?after=e999", {}, 400, "invalid_cursor"),
    ("GET", "/sessions/e/events?protocol=grpc", {}, 400, "invalid_request"),
]


def test_errors_have_one_shape(serve: Any) -> None:
    """Every refused request: its status and code, {"error": {"code", "message"}} and nothing
    else, no traceback."""
    server = serve([], "--max-body", "2048")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/sessions/e/inputs", json={"text": "exists"})
        for method, path, kwargs, status, code in ERRORS:
            reply = client.request(method, path, **kwargs)
            where = f"{method} {path}"
            assert reply.status_code == status, (where, reply.text)
            body = reply.json()
            assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, where
            assert body["error"]["code"] == code, (where, body)
            assert body["error"]["message"], where
            assert "Traceback" not in reply.text, where
    assert "Traceback" not in server.stderr()


def test_a_body_nested_deeper_than_the_parser_goes_is_invalid_json(serve: Any) -> None:
    """A JSON body nested 100,000 deep (200 kB, within the body limit): 400 invalid_json, not
    a crash of the parser's recursion (500, a traceback in the log)."""
    server = serve([])
    deep = b'{"text": "x", "items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/sessions/n/inputs", "/sessions/n/turns"):
            reply = client.post(path, content=deep, headers={"content-type": "application/json"})
            assert reply.status_code == 400, (path, reply.text)
            assert reply.json()["error"]["code"] == "invalid_json", path
        assert client.get("/sessions/n/inputs").json() == {"inputs": []}
    assert "Traceback" not in server.stderr()


def test_text_that_is_not_unicode_stored_by_another_process_is_served(
    serve: Any, tmp_path: Path
) -> None:
    """Input holding a lone surrogate, queued by another process on the store (``lash sessions
    enqueue`` reads an argument that is not UTF-8 that way): the session, its inputs and its
    event stream are served all the same, the surrogate as a JSON escape, never a 500 or a
    broken stream."""
    server = serve([])

    async def enqueue() -> None:
        url = f"sqlite:///{tmp_path / 'lash.db'}"
        async with lash.LashCore(plugins=["stores"], autoload=False, store=url) as core:
            await core.enqueue("u", "bad\udcff")
            await core.enqueue("u", "fine")

    asyncio.run(enqueue())
    with httpx.Client(base_url=server.url, timeout=30) as client:
        view = client.get("/sessions/u")
        assert view.status_code == 200, view.text
        assert [i["text"] for i in view.json()["inputs"]] == ["bad\udcff", "fine"]
        listed = client.get("/sessions/u/inputs")
        assert [i["text"] for i in listed.json()["inputs"]] == ["bad\udcff", "fine"]
        for protocol in ("lash", "ag-ui"):
            got = first_events(client, f"/sessions/u/events?after=e0&protocol={protocol}", 2)
            values = [d if protocol == "lash" else d["value"] for _, d in got]
            assert [v["data"]["input"]["text"] for v in values] == ["bad\udcff", "fine"]
    assert "Traceback" not in server.stderr()


def test_the_openapi_document_describes_the_routes(serve: Any) -> None:
    """/openapi.json lists the API of issue 16, each operation answering on the server."""
    server = serve([])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        document = client.get("/openapi.json").json()
        assert document["openapi"].startswith("3.")
        operations = {
            (method.upper(), path)
            for path, item in document["paths"].items()
            for method in item
            if method != "parameters"
        }
        assert operations == {
            ("GET", "/sessions"),
            ("GET", "/sessions/{session_id}"),
            ("DELETE", "/sessions/{session_id}"),
            ("GET", "/sessions/{session_id}/inputs"),
            ("POST", "/sessions/{session_id}/inputs"),
            ("POST", "/sessions/{session_id}/turns"),
            ("GET", "/sessions/{session_id}/turns/{turn_id}"),
            ("POST", "/sessions/{session_id}/turns/{turn_id}/cancel"),
            ("GET", "/sessions/{session_id}/processes"),
            ("GET", "/sessions/{session_id}/approvals"),
            ("POST", "/sessions/{session_id}/approvals/{call_id}"),
            ("GET", "/sessions/{session_id}/events"),
            ("GET", "/openapi.json"),
        }
        for method, path in operations:
            if path.endswith("/events") or method != "GET":
                continue
            concrete = path.replace("{session_id}", "nobody").replace("{turn_id}", "t")
            reply = client.get(concrete)
            assert reply.status_code == 200 or reply.json()["error"]["code"] != "not_found", path
        assert client.get("/sessions/nobody/processes").json() == {"processes": []}


def test_the_openapi_document_gives_the_stopping_refusal_its_retry_after_header(
    serve: Any,
) -> None:
    """POST /turns's 503 (a stopping server, docs/serving.rst) is documented with the
    Retry-After header a client is to wait by; the other 503s of the API are plain errors."""
    server = serve([])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        document = client.get("/openapi.json").json()
    refusal = document["paths"]["/sessions/{session_id}/turns"]["post"]["responses"]["503"]
    if "$ref" in refusal:  # a named response of the document's components
        name = refusal["$ref"].rsplit("/", 1)[-1]
        refusal = document["components"]["responses"][name]
    header = refusal["headers"]["Retry-After"]
    assert header["schema"]["type"] == "integer"
    assert "stopping" in refusal["description"]
    error = refusal["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Error"}


def test_the_processes_under_a_session(serve: Any) -> None:
    """GET processes: the background process a turn's tool started under the session (and none
    of another session's)."""
    start = {"tool_calls": [{"name": "start_note", "arguments": {"text": "remember"}}]}
    server = serve([start, {"text": "started"}])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        turn = client.post("/sessions/p/turns?wait=true", json={"text": "note it"}).json()["turn"]
        assert turn["outcome"] == "completed"
        (process,) = client.get("/sessions/p/processes").json()["processes"]
        assert (process["kind"], process["session_id"], process["status"]) == (
            "note",
            "p",
            "pending",
        )
        assert process["key"] == "note:remember"
        client.post("/sessions/other/inputs", json={"text": "x"})
        assert client.get("/sessions/other/processes").json() == {"processes": []}


def test_input_queued_over_http_is_answered_live_by_the_server_worker(serve: Any) -> None:
    """``lash serve --worker``: input queued over HTTP is drained in the server's process, so
    its stream shows the answer live, as it is streamed, before the turn is committed."""
    server = serve([{"text": "Live answer", "chunk_size": 4}], "--worker")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream("GET", "/sessions/lw/events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            client.post("/sessions/lw/inputs", json={"text": "hello"})
            seen = []
            for _, data in sse_events(lines):
                seen.append(data)
                if data["type"] == "turn_committed":
                    break
    deltas = [d["data"]["text"] for d in seen if d["type"] == "text_delta"]
    assert deltas == ["Live", " ans", "wer"]
    assert all(d["live"] for d in seen if d["type"] == "text_delta")
    assert seen[-1]["data"]["result"]["text"] == "Live answer"
    types = [d["type"] for d in seen]
    assert types.index("input_queued") < types.index("text_delta") < types.index("turn_committed")


def test_the_serving_page_example(tmp_path: Path) -> None:
    """docs/examples/serve_app.py (lash's API mounted in a host's app, and a turn's events as
    JSON) prints what the serving page shows."""
    examples = Path(__file__).resolve().parent.parent / "docs" / "examples"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
    proc = subprocess.run(
        [sys.executable, str(examples / "serve_app.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (examples / "serve_app.txt").read_text(encoding="utf-8")


def test_a_held_tool_call_is_answered_over_http(serve: Any) -> None:
    """A turn stops awaiting approval; GET approvals lists the held call; POST approves it (a
    second answer is already_answered); the server's worker continues the turn to its end."""
    delete = {"tool_calls": [{"name": "delete_file", "arguments": {"path": "a.txt"}}]}
    server = serve([delete, {"text": "Deleted a.txt"}], "--worker")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        held = client.post("/sessions/h/turns?wait=true", json={"text": "delete a.txt"})
        turn = held.json()["turn"]
        assert (turn["outcome"], turn["reason"]) == ("stopped", "awaiting_approval")
        (pending,) = client.get("/sessions/h/approvals").json()["approvals"]
        assert (pending["tool"], pending["arguments"]) == ("delete_file", {"path": "a.txt"})
        cursor = client.get("/sessions/h").json()["cursor"]
        with client.stream("GET", f"/sessions/h/events?after={cursor}") as response:
            url = f"/sessions/h/approvals/{pending['call_id']}"
            answer = client.post(url, json={"decision": "approve", "key": "k1"}).json()["answer"]
            assert (answer["outcome"], answer["decision"]) == ("approved", "approve")
            again = client.post(url, json={"decision": "reject"}).json()["answer"]
            assert (again["outcome"], again["decision"]) == ("already_answered", "approve")
            for _, data in sse_events(response):
                if data["type"] == "turn_committed":
                    break
        assert (data["data"]["outcome"], data["data"]["result"]["text"]) == (
            "completed",
            "Deleted a.txt",
        )
        assert client.get("/sessions/h/approvals").json() == {"approvals": []}
        bad = client.post(url, json={"decision": "maybe"})
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_request")


def test_the_server_stops_with_event_streams_open(serve: Any, tmp_path: Path) -> None:
    """SIGTERM while a client follows a session: the server ends the stream and exits 0, its
    running turn committed as cancelled."""
    pause = {"tool_calls": [{"name": "pause", "arguments": {"seconds": 60}}]}
    server = serve([{"text": "first"}, pause])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/sessions/q/turns?wait=true", json={"text": "first"})
        with client.stream("GET", "/sessions/q/events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            client.post("/sessions/q/turns", json={"text": "wait", "id": "long"})
            for _, data in sse_events(lines):
                if data["type"] == "tool_call_started":
                    break
            assert server.stop(timeout=20) == 0, server.stderr()

    async def record() -> Any:
        url = f"sqlite:///{tmp_path / 'lash.db'}"
        async with lash.LashCore(plugins=["stores"], autoload=False, store=url) as core:
            return await core.turn_record("q", "long")

    stored = asyncio.run(record())
    assert (stored.outcome, stored.reason) == ("stopped", "cancelled")


def test_stopping_ends_the_event_streams_cleanly(serve: Any) -> None:
    """SIGTERM with streams open (the ``lash`` form and AG-UI, one joined late from an old
    cursor, so on an observation of its own): each stream ends as a complete response, which
    an EventSource reconnects from, not cut off when the shutdown's grace runs out; the log
    has no error."""
    server = serve([])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for n in range(3):
            client.post("/sessions/z/inputs", json={"text": f"q{n}"})
        urls = ["/sessions/z/events", "/sessions/z/events?protocol=ag-ui", "/sessions/y/events"]
        with contextlib.ExitStack() as stack:
            streams = [stack.enter_context(client.stream("GET", url)) for url in urls]
            old = stack.enter_context(client.stream("GET", "/sessions/z/events?after=e0"))
            readers = [response.iter_lines() for response in [*streams, old]]
            for lines in readers:
                assert next(lines).startswith("retry:")
            assert server.stop(timeout=20) == 0, server.stderr()
            for lines in readers:
                rest = list(lines)  # (a stream cut off raises here: an incomplete chunked read)
                assert all(line == "" or line.startswith(("id:", "data:")) for line in rest)
    assert "ERROR" not in server.stderr() and "Traceback" not in server.stderr(), server.stderr()


def test_stopping_answers_its_turns_before_the_streams_end(serve: Any) -> None:
    """SIGTERM while the server runs a turn (a client waits for it with ?wait=true, two follow
    the session: one from now, sharing the server's observation, one from an old cursor, on
    its own): the turn commits as cancelled, the waiting client gets that turn, and each
    stream shows its turn_committed before it ends; the log has no error."""
    pause = {"tool_calls": [{"name": "pause", "arguments": {"seconds": 60}}]}
    server = serve([{"text": "first"}, pause])
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/sessions/w/turns?wait=true", json={"text": "first"})  # e1, e2
        with contextlib.ExitStack() as stack:
            urls = ["/sessions/w/events", "/sessions/w/events?after=e0"]
            readers = [stack.enter_context(client.stream("GET", url)).iter_lines() for url in urls]
            for lines in readers:
                assert next(lines).startswith("retry:")
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(
                    client.post, "/sessions/w/turns?wait=true", json={"text": "go", "id": "long"}
                )
                for _, data in sse_events(readers[0]):
                    if data["type"] == "tool_call_started":
                        break
                assert server.stop(timeout=20) == 0, server.stderr()
                answer = waiting.result()
            seen = [[data for _, data in sse_events(lines)] for lines in readers]  # to the end
    for stream in seen:
        committed = [d["data"] for d in stream if d["type"] == "turn_committed"]
        assert (committed[-1]["turn_id"], committed[-1]["outcome"]) == ("long", "stopped")
        assert committed[-1]["reason"] == "cancelled"
    assert answer.status_code == 200, answer.text
    turn = answer.json()["turn"]
    assert (turn["turn_id"], turn["outcome"], turn["reason"]) == ("long", "stopped", "cancelled")
    assert "ERROR" not in server.stderr() and "Traceback" not in server.stderr(), server.stderr()


def test_a_stopping_server_refuses_to_start_turns_and_still_answers_reads(serve: Any) -> None:
    """SIGTERM while a turn is slow to stop: the server takes no new connection, but a client
    on a kept-alive one can still send requests. A turn asked for then (``?wait=true``) is
    refused at once, ``503 stopping`` with ``Retry-After``: started, nothing would cancel it,
    and its client would wait out the shutdown's grace for a broken response. A read still
    answers; the log has no error."""
    linger = {"tool_calls": [{"name": "linger", "arguments": {"seconds": 8}}]}
    pause = {"tool_calls": [{"name": "pause", "arguments": {"seconds": 60}}]}
    server = serve([linger, pause])
    port = int(server.url.rsplit(":", 1)[1])
    with (
        httpx.Client(base_url=server.url, timeout=30) as watcher,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        with watcher.stream("GET", "/sessions/a/events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            assert watcher.post("/sessions/a/turns", json={"text": "go"}).status_code == 202
            for _, data in sse_events(lines):
                if data["type"] == "tool_call_started":
                    break
            assert client.get("/sessions").status_code == 200  # (the connection stays open)
            server.proc.send_signal(signal.SIGTERM)
            while True:  # until the server takes no new connection: it is stopping
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=5).close()
                except ConnectionRefusedError:
                    break
                time.sleep(0.02)
            assert client.get("/sessions").status_code == 200
            refused = client.post("/sessions/b/turns?wait=true", json={"text": "go", "id": "b1"})
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "stopping"
            assert "b1" in refused.json()["error"]["message"]
            assert int(refused.headers["retry-after"]) > 0
            assert client.get("/sessions/b/turns/b1").json()["error"]["code"] == "unknown_turn"
            assert server.stop(timeout=30) == 0, server.stderr()
    assert "ERROR" not in server.stderr() and "Traceback" not in server.stderr(), server.stderr()


def test_a_turn_the_stop_cancels_before_it_started_is_refused_as_stopping(serve: Any) -> None:
    """SIGTERM while a ``?wait=true`` turn waits for its session (another turn of this server
    holds it): the stop cancels it before it started, so nothing was committed. Its client is
    told what a turn asked for after the stop began is told, ``503 stopping`` with
    ``Retry-After`` (send it again), not ``404 unknown_turn``, which says there is nothing to
    send again."""
    pause = {"tool_calls": [{"name": "pause", "arguments": {"seconds": 60}}]}
    server = serve([pause])
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        httpx.Client(base_url=server.url, timeout=30) as waiter,
    ):
        with client.stream("GET", "/sessions/q/events") as response:
            lines = response.iter_lines()
            assert next(lines).startswith("retry:")
            assert client.post("/sessions/q/turns", json={"text": "go"}).status_code == 202
            for _, data in sse_events(lines):
                if data["type"] == "tool_call_started":
                    break
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                waiting = pool.submit(
                    waiter.post, "/sessions/q/turns?wait=true", json={"text": "next", "id": "q2"}
                )
                while "it is running" not in client.get("/sessions/q/turns/q2").text:
                    assert not waiting.done(), waiting.result().text
                    time.sleep(0.02)  # until the server runs it (waiting for the session)
                assert server.stop(timeout=30) == 0, server.stderr()
                refused = waiting.result()
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "stopping"
    assert "q2" in refused.json()["error"]["message"]
    assert int(refused.headers["retry-after"]) > 0
    assert "ERROR" not in server.stderr() and "Traceback" not in server.stderr(), server.stderr()
