"""A ``configure()`` patch: which fields it may hold, how it is checked and applied (shared by
``session.configure`` and the creation of child sessions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from lash._contract.config_check import config_problems
from lash._contract.modeloptions_check import model_options, patched
from lash._contract.turn_types import SessionConfig
from lash.errors import SessionError, ValidationError

__all__ = ["CONFIG_FIELDS", "apply_patch", "check_fields", "check_patch"]

#: The fields ``configure()`` accepts.
CONFIG_FIELDS = ("provider", "model", "prompt_layers", "plugin_options", "model_options")


def check_patch(session_id: str, patch: Mapping[str, Any]) -> None:
    unknown = sorted(set(patch) - set(CONFIG_FIELDS) - {"protocol_options"})
    if unknown:
        raise SessionError(
            f"configure() got unknown field(s) {unknown}; known: {', '.join(CONFIG_FIELDS)}",
            session_id=session_id,
        )
    check_fields(session_id, patch, "configure()")


def check_fields(session_id: str, patch: Mapping[str, Any], what: str) -> None:
    """The shapes of a patch's fields (``model_options`` field by field), refused naming each
    bad one and ``what`` was patched (``configure()``, a child session's config)."""
    problems = config_problems(patch)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise SessionError(
            f"session {session_id!r}: {what} got invalid field(s):\n{lines}",
            session_id=session_id,
        )
    if "model_options" in patch:
        try:
            model_options(patch["model_options"])  # each field checks alone: check the patch
        except ValidationError as exc:
            lines = "\n".join(f"  - {p}" for p in exc.problems)
            raise SessionError(
                f"session {session_id!r}: {what} got invalid model_options:\n{lines}",
                session_id=session_id,
            ) from None


def apply_patch(config: SessionConfig, patch: Mapping[str, Any]) -> SessionConfig:
    changes: dict[str, Any] = {}
    for field, value in patch.items():
        if field == "plugin_options":
            merged = {k: dict(v) for k, v in config.plugin_options.items()}
            for plugin, values in value.items():
                merged[plugin] = {**merged.get(plugin, {}), **values}
            changes[field] = merged
        elif field == "model_options":
            changes[field] = patched(config.model_options, value)
        elif field == "prompt_layers":
            changes[field] = tuple(value)
        else:
            changes[field] = value
    return attrs.evolve(config, **changes)
