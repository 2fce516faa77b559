"""``lash sessions``, as subprocesses, against a real SQLite store configured in lash.toml.

History is made the way a user makes it (``lash run`` with the scripted provider), or committed
in-process through the store for node kinds no builtin produces yet (compaction frames,
projected results); the listing, transcript, export and deletion are then read back by the
``lash`` executable.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

import lash
import lash.store

LASH = str(Path(sys.executable).parent / "lash")

CONFIG = """
store = "sqlite:///{db}"
provider = "scripted"
disable = ["openai"]

[[options.scripted.responses]]
text = "Planning."
tool_calls = [
    {{ name = "update_plan", arguments = {{ steps = [{{ step = "Write tests" }}] }} }},
    {{ name = "no_such_tool", arguments = {{ x = 1 }} }},
]
usage = {{ input_tokens = 11, output_tokens = 5, cached_tokens = 2 }}

[[options.scripted.responses]]
text = "Done planning.\\nThe plan has one step."
usage = {{ input_tokens = 7, output_tokens = 3 }}
"""

#: The kinds of the nodes one `lash run` of CONFIG's script commits, after the root frame.
TURN_KINDS = ["user", "assistant", "tool_call", "tool_call"]
TURN_KINDS += ["tool_result", "tool_result", "assistant", "outcome"]

SUMMARY_KEYS = {
    "session_id",
    "created_at",
    "updated_at",
    "turns",
    "revision",
    "last_user_message",
    "usage",
    "status",
    "pending_inputs",
    "parent_id",
}
HEAD_KEYS = SUMMARY_KEYS | {
    "usage_by_source",
    "config",
    "plugin_states",
    "node_count",
}


def lash_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the `lash` executable in ``cwd``, without LASH_*/OPENAI_* variables, stdin empty."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LASH_", "OPENAI_"))}
    return subprocess.run(
        [LASH, *args],
        cwd=cwd,
        env=clean,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
    )


def setup(tmp_path: Path) -> None:
    """Write tmp_path/lash.toml: CONFIG with the database at tmp_path/lash.db."""
    (tmp_path / "lash.toml").write_text(CONFIG.format(db=tmp_path / "lash.db"), encoding="utf-8")


def run_turn(tmp_path: Path, prompt: str, session: str) -> None:
    """One turn through `lash run` (which closes its session, releasing the lease)."""
    proc = lash_cli("run", prompt, "--session", session, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def fails(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    return proc.stderr


def in_store(tmp_path: Path, work: Any) -> Any:
    """Run ``await work(store)`` on the store of tmp_path's config, in this process."""

    async def go() -> Any:
        async with lash.LashCore.from_config(tmp_path / "lash.toml") as core:
            return await work(core.store)

    return asyncio.run(go())


def parse_iso(text: str) -> float:
    parsed = datetime.datetime.fromisoformat(text)
    assert parsed.tzinfo is not None  # ISO 8601 with an offset, never a naive time
    return parsed.timestamp()


def local(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def test_list_shows_sessions_with_their_fields(tmp_path: Path) -> None:
    """`list --json` has exact fields, ISO times and summed usage; text mode shows the same."""
    setup(tmp_path)
    before = time.time()
    run_turn(tmp_path, "make a plan", "s1")
    run_turn(tmp_path, "and now refine\nthe plan, please, with much more detail than fits", "s1")
    run_turn(tmp_path, "other session", "s2")
    after = time.time()

    rows = json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path)))
    assert [row["session_id"] for row in rows] == ["s2", "s1"]  # most recently updated first
    s2, s1 = rows
    assert set(s1) == SUMMARY_KEYS
    assert s1["turns"] == 2
    assert s1["revision"] == 2
    assert s1["last_user_message"] == (
        "and now refine\nthe plan, please, with much more detail than fits"
    )
    # Per turn: 11/5/2 and 7/3/0 tokens; two turns.
    assert s1["usage"] == {"input_tokens": 36, "output_tokens": 16, "cached_tokens": 4}
    assert (s1["status"], s1["pending_inputs"]) == ("completed", 0)
    assert s2["turns"] == 1
    assert s2["revision"] == 1
    assert s2["usage"] == {"input_tokens": 18, "output_tokens": 8, "cached_tokens": 2}
    created, updated = parse_iso(s1["created_at"]), parse_iso(s1["updated_at"])
    assert before <= created < updated <= after
    assert parse_iso(s2["updated_at"]) >= updated

    out = ok(lash_cli("sessions", "list", cwd=tmp_path))
    header, first, second, *rest = out.splitlines()
    assert rest == []
    assert header.split() == (
        "SESSION UPDATED CREATED TURNS REVISION STATUS QUEUED TOKENS IN/OUT/CACHED LAST USER "
        "MESSAGE".split()
    )
    assert first.startswith("s2 ")
    assert first.endswith("other session")
    assert second.startswith("s1 ")
    assert local(updated) in second
    assert local(created) in second
    assert " 2 " in second
    assert " 36/16/4 " in second
    assert " completed  " in second
    # Shortened to one line: whitespace folded, cut with an ellipsis.
    assert second.endswith(" and now refine the plan, please, with much mo...")


def test_list_of_an_empty_store_says_so(tmp_path: Path) -> None:
    """An empty store gives one friendly line, and `[]` in JSON mode."""
    setup(tmp_path)
    assert in_store(tmp_path, lambda store: store.list_sessions()) == []  # creates it
    out = ok(lash_cli("sessions", "list", cwd=tmp_path))
    assert out.startswith("no sessions in store 'sqlite:///")
    assert "`lash run PROMPT --session ID`" in out
    assert json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path))) == []


