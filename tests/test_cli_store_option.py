"""``--store URL`` and ``$LASH_STORE``: the commands that open the store use that one instead of
the configured store (``--store`` first, then the environment, then the config), on SQLite and
on a real Postgres server, and a real ``lash worker --store`` subprocess works a Postgres
database's processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import _pkgs
import pytest
import worker_jobs
from _recorder import Recorder
from click.testing import CliRunner, Result
from test_worker_crash import TESTS, install_crashjobs

import lash
from lash.cli import cli
from lash_plugins_builtin import standard, stores


def invoke(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(config), *args], catch_exceptions=False, env=env
    )


async def one_turn(url: str, session_id: str, text: str) -> None:
    """Commit one turn of session ``session_id`` to the store at ``url``."""
    core = lash.LashCore(
        plugins=[standard, stores, Recorder([{"text": text}])],
        builtins=(),
        store=url,
        provider="recorder",
    )
    async with core, core.session(session_id) as session:
        await session.turn("hello").run()


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config whose store is ``configured.db``, which has session ``in-config``."""
    monkeypatch.delenv("LASH_STORE", raising=False)
    config = tmp_path / "lash.toml"
    url = f"sqlite:///{tmp_path / 'configured.db'}"
    config.write_text(f'plugins = ["stores"]\nstore = "{url}"\n', encoding="utf-8")
    asyncio.run(one_turn(url, "in-config", "from the config's store"))
    return config


def listed(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [row["session_id"] for row in json.loads(result.output)]


def test_store_option_and_environment_choose_the_store(configured: Path, tmp_path: Path) -> None:
    """``sessions list`` reads the configured store; with ``--store`` (after the command's
    name) or ``$LASH_STORE`` another one; ``--store`` wins over the environment."""
    other = f"sqlite:///{tmp_path / 'other.db'}"
    third = f"sqlite:///{tmp_path / 'third.db'}"
    asyncio.run(one_turn(other, "in-other", "from the other store"))
    asyncio.run(one_turn(third, "in-third", "from the third store"))
    assert listed(invoke(configured, "sessions", "list", "--json")) == ["in-config"]
    chosen = invoke(configured, "sessions", "list", "--json", "--store", other)
    assert listed(chosen) == ["in-other"]
    from_env = invoke(configured, "sessions", "list", "--json", env={"LASH_STORE": third})
    assert listed(from_env) == ["in-third"]
    both = invoke(
        configured, "sessions", "list", "--json", "--store", other, env={"LASH_STORE": third}
    )
    assert listed(both) == ["in-other"]
    shown = invoke(configured, "sessions", "show", "in-other", "--store", other)
    assert shown.exit_code == 0 and "from the other store" in shown.output


def test_a_store_option_naming_a_missing_file_is_not_created(
    configured: Path, tmp_path: Path
) -> None:
    """Inspection with ``--store`` never creates the store it names."""
    missing = tmp_path / "missing.db"
    result = invoke(configured, "sessions", "list", "--store", f"sqlite:///{missing}")
    assert result.exit_code == 1 and str(missing) in result.output
    assert not missing.exists()


def test_sessions_and_processes_commands_on_postgres_by_store_option(
    configured: Path, tmp_path: Path, postgres_url: str
) -> None:
    """``sessions`` and ``processes`` commands against a real Postgres server given by
    ``--store``, and a real ``lash worker --store postgresql://...`` subprocess running the
    database's processes; the password never shows in the output."""
    asyncio.run(one_turn(postgres_url, "on-postgres", "from postgres"))
    site = install_crashjobs(tmp_path)

    async def start() -> list[str]:
        os.environ["CRASH_DIR"] = str(tmp_path)
        try:
            core = lash.LashCore(plugins=[stores, worker_jobs], builtins=(), store=postgres_url)
            async with core:
                return [
                    (await core.processes.start("rerun", worker_jobs.Job(n, 0.05))).id
                    for n in range(2)
                ]
        finally:
            del os.environ["CRASH_DIR"]

    ids = asyncio.run(start())
    sessions = invoke(configured, "sessions", "list", "--json", "--store", postgres_url)
    assert listed(sessions) == ["on-postgres"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
    env.update(PYTHONPATH=_pkgs.pythonpath(site, TESTS), CRASH_DIR=str(tmp_path))
    # The crash-jobs plugin is enabled by this config; the store is the command line's.
    config = tmp_path / "worker.toml"
    config.write_text(
        f'plugins = ["stores", "crashjobs"]\nstore = "sqlite:///{tmp_path / "x.db"}"\n',
        encoding="utf-8",
    )
    common = [str(_pkgs.LASH), "--config", str(config)]
    worker = subprocess.run(
        [*common, "worker", "--once", "--no-sessions", "--store", postgres_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    listing = subprocess.run(
        [*common, "processes", "list", "--json", "--store", postgres_url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)
    assert [(r["id"], r["status"], r["result"]) for r in rows] == [
        (pid, "succeeded", {"n": n}) for n, pid in enumerate(ids)
    ]
    assert not (tmp_path / "x.db").exists()  # the configured store was never opened


def test_a_missing_store_names_where_its_url_came_from(configured: Path, tmp_path: Path) -> None:
    """A store URL from --store or $LASH_STORE that points at no database: the error says to
    check --store or $LASH_STORE, not the config file, which did not name that store."""
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    given = invoke(configured, "sessions", "list", "--store", missing)
    assert given.exit_code == 1
    assert "check the store URL given with --store," in given.output
    assert str(configured) not in given.output
    from_env = invoke(configured, "sessions", "list", env={"LASH_STORE": missing})
    assert from_env.exit_code == 1
    assert "check the store URL in $LASH_STORE," in from_env.output
    assert str(configured) not in from_env.output
    assert not (tmp_path / "missing.db").exists()
