"""``lash run`` and ``lash demo``: in-process through click's ``CliRunner`` (whose stdout is not a
terminal, like a pipe), and as real processes where a behaviour needs one (a pipe on stdin, a
terminal, SIGINT), against the scripted provider and a real OpenAI-compatible HTTP server."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from openai_wire_server import Reply, WireServer, WireToolCall

from lash.cli import cli

LASH = str(Path(sys.executable).parent / "lash")
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples" / "cli"

#: A host with the scripted model: one round of the update_plan tool, then an answer.
PLAN_CONFIG = """
provider = "scripted"
autoload = false
disable = ["openai"]

[[options.scripted.responses]]
text = "Planning."
chunk_size = 3
tool_calls = [{ name = "update_plan", arguments = { steps = [{ step = "Write tests" }] } }]

[[options.scripted.responses]]
text = "Done planning."
usage = { input_tokens = 7, output_tokens = 3 }
"""

#: The stdout of `lash run` with PLAN_CONFIG outside a terminal: the text of each model call on
#: its own line, nothing else.
PLAN_ANSWER = "Planning.\nDone planning.\n"


def clean_env(**env: str) -> dict[str, str]:
    """The test's environment without LASH_*, OPENAI_* and NO_COLOR, plus ``env``."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LASH_", "OPENAI_")) and k != "NO_COLOR"
    }
    clean.update(env)
    return clean


def lash(
    *args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LASH, *args],
        cwd=cwd,
        env=clean_env(**(env or {})),
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_config(path: Path, text: str) -> Path:
    config = path / "lash.toml"
    config.write_text(text, encoding="utf-8")
    return config


