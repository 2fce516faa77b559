"""The lash-sdk wheel built from this tree: it holds what an installed lash needs at run time
(the web page of ``lash serve``, the plugin template, the ``py.typed`` markers), and setuptools
builds it without a warning (a warning there has meant files silently left out)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the wheel is built from (a copy, so the build leaves nothing in the work tree).
SOURCES = (
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "lash",
    "lash_plugins_builtin",
    "plugin_template",
)

BUILD = """
import os, sys, warnings
from setuptools import build_meta

warnings.simplefilter("always")
print(os.path.join(sys.argv[1], build_meta.build_wheel(sys.argv[1])))
"""


def test_the_wheel_holds_the_run_time_files_and_builds_without_warnings(tmp_path: Path) -> None:
    tree, out = tmp_path / "tree", tmp_path / "out"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=ignore)
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(source, tree / name)
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", BUILD, str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    wheel = Path(proc.stdout.strip().splitlines()[-1])
    assert wheel.name.startswith("lash_sdk-"), wheel.name
    names = set(zipfile.ZipFile(wheel).namelist())
    for static in ("index.html", "app.js", "app.css"):
        assert f"lash/serve/static/{static}" in names
    assert {"lash/py.typed", "lash_plugins_builtin/py.typed"} <= names
    assert "lash_plugin_template/cookiecutter.json" in names
    # Every module of the source tree is in the wheel (a package missing from `packages` is not).
    modules = {
        str(path.relative_to(ROOT))
        for package in ("lash", "lash_plugins_builtin")
        for path in (ROOT / package).rglob("*.py")
    }
    assert modules <= names, sorted(modules - names)
