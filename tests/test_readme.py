"""The README's embedding example and config snippet work as shown."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def block(language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match is not None, f"README has no {language} block"
    return match.group(1)


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
    assert config.plugins == ("standard", "openai", "plan", "files")
    assert (config.provider, config.model) == ("openai", "gpt-4o-mini")
    assert tomllib.loads(block("toml"))["options"]["files"] == {"root": "workspace"}
