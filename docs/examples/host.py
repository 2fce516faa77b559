"""Example host code: composing a core from plugin objects, in code."""

from __future__ import annotations

import greeter
import ordering

import lash


def build_core() -> lash.LashCore:
    """The host's composition: plugins in order, their options, what to disable."""
    return lash.LashCore(
        # Config order; `summaries` declares after=("greeter",), so it moves behind greeter.
        plugins=[ordering.Summaries, greeter, ordering.Audit, ordering.OutputBudget(max_chars=500)],
        # project_tool_result is exclusive: replace the builtin implementation.
        disable=["tool_output_budget"],
        options={"greeter": {"greeting": "Welcome", "max_names": 5}},
    )


def skipped_plugins() -> list[lash.PluginInfo]:
    """Without the greeter, ``summaries`` cannot load: it is skipped and reported, not fatal."""
    core = lash.LashCore(plugins=[ordering.Summaries])
    return [info for info in core.plugins if info.status == "failed"]
