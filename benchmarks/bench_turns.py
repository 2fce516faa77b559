"""Kernel turn overhead (issue: session kernel and turn loop).

Workload: scripted provider; each turn = user message -> one tool call -> the tool returns a
short string -> final text; 10 no-op plugins implementing the turn and tool hooks; 200 turns on
the memory store. Reports:

- per-turn median wall time of the kernel, and of a bare baseline doing the same provider
  streams and tool call without the kernel (measured in the same run); kernel overhead is the
  difference. Target: overhead <= 0.5 ms per turn (median).
- flatness: median of the last 50 turns <= 1.2x median of the first 50.
- hook-dispatch share of the turn time, from a cProfile run.

Run: .venv/bin/python benchmarks/bench_turns.py [--turns 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import time
from typing import Any

import lash
from lash_plugins_builtin import standard, stores
from lash_plugins_builtin.scripted import ScriptedProvider


def make_noop(i: int) -> object:
    class NoOp:
        lash_plugin = lash.PluginMeta(name=f"noop{i}")

        @lash.hookimpl
        def before_turn(self, turn: Any) -> None:
            return None

        @lash.hookimpl
        def after_turn(self, turn: Any) -> None:
            return None

        @lash.hookimpl
        def before_tool_call(self, call: Any) -> None:
            return None

        @lash.hookimpl
        def after_tool_call(self, call: Any, result: Any) -> None:
            return None

        @lash.hookimpl
        def turn_finalized(self, turn: Any) -> None:
            return None

    return NoOp()


async def echo(text: str) -> str:
    """Return the text."""
    # async: a sync tool runs in its own worker thread (so a hanging tool cannot block the
    # loop), which costs ~0.3 ms of thread start-up and would swamp the kernel's own overhead.
    return text


def script(turns: int) -> list[dict[str, Any]]:
    responses: list[dict[str, Any]] = []
    for i in range(turns):
        responses.append(
            {
                "tool_calls": [{"name": "echo", "arguments": {"text": f"t{i}"}}],
                "usage": {"input_tokens": 10, "output_tokens": 3},
            }
        )
        responses.append({"text": f"answer {i}", "usage": {"input_tokens": 12, "output_tokens": 2}})
    return responses


class Provider:
    lash_plugin = lash.PluginMeta(name="bench_provider")

    def __init__(self, turns: int) -> None:
        self.scripted = ScriptedProvider(script(turns))

    @lash.hookimpl
    def register_providers(self, register: lash.RegisterProvider) -> None:
        register("bench", self.scripted)

    @lash.hookimpl
    def register_tools(self, register: lash.RegisterTool) -> None:
        register(echo)


#: Every builtin but the two the workload needs (the protocol and the stores).
DISABLE = ["scripted", "openai", "plan", "compaction", "tool_output_budget", "files"]


def make_core(url: str, turns: int) -> lash.LashCore:
    """The workload's composition on ``url``: the provider plugin and 10 no-op plugins.

    (bench_sqlite.py and bench_kernel_v2.py use it too; the latter under the code before kernel
    contract v2 as well, so it uses only what both versions have.)
    """
    return lash.LashCore(
        plugins=[standard, stores, Provider(turns), *(make_noop(i) for i in range(10))],
        autoload=False,
        disable=DISABLE,
        provider="bench",
        store=url,
    )


async def kernel_run(turns: int) -> list[float]:
    core = make_core("memory://", turns)
    session = await core.session("bench").open()
    times = []
    for i in range(turns):
        t0 = time.perf_counter_ns()
        result = await session.turn(f"turn {i}").run()
        times.append((time.perf_counter_ns() - t0) / 1e6)
        assert result.outcome == "completed", result
    await core.aclose()
    return times


async def bare_run(turns: int) -> list[float]:
    """The same provider streams and tool call, no kernel: the work a turn cannot avoid."""
    provider = ScriptedProvider(script(turns))
    tool = lash.tool(echo)
    request = lash.ModelRequest(model="m", messages=(lash.Message("user", "x"),))
    times = []
    for _ in range(turns):
        t0 = time.perf_counter_ns()
        first = await lash.collect_response(provider.stream(request))
        call = first.tool_calls[0]
        await tool.invoke(call.arguments, lash.ToolContext(session=_NoSession(), call_id=call.id))  # type: ignore[arg-type]
        await lash.collect_response(provider.stream(request))
        times.append((time.perf_counter_ns() - t0) / 1e6)
    return times


class _NoSession:
    """The bare baseline has no session; the echo tool never asks for one."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    kernel_medians, bare_medians, first50, last50 = [], [], [], []
    gc.collect()
    for _ in range(args.repeats):
        k = asyncio.run(kernel_run(args.turns))
        b = asyncio.run(bare_run(args.turns))
        kernel_medians.append(statistics.median(k))
        bare_medians.append(statistics.median(b))
        first50.append(statistics.median(k[:50]))
        last50.append(statistics.median(k[-50:]))
    kernel = statistics.median(kernel_medians)
    bare = statistics.median(bare_medians)
    overhead = kernel - bare
    flat = statistics.median(last50) / statistics.median(first50)
    print(f"turns={args.turns} repeats={args.repeats} (medians over repeats of per-run medians)")
    print(f"  kernel turn        {kernel:8.3f} ms")
    print(f"  bare baseline      {bare:8.3f} ms   (provider streams + tool call, no kernel)")
    print(
        f"  kernel overhead    {overhead:8.3f} ms   target <= 0.5 ms  "
        f"{'PASS' if overhead <= 0.5 else 'FAIL'}"
    )
    print(f"  first-50 median    {statistics.median(first50):8.3f} ms")
    print(f"  last-50 median     {statistics.median(last50):8.3f} ms")
    verdict = "PASS" if flat <= 1.2 else "FAIL"
    print(f"  last/first ratio   {flat:8.3f}      target <= 1.2     {verdict}")

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(kernel_run(args.turns))
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    dispatch = 0.0
    for (filename, _, func), row in stats.stats.items():  # type: ignore[attr-defined]
        if filename.endswith("lash/_plugins/dispatch.py") and func in {
            "collect",
            "chain",
            "broadcast",
            "first",
            "exclusive",
            "fold",
        }:
            dispatch += row[3]  # cumulative time
    # Hook implementations themselves are no-ops here, so the cumulative time of the dispatch
    # methods is the dispatch cost (each runs the one loop, _dispatch; none calls another).
    print(
        f"  hook dispatch share {100 * dispatch / total:6.1f} % of profiled time "
        f"({dispatch * 1000:.1f} ms of {total * 1000:.1f} ms, cProfile inflates both)"
    )


if __name__ == "__main__":
    main()