def test_show_prints_the_whole_transcript(tmp_path: Path) -> None:
    """The transcript has every turn: user text, assistant text, tool calls and results."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    run_turn(tmp_path, "second\nquestion", "s1")
    out = ok(lash_cli("sessions", "show", "s1", cwd=tmp_path))
    lines = out.splitlines()
    assert lines[0] == "session 's1': 2 turns, revision 2"
    assert "  usage: 36 input / 16 output / 4 cached tokens" in lines
    assert lines.count("turn 1") == 1
    assert lines.count("turn 2") == 1
    assert sum(line.startswith("--- agent frame ") and "(root)" in line for line in lines) == 1
    turn2 = lines.index("turn 2")
    assert "  user> make a plan" in lines[:turn2]
    assert lines[turn2 + 1 : turn2 + 3] == ["  user> second", "        question"]
    assert lines.count("  assistant> Planning.") == 2
    assert lines.count("  assistant> Done planning.") == 2
    assert lines.count("             The plan has one step.") == 2
    call = lines.index("  tool call update_plan [call_1] (plugin plan)")
    assert lines[call + 1] == '    arguments: {"steps": [{"step": "Write tests"}]}'
    result = lines.index("  tool result update_plan [call_1]:")
    assert lines[result + 1 : result + 3] == ["    plan updated:", "    [ ] Write tests"]
    # The unknown tool's result is an error, and says so.
    error = lines.index("  tool result no_such_tool [call_2] ERROR:")
    assert lines[error + 1] == "    unknown tool 'no_such_tool'; available tools: update_plan"
    assert '    arguments: {"x": 1}' in lines
    assert "    (scripted:default, 7 in / 3 out / 0 cached tokens)" in lines


def test_show_json_and_export_carry_every_node(tmp_path: Path) -> None:
    """`show --json` and `export` give the head and every node, tagged by kind, in order."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    run_turn(tmp_path, "again", "s1")

    shown = json.loads(ok(lash_cli("sessions", "show", "s1", "--json", cwd=tmp_path)))
    assert set(shown) == {"session", "nodes"}
    head, nodes = shown["session"], shown["nodes"]
    assert set(head) == HEAD_KEYS
    assert head["session_id"] == "s1"
    assert (head["turns"], head["revision"]) == (2, 2)
    assert head["last_user_message"] == "again"
    assert head["usage"] == {"input_tokens": 36, "output_tokens": 16, "cached_tokens": 4}
    assert head["config"]["provider"] == "scripted"
    assert head["plugin_states"]["plan"]["steps"] == [{"step": "Write tests", "status": "pending"}]
    assert [n["type"] for n in nodes] == ["frame", *TURN_KINDS, *TURN_KINDS]
    assert head["node_count"] == len(nodes)
    assert [n["turn"] for n in nodes] == [1] * 9 + [2] * 8
    assert [n["text"] for n in nodes if n["type"] == "user"] == ["make a plan", "again"]
    error = [n for n in nodes if n["type"] == "tool_result" and n["is_error"]]
    assert [n["name"] for n in error] == ["no_such_tool", "no_such_tool"]
    for node in nodes[1:]:
        assert node["frame_id"] == nodes[0]["frame_id"]

    exported = ok(lash_cli("sessions", "export", "s1", cwd=tmp_path))
    first, *rest = [json.loads(line) for line in exported.splitlines()]
    assert first == {"type": "session", "export_format": 1, **head}
    assert rest == nodes


def test_export_pipes_to_a_file(tmp_path: Path) -> None:
    """`lash sessions export ID > file` writes JSON Lines only (warnings go to stderr)."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    target = tmp_path / "s1.jsonl"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LASH_", "OPENAI_"))}
    with target.open("w", encoding="utf-8") as out:
        proc = subprocess.run(
            [LASH, "sessions", "export", "s1"],
            cwd=tmp_path,
            env=clean,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    lines = target.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["type"] == "session"
    assert records[0]["node_count"] == len(records) - 1 == 9
    assert [r["type"] for r in records[1:]] == ["frame", *TURN_KINDS]


def test_show_marks_frames_summaries_and_projected_results(tmp_path: Path) -> None:
    """A compaction frame shows its summary; a projected result shows both texts."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")

    async def compact(store: lash.store.Store) -> None:
        record = await store.load("s1")
        assert record is not None
        root = record.nodes[0].frame_id
        frame = "c0ffee00" * 4
        nodes = (
            lash.FrameBoundary(
                id="s1:frame:2",
                parent_id=None,
                frame_id=frame,
                turn=2,
                previous_frame_id=root,
                reason="compaction",
                summary="We made a plan.\nIt has one step.",
            ),
            lash.UserMessage(
                id="s1:2:1", parent_id="s1:frame:2", frame_id=frame, turn=2, text="go"
            ),
            lash.ToolResultNode(
                id="s1:2:2",
                parent_id="s1:2:1",
                frame_id=frame,
                turn=2,
                call_id="c9",
                name="read_file",
                content="line 1\nline 2\nline 3",
                projected="line 1 [2 more lines]",
            ),
        )
        lease = await store.acquire_lease("s1", "test", ttl=30)
        await store.commit(
            "s1",
            lease=lease,
            expected_revision=record.revision,
            delta=lash.store.CommitDelta(nodes=nodes, turns=1),
        )
        await store.release_lease(lease)

    in_store(tmp_path, compact)
    lines = ok(lash_cli("sessions", "show", "s1", cwd=tmp_path)).splitlines()
    root = next(line for line in lines if line.startswith("--- agent frame "))
    assert root.endswith(" (root)")
    root_id = root.split()[3]
    at = lines.index(f"--- new agent frame c0ffee00 (compaction, after frame {root_id})")
    assert lines[at + 1 : at + 6] == [
        "    summary: We made a plan.",
        "             It has one step.",
        "",
        "turn 2",
        "  user> go",
    ]
    result = lines.index("  tool result read_file [c9]:")
    assert lines[result + 1 : result + 6] == [
        "    line 1",
        "    line 2",
        "    line 3",
        "  shown to the model (projected):",
        "    line 1 [2 more lines]",
    ]


