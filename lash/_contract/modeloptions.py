"""Model options: the sampling and tool-use settings of a model call.

They are set in three layers, each overriding the one before, field by field: the host config
(``[model_options]`` in ``lash.toml``, or ``LashCore(model_options=...)``), the session
(``session.configure(model_options=...)``, committed with the session) and the turn
(``session.turn(text, model_options=...)``). A field left ``None`` is not set at that layer;
``extra`` (provider-specific body fields) is merged key by key. (Validating them is
:mod:`lash._contract.modeloptions_check`'s: this module must not import the serialization, which
imports the session config that holds model options.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from lash._contract.annotations import resolve_here

__all__ = ["EMPTY", "ModelOptions"]


def _between(low: float, high: float) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
        if value is not None and not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, got {value!r}", attribute)

    return check


def _positive(_: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"must be at least 1, got {value!r}", attribute)


def _stop(_: object, attribute: attrs.Attribute[Any], value: tuple[str, ...] | None) -> None:
    if value is not None and any(not s for s in value):
        raise ValueError("stop sequences must be non-empty strings", attribute)


def _tool_choice(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.strip():
        raise ValueError(
            'must be "auto", "none", "required" or the name of a tool, got an empty string',
            attribute,
        )


@attrs.frozen(kw_only=True)
class ModelOptions:
    """Settings of a model call; ``None`` leaves a field to the next layer down (and, at the
    bottom, to the provider's default).

    ``temperature`` (0 to 2), ``top_p`` (0 to 1), ``max_tokens`` (output tokens, at least 1),
    ``stop`` (stop sequences), ``seed``, ``tool_choice`` (``"auto"``, ``"none"``,
    ``"required"``: some tool must be called, or a tool's name: that tool must be called),
    ``parallel_tool_calls`` (``False``: at most one tool call per response) and ``extra``
    (provider-specific fields, added to the request body as they are, last).
    Each provider maps them to its wire format, or refuses one it cannot honour with a
    :class:`lash.ProviderRequestError` that names the field (see :doc:`/model_options`).
    """

    temperature: float | None = attrs.field(default=None, validator=_between(0, 2))
    max_tokens: int | None = attrs.field(default=None, validator=_positive)
    top_p: float | None = attrs.field(default=None, validator=_between(0, 1))
    stop: tuple[str, ...] | None = attrs.field(default=None, validator=_stop)
    seed: int | None = None
    tool_choice: str | None = attrs.field(default=None, validator=_tool_choice)
    parallel_tool_calls: bool | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    __module__ = "lash"

    def set_fields(self) -> dict[str, Any]:
        """The fields set at this layer (not ``None``; ``extra`` when not empty)."""
        fields = {
            a.name: getattr(self, a.name)
            for a in attrs.fields(ModelOptions)
            if a.name != "extra" and getattr(self, a.name) is not None
        }
        if self.extra:
            fields["extra"] = dict(self.extra)
        return fields

    def merged(self, over: ModelOptions) -> ModelOptions:
        """These options with ``over`` on top: each field ``over`` sets wins; ``extra`` is
        merged key by key (``over``'s keys win)."""
        # (Most layers are the shared EMPTY itself: told by identity before comparing fields.)
        if over is EMPTY or over == EMPTY:
            return self
        if self is EMPTY or self == EMPTY:
            return over
        changes = over.set_fields()
        if self.extra and over.extra:
            changes["extra"] = {**self.extra, **over.extra}
        return attrs.evolve(self, **changes)


EMPTY = ModelOptions()


resolve_here(globals())
