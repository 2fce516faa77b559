"""Kernel hook dispatch overhead versus a bare pluggy call of the same hook.

Run: ``.venv/bin/python benchmarks/bench_dispatch.py [--repeats 41] [--quick]
[--candidate path/to/_manager.py]``

Both sides dispatch over the *same* ``pluggy.PluginManager`` (lash's hookspecs, N registered
plugins each implementing the hook), so the implementations called are identical; only the
dispatch machinery differs:

* baseline: ``pm.hook.<name>(**kwargs)``, plus ``await`` of each returned coroutine for async
  implementations (pluggy does not await);
* lash: ``lash.HookDispatcher(pm, order)`` (what ``LashCore.hooks`` is), e.g.
  ``dispatcher.collect_sync(name, **kwargs)`` or ``await dispatcher.collect(name, **kwargs)``.

Each cell is the median over many repeats of (time of K back-to-back calls) / K, with the
variants' repeats interleaved (in alternating order) so drift hits them alike, and the cost of
the empty timing loop subtracted (it would otherwise flatter the ratio). Async cells run inside
one running event loop. ``--candidate`` loads another ``_manager.py`` (a proposed change) and
measures its ``HookDispatcher`` in the same cells. Exits 0 whatever the result: this is a
benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pluggy

import lash
from lash import hookspecs

TARGET_RATIO = 1.3
COUNTS = (1, 10, 50)
#: Wall time one repeat of one variant should take; K (calls per repeat) is calibrated to it.
REPEAT_NS = 3_000_000

Body = Callable[[int], Any]  # runs K calls; returns elapsed ns (sync) or a coroutine of it

#: The clock of the timed loops: wall time by default; ``--clock cpu`` uses this thread's CPU time,
#: which leaves out the time the process is preempted (robust on a machine busy with other work).
_now = time.perf_counter_ns


# -- plugins ------------------------------------------------------------------------------------

_SESSION = object()  # hooks only pass it along; the dispatch cost does not depend on its type
_VIEW = object()
_CONTRIBUTION = "fragment"


def make_plugin(index: int, *, is_async: bool) -> object:
    """One plugin instance implementing every hook benchmarked here, sync or async.

    ``prompt_contributions`` returns a value (collect keeps it); ``compact_context`` returns
    ``None`` (so "first" calls every implementation); ``transform_prompt_view`` returns the view
    (so "chain" replaces it at every step); ``session_opened`` returns ``None``.
    """
    if is_async:

        class AsyncPlugin:
            @lash.hookimpl
            async def prompt_contributions(self, session: Any) -> Any:
                return _CONTRIBUTION

            @lash.hookimpl
            async def compact_context(self, session: Any, instructions: Any) -> Any:
                return None

            @lash.hookimpl
            async def transform_prompt_view(self, session: Any, view: Any) -> Any:
                return view

            @lash.hookimpl
            async def session_opened(self, session: Any) -> None:
                return None

        cls: type = AsyncPlugin
    else:

        class SyncPlugin:
            @lash.hookimpl
            def prompt_contributions(self, session: Any) -> Any:
                return _CONTRIBUTION

            @lash.hookimpl
            def compact_context(self, session: Any, instructions: Any) -> Any:
                return None

            @lash.hookimpl
            def transform_prompt_view(self, session: Any, view: Any) -> Any:
                return view

            @lash.hookimpl
            def session_opened(self, session: Any) -> None:
                return None

        cls = SyncPlugin
    cls.__name__ = f"bench_plugin_{index}"
    return cls()


def build(n: int, *, is_async: bool) -> tuple[pluggy.PluginManager, list[str]]:
    """A pluggy manager with lash's hookspecs and ``n`` registered plugins, and their order."""
    pm = pluggy.PluginManager("lash")
    pm.add_hookspecs(hookspecs)
    names = []
    for i in range(n):
        name = f"bench_plugin_{i}"
        pm.register(make_plugin(i, is_async=is_async), name=name)
        names.append(name)
    pm.check_pending()
    return pm, names


