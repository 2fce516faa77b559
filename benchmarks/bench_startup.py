"""Cold start of the ``lash`` CLI versus importing lash's core dependencies.

Run: ``.venv/bin/python benchmarks/bench_startup.py [--runs 21] [--inherit-env]``

Every figure is the wall time of a fresh subprocess (spawn to exit), run from an empty temporary
directory so no ``lash.toml`` / ``pyproject.toml`` is found, with ``LASH_*`` variables removed.
The commands are interleaved (each round runs all of them, in a rotating order) so drift and
noise from other processes hit every command alike; the table reports medians.

* baseline: ``python -c "import pluggy, attrs, cattrs, aiosqlite"`` (the venv's python)
* ``lash --help`` and ``lash plugins`` (the venv's ``lash`` script, beside ``sys.executable``)
* discovery: ``lash plugins`` with 300 fake installed distributions on ``PYTHONPATH`` (10 of them
  declaring a ``lash.plugins`` entry point to a tiny module, 100 declaring console scripts) versus
  without them, and with the same 300 distributions but no lash plugin among them (scan cost only).

Bytecode: by default the subprocesses get a private ``PYTHONPYCACHEPREFIX`` (and
``PYTHONDONTWRITEBYTECODE`` unset), warmed before measuring, so every module, lash's and its
dependencies', loads from cached bytecode as in a normal install; nothing is written into the
repository. ``--inherit-env`` keeps the caller's bytecode settings instead (for example
``PYTHONDONTWRITEBYTECODE=1`` with an editable install compiles lash from source on every run).
Exits 0 whatever the result: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

#: Issue 17: ``lash --help`` and ``lash plugins`` <= 1.5x the baseline, without caching what
#: plugin inspection found (stale output while debugging a plugin is worse than 60 ms).
TARGET_RATIO = 1.5
N_DISTS = 300
N_PLUGIN_DISTS = 10
N_SCRIPT_DISTS = 100
BASELINE_CODE = "import pluggy, attrs, cattrs, aiosqlite"
#: Information: the libraries ``lash --help`` / ``lash plugins`` cannot do without (the CLI,
#: entry-point discovery, hooks, options), with none of lash's own work: the floor of the target.
FLOOR_CODE = "import click, importlib_metadata, pluggy, attrs, cattrs"
#: Information: ``import lash`` alone (the hook markers and errors; the rest loads on first use).
IMPORT_LASH_CODE = "import lash"

#: Run a lash command in-process and report on stderr the attrs classes it built and the time
#: spent building them (attrs generates each class's methods with ``compile``): what explains
#: most of the difference between the baseline and the lash commands. (Wraps a private attrs
#: method; a census that cannot be taken says so and the timings stand.)
CENSUS_CODE = """
import sys, time
try:
    import attr._make as make
    built, spent, original = [], [0.0], make._ClassBuilder.build_class
    def build_class(self):
        t0 = time.perf_counter(); cls = original(self); spent[0] += time.perf_counter() - t0
        built.append(cls.__module__)
        return cls
    make._ClassBuilder.build_class = build_class
except Exception as exc:
    built, spent = None, [0.0]
    print("CENSUS unavailable:", exc, file=sys.stderr)
sys.argv = ["lash", *sys.argv[1:]]
from lash.cli import main
try:
    main()
except SystemExit:
    pass
if built is not None:
    lash_built = sum(1 for m in built if m.startswith("lash"))
    print(f"CENSUS {len(built)} {lash_built} {spent[0] * 1000:.1f}", file=sys.stderr)
"""

BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python") if (BIN / "python").exists() else sys.executable
LASH = str(BIN / "lash")

PLUGIN_MODULE = '''"""A tiny lash plugin for the discovery benchmark."""
import lash


@lash.hookimpl
def prompt_contributions(session):
    return None
'''


def make_fake_site(root: Path, *, with_plugins: bool) -> Path:
    """A directory of N_DISTS installed distributions (``*.dist-info``), for ``PYTHONPATH``."""
    site = root / ("site_plugins" if with_plugins else "site_noplugins")
    site.mkdir()
    plugin_every = N_DISTS // N_PLUGIN_DISTS
    script_every = N_DISTS // N_SCRIPT_DISTS
    for i in range(N_DISTS):
        name = f"benchfake_{i:03d}"
        info = site / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\nSummary: fake dist {i}\n"
        )
        (info / "INSTALLER").write_text("pip\n")
        sections = []
        if i % script_every == 1:
            sections.append(f"[console_scripts]\n{name} = {name}:main\n")
        if with_plugins and i % plugin_every == 0:
            module = f"{name}_lash"
            (site / f"{module}.py").write_text(PLUGIN_MODULE)
            sections.append(f"[lash.plugins]\n{module} = {module}\n")
        if sections:
            (info / "entry_points.txt").write_text("\n".join(sections))
    return site


def base_env(pycache: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASH_")}
    env.pop("PYTHONPATH", None)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


class Sample(NamedTuple):
    wall: int  # ns, spawn to exit
    cpu: int  # ns of user + system CPU time of the child


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> Sample:
    """One subprocess, spawn to exit: wall time and the child's CPU time; output discarded."""
    t0 = time.perf_counter_ns()
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # wait4 rather than proc.wait(): it also returns the child's resource usage.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter_ns() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        detail = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True).stderr
        raise RuntimeError(f"{argv} exited {proc.returncode}: {detail[-2000:]}")
    return Sample(wall, int((usage.ru_utime + usage.ru_stime) * 1e9))