def test_delete_requires_yes_without_a_terminal(tmp_path: Path) -> None:
    """Without a terminal and --yes nothing is deleted; with --yes the session is gone."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    run_turn(tmp_path, "keep me", "s2")

    err = fails(lash_cli("sessions", "delete", "s1", cwd=tmp_path))
    assert "not deleting session 's1' without confirmation" in err
    assert "pass --yes" in err
    listed = json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path)))
    assert {row["session_id"] for row in listed} == {"s1", "s2"}

    out = ok(lash_cli("sessions", "delete", "s1", "--yes", cwd=tmp_path))
    assert out == "deleted session 's1' (1 turn, revision 1)\n"
    listed = json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path)))
    assert [row["session_id"] for row in listed] == ["s2"]
    err = fails(lash_cli("sessions", "show", "s1", cwd=tmp_path))
    assert "no session 's1'" in err


def test_delete_right_after_lash_run(tmp_path: Path) -> None:
    """A session `lash run` has finished with can be deleted at once."""
    setup(tmp_path)
    ok(lash_cli("run", "make a plan", "--session", "s1", cwd=tmp_path))
    ok(lash_cli("sessions", "delete", "s1", "--yes", cwd=tmp_path))


def test_delete_refuses_a_session_leased_by_another_process(tmp_path: Path) -> None:
    """A live lease of another owner stops the deletion, and the error names that owner."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    owner = "worker-7:4242:feedbeef"
    in_store(tmp_path, lambda store: store.acquire_lease("s1", owner, ttl=120))

    err = fails(lash_cli("sessions", "delete", "s1", "--yes", cwd=tmp_path))
    assert f"cannot delete session 's1': it is running, its lease is held by {owner!r}" in (err)
    # The time left, rounded up to whole seconds (120 s less the moments since it was taken).
    assert re.search(r" \(for up to 1[12]\d s more\); retry once", err), err
    listed = json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path)))
    assert [row["session_id"] for row in listed] == ["s1"]


def test_reading_never_takes_the_lease(tmp_path: Path) -> None:
    """list, show and export work while another writer holds the lease, which stays its own."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    lease = in_store(tmp_path, lambda store: store.acquire_lease("s1", "writer", ttl=120))

    ok(lash_cli("sessions", "list", cwd=tmp_path))
    ok(lash_cli("sessions", "show", "s1", cwd=tmp_path))
    ok(lash_cli("sessions", "export", "s1", cwd=tmp_path))

    async def still_ours(store: lash.store.Store) -> int:
        # Same owner, same fencing token: nobody took the lease over in between.
        again = await store.acquire_lease("s1", "writer", ttl=120)
        assert again.token == lease.token
        return await store.commit(
            "s1", lease=again, expected_revision=1, delta=lash.store.CommitDelta()
        )

    assert in_store(tmp_path, still_ours) == 2


def test_unknown_session_is_one_clear_line(tmp_path: Path) -> None:
    """show, export and delete of a missing id exit 1 naming it and suggesting `list`."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    for command in (["show", "nope"], ["show", "nope", "--json"], ["export", "nope"]):
        err = fails(lash_cli("sessions", *command, cwd=tmp_path))
        assert err.startswith("Error: no session 'nope' in store 'sqlite:///")
        assert err.endswith("; `lash sessions list` shows the sessions it holds\n")
        assert err.count("\n") == 1
    err = fails(lash_cli("sessions", "delete", "nope", "--yes", cwd=tmp_path))
    assert "no session 'nope'" in err


