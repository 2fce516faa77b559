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
import re
import subprocess
import sys
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
        "SESSION UPDATED CREATED TURNS REVISION TOKENS IN/OUT/CACHED LAST USER MESSAGE".split()
    )
    assert first.startswith("s2 ")
    assert first.endswith("other session")
    assert second.startswith("s1 ")
    assert local(updated) in second
    assert local(created) in second
    assert " 2 " in second
    assert " 36/16/4 " in second
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
    assert f"cannot delete session 's1': it is open elsewhere, its lease is held by {owner!r}" in (
        err
    )
    # The time left, rounded up to whole seconds (120 s less the moments since it was taken).
    assert re.search(r" \(for up to 1[12]\d s more\); close it there", err), err
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
