"""An example class plugin driven by per-session options: tool, prompt, config and turn policy."""

from __future__ import annotations

import logging

import attrs

import lash

log = logging.getLogger(__name__)


@attrs.frozen
class PolicyOptions:
    """Host defaults in ``[options.policy]``; each session may override them when it opens."""

    hidden_tools: tuple[str, ...] = lash.option((), help="Tools this session may not use.")
    max_messages: int = lash.option(40, help="Non-system messages shown to the model per call.")
    models: tuple[str, ...] = lash.option((), help="Models a session may use (empty: any).")


class Policy:
    """A class plugin whose hooks read the options of the session they are called for."""

    lash_plugin = lash.PluginMeta(
        name="policy",
        description="Per-session tool, prompt and model policy.",
        options=PolicyOptions,
    )

    @lash.hookimpl
    def filter_tool_catalog(
        self, session: lash.SessionView, catalog: tuple[lash.ToolCatalogEntry, ...]
    ) -> list[str]:
        hidden = set(session.options(PolicyOptions).hidden_tools)
        return [entry.name for entry in catalog if entry.name in hidden]

    @lash.hookimpl
    def transform_prompt_view(
        self, session: lash.SessionView, view: lash.PromptView
    ) -> lash.PromptView | None:
        limit = session.options(PolicyOptions).max_messages
        system = [m for m in view.messages if m.role == "system"]
        recent = [m for m in view.messages if m.role != "system"]
        if len(recent) <= limit:
            return None  # a chain hook: None passes the view on unchanged
        recent = recent[-limit:]
        while recent and recent[0].role == "tool":  # never show a result without its call
            recent.pop(0)
        # Only this model call sees the shorter view; the history keeps every message.
        return attrs.evolve(view, messages=(*system, *recent))

    @lash.hookimpl
    def mutate_session_config(
        self, session: lash.SessionView, proposed: lash.SessionConfig
    ) -> lash.SessionConfig | None:
        models = session.options(PolicyOptions).models
        if models and proposed.model not in models:
            raise lash.ConfigRejected(f"model {proposed.model!r} is not one of {models}")
        return None

    @lash.hookimpl
    def before_turn(self, turn: lash.TurnView) -> lash.TurnDirective | None:
        if not turn.input.strip():
            return lash.AbortTurn("the input is empty")
        return None

    @lash.hookimpl
    async def session_opened(self, session: lash.SessionView) -> None:
        # A broadcast hook: if this raised, the error would be reported and the open would go on.
        log.info("session %s opened with policy %s", session.id, session.options(PolicyOptions))
