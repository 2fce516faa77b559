"""Validating model options: a :class:`lash.ModelOptions` or a mapping of its fields, checked
field by field; and a ``configure(model_options=...)`` patch applied to a session's options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lash._contract.modeloptions import EMPTY, ModelOptions
from lash._contract.serialization import structure, validation_problems
from lash.errors import ValidationError

__all__ = ["model_options", "patched"]


def model_options(value: ModelOptions | Mapping[str, Any] | None) -> ModelOptions:
    """Validate ``value`` (a :class:`ModelOptions`, a mapping of its fields, or ``None``).

    :raises lash.ValidationError: one line per bad field (``temperature: must be between 0 and
        2, got 3.5``, ``seed: expected int, got 'x' (str)``, ``colour: unknown key``).
    """
    if value is None:
        return EMPTY
    if isinstance(value, ModelOptions):
        if value == EMPTY:
            return EMPTY
        value = value.set_fields()  # attrs checks no types at construction: check them here
    if not isinstance(value, Mapping):
        raise ValidationError(
            "model_options",
            [f"expected lash.ModelOptions or a mapping of its fields, got {value!r}"],
        )
    data = {k: v for k, v in value.items() if v is not None}
    if not data:  # nothing set: no structuring code to build (every `lash` command reads a config)
        return EMPTY
    try:
        return structure(data, ModelOptions)
    except Exception as exc:
        raise ValidationError(
            "model_options", validation_problems(exc, data) or [str(exc)]
        ) from None


def patched(current: ModelOptions, patch: ModelOptions | Mapping[str, Any]) -> ModelOptions:
    """``current`` changed by a ``configure(model_options=...)`` patch: the fields the patch
    gives replace the current ones, a field given as ``None`` is unset; ``extra`` is patched
    key by key the same way."""
    if isinstance(patch, ModelOptions):
        patch = patch.set_fields()
    data = current.set_fields()
    for key, value in patch.items():
        if key == "extra" and isinstance(value, Mapping):
            extra = {**data.get("extra", {}), **value}
            data["extra"] = {k: v for k, v in extra.items() if v is not None}
        elif value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return model_options(data)
