"""Hook implementation signatures, checked against the hookspecs with readable messages.

pluggy refuses an implementation whose arguments the hook lacks with a message of three lines
that names no likely fix; a host loading the plugin (:mod:`lash._plugins.loading`) and
``check_plugin`` (:mod:`lash._testing.check`) both report it this way instead, one line each.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from lash import hookspecs

__all__ = ["signature_problems"]


def signature_problems(function: Any, hook: str, where: str) -> list[str]:
    """What is wrong with ``function``'s signature as an implementation of ``hook`` (a lash
    hook), one message each, starting with ``where``: an argument the hook lacks (with the
    likely one), ``*args``/``**kwargs``, and arguments pluggy would never pass (keyword-only,
    with a default). Empty when nothing is, or when the signature cannot be read."""
    accepted = list(inspect.signature(getattr(hookspecs, hook)).parameters)
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): loading judges it
        return []
    problems: list[str] = []
    listing = ", ".join(accepted)
    for param in parameters:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            stars = "*" if param.kind is param.VAR_POSITIONAL else "**"
            problems.append(
                f"{where}: {stars}{param.name} receives nothing (hook arguments are passed by "
                f"name); name the ones you need: {listing}"
            )
        elif param.name not in accepted:
            close = difflib.get_close_matches(param.name, accepted, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                f"{where}: {param.name!r} is not an argument of the hook (its arguments: "
                f"{listing}){hint}"
            )
        elif param.kind is param.KEYWORD_ONLY:
            problems.append(
                f"{where}: argument {param.name!r} is keyword-only, so it is never passed; "
                "make it an ordinary argument"
            )
        elif param.default is not param.empty:
            problems.append(
                f"{where}: argument {param.name!r} has a default, so it is never passed (pluggy "
                "passes only arguments without defaults); drop the default"
            )
    return problems
