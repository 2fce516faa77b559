"""A ``configure()`` patch: which fields it may hold, how it is checked and applied (shared by
``session.configure`` and the creation of child sessions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from lash._contract.types import SessionConfig
from lash.errors import SessionError

__all__ = ["CONFIG_FIELDS", "apply_patch", "check_patch"]

#: The fields ``configure()`` accepts.
CONFIG_FIELDS = ("provider", "model", "prompt_layers", "plugin_options")


def check_patch(session_id: str, patch: Mapping[str, Any]) -> None:
    unknown = sorted(set(patch) - set(CONFIG_FIELDS) - {"protocol_options"})
    if unknown:
        raise SessionError(
            f"configure() got unknown field(s) {unknown}; known: {', '.join(CONFIG_FIELDS)}",
            session_id=session_id,
        )


def apply_patch(config: SessionConfig, patch: Mapping[str, Any]) -> SessionConfig:
    changes: dict[str, Any] = {}
    for field, value in patch.items():
        if field == "plugin_options":
            merged = {k: dict(v) for k, v in config.plugin_options.items()}
            for plugin, values in value.items():
                merged[plugin] = {**merged.get(plugin, {}), **values}
            changes[field] = merged
        elif field == "prompt_layers":
            changes[field] = tuple(value)
        else:
            changes[field] = value
    return attrs.evolve(config, **changes)
