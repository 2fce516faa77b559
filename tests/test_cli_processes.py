"""``lash processes list/show/cancel`` and ``lash worker``: in process with click's runner, and
one real ``lash worker --once`` subprocess on a SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path

import _pkgs
import pytest
import worker_jobs
from click.testing import CliRunner, Result
from test_worker_crash import TESTS, install_crashjobs

import lash
from lash.cli import cli
from lash_plugins_builtin import stores


def invoke(tmp_path: Path, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(tmp_path / "lash.toml"), *args], catch_exceptions=False
    )


def core_on(tmp_path: Path) -> lash.LashCore:
    return lash.LashCore(
        plugins=[stores, worker_jobs], builtins=(), store=f"sqlite:///{tmp_path / 'lash.db'}"
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "lash.toml").write_text(
        f'plugins = ["stores"]\nstore = "sqlite:///{tmp_path / "lash.db"}"\n', encoding="utf-8"
    )
    return tmp_path


def test_list_show_and_cancel(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """list shows each process (text and JSON, filtered by session), show prints one, cancel
    settles a pending one; an unknown id is an error naming it."""
    monkeypatch.setenv("CRASH_DIR", str(config))

    async def setup() -> tuple[str, str]:
        async with core_on(config) as core:
            a = await core.processes.start("rerun", worker_jobs.Job(1), session_id="s1")
            b = await core.processes.start("owned", worker_jobs.Job(2), session_id="s2")
            return a.id, b.id

    first, second = asyncio.run(setup())
    result = invoke(config, "processes", "list")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"{first}  rerun  pending  session=s1  attempts=0/100",
        f"{second}  owned  pending  session=s2  attempts=0/1",
    ]
    rows = json.loads(invoke(config, "processes", "list", "--session", "s2", "--json").output)
    assert [(r["id"], r["kind"], r["status"], r["payload"]) for r in rows] == [
        (second, "owned", "pending", {"n": 2, "seconds": 0.2})
    ]
    assert rows[0]["created_at"].endswith("+00:00") and rows[0]["finished_at"] is None
    shown = json.loads(invoke(config, "processes", "show", first, "--json").output)
    assert (shown["id"], shown["recovery"], shown["key"]) == (first, "rerunnable", None)
    text = invoke(config, "processes", "show", first).output
    assert f"id: {first}\n" in text and "status: pending\n" in text
    cancelled = invoke(config, "processes", "cancel", second, "--reason", "not now")
    assert cancelled.exit_code == 0 and cancelled.output == f"{second}: cancelled\n"
    rows = json.loads(invoke(config, "processes", "list", "--json").output)
    assert [(r["status"], r["error"]) for r in rows] == [
        ("pending", None),
        ("cancelled", "not now"),
    ]
    missing = invoke(config, "processes", "show", "nope")
    assert missing.exit_code == 1 and "no process 'nope'" in missing.output
    assert invoke(config, "processes", "list", "--status", "running").output == "no processes\n"


def test_lash_worker_once_runs_the_processes_of_its_plugins(tmp_path: Path) -> None:
    """A real ``lash worker --once`` runs every runnable process of its plugins' kinds, and
    returns; ``lash processes list`` (a real subprocess too) shows them succeeded."""
    site = install_crashjobs(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
    env.update(PYTHONPATH=_pkgs.pythonpath(site, TESTS), CRASH_DIR=str(tmp_path))
    os.environ["CRASH_DIR"] = str(tmp_path)

    async def setup() -> list[str]:
        async with core_on(tmp_path) as core:
            return [
                (await core.processes.start("rerun", worker_jobs.Job(n, 0.05))).id for n in range(3)
            ]

    try:
        ids = asyncio.run(setup())
    finally:
        del os.environ["CRASH_DIR"]
    config = ["--config", str(tmp_path / "lash.toml")]
    worker = subprocess.run(
        [str(_pkgs.LASH), *config, "worker", "--once", "--no-sessions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    listing = subprocess.run(
        [str(_pkgs.LASH), *config, "processes", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    rows = json.loads(listing.stdout)
    assert [(r["id"], r["status"], r["result"]) for r in rows] == [
        (pid, "succeeded", {"n": n}) for n, pid in enumerate(ids)
    ]
    heard = (tmp_path / "finished.log").read_text().split()
    assert sorted(heard[1::3]) == sorted(ids)


def test_lash_worker_refuses_an_unknown_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--kind`` naming a kind no plugin registers is an error naming it."""
    monkeypatch.syspath_prepend(str(install_crashjobs(tmp_path)))
    result = invoke(tmp_path, "worker", "--once", "--kind", "nope")
    assert result.exit_code == 1
    assert "unknown process kind 'nope' (registered kinds: " in result.output


