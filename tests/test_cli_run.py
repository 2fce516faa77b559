"""``lash demo`` and ``lash run``, as subprocesses, against the scripted provider and a real
OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from openai_wire_server import Reply, WireServer, WireToolCall

LASH = str(Path(sys.executable).parent / "lash")


def lash(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LASH_", "OPENAI_"))}
    clean.update(env or {})
    return subprocess.run(
        [LASH, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=60
    )


def test_demo_runs_offline_and_prints_a_transcript(tmp_path: Path) -> None:
    """`lash demo` runs a scripted session showing plugin tools, options and prompt fragments,
    a config mutation, a compaction into a new agent frame, and exits 0."""
    proc = lash("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "plan contributes tools: update_plan" in out
    assert "standard.max_tool_rounds = 4" in out
    assert "| Keep a plan for multi-step work with the update_plan tool." in out
    assert out.count("user> ") == 3
    assert "tool update_plan(" in out
    assert "-> plan updated: [x] Pick a park [~] Shop for food [ ] Invite friends" in out
    assert "configured: model demo -> demo-large" in out
    assert "compacted into agent frame" in out
    assert "summary: The user is organising a Saturday picnic." in out
    assert "carried over verbatim: the last turn (5 nodes)" in out
    assert "Next: buy sandwiches, fruit and lemonade" in out
    # Turns 1-2, the config commit, the compaction commit, turn 3.
    assert "3 turns committed, revision 5" in out
    assert "usage by source: compaction 410 in / 30 out, turn 1245 in / 120 out" in out


def write_config(path: Path, text: str) -> Path:
    config = path / "lash.toml"
    config.write_text(text, encoding="utf-8")
    return config


def test_run_streams_answer_and_tool_activity_with_scripted_provider(tmp_path: Path) -> None:
    """`lash run` streams text and tool activity of one turn configured in lash.toml."""
    write_config(
        tmp_path,
        """
provider = "scripted"
disable = ["openai"]

[[options.scripted.responses]]
text = "Planning."
chunk_size = 3
tool_calls = [{ name = "update_plan", arguments = { steps = [{ step = "Write tests" }] } }]

[[options.scripted.responses]]
text = "Done planning."
usage = { input_tokens = 7, output_tokens = 3 }
""",
    )
    proc = lash("run", "make a plan", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "assistant> Planning." in proc.stdout
    assert "tool update_plan(" in proc.stdout
    assert "-> plan updated: [ ] Write tests" in proc.stdout
    assert "Done planning." in proc.stdout
    assert "turn 1 completed | 7 in / 3 out tokens" in proc.stdout


def test_run_reports_a_failed_turn_with_exit_code_1(tmp_path: Path) -> None:
    """A provider failure ends `lash run` with exit 1 and the error in the transcript."""
    write_config(
        tmp_path,
        """
provider = "scripted"
disable = ["openai"]

[[options.scripted.responses]]
error = "model is overloaded"
""",
    )
    proc = lash("run", "hi", cwd=tmp_path)
    assert proc.returncode == 1
    assert "failed" in proc.stdout and "model is overloaded" in proc.stdout


def test_run_without_a_provider_names_the_choices(tmp_path: Path) -> None:
    """With two providers and none configured, `lash run` says which exist and how to pick."""
    proc = lash("run", "hi", cwd=tmp_path)
    assert proc.returncode == 1
    assert "openai" in proc.stderr and "scripted" in proc.stderr and "provider" in proc.stderr


def test_run_against_a_real_openai_compatible_server(tmp_path: Path) -> None:
    """`lash run --provider openai` talks to an OpenAI-compatible server over HTTP, runs the
    tool the model asks for, and sends its result back."""
    with WireServer() as server:
        server.push(
            Reply(
                text=["Let me ", "plan."],
                tool_calls=[
                    WireToolCall(
                        id="call_9",
                        name="update_plan",
                        arguments=['{"steps": [{"st', 'ep": "Buy milk"}]}'],
                    )
                ],
                usage={"prompt_tokens": 11, "completion_tokens": 4},
            ),
            Reply(text=["All ", "set."], usage={"prompt_tokens": 20, "completion_tokens": 2}),
        )
        proc = lash(
            "run",
            "plan my errands",
            "--provider",
            "openai",
            "--model",
            "gpt-test",
            cwd=tmp_path,
            env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test-key"},
        )
        requests = server.requests
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Let me plan." in proc.stdout and "All set." in proc.stdout
    assert "-> plan updated: [ ] Buy milk" in proc.stdout
    assert len(requests) == 2
    assert requests[0].body["model"] == "gpt-test"
    assert requests[0].headers["authorization"] == "Bearer sk-test-key"
    assert [t["function"]["name"] for t in requests[0].body["tools"]] == ["update_plan"]
    second = requests[1].body["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["tool_call_id"] == "call_9"
    assistant = second[-2]
    assert assistant["tool_calls"][0]["id"] == "call_9"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {
        "steps": [{"step": "Buy milk"}]
    }


def test_lazy_command_table_matches_the_commands() -> None:
    """`lash --help` lists lazily imported commands with the help their modules really have."""
    import importlib

    from lash.cli import cli
    from lash.cli._main import LAZY_COMMANDS

    for name, (module, short_help) in LAZY_COMMANDS.items():
        importlib.import_module(module)
        command = cli.commands[name]
        assert (command.help or "").splitlines()[0] == short_help, name
