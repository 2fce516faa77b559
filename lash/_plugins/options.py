"""Typed plugin options: declaring fields, validating values, redacting secrets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from lash._contract.serialization import (
    converter,
    describe_value,
    structure,
    type_name,
    unstructure,
    validation_problems,
)
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
    # A secret never shows in the generated repr either (logs, tracebacks, debuggers).
    shown: Any = _redacted_repr if secret else True
    if factory is not None:
        return attrs.field(factory=factory, metadata=meta, validator=validator, repr=shown)
    return attrs.field(default=default, metadata=meta, validator=validator, repr=shown)


def _redacted_repr(value: Any) -> str:
    return repr(REDACTED) if value not in (None, "") else repr(value)


def _meta(field: attrs.Attribute[Any]) -> Mapping[str, Any]:
    value = field.metadata.get(METADATA_KEY, {})
    return value if isinstance(value, Mapping) else {}


def is_secret(field: attrs.Attribute[Any]) -> bool:
    """Whether an attrs field was declared with ``option(secret=True)``."""
    return bool(_meta(field).get("secret"))


def field_is_secret(cls: type, name: str) -> bool:
    """Whether field ``name`` of attrs class ``cls`` was declared with ``option(secret=True)``."""
    if not attrs.has(cls):
        return False
    field = attrs.fields_dict(cls).get(name)
    return field is not None and is_secret(field)


def check_options_class(cls: Any, what: str = "options") -> str | None:
    """Return a problem description if ``cls`` cannot serve as an options/state class."""
    if not isinstance(cls, type) or not attrs.has(cls):
        return f"{what} must be an attrs class, got {cls!r}"
    try:
        attrs.resolve_types(cls)
    except Exception as exc:  # any failure to resolve annotations makes the class unusable
        return f"{what} class {cls.__qualname__} has unresolvable type hints: {exc}"
    # Build the validation hook of every field now, so a field type lash cannot validate
    # (`int | str`, an arbitrary class) is reported at load time, naming the field, rather than
    # as a confusing error the first time a host sets a value.
    for field in attrs.fields(cls):
        try:
            converter().get_structure_hook(field.type)
        except Exception as exc:
            return (
                f"{what} class {cls.__qualname__}: field {field.name!r} has type "
                f"{type_name(field.type)}, which lash cannot validate ({exc})"
            )
    return None


def _all_defaulted(cls: type) -> bool:
    """Whether ``cls`` is an attrs class whose every field has a default."""
    return attrs.has(cls) and all(f.default is not attrs.NOTHING for f in attrs.fields(cls))


def build_options(plugin: str, cls: type[T], data: Mapping[str, Any], *, path: str = "") -> T:
    """Validate ``data`` against ``cls`` and return the instance.

    :raises OptionsError: one readable line per bad field, prefixed with ``options.<plugin>``;
        values of secret fields are shown as ``***``.
    """
    prefix = path or f"options.{plugin}"
    if not isinstance(data, Mapping):
        raise OptionsError(
            plugin, [f"{prefix}: expected a table of options, got {describe_value(data)}"]
        )
    if not data and _all_defaulted(cls):
        # Nothing set: what structuring `{}` makes is `cls()`. Made directly, it spares building
        # the class's structuring code (`lash --help` and `lash plugins` load every plugin);
        # should the defaults fail, structuring below says why, as it would have.
        try:
            return cls()
        except Exception:
            pass
    try:
        return structure(dict(data), cls)
    except Exception as exc:
        problems = validation_problems(exc, data, prefix, secret=field_is_secret)
        raise OptionsError(plugin, problems or [f"{prefix}: {exc}"]) from None


def redact(obj: Any) -> Any:
    """Unstructure an options instance with every secret field shown as ``***``.

    Nested options classes, and options classes inside lists, tuples and dicts, are redacted too.
    """
    if attrs.has(type(obj)):
        out: dict[str, Any] = {}
        for field in attrs.fields(type(obj)):
            value = getattr(obj, field.name)
            if is_secret(field) and value not in (None, ""):
                out[field.name] = REDACTED
            else:
                out[field.name] = redact(value)
        return out
    if isinstance(obj, Mapping):
        return {unstructure(k): redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [redact(v) for v in obj]
    return unstructure(obj)


def _default_of(field: attrs.Attribute[Any]) -> tuple[bool, Any]:
    """``(required, default)`` of a field; factories are called to show their value."""
    default: Any = field.default
    if default is attrs.NOTHING:
        return True, None
    # attrs' stubs declare Factory as a function, so isinstance() needs the ignore.
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            # The value depends on the other fields of an instance; there is none to show.
            return False, None
        return False, default.factory()
    return False, default


def describe_options(cls: type) -> list[dict[str, Any]]:
    """One dict per field: name, type, default (redacted when secret), required, secret, help.

    ``default`` is ``None`` for a required field (``required`` is then true).
    """
    rows: list[dict[str, Any]] = []
    attrs.resolve_types(cls)
    for field in attrs.fields(cls):
        required, default = _default_of(field)
        secret = is_secret(field)
        rows.append(
            {
                "name": field.name,
                "type": type_name(field.type),
                "default": REDACTED if secret and default not in (None, "") else redact(default),
                "required": required,
                "secret": secret,
                "help": _meta(field).get("help"),
            }
        )
    return rows
