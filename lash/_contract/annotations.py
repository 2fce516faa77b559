"""Resolve the string annotations of public attrs classes in their defining module.

Public classes set ``__module__ = "lash"`` so users see ``lash.Name``. With postponed annotations
(``from __future__ import annotations``), attrs and cattrs would then evaluate a class's
annotations in the ``lash`` package namespace, where names like ``Any`` or ``Mapping`` do not
exist. Each module calls :func:`resolve_here` after defining its classes, so annotations are
resolved once, against the module that wrote them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


def resolve_here(namespace: Mapping[str, Any]) -> None:
    """Resolve every attrs class in ``namespace`` against that namespace.

    A class annotated with names imported only under ``TYPE_CHECKING`` (kernel views such as
    ``TurnInfo.session``) is left unresolved: lash never structures those.
    """
    globalns = dict(namespace)
    for value in list(namespace.values()):
        if isinstance(value, type) and attrs.has(value):
            try:
                attrs.resolve_types(value, globalns=globalns)
            except NameError:
                continue
