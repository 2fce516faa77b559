"""The README's quickstart, embedding example and command-line host work as shown."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from openai_wire_server import Reply, WireServer, WireToolCall

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks in ``language``, in order."""
    found = re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert found, f"README has no {language} block"
    return found


def block(language: str) -> str:
    return blocks(language)[0]


def commands(script: str) -> list[str]:
    """The commands of a shell block: its lines without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in script.splitlines())
    return [line for line in lines if line]


def test_quickstart_is_two_commands() -> None:
    """The quickstart is `./dev demo` and `./dev test`, nothing else."""
    assert commands(block("sh")) == ["./dev demo", "./dev test"]


def test_readme_links_resolve() -> None:
    """Every relative link of the README names a file of the checkout (the docs, mostly)."""
    links = re.findall(r"\]\(([^)#:]+)\)", README.read_text(encoding="utf-8"))
    assert "docs/index.rst" in links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []


def test_readme_embedding_example_runs(tmp_path: Path) -> None:
    """The Python example runs offline, prints its outcome and writes the default store."""
    script = tmp_path / "example.py"
    script.write_text(block("python"), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "completed Hello!\n"
    assert (tmp_path / ".lash" / "lash.db").is_file()


def test_readme_config_snippet_is_a_valid_host_config(tmp_path: Path) -> None:
    """The TOML snippet is a config lash accepts, with the plugins it names."""
    import lash

    (tmp_path / "lash.toml").write_text(block("toml"), encoding="utf-8")
    config = lash.HostConfig.load(cwd=tmp_path)
    assert config.plugins == ("standard", "stores", "openai", "plan", "files")
    assert (config.provider, config.model) == ("openai", "gpt-4o-mini")
    assert tomllib.loads(block("toml"))["options"]["files"] == {"root": "workspace"}


def spelled_out(config: str) -> str:
    """The config with its commented-out ``store = ...`` line in effect."""
    lines, count = re.subn(r"^# (store = .*)$", r"\1", config, flags=re.M)
    assert count == 1, "the README's config shows no explicit store URL"
    return lines


def run_the_host(
    directory: Path, config: str, server: WireServer
) -> subprocess.CompletedProcess[str]:
    """Write ``config`` as lash.toml in ``directory`` and run the README's commands there with
    bash, the OpenAI-compatible provider pointed at ``server`` (as OPENAI_BASE_URL says)."""
    (directory / "lash.toml").write_text(config, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LASH_", "OPENAI_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["OPENAI_BASE_URL"] = server.base_url
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", blocks("sh")[1]],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("store", ["default", "spelled out"])
def test_readme_host_runs_in_an_empty_directory(tmp_path: Path, store: str) -> None:
    """The config and commands, run as written in an empty directory, complete a turn whose
    tool call writes into the workspace, and store it in .lash/lash.db."""
    config = block("toml") if store == "default" else spelled_out(block("toml"))
    write = WireToolCall(
        id="call_1",
        name="write_file",
        arguments=[json.dumps({"path": "list.md", "content": "- bread\n- cherries\n"})],
    )
    with WireServer() as server:
        server.push(Reply(tool_calls=[write]), Reply(text=["Written to ", "list.md."]))
        proc = run_the_host(tmp_path, config, server)
        requests = server.requests
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Written to list.md." in proc.stdout
    assert (tmp_path / "workspace" / "list.md").read_text(encoding="utf-8") == (
        "- bread\n- cherries\n"
    )
    assert (tmp_path / ".lash" / "lash.db").is_file()
    assert len(requests) == 2
    assert requests[0].body["model"] == "gpt-4o-mini"
    assert requests[0].headers["authorization"] == "Bearer sk-..."
    tools = {tool["function"]["name"] for tool in requests[0].body["tools"]}
    assert {"update_plan", "write_file"} <= tools


def test_readme_store_url_without_create_dirs_creates_nothing(tmp_path: Path) -> None:
    """As the README says, an explicit URL without ?create_dirs=1 does not make .lash/."""
    config = spelled_out(block("toml")).replace("?create_dirs=1", "")
    with WireServer() as server:
        server.push(Reply(text=["unused"]))
        proc = run_the_host(tmp_path, config, server)
    assert proc.returncode != 0
    assert "create_dirs=1" in proc.stderr
    assert not (tmp_path / ".lash").exists()


def test_the_hook_count_is_the_contracts() -> None:
    """The README counts the hooks of lash/hookspecs.py (deprecated aliases aside)."""
    from lash import hookspecs

    found = re.search(r"\| hooks \| (\d+) hooks,", README.read_text(encoding="utf-8"))
    assert found is not None
    assert int(found[1]) == len(hookspecs.SHAPES)
