"""Validating model options: a :class:`lash.ModelOptions` or a mapping of its fields, checked
field by field; and a ``configure(model_options=...)`` patch applied to a session's options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lash._contract.modeloptions import EMPTY, ModelOptions
from lash._contract.serialization import structure, validation_problems
from lash.errors import ValidationError

__all__ = ["model_options", "patched"]


def model_options(
    value: ModelOptions | Mapping[str, Any] | None, *, name: str = "model_options"
) -> ModelOptions:
    """Validate ``value`` (a :class:`ModelOptions`, a mapping of its fields, or ``None``).

    :raises lash.ValidationError: one line per bad field, its path starting with ``name``
        (``model_options.temperature: must be between 0 and 2, got 3.5``, ``model_options[1]:
        unknown key``, and for the whole value ``model_options: expected lash.ModelOptions...``);
        with ``name=""``, paths within the options (``temperature: ...``, ``[1]: ...``). (Each
        caller once glued ``model_options.`` to the lines, which made ``model_options.expected
        lash.ModelOptions...`` and ``model_options.[1]`` of the others.)
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
            [
                f"{name}: " * bool(name)
                + f"expected lash.ModelOptions or a mapping of its fields, got {value!r}"
            ],
        )
    data = {k: v for k, v in value.items() if v is not None}
    if not data:  # nothing set: no structuring code to build (every `lash` command reads a config)
        return EMPTY
    try:
        return structure(data, ModelOptions)
    except Exception as exc:
        raise ValidationError(
            "model_options",
            validation_problems(exc, data, name) or [f"{name}: " * bool(name) + str(exc)],
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