def interleaved(
    commands: dict[str, tuple[list[str], dict[str, str]]], runs: int, cwd: Path, warmup: int = 2
) -> dict[str, list[Sample]]:
    """Run every command ``runs`` times, round by round in a rotating order."""
    names = list(commands)
    for _ in range(warmup):  # fills the bytecode cache and the OS page cache
        for name in names:
            run_once(*commands[name], cwd)
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for i in range(runs):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(run_once(*commands[name], cwd))
    return samples


def wall(samples: list[Sample]) -> float:
    return statistics.median(s.wall for s in samples)


def cpu(samples: list[Sample]) -> float:
    return statistics.median(s.cpu for s in samples)


def ms(ns: float) -> str:
    return f"{ns / 1e6:.1f}"


def print_table(rows: list[tuple[str, list[Sample], str]], reference: list[Sample]) -> None:
    ref_wall, ref_cpu = wall(reference), cpu(reference)
    width = max(52, *(len(label) + 2 for label, _, _ in rows))
    header = (
        f"{'command':<{width}}{'wall ms':>9}{'min':>7}{'p75':>7}{'ratio':>7}"
        f"{'cpu ms':>8}{'ratio':>7}  result"
    )
    print(header)
    print("-" * (len(header) + 14))
    for label, samples, result in rows:
        walls = [s.wall for s in samples]
        p75 = statistics.quantiles(walls, n=4)[2]
        print(
            f"{label:<{width}}{ms(wall(samples)):>9}{ms(min(walls)):>7}{ms(p75):>7}"
            f"{wall(samples) / ref_wall:>7.2f}{ms(cpu(samples)):>8}{cpu(samples) / ref_cpu:>7.2f}"
            f"  {result}"
        )


def verdict(samples: list[Sample], reference: list[Sample]) -> tuple[bool, str]:
    ok = wall(samples) / wall(reference) <= TARGET_RATIO
    return ok, f"{'PASS' if ok else 'FAIL'} (<= {TARGET_RATIO}x)"


def print_census(env: dict[str, str], cwd: Path) -> None:
    """Information: the attrs classes each lash command builds, and their build time."""
    for command in ("--help", "plugins"):
        result = subprocess.run(
            [PYTHON, "-c", CENSUS_CODE, command], env=env, cwd=cwd, capture_output=True, text=True
        )
        line = next((x for x in result.stderr.splitlines() if x.startswith("CENSUS")), "")
        fields = line.split()
        if len(fields) == 4:
            print(
                f"  lash {command}: builds {fields[1]} attrs classes ({fields[2]} of lash's own "
                f"modules and plugins), {fields[3]} ms of it in building them (one run)"
            )
        else:
            print(f"  lash {command}: class census unavailable ({line or result.returncode})")