def test_sessions_need_no_provider(tmp_path: Path) -> None:
    """The commands read the store even when the configured provider does not exist."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    (tmp_path / "lash.toml").write_text(
        f'store = "sqlite:///{tmp_path / "lash.db"}"\nprovider = "nonexistent"\n'
        'disable = ["openai"]\n',
        encoding="utf-8",
    )
    rows = json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path)))
    assert [row["session_id"] for row in rows] == ["s1"]
    assert "user> make a plan" in ok(lash_cli("sessions", "show", "s1", cwd=tmp_path))


def test_store_and_config_errors_are_clear(tmp_path: Path) -> None:
    """An unknown store scheme, a bad store URL and a broken lash.toml: one message, exit 1."""
    (tmp_path / "lash.toml").write_text(
        'store = "nosuch://somewhere"\ndisable = ["openai"]\n', encoding="utf-8"
    )
    err = fails(lash_cli("sessions", "list", cwd=tmp_path))
    assert "no plugin provides a store for 'nosuch' URLs ('nosuch://somewhere')" in err
    assert "known schemes: " in err

    (tmp_path / "lash.toml").write_text(
        'store = "sqlite://lash.db"\ndisable = ["openai"]\n', encoding="utf-8"
    )
    err = fails(lash_cli("sessions", "show", "s1", cwd=tmp_path))
    assert err.startswith("Error: bad sqlite URL 'sqlite://lash.db': use sqlite:///")
    assert err.count("\n") == 1

    (tmp_path / "lash.toml").write_text(
        'store = "sqlite:///x.db?mode=bogus"\ndisable = ["openai"]\n', encoding="utf-8"
    )
    err = fails(lash_cli("sessions", "list", cwd=tmp_path))
    assert err.startswith("Error: bad sqlite URL 'sqlite:///x.db?mode=bogus': mode='bogus'; use")

    (tmp_path / "lash.toml").write_text('store = "sqlite:///x.db\n', encoding="utf-8")
    err = fails(lash_cli("sessions", "list", cwd=tmp_path))
    assert err.startswith(f"Error: {tmp_path / 'lash.toml'}:1:")


def test_inspection_never_creates_the_default_store(tmp_path: Path) -> None:
    """With no store yet, list says so, show/export/delete fail naming it; nothing is created."""
    db = tmp_path.resolve() / ".lash" / "lash.db"
    no_store = (
        f"no sessions yet: the default store {db} does not exist "
        "(`lash run PROMPT --session ID` creates it)\n"
    )
    assert ok(lash_cli("sessions", "list", cwd=tmp_path)) == no_store
    assert json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path))) == []
    for command in (["show", "s1"], ["show", "s1", "--json"], ["export", "s1"]):
        assert fails(lash_cli("sessions", *command, cwd=tmp_path)) == f"Error: {no_store}"
    assert fails(lash_cli("sessions", "delete", "s1", "--yes", cwd=tmp_path)) == (
        f"Error: {no_store}"
    )
    ok(lash_cli("plugins", "--all", cwd=tmp_path))
    ok(lash_cli("plugins", "--json", cwd=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_inspection_of_a_configured_store_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    """A store URL that points at nothing is an error naming the path; nothing is created."""
    db = tmp_path / "state" / "lash.db"
    url = f"sqlite:///{db}?create_dirs=1"
    config = tmp_path / "lash.toml"
    config.write_text(f'store = "{url}"\ndisable = ["openai"]\n', encoding="utf-8")
    commands = (["list"], ["list", "--json"], ["show", "s1"], ["export", "s1"])
    for command in (*commands, ["delete", "s1", "--yes"]):
        err = fails(lash_cli("sessions", *command, cwd=tmp_path))
        assert err == (
            f"Error: the configured store {url!r} points at {db}, which does not exist; "
            f"`lash sessions` never creates a store: check the store URL in {config}, or run a "
            "session first (`lash run PROMPT --session ID` creates the store)\n"
        )
    ok(lash_cli("plugins", "--all", cwd=tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["lash.toml"]


def test_reading_leaves_the_store_files_as_they_were(tmp_path: Path) -> None:
    """list, show and export write nothing: same database bytes, no -wal or -shm left."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    db = tmp_path / "lash.db"
    files = sorted(p.name for p in tmp_path.iterdir())
    content = db.read_bytes()
    ok(lash_cli("sessions", "list", cwd=tmp_path))
    ok(lash_cli("sessions", "show", "s1", cwd=tmp_path))
    ok(lash_cli("sessions", "export", "s1", cwd=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == files
    assert db.read_bytes() == content


def test_a_read_only_store_url_stays_read_only(tmp_path: Path) -> None:
    """With ``?mode=ro`` in the config, list works and delete is refused, saying why."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    (tmp_path / "lash.toml").write_text(
        f'store = "sqlite:///{tmp_path / "lash.db"}?mode=ro"\ndisable = ["openai"]\n',
        encoding="utf-8",
    )
    assert "s1" in ok(lash_cli("sessions", "list", cwd=tmp_path))
    err = fails(lash_cli("sessions", "delete", "s1", "--yes", cwd=tmp_path))
    assert err.startswith(f"Error: {tmp_path / 'lash.db'}: this store only reads (mode=ro")
    assert "s1" in ok(lash_cli("sessions", "list", cwd=tmp_path))


def test_memory_store_warns_on_stderr(tmp_path: Path) -> None:
    """With a memory:// store the listing is empty and stderr says why."""
    (tmp_path / "lash.toml").write_text(
        'store = "memory://"\ndisable = ["openai"]\n', encoding="utf-8"
    )
    proc = lash_cli("sessions", "list", "--json", cwd=tmp_path)
    assert json.loads(ok(proc)) == []
    assert "the store is memory://" in proc.stderr
    assert "sessions do not outlive the process" in proc.stderr


def test_default_store_is_sqlite_under_the_project_directory(tmp_path: Path) -> None:
    """With no store configured, sessions go to .lash/lash.db next to lash.toml, durably."""
    (tmp_path / "lash.toml").write_text(
        'provider = "scripted"\ndisable = ["openai"]\n'
        '[[options.scripted.responses]]\ntext = "stored"\n',
        encoding="utf-8",
    )
    sub = tmp_path / "sub"
    sub.mkdir()
    ok(lash_cli("run", "remember me", "--session", "d1", cwd=sub))
    assert (tmp_path / ".lash" / "lash.db").is_file()
    assert not (sub / ".lash").exists()
    rows = json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path)))
    assert [(r["session_id"], r["last_user_message"]) for r in rows] == [("d1", "remember me")]


def answer_on_a_terminal(tmp_path: Path, answer: str, *args: str) -> str:
    """Run `lash` with a pseudo-terminal as stdin, typing ``answer``; return its stdout."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LASH_", "OPENAI_"))}
    controller, terminal = os.openpty()
    try:
        os.write(controller, answer.encode() + b"\n")
        proc = subprocess.run(
            [LASH, *args],
            cwd=tmp_path,
            env=clean,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(terminal)
        os.close(controller)
    return ok(proc)


def test_delete_asks_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal, delete asks first: "n" keeps the session, "y" deletes it."""
    setup(tmp_path)
    run_turn(tmp_path, "make a plan", "s1")
    out = answer_on_a_terminal(tmp_path, "n", "sessions", "delete", "s1")
    assert out.startswith("Delete session 's1' (1 turn, revision 1, updated ")
    assert "This cannot be undone. [y/N]: " in out
    assert out.endswith("nothing deleted\n")
    assert "s1" in ok(lash_cli("sessions", "list", cwd=tmp_path))

    out = answer_on_a_terminal(tmp_path, "y", "sessions", "delete", "s1")
    assert out.endswith("deleted session 's1' (1 turn, revision 1)\n")
    assert ok(lash_cli("sessions", "list", cwd=tmp_path)).startswith("no sessions in store ")


#: The fields every node of :func:`turn_one_lines` shares.
COMMON = {"parent_id": None, "frame_id": "f" * 32, "turn": 1}


def turn_one_lines(*nodes: lash.GraphNode) -> list[str]:
    """The unstyled transcript lines after "turn 1" of a one-turn session of ``nodes``."""
    # In process, on a record built directly: the exact rendering of rare node shapes.
    from lash.cli._sessions_cmds import transcript

    record = lash.store.SessionRecord(
        session_id="p1",
        revision=1,
        created_at=0.0,
        updated_at=0.0,
        nodes=(lash.FrameBoundary(id="f", previous_frame_id=None, **COMMON), *nodes),
        turns=1,
    )
    lines = [click.unstyle(line) for line in transcript(record)]
    return lines[lines.index("turn 1") + 1 :]


