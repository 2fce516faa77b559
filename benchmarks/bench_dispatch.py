"""Hook dispatch on the production path versus a bare pluggy call of the same hook.

Run: ``.venv/bin/python benchmarks/bench_dispatch.py [--repeats 41] [--quick] [--clock cpu]
[--candidate path/to/dispatch.py]``

Both sides dispatch over the *same* ``pluggy.PluginManager`` (lash's hookspecs, N = 1, 10 and 50
registered plugins each implementing the hooks below), so the implementations called are
identical; only the dispatch machinery differs:

* baseline: ``pm.hook.<name>(**kwargs)``, plus ``await`` of each returned coroutine for async
  implementations (pluggy does not await);
* lash: the kernel's ``HookDispatcher`` (``lash._plugins.dispatch``), built as the composition
  builds it and called as the kernel calls it: ``collect_sync`` with a per-plugin ``bind`` for
  the registration hooks, ``await collect / chain / first / broadcast / fold`` for the session
  and turn hooks. Every result goes through the dispatcher's validation, so the implementations
  return what their hook allows (``lash.PromptContribution``, ``lash.PromptView``, ``None``).

Each cell is the median over many repeats of (time of K back-to-back calls) / K, with the
variants' repeats interleaved (in alternating order) so drift hits them alike, and the cost of
the empty timing loop subtracted (it would otherwise flatter the ratio); ``paired`` is the median
of the per-repeat ratios. Async cells run inside one running event loop. ``--candidate`` loads
another ``dispatch.py`` (a proposed change) and measures its ``HookDispatcher`` in the same
cells. Exits 0 whatever the result: this is a benchmark, not a test.
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
from typing import Any, NamedTuple

import pluggy

import lash
from lash import hookspecs
from lash._plugins.dispatch import HookDispatcher

TARGET_RATIO = 1.3
COUNTS = (1, 10, 50)
#: Wall time one repeat of one variant should take; K (calls per repeat) is calibrated to it.
REPEAT_NS = 3_000_000

Body = Callable[[int], Any]  # runs K calls; returns elapsed ns (sync) or a coroutine of it

#: The clock of the timed loops: wall time by default; ``--clock cpu`` uses this thread's CPU time,
#: which leaves out the time the process is preempted (robust on a machine busy with other work).
_now = time.perf_counter_ns


# -- plugins ------------------------------------------------------------------------------------

# Hooks only pass these along; the dispatch cost does not depend on their type.
_SESSION = object()
_TURN = object()
_CALL = object()
_CONTEXT = object()
# Results must be valid for their hook: the dispatcher checks every one.
_CONTRIBUTION = lash.PromptContribution("fragment")
_VIEW = lash.PromptView(messages=(lash.Message("user", "hi"),), tools=("echo",))


def _register(*args: Any) -> None:
    """The registration callback of the pluggy baseline (the plugins never call it)."""


def make_plugin(index: int, *, is_async: bool) -> object:
    """One plugin instance implementing every hook benchmarked here, sync or async.

    ``prompt_contributions`` returns a fragment (collect keeps it); ``before_turn``,
    ``before_tool_call`` and ``compact_context`` return ``None`` (so collect keeps nothing, the
    fold never steps, and "first" calls every implementation); ``transform_prompt_view`` returns
    the view (so "chain" replaces it at every step); ``turn_finalized`` returns ``None``.
    ``register_tools`` is synchronous in both (registration hooks must be).
    """
    if is_async:

        class AsyncPlugin:
            @lash.hookimpl
            def register_tools(self, register: Any, options: Any) -> None:
                return None

            @lash.hookimpl
            async def prompt_contributions(self, session: Any) -> Any:
                return _CONTRIBUTION

            @lash.hookimpl
            async def before_turn(self, turn: Any) -> None:
                return None

            @lash.hookimpl
            async def before_tool_call(self, call: Any, context: Any) -> None:
                return None

            @lash.hookimpl
            async def compact_context(self, session: Any, instructions: Any) -> Any:
                return None

            @lash.hookimpl
            async def transform_prompt_view(self, session: Any, view: Any) -> Any:
                return view

            @lash.hookimpl
            async def turn_finalized(self, turn: Any) -> None:
                return None

        cls: type = AsyncPlugin
    else:

        class SyncPlugin:
            @lash.hookimpl
            def register_tools(self, register: Any, options: Any) -> None:
                return None

            @lash.hookimpl
            def prompt_contributions(self, session: Any) -> Any:
                return _CONTRIBUTION

            @lash.hookimpl
            def before_turn(self, turn: Any) -> None:
                return None

            @lash.hookimpl
            def before_tool_call(self, call: Any, context: Any) -> None:
                return None

            @lash.hookimpl
            def compact_context(self, session: Any, instructions: Any) -> Any:
                return None

            @lash.hookimpl
            def transform_prompt_view(self, session: Any, view: Any) -> Any:
                return view

            @lash.hookimpl
            def turn_finalized(self, turn: Any) -> None:
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
    """``HookDispatcher`` from another ``dispatch.py`` (it may import lash's other modules)."""
    spec = importlib.util.spec_from_file_location("lash_bench_candidate_dispatch", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.HookDispatcher  # type: ignore[no-any-return]


def _bind_for(names: list[str]) -> Callable[[str], dict[str, Any]]:
    """A registration ``bind``: each plugin's own arguments, built once (as the registry's
    registrars are per plugin; building them is registry work, not dispatch)."""
    bound = {name: {"register": _register, "options": None} for name in names}
    return bound.__getitem__


def _never_steps(plugin: str, value: Any, kwargs: dict[str, Any]) -> bool:
    raise AssertionError("the benchmark's before_tool_call implementations return None")


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


def register_base(pm: pluggy.PluginManager) -> Body:
    relay = pm.hook

    def base(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.register_tools(register=_register, options=None)
        return _now() - t0

    return base


def register_lash(d: Any, bind: Callable[[str], dict[str, Any]]) -> Body:
    def ours(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            d.collect_sync("register_tools", bind=bind)
        return _now() - t0

    return ours


def async_base(pm: pluggy.PluginManager, case: str, is_async: bool) -> Body:
    """The plain pluggy call of the hook, each returned coroutine awaited for async impls.

    For first/chain/broadcast/fold pluggy has no equivalent; calling every implementation once
    (as lash must, given the plugins above) is the floor it is compared with.
    """
    relay, s, t, v, c, x = pm.hook, _SESSION, _TURN, _VIEW, _CALL, _CONTEXT

    async def contributions_async(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            [await r for r in relay.prompt_contributions(session=s)]
        return _now() - t0

    async def contributions_sync(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.prompt_contributions(session=s)
        return _now() - t0

    async def before_turn_async(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            [await r for r in relay.before_turn(turn=t)]
        return _now() - t0

    async def before_turn_sync(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.before_turn(turn=t)
        return _now() - t0

    async def first_async(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            for r in relay.compact_context(session=s, instructions=None):
                if await r is not None:
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
            [await r for r in relay.transform_prompt_view(session=s, view=v)]
        return _now() - t0

    async def chain_sync(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.transform_prompt_view(session=s, view=v)
        return _now() - t0

    async def broadcast_async(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            [await r for r in relay.turn_finalized(turn=t)]
        return _now() - t0

    async def broadcast_sync(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.turn_finalized(turn=t)
        return _now() - t0

    async def fold_async(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            [await r for r in relay.before_tool_call(call=c, context=x)]
        return _now() - t0

    async def fold_sync(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            relay.before_tool_call(call=c, context=x)
        return _now() - t0

    table = {
        "collect": (contributions_async, contributions_sync),
        "collect_none": (before_turn_async, before_turn_sync),
        "first": (first_async, first_sync),
        "chain": (chain_async, chain_sync),
        "broadcast": (broadcast_async, broadcast_sync),
        "fold": (fold_async, fold_sync),
    }
    return table[case][0 if is_async else 1]


def async_lash(d: Any, case: str) -> Body:
    s, t, v, c, x, step = _SESSION, _TURN, _VIEW, _CALL, _CONTEXT, _never_steps

    async def collect(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.collect("prompt_contributions", session=s)
        return _now() - t0

    async def collect_none(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.collect("before_turn", turn=t)
        return _now() - t0

    async def first(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.first("compact_context", session=s, instructions=None)
        return _now() - t0

    async def chain(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.chain("transform_prompt_view", key="view", value=v, session=s)
        return _now() - t0

    async def broadcast(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.broadcast("turn_finalized", turn=t)
        return _now() - t0

    async def fold(k: int) -> int:
        t0 = _now()
        for _ in range(k):
            await d.fold("before_tool_call", step, call=c, context=x)
        return _now() - t0

    table = {
        "collect": collect,
        "collect_none": collect_none,
        "first": first,
        "chain": chain,
        "broadcast": broadcast,
        "fold": fold,
    }
    return table[case]


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


class Case(NamedTuple):
    label: str
    case: str  # "register" (collect_sync) or a key of async_base / async_lash
    is_async: bool  # async implementations
    target: bool  # False: information only
    hook_timeout: float | None = None


def _dispatchers(
    pm: pluggy.PluginManager, order: list[str], case: Case, candidate: type | None
) -> dict[str, Any]:
    """The dispatcher(s) under test, built as the composition builds the kernel's."""
    made = {"lash": HookDispatcher(pm, order, hook_timeout=case.hook_timeout)}
    if candidate is not None:
        made["candidate"] = candidate(pm, order, hook_timeout=case.hook_timeout)
    return made


def measure_register(n: int, case: Case, repeats: int, candidate: type | None) -> dict[str, Any]:
    pm, order = build(n, is_async=case.is_async)
    bind = _bind_for(order)
    bodies: dict[str, Body] = {"base": register_base(pm), "empty": _empty}
    dispatchers = _dispatchers(pm, order, case, candidate)
    for name, d in dispatchers.items():
        # Same implementations called: every plugin's, each returning None.
        assert d.plugins_implementing("register_tools") == order
        assert d.collect_sync("register_tools", bind=bind) == []
        bodies[name] = register_lash(d, bind)
    assert pm.hook.register_tools(register=_register, options=None) == []
    return _measure(lambda name, k: bodies[name](k), ["base", *dispatchers], repeats)


async def _check_same_work(d: Any, pm: pluggy.PluginManager, n: int, case: Case) -> None:
    """Both sides call every implementation and get the same results (lash's tagged)."""
    if case.case == "collect":
        got = await d.collect("prompt_contributions", session=_SESSION)
        assert [value for _, value in got] == [_CONTRIBUTION] * n, got
    elif case.case == "collect_none":
        assert await d.collect("before_turn", turn=_TURN) == []
    elif case.case == "first":
        assert await d.first("compact_context", session=_SESSION, instructions=None) is None
    elif case.case == "chain":
        view = await d.chain("transform_prompt_view", key="view", value=_VIEW, session=_SESSION)
        assert view is _VIEW, view
    elif case.case == "broadcast":
        assert await d.broadcast("turn_finalized", turn=_TURN) == []
    elif case.case == "fold":
        folded = await d.fold("before_tool_call", _never_steps, call=_CALL, context=_CONTEXT)
        assert folded == {"call": _CALL, "context": _CONTEXT}, folded
    hook = {
        "collect": "prompt_contributions",
        "collect_none": "before_turn",
        "first": "compact_context",
        "chain": "transform_prompt_view",
        "broadcast": "turn_finalized",
        "fold": "before_tool_call",
    }[case.case]
    assert len(d.plugins_implementing(hook)) == n
    assert len(getattr(pm.hook, hook).get_hookimpls()) == n


def measure_async(n: int, case: Case, repeats: int, candidate: type | None) -> dict[str, Any]:
    pm, order = build(n, is_async=case.is_async)
    bodies: dict[str, Body] = {
        "base": async_base(pm, case.case, case.is_async),
        "empty": _aempty,
    }
    dispatchers = _dispatchers(pm, order, case, candidate)
    for name, d in dispatchers.items():
        bodies[name] = async_lash(d, case.case)

    async def main() -> dict[str, Any]:
        for d in dispatchers.values():
            await _check_same_work(d, pm, n, case)

        def run(name: str, k: int) -> int:
            # _measure is synchronous: drive the timed coroutine by hand. Nothing in it ever
            # suspends, so one send() runs it to completion, inside this running event loop
            # (and inside its main task, which asyncio.timeout needs).
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

CASES: list[Case] = [
    Case("collect_sync register_tools+bind", "register", False, True),
    Case("collect prompt_contributions, sync", "collect", False, True),
    Case("collect prompt_contributions, async", "collect", True, True),
    Case("collect before_turn (None), sync", "collect_none", False, True),
    Case("collect before_turn (None), async", "collect_none", True, True),
    Case("chain transform_prompt_view, sync", "chain", False, True),
    Case("chain transform_prompt_view, async", "chain", True, True),
    Case("first compact_context (None), sync", "first", False, True),
    Case("first compact_context (None), async", "first", True, True),
    Case("broadcast turn_finalized, sync", "broadcast", False, True),
    Case("broadcast turn_finalized, async", "broadcast", True, True),
    Case("fold before_tool_call (None), sync", "fold", False, False),
    Case("fold before_tool_call (None), async", "fold", True, False),
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
        metavar="DISPATCH_PY",
        help="also measure the HookDispatcher of this file (a proposed lash/_plugins/dispatch.py)",
    )
    parser.add_argument(
        "--only",
        metavar="WORD",
        help="run only the cases whose label contains WORD (e.g. chain, async)",
    )
    args = parser.parse_args(argv)
    repeats = 7 if args.quick else max(args.repeats, 3)
    global _now
    _now = time.perf_counter_ns if args.clock == "wall" else time.thread_time_ns
    candidate = load_candidate(args.candidate) if args.candidate else None
    cases = [c for c in CASES if args.only is None or args.only in c.label]

    print(
        f"lash hook dispatch (production path) vs bare pluggy {pluggy.__version__}  |  Python "
        f"{platform.python_version()} {platform.machine()}  |  {repeats} interleaved repeats "
        f"of ~{REPEAT_NS / 1e6:g} ms per variant per cell  |  clock: {args.clock}  |  {_loadavg()}"
    )
    print(
        "ns = median per call, empty-loop cost subtracted; ratio = lash / pluggy medians; "
        "paired = median of per-repeat ratios"
    )
    header = f"{'case':<40}{'N':>4}{'pluggy ns':>11}{'lash ns':>10}{'ratio':>7}{'paired':>8}"
    if candidate is not None:
        header += f"{'cand ns':>10}{'ratio':>7}"
    header += "  result"
    print(header)
    print("-" * (len(header) + 20))
    verdicts: list[bool] = []
    cand_verdicts: list[bool] = []
    t_start = time.perf_counter()
    for case in cases:
        for n in COUNTS:
            if case.case == "register":
                r = measure_register(n, case, repeats, candidate)
            else:
                r = measure_async(n, case, repeats, candidate)
            ns, ratio = r["ns"], r["ratio"]
            line = (
                f"{case.label:<40}{n:>4}{ns['base']:>11.0f}{ns['lash']:>10.0f}"
                f"{ratio['lash']:>7.2f}{r['paired']['lash']:>8.2f}"
            )
            if candidate is not None:
                line += f"{ns['candidate']:>10.0f}{ratio['candidate']:>7.2f}"
            if case.target:
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
        f"\ntarget (production-path dispatch <= {TARGET_RATIO}x pluggy at N = "
        f"{', '.join(map(str, COUNTS))}): {'PASS' if all(verdicts) else 'FAIL'} "
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
        "first/chain/broadcast/fold: pluggy has no such shape (nor awaits); their baseline calls "
        "every\nimplementation once, awaiting coroutines for async impls. fold rows: "
        "information."
    )
    return 0


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except Exception as exc:  # a benchmark reports, it never fails the caller
        print(f"\nbenchmark aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(0)
