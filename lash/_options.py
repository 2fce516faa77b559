"""Typed plugin options: declaring fields, validating values, redacting secrets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from lash._serialization import structure, type_name, unstructure, validation_problems
from lash.errors import OptionsError

T = TypeVar("T")

#: Key under which lash keeps its field metadata in ``attrs.field(metadata=...)``.
METADATA_KEY = "lash"

#: What secret values are shown as.
REDACTED = "***"


def option(
    default: Any = attrs.NOTHING,
    *,
    factory: Callable[[], Any] | None = None,
    secret: bool = False,
    help: str | None = None,
    validator: Any = None,
) -> Any:
    """Declare a field of a plugin options class, with lash metadata.

    ``secret=True`` marks values (API keys, tokens) that lash never persists and always shows as
    ``***``; ``help`` is shown by ``lash plugins``. Plain ``attrs`` fields work too.
    """
    meta = {METADATA_KEY: {"secret": secret, "help": help}}
    if factory is not None:
        return attrs.field(factory=factory, metadata=meta, validator=validator)
    return attrs.field(default=default, metadata=meta, validator=validator)


def _meta(field: attrs.Attribute[Any]) -> Mapping[str, Any]:
    value = field.metadata.get(METADATA_KEY, {})
    return value if isinstance(value, Mapping) else {}


def is_secret(field: attrs.Attribute[Any]) -> bool:
    """Whether an attrs field was declared with ``option(secret=True)``."""
    return bool(_meta(field).get("secret"))


def check_options_class(cls: Any, what: str = "options") -> str | None:
    """Return a problem description if ``cls`` cannot serve as an options/state class."""
    if not isinstance(cls, type) or not attrs.has(cls):
        return f"{what} must be an attrs class, got {cls!r}"
    try:
        attrs.resolve_types(cls)
    except Exception as exc:  # any failure to resolve annotations makes the class unusable
        return f"{what} class {cls.__qualname__} has unresolvable type hints: {exc}"
    return None


def build_options(plugin: str, cls: type[T], data: Mapping[str, Any], *, path: str = "") -> T:
    """Validate ``data`` against ``cls`` and return the instance.

    :raises OptionsError: one readable line per bad field, prefixed with ``options.<plugin>``.
    """
    prefix = path or f"options.{plugin}"
    try:
        return structure(dict(data), cls)
    except Exception as exc:
        problems = validation_problems(exc, data, prefix) or [f"{prefix}: {exc}"]
        raise OptionsError(plugin, problems) from None


def redact(obj: Any) -> Any:
    """Unstructure an options instance with every secret field shown as ``***``."""
    if not attrs.has(type(obj)):
        return unstructure(obj)
    out: dict[str, Any] = {}
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if is_secret(field) and value not in (None, ""):
            out[field.name] = REDACTED
        else:
            out[field.name] = redact(value)
    return out


def describe_options(cls: type) -> list[dict[str, Any]]:
    """One dict per field: name, type, default (redacted when secret), secret, help."""
    rows: list[dict[str, Any]] = []
    attrs.resolve_types(cls)
    for field in attrs.fields(cls):
        if isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            default = field.default.factory()
        else:
            default = field.default
        secret = is_secret(field)
        rows.append(
            {
                "name": field.name,
                "type": type_name(field.type),
                "default": REDACTED if secret and default not in (None, "") else redact(default),
                "secret": secret,
                "help": _meta(field).get("help"),
            }
        )
    return rows