def test_transcript_shows_plugin_nodes_and_invalid_arguments() -> None:
    """Plugin nodes show plugin, kind and data; unparsable arguments are shown raw."""
    call = lash.ToolCall(id="c1", name="read_file", invalid_arguments="{path: notes")
    assert turn_one_lines(
        lash.UserMessage(id="u", text="hi", **COMMON),
        lash.AssistantMessage(id="a", text="", tool_calls=(call,), **COMMON),
        lash.ToolCallNode(id="t", call=call, **COMMON),
        lash.PluginNode(id="p", plugin="memo", kind="note", data={"saved": ["a", "b"]}, **COMMON),
    ) == [
        "  user> hi",
        "  assistant> (tool calls: read_file)",
        "  tool call read_file [c1]",
        "    invalid arguments (not a JSON object): {path: notes",
        "  plugin memo: note",
        '    data: {"saved": ["a", "b"]}',
    ]


def test_transcript_shows_a_tool_only_message_with_its_usage() -> None:
    """An assistant message with tool calls and no text gets its own line, and its model and
    usage follow it, not the user message before it."""
    calls = (
        lash.ToolCall(id="c1", name="read_file", arguments={"path": "a.txt"}),
        lash.ToolCall(id="c2", name="list_dir", arguments={}),
    )
    usage = lash.Usage(input_tokens=12, output_tokens=3, cached_tokens=4)
    assert turn_one_lines(
        lash.UserMessage(id="u", text="look around", **COMMON),
        lash.AssistantMessage(
            id="a", text="", tool_calls=calls, model="gpt-test", usage=usage, **COMMON
        ),
        *(lash.ToolCallNode(id=f"t{c.id}", call=c, **COMMON) for c in calls),
    ) == [
        "  user> look around",
        "  assistant> (tool calls: read_file, list_dir)",
        "    (gpt-test, 12 in / 3 out / 4 cached tokens)",
        "  tool call read_file [c1]",
        '    arguments: {"path": "a.txt"}',
        "  tool call list_dir [c2]",
        "    arguments: {}",
    ]


# -- the mailbox: enqueue, inputs, cancel-input, watch, drain (real processes) -----------------

#: Answers for drained turns, one model call each (the tool-free script of the mailbox tests).
MAILBOX_CONFIG = """
store = "sqlite:///{db}"
provider = "scripted"
disable = ["openai"]

[[options.scripted.responses]]
text = "Flight booked."
usage = {{ input_tokens = 3, output_tokens = 2 }}

[[options.scripted.responses]]
text = "Hotel booked."
usage = {{ input_tokens = 4, output_tokens = 2 }}
"""

#: A model call that hangs until its turn is cancelled.
HANGING_CONFIG = """
store = "sqlite:///{db}"
provider = "scripted"
disable = ["openai"]

[[options.scripted.responses]]
text = "never sent"
delay = 120
"""

INPUT_KEYS = {
    "id",
    "session_id",
    "seq",
    "state",
    "key",
    "ingress",
    "source",
    "created_at",
    "settled_at",
    "turn_id",
    "text",
    "items",
}


def mailbox_setup(tmp_path: Path, config: str = MAILBOX_CONFIG) -> None:
    (tmp_path / "lash.toml").write_text(config.format(db=tmp_path / "lash.db"), encoding="utf-8")


def enqueue(tmp_path: Path, session: str, text: str, *args: str) -> dict[str, Any]:
    """`lash sessions enqueue SESSION TEXT ARGS --json`, parsed."""
    data: dict[str, Any] = json.loads(
        ok(lash_cli("sessions", "enqueue", session, text, *args, "--json", cwd=tmp_path))
    )
    return data


def inputs(tmp_path: Path, session: str, *args: str) -> list[dict[str, Any]]:
    """`lash sessions inputs SESSION ARGS --json`, parsed."""
    data: list[dict[str, Any]] = json.loads(
        ok(lash_cli("sessions", "inputs", session, *args, "--json", cwd=tmp_path))
    )
    return data