def loadavg() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "load average n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="runs per command (default 21)")
    parser.add_argument(
        "--inherit-env",
        action="store_true",
        help="keep the caller's bytecode settings instead of a private, warmed pycache",
    )
    parser.add_argument(
        "--candidate",
        metavar="DIR",
        action="append",
        default=[],
        help="also time the lash commands with DIR first on PYTHONPATH (a source tree holding "
        "a proposed change to the `lash` package); reported as extra rows; repeatable",
    )
    parser.add_argument("--skip-discovery", action="store_true", help="only target 2")
    args = parser.parse_args(argv)
    runs = max(args.runs, 3)

    tmp = Path(tempfile.mkdtemp(prefix="lash-bench-startup-"))
    try:
        cwd = tmp / "cwd"
        cwd.mkdir()
        pycache = None if args.inherit_env else tmp / "pycache"
        env = base_env(pycache)
        bytecode = (
            "inherited env (PYTHONDONTWRITEBYTECODE="
            f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})"
            if args.inherit_env
            else "private warmed PYTHONPYCACHEPREFIX"
        )
        print(
            f"lash CLI cold start  |  {PYTHON}  |  {runs} interleaved runs per command  |  "
            f"bytecode: {bytecode}  |  {loadavg()}\n"
            "wall = median wall time (the target); cpu = median user+sys CPU time of the child "
            "(less sensitive to other load); ratios vs the first row\n"
        )

        # -- target 2: lash --help / lash plugins vs importing the dependencies ---------------
        t_start = time.perf_counter()
        commands = {
            "base": ([PYTHON, "-c", BASELINE_CODE], env),
            "floor": ([PYTHON, "-c", FLOOR_CODE], env),
            "help": ([LASH, "--help"], env),
            "plugins": ([LASH, "plugins"], env),
            "import": ([PYTHON, "-c", IMPORT_LASH_CODE], env),
        }
        for i, candidate in enumerate(args.candidate, 1):
            cand_env = {**env, "PYTHONPATH": str(Path(candidate).resolve())}
            commands[f"cand{i} help"] = ([LASH, "--help"], cand_env)
            commands[f"cand{i} plugins"] = ([LASH, "plugins"], cand_env)
        s = interleaved(commands, runs, cwd)
        rows = [
            (f'python -c "{BASELINE_CODE}"', s["base"], "baseline"),
            (f'python -c "{FLOOR_CODE}"', s["floor"], "info (floor)"),
            (f'python -c "{IMPORT_LASH_CODE}"', s["import"], "info"),
        ]
        verdicts = []
        for name, label in (("help", "lash --help"), ("plugins", "lash plugins")):
            ok, result = verdict(s[name], s["base"])
            verdicts.append(ok)
            rows.append((label, s[name], result))
        for i in range(1, len(args.candidate) + 1):
            for cmd, label in (("help", "lash --help"), ("plugins", "lash plugins")):
                name = f"cand{i} {cmd}"
                rows.append((f"{label} [candidate {i}]", s[name], verdict(s[name], s["base"])[1]))
        if args.candidate:
            print("candidates: " + "; ".join(f"{i} = {c}" for i, c in enumerate(args.candidate, 1)))
        print_table(rows, s["base"])
        print(
            f"\ntarget 2 (lash --help and lash plugins <= {TARGET_RATIO}x baseline, wall medians): "
            f"{'PASS' if all(verdicts) else 'FAIL'}  ({time.perf_counter() - t_start:.0f} s, "
            f"{loadavg()})"
        )
        print_census(env, cwd)
        print()
        if args.skip_discovery:
            return 0

        # -- discovery with 300 installed distributions (no target) ---------------------------
        t_start = time.perf_counter()
        site_plugins = make_fake_site(tmp, with_plugins=True)
        site_noplugins = make_fake_site(tmp, with_plugins=False)
        env_plugins = {**env, "PYTHONPATH": str(site_plugins)}
        env_noplugins = {**env, "PYTHONPATH": str(site_noplugins)}
        listing = subprocess.run(
            [LASH, "plugins"], env=env_plugins, cwd=cwd, capture_output=True, text=True
        ).stdout
        loaded = sum(1 for line in listing.splitlines() if line.endswith(": loaded"))
        if loaded != N_PLUGIN_DISTS:
            print(f"warning: expected {N_PLUGIN_DISTS} fake plugins loaded, saw {loaded}")
        commands = {
            "plain": ([LASH, "plugins"], env),
            "dists": ([LASH, "plugins"], env_noplugins),
            "dists+plugins": ([LASH, "plugins"], env_plugins),
            "base+dists": ([PYTHON, "-c", BASELINE_CODE], env_plugins),
        }
        d = interleaved(commands, max(runs, 15), cwd)
        print(
            f"discovery: {N_DISTS} extra *.dist-info on PYTHONPATH ({N_PLUGIN_DISTS} with a "
            f"lash.plugins entry point, {N_SCRIPT_DISTS} with console_scripts); no target"
        )
        print_table(
            [
                ("lash plugins (no extra dists)", d["plain"], "reference"),
                (f"lash plugins + {N_DISTS} dists, 0 lash plugins", d["dists"], "info"),
                (
                    f"lash plugins + {N_DISTS} dists, {N_PLUGIN_DISTS} lash plugins",
                    d["dists+plugins"],
                    f"info ({loaded} listed as loaded)",
                ),
                (f'python -c "import pluggy, ..." + {N_DISTS} dists', d["base+dists"], "info"),
            ],
            d["plain"],
        )
        scan = wall(d["dists"]) - wall(d["plain"])
        plug = wall(d["dists+plugins"]) - wall(d["dists"])
        print(
            f"\nscanning {N_DISTS} more dists: {scan / 1e6:+.1f} ms; then loading "
            f"{N_PLUGIN_DISTS} tiny plugins: {plug / 1e6:+.1f} ms "
            f"({plug / 1e6 / N_PLUGIN_DISTS:+.2f} ms each)  "
            f"({time.perf_counter() - t_start:.0f} s, {loadavg()})"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as exc:  # a benchmark reports, it never fails the caller
        print(f"\nbenchmark aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(0)
