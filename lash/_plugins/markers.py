"""The marker pair that ties plugins to the hook contract."""

from __future__ import annotations

import pluggy

PROJECT_NAME = "lash"

#: Marks a function in :mod:`lash.hookspecs` as a hook specification.
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marks a plugin function as a hook implementation: ``@lash.hookimpl``.
#: Accepts pluggy's ``tryfirst=True`` / ``trylast=True`` to adjust the documented order.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