@pytest.fixture(autouse=True)
def _no_host_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs read LASH_*, OPENAI_* and NO_COLOR: none leaks in from outside."""
    for name in list(os.environ):
        if name.startswith(("LASH_", "OPENAI_")) or name == "NO_COLOR":
            monkeypatch.delenv(name)


def invoke(
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    color: bool = False,
) -> Result:
    """``lash ARGS`` in-process; stdout and stderr are captured apart, neither is a terminal."""
    return CliRunner().invoke(
        cli, list(args), input=input, env=env, color=color, catch_exceptions=False
    )


def show(config: Path, session: str = "default") -> dict[str, Any]:
    """``lash sessions show SESSION --json``, parsed."""
    result = invoke("--config", str(config), "sessions", "show", session, "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# -- pipes: stdout carries the answer, stderr the rest -----------------------------------------


def test_piped_stdout_carries_only_the_answer(tmp_path: Path) -> None:
    """Outside a terminal, stdout is the answer text alone; tool activity and the status line
    go to stderr, and nothing carries ANSI codes."""
    config = write_config(tmp_path, PLAN_CONFIG)
    result = invoke("--config", str(config), "run", "make a plan")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == PLAN_ANSWER
    assert "tool update_plan(" in result.stderr
    assert "-> plan updated: [ ] Write tests" in result.stderr
    assert "[turn 1 completed | 7 in / 3 out tokens | revision 1]" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr


def test_prompt_comes_from_stdin_without_argument_or_with_dash(tmp_path: Path) -> None:
    """`echo PROMPT | lash run` and `lash run -` read the prompt from stdin (without its final
    newline); the user message stored is that prompt."""
    config = write_config(tmp_path, PLAN_CONFIG)
    piped = invoke("--config", str(config), "run", input="make a plan\n")
    assert piped.exit_code == 0, piped.stderr
    assert piped.stdout == PLAN_ANSWER
    dash = invoke("--config", str(config), "run", "-", input="and another\nline two\n")
    assert dash.exit_code == 0, dash.stderr
    users = [n["text"] for n in show(config)["nodes"] if n["type"] == "user"]
    assert users == ["make a plan", "and another\nline two"]


def test_empty_or_undecodable_stdin_is_a_usage_error(tmp_path: Path) -> None:
    """A blank stdin, or one that is not UTF-8, ends `lash run` with exit 2 and a message on
    stderr naming the problem (the offending byte and where it is)."""
    config = write_config(tmp_path, PLAN_CONFIG)
    for args in (("run",), ("run", "-")):
        result = invoke("--config", str(config), *args, input=" \n")
        assert result.exit_code == 2
        assert result.stdout == ""
        assert "prompt read from stdin is empty" in result.stderr
    latin1 = CliRunner().invoke(cli, ["--config", str(config), "run"], input=b"caf\xe9\n")
    assert latin1.exit_code == 2
    assert latin1.stdout == ""
    assert "not utf-8 text (byte 0xe9 at offset 3)" in latin1.stderr
    assert not (tmp_path / ".lash").exists()  # refused before any session was opened


def test_json_prints_one_object_describing_the_turn(tmp_path: Path) -> None:
    """`--json` prints exactly one JSON object: outcome, text, tool calls, usage, session, turn
    and the revision the turn committed as (the one the store holds)."""
    config = write_config(tmp_path, PLAN_CONFIG)
    first = invoke("--config", str(config), "run", "--json", "make a plan")
    assert first.exit_code == 0, first.stderr
    data = json.loads(first.stdout)
    assert data == {
        "session": "default",
        "turn": {"index": 1, "id": data["turn"]["id"]},
        "revision": 1,
        "outcome": "completed",
        "reason": None,
        "detail": None,
        "error": None,
        "error_plugin": None,
        "error_hook": None,
        "text": "Done planning.",
        "tool_calls": [
            {
                "id": "call_1",  # the scripted provider's documented default id
                "name": "update_plan",
                "arguments": {"steps": [{"step": "Write tests"}]},
                "invalid_arguments": None,
                "result": data["tool_calls"][0]["result"],
                "is_error": False,
            }
        ],
        "usage": {"input_tokens": 7, "output_tokens": 3, "cached_tokens": 0},
    }
    assert "[ ] Write tests" in data["tool_calls"][0]["result"]
    assert "-> plan updated" in first.stderr  # activity still reaches stderr

    second = json.loads(invoke("--config", str(config), "run", "--json", "again").stdout)
    assert (second["turn"]["index"], second["revision"], second["session"]) == (2, 2, "default")
    shown = show(config)
    head = shown["session"]
    assert (head["revision"], head["turns"]) == (2, 2)
    # turn.id is the id the turn is stored under (its outcome node carries it).
    outcomes = [n["turn_id"] for n in shown["nodes"] if n["type"] == "outcome"]
    assert outcomes == [data["turn"]["id"], second["turn"]["id"]]
    assert data["turn"]["id"] != second["turn"]["id"]


def test_system_sets_the_sessions_prompt_layers_and_persists(tmp_path: Path) -> None:
    """`--system TEXT` starts the system prompt the model gets, stays with the session for the
    runs after it, and `--system ''` removes it."""
    config = write_config(tmp_path, 'provider = "openai"\nmodel = "gpt-test"\nautoload = false\n')
    with WireServer() as server:
        server.push(*(Reply(text=["ok"]) for _ in range(3)))
        env = {"OPENAI_BASE_URL": server.base_url}
        runs = [
            invoke("--config", str(config), "run", "--system", "Answer in French.", "hi", env=env),
            invoke("--config", str(config), "run", "hi again", env=env),
        ]
        layers = show(config)["session"]["config"]["prompt_layers"]
        runs.append(invoke("--config", str(config), "run", "--system", "", "bye", env=env))
        requests = server.requests
    assert [r.exit_code for r in runs] == [0, 0, 0], [r.stderr for r in runs]
    assert layers == ["Answer in French."]

    def system(request: Any) -> str:
        first = request.body["messages"][0]
        return str(first["content"]) if first["role"] == "system" else ""

    assert system(requests[0]).startswith("Answer in French.")
    assert system(requests[1]).startswith("Answer in French.")
    assert "Answer in French." not in system(requests[2])
    assert show(config)["session"]["config"]["prompt_layers"] == []


# -- exit codes --------------------------------------------------------------------------------


def test_a_failed_turn_exits_1_with_the_error_on_stderr(tmp_path: Path) -> None:
    """A provider failure ends `lash run` with exit 1, the error on stderr, and `--json` still
    describes the (committed) failed turn."""
    config = write_config(
        tmp_path,
        'provider = "scripted"\nautoload = false\n\n'
        '[[options.scripted.responses]]\nerror = "model is overloaded"\n',
    )
    result = invoke("--config", str(config), "run", "hi")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "failed" in result.stderr and "model is overloaded" in result.stderr

    as_json = invoke("--config", str(config), "run", "--json", "hi")
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert data["outcome"] == "failed" and "model is overloaded" in data["error"]
    assert data["revision"] == 2


def test_a_stopped_turn_exits_3(tmp_path: Path) -> None:
    """A turn stopped by the tool round limit exits 3 and says why on stderr."""
    config = write_config(
        tmp_path,
        PLAN_CONFIG + "\n[options.standard]\nmax_tool_rounds = 0\n",
    )
    result = invoke("--config", str(config), "run", "--json", "make a plan")
    assert result.exit_code == 3, result.stderr
    assert "stopped (max_tool_rounds)" in result.stderr
    data = json.loads(result.stdout)
    assert (data["outcome"], data["reason"]) == ("stopped", "max_tool_rounds")


def test_configuration_errors_exit_2_on_stderr(tmp_path: Path) -> None:
    """No provider chosen among several, an unknown provider and a malformed config file are
    usage/configuration errors: exit 2, the message on stderr, nothing on stdout."""
    config = write_config(tmp_path, "autoload = false\n")
    unchosen = invoke("--config", str(config), "run", "hi")
    assert unchosen.exit_code == 2
    assert "openai" in unchosen.stderr and "scripted" in unchosen.stderr
    assert "provider" in unchosen.stderr

    unknown = invoke("--config", str(config), "run", "--provider", "nope", "hi")
    assert unknown.exit_code == 2
    assert "'nope'" in unknown.stderr

    config.write_text("model = gpt\n", encoding="utf-8")
    broken = invoke("--config", str(config), "run", "--json", "hi")
    assert broken.exit_code == 2
    assert f"{config}:1:9" in broken.stderr
    for result in (unchosen, unknown, broken):
        assert result.stdout == ""
        assert "Traceback" not in result.stderr


def test_an_empty_model_or_provider_is_a_usage_error_and_changes_nothing(tmp_path: Path) -> None:
    """`--model ""` (a script's unset `--model "$MODEL"`) and `--provider ""` are refused with
    exit 2 before anything runs; before, an empty model was committed to the session and kept
    by its later runs, so every turn then asked the server for model ""."""
    write_config(tmp_path, PLAN_CONFIG)
    assert lash("run", "--model", "m1", "make a plan", cwd=tmp_path).returncode == 0
    for option in ("--model", "--provider"):
        for empty in ("", "  "):
            proc = lash("run", option, empty, "make a plan", cwd=tmp_path)
            assert proc.returncode == 2, proc.stderr
            assert f"Invalid value for '{option}': empty" in proc.stderr
            assert "Traceback" not in proc.stderr
    stored = show(tmp_path / "lash.toml")["session"]
    assert (stored["turns"], stored["config"]["model"]) == (1, "m1")


def test_a_misspelled_options_table_is_a_warning_on_stderr(tmp_path: Path) -> None:
    """`[options.plann]` (meant: plan) configures nothing: `lash run` says so on stderr, with the
    likely name, and runs the turn; before, only `lash doctor` showed it."""
    write_config(tmp_path, PLAN_CONFIG + "\n[options.plann]\nmax_steps = 3\n")
    proc = lash("run", "make a plan", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == PLAN_ANSWER
    assert (
        "lash: warning: [options.plann] is set but no plugin named 'plann' is enabled "
        "(did you mean 'plan'?)\n"
    ) in proc.stderr


def test_options_of_a_plugin_disabled_or_reported_missing_are_no_warning(tmp_path: Path) -> None:
    """A table for a plugin the config disables (absent from this install) is deliberate, not a
    misspelling: no warning on every command. A table for a plugin listed in ``plugins`` but not
    installed is reported once, by the skipped-plugin line, not again as a warning."""
    config = PLAN_CONFIG.replace('disable = ["openai"]', 'disable = ["openai", "pager"]')
    config = config.replace(
        'provider = "scripted"',
        'provider = "scripted"\nplugins = ["standard", "stores", "scripted", "plan", "nosuch"]',
    )
    write_config(tmp_path, config + "\n[options.pager]\nlines = 3\n[options.nosuch]\nx = 1\n")
    proc = lash("run", "make a plan", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == PLAN_ANSWER
    assert "lash: plugin skipped: plugin 'nosuch' is listed in `plugins`" in proc.stderr
    assert "lash: warning:" not in proc.stderr, proc.stderr


# -- colour and completion ---------------------------------------------------------------------


def test_no_color_removes_styling_even_where_colour_is_on(tmp_path: Path) -> None:
    """With colour forced on, the status line is styled; a non-empty NO_COLOR removes every
    ANSI code (an empty one does not count, as no-color.org says)."""
    config = write_config(tmp_path, PLAN_CONFIG)
    styled = invoke("--config", str(config), "run", "hi", color=True)
    assert styled.exit_code == 0, styled.stderr
    assert "\x1b[" in styled.stderr
    assert (
        "\x1b["
        in invoke("--config", str(config), "run", "hi", color=True, env={"NO_COLOR": ""}).stderr
    )
    plain = invoke("--config", str(config), "run", "hi", color=True, env={"NO_COLOR": "1"})
    assert plain.exit_code == 0, plain.stderr
    assert "\x1b" not in plain.stdout + plain.stderr
    assert "[turn 3 completed" in plain.stderr


def test_shell_completion_completes_commands_and_options() -> None:
    """click's completion (documented on the CLI page) completes `lash ru` and `lash run --sy`."""

    def complete(words: str) -> list[str]:
        env = {"_LASH_COMPLETE": "bash_complete", "COMP_WORDS": words}
        env["COMP_CWORD"] = str(len(words.split()) - 1)
        result = CliRunner().invoke(cli, [], env=env, prog_name="lash")
        assert result.exit_code == 0, result.output
        return result.stdout.splitlines()

    assert "plain,run" in complete("lash ru")
    assert complete("lash run --sy") == ["plain,--system"]
    script = CliRunner().invoke(cli, [], env={"_LASH_COMPLETE": "bash_source"}, prog_name="lash")
    assert "_LASH_COMPLETE=bash_complete" in script.stdout


# -- real processes ----------------------------------------------------------------------------


def test_a_real_process_reads_a_piped_prompt(tmp_path: Path) -> None:
    """`echo PROMPT | lash run` in a real process: stdout is the answer alone."""
    write_config(tmp_path, PLAN_CONFIG)
    proc = lash("run", cwd=tmp_path, input="make a plan\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == PLAN_ANSWER
    assert "[turn 1 completed | 7 in / 3 out tokens | revision 1]" in proc.stderr


def _signalled_mid_turn(tmp_path: Path, sig: signal.Signals) -> tuple[int, str, str]:
    """Run `lash run --json` on PLAN_CONFIG with its second model call hanging, send ``sig`` once
    the tool ran (the turn then waits on that call), and return the exit status, stdout and
    stderr (all of it, the lines read before the signal included)."""
    write_config(
        tmp_path,
        PLAN_CONFIG.replace(
            'text = "Done planning."', 'text = "never sent"\ndelay = 60'
        ),  # the second model call hangs until cancelled
    )
    proc = subprocess.Popen(
        [LASH, "run", "--json", "make a plan"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:  # the tool ran: the turn now waits on the second model call
        seen.append(line)
        if "-> plan updated" in line:
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, "".join(seen) + err


def test_sigint_cancels_the_turn_which_commits_and_exits_130(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) mid-turn ends `lash run` with exit 130 after committing the turn as
    stopped(cancelled): the store holds it, with what it did before the interrupt."""
    status, out, err = _signalled_mid_turn(tmp_path, signal.SIGINT)
    assert status == 130, err
    assert "[turn 1 stopped (cancelled)" in err
    data = json.loads(out)
    assert (data["outcome"], data["reason"], data["revision"]) == ("stopped", "cancelled", 1)

    record = show(tmp_path / "lash.toml")
    assert (record["session"]["turns"], record["session"]["revision"]) == (1, 1)
    kinds = [node["type"] for node in record["nodes"] if node["type"] != "frame"]
    assert kinds == ["user", "assistant", "tool_call", "tool_result", "outcome"]
    assert "never sent" not in json.dumps(record)


def test_sigterm_cancels_the_turn_which_commits_and_exits_143(tmp_path: Path) -> None:
    """SIGTERM mid-turn (systemd, `docker stop`, `kill`) ends `lash run` as Ctrl-C does, after
    committing the turn as stopped(cancelled), with exit 143 (128 + SIGTERM, what a shell
    reports for a command ended by SIGTERM) rather than dying with the turn uncommitted."""
    status, out, err = _signalled_mid_turn(tmp_path, signal.SIGTERM)
    assert status == 143, err
    assert "lash: terminated (SIGTERM): cancelling the turn" in err
    assert "[turn 1 stopped (cancelled)" in err
    data = json.loads(out)
    assert (data["outcome"], data["reason"], data["revision"]) == ("stopped", "cancelled", 1)

    record = show(tmp_path / "lash.toml")
    assert (record["session"]["turns"], record["session"]["revision"]) == (1, 1)
    outcome = [node for node in record["nodes"] if node["type"] == "outcome"][-1]
    assert (outcome["outcome"], outcome["reason"]) == ("stopped", "cancelled"), outcome
    assert "never sent" not in json.dumps(record)


def _in_terminal(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``lash ARGS`` with stdin and stdout on a pseudo-terminal; return the exit status,
    what the terminal showed and stderr (a pipe)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [LASH, *args],
        cwd=cwd,
        env=clean_env(**env),
        stdin=follower,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, shown.decode(), err.decode()


def test_in_a_terminal_the_answer_is_labelled_and_styled_unless_no_color(tmp_path: Path) -> None:
    """In a terminal the answer follows a bold `assistant>` label; with NO_COLOR the label stays
    and the styling goes; without a prompt argument, a terminal stdin is a usage error."""
    write_config(tmp_path, PLAN_CONFIG)
    code, shown, err = _in_terminal("run", "make a plan", cwd=tmp_path, env={})
    assert code == 0, err
    assert "\x1b[1massistant> \x1b[0mPlanning." in shown
    assert "-> plan updated" in err and "-> plan updated" not in shown

    code, shown, err = _in_terminal("run", "make a plan", cwd=tmp_path, env={"NO_COLOR": "1"})
    assert code == 0, err
    assert "assistant> Planning." in shown
    assert "\x1b" not in shown

    code, shown, err = _in_terminal("run", cwd=tmp_path, env={})
    assert code == 2
    assert "no prompt" in err


def test_the_scripting_example_of_the_cli_page_works(tmp_path: Path) -> None:
    """docs/examples/cli/ask.sh runs as shown: the first turn as JSON, the exit status acted
    on, and the follow-up's answer alone in a file."""
    write_config(tmp_path, PLAN_CONFIG)
    (tmp_path / "question.txt").write_text("make a plan\n", encoding="utf-8")
    path = f"{Path(LASH).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(
        ["sh", str(EXAMPLES / "ask.sh")],
        cwd=tmp_path,
        env=clean_env(PATH=path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "answered\n"
    turn = json.loads((tmp_path / "turn.json").read_text(encoding="utf-8"))
    assert (turn["session"], turn["outcome"], turn["text"]) == (
        "notes",
        "completed",
        "Done planning.",
    )
    assert (tmp_path / "answer.txt").read_text(encoding="utf-8") == PLAN_ANSWER
    users = [
        n["text"] for n in show(tmp_path / "lash.toml", "notes")["nodes"] if n["type"] == "user"
    ]
    assert users == ["make a plan", "Summarise that in one line."]


def test_sigint_while_reading_a_prompt_at_a_terminal_exits_130(tmp_path: Path) -> None:
    """`lash run -` at a terminal says it reads until end of input; Ctrl-C there exits 130
    (not click's "Aborted!" and 1), and no session is created."""
    write_config(tmp_path, PLAN_CONFIG)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [LASH, "run", "-"],
        cwd=tmp_path,
        env=clean_env(),
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(follower)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "reading the prompt until end of input (Ctrl-D)" in first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(leader)
    assert proc.returncode == 130, err
    assert "lash: interrupted" in err and "Aborted" not in err
    assert out == ""
    assert not (tmp_path / ".lash").exists()


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
    assert proc.stdout == "Let me plan.\nAll set.\n"
    assert "-> plan updated: [ ] Buy milk" in proc.stderr
    assert "sk-test-key" not in proc.stdout + proc.stderr
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


# -- lash demo ---------------------------------------------------------------------------------


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
    assert "carried over verbatim: the last turn (6 nodes)" in out
    assert "Next: buy sandwiches, fruit and lemonade" in out
    # Turns 1-2, the config commit, the compaction commit, turn 3.
    assert "3 turns committed, revision 5" in out
    assert "usage by source: compaction 410 in / 30 out, turn 1245 in / 120 out" in out
    assert "\x1b" not in out  # not a terminal


def test_demo_starts_its_session_over_on_each_run() -> None:
    """A second `lash demo` deletes the first run's session and commits revisions 1 to 5 again,
    saying so; the store holds one three-turn session."""
    first = invoke("demo")
    assert first.exit_code == 0, first.stderr
    second = invoke("demo")
    assert second.exit_code == 0, second.stderr
    assert "previous run's session was deleted" not in first.stdout
    assert "session 'demo': the previous run's session was deleted" in second.stdout
    for result in (first, second):
        assert "[turn 1 completed | 442 in / 55 out tokens | revision 1]" in result.stdout
        assert "(committed as revision 3)" in result.stdout
        assert "(the old one stays in history; committed as revision 4)" in result.stdout
        assert "3 turns committed, revision 5" in result.stdout
    listed = invoke("sessions", "list", "--json")
    assert [(s["session_id"], s["turns"], s["revision"]) for s in json.loads(listed.stdout)] == [
        ("demo", 3, 5)
    ]


def test_lazy_command_table_matches_the_commands() -> None:
    """`lash --help` lists lazily imported commands with the help their modules really have."""
    from lash.cli._context import COMMANDS, builtin_command

    for name, (_module, _attribute, short_help) in COMMANDS.items():
        command = builtin_command(name)
        assert command is not None and command.name == name
        assert (command.help or "").splitlines()[0] == short_help, name


def test_model_and_provider_are_committed_to_an_existing_session(tmp_path: Path) -> None:
    """On an existing session, --provider and --model are committed as a config change before
    the turn, said on stderr, kept by later runs, and the turn uses them; the same values again
    change nothing."""
    config = write_config(
        tmp_path, 'provider = "scripted"\nautoload = false\n[options.scripted]\nresponses = []\n'
    )
    with WireServer() as server:
        server.push(*(Reply(text=["ok"]) for _ in range(4)))
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
        # The session starts on the scripted provider (its empty script fails the turn).
        started = invoke("--config", str(config), "run", "hi", env=env)
        assert started.exit_code == 1
        assert show(config)["session"]["config"]["provider"] == "scripted"
        args = ("--config", str(config), "run", "--provider", "openai", "--model", "gpt-x")
        switched = invoke(*args, "hello", env=env)
        assert switched.exit_code == 0, switched.stderr
        assert switched.stderr.splitlines()[:2] == [
            "config: provider scripted -> openai",
            "config: model (default) -> gpt-x",
        ]
        kept = invoke("--config", str(config), "run", "still there?", env=env)
        again = invoke(*args[:-2], "--model", "gpt-y", "and now?", env=env)
        same = invoke(*args[:-2], "--model", "gpt-y", "once more", env=env)
        requests = server.requests
    assert [r.exit_code for r in (kept, again, same)] == [0, 0, 0]
    assert "config:" not in kept.stderr
    assert again.stderr.splitlines()[0] == "config: model gpt-x -> gpt-y"
    assert "config:" not in same.stderr
    assert [r.body["model"] for r in requests] == ["gpt-x", "gpt-x", "gpt-y", "gpt-y"]
    shown = show(config)
    assert shown["session"]["config"]["provider"] == "openai"
    assert shown["session"]["config"]["model"] == "gpt-y"
    # Each change is a commit of its own: 5 turns and 2 configuration commits.
    assert (shown["session"]["turns"], shown["session"]["revision"]) == (5, 7)


#: A first model call that hangs until its turn is cancelled.
HANGING = """
provider = "scripted"
autoload = false
disable = ["openai"]
store = "sqlite:///{db}"

[[options.scripted.responses]]
text = "never sent"
delay = 120
"""

QUICK = """
provider = "scripted"
autoload = false
disable = ["openai"]
store = "sqlite:///{db}"

[[options.scripted.responses]]
text = "Second answer."
"""


def background(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [LASH, *args],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs, and reap it (no test leaves a process behind)."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def test_run_waits_for_a_session_another_process_is_running(tmp_path: Path) -> None:
    """While another process is mid-turn in the session, `lash run --wait 0` fails at once
    naming the holder, and `lash run` says it waits, waits, and runs as the session's next turn
    once the other turn is committed (here: cancelled by SIGINT)."""
    db = tmp_path / "lash.db"
    (tmp_path / "hang.toml").write_text(HANGING.format(db=db), encoding="utf-8")
    (tmp_path / "quick.toml").write_text(QUICK.format(db=db), encoding="utf-8")
    quick = ("--config", "quick.toml", "run", "--session", "s")
    done = lash(*quick, "zero", cwd=tmp_path)  # turn 1: the session and its first events
    assert done.returncode == 0, done.stderr
    first = background(tmp_path, "--config", "hang.toml", "run", "first", "--session", "s")
    watch = background(tmp_path, "--config", "hang.toml", "sessions", "watch", "s", "--after", "e2")
    waiting = None
    try:
        # The first process holds the session once its turn has started: the watcher says so.
        assert watch.stdout is not None
        assert "turn_started" in watch.stdout.readline()
        busy = lash(*quick, "--wait", "0", "refused", cwd=tmp_path)
        assert busy.returncode == 1, busy.stderr
        assert busy.stdout == ""
        assert busy.stderr.startswith(
            "Error: session 's' is busy: another process runs it (its lease is held by "
        )
        assert busy.stderr.endswith("waited 0 s; try again, or wait longer with --wait SECONDS\n")

        waiting = background(tmp_path, *quick, "--wait", "120", "second")
        assert waiting.stderr is not None
        note = waiting.stderr.readline()
        assert note.startswith("lash: session 's' is busy: another process runs it")
        assert note.endswith("waiting for it up to 120 s (--wait)\n")
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)
        assert first.returncode == 130, err
        assert "[turn 2 stopped (cancelled)" in err
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err
        assert out == "Second answer.\n"
        assert "[turn 3 completed | 0 in / 0 out tokens | revision 3]" in err
    finally:
        for proc in (first, watch, *([waiting] if waiting is not None else [])):
            stop(proc)
    nodes = show(tmp_path / "quick.toml", "s")["nodes"]
    assert [n["text"] for n in nodes if n["type"] == "user"] == ["zero", "first", "second"]
