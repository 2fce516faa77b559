"""Build tiny plugin distributions and install them for real, for tests of the ``lash`` CLI.

Each distribution is a source tree with a ``pyproject.toml`` declaring its ``lash.plugins`` entry
points, installed with pip into its own target directory; a test "installs" a set of them by putting
their directories on ``PYTHONPATH`` of a ``lash`` subprocess.

The plugins installed in the test environment itself, other than lash's builtins, are hidden from
every test (:func:`hide_installed_plugins`, wired up by ``conftest.py``): the suite's results do
not depend on what else is installed where it runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The ``lash`` console script of the environment running the tests (any checkout, any venv).
LASH = Path(sys.executable).parent / "lash"

#: lash's own distribution: its plugins are the builtins, which tests expect to find.
LASH_DISTRIBUTION = "lash-sdk"

#: The directory hiding the environment's third-party plugins, once conftest.py has made it.
_hiding: list[Path] = []


def hide_installed_plugins(root: Path) -> list[str]:
    """Hide the lash plugins of every installed distribution but lash-sdk; return their names.

    ``root`` gets an empty distribution (metadata, no entry points) named like each of them.
    Discovery keeps only the first distribution of a name on the path, so with ``root`` ahead of
    site-packages (on ``sys.path`` and, through :func:`pythonpath`, on every subprocess's
    ``PYTHONPATH``) a plugin someone installed into the environment, as the tutorial has them
    do, loads in no test. The distributions a test installs itself go ahead of ``root``, so they
    are found as usual, even under the same name.
    """
    # importlib-metadata, as lash's discovery: the same distributions, deduplicated the same way.
    import importlib_metadata

    names = sorted(
        {
            ep.dist.name
            for ep in importlib_metadata.entry_points(group="lash.plugins")
            if ep.dist is not None and normalize(ep.dist.name) != LASH_DISTRIBUTION
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        # The directory's name is what discovery deduplicates by (PEP 503, as a file name).
        info = root / f"{normalize(name).replace('-', '_')}-0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 0\n", encoding="utf-8"
        )
    _hiding[:] = [root]
    return names


def pythonpath(*dirs: Path) -> str:
    """A subprocess's ``PYTHONPATH``: ``dirs``, then the directory hiding installed plugins."""
    return os.pathsep.join(str(path) for path in [*dirs, *_hiding])


def normalize(name: str) -> str:
    """A distribution name normalized as PEP 503 says (``Lash_SDK`` and ``lash-sdk`` are one)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def write_package(
    root: Path,
    dist: str,
    *,
    plugins: Mapping[str, str],
    modules: Mapping[str, str],
    version: str = "0.1.0",
) -> Path:
    """Write the source tree of distribution ``dist`` under ``root`` and return its directory.

    ``plugins`` maps entry-point names to targets (``"module"`` or ``"module:attr"``);
    ``modules`` maps top-level module names to their source (dedented).
    """
    src = root / dist
    src.mkdir(parents=True)
    entry_points = "\n".join(f'"{name}" = "{target}"' for name, target in plugins.items())
    py_modules = ", ".join(f'"{name}"' for name in modules)
    (src / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "{version}"

            [project.entry-points."lash.plugins"]
            {{entry_points}}

            [tool.setuptools]
            py-modules = [{py_modules}]
            """
        ).replace("{entry_points}", entry_points),
        encoding="utf-8",
    )
    for name, source in modules.items():
        (src / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return src


# One process builds every wheel with the PEP 517 backend the trees declare (setuptools): pip would
# start three backend subprocesses per tree, which is most of the time these tests take.
_BUILD_WHEELS = """
import os, sys
from setuptools import build_meta

out = os.path.abspath(sys.argv[1])
for src in sys.argv[2:]:
    os.chdir(src)
    print(os.path.join(out, build_meta.build_wheel(out)))
"""


def build_wheels(sources: Sequence[Path], out: Path) -> list[Path]:
    """Build a wheel of each source tree into ``out``; return their paths, in order."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD_WHEELS, str(out), *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building wheels failed:\n{proc.stdout}\n{proc.stderr}")
    wheels = [Path(line) for line in proc.stdout.splitlines() if line.endswith(".whl")]
    assert len(wheels) == len(sources), proc.stdout
    return wheels


def pip_install(packages: Mapping[str, Sequence[Path]], target_root: Path) -> dict[str, Path]:
    """Install each group of packages (wheels or source trees) with the test environment's pip
    into its own directory under ``target_root``, all groups in parallel; return the directories
    by the same keys."""
    running = {}
    for key, group in packages.items():
        target = target_root / key
        command = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            *map(str, group),
        ]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running[key] = (target, proc)
    installed: dict[str, Path] = {}
    for key, (target, proc) in running.items():
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"pip could not install {key!r}:\n{out}\n{err}")
        installed[key] = target
    return installed


def run_lash(
    *args: str,
    cwd: Path,
    installed: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    executable: Sequence[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the ``lash`` command (or ``executable``) with only ``installed`` added to the path
    (and the environment's own third-party plugins hidden).

    The ``LASH_*`` variables of the calling environment are dropped, so only ``env`` sets them.
    """
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LASH_") and key != "PYTHONPATH"
    }
    if path := pythonpath(*installed):
        environ["PYTHONPATH"] = path
    environ.update(env or {})
    command = [*(executable or [str(LASH)]), *args]
    return subprocess.run(
        command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=60, check=False
    )