def load_candidate(path: str) -> type:
    """``HookDispatcher`` from another ``_manager.py`` (it may import lash's other modules)."""
    spec = importlib.util.spec_from_file_location("lash_bench_candidate_manager", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.HookDispatcher  # type: ignore[no-any-return]


# -- timed loops --------------------------------------------------------------------------------
# Each body runs K calls and returns the elapsed ns. The loops are written out per variant (no
# shared helper calling a lambda) so that nothing but the call under test is inside them.


def _empty(k: int) -> int:
    t0 = _now()
    for _ in range(k):
        pass
    return _now() - t0


async def _aempty(k: int) -> int:
    t0 = _now()
    for _ in range(k):
        pass
    return _now() - t0


def sync_base(pm: pluggy.PluginManager) -> Body:
    relay, s = pm.hook, _SESSION

    def base(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.prompt_contributions(session=s)
        return _now() - t0

    return base


def sync_lash(d: Any) -> Body:
    s = _SESSION

    def ours(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            d.collect_sync("prompt_contributions", session=s)
        return _now() - t0

    return ours


def async_base(pm: pluggy.PluginManager, shape: str, is_async: bool) -> Body:
    """The plain pluggy call of the hook, each returned coroutine awaited for async impls.

    For first/chain/broadcast pluggy has no equivalent; calling every implementation once (as
    lash must, given the plugins above) is the floor it is compared with.
    """
    relay, s, v = pm.hook, _SESSION, _VIEW

    async def collect_async(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            [await c for c in relay.prompt_contributions(session=s)]
        return _now() - t0

    async def collect_sync(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.prompt_contributions(session=s)
        return _now() - t0

    async def first_async(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            for c in relay.compact_context(session=s, instructions=None):
                if await c is not None:
                    break
        return _now() - t0

    async def first_sync(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.compact_context(session=s, instructions=None)
        return _now() - t0

    async def chain_async(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            [await c for c in relay.transform_prompt_view(session=s, view=v)]
        return _now() - t0

    async def chain_sync(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.transform_prompt_view(session=s, view=v)
        return _now() - t0

    async def broadcast_async(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            [await c for c in relay.session_opened(session=s)]
        return _now() - t0

    async def broadcast_sync(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.session_opened(session=s)
        return _now() - t0

    table = {
        "collect": (collect_async, collect_sync),
        "first": (first_async, first_sync),
        "chain": (chain_async, chain_sync),
        "broadcast": (broadcast_async, broadcast_sync),
    }
    return table[shape][0 if is_async else 1]


def async_lash(d: Any, shape: str) -> Body:
    s, v = _SESSION, _VIEW

    async def collect(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.collect("prompt_contributions", session=s)
        return _now() - t0

    async def first(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.first("compact_context", session=s, instructions=None)
        return _now() - t0

    async def chain(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.chain("transform_prompt_view", "view", v, session=s)
        return _now() - t0

    async def broadcast(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.broadcast("session_opened", session=s)
        return _now() - t0

    return {"collect": collect, "first": first, "chain": chain, "broadcast": broadcast}[shape]


# -- measurement --------------------------------------------------------------------------------


def _calibrate(run: Callable[[int], int]) -> int:
    """The number of calls per repeat that takes about REPEAT_NS."""
    k = 16
    while True:
        elapsed = run(k)
        if elapsed >= REPEAT_NS // 4 or k >= 1 << 20:
            return max(16, int(k * REPEAT_NS / max(elapsed, 1)))
        k *= 4


def _measure(run: Callable[[str, int], int], names: list[str], repeats: int) -> dict[str, Any]:
    """Median ns per call of each variant (empty-loop cost subtracted), interleaved repeats.

    ``names[0]`` is the baseline; ``paired`` is the median over repeats of each variant's ratio
    to the baseline measured in the same repeat (robust to drift between repeats).
    """
    k = _calibrate(lambda k: max(run(name, k) for name in names))
    for name in [*names, "empty"]:  # warm up (caches, specialization)
        run(name, k)
    samples: dict[str, list[float]] = {name: [] for name in [*names, "empty"]}
    paired: dict[str, list[float]] = {name: [] for name in names[1:]}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            order = names if i % 2 == 0 else names[::-1]
            per = {name: run(name, k) / k for name in order}
            per["empty"] = run("empty", k) / k
            for name, value in per.items():
                samples[name].append(value)
            base = per[names[0]] - per["empty"]
            for name in names[1:]:
                paired[name].append((per[name] - per["empty"]) / base)
    finally:
        if gc_was_enabled:
            gc.enable()
    empty = statistics.median(samples["empty"])
    medians = {name: statistics.median(samples[name]) - empty for name in names}
    return {
        "k": k,
        "ns": medians,
        "ratio": {name: medians[name] / medians[names[0]] for name in names[1:]},
        "paired": {name: statistics.median(values) for name, values in paired.items()},
    }


def measure_sync(n: int, repeats: int, candidate: type | None) -> dict[str, Any]:
    pm, order = build(n, is_async=False)
    bodies: dict[str, Body] = {"base": sync_base(pm), "empty": _empty}
    dispatchers: dict[str, Any] = {"lash": lash.HookDispatcher(pm, order)}
    if candidate is not None:
        dispatchers["candidate"] = candidate(pm, order)
    for name, d in dispatchers.items():
        # Same implementations, same results (lash's tagged with the plugin name).
        assert len(d.collect_sync("prompt_contributions", session=_SESSION)) == n
        bodies[name] = sync_lash(d)
    assert len(pm.hook.prompt_contributions(session=_SESSION)) == n
    return _measure(lambda name, k: bodies[name](k), ["base", *dispatchers], repeats)


def measure_async(
    n: int, shape: str, repeats: int, candidate: type | None, *, is_async: bool
) -> dict[str, Any]:
    pm, order = build(n, is_async=is_async)
    bodies: dict[str, Body] = {"base": async_base(pm, shape, is_async), "empty": _aempty}
    dispatchers: dict[str, Any] = {"lash": lash.HookDispatcher(pm, order)}
    if candidate is not None:
        dispatchers["candidate"] = candidate(pm, order)
    for name, d in dispatchers.items():
        bodies[name] = async_lash(d, shape)

    async def main() -> dict[str, Any]:
        for d in dispatchers.values():
            assert len(await d.collect("prompt_contributions", session=_SESSION)) == n
        assert asyncio.get_running_loop().is_running()

        def run(name: str, k: int) -> int:
            # _measure is synchronous: drive the timed coroutine by hand. Nothing in it ever
            # suspends, so one send() runs it to completion, inside this running event loop.
            coro: Coroutine[Any, Any, int] = bodies[name](k)
            try:
                coro.send(None)
            except StopIteration as stop:
                return int(stop.value)
            coro.close()
            raise RuntimeError(f"{name} suspended; the benchmark assumes it never does")

        return _measure(run, ["base", *dispatchers], repeats)

    return asyncio.run(main())


# -- report -------------------------------------------------------------------------------------

CASES: list[tuple[str, str, bool, bool]] = [
    # (label, shape, async impls, has the target)
    ("collect_sync, sync impls", "collect_sync", False, True),
    ("collect, async impls", "collect", True, True),
    ("collect, sync impls", "collect", False, False),
    ("first, sync impls (all None)", "first", False, False),
    ("first, async impls (all None)", "first", True, False),
    ("chain, sync impls", "chain", False, False),
    ("chain, async impls", "chain", True, False),
    ("broadcast, sync impls", "broadcast", False, False),
    ("broadcast, async impls", "broadcast", True, False),
]


def _loadavg() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "load average n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=41, help="repeats per cell (default 41)")
    parser.add_argument("--quick", action="store_true", help="7 repeats, for a smoke run")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: time.perf_counter_ns (default); cpu: time.thread_time_ns, for a busy machine",
    )
    parser.add_argument(
        "--candidate",
        metavar="MANAGER_PY",
        help="also measure the HookDispatcher of this file (a proposed lash/_plugins/dispatch.py)",
    )
    args = parser.parse_args(argv)
    repeats = 7 if args.quick else max(args.repeats, 3)
    global _now
    _now = time.perf_counter_ns if args.clock == "wall" else time.thread_time_ns
    candidate = load_candidate(args.candidate) if args.candidate else None

    print(
        f"lash hook dispatch vs bare pluggy {pluggy.__version__}  |  Python "
        f"{platform.python_version()} {platform.machine()}  |  {repeats} interleaved repeats "
        f"of ~{REPEAT_NS / 1e6:g} ms per variant per cell  |  clock: {args.clock}  |  {_loadavg()}"
    )
    print("ns = median per call, empty-loop cost subtracted; ratio = lash / pluggy medians")
    header = f"{'case':<32}{'N':>4}{'pluggy ns':>11}{'lash ns':>10}{'ratio':>7}{'paired':>8}"
    if candidate is not None:
        header += f"{'cand ns':>10}{'ratio':>7}"
    header += "  result"
    print(header)
    print("-" * (len(header) + 10))
    verdicts: list[bool] = []
    cand_verdicts: list[bool] = []
    t_start = time.perf_counter()
    for label, shape, is_async, has_target in CASES:
        for n in COUNTS:
            if shape == "collect_sync":
                r = measure_sync(n, repeats, candidate)
            else:
                r = measure_async(n, shape, repeats, candidate, is_async=is_async)
            ns, ratio = r["ns"], r["ratio"]
            line = (
                f"{label:<32}{n:>4}{ns['base']:>11.0f}{ns['lash']:>10.0f}{ratio['lash']:>7.2f}"
                f"{r['paired']['lash']:>8.2f}"
            )
            if candidate is not None:
                line += f"{ns['candidate']:>10.0f}{ratio['candidate']:>7.2f}"
            if has_target:
                ok = ratio["lash"] <= TARGET_RATIO
                verdicts.append(ok)
                line += f"  {'PASS' if ok else 'FAIL'} (<= {TARGET_RATIO}x)"
                if candidate is not None:
                    cand_ok = ratio["candidate"] <= TARGET_RATIO
                    cand_verdicts.append(cand_ok)
                    line += f", candidate {'PASS' if cand_ok else 'FAIL'}"
            else:
                line += "  info"
            print(line, flush=True)
    print(
        f"\ntarget 1 (dispatch <= {TARGET_RATIO}x pluggy at N = {', '.join(map(str, COUNTS))}, "
        f"collect_sync and async collect): {'PASS' if all(verdicts) else 'FAIL'} "
        f"({sum(verdicts)}/{len(verdicts)} cells)"
        + (
            f"; candidate: {'PASS' if all(cand_verdicts) else 'FAIL'} "
            f"({sum(cand_verdicts)}/{len(cand_verdicts)} cells)"
            if candidate is not None
            else ""
        )
        + f"  [{time.perf_counter() - t_start:.0f} s, {_loadavg()}]"
    )
    print(
        "paired = median of per-repeat ratios (robust to drift). first/chain/broadcast: pluggy "
        "has no such\nshape (nor awaits); their baseline calls every implementation once, "
        "awaiting coroutines for async impls."
    )
    return 0


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as exc:  # a benchmark reports, it never fails the caller
        print(f"\nbenchmark aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(0)