#: A host whose scripted model answers each input after a pause (the turn is still running when
#: the test signals the worker), then once more without one.
SLOW_HOST = """
plugins = ["standard", "stores", "scripted"]
provider = "scripted"
store = "sqlite:///{db}"

[[options.scripted.responses]]
text = "first answer"
delay = {delay}

[[options.scripted.responses]]
text = "second answer"
"""


def _start_worker_on_a_running_turn(tmp_path: Path, delay: float) -> subprocess.Popen[str]:
    """Queue two inputs for session s1, start a real ``lash worker`` and return it once its
    turn of the first input is running (the input is claimed)."""
    db = tmp_path / "lash.db"
    (tmp_path / "lash.toml").write_text(SLOW_HOST.format(db=db, delay=delay), encoding="utf-8")

    async def queue() -> None:
        async with lash.LashCore.from_config(tmp_path / "lash.toml") as core:
            await core.enqueue("s1", "first", key="k1")
            await core.enqueue("s1", "second", key="k2")

    asyncio.run(queue())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LASH_", "OPENAI_"))}
    worker = subprocess.Popen(
        [str(_pkgs.LASH), "--config", str(tmp_path / "lash.toml"), "worker", "--poll", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    async def claimed() -> None:
        async with lash.LashCore.from_config(tmp_path / "lash.toml") as reader:
            while [i.state for i in await reader.store.list_inputs("s1")][:1] != ["claimed"]:
                assert worker.poll() is None, worker.communicate()
                await asyncio.sleep(0.02)

    asyncio.run(asyncio.wait_for(claimed(), 60))
    return worker


def _inputs(tmp_path: Path) -> list[tuple[str, str, str | None, str | None]]:
    """The inputs of s1, oldest first: text, state, and the outcome and answer of the turn
    that consumed it (None while it is queued)."""

    async def read() -> list[tuple[str, str, str | None, str | None]]:
        async with lash.LashCore.from_config(tmp_path / "lash.toml") as core:
            rows = []
            for queued in await core.store.list_inputs("s1", settled=True):
                turn = None
                if queued.turn_id is not None:
                    turn = await core.store.turn_record("s1", queued.turn_id)
                outcome = turn.outcome if turn is not None else None
                text = turn.result.get("text") if turn is not None else None
                rows.append((queued.text, queued.state, outcome, text))
            return rows

    return asyncio.run(read())


def test_sigterm_lets_the_running_turn_finish_then_the_worker_exits(tmp_path: Path) -> None:
    """SIGTERM (a deploy, systemd, Kubernetes) stops ``lash worker`` gracefully: the turn it is
    running finishes and commits its answer, the input queued behind it stays queued for the
    next worker, and the worker says so and exits 0. Before, the turn was cancelled and
    committed as stopped: the input was consumed and never answered."""
    worker = _start_worker_on_a_running_turn(tmp_path, delay=2)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert _inputs(tmp_path) == [
        ("first", "completed", "completed", "first answer"),
        ("second", "pending", None, None),
    ]
    assert "lash worker: stopping: the running turns finish first" in err
    assert "Traceback" not in err


def test_a_second_signal_stops_the_worker_at_once(tmp_path: Path) -> None:
    """A second SIGTERM (or Ctrl-C) while the running turns finish cancels them: the turn
    commits as stopped (cancelled) and the worker exits 0 without waiting for the model."""
    worker = _start_worker_on_a_running_turn(tmp_path, delay=600)
    worker.send_signal(signal.SIGTERM)
    assert worker.stderr is not None
    assert "lash worker: stopping" in worker.stderr.readline()
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert "Traceback" not in err
    assert _inputs(tmp_path) == [
        ("first", "completed", "stopped", ""),
        ("second", "pending", None, None),
    ]


@pytest.mark.parametrize("once", [False, True])
def test_a_worker_whose_store_cannot_be_opened_exits_at_once(tmp_path: Path, once: bool) -> None:
    """``lash worker`` on a store it cannot open (here a SQLite file in a directory that does not
    exist) exits 1 with one line naming the problem; before, it logged the same warning every
    poll and never exited (and --once said it twice)."""
    url = f"sqlite:///{tmp_path / 'missing' / 'lash.db'}"
    (tmp_path / "lash.toml").write_text('plugins = ["stores"]\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
    config = str(tmp_path / "lash.toml")
    args = ["--once"] if once else ["--poll", "0.05"]
    worker = subprocess.run(
        [str(_pkgs.LASH), "--config", config, "worker", "--store", url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert worker.returncode == 1
    assert worker.stderr.startswith("Error: ")
    assert f"the directory {tmp_path / 'missing'} does not exist" in worker.stderr
    assert worker.stderr.count("\n") == 1, worker.stderr
    assert not (tmp_path / "missing").exists()
