"""Real ``lash serve`` (and ``lash worker``) subprocesses for the serve tests and the benchmark:
a config in a directory with the ``servetools`` plugin installed, a scripted model, a SQLite
store, and an SSE reader over httpx."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import _pkgs
import httpx

TESTS = Path(__file__).resolve().parent


def write_config(
    root: Path,
    responses: Sequence[Mapping[str, Any]],
    *,
    store_query: str = "",
) -> Path:
    """``root/lash.toml``: builtins standard, stores, scripted and the servetools plugin (its
    distribution in ``root/site``), the scripted model playing ``responses``, SQLite in
    ``root/lash.db``. Returns the ``site`` directory to put on ``PYTHONPATH``."""
    site = root / "site"
    info = site / "servetools-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: servetools\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[lash.plugins]\nservetools = serve_tools\n", encoding="utf-8"
    )
    (root / "script.json").write_text(json.dumps({"responses": list(responses)}), "utf-8")
    (root / "lash.toml").write_text(
        'plugins = ["standard", "stores", "scripted", "servetools"]\n'
        f'store = "sqlite:///{root / "lash.db"}{store_query}"\n'
        'provider = "scripted"\n'
        "[options.scripted]\n"
        f'script = "{root / "script.json"}"\n',
        encoding="utf-8",
    )
    return site


def environment(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
    env["PYTHONPATH"] = _pkgs.pythonpath(site, TESTS)
    env.update(extra)
    return env


class Process:
    """A ``lash`` subprocess in ``root`` (stdout and stderr in files), stopped with SIGTERM (or
    killed)."""

    def __init__(self, root: Path, site: Path, args: Sequence[str], **env: str) -> None:
        name = f"{args[0]}-{time.monotonic_ns()}"
        self.err_path = root / f"{name}.err"
        self.out_path = root / f"{name}.out"
        command = [str(_pkgs.LASH), "--config", str(root / "lash.toml"), *args]
        with self.err_path.open("wb") as err, self.out_path.open("wb") as out:
            self.proc = subprocess.Popen(
                command,
                env=environment(site, **env),
                stderr=err,
                stdout=out,
                cwd=root,
            )

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")

    def stdout(self) -> str:
        """What it printed on stdout (uvicorn's access log, at ``--log-level info``)."""
        return self.out_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Server(Process):
    """``lash serve --port 0`` and the URL it printed."""

    def __init__(self, root: Path, site: Path, *args: str, **env: str) -> None:
        super().__init__(root, site, ["serve", "--port", "0", *args], **env)
        deadline = time.monotonic() + 30
        while True:
            found = re.search(r"lash serve: (http://\S+/)", self.stderr())
            if found:
                self.url = found.group(1).rstrip("/")
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"lash serve did not start:\n{self.stderr()}")
            time.sleep(0.05)


def sse_events(
    source: httpx.Response | Iterator[str],
) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """The ``(id, data)`` of each SSE message of a streamed response (or of its lines, some
    read already), as they arrive (the SSE format: fields up to a blank line; comments and
    ``retry:`` skipped)."""
    lines = source.iter_lines() if isinstance(source, httpx.Response) else source
    event_id: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield event_id, json.loads("\n".join(data))
            event_id, data = None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "data":
                data.append(value)
