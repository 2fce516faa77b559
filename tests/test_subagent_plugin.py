"""The ``subagent`` builtin: the tool starts a process and returns at once; a worker runs the
task as one turn of a child session (restricted tools, the parent's stored config) and the
answer comes back to the parent as a new turn; the child's usage rolls up into the parent."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import _pkgs
import pytest
from _recorder import Recorder

import lash
from lash_plugins_builtin import standard, stores, subagent

pytestmark = pytest.mark.anyio


def lookup(topic: str) -> str:
    """Looks a topic up."""
    return f"facts about {topic}"


def shout(text: str) -> str:
    """Shouts."""
    return text.upper()


class Tools:
    lash_plugin = lash.PluginMeta(name="tools")

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(lookup)
        register(shout)


def usage(tokens_in: int, tokens_out: int) -> dict[str, int]:
    return {"input_tokens": tokens_in, "output_tokens": tokens_out}


def delegate(task: str, **more: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": "subagent", "arguments": {"task": task, **more}}]}


def core_of(tmp_path: Path, rec: Recorder, **options: Any) -> lash.LashCore:
    return lash.LashCore(
        plugins=[standard, stores, rec, Tools(), subagent],
        builtins=(),
        store=f"sqlite:///{tmp_path}/lash.db",
        provider="recorder",
        model="m-1",
        options={"subagent": {"tools": ["lookup"], **options}},
    )


def texts(request: lash.ModelRequest) -> list[str]:
    return [str(getattr(m, "content", "")) for m in request.messages]


def test_subagent_is_opt_in() -> None:
    """Installed, it loads only when named; named, it registers the tool and the kind."""
    default = lash.LashCore(plugins=[], builtins="default", store="memory://")
    (info,) = [p for p in default.plugins if p.name == "subagent"]
    assert info.status == "disabled" and "opt-in" in (info.error or "")
    core = lash.LashCore(plugins=["subagent"], builtins=(), store="memory://")
    kind = core.processes.kind("subagent")
    assert (kind.plugin, kind.recovery) == ("subagent", lash.RecoveryDisposition.OWNER_BOUND)
    assert kind.payload_schema["required"] == ["task"]


async def test_the_answer_comes_back_as_a_new_turn(tmp_path: Path) -> None:
    """The parent's turn ends with the process pending; the worker runs the child's turn (only
    the allowed tool offered, the parent's stored model) and drains the parent, whose next turn
    reads the answer; the child's usage is in the parent's report under child:<id>."""
    rec = Recorder(
        [
            delegate("Find facts about tides."),
            {"text": "A sub-agent is on it.", "usage": usage(50, 5)},
            # The worker: the child's turn (one lookup, then the answer)...
            {"tool_calls": [{"name": "lookup", "arguments": {"topic": "tides"}}]},
            {"text": "Tides: facts about tides.", "usage": usage(30, 4)},
            # ...then the parent's turn woken by the answer.
            {"text": "The sub-agent found: facts about tides.", "usage": usage(70, 8)},
        ]
    )
    async with core_of(tmp_path, rec) as core:
        parent = await core.session("desk").open()
        await parent.configure(model="m-2")  # stored: the child inherits it
        result = await parent.turn("Research tides.").run()
        assert result.outcome == "completed" and result.text == "A sub-agent is on it."
        (process,) = await core.processes.list(session_id="desk")
        assert process.kind == "subagent" and process.status == "pending"
        assert process.payload == {
            "task": "Find facts about tides.",
            "tools": ["lookup"],
            "max_answer_chars": 8000,
        }
        assert result.tool_calls[0].result.content == (
            f"Sub-agent started (process {process.id}); its answer will arrive in a later "
            "message. End your turn now."
        )
        assert len(rec.requests) == 2  # the parent did not wait for the child

        await core.run_worker(once=True)

        done = await core.processes.get(process.id)
        assert done is not None and done.status == "succeeded", done
        child_id = f"desk/{process.id}"
        assert done.result == {
            "session_id": child_id,
            "answer": "Tides: facts about tides.",
            "task": "Find facts about tides.",
            "truncated": False,
        }
        child_call = rec.requests[2]
        assert [t.name for t in child_call.tools] == ["lookup"]
        assert [r.model for r in rec.requests] == ["m-2"] * 5
        assert texts(child_call)[-1] == "Find facts about tides."
        assert not any("Research tides." in t for t in texts(child_call))  # its own history
        woken = rec.requests[4]
        assert texts(woken)[-1] == (
            f"The sub-agent (session {child_id}, process {process.id}) answered the task "
            "'Find facts about tides.':\n\nTides: facts about tides."
        )
        await parent.close()
        parent = await core.session("desk").open()
        assert parent.turns == 2
        by_source = parent.usage_report()["by_source"]
        assert by_source[f"child:{child_id}"]["input_tokens"] == 30
        assert by_source["turn"]["input_tokens"] == 120
        child = await core.session(child_id).open(must_exist=True)
        assert child.parent_id == "desk" and child.turns == 1


async def test_a_call_may_narrow_the_tools_but_not_widen_them(tmp_path: Path) -> None:
    """``tools`` in the call is checked against the options' allowlist: a tool outside it is
    an error result and starts nothing; an empty list gives the child no tools."""
    rec = Recorder(
        [
            delegate("Shout hi.", tools=["shout"]),
            delegate("Say hi.", tools=[]),
            {"text": "Delegated."},
            {"text": "hi"},
            {"text": "It said hi."},
        ]
    )
    async with core_of(tmp_path, rec) as core:
        parent = await core.session("desk").open()
        result = await parent.turn("Go.").run()
        refused, started = (c.result for c in result.tool_calls)
        assert refused.is_error
        assert "a sub-agent may not use ['shout']; it may use: lookup" in refused.content
        (process,) = await core.processes.list(session_id="desk")
        assert process.payload["tools"] == [] and process.id in started.content
        await core.run_worker(once=True)
        assert rec.requests[3].tools == ()
        assert (await core.processes.get(process.id)).status == "succeeded"  # type: ignore[union-attr]


async def test_a_failed_child_turn_fails_the_process_and_says_so(tmp_path: Path) -> None:
    """A child whose allowlist names an unknown tool cannot open: the process fails with the
    reason, and the parent's woken turn reads that it did not answer."""
    rec = Recorder([delegate("Do it."), {"text": "Waiting."}, {"text": "It failed."}])
    async with core_of(tmp_path, rec, tools=["lookup", "nope"]) as core:
        parent = await core.session("desk").open()
        await parent.turn("Go.").run()
        (process,) = await core.processes.list(session_id="desk")
        await core.run_worker(once=True)
        done = await core.processes.get(process.id)
        assert done is not None and done.status == "failed"
        assert "nope" in (done.error or "")
        woken = texts(rec.requests[2])[-1]
        assert woken.startswith(
            f"The sub-agent (process {process.id}) for the task 'Do it.' did not answer (failed): "
        )


async def test_a_long_answer_is_cut_in_the_result(tmp_path: Path) -> None:
    """Over max_answer_chars the result keeps the head, and the rendering says where the whole
    answer is."""
    rec = Recorder([delegate("Write."), {"text": "Ok."}, {"text": "x" * 50}, {"text": "Read."}])
    async with core_of(tmp_path, rec, max_answer_chars=10) as core:
        parent = await core.session("desk").open()
        await parent.turn("Go.").run()
        (process,) = await core.processes.list(session_id="desk")
        await core.run_worker(once=True)
        done = await core.processes.get(process.id)
        assert done is not None and done.result["answer"] == "x" * 10
        assert done.result["truncated"] is True
        assert texts(rec.requests[3])[-1].endswith(
            f"x\n[... cut: the whole answer is in session desk/{process.id}]"
        )


async def test_a_process_without_a_session_has_no_child() -> None:
    """Started by a host without a session, ``context.child`` refuses, naming the process."""
    core = lash.LashCore(plugins=[standard, stores, subagent], builtins=(), store="memory://")
    async with core:
        record = await core.processes.start("subagent", {"task": "Do it."})
        await core.run_worker(once=True)
        done = await core.processes.get(record.id)
        assert done is not None and done.status == "failed"
        assert done.error == (
            f"ProcessError: process {record.id} (subagent) belongs to no session, so it has no "
            "session to create a child of (start it with a session_id)"
        )


def test_a_real_lash_worker_runs_the_subagent(tmp_path: Path) -> None:
    """A real ``lash worker --once`` process (its own scripted model) runs the child's turn and
    the parent's woken turn on the SQLite file the host's turn committed to."""
    db = f"sqlite:///{tmp_path}/lash.db"
    script = [
        {"text": "Tides: facts.", "usage": usage(30, 4)},
        {"text": "The sub-agent says: facts.", "usage": usage(70, 8)},
    ]
    (tmp_path / "script.json").write_text(json.dumps(script), encoding="utf-8")
    (tmp_path / "lash.toml").write_text(
        f'store = "{db}"\nprovider = "scripted"\n'
        'plugins = ["standard", "stores", "scripted", "subagent"]\n'
        f'[options.scripted]\nscript = "{tmp_path}/script.json"\n',
        encoding="utf-8",
    )

    async def parent_turn() -> str:
        core = lash.LashCore(
            plugins=[standard, stores, "scripted", subagent],
            builtins=(),
            store=db,
            provider="scripted",
            options={"scripted": {"responses": [delegate("Find tides."), {"text": "On it."}]}},
        )
        async with core:
            session = await core.session("desk").open()
            await session.turn("Research tides.").run()
            (process,) = await core.processes.list(session_id="desk")
            return process.id

    process_id = asyncio.run(parent_turn())
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
    worker = subprocess.run(
        [str(_pkgs.LASH), "--config", str(tmp_path / "lash.toml"), "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr

    async def read() -> tuple[lash.ProcessRecord | None, list[str], dict[str, Any]]:
        core = lash.LashCore(
            plugins=[standard, stores, "scripted"], builtins=(), store=db, provider="scripted"
        )
        async with core:
            session = await core.session("desk").open(must_exist=True)
            said = [n.text for n in session.nodes if isinstance(n, lash.AssistantMessage)]
            return await core.processes.get(process_id), said, session.usage_report()

    record, said, report = asyncio.run(read())
    assert record is not None and record.status == "succeeded"
    assert record.result["answer"] == "Tides: facts."
    assert said[-1] == "The sub-agent says: facts."
    assert report["by_source"][f"child:desk/{process_id}"]["input_tokens"] == 30