class Background:
    """A `lash` process in the background whose stdout lines are read by a thread, so that a
    test waits for a line with a timeout instead of blocking on a process that hangs."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("LASH_", "OPENAI_"))}
        self.proc = subprocess.Popen(
            [LASH, *args],
            cwd=tmp_path,
            env=clean,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, timeout: float = 60) -> str:
        """The next line of stdout. :raises AssertionError: when the process ended first."""
        line = self.lines.get(timeout=timeout)
        assert line is not None, f"the process ended: {self.seen}\n{self.finish()[1]}"
        self.seen.append(line)
        return line

    def until(self, predicate: Any, timeout: float = 60) -> str:
        """Read lines until one satisfies ``predicate``; return it."""
        while True:
            line = self.next_line(timeout)
            if predicate(line):
                return line

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the process to end: (exit status, stderr)."""
        self.proc.wait(timeout=timeout)
        assert self.proc.stderr is not None
        return self.proc.returncode, self.proc.stderr.read()

    def kill(self) -> None:
        """End the process if it still runs (tests call this in ``finally``: none leaks)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def event_of(line: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(line)
    return data


def test_enqueue_prints_the_pending_input_and_is_idempotent_by_key(tmp_path: Path) -> None:
    """enqueue prints id, key, state and time; the same key and text give the same input, other
    text under the key is an error (exit 1) that queues nothing; --active sets the ingress."""
    mailbox_setup(tmp_path)
    before = time.time()
    first = enqueue(tmp_path, "trip", "Book the flight.", "--key", "flight")
    assert set(first) == INPUT_KEYS
    assert (first["session_id"], first["seq"], first["state"]) == ("trip", 1, "pending")
    assert (first["key"], first["ingress"], first["text"]) == (
        "flight",
        "next_turn",
        "Book the flight.",
    )
    assert first["id"].startswith("in-")
    assert before <= parse_iso(first["created_at"]) <= time.time()
    assert first["settled_at"] is None and first["turn_id"] is None

    assert enqueue(tmp_path, "trip", "Book the flight.", "--key", "flight") == first
    err = fails(
        lash_cli("sessions", "enqueue", "trip", "Book a hotel.", "--key", "flight", cwd=tmp_path)
    )
    assert err == (
        f"Error: session 'trip': key 'flight' was already used for input {first['id']!r} with "
        "other content; nothing was queued (use a new key, or send the same content)\n"
    )
    active = enqueue(tmp_path, "trip", "And a car.", "--active")
    assert (active["seq"], active["ingress"], active["key"]) == (2, "active_turn", None)

    # Text mode: one row of the `inputs` table.
    out = ok(lash_cli("sessions", "enqueue", "trip", "Book a hotel.", cwd=tmp_path))
    header, row = out.splitlines()
    assert header.split() == ["INPUT", "STATE", "INGRESS", "KEY", "CREATED", "TURN", "TEXT"]
    assert row.split()[1:4] == ["pending", "next_turn", "-"]
    assert row.endswith("  -     Book a hotel.")
    assert [i["text"] for i in inputs(tmp_path, "trip")] == [
        "Book the flight.",
        "And a car.",
        "Book a hotel.",
    ]
    # An empty input is refused, naming the session; nothing is queued.
    err = fails(lash_cli("sessions", "enqueue", "trip", "   ", cwd=tmp_path))
    assert "session 'trip'" in err and "empty" in err
    assert len(inputs(tmp_path, "trip")) == 3


def test_enqueue_creates_the_session_that_drain_then_runs(tmp_path: Path) -> None:
    """Input for a new session id makes the session (listed once it commits); drain runs each
    input as a turn, oldest first, prints each answer, and leaves nothing queued."""
    mailbox_setup(tmp_path)
    flight = enqueue(tmp_path, "trip", "Book the flight.")
    hotel = enqueue(tmp_path, "trip", "Book the hotel.")
    assert json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path))) == []

    proc = lash_cli("sessions", "drain", "trip", cwd=tmp_path)
    assert ok(proc) == "Flight booked.\nHotel booked.\n"
    assert proc.stderr.splitlines() == [
        "[turn 1 completed | 3 in / 2 out tokens | revision 1]",
        "[turn 2 completed | 4 in / 2 out tokens | revision 2]",
    ]
    assert inputs(tmp_path, "trip") == []
    settled = inputs(tmp_path, "trip", "--all")
    assert [(i["id"], i["state"]) for i in settled] == [
        (flight["id"], "completed"),
        (hotel["id"], "completed"),
    ]
    shown = json.loads(ok(lash_cli("sessions", "show", "trip", "--json", cwd=tmp_path)))
    outcomes = [n for n in shown["nodes"] if n["type"] == "outcome"]
    # Each input names the turn that consumed it; each turn stored its outcome.
    assert [n["turn_id"] for n in outcomes] == [i["turn_id"] for i in settled]
    assert [n["outcome"] for n in outcomes] == ["completed", "completed"]
    assert [n["text"] for n in shown["nodes"] if n["type"] == "user"] == [
        "Book the flight.",
        "Book the hotel.",
    ]

    again = lash_cli("sessions", "drain", "trip", cwd=tmp_path)
    assert ok(again) == ""
    assert again.stderr == "lash: nothing to drain: session 'trip' has no queued input\n"
    err = fails(lash_cli("sessions", "drain", "nope", cwd=tmp_path))
    assert err.startswith("Error: no session 'nope' in store 'sqlite:///")


def test_drain_json_prints_one_object_per_turn(tmp_path: Path) -> None:
    """drain --json prints the object of `lash run --json` for each turn, one per line."""
    mailbox_setup(tmp_path)
    enqueue(tmp_path, "trip", "Book the flight.")
    enqueue(tmp_path, "trip", "Book the hotel.")
    lines = ok(lash_cli("sessions", "drain", "trip", "--json", cwd=tmp_path)).splitlines()
    turns = [json.loads(line) for line in lines]
    assert [(t["turn"]["index"], t["revision"], t["text"]) for t in turns] == [
        (1, 1, "Flight booked."),
        (2, 2, "Hotel booked."),
    ]
    settled = inputs(tmp_path, "trip", "--all")
    assert [t["turn"]["id"] for t in turns] == [i["turn_id"] for i in settled]


def test_list_shows_status_and_queued_input(tmp_path: Path) -> None:
    """The listing's STATUS is how the last turn ended (a failed one too) and QUEUED counts the
    input still waiting; show --json's head has both."""
    (tmp_path / "lash.toml").write_text(
        f'store = "sqlite:///{tmp_path / "lash.db"}"\nprovider = "scripted"\n'
        'disable = ["openai"]\n[[options.scripted.responses]]\nerror = "model is overloaded"\n',
        encoding="utf-8",
    )
    proc = lash_cli("run", "hi", "--session", "s1", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    enqueue(tmp_path, "s1", "try again")
    enqueue(tmp_path, "s1", "and again")
    (row,) = json.loads(ok(lash_cli("sessions", "list", "--json", cwd=tmp_path)))
    assert (row["status"], row["pending_inputs"]) == ("failed", 2)
    header, line = ok(lash_cli("sessions", "list", cwd=tmp_path)).splitlines()
    assert header.split()[5:7] == ["STATUS", "QUEUED"]
    assert line.split()[7:9] == ["failed", "2"]
    head = json.loads(ok(lash_cli("sessions", "show", "s1", "--json", cwd=tmp_path)))["session"]
    assert (head["status"], head["pending_inputs"]) == ("failed", 2)
    shown = ok(lash_cli("sessions", "show", "s1", cwd=tmp_path)).splitlines()
    assert "  queued input: 2 (`lash sessions inputs s1` lists it)" in shown
    assert any(line.startswith("  ended: failed (") for line in shown)


def test_cancel_input_prints_each_outcome_and_exits_by_them(tmp_path: Path) -> None:
    """cancel-input by id or key: cancelled and already cancelled exit 0; completed or unknown
    input exits 3 with the outcome of each; --suffix cancels the input and those after it."""
    mailbox_setup(tmp_path)
    flight = enqueue(tmp_path, "trip", "Book the flight.")
    ok(lash_cli("sessions", "drain", "trip", cwd=tmp_path))
    hotel = enqueue(tmp_path, "trip", "Book the hotel.", "--key", "hotel")
    car = enqueue(tmp_path, "trip", "Rent a car.")
    boat = enqueue(tmp_path, "trip", "Charter a boat.")

    out = ok(lash_cli("sessions", "cancel-input", "trip", "hotel", cwd=tmp_path))
    assert out == "hotel: cancelled\n"
    out = ok(lash_cli("sessions", "cancel-input", "trip", hotel["id"], cwd=tmp_path))
    assert out == f"{hotel['id']}: already cancelled\n"

    proc = lash_cli("sessions", "cancel-input", "trip", flight["id"], "in-nope", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    completed = inputs(tmp_path, "trip", "--all")[0]
    assert proc.stdout.splitlines() == [
        f"{flight['id']}: already completed by {completed['turn_id']}",
        "in-nope: unknown: session 'trip' has no input with this id or key",
    ]
    assert [i["id"] for i in inputs(tmp_path, "trip")] == [car["id"], boat["id"]]

    proc = lash_cli(
        "sessions", "cancel-input", "trip", car["id"], "--suffix", "--json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    assert [(o["target"], o["outcome"]) for o in outcomes] == [
        (car["id"], "cancelled"),
        (boat["id"], "cancelled"),
    ]
    assert [o["input"]["state"] for o in outcomes] == ["cancelled", "cancelled"]
    assert inputs(tmp_path, "trip") == []

    usage = lash_cli("sessions", "cancel-input", "trip", "a", "b", "--suffix", cwd=tmp_path)
    assert usage.returncode == 2 and "--suffix takes one INPUT" in usage.stderr
    err = fails(lash_cli("sessions", "cancel-input", "nope", "x", cwd=tmp_path))
    assert err.startswith("Error: no session 'nope' in store ")


def test_watch_follows_turns_committed_by_another_process(tmp_path: Path) -> None:
    """A watcher replays from --after, then follows live: a drain in another process shows up
    as input_claimed, turn_started and turn_committed JSON lines, each with its cursor; SIGINT
    ends the watch with exit 0 and no traceback."""
    mailbox_setup(tmp_path)
    flight = enqueue(tmp_path, "trip", "Book the flight.")
    watch = Background(tmp_path, "sessions", "watch", "trip", "--after", "e0", "--json")
    try:
        queued = event_of(watch.next_line())  # the replay: the watcher now follows
        assert (queued["type"], queued["cursor"], queued["live"]) == ("input_queued", "e1", False)
        assert queued["data"]["input"]["id"] == flight["id"]
        ok(lash_cli("sessions", "drain", "trip", cwd=tmp_path))  # another process
        hotel = enqueue(tmp_path, "trip", "Book the hotel.")
        ok(lash_cli("sessions", "drain", "trip", cwd=tmp_path))
        events = [event_of(watch.next_line()) for _ in range(7)]
        assert [e["type"] for e in events] == [
            "input_claimed",
            "turn_started",
            "turn_committed",
            "input_queued",
            "input_claimed",
            "turn_started",
            "turn_committed",
        ]
        assert [e["cursor"] for e in events] == [f"e{n}" for n in range(2, 9)]
        assert all(
            set(e) == {"v", "type", "session_id", "cursor", "live", "at", "data"} for e in events
        )
        first, second = events[2]["data"], events[6]["data"]
        assert (first["index"], first["outcome"], first["revision"]) == (1, "completed", 1)
        assert first["result"]["text"] == "Flight booked."
        assert (second["index"], second["revision"]) == (2, 2)
        assert events[4]["data"]["input"]["id"] == hotel["id"]
        watch.proc.send_signal(signal.SIGINT)
        status, err = watch.finish()
        assert status == 0, err
        assert "Traceback" not in err
    finally:
        watch.kill()


def test_watch_resumes_after_a_cursor_and_ends_on_sigterm(tmp_path: Path) -> None:
    """Text mode shows time, cursor, type and summary; --after resumes right after a cursor;
    --count ends the watch; SIGTERM ends a following watch with exit 0."""
    mailbox_setup(tmp_path)
    enqueue(tmp_path, "trip", "Book the flight.", "--key", "flight")
    ok(lash_cli("sessions", "drain", "trip", cwd=tmp_path))
    out = ok(lash_cli("sessions", "watch", "trip", "--after", "e2", "--count", "2", cwd=tmp_path))
    started, committed = out.splitlines()
    time_part = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
    assert re.fullmatch(
        rf"{time_part}  e3  turn_started: turn-[0-9a-f]{{28}}: \"Book the flight.\"", started
    )
    assert re.fullmatch(
        rf"{time_part}  e4  turn_committed: turn 1 completed, revision 1 \[turn-[0-9a-f]{{28}}\]: "
        r"\"Flight booked.\"",
        committed,
    )
    # From e4 (a watch "from now" would race with the enqueue below while it starts up).
    watch = Background(tmp_path, "sessions", "watch", "trip", "--after", "e4")
    try:
        enqueue(tmp_path, "trip", "Book the hotel.")
        line = watch.next_line()  # only what comes after the cursor, then live
        assert re.fullmatch(
            rf"{time_part}  e5  input_queued: in-[0-9a-f]{{16}}: \"Book the hotel.\"", line
        )
        watch.proc.send_signal(signal.SIGTERM)
        status, err = watch.finish()
        assert (status, err) == (0, "")
    finally:
        watch.kill()


def test_watch_refuses_bad_cursors_and_unknown_sessions(tmp_path: Path) -> None:
    """A cursor that is not one, one ahead of the log, and an unknown session: exit 1, one
    clear line each."""
    mailbox_setup(tmp_path)
    enqueue(tmp_path, "trip", "Book the flight.")
    err = fails(lash_cli("sessions", "watch", "trip", "--after", "garbage", cwd=tmp_path))
    assert err.startswith("Error: session 'trip': 'garbage' is not an event cursor")
    assert err.count("\n") == 1
    err = fails(lash_cli("sessions", "watch", "trip", "--after", "e99", cwd=tmp_path))
    assert "cursor 'e99' is ahead of the event log (its latest event is e1)" in err
    err = fails(lash_cli("sessions", "watch", "nope", cwd=tmp_path))
    assert err.startswith("Error: no session 'nope' in store ")


def test_show_of_a_session_with_only_queued_input_says_so(tmp_path: Path) -> None:
    """A session that `lash sessions enqueue` made (input, no turn yet) is no "no session"
    for show and export: the one-line error says it has no turn yet, how much input waits and
    what runs it."""
    mailbox_setup(tmp_path)
    enqueue(tmp_path, "trip", "Book the flight.")
    enqueue(tmp_path, "trip", "And a hotel.")
    for command in ("show", "export"):
        err = fails(lash_cli("sessions", command, "trip", cwd=tmp_path))
        assert err == (
            "Error: session 'trip' has no turn committed yet: 2 inputs are queued for it "
            "(`lash sessions inputs trip` lists them; `lash sessions drain trip` or a "
            "`lash worker` runs them, `lash sessions cancel-input trip ID` cancels them)\n"
        )


def test_delete_of_a_session_with_only_queued_input_says_so(tmp_path: Path) -> None:
    """`lash sessions delete` of a session that has input and no turn yet said "no session",
    and that `lash sessions list` shows the sessions (it leaves this one out, cli.rst): its
    input stayed queued for the next worker. The error says what show says, and how to cancel
    the input instead; nothing is deleted or cancelled."""
    mailbox_setup(tmp_path)
    enqueue(tmp_path, "trip", "Book the flight.")
    err = fails(lash_cli("sessions", "delete", "trip", "--yes", cwd=tmp_path))
    assert err == (
        "Error: session 'trip' has no turn committed yet: 1 input is queued for it "
        "(`lash sessions inputs trip` lists it; `lash sessions drain trip` or a "
        "`lash worker` runs it, `lash sessions cancel-input trip ID` cancels it)\n"
    )
    listed = lash_cli("sessions", "inputs", "trip", cwd=tmp_path)
    assert " pending " in listed.stdout


def test_watch_from_a_cursor_out_of_the_window_prints_the_gap_first(tmp_path: Path) -> None:
    """With a replay window of 2 events, a watch after e1 first prints a gap with the session
    as it is now and a fresh cursor, then follows the events after that cursor."""
    (tmp_path / "lash.toml").write_text(
        MAILBOX_CONFIG.format(db=f"{tmp_path / 'lash.db'}?events_kept=2"), encoding="utf-8"
    )
    for n in range(4):
        enqueue(tmp_path, "trip", f"question {n}")
    out = ok(
        lash_cli(
            "sessions", "watch", "trip", "--after", "e1", "--count", "1", "--json", cwd=tmp_path
        )
    )
    gap = json.loads(out)
    assert (gap["type"], gap["cursor"], gap["session_id"]) == ("gap", "e4", "trip")
    assert gap["data"]["after"] == "e1"
    assert (gap["data"]["revision"], gap["data"]["turns"]) == (0, 0)
    assert [i["text"] for i in gap["data"]["inputs"]] == [f"question {n}" for n in range(4)]
    # Then it follows, after the gap's cursor.
    watch = Background(tmp_path, "sessions", "watch", "trip", "--after", "e1", "--json")
    try:
        assert event_of(watch.next_line())["type"] == "gap"
        enqueue(tmp_path, "trip", "question 4")
        after = event_of(watch.next_line())
        assert (after["type"], after["cursor"]) == ("input_queued", "e5")
    finally:
        watch.kill()
    text = ok(lash_cli("sessions", "watch", "trip", "--after", "e1", "--count", "1", cwd=tmp_path))
    assert text == (
        "gap: the events after e1 are gone (older than the store's replay window); session "
        "'trip' is now at revision 0 (0 turns, 5 queued inputs); following from e5\n"
    )


def test_a_drain_interrupted_mid_turn_commits_it_as_cancelled(tmp_path: Path) -> None:
    """While a drain's turn has claimed its input, cancel-input says already claimed (exit 3);
    SIGINT stops the drain (exit 130), its turn commits as stopped (cancelled) and consumes the
    input, and the input it did not reach stays queued."""
    mailbox_setup(tmp_path, HANGING_CONFIG)
    first = enqueue(tmp_path, "trip", "Book the flight.")
    second = enqueue(tmp_path, "trip", "Book the hotel.")
    watch = Background(tmp_path, "sessions", "watch", "trip", "--after", "e2", "--json")
    drain = Background(tmp_path, "sessions", "drain", "trip")
    try:
        claimed = event_of(watch.until(lambda line: '"input_claimed"' in line))
        assert claimed["data"]["input"]["id"] == first["id"]
        proc = lash_cli("sessions", "cancel-input", "trip", first["id"], cwd=tmp_path)
        assert proc.returncode == 3, proc.stderr
        assert proc.stdout.startswith(f"{first['id']}: already claimed by a running turn")
        drain.proc.send_signal(signal.SIGINT)
        status, err = drain.finish()
        assert status == 130, err
        assert "lash: interrupted: stopping the drain" in err
        assert "Traceback" not in err
        committed = event_of(watch.until(lambda line: '"turn_committed"' in line))
        assert (committed["data"]["outcome"], committed["data"]["reason"]) == (
            "stopped",
            "cancelled",
        )
    finally:
        drain.kill()
        watch.kill()
    states = {i["id"]: i["state"] for i in inputs(tmp_path, "trip", "--all")}
    assert states == {first["id"]: "completed", second["id"]: "pending"}
